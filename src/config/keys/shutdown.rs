//! The keys of `[shutdown]`: how the function is stopped (docs/reference.md §3).

use crate::config::schema::{Kind, ANY_DURATION};
use crate::config::show::{duration, quote, set};
use crate::config::Config;

use super::KeyDefault::Is;
use super::{Key, Section};

pub(super) const SECTION: Section = Section {
    footer: stop_bound,
    ..Section::plain("shutdown", KEYS)
};

const KEYS: &[Key] = &[
    Key {
        section: "shutdown",
        key: "stop_signal",
        kind: Kind::CatchableSignal,
        default: Is("SIGTERM"),
        ty: "signal name or number",
        doc: "sent to the function once the in-flight requests are done; SIGKILL and SIGSTOP are \
            refused",
        show: |c| set(quote(c.shutdown.stop_signal.as_str())),
    },
    Key {
        section: "shutdown",
        key: "drain_timeout",
        kind: ANY_DURATION,
        default: Is("30s"),
        ty: "duration",
        doc: "how long in-flight requests may finish before the stop signal",
        show: |c| set(duration(c.shutdown.drain_timeout)),
    },
    Key {
        section: "shutdown",
        key: "grace_period",
        kind: ANY_DURATION,
        default: Is("10s"),
        ty: "duration",
        doc: "how long after the stop signal before SIGKILL",
        show: |c| set(duration(c.shutdown.grace_period)),
    },
    Key {
        section: "shutdown",
        key: "kill_group",
        kind: Kind::Bool,
        default: Is("true"),
        ty: "bool",
        doc: "signals go to the function's whole process group rather than to its process only",
        show: |c| set(c.shutdown.kill_group.to_string()),
    },
];

/// How long a stop can take, so that the platform's own grace period can be set to cover it.
fn stop_bound(c: &Config) -> Vec<String> {
    let bound = c.stop_bound();
    vec![
        format!(
            "# A stop takes at most pre_stop.timeout + drain_timeout + grace_period = {}s; give the",
            bound.as_secs() + u64::from(bound.subsec_nanos() > 0)
        ),
        "# platform at least that long (Kubernetes: terminationGracePeriodSeconds).".to_owned(),
    ]
}
