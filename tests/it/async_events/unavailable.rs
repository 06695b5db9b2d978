//! A store that cannot take events: 503 for submissions, the rest untouched, and the running
//! events recorded once it works again.

use super::*;

/// What makes a store unavailable in the failure tests, and what mends it: a full file system
/// under the SQLite store (a 2 MiB tmpfs, filled up), or Redis stopped.
enum Outage {
    /// The tmpfs's mount point and the file that fills it.
    Disk(std::path::PathBuf, std::path::PathBuf),
    Redis(Arc<Mutex<RedisServer>>),
}

impl Outage {
    fn begin(&self) {
        match self {
            Outage::Disk(_, filler) => {
                use std::io::Write;
                let mut f = std::fs::File::create(filler).unwrap();
                let chunk = vec![0u8; 16 * 1024];
                while f.write_all(&chunk).is_ok() {}
                let _ = f.sync_all();
            }
            Outage::Redis(r) => r.lock().unwrap().stop(),
        }
    }

    fn end(&self) {
        match self {
            Outage::Disk(_, filler) => std::fs::remove_file(filler).unwrap(),
            Outage::Redis(r) => r.lock().unwrap().restart(),
        }
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if let Outage::Disk(mount, _) = self {
            let _ = Command::new("umount").arg("-l").arg(mount).status();
        }
    }
}

/// A store that cannot take events (issue 11: a full disk under SQLite gave 500 and left an
/// event RUNNING forever, whose later terminate killed a healthy function): submissions get
/// 503 `AsyncStoreUnavailable` and nothing is acknowledged, synchronous traffic and health
/// are untouched, the event that was running when the store failed is recorded once it works
/// again, new events run, and a terminate then kills nothing.
fn an_unavailable_store_answers_503_and_records_the_running_events_once_back_on(b: Backend) {
    let mut mounted = None;
    let prepare = |dir: &TempDir| {
        if let Backend::Sqlite = b {
            let store = dir.path("store");
            let out = Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
                .arg(&store)
                .output()
                .unwrap();
            if out.status.success() {
                mounted = Some(Outage::Disk(store.clone(), store.join("filler")));
            } else {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs for the full-disk test: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
    };
    let s = AsyncServer::start_with(&b, "async-outage", "async-outage", "", "", prepare);
    let outage = match &b {
        Backend::Redis(r) => Outage::Redis(r.clone()),
        Backend::Sqlite => match mounted {
            Some(outage) => outage,
            None => return,
        },
    };
    let starts = |s: &AsyncServer| {
        s.fx.record()
            .iter()
            .filter(|r| r["event"] == "start")
            .count()
    };
    let started = starts(&s);
    let running = s.submit("/invoke", &[("x-test-sleep", "1.5")], b"");
    wait_for("the event reached the function", || {
        s.invokes_of(&running).first().cloned()
    });
    outage.begin();
    let (status, headers, body) = http(s.fx.port, "POST", "/invoke", &[ASYNC], b"refused");
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        header(&headers, "x-fc-error-type"),
        Some("AsyncStoreUnavailable")
    );
    let refused = header(&headers, "x-fc-request-id").unwrap().to_owned();
    let (status, _, _) = http(s.fx.port, "GET", "/sync", &[], b"");
    assert_eq!(status, 200, "synchronous traffic is untouched");
    assert_eq!(
        admin_get(&s.fx.admin, "/health").0,
        200,
        "health stays ready"
    );
    // The running event's attempt ends while the store is down...
    s.p.expect_line("the running event's Invoke End", |l| {
        l == format!("FC Invoke End RequestId: {running}")
    });
    outage.end();
    // The store reconnects with backoff...
    wait_for("the store to answer again", || {
        (s.ctl(&["events", "list", "--limit", "0"]).0 == 0).then_some(())
    });
    // ...and the event is recorded once it is back.
    let e = s.wait_status(&running, "FINISHED");
    assert_eq!(e["attempts"], 1, "{e}");
    let after = s.submit("/invoke", &[], b"after");
    s.wait_status(&after, "FINISHED");
    let (code, e) = s.ctl(&["events", "get", &refused]);
    assert_eq!(code, 1, "a refused submission was stored: {e}");
    let (code, e) = s.ctl(&["events", "terminate", &running]);
    assert_eq!(code, 1, "{e}");
    assert_eq!(e["errorType"], "EventAlreadyEnded");
    assert_eq!(starts(&s), started, "the function was killed");
    assert_eq!(s.invokes_of(&running).len(), 1);
}

on_both!(
    an_unavailable_store_answers_503_and_records_the_running_events_once_back,
    an_unavailable_store_answers_503_and_records_the_running_events_once_back_on_redis,
    an_unavailable_store_answers_503_and_records_the_running_events_once_back_on
);
