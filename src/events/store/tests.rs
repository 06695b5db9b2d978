//! Tests of the event store on real files (and, where mounting is permitted, on tiny or
//! read-only tmpfs mounts).

use super::*;
use crate::events::model::DeliveryStatus;
use std::os::unix::fs::PermissionsExt;
use std::sync::Barrier;
use std::thread;

mod support;
use support::*;

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
fn concurrent_duplicate_submissions_store_one_row() {
    let dir = TempDir::new("dup");
    let store = open(&dir);
    let threads = 32;
    let barrier = Barrier::new(threads);
    let results: Vec<Submitted> = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    submit(&store, "same-id", 42)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created = results.iter().filter(|r| **r == Submitted::Created).count();
    assert_eq!(created, 1, "{results:?}");
    for r in &results {
        if let Submitted::AlreadyExists(ev) = r {
            assert_eq!(ev.request_id, "same-id");
        }
    }
    let (total, _) = store.list(&ListQuery::default()).unwrap();
    assert_eq!(total, 1);
    // Exactly one claim: nothing runs twice.
    assert!(store.claim_next(100).unwrap().is_some());
    assert!(store.claim_next(100).unwrap().is_none());
    // A late duplicate sees the event as it is now.
    match submit(&store, "same-id", 43) {
        Submitted::AlreadyExists(ev) => assert_eq!(ev.status, Status::Running),
        other => panic!("{other:?}"),
    }
}

#[test]
fn group_commit_shares_transactions_between_threads() {
    let dir = TempDir::new("group");
    let store = open(&dir);
    let (threads, per_thread) = (64, 10);
    let barrier = Barrier::new(threads);
    thread::scope(|s| {
        for t in 0..threads {
            let (store, barrier) = (&store, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..per_thread {
                    assert_eq!(submit(store, &format!("g-{t}-{i}"), 1), Submitted::Created);
                }
            });
        }
    });
    let stats = store.stats();
    let n = (threads * per_thread) as u64;
    assert_eq!(stats.submissions, n);
    eprintln!("{n} submissions in {} commits", stats.batches);
    assert!(
        stats.batches * 4 < n,
        "{} commits for {n} submissions: not batching",
        stats.batches
    );
    let counts = store.counts_by_status().unwrap();
    assert_eq!(counts[0], (Status::Queued, n));
}

#[test]
fn max_queued_gives_full_but_known_ids_still_answer() {
    let dir = TempDir::new("full");
    let store = Store::open(
        &dir.db(),
        StoreOptions {
            max_queued: 2,
            ..opts()
        },
    )
    .unwrap();
    submit(&store, "a", 1);
    submit(&store, "b", 2);
    match store.submit(new_event("c", 3)) {
        Err(StoreError::Full { max_queued: 2 }) => {}
        other => panic!("{other:?}"),
    }
    assert!(store.get("c").unwrap().is_none());
    // A retry of an accepted id is a 202, not a 429.
    assert!(matches!(
        submit(&store, "a", 4),
        Submitted::AlreadyExists(_)
    ));
    // RUNNING events do not count against the limit.
    store.claim_next(10).unwrap().unwrap();
    assert_eq!(submit(&store, "c", 5), Submitted::Created);
}

#[test]
fn invalid_request_ids_are_refused() {
    let dir = TempDir::new("badid");
    let store = open(&dir);
    for id in ["", "has space", "slash/", &"x".repeat(129), "é"] {
        assert!(
            matches!(
                store.submit(new_event(id, 1)),
                Err(StoreError::InvalidRequestId { .. })
            ),
            "{id:?}"
        );
    }
    assert_eq!(
        submit(&store, &"x".repeat(128), 1),
        Submitted::Created,
        "128 characters is the maximum, not beyond it"
    );
    assert_eq!(submit(&store, "A-z_0.9:x", 1), Submitted::Created);
}

#[test]
fn list_filters_orders_pages_and_counts() {
    let dir = TempDir::new("list");
    let store = open(&dir);
    for i in 0..10u64 {
        submit(&store, &format!("e{i}"), 1000 + i);
    }
    // e0 RUNNING, e1 FINISHED, e2 ABORTED; the rest QUEUED.
    store.claim_next(2000).unwrap();
    store.claim_next(2000).unwrap();
    store.finish("e1", &ok_outcome(2100)).unwrap().unwrap();
    store.abort_queued("e2", 2200).unwrap();

    let ids = |events: &[Event]| {
        events
            .iter()
            .map(|e| e.request_id.clone())
            .collect::<Vec<_>>()
    };
    let (total, page) = store.list(&ListQuery::default()).unwrap();
    assert_eq!(total, 10);
    assert_eq!(
        ids(&page)[..3],
        ["e9", "e8", "e7"],
        "newest first by default"
    );

    let q = ListQuery {
        order: Order::Asc,
        offset: 2,
        limit: 3,
        ..ListQuery::default()
    };
    let (total, page) = store.list(&q).unwrap();
    assert_eq!(total, 10, "total ignores offset and limit");
    assert_eq!(ids(&page), ["e2", "e3", "e4"]);

    let q = ListQuery {
        statuses: vec![Status::Running, Status::Finished],
        ..ListQuery::default()
    };
    let (total, page) = store.list(&q).unwrap();
    assert_eq!((total, ids(&page)), (2, vec!["e1".into(), "e0".into()]));

    let q = ListQuery {
        request_id: Some("e5".into()),
        ..ListQuery::default()
    };
    assert_eq!(store.list(&q).unwrap().0, 1);
    let q = ListQuery {
        request_id: Some("e".into()),
        ..ListQuery::default()
    };
    assert_eq!(store.list(&q).unwrap().0, 0, "request id matches exactly");

    let q = ListQuery {
        since: Some(1003),
        until: Some(1006),
        order: Order::Asc,
        ..ListQuery::default()
    };
    let (total, page) = store.list(&q).unwrap();
    assert_eq!(
        (total, ids(&page)),
        (3, vec!["e3".into(), "e4".into(), "e5".into()])
    );

    let q = ListQuery {
        limit: 1000,
        ..ListQuery::default()
    };
    assert_eq!(store.list(&q).unwrap().1.len(), 10);
    let q = ListQuery {
        limit: 0,
        ..ListQuery::default()
    };
    assert_eq!(store.list(&q).unwrap(), (10, vec![]));
    let q = ListQuery {
        offset: 50,
        ..ListQuery::default()
    };
    assert_eq!(store.list(&q).unwrap(), (10, vec![]));
}

#[test]
fn list_limit_is_capped_at_100() {
    let dir = TempDir::new("cap");
    let store = open(&dir);
    thread::scope(|s| {
        for t in 0..4 {
            let store = &store;
            s.spawn(move || {
                for i in 0..30 {
                    submit(store, &format!("c{t}-{i}"), 1);
                }
            });
        }
    });
    let q = ListQuery {
        limit: 500,
        ..ListQuery::default()
    };
    let (total, page) = store.list(&q).unwrap();
    assert_eq!((total, page.len()), (120, 100));
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
fn event_json_has_the_contract_shape() {
    let queued = Event {
        request_id: "req-1".into(),
        status: Status::Queued,
        submit_time: 1_795_300_423_123,
        start_time: None,
        end_time: None,
        duration_ms: None,
        status_code: None,
        attempts: 0,
        error_type: None,
        error_message: None,
        next_attempt_at: 0,
        function_name: "f".into(),
        qualifier: "LATEST".into(),
        ..Event::default()
    };
    assert_eq!(
        queued.to_json(),
        r#"{"requestId":"req-1","status":"QUEUED","invocationType":"Async","submitTime":"2026-11-21T22:33:43.123Z","startTime":null,"endTime":null,"durationMs":null,"statusCode":null,"attempts":0,"errorType":null,"errorMessage":null,"functionName":"f","qualifier":"LATEST","notBefore":null,"result":null,"destination":null}"#
    );
    let failed = Event {
        status: Status::Failed,
        start_time: Some(1_795_300_423_200),
        end_time: Some(1_795_300_424_000),
        duration_ms: Some(800),
        status_code: Some(502),
        attempts: 4,
        error_type: Some("UnhandledInvocationError".into()),
        error_message: Some("said \"no\"\\\n\u{1}\u{2028}é".into()),
        ..queued.clone()
    };
    assert_eq!(
        failed.to_json(),
        r#"{"requestId":"req-1","status":"FAILED","invocationType":"Async","submitTime":"2026-11-21T22:33:43.123Z","startTime":"2026-11-21T22:33:43.200Z","endTime":"2026-11-21T22:33:44.000Z","durationMs":800,"statusCode":502,"attempts":4,"errorType":"UnhandledInvocationError","errorMessage":"said \"no\"\\\n\u0001\u2028é","functionName":"f","qualifier":"LATEST","notBefore":null,"result":null,"destination":null}"#
    );
    assert_eq!(
        list_to_json(7, &[queued.clone(), queued.clone()]),
        format!(
            "{{\"totalCount\":7,\"events\":[{},{}]}}",
            queued.to_json(),
            queued.to_json()
        )
    );
    assert_eq!(list_to_json(0, &[]), r#"{"totalCount":0,"events":[]}"#);
}

#[test]
fn headers_round_trip_any_bytes() {
    let headers = vec![
        ("a".to_string(), vec![]),
        (String::new(), b"x".to_vec()),
        ("b".to_string(), (0..=255).collect()),
    ];
    assert_eq!(decode_headers(&encode_headers(&headers)), Some(headers));
    assert_eq!(decode_headers(&[]), Some(vec![]));
    assert_eq!(decode_headers(&[1, 0, 0]), None, "truncated length");
    assert_eq!(decode_headers(&[5, 0, 0, 0, b'a']), None, "truncated part");
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

#[test]
fn a_second_open_of_the_same_file_is_locked_out() {
    let dir = TempDir::new("lock");
    let first = open(&dir);
    match Store::open(&dir.db(), opts()) {
        Err(StoreError::Locked { path }) => assert_eq!(path, dir.db()),
        other => panic!("{other:?}"),
    }
    drop(first);
    let _again = open(&dir);
}

#[test]
fn open_errors_name_the_path_and_do_not_panic() {
    let dir = TempDir::new("openerr");
    let missing = dir.0.join("no/such/dir/events.db");
    match Store::open(&missing, opts()) {
        Err(err @ StoreError::OpenFile { .. }) => {
            assert!(err.to_string().contains("no/such/dir"), "{err}");
            assert!(std::error::Error::source(&err).is_some());
        }
        other => panic!("{other:?}"),
    }
    // A directory where the file should be.
    assert!(matches!(
        Store::open(&dir.0, opts()),
        Err(StoreError::OpenFile { .. })
    ));
    // A file that is not a database.
    let junk = dir.0.join("junk.db");
    std::fs::write(&junk, vec![b'j'; 8192]).unwrap();
    match Store::open(&junk, opts()) {
        Err(StoreError::Sqlite { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = TempDir::new("schema");
    drop(open(&dir));
    Connection::open(dir.db())
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    match reopen(&dir.db(), opts()) {
        Err(StoreError::SchemaTooNew { found, .. }) => assert_eq!(found, SCHEMA_VERSION + 1),
        other => panic!("{other:?}"),
    }
}

/// SQLITE_FULL through `max_page_count`: the same error path as a full disk, on any machine.
#[test]
fn a_full_database_is_a_disk_error_and_the_store_recovers() {
    let dir = TempDir::new("pagefull");
    let store = open(&dir);
    submit(&store, "before", 1);
    let pages: i64 = {
        let conn = lock(&store.writer);
        conn.pragma_query_value(None, "page_count", |row| row.get(0))
            .unwrap()
    };
    store.set_max_page_count(u64::try_from(pages).unwrap() + 2);
    let mut big = new_event("big", 2);
    big.request.body = vec![7; 64 * 1024];
    match store.submit(big.clone()) {
        Err(err @ StoreError::Disk { .. }) => {
            assert!(err.to_string().contains("disk full"), "{err}")
        }
        other => panic!("{other:?}"),
    }
    assert!(store.get("big").unwrap().is_none(), "no false success");
    assert!(store.get("before").unwrap().is_some());
    // Other operations still work while full (they need no new pages).
    assert!(store.claim_next(3).unwrap().is_some());
    store.set_max_page_count(1 << 30);
    assert_eq!(store.submit(big).unwrap(), Submitted::Created);
}

/// A real full file system, where this process may mount a tmpfs.
#[test]
fn a_full_filesystem_fails_submissions_cleanly() {
    let dir = TempDir::new("tmpfsfull");
    let Some(_mount) = Mount::tmpfs(&dir.0, "size=1m") else {
        return;
    };
    // Take most of the space up front, so we can free it again afterwards.
    let filler = dir.0.join("filler");
    std::fs::write(&filler, vec![0u8; 512 * 1024]).unwrap();
    let store = open(&dir);
    let mut created = Vec::new();
    let mut failure = None;
    for i in 0..200 {
        let mut ev = new_event(&format!("f{i}"), i);
        ev.request.body = vec![1; 16 * 1024];
        match store.submit(ev) {
            Ok(Submitted::Created) => created.push(format!("f{i}")),
            Ok(other) => panic!("{other:?}"),
            Err(e) => {
                failure = Some((i, e));
                break;
            }
        }
    }
    let (failed_at, err) = failure.expect("a 1 MiB file system fills up");
    eprintln!("full after {} events: {err}", created.len());
    assert!(matches!(err, StoreError::Disk { .. }), "{err:?}");
    let failed_id = format!("f{failed_at}");
    assert!(store.get(&failed_id).unwrap().is_none(), "no false success");
    assert_eq!(
        store.counts_by_status().unwrap()[0].1,
        created.len() as u64,
        "reads still work"
    );
    // Free space: the same store accepts submissions again.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(submit(&store, "after", 1), Submitted::Created);
    drop(store);
    let store = open(&dir);
    for id in created.iter().chain(std::iter::once(&"after".to_string())) {
        assert!(store.get(id).unwrap().is_some(), "{id} lost");
    }
    assert!(store.get(&failed_id).unwrap().is_none());
}

/// Read-only file systems: creating the store fails, and so does opening an existing one
/// for writing (rather than SQLite silently falling back to read-only).
#[test]
fn a_read_only_filesystem_gives_open_errors() {
    let dir = TempDir::new("rofs");
    let Some(mount) = Mount::tmpfs(&dir.0, "size=4m") else {
        return;
    };
    drop(open(&dir));
    mount.remount("remount,ro");
    match Store::open(&dir.db(), opts()) {
        Err(StoreError::OpenFile { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(libc::EROFS))
        }
        other => panic!("{other:?}"),
    }
    match Store::open(&dir.0.join("new.db"), opts()) {
        Err(StoreError::OpenFile { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(libc::EROFS))
        }
        other => panic!("{other:?}"),
    }
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

/// Submits `events` through `submit_async`, in order, and waits for every completion; the
/// results come back in submission order.
fn submit_all_async(store: &Arc<Store>, events: Vec<NewEvent>) -> Vec<SubmitResult> {
    let (tx, rx) = std::sync::mpsc::channel();
    let n = events.len();
    for (i, ev) in events.into_iter().enumerate() {
        let tx = tx.clone();
        store.submit_async(
            ev,
            Box::new(move |r| {
                let _ = tx.send((i, r));
            }),
        );
    }
    let mut results: Vec<Option<SubmitResult>> = (0..n).map(|_| None).collect();
    for _ in 0..n {
        let (i, r) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a completion");
        assert!(results[i].is_none(), "completion {i} called twice");
        results[i] = Some(r);
    }
    results.into_iter().map(Option::unwrap).collect()
}

#[test]
fn submit_async_completes_each_submission_with_its_own_result() {
    let dir = TempDir::new("async-submit");
    let store = Arc::new(
        Store::open(
            &dir.db(),
            StoreOptions {
                max_queued: 3,
                ..opts()
            },
        )
        .unwrap(),
    );
    submit(&store, "a", 1);
    let results = submit_all_async(
        &store,
        ["b", "b", "c", "d", "a", "bad id"]
            .iter()
            .map(|id| new_event(id, 2))
            .collect(),
    );
    assert!(matches!(results[0], Ok(Submitted::Created)), "{results:?}");
    assert!(
        matches!(results[1], Ok(Submitted::AlreadyExists(_))),
        "a duplicate in the same batch: {results:?}"
    );
    assert!(matches!(results[2], Ok(Submitted::Created)), "{results:?}");
    assert!(
        matches!(results[3], Err(StoreError::Full { max_queued: 3 })),
        "{results:?}"
    );
    assert!(
        matches!(results[4], Ok(Submitted::AlreadyExists(_))),
        "a known id wins over the limit: {results:?}"
    );
    assert!(
        matches!(results[5], Err(StoreError::InvalidRequestId { .. })),
        "{results:?}"
    );
    assert!(store.get("d").unwrap().is_none());
    assert_eq!(store.get("b").unwrap().unwrap().status, Status::Queued);
}

#[test]
fn submit_async_never_reports_a_failed_commit_as_success() {
    let dir = TempDir::new("async-diskfull");
    let store = Arc::new(open(&dir));
    submit(&store, "before", 1);
    let pages: i64 = {
        let conn = Connection::open(dir.db()).unwrap();
        conn.pragma_query_value(None, "page_count", |row| row.get(0))
            .unwrap()
    };
    store.set_max_page_count(u64::try_from(pages).unwrap() + 2);
    let mut big = new_event("big", 2);
    big.request.body = vec![7; 64 * 1024];
    let results = submit_all_async(&store, vec![big.clone()]);
    assert!(
        matches!(results[0], Err(StoreError::Disk { .. })),
        "{results:?}"
    );
    assert!(store.get("big").unwrap().is_none(), "no false success");
    store.set_max_page_count(1 << 30);
    let results = submit_all_async(&store, vec![big]);
    assert!(matches!(results[0], Ok(Submitted::Created)), "{results:?}");
}

#[test]
fn blocking_and_async_submissions_share_the_committer() {
    let dir = TempDir::new("async-mixed");
    let store = Arc::new(open(&dir));
    let blocking: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || {
                for i in 0..50 {
                    assert_eq!(
                        submit(&store, &format!("blk-{t}-{i}"), 1),
                        Submitted::Created
                    );
                }
            })
        })
        .collect();
    let results = submit_all_async(
        &store,
        (0..400)
            .map(|i| new_event(&format!("asy-{i}"), 1))
            .collect(),
    );
    for t in blocking {
        t.join().unwrap();
    }
    assert!(results.iter().all(|r| matches!(r, Ok(Submitted::Created))));
    assert_eq!(store.counts_by_status().unwrap()[0], (Status::Queued, 600));
    let stats = store.stats();
    assert_eq!(stats.submissions, 600);
    assert!(stats.batches < 600, "{stats:?}");
}

#[test]
fn dropping_the_store_after_async_submissions_releases_the_file() {
    let dir = TempDir::new("async-drop");
    let store = Arc::new(open(&dir));
    let results = submit_all_async(&store, vec![new_event("kept", 1)]);
    assert!(matches!(results[0], Ok(Submitted::Created)));
    drop(store);
    // The committer holds the store only while it commits: the lock is free again.
    let store = open(&dir);
    assert!(store.get("kept").unwrap().is_some());
}

// ---- docs/reference.md §10: expiry, delay, results, the outbox -----------------------------

fn parity_opts() -> StoreOptions {
    StoreOptions {
        max_event_age: Duration::from_millis(1000),
        on_success: Some("http://127.0.0.1:1/ok".into()),
        on_failure: Some("http://127.0.0.1:1/failed".into()),
        destination_retry_for: Duration::from_millis(10_000),
        ..opts()
    }
}

#[test]
fn queued_events_past_max_event_age_expire_but_a_running_one_is_never_cut() {
    let dir = TempDir::new("expire");
    let store = reopen(&dir.db(), parity_opts()).unwrap();
    submit(&store, "running", 0);
    submit(&store, "waiting", 10);
    submit(&store, "young", 900);
    assert_eq!(
        store.claim_next(500).unwrap().unwrap().event.request_id,
        "running"
    );
    assert_eq!(store.next_expiry().unwrap(), Some(1010));
    // At 1,500 ms "waiting" (submitted at 10) is past the age; "running" runs on.
    assert_eq!(store.expire_overdue(1500).unwrap(), 1);
    let e = store.get("waiting").unwrap().unwrap();
    assert_eq!(e.status, Status::Expired);
    assert_eq!(e.error_type.as_deref(), Some("EventAgeExceeded"));
    assert_eq!(
        (e.start_time, e.end_time, e.attempts),
        (None, Some(1500), 0)
    );
    let d = e.destination.expect("on_failure recorded with the end");
    assert_eq!(
        (d.url.as_str(), d.status),
        ("http://127.0.0.1:1/failed", DeliveryStatus::Pending)
    );
    assert_eq!(
        store.get("running").unwrap().unwrap().status,
        Status::Running
    );
    // A claim expires first: the young one is past its age at 2,000 and never starts.
    assert!(store.claim_next(2000).unwrap().is_none());
    assert_eq!(store.get("young").unwrap().unwrap().status, Status::Expired);
    assert_eq!(store.expired_count(), 2);
    let counts = store.counts_by_status().unwrap();
    assert!(counts.contains(&(Status::Expired, 2)), "{counts:?}");
}

#[test]
fn a_delayed_event_is_due_at_not_before() {
    let dir = TempDir::new("delay");
    let store = open(&dir);
    let mut e = new_event("later", 100);
    e.not_before = Some(5100);
    store.submit(e).unwrap();
    assert_eq!(store.next_due().unwrap(), Some(5100));
    assert!(store.claim_next(5099).unwrap().is_none());
    let c = store.claim_next(5100).unwrap().unwrap();
    assert_eq!(c.event.not_before, Some(5100));
    assert_eq!(c.event.start_time, Some(5100));
}

#[test]
fn an_answer_is_stored_with_the_end_and_the_outbox_is_delivered_then_purged() {
    let dir = TempDir::new("outbox");
    let store = reopen(
        &dir.db(),
        StoreOptions {
            retention: Duration::from_millis(100),
            ..parity_opts()
        },
    )
    .unwrap();
    submit(&store, "ok", 0);
    store.claim_next(10).unwrap().unwrap();
    let answer = StoredAnswer {
        status: 201,
        headers: vec![("x-a".into(), vec![0xff, b'b'])],
        body: b"done".to_vec(),
        truncated: true,
    };
    let outcome = Outcome {
        answer: Some(answer.clone()),
        ..ok_outcome(20)
    };
    let e = store.finish("ok", &outcome).unwrap().unwrap();
    let info = e.result.expect("a result");
    assert_eq!(
        (info.status_code, info.truncated, info.bytes),
        (201, true, 4)
    );
    let (_, got) = store.get_result("ok").unwrap().unwrap();
    assert_eq!(got, Some(answer));
    // Due at the end; a failed try is put off; pending, it outlives the retention.
    let due = store.due_deliveries(20, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].response_body.as_deref(), Some(&b"done"[..]));
    assert_eq!(due[0].request_body, b"{\"id\":\"ok\"}");
    assert_eq!(due[0].until, 10_020);
    store
        .record_delivery("ok", Delivered::RetryAt(600))
        .unwrap();
    assert!(store.due_deliveries(599, 10).unwrap().is_empty());
    assert_eq!(store.next_delivery_due().unwrap(), Some(600));
    assert_eq!(store.purge_expired(10_000).unwrap(), 0);
    store.record_delivery("ok", Delivered::Yes).unwrap();
    let d = store.get("ok").unwrap().unwrap().destination.unwrap();
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Delivered, 2));
    // A later record of a delivery no longer pending changes nothing.
    store.record_delivery("ok", Delivered::GiveUp).unwrap();
    assert_eq!(
        store
            .get("ok")
            .unwrap()
            .unwrap()
            .destination
            .unwrap()
            .status,
        DeliveryStatus::Delivered
    );
    assert_eq!(store.next_delivery_due().unwrap(), None);
    assert_eq!(store.purge_expired(10_000).unwrap(), 1);
    assert!(store.get_result("ok").unwrap().is_none());
    let leftover: i64 = lock(&store.reader)
        .query_row("SELECT COUNT(*) FROM results", [], |r| r.get(0))
        .unwrap();
    assert_eq!(leftover, 0, "the answer is forgotten with its event");
}

#[test]
fn list_filters_by_prefix_qualifier_and_start_and_end_windows() {
    let dir = TempDir::new("filters");
    let store = open(&dir);
    for (id, qualifier, t) in [
        ("a-1", "prod", 10),
        ("a-2", "test", 20),
        ("b-1", "prod", 30),
    ] {
        let mut e = new_event(id, t);
        e.qualifier = qualifier.into();
        e.function_name = "f".into();
        store.submit(e).unwrap();
    }
    for (id, start, end) in [("a-1", 100, 400), ("a-2", 200, 300)] {
        assert_eq!(
            store.claim_next(start).unwrap().unwrap().event.request_id,
            id
        );
        store.finish(id, &ok_outcome(end)).unwrap().unwrap();
    }
    let ids = |q: ListQuery| -> Vec<String> {
        let (_, events) = store.list(&q).unwrap();
        events.into_iter().map(|e| e.request_id).collect()
    };
    let q = ListQuery::default;
    let v = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        ids(ListQuery {
            request_id_prefix: Some("a-".into()),
            ..q()
        }),
        v(&["a-2", "a-1"])
    );
    assert_eq!(
        ids(ListQuery {
            qualifier: Some("prod".into()),
            ..q()
        }),
        v(&["b-1", "a-1"])
    );
    assert_eq!(
        ids(ListQuery {
            function_name: Some("g".into()),
            ..q()
        }),
        v(&[])
    );
    assert_eq!(
        ids(ListQuery {
            invocation_type: Some("Sync".into()),
            ..q()
        }),
        v(&[])
    );
    assert_eq!(
        ids(ListQuery {
            started_since: Some(150),
            ..q()
        }),
        v(&["a-2"])
    );
    assert_eq!(
        ids(ListQuery {
            ended_until: Some(400),
            ..q()
        }),
        v(&["a-2"])
    );
    // Ordered by end time, ascending: the never-ended last.
    let by_end = ListQuery {
        order_by: OrderBy::EndTime,
        order: Order::Asc,
        ..q()
    };
    assert_eq!(ids(by_end), v(&["a-2", "a-1", "b-1"]));
    let by_start = ListQuery {
        order_by: OrderBy::StartTime,
        ..q()
    };
    assert_eq!(ids(by_start), v(&["a-2", "a-1", "b-1"]));
}
