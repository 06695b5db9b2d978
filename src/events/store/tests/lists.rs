//! Lists and the event's JSON: filters, orders, pages, the cap on the page, and the query plans
//! that keep a filtered list fast on a large store.

use super::*;

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

/// The query plan of `sql` with `args` on `store`: one line per step.
fn plan(store: &Store, sql: &str, args: &[rusqlite::types::Value]) -> Vec<String> {
    let conn = crate::events::signal::lock(&store.reader);
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), |row| {
            row.get::<_, String>(3)
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// Every filter and order of a list has an index to use (docs/reference.md §10: a filtered
/// list of 100 out of 1,000,000 events answers in well under 50 ms): no step of a page's plan
/// reads the whole table, or sorts it.
#[test]
fn every_list_filter_and_order_has_an_index() {
    let dir = TempDir::new("plans");
    let store = open(&dir);
    // Rows, but no statistics (the store never runs ANALYZE): the planner chooses as it will
    // on a real store.
    {
        let conn = crate::events::signal::lock(&store.writer);
        let tx = conn.unchecked_transaction().unwrap();
        for i in 0..2000u64 {
            let mut e = new_event(&format!("ev-{i:05}"), 1000 + i);
            e.function_name = format!("fn-{}", i % 20);
            e.qualifier = ["LATEST", "prod"][(i % 2) as usize].into();
            drop(tx.execute(
                "INSERT INTO events (request_id, status, submit_time, next_attempt_at, \
                 function_name, qualifier, start_time, end_time, method, target, headers, body) \
                 VALUES (?1, 'FINISHED', ?2, ?2, ?3, ?4, ?2, ?2, 'POST', '/', x'', x'')",
                rusqlite::params![
                    e.request_id,
                    e.submit_time as i64,
                    e.function_name,
                    e.qualifier
                ],
            ));
        }
        tx.commit().unwrap();
    }
    let q = ListQuery::default;
    let t = Some(1500);
    let cases: Vec<(&str, ListQuery)> = vec![
        ("newest first", q()),
        (
            "oldest first",
            ListQuery {
                order: Order::Asc,
                ..q()
            },
        ),
        (
            "status",
            ListQuery {
                statuses: vec![Status::Failed],
                ..q()
            },
        ),
        (
            "two statuses",
            ListQuery {
                statuses: vec![Status::Failed, Status::Queued],
                ..q()
            },
        ),
        (
            "request id",
            ListQuery {
                request_id: Some("ev-00001".into()),
                ..q()
            },
        ),
        (
            "prefix",
            ListQuery {
                request_id_prefix: Some("ev-0001".into()),
                ..q()
            },
        ),
        (
            "function",
            ListQuery {
                function_name: Some("fn-3".into()),
                ..q()
            },
        ),
        (
            "qualifier",
            ListQuery {
                qualifier: Some("prod".into()),
                ..q()
            },
        ),
        (
            "function and qualifier",
            ListQuery {
                function_name: Some("fn-3".into()),
                qualifier: Some("prod".into()),
                ..q()
            },
        ),
        (
            "invocation type",
            ListQuery {
                invocation_type: Some("Async".into()),
                ..q()
            },
        ),
        (
            "submit window",
            ListQuery {
                since: t,
                until: Some(1600),
                ..q()
            },
        ),
        (
            "start window",
            ListQuery {
                started_since: t,
                started_until: Some(1600),
                ..q()
            },
        ),
        (
            "end window",
            ListQuery {
                ended_since: t,
                ended_until: Some(1600),
                ..q()
            },
        ),
        (
            "by start",
            ListQuery {
                order_by: OrderBy::StartTime,
                ..q()
            },
        ),
        (
            "by start, oldest first",
            ListQuery {
                order_by: OrderBy::StartTime,
                order: Order::Asc,
                ..q()
            },
        ),
        (
            "by end",
            ListQuery {
                order_by: OrderBy::EndTime,
                ..q()
            },
        ),
        (
            "by end, oldest first",
            ListQuery {
                order_by: OrderBy::EndTime,
                order: Order::Asc,
                ..q()
            },
        ),
        (
            "status by end",
            ListQuery {
                statuses: vec![Status::Finished],
                order_by: OrderBy::EndTime,
                ..q()
            },
        ),
    ];
    let mut bad = Vec::new();
    for (what, query) in cases {
        // The list itself runs: its count and its page take their own arguments.
        let (total, page) = store.list(&query).unwrap();
        assert!(page.len() as u64 <= total.min(100), "{what}");
        let sql = super::super::queries::list_sql(&query);
        let mut args = sql.page_args.clone();
        args.extend([100i64.into(), 0i64.into()]);
        let page = plan(&store, &sql.page_sql, &args);
        // The second part of a time order (the never-started or never-ended events) is read
        // only once every other event is out: the pages that matter are the first part's.
        let first = match page.iter().position(|s| s == "UNION ALL") {
            Some(i) => &page[..i],
            None => &page[..],
        };
        let scans = first.iter().any(|s| s == "SCAN events");
        let sorts = first.iter().any(|s| s.contains("TEMP B-TREE FOR ORDER BY"));
        if scans || (sorts && !sorts_only_its_matches(&query)) {
            bad.push(format!("{what}: {page:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "plans without an index:\n{}",
        bad.join("\n")
    );
}

/// A list whose filter selects its events through an index of its own (an id or its prefix,
/// a function, a start or end window, several statuses) in another order than the list's:
/// what it selects is sorted, which is cheap for the narrow filters these are.
fn sorts_only_its_matches(q: &ListQuery) -> bool {
    q.request_id.is_some()
        || q.request_id_prefix.is_some()
        || q.function_name.is_some()
        || q.started_since.is_some()
        || q.ended_since.is_some()
        || q.statuses.len() > 1
}

/// A qualifier or an invocation type alone was counted by reading every event in submit
/// order (bench/async.sh: 46 and 89 ms for a list of 100 out of 1,000,000 events, the count
/// of all matches being part of the answer): each now has an index of its own, which both the
/// count and the page use.
#[test]
fn a_qualifier_or_invocation_type_list_was_counted_by_reading_every_event() {
    let dir = TempDir::new("plans-count");
    let store = open(&dir);
    let q = ListQuery::default;
    let cases = [
        (
            "events_qualifier",
            ListQuery {
                qualifier: Some("prod".into()),
                ..q()
            },
        ),
        (
            "events_kind",
            ListQuery {
                invocation_type: Some("Async".into()),
                ..q()
            },
        ),
    ];
    for (index, query) in cases {
        let sql = super::super::queries::list_sql(&query);
        let count = plan(&store, &sql.count_sql, &sql.args);
        assert!(
            count.iter().any(|s| s.contains(index)),
            "{index} unused by the count: {count:?}"
        );
        let mut args = sql.page_args.clone();
        args.extend([100i64.into(), 0i64.into()]);
        let page = plan(&store, &sql.page_sql, &args);
        assert!(
            page.iter().any(|s| s.contains(index)),
            "{index} unused by the page: {page:?}"
        );
    }
}
