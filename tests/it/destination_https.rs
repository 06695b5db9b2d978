//! `https://` destinations (docs/reference.md §10), which only a build with the `tls` feature
//! (or `redis-tls`, which implies it) speaks: a real TLS receiver (python's `ssl` module) with
//! a throwaway certificate that the test makes with the `openssl` CLI, trusted through
//! `SSL_CERT_FILE`. Without the feature, such a destination is a configuration error that says
//! how to build one that has it.

#[cfg(not(feature = "tls"))]
use crate::util::*;

#[cfg(not(feature = "tls"))]
#[test]
fn destination_https_without_the_tls_build_is_refused_at_load() {
    eprintln!("destination_https: built without the tls feature; only the refusal is tested");
    let dir = TempDir::new("https-off");
    let keys = "[async]\non_success = { url = \"https://127.0.0.1:8443/done\" }\n";
    let (cfg, fx) = FixtureConfig::write(&dir, &[], "", keys);
    let (status, _, stderr) = fc_init(Mode::Subreaper)
        .args(["-c", cfg.to_str().unwrap()])
        .output();
    assert_eq!(status, 2, "{stderr}");
    for said in ["async.on_success", "cargo build --features tls"] {
        assert!(stderr.contains(said), "{said:?} in {stderr}");
    }
    assert!(fx.record().is_empty(), "nothing was started");
}

#[cfg(feature = "tls")]
mod with_tls {
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;
    use std::time::Duration;

    use serde_json::Value;

    use crate::util::*;

    /// A TLS receiver on 127.0.0.1 with the certificate `cert` and its key: each POSTed body
    /// comes out of `got`, and is answered 204.
    struct Receiver {
        child: Child,
        port: u16,
        got: mpsc::Receiver<Value>,
    }

    impl Drop for Receiver {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    const SERVER: &str = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        print(body.decode(), flush=True)
        self.send_response(204)
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

    impl Receiver {
        fn start(cert: &str, key: &str) -> Receiver {
            let mut child = Command::new("python3")
                .args(["-c", SERVER, cert, key])
                .stdout(Stdio::piped())
                .spawn()
                .expect("python3");
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let port = lines
                .next()
                .expect("the receiver's port")
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let (tx, got) = mpsc::channel();
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    let _ = tx.send(serde_json::from_str(&line).expect("a JSON delivery"));
                }
            });
            Receiver { child, port, got }
        }
    }

    #[test]
    fn destination_https_delivers_to_a_receiver_trusted_through_ssl_cert_file() {
        let dir = TempDir::new("https-dest");
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args([
                "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "1",
            ])
            .args(["-subj", "/CN=fc-init test receiver"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-addext", "extendedKeyUsage=serverAuth"])
            .current_dir(&dir.0)
            .output()
            .unwrap_or_else(|e| panic!("openssl (`.ci/run` installs it when missing): {e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (cert, key) = (dir.path("cert.pem"), dir.path("key.pem"));
        let receiver = Receiver::start(cert.to_str().unwrap(), key.to_str().unwrap());
        let keys = format!(
            "[async]\nstore = {:?}\non_success = {{ url = \"https://127.0.0.1:{}/done\" }}\n",
            dir.path("events.db").display().to_string(),
            receiver.port
        );
        let (cfg, fx) = FixtureConfig::write(&dir, &[], "", &keys);
        let p = fc_init(Mode::Subreaper)
            .args(["-c", cfg.to_str().unwrap()])
            .env("SSL_CERT_FILE", cert.to_str().unwrap())
            .start();
        wait_for("instance ready", || {
            (accepting(&fx.admin) && admin_get(&fx.admin, "/health").0 == 200).then_some(())
        });
        let async_ = ("X-Fc-Invocation-Type", "Async");
        let id = ("x-fc-request-id", "over-tls");
        let (status, _, _) = http(fx.port, "POST", "/invoke", &[async_, id], b"{\"n\":1}");
        assert_eq!(status, 202);
        let got = receiver
            .got
            .recv_timeout(WATCHDOG)
            .unwrap_or_else(|_| p.fail("no delivery over TLS"));
        assert_eq!(got["requestContext"]["requestId"], "over-tls", "{got}");
        assert_eq!(got["requestContext"]["condition"], "Success", "{got}");
        assert_eq!(got["requestPayload"], "{\"n\":1}", "{got}");
        wait_for("the delivery recorded", || {
            let (_, e) = admin_get(&fx.admin, "/async-events/over-tls");
            let e: Value = serde_json::from_str(&e).unwrap();
            (e["destination"]["status"] == "delivered").then_some(())
        });
        assert!(
            receiver
                .got
                .recv_timeout(Duration::from_millis(200))
                .is_err(),
            "delivered once"
        );
    }
}
