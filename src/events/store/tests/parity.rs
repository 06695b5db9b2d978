//! docs/reference.md §10: expiry, delay, results, the outbox.

use super::*;

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
