//! Asynchronous invocations: durable submission, workers, retries, list/get/terminate through
//! `fc-init ctl`, crash recovery, retention; pipelined submissions (`pipelining`) and a store
//! that cannot take events (`unavailable`).

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use std::sync::{Arc, Mutex};

use crate::redis::RedisServer;
use crate::util::*;

const ASYNC: (&str, &str) = ("X-Fc-Invocation-Type", "Async");

/// Where an [`AsyncServer`] keeps its events: the SQLite file in its directory, or a queue
/// of its own on a real redis-server (the same contract holds on both: docs/reference.md §10).
#[derive(Clone)]
pub enum Backend {
    Sqlite,
    Redis(Arc<Mutex<RedisServer>>),
}

impl Backend {
    /// A redis-server of the test's own.
    pub fn redis(tag: &str) -> Backend {
        Backend::Redis(Arc::new(Mutex::new(RedisServer::start(tag))))
    }

    /// The `[async]` keys that select this backend (queue `queue` on Redis).
    pub fn keys(&self, queue: &str) -> String {
        match self {
            Backend::Sqlite => String::new(),
            Backend::Redis(r) => format!(
                "backend = \"redis\"\nredis_url = {:?}\nqueue = {queue:?}\n",
                r.lock().unwrap().url()
            ),
        }
    }
}

/// A test of the async contract, run on both backends: `$sqlite` on SQLite, `$redis` on Redis.
macro_rules! on_both {
    ($sqlite:ident, $redis:ident, $body:ident) => {
        #[test]
        fn $sqlite() {
            $body(Backend::Sqlite)
        }
        #[test]
        fn $redis() {
            $body(Backend::redis(stringify!($redis)))
        }
    };
}
pub(crate) use on_both;

pub struct AsyncServer {
    pub p: Proc,
    pub fx: FixtureConfig,
    cfg: std::path::PathBuf,
    dir: TempDir,
    _backend: Backend,
}

impl AsyncServer {
    /// [`AsyncServer::start_with`] in a queue of its own (named after `tag`), on SQLite when
    /// `backend` says so.
    pub fn start_on(backend: &Backend, tag: &str, sections: &str, async_keys: &str) -> AsyncServer {
        AsyncServer::start_with(backend, tag, tag, sections, async_keys, |_| {})
    }

    /// An fc-init on `backend` (on Redis in `queue`) with the fixture as its function, in a
    /// directory of its own; the SQLite store is `store/events.db` there. `async_keys` go into
    /// `[async]`; `sections` (whole sections) come before it; `prepare` runs on the directory
    /// before fc-init starts.
    pub fn start_with(
        backend: &Backend,
        queue: &str,
        tag: &str,
        sections: &str,
        async_keys: &str,
        prepare: impl FnOnce(&TempDir),
    ) -> AsyncServer {
        let dir = TempDir::new(tag);
        std::fs::create_dir_all(dir.path("store")).unwrap();
        prepare(&dir);
        let store = dir.path("store").join("events.db");
        let extra = format!(
            "{sections}\n[async]\nstore = {:?}\n{}{async_keys}",
            store.display().to_string(),
            backend.keys(queue),
        );
        let (cfg, fx) = FixtureConfig::write(&dir, &[], "", &extra);
        let s = AsyncServer::launch(fx, cfg, dir, backend.clone());
        let (_, status) = s.ctl(&["status"]);
        let want = match backend {
            Backend::Sqlite => "sqlite",
            Backend::Redis(_) => "redis",
        };
        assert_eq!(status["async"]["backend"], want, "{status}");
        s
    }

    /// Starts another fc-init on the same directory (same store, sockets and record).
    fn restart(self) -> AsyncServer {
        let AsyncServer {
            p,
            fx,
            cfg,
            dir,
            _backend,
        } = self;
        drop(p);
        AsyncServer::launch(fx, cfg, dir, _backend)
    }

    /// Starts fc-init on `cfg` (written in `dir`) and waits until it is ready.
    fn launch(
        fx: FixtureConfig,
        cfg: std::path::PathBuf,
        dir: TempDir,
        backend: Backend,
    ) -> AsyncServer {
        let p = fc_init(Mode::Subreaper)
            .args(["-c", cfg.to_str().unwrap()])
            .start();
        let s = AsyncServer {
            p,
            fx,
            cfg,
            dir,
            _backend: backend,
        };
        s.wait_ready();
        s
    }

    /// SIGKILLs this fc-init and its function (nothing gets to clean up), then starts
    /// another on the same directory.
    pub fn killed_and_restarted(self) -> AsyncServer {
        let p = kill_instance(self.p, &self.fx);
        AsyncServer { p, ..self }.restart()
    }

    pub fn wait_ready(&self) {
        wait_for("instance ready", || {
            // A socket file left by a killed fc-init refuses connections until the new one binds.
            (accepting(&self.fx.admin) && admin_get(&self.fx.admin, "/health").0 == 200)
                .then_some(())
        });
    }

    /// Submits an event; returns its request id.
    pub fn submit(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> String {
        let mut h = vec![ASYNC];
        h.extend_from_slice(headers);
        let (status, headers, body) = http(self.fx.port, "POST", path, &h, body);
        assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
        let id = header(&headers, "x-fc-request-id")
            .expect("x-fc-request-id")
            .to_owned();
        let json: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["requestId"], id.as_str());
        id
    }

    pub fn ctl(&self, args: &[&str]) -> (i32, Value) {
        let out = ctl_output(&self.fx.admin, args);
        let text = String::from_utf8_lossy(&out.stdout);
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("ctl {args:?} printed {text:?}: {e}"));
        (out.status.code().unwrap(), json)
    }

    pub fn get(&self, id: &str) -> Value {
        let (code, json) = self.ctl(&["events", "get", id]);
        assert_eq!(code, 0, "{json}");
        json
    }

    pub fn wait_status(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            let e = self.get(id);
            if e["status"] == status {
                return e;
            }
            if Instant::now() >= deadline {
                self.p
                    .fail(&format!("event {id} never reached {status}: {e}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn invokes_of(&self, id: &str) -> Vec<Value> {
        self.fx
            .requests("/invoke")
            .into_iter()
            .filter(|r| r["headers"]["x-fc-request-id"] == id)
            .collect()
    }
}

fn rfc3339_ms(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 24 && s.ends_with('Z') && s.as_bytes()[19] == b'.')
}

fn submit_and_follow_to_finished_on(b: Backend) {
    let s = AsyncServer::start_on(&b, "async-ok", "", "");
    let id = s.submit("/invoke?x=1", &[("x-custom", "kept")], b"payload-1");
    let e = s.wait_status(&id, "FINISHED");
    assert_eq!(e["requestId"], id.as_str());
    assert_eq!(e["invocationType"], "Async");
    assert_eq!(e["statusCode"], 200);
    assert_eq!(e["attempts"], 1);
    assert!(
        e["errorType"].is_null() && e["errorMessage"].is_null(),
        "{e}"
    );
    for key in ["submitTime", "startTime", "endTime"] {
        assert!(rfc3339_ms(&e[key]), "{key}: {e}");
    }
    assert!(e["durationMs"].as_u64().is_some(), "{e}");
    let runs = s.invokes_of(&id);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["query"], "x=1");
    assert_eq!(runs[0]["headers"]["x-custom"], "kept");
    assert_eq!(runs[0]["body_len"], 9);
    // The event ran through the normal path: FC Invoke lines with its id.
    s.p.expect_line("Invoke End", |l| {
        l == format!("FC Invoke End RequestId: {id}")
    });
}

fn resubmitting_an_id_runs_nothing_twice_on(b: Backend) {
    let s = AsyncServer::start_on(&b, "async-idem", "", "");
    let id = s.submit("/invoke", &[("x-fc-request-id", "same-id-1")], b"a");
    assert_eq!(id, "same-id-1");
    s.wait_status(&id, "FINISHED");
    assert_eq!(
        s.submit("/invoke", &[("x-fc-request-id", "same-id-1")], b"b"),
        "same-id-1"
    );
    // A later event proves the workers had the chance to run a duplicate.
    let later = s.submit("/invoke", &[], b"c");
    s.wait_status(&later, "FINISHED");
    assert_eq!(s.invokes_of("same-id-1").len(), 1);
}

fn failures_are_retried_then_failed_on(b: Backend) {
    let s = AsyncServer::start_on(&b, "async-fail", "", "max_retries = 2\n");
    let id = s.submit("/invoke", &[("x-test-status", "500")], b"");
    let e = s.wait_status(&id, "FAILED");
    assert_eq!(e["attempts"], 3, "{e}");
    assert_eq!(e["statusCode"], 500);
    assert_eq!(e["errorType"], "FunctionError");
    assert_eq!(s.invokes_of(&id).len(), 3);
    // x-fc-status: 404 from the function is a failure of an event invocation too.
    let id = s.submit("/invoke", &[("x-test-fc-status", "404")], b"");
    assert_eq!(s.wait_status(&id, "FAILED")["attempts"], 3);
}

fn list_filters_order_and_paging_on(b: Backend) {
    let s = AsyncServer::start_on(&b, "async-list", "", "");
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(s.submit("/invoke", &[("x-fc-request-id", &format!("list-{i}"))], b""));
    }
    let failing = s.submit("/invoke", &[("x-test-status", "500")], b"");
    for id in &ids {
        s.wait_status(id, "FINISHED");
    }
    s.wait_status(&failing, "FAILED");
    let (code, all) = s.ctl(&["events", "list", "--status", "FINISHED", "--limit", "2"]);
    assert_eq!(code, 0);
    assert_eq!(all["totalCount"], 5, "{all}");
    let page: Vec<_> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["requestId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(page, ["list-4", "list-3"], "newest first");
    let (_, next) = s.ctl(&[
        "events", "list", "--status", "FINISHED", "--limit", "2", "--offset", "2",
    ]);
    assert_eq!(next["events"][0]["requestId"], "list-2");
    let (_, failed) = s.ctl(&["events", "list", "--status", "FAILED,ABORTED"]);
    assert_eq!(failed["totalCount"], 1);
    assert_eq!(failed["events"][0]["requestId"], failing.as_str());
    let (code, asc) = admin_get(
        &s.fx.admin,
        "/async-events?order=asc&limit=1&requestId=list-0",
    );
    assert_eq!(code, 200);
    let asc: Value = serde_json::from_str(&asc).unwrap();
    assert_eq!(asc["totalCount"], 1);
    assert_eq!(asc["events"][0]["requestId"], "list-0");
    assert_eq!(admin_get(&s.fx.admin, "/async-events?limit=101").0, 400);
    assert_eq!(admin_get(&s.fx.admin, "/async-events?status=DONE").0, 400);
    let (code, _) = s.ctl(&["events", "get", "no-such-event"]);
    assert_eq!(code, 1);
    let (code, body) = admin_get(&s.fx.admin, "/metrics");
    assert_eq!(code, 200);
    assert!(
        body.contains("fc_init_async_events{status=\"FINISHED\"} 5"),
        "{body}"
    );
}

fn terminate_in_each_state_on(b: Backend) {
    let s = AsyncServer::start_on(&b, "async-term", "[initializer]", "max_concurrency = 1\n");
    let starts = |s: &AsyncServer| {
        s.fx.record()
            .iter()
            .filter(|r| r["event"] == "start")
            .count()
    };
    let started_before = starts(&s);
    // The single worker is held by a long event; the next one waits QUEUED.
    let running = s.submit("/invoke", &[("x-test-sleep", "30")], b"");
    s.wait_status(&running, "RUNNING");
    let queued = s.submit("/invoke", &[], b"");
    assert_eq!(s.get(&queued)["status"], "QUEUED");
    let (code, e) = s.ctl(&["events", "terminate", &queued]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(e["status"], "ABORTED");
    assert!(e["startTime"].is_null(), "{e}");
    // Forced terminate of a RUNNING event: the instance is killed, respawned and initialized.
    let old_pid = wait_for("the event reached the function", || {
        s.invokes_of(&running).first().cloned()
    })["pid"]
        .clone();
    let (code, e) = s.ctl(&["events", "terminate", &running]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(e["status"], "ABORTED");
    wait_for("a new instance", || {
        (starts(&s) > started_before).then_some(())
    });
    s.wait_ready();
    let after = s.submit("/invoke", &[], b"");
    s.wait_status(&after, "FINISHED");
    assert_ne!(
        s.invokes_of(&after)[0]["pid"],
        old_pid,
        "not a new instance"
    );
    assert_eq!(
        s.invokes_of(&queued).len(),
        0,
        "an aborted queued event ran"
    );
    // Ended and unknown events.
    let (code, e) = s.ctl(&["events", "terminate", &after]);
    assert_eq!(code, 1);
    assert_eq!(e["errorType"], "EventAlreadyEnded");
    let (code, e) = s.ctl(&["events", "terminate", "nope"]);
    assert_eq!(code, 1);
    assert_eq!(e["errorType"], "EventNotFound");
}

fn graceful_terminate_sends_sigterm_and_aborts_the_event_on(b: Backend) {
    let s = AsyncServer::start_on(&b, "async-grace", "", "");
    let id = s.submit("/invoke", &[("x-test-sleep", "30")], b"");
    s.wait_status(&id, "RUNNING");
    let pid = wait_for("the event reached the function", || {
        s.invokes_of(&id).first().cloned()
    })["pid"]
        .as_i64()
        .unwrap();
    let (code, e) = s.ctl(&["events", "terminate", &id, "--grace"]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(e["status"], "ABORTED");
    assert_eq!(e["errorMessage"], "User process exit when running");
    let term =
        s.fx.record()
            .into_iter()
            .find(|r| r["event"] == "signal" && r["signal"] == "SIGTERM" && r["pid"] == pid);
    assert!(term.is_some(), "the function did not get SIGTERM");
    s.wait_ready();
    let after = s.submit("/invoke", &[], b"");
    s.wait_status(&after, "FINISHED");
}

fn events_survive_sigkill_of_fc_init_and_all_finish_on(b: Backend) {
    let s = AsyncServer::start_on(&b, "async-crash", "", "max_concurrency = 4\n");
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(s.submit(
            "/invoke",
            &[
                ("x-fc-request-id", &format!("crash-{i}")),
                ("x-test-sleep", "0.2"),
            ],
            b"x",
        ));
    }
    wait_for("some events running", || {
        let (_, l) = s.ctl(&["events", "list", "--status", "RUNNING"]);
        (l["totalCount"].as_u64() > Some(0)).then_some(())
    });
    // SIGKILL fc-init and the function's process group: nothing gets to clean up.
    let p = kill_instance(s.p, &s.fx);
    let s = AsyncServer {
        p,
        fx: s.fx,
        cfg: s.cfg,
        dir: s.dir,
        _backend: s._backend,
    }
    .restart();
    let deadline = Instant::now() + WATCHDOG;
    loop {
        let (_, l) = s.ctl(&["events", "list", "--status", "FINISHED", "--limit", "0"]);
        if l["totalCount"] == 50 {
            break;
        }
        if Instant::now() >= deadline {
            let (_, all) = s.ctl(&["events", "list", "--limit", "100"]);
            s.p.fail(&format!("not all 50 finished: {all}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for id in &ids {
        assert!(!s.invokes_of(id).is_empty(), "{id} never ran");
    }
}

fn ended_events_are_forgotten_after_the_retention_on(b: Backend) {
    let s = AsyncServer::start_on(&b, "async-retention", "", "retention = \"1s\"\n");
    let id = s.submit("/invoke", &[], b"");
    s.wait_status(&id, "FINISHED");
    wait_for("the event to expire", || {
        (s.ctl(&["events", "get", &id]).0 == 1).then_some(())
    });
    let (_, e) = s.ctl(&["events", "get", &id]);
    assert_eq!(e["errorType"], "EventNotFound");
}

fn submission_limits_and_disabled_async_on(b: Backend) {
    let s = AsyncServer::start_on(
        &b,
        "async-limits",
        "",
        "max_payload = \"1KiB\"\nmax_queued = 1\nmax_concurrency = 1\n",
    );
    let (status, headers, _) = http(s.fx.port, "POST", "/invoke", &[ASYNC], &[b'x'; 2048]);
    assert_eq!(status, 413);
    assert_eq!(header(&headers, "x-fc-error-type"), Some("InvalidArgument"));
    let busy = s.submit("/invoke", &[("x-test-sleep", "30")], b"");
    s.wait_status(&busy, "RUNNING");
    s.submit("/invoke", &[], b"");
    let (status, headers, _) = http(s.fx.port, "POST", "/invoke", &[ASYNC], b"");
    assert_eq!(status, 429, "the store holds max_queued events");
    assert_eq!(header(&headers, "x-fc-error-type"), Some("TooManyRequests"));
    s.ctl(&["events", "terminate", &busy]);

    let dir = TempDir::new("async-off");
    let (cfg, fx) = FixtureConfig::write(&dir, &[], "", "[async]\nenabled = false\n");
    let mut p = fc_init(Mode::Subreaper)
        .args(["-c", cfg.to_str().unwrap()])
        .start();
    // The socket file exists a moment before it accepts: connecting then is refused.
    wait_for("ready", || {
        (accepting(&fx.admin) && admin_get(&fx.admin, "/health").0 == 200).then_some(())
    });
    let (status, headers, _) = http(fx.port, "POST", "/invoke", &[ASYNC], b"");
    assert_eq!(status, 400);
    assert_eq!(header(&headers, "x-fc-error-type"), Some("InvalidArgument"));
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(WATCHDOG), 0);
}

on_both!(
    submit_and_follow_to_finished,
    submit_and_follow_to_finished_on_redis,
    submit_and_follow_to_finished_on
);
on_both!(
    resubmitting_an_id_runs_nothing_twice,
    resubmitting_an_id_runs_nothing_twice_on_redis,
    resubmitting_an_id_runs_nothing_twice_on
);
on_both!(
    failures_are_retried_then_failed,
    failures_are_retried_then_failed_on_redis,
    failures_are_retried_then_failed_on
);
on_both!(
    list_filters_order_and_paging,
    list_filters_order_and_paging_on_redis,
    list_filters_order_and_paging_on
);
on_both!(
    terminate_in_each_state,
    terminate_in_each_state_on_redis,
    terminate_in_each_state_on
);
on_both!(
    graceful_terminate_sends_sigterm_and_aborts_the_event,
    graceful_terminate_sends_sigterm_and_aborts_the_event_on_redis,
    graceful_terminate_sends_sigterm_and_aborts_the_event_on
);
on_both!(
    events_survive_sigkill_of_fc_init_and_all_finish,
    events_survive_sigkill_of_fc_init_and_all_finish_on_redis,
    events_survive_sigkill_of_fc_init_and_all_finish_on
);
on_both!(
    ended_events_are_forgotten_after_the_retention,
    ended_events_are_forgotten_after_the_retention_on_redis,
    ended_events_are_forgotten_after_the_retention_on
);
on_both!(
    submission_limits_and_disabled_async,
    submission_limits_and_disabled_async_on_redis,
    submission_limits_and_disabled_async_on
);

mod pipelining;
mod unavailable;
