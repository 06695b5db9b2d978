//! A QUEUED event whose stream entry is gone (acknowledged away without starting it: seen
//! once in about ten runs of a cluster master frozen and thawed mid-burst: most likely an
//! entry id the thawed old master handed out, acknowledged on the new master where the same
//! id names another event's entry; answers from a stale master are refused since, see
//! `src/events/redis/topology.rs`) is delivered again by the renewal, so it runs instead of
//! staying QUEUED for ever.

use crate::servers::{available, until, Node};
use crate::Instance;

#[test]
fn a_queued_event_whose_entry_was_acknowledged_away_still_runs() {
    if !available("orphaned entry") {
        return;
    }
    let node = Node::start("orphan", &[]);
    let url = format!("redis://127.0.0.1:{}/0", node.port);
    let i = Instance::start("orphan-i", &url, "orph", "max_concurrency = 1\n");
    // The only worker is busy: the next event's entry waits in the stream, unread.
    assert_eq!(i.submit("busy", "2").0, 202);
    until("busy runs", || i.runs().iter().any(|(id, _)| id == "busy"));
    assert_eq!(i.submit("orphan", "0").0, 202);
    let entry = node.query(&["HGET", "fc-init:{orph}:ev:orphan", "entry"]);
    assert!(!entry.is_empty(), "orphan has a delivery");
    // Acknowledged and deleted as no script of the queue would, the event still QUEUED.
    node.query(&["XACK", "fc-init:{orph}:stream", "workers", &entry]);
    node.query(&["XDEL", "fc-init:{orph}:stream", &entry]);
    until("orphan runs all the same", || {
        i.runs().iter().any(|(id, _)| id == "orphan")
    });
    let (_, e) = i.ctl(&["events", "get", "orphan"]);
    until("orphan finished", || {
        i.ctl(&["events", "get", "orphan"]).1["status"] == "FINISHED"
    });
    assert_eq!(e["attempts"].as_u64().map(|a| a <= 1), Some(true), "{e}");
}
