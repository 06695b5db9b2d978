//! Submissions: deduplicated, group-committed (blocking and asynchronous), limited by
//! `max_queued`, and the handoff's stored-and-claimed ones.

use super::*;

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

/// docs/reference.md §10, the handoff: one write stores the event RUNNING, started, with one
/// attempt — never QUEUED, so no worker can take it, and outside `max_queued` — and an fc-init
/// that dies before it ends leaves it to run again like any started event.
#[test]
fn a_handoff_is_stored_running_in_one_write_and_runs_again_after_a_crash() {
    let dir = TempDir::new("handoff");
    {
        let store = Store::open(
            &dir.db(),
            StoreOptions {
                max_queued: 1,
                ..opts()
            },
        )
        .unwrap();
        assert_eq!(submit(&store, "queued", 1000), Submitted::Created);
        let mut e = new_event("handed", 1100);
        e.claimed_at = Some(1100);
        assert_eq!(store.submit(e.clone()).unwrap(), Submitted::Created);
        let ev = store.get("handed").unwrap().unwrap();
        assert_eq!(
            (ev.status, ev.attempts, ev.start_time),
            (Status::Running, 1, Some(1100))
        );
        assert_eq!(ev, Claimed::of_handoff(&e, String::new()).event);
        // Again: the stored event, nothing new.
        assert!(matches!(
            store.submit(e).unwrap(),
            Submitted::AlreadyExists(_)
        ));
        // Workers take only the queued one.
        let claimed = store.claim_next(2000).unwrap().unwrap();
        assert_eq!(claimed.event.request_id, "queued");
        assert!(store.claim_next(2000).unwrap().is_none());
    }
    // fc-init died with both running: both run again.
    let store = open(&dir);
    assert_eq!(store.recovered_at_open(), 2);
    let ev = store.get("handed").unwrap().unwrap();
    assert_eq!(ev.status, Status::Queued);
    let mut ids: Vec<String> = (0..2)
        .map(|_| store.claim_next(3000).unwrap().unwrap().event.request_id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["handed", "queued"]);
}
