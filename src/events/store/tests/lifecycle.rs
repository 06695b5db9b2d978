//! The store's lifecycle of an event: reopened, recovered, claimed, finished, retried,
//! aborted, purged and counted.

use super::*;

#[test]
fn submitted_event_survives_reopen_with_its_request() {
    let dir = TempDir::new("reopen");
    {
        let store = open(&dir);
        assert_eq!(submit(&store, "ev-1", 1000), Submitted::Created);
    }
    let store = open(&dir);
    assert_eq!(store.recovered_at_open(), 0);
    let ev = store.get("ev-1").unwrap().expect("event survives reopen");
    assert_eq!(ev.status, Status::Queued);
    assert_eq!(ev.submit_time, 1000);
    assert_eq!(ev.attempts, 0);
    let claimed = store.claim_next(2000).unwrap().expect("claimable");
    assert_eq!(claimed.request, new_event("ev-1", 1000).request);
    assert_eq!(claimed.event.status, Status::Running);
    assert_eq!(claimed.event.start_time, Some(2000));
    assert_eq!(claimed.event.attempts, 1);
}

#[test]
fn store_file_is_created_mode_0600() {
    let dir = TempDir::new("mode");
    let _store = open(&dir);
    let mode = std::fs::metadata(dir.db()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let wal = dir.0.join("events.db-wal");
    let mode = std::fs::metadata(wal).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "SQLite copies the database's mode to the WAL"
    );
}

#[test]
fn running_events_go_back_to_queued_on_reopen() {
    let dir = TempDir::new("recover");
    {
        let store = open(&dir);
        submit(&store, "a", 1);
        submit(&store, "b", 2);
        submit(&store, "c", 3);
        assert_eq!(store.claim_next(10).unwrap().unwrap().event.request_id, "a");
        assert_eq!(store.claim_next(10).unwrap().unwrap().event.request_id, "b");
        // Dropped with a and b RUNNING: as if fc-init was killed.
    }
    let store = open(&dir);
    assert_eq!(store.recovered_at_open(), 2);
    let a = store.get("a").unwrap().unwrap();
    assert_eq!(a.status, Status::Queued);
    assert_eq!(a.attempts, 1, "the interrupted attempt stays counted");
    assert_eq!(a.start_time, Some(10));
    // They run again, oldest first, and the first start time is kept.
    let again = store.claim_next(20).unwrap().unwrap().event;
    assert_eq!((again.request_id.as_str(), again.attempts), ("a", 2));
    assert_eq!(again.start_time, Some(10));
}

#[test]
fn requeue_running_requeues_and_wakes_workers() {
    let dir = TempDir::new("requeue");
    let store = open(&dir);
    submit(&store, "a", 1);
    store.claim_next(5).unwrap().unwrap();
    let seen = store.work_seq();
    assert_eq!(store.requeue_running().unwrap(), 1);
    assert!(store.wait_for_work(seen, Duration::ZERO));
    assert_eq!(store.get("a").unwrap().unwrap().status, Status::Queued);
    assert_eq!(store.requeue_running().unwrap(), 0);
}

#[test]
fn reconcile_works_on_the_bundled_sqlite_without_json_functions() {
    // It used json_each, which the bundled SQLite leaves out: every start logged "no such
    // table: json_each" and left events RUNNING that no worker held.
    let dir = TempDir::new("reconcile");
    let store = open(&dir);
    for (id, t) in [("held", 1), ("orphan", 2), ("queued", 3)] {
        submit(&store, id, t);
    }
    store.claim_next(5).unwrap().unwrap();
    store.claim_next(5).unwrap().unwrap();
    assert_eq!(store.reconcile(&["held".to_owned()], 10).unwrap(), 1);
    assert_eq!(store.get("held").unwrap().unwrap().status, Status::Running);
    assert_eq!(store.get("orphan").unwrap().unwrap().status, Status::Queued);
    assert_eq!(store.reconcile(&["held".to_owned()], 10).unwrap(), 0);
    assert_eq!(store.reconcile(&[], 10).unwrap(), 1);
}

#[test]
fn abort_in_each_state() {
    let dir = TempDir::new("abort");
    let store = open(&dir);
    assert_eq!(
        store.abort_queued("nope", 1).unwrap(),
        AbortResult::NotFound
    );
    assert_eq!(
        store.mark_aborted("nope", None, 1).unwrap(),
        AbortResult::NotFound
    );

    // QUEUED → ABORTED, never started, never claimed afterwards.
    submit(&store, "q", 10);
    let seen = store.ended_seq();
    match store.abort_queued("q", 50).unwrap() {
        AbortResult::Aborted(ev) => {
            assert_eq!(ev.status, Status::Aborted);
            assert_eq!(ev.start_time, None, "startTime stays null");
            assert_eq!(ev.end_time, Some(50));
            assert_eq!(ev.duration_ms, Some(0));
            assert_eq!(ev.attempts, 0);
        }
        other => panic!("{other:?}"),
    }
    assert!(store.wait_for_ended(seen, Duration::ZERO));
    assert!(store.claim_next(100).unwrap().is_none());
    assert!(matches!(
        store.abort_queued("q", 60).unwrap(),
        AbortResult::AlreadyEnded(_)
    ));

    // RUNNING: abort_queued leaves it; mark_aborted ends it; the worker's finish is dropped.
    submit(&store, "r", 20);
    store.claim_next(100).unwrap().unwrap();
    match store.abort_queued("r", 150).unwrap() {
        AbortResult::Running(ev) => assert_eq!(ev.status, Status::Running),
        other => panic!("{other:?}"),
    }
    match store
        .mark_aborted("r", Some("User process exit when running"), 175)
        .unwrap()
    {
        AbortResult::Aborted(ev) => {
            assert_eq!(ev.start_time, Some(100));
            assert_eq!(ev.duration_ms, Some(75));
            assert_eq!(
                ev.error_message.as_deref(),
                Some("User process exit when running")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.finish("r", &ok_outcome(200)).unwrap(), None);
    assert_eq!(store.get("r").unwrap().unwrap().status, Status::Aborted);

    // FINISHED: already ended for both.
    submit(&store, "f", 30);
    store.claim_next(300).unwrap().unwrap();
    store.finish("f", &ok_outcome(310)).unwrap().unwrap();
    assert!(matches!(
        store.abort_queued("f", 400).unwrap(),
        AbortResult::AlreadyEnded(ev) if ev.status == Status::Finished
    ));
    assert!(matches!(
        store.mark_aborted("f", None, 400).unwrap(),
        AbortResult::AlreadyEnded(_)
    ));
}

#[test]
fn finish_records_the_outcome_and_rejects_non_final_statuses() {
    let dir = TempDir::new("finish");
    let store = open(&dir);
    submit(&store, "x", 1);
    store.claim_next(1000).unwrap().unwrap();
    let failed = Outcome {
        status: Status::Failed,
        status_code: Some(500),
        error_type: Some("UnhandledInvocationError".into()),
        error_message: Some("boom".into()),
        end: 1500,
        answer: None,
    };
    let ev = store.finish("x", &failed).unwrap().unwrap();
    assert_eq!(ev.status, Status::Failed);
    assert_eq!(ev.duration_ms, Some(500));
    assert_eq!(ev.status_code, Some(500));
    assert_eq!(ev.error_type.as_deref(), Some("UnhandledInvocationError"));
    assert_eq!(store.finish("x", &ok_outcome(1600)).unwrap(), None);
    let bad = Outcome {
        status: Status::Queued,
        ..ok_outcome(1)
    };
    assert!(matches!(
        store.finish("x", &bad),
        Err(StoreError::InvalidStatus { .. })
    ));
}

#[test]
fn retry_later_requeues_with_backoff() {
    let dir = TempDir::new("retry");
    let store = open(&dir);
    submit(&store, "a", 100);
    submit(&store, "b", 200);
    let a = store.claim_next(1000).unwrap().unwrap().event;
    assert_eq!(a.request_id, "a");
    let seen = store.work_seq();
    assert!(store
        .retry_later("a", 5000, Some(503), Some("X"), Some("busy"))
        .unwrap());
    assert!(
        store.wait_for_work(seen, Duration::ZERO),
        "retry wakes workers"
    );
    let a = store.get("a").unwrap().unwrap();
    assert_eq!(
        (a.status, a.next_attempt_at, a.status_code),
        (Status::Queued, 5000, Some(503))
    );
    // Not due yet: b goes first, then nothing until 5000.
    assert_eq!(
        store.claim_next(1000).unwrap().unwrap().event.request_id,
        "b"
    );
    assert!(store.claim_next(4999).unwrap().is_none());
    assert_eq!(store.next_due().unwrap(), Some(5000));
    let a = store.claim_next(5000).unwrap().unwrap().event;
    assert_eq!((a.request_id.as_str(), a.attempts), ("a", 2));
    assert_eq!(a.start_time, Some(1000), "first start time is kept");
    assert!(!store.retry_later("nope", 1, None, None, None).unwrap());
}

#[test]
fn purge_drops_only_ended_events_past_retention() {
    let dir = TempDir::new("purge");
    let store = Store::open(
        &dir.db(),
        StoreOptions {
            max_queued: 0,
            retention: Duration::from_millis(1000),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    for id in ["old", "recent", "queued", "running"] {
        submit(&store, id, 0);
    }
    store.claim_next(1).unwrap(); // old
    store.finish("old", &ok_outcome(100)).unwrap().unwrap();
    store.claim_next(1).unwrap(); // recent
    store.finish("recent", &ok_outcome(900)).unwrap().unwrap();
    store.claim_next(1).unwrap(); // queued → running; put it back
    store.requeue_running().unwrap();
    store.abort_queued("running", 50).unwrap(); // an ended, old abort
    assert_eq!(store.purge_expired(1500).unwrap(), 2); // old (100) and running (50)
    assert!(store.get("old").unwrap().is_none());
    assert!(store.get("running").unwrap().is_none());
    assert!(store.get("recent").unwrap().is_some());
    assert!(
        store.get("queued").unwrap().is_some(),
        "unended events are never purged"
    );
    assert_eq!(
        store.purge_expired(1900).unwrap(),
        0,
        "900 + 1000 is not past"
    );
    assert_eq!(store.purge_expired(1901).unwrap(), 1);
    assert_eq!(store.purge_expired(1_000_000).unwrap(), 0);
}

#[test]
fn counts_by_status_covers_every_status() {
    let dir = TempDir::new("counts");
    let store = open(&dir);
    for id in ["a", "b", "c", "d"] {
        submit(&store, id, 1);
    }
    store.claim_next(2).unwrap();
    store.abort_queued("d", 3).unwrap();
    let counts = store.counts_by_status().unwrap();
    assert_eq!(
        counts,
        [
            (Status::Queued, 2),
            (Status::Running, 1),
            (Status::Finished, 0),
            (Status::Failed, 0),
            (Status::Aborted, 1),
            (Status::Expired, 0),
        ]
    );
}

#[test]
fn wait_for_work_wakes_on_submit_and_times_out_otherwise() {
    let dir = TempDir::new("wait");
    let store = open(&dir);
    let seen = store.work_seq();
    let start = Instant::now();
    assert!(!store.wait_for_work(seen, Duration::from_millis(50)));
    assert!(start.elapsed() >= Duration::from_millis(50));
    thread::scope(|s| {
        let waiter = s.spawn(|| store.wait_for_work(seen, Duration::from_secs(30)));
        submit(&store, "w", 1);
        assert!(
            waiter.join().unwrap(),
            "woken by the submission, not the timeout"
        );
    });
    // A submission between work_seq and wait_for_work is not lost.
    let seen = store.work_seq();
    submit(&store, "w2", 1);
    assert!(store.wait_for_work(seen, Duration::from_secs(30)));
    // An existing id is no new work.
    let seen = store.work_seq();
    submit(&store, "w2", 1);
    assert!(!store.wait_for_work(seen, Duration::from_millis(1)));
}

/// The in-memory count of QUEUED events must equal the table's after every kind of transition,
/// and across a reopen.
#[test]
fn queued_count_follows_every_transition() {
    let dir = TempDir::new("queued-count");
    let store = open(&dir);
    let counted = |store: &Store| -> u64 {
        let conn = lock(&store.reader);
        let n: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM events WHERE status = 'QUEUED'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        n as u64
    };
    let check = |store: &Store, what: &str| {
        assert_eq!(
            store.queued.load(Ordering::Relaxed),
            counted(store),
            "after {what}"
        );
    };
    for i in 0..6 {
        submit(&store, &format!("q-{i}"), 1000 + i);
    }
    submit(&store, "q-0", 2000);
    check(&store, "submissions and a duplicate");
    let a = store.claim_next(5000).unwrap().unwrap().event.request_id;
    let b = store.claim_next(5000).unwrap().unwrap().event.request_id;
    check(&store, "claims");
    assert!(store
        .retry_later(&a, 6000, Some(500), Some("E"), Some("m"))
        .unwrap());
    check(&store, "a retry");
    store.finish(&b, &ok_outcome(7000)).unwrap();
    check(&store, "a finish");
    assert!(matches!(
        store.abort_queued("q-5", 8000).unwrap(),
        AbortResult::Aborted(_)
    ));
    check(&store, "aborting a queued event");
    let c = store.claim_next(9000).unwrap().unwrap().event.request_id;
    assert!(matches!(
        store.mark_aborted(&c, None, 9500).unwrap(),
        AbortResult::Aborted(_)
    ));
    assert!(matches!(
        store.mark_aborted("q-4", None, 9600).unwrap(),
        AbortResult::Aborted(_)
    ));
    check(&store, "aborting running and queued events");
    store.claim_next(10_000).unwrap().unwrap();
    assert_eq!(store.requeue_running().unwrap(), 1);
    check(&store, "requeue");
    store.claim_next(11_000).unwrap().unwrap();
    drop(store);
    let store = open(&dir);
    check(&store, "reopen");
}
