//! The recipes users copy: the example functions (Python, Node.js, Go) served through the real
//! fc-init, the Kubernetes manifest checked against the config it ships, and the systemd unit
//! checked by `systemd-analyze verify`. A recipe whose tool is missing here (`go`, `node`,
//! `systemd-analyze`) is skipped with a printed reason; PyYAML is installed by the test itself
//! when Python lacks it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::util::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Whether `program` runs here (`program ARG` exits 0).
fn have(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs an example's config through fc-init, with the listener, sockets and store moved into
/// a scratch directory (and `command` replacing the config's when given), and checks what a
/// user of the example sees: initialized, an event and an HTTP request answered, PreStop on
/// SIGTERM, exit 0.
fn example_serves(config: &str, greeting: &str, command: &[&str]) {
    let dir = TempDir::new("example");
    let port = free_port();
    let mut args = vec![
        "-c".to_owned(),
        repo(config).display().to_string(),
        "--listen".to_owned(),
        format!("127.0.0.1:{port}"),
    ];
    if !command.is_empty() {
        args.push("--".to_owned());
        args.extend(command.iter().map(|s| s.to_string()));
    }
    let mut p = isolated(fc_init(Mode::Subreaper).args(&args), &dir, true).start();
    let end = p.expect_line("initialized", |l| l.starts_with("FC Initialize End"));
    assert!(!end.contains("Error"), "{end}\n{}", p.stderr());
    wait_port(&p, port);

    let (status, headers, body) = http(port, "POST", "/invoke", &[], br#"{"name": "Ada"}"#);
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(answer["message"], greeting, "{answer}");
    assert_eq!(answer["event"], r#"{"name": "Ada"}"#, "{answer}");
    assert_eq!(
        Some(answer["requestId"].as_str().unwrap()),
        header(&headers, "x-fc-request-id"),
        "{answer}"
    );

    let (status, _, body) = http(port, "GET", "/hello?x=1", &[], b"");
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(greeting) && body.contains("You asked for GET /hello?x=1"),
        "{body}"
    );

    p.signal(libc::SIGTERM);
    let end = p.expect_line("PreStop", |l| l.starts_with("FC PreStop End"));
    assert!(!end.contains("Error"), "{end}");
    assert_eq!(p.wait(WATCHDOG), 0, "{}", p.stderr());
    let out = p.stdout();
    assert!(
        out.contains("function: pre-stop: served 1 invocations"),
        "{out}"
    );
    assert!(out.contains("function: stopped"), "{out}");
}

#[test]
fn python_example_serves_through_fc_init() {
    example_serves(
        "examples/python/fc-init.toml",
        "Hello from Python under fc-init!",
        &[],
    );
}

#[test]
fn node_example_serves_through_fc_init() {
    if !have("node", "--version") {
        eprintln!("note: node is not installed here; the Node.js example is not run");
        return;
    }
    example_serves(
        "examples/node/fc-init.toml",
        "Hello from Node.js under fc-init!",
        &[],
    );
}

#[test]
fn go_example_builds_and_serves_through_fc_init() {
    if !have("go", "version") {
        eprintln!("note: go is not installed here; the Go example is not built or run");
        return;
    }
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-example");
    let binary = out_dir.join("function");
    let mut build = Command::new("go");
    build
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(repo("examples/go"))
        // The example's go.mod names the oldest Go it needs; never fetch a newer toolchain.
        .env("GOTOOLCHAIN", "local");
    if std::env::var_os("HOME").is_none() && std::env::var_os("XDG_CACHE_HOME").is_none() {
        build.env("GOCACHE", out_dir.join("cache"));
    }
    let built = build.output().expect("running go build");
    assert!(
        built.status.success(),
        "go build failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    example_serves(
        "examples/go/fc-init.toml",
        "Hello from Go under fc-init!",
        &[binary.to_str().unwrap()],
    );
}

/// `python3` with PyYAML importable: the one installed, or else PyYAML installed from PyPI
/// into the target directory (once per test run), which `PYTHONPATH` then names.
fn python_with_yaml() -> Command {
    static EXTRA_PATH: OnceLock<Option<PathBuf>> = OnceLock::new();
    let extra = EXTRA_PATH.get_or_init(|| {
        let imports = |path: Option<&Path>| {
            let mut c = Command::new("python3");
            c.args(["-c", "import yaml"]);
            if let Some(p) = path {
                c.env("PYTHONPATH", p);
            }
            c.output().is_ok_and(|o| o.status.success())
        };
        if imports(None) {
            return None;
        }
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pyyaml");
        if !imports(Some(&target)) {
            eprintln!("note: installing PyYAML into {}", target.display());
            let out = Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--target",
                ])
                .arg(&target)
                .arg("pyyaml")
                .output()
                .expect("running python3 -m pip");
            assert!(
                out.status.success() && imports(Some(&target)),
                "cannot install PyYAML with pip:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Some(target)
    });
    let mut c = Command::new("python3");
    if let Some(p) = extra {
        c.env("PYTHONPATH", p);
    }
    c
}

/// The documents of a YAML file, as JSON values, parsed by PyYAML.
fn yaml_documents(path: &Path) -> Vec<serde_json::Value> {
    let out = python_with_yaml()
        .args([
            "-c",
            "import json, sys, yaml\nprint(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(path)
        .output()
        .expect("running python3");
    assert!(
        out.status.success(),
        "{} does not parse:\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from python")
}

/// `fc-init --check-config -c FILE`: its output, and the longest a stop takes, in seconds, from
/// its "# A stop takes at most ... = Ns;" line.
fn check_config(config: &Path) -> (String, u64) {
    let (code, out, err) = fc_init(Mode::Subreaper)
        .args(["--check-config", "-c", config.to_str().unwrap()])
        .output();
    assert_eq!(code, 0, "{} does not load: {err}", config.display());
    let line = out
        .lines()
        .find(|l| {
            l.starts_with(
                "# A stop takes at most pre_stop.timeout + drain_timeout + grace_period = ",
            )
        })
        .unwrap_or_else(|| panic!("no stop bound in --check-config's output:\n{out}"));
    let secs = line
        .split("= ")
        .nth(1)
        .and_then(|r| r.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number of seconds in {line:?}"));
    (out, secs)
}

#[test]
fn kubernetes_manifest_covers_a_whole_stop_and_probes_with_ctl_health() {
    let docs = yaml_documents(&repo("deploy/kubernetes/deployment.yaml"));
    let of_kind = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in the manifest"))
    };
    let config_map = of_kind("ConfigMap");
    let deployment = of_kind("Deployment");

    // The config the pod runs with is the ConfigMap's; it loads and serves.
    let dir = TempDir::new("k8s");
    let text = config_map["data"]["fc-init.toml"]
        .as_str()
        .expect("the ConfigMap holds fc-init.toml");
    let (effective, stop_bound) = check_config(&dir.write("fc-init.toml", text));
    let listen = effective
        .lines()
        .find_map(|l| l.strip_prefix("listen = \""))
        .unwrap_or_else(|| panic!("the ConfigMap's config does not serve:\n{effective}"));
    let port: u64 = listen
        .trim_end_matches('"')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    let pod = &deployment["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds is set");
    assert!(
        grace >= stop_bound,
        "terminationGracePeriodSeconds = {grace}, but a stop takes up to {stop_bound}s"
    );
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "{containers:?}");
    let c = &containers[0];
    let entrypoint = c["command"][0].as_str().expect("an explicit command");
    assert!(entrypoint.ends_with("/fc-init"), "entrypoint {entrypoint}");
    assert_eq!(
        c["readinessProbe"]["exec"]["command"],
        serde_json::json!(["fc-init", "ctl", "health"])
    );
    assert!(
        c["ports"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["containerPort"] == port)),
        "containerPort is not fc-init's listen port {port}: {:?}",
        c["ports"]
    );
    // fc-init and `fc-init ctl` find the config at the default path.
    let volume = pod["volumes"]
        .as_array()
        .and_then(|vs| {
            vs.iter()
                .find(|v| v["configMap"]["name"] == config_map["metadata"]["name"])
        })
        .expect("a volume of the ConfigMap");
    assert!(
        c["volumeMounts"].as_array().is_some_and(|ms| ms
            .iter()
            .any(|m| m["name"] == volume["name"] && m["mountPath"] == "/etc/fc-init")),
        "the ConfigMap is not mounted at /etc/fc-init: {:?}",
        c["volumeMounts"]
    );
}

#[test]
fn systemd_unit_is_type_notify_and_verifies() {
    let unit_path = repo("deploy/systemd/fc-init.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key}= is not set in the unit"))
    };
    assert_eq!(value("Type"), "notify");
    // SIGTERM to fc-init alone, so that PreStop runs before the function is stopped.
    assert_eq!(value("KillMode"), "mixed");
    let dir = TempDir::new("systemd");
    let (_, stop_bound) = check_config(&dir.write("defaults-and-prestop.toml", "[pre_stop]\n"));
    let stop: u64 = value("TimeoutStopSec")
        .parse()
        .expect("TimeoutStopSec in seconds");
    assert!(
        stop >= stop_bound,
        "TimeoutStopSec = {stop}, but a stop with the defaults takes up to {stop_bound}s"
    );

    if !have("systemd-analyze", "--version") {
        eprintln!("note: systemd-analyze is not installed here; the unit is not verified");
        return;
    }
    // verify checks that ExecStart's program exists: point it at the binary under test.
    let copy = dir.write(
        "fc-init.service",
        &unit.replace("/usr/local/bin/fc-init", bin()),
    );
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("running systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    // Lines about other units on this machine are not the recipe's concern.
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("fc-init.service"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {:?}\n{err}",
        out.status
    );
}
