//! Whether the Redis Cluster node that claims the queue's slot is a master of the newest
//! configuration (docs/reference.md §10), from `CLUSTER NODES` replies: an old master that
//! was frozen while its replica was promoted answers as a master for a moment after it
//! thaws, and nothing fc-init does may rest on its answers ([`super::topology`]).

/// What a node says of itself in `CLUSTER NODES`: whether it is a master, its configuration
/// epoch, and whether it serves `slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub master: bool,
    pub epoch: u64,
    pub owns: bool,
}

/// One line of `CLUSTER NODES` (`id addr flags master ping pong epoch link slot...`): its
/// flags, configuration epoch, and whether its slots include `slot`.
fn node_line(line: &str, slot: u16) -> Option<(&str, u64, bool)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let flags = *f.get(2)?;
    let epoch = f.get(6)?.parse().ok()?;
    let owns = f.iter().skip(8).any(|range| {
        // `[slot->-id]` / `[slot-<-id]`: a migration's state, not a slot served.
        if range.starts_with('[') {
            return false;
        }
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        match (a.parse::<u16>(), b.parse::<u16>()) {
            (Ok(a), Ok(b)) => (a..=b).contains(&slot),
            _ => false,
        }
    });
    Some((flags, epoch, owns))
}

/// The answering node's own line of a `CLUSTER NODES` reply.
pub fn myself(nodes: &str, slot: u16) -> Option<Claim> {
    nodes.lines().find_map(|line| {
        let (flags, epoch, owns) = node_line(line, slot)?;
        let flags: Vec<&str> = flags.split(',').collect();
        flags.contains(&"myself").then(|| Claim {
            master: flags.contains(&"master"),
            epoch,
            owns,
        })
    })
}

/// The configuration epoch of the master that serves `slot` in a `CLUSTER NODES` reply.
pub fn owner_epoch(nodes: &str, slot: u16) -> Option<u64> {
    nodes
        .lines()
        .filter_map(|line| node_line(line, slot))
        .filter(|(flags, _, owns)| *owns && flags.split(',').any(|f| f == "master"))
        .map(|(_, epoch, _)| epoch)
        .max()
}

/// Why the node that claims to serve the queue's slot must not be written through: it is
/// not a master (or did not answer who it is), or another node knows a master of the slot
/// with a newer configuration epoch (the claimant is an old master that has not heard of
/// its replacement yet). `None`: current.
pub fn stale(claim: Option<Claim>, newest_elsewhere: Option<u64>) -> Option<String> {
    let Some(claim) = claim else {
        return Some("it did not name itself in CLUSTER NODES".into());
    };
    if !claim.master {
        return Some("it is not a master".into());
    }
    match newest_elsewhere {
        Some(newer) if claim.owns && newer > claim.epoch => Some(format!(
            "configuration epoch {}, a replica knows epoch {newer}",
            claim.epoch
        )),
        _ => None,
    }
}

/// The newest configuration epoch of a master of the slot in what a check learned: the
/// claimant's own (when it is such a master) or a replica's view; 0 when neither says.
pub fn newest_seen(claim: Option<Claim>, newest_elsewhere: Option<u64>) -> u64 {
    claim
        .filter(|c| c.master && c.owns)
        .map(|c| c.epoch)
        .max(newest_elsewhere)
        .unwrap_or(0)
}

/// Whether `seen` names a newer master of the slot than the newest seen `before` (0: none
/// yet, as at start, which replaces nothing): connections made before must be made again.
pub fn replaced(before: u64, seen: u64) -> bool {
    before != 0 && seen > before
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The views of a thawed old master (port 7001, epoch 3, still "master" of 0-5460) and
    /// of the replica promoted meanwhile (7004, epoch 7).
    const OLD_MASTER_VIEW: &str = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 3 connected 0-5460
b2 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922
d4 127.0.0.1:7004@17004 slave a1 0 0 3 connected
";
    const NEW_MASTER_VIEW: &str = "\
a1 127.0.0.1:7001@17001 master,fail - 0 0 3 disconnected
b2 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922
d4 127.0.0.1:7004@17004 myself,master - 0 0 7 connected 0-5460 [5461->-b2]
";

    #[test]
    fn an_old_master_thawed_before_it_heard_of_its_replacement_is_stale() {
        let old = myself(OLD_MASTER_VIEW, 100);
        assert_eq!(
            old,
            Some(Claim {
                master: true,
                epoch: 3,
                owns: true
            })
        );
        assert_eq!(owner_epoch(NEW_MASTER_VIEW, 100), Some(7));
        assert_eq!(owner_epoch(OLD_MASTER_VIEW, 100), Some(3));
        // A migration's `[slot->-id]` is not a slot served.
        assert_eq!(owner_epoch(NEW_MASTER_VIEW, 5461), Some(2));
        assert!(stale(old, Some(7)).is_some());
        // The new master, and the old one when nobody knows better, are current.
        assert_eq!(stale(myself(NEW_MASTER_VIEW, 100), Some(7)), None);
        assert_eq!(stale(old, Some(3)), None);
        assert_eq!(stale(old, None), None);
        // Demoted (its own view says replica), or no answer about itself: not written to.
        let demoted = OLD_MASTER_VIEW.replace("myself,master", "myself,slave");
        assert!(stale(myself(&demoted, 100), None).is_some());
        assert!(stale(None, None).is_some());
        // Another master with a newer epoch for another slot says nothing about this one.
        assert_eq!(owner_epoch(NEW_MASTER_VIEW, 6000), Some(2));
    }

    #[test]
    fn a_newer_master_of_the_slot_makes_older_connections_reconnect() {
        let old = myself(OLD_MASTER_VIEW, 100);
        // The stale claimant's epoch, but a replica knows the newer master's.
        assert_eq!(newest_seen(old, Some(7)), 7);
        assert_eq!(newest_seen(myself(NEW_MASTER_VIEW, 100), None), 7);
        // A replica's own claim counts for nothing; nor does a master of other slots.
        let demoted = OLD_MASTER_VIEW.replace("myself,master", "myself,slave");
        assert_eq!(newest_seen(myself(&demoted, 100), None), 0);
        assert_eq!(newest_seen(myself(NEW_MASTER_VIEW, 6000), None), 0);
        assert!(replaced(3, 7));
        assert!(!replaced(7, 7) && !replaced(7, 3));
        // The first master seen replaces nothing.
        assert!(!replaced(0, 3));
    }
}
