//! Redis over TLS (`rediss://`, docs/reference.md §3 `async.redis_url`), which only a build with
//! the `redis-tls` feature speaks: against a real TLS-only redis-server, with a throwaway CA
//! and certificates that each test makes with the `openssl` CLI (`.ci/run` installs it when
//! missing). Without the feature, such a URL is a configuration error that says how to build
//! one that has it.

use crate::util::*;

/// fc-init on `redis_url` exits `code` before starting anything, saying each of `says`.
fn stops_at_start(tag: &str, redis_url: &str, code: i32, says: &[&str]) {
    let dir = TempDir::new(tag);
    let keys = format!("[async]\nbackend = \"redis\"\nredis_url = {redis_url:?}\n");
    let (cfg, fx) = FixtureConfig::write(&dir, &[], "", &keys);
    let (status, _, stderr) = fc_init(Mode::Subreaper)
        .args(["-c", cfg.to_str().unwrap()])
        .output();
    assert_eq!(status, code, "{stderr}");
    for said in says {
        assert!(stderr.contains(said), "{said:?} in {stderr}");
    }
    assert!(fx.record().is_empty(), "nothing was started");
}

#[cfg(not(feature = "redis-tls"))]
#[test]
fn without_the_feature_rediss_is_a_configuration_error_naming_it() {
    let says = ["async.redis_url", "cargo build --features redis-tls"];
    stops_at_start("rediss-off", "rediss://127.0.0.1:6380/0", 2, &says);
}

#[cfg(feature = "redis-tls")]
mod with_tls {
    use std::path::PathBuf;
    use std::process::Command;
    use std::sync::{Arc, Mutex};

    use crate::async_events::{AsyncServer, Backend};
    use crate::redis::{RedisServer, Tls};
    use crate::util::*;

    const ASYNC: (&str, &str) = ("X-Fc-Invocation-Type", "Async");

    fn openssl(dir: &TempDir, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&dir.0)
            .output()
            .unwrap_or_else(|e| panic!("openssl (`.ci/run` installs it when missing): {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A new P-256 key `NAME.key` and, with `rest`, the request or certificate for it.
    fn with_new_key(dir: &TempDir, name: &str, rest: &[&str]) {
        let (key, subject) = (format!("{name}.key"), format!("/CN=fc-init test {name}"));
        let mut args = vec![
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ];
        args.extend(["-nodes", "-keyout", &key, "-subj", &subject]);
        args.extend(rest);
        openssl(dir, &args);
    }

    /// A throwaway CA in `dir`: `NAME.pem` (returned) and its key `NAME.key`.
    fn ca(dir: &TempDir, name: &str) -> PathBuf {
        let pem = format!("{name}.pem");
        let basic = "basicConstraints=critical,CA:TRUE";
        let usage = "keyUsage=critical,keyCertSign";
        let rest = [
            "-x509", "-days", "1", "-out", &pem, "-addext", basic, "-addext", usage,
        ];
        with_new_key(dir, name, &rest);
        dir.path(&pem)
    }

    /// A server certificate `NAME.pem` for `san` (such as `DNS:localhost`) signed by the CA
    /// `ca`, with its key; the redis-server arguments that serve it.
    fn server_cert(dir: &TempDir, name: &str, ca: &str, san: &str) -> Vec<String> {
        let csr = format!("{name}.csr");
        with_new_key(dir, name, &["-out", &csr]);
        let ext = format!("{name}.ext");
        dir.write(
            &ext,
            &format!("subjectAltName={san}\nextendedKeyUsage=serverAuth\n"),
        );
        let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
        let pem = format!("{name}.pem");
        let mut args = vec![
            "x509", "-req", "-in", &csr, "-CA", &ca_pem, "-CAkey", &ca_key,
        ];
        args.extend(["-days", "1", "-extfile", &ext, "-out", &pem]);
        openssl(dir, &args);
        let file = |f: &str| dir.path(f).display().to_string();
        vec![
            "--tls-cert-file".into(),
            file(&pem),
            "--tls-key-file".into(),
            file(&format!("{name}.key")),
        ]
    }

    /// An fc-init whose queue is on the TLS-only server `tls` describes.
    fn on_tls_server(tag: &str, tls: Tls) -> AsyncServer {
        let redis = RedisServer::start_tls(tag, tls);
        let backend = Backend::Redis(Arc::new(Mutex::new(redis)));
        AsyncServer::start_with(&backend, tag, tag, "", "", |_| {})
    }

    #[test]
    fn an_event_submitted_over_rediss_runs_to_finished() {
        let dir = TempDir::new("tls-ok");
        let ca = ca(&dir, "ca");
        let args = server_cert(&dir, "server", "ca", "DNS:localhost");
        let s = on_tls_server(
            "tls-ok",
            Tls {
                args,
                host: "localhost",
                ca,
            },
        );
        let id = s.submit("/invoke", &[], b"over TLS");
        let e = s.wait_status(&id, "FINISHED");
        assert_eq!(e["attempts"], 1, "{e}");
        assert_eq!(s.invokes_of(&id).len(), 1);
    }

    /// A server whose certificate does not verify (`why`) when fc-init starts: a configuration
    /// error (exit 2) that says why, nothing started.
    fn refused_at_start(tag: &str, tls: Tls, why: &str) {
        let redis = RedisServer::start_tls(tag, tls);
        let says = ["does not verify", "invalid peer certificate", why];
        super::stops_at_start(tag, &redis.url(), 2, &says);
    }

    #[test]
    fn a_server_certificate_not_signed_by_the_given_ca_or_for_another_host_stops_fc_init_at_start()
    {
        let dir = TempDir::new("tls-refused");
        let trusted = ca(&dir, "trusted");
        ca(&dir, "other");
        let args = server_cert(&dir, "foreign", "other", "DNS:localhost,IP:127.0.0.1");
        let tls = Tls {
            args,
            host: "127.0.0.1",
            ca: trusted.clone(),
        };
        refused_at_start("tls-foreign", tls, "UnknownIssuer");
        let args = server_cert(&dir, "misnamed", "trusted", "DNS:redis.invalid");
        let tls = Tls {
            args,
            host: "127.0.0.1",
            ca: trusted,
        };
        refused_at_start("tls-misnamed", tls, "not valid for name");
    }

    /// A certificate that stops verifying once fc-init runs (renewed by a CA it does not
    /// trust) makes the store unreachable, as a crash would: a submission gets 503
    /// `AsyncStoreUnavailable`, synchronous traffic is served, and the log says why.
    #[test]
    fn a_certificate_renewed_by_another_ca_at_run_time_makes_the_store_unavailable() {
        let dir = TempDir::new("tls-renewed");
        let trusted = ca(&dir, "trusted");
        ca(&dir, "other");
        let args = server_cert(&dir, "server", "trusted", "IP:127.0.0.1");
        let renewed = server_cert(&dir, "renewed", "other", "IP:127.0.0.1");
        let redis = Arc::new(Mutex::new(RedisServer::start_tls(
            "tls-renewed",
            Tls {
                args,
                host: "127.0.0.1",
                ca: trusted,
            },
        )));
        let backend = Backend::Redis(redis.clone());
        let s = AsyncServer::start_with(&backend, "tls-renewed", "tls-renewed", "", "", |_| {});
        let id = s.submit("/invoke", &[], b"before");
        s.wait_status(&id, "FINISHED");
        redis.lock().unwrap().restart_with_tls(renewed);
        let (status, headers, body) = http(s.fx.port, "POST", "/invoke", &[ASYNC], b"x");
        assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
        assert_eq!(
            header(&headers, "x-fc-error-type"),
            Some("AsyncStoreUnavailable")
        );
        assert_eq!(http(s.fx.port, "GET", "/sync", &[], b"").0, 200);
        let logged = wait_until(std::time::Instant::now() + WATCHDOG, || {
            s.p.stderr()
                .lines()
                .any(|l| l.contains("invalid peer certificate") && l.contains("UnknownIssuer"))
        });
        if !logged {
            s.p.fail("no log line of the refusal (UnknownIssuer)");
        }
    }

    /// Without `?ca=` the system's roots are trusted (rustls-native-certs, which honours
    /// `SSL_CERT_FILE`); and a server that speaks only TLS 1.2 is reached.
    #[test]
    fn the_system_roots_verify_a_tls12_only_server() {
        let dir = TempDir::new("tls12");
        let ca = ca(&dir, "ca");
        let mut args = server_cert(&dir, "server", "ca", "IP:127.0.0.1");
        args.extend(["--tls-protocols".into(), "TLSv1.2".into()]);
        let redis = RedisServer::start_tls(
            "tls12",
            Tls {
                args,
                host: "127.0.0.1",
                ca: ca.clone(),
            },
        );
        let url = redis.url().split_once('?').unwrap().0.to_owned();
        let keys =
            format!("[async]\nbackend = \"redis\"\nredis_url = {url:?}\nqueue = \"tls12\"\n");
        let (cfg, fx) = FixtureConfig::write(&dir, &[], "", &keys);
        let p = fc_init(Mode::Subreaper)
            .env("SSL_CERT_FILE", ca.to_str().unwrap())
            .args(["-c", cfg.to_str().unwrap()])
            .start();
        wait_for("instance ready", || {
            (accepting(&fx.admin) && admin_get(&fx.admin, "/health").0 == 200).then_some(())
        });
        let (status, _, body) = http(fx.port, "POST", "/invoke", &[ASYNC], b"x");
        if status != 202 {
            p.fail(&format!(
                "stored over TLS 1.2: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
    }

    #[test]
    fn a_ca_file_that_cannot_be_read_stops_fc_init_at_start_with_the_reason() {
        let url = "rediss://127.0.0.1:1/0?ca=/nonexistent/fc-init-test-ca.pem";
        let says = ["reading the CA file", "/nonexistent/fc-init-test-ca.pem"];
        super::stops_at_start("tls-no-ca", url, 1, &says);
    }
}
