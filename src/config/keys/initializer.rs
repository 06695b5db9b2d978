//! The keys of `[initializer]`: the hook run once before any traffic (docs/reference.md §3).

use crate::config::schema::{
    Kind, COUNT_U32, MAX_INITIALIZER_TIMEOUT, ON_FAILURE_CHOICES, POSITIVE,
};
use crate::config::show::{duration, quote, set, unset, Shown};
use crate::config::{Config, InitializerConfig, OnFailure};

use super::hook::{hook_command, hook_path, NOT_CONFIGURED};
use super::KeyDefault::{Depends, Is};
use super::{Key, Section};

pub(super) const SECTION: Section = Section {
    present: |c| c.initializer.is_some(),
    ..Section::plain("initializer", KEYS)
};

const KEYS: &[Key] = &[
    Key {
        section: "initializer",
        key: "path",
        kind: Kind::HookPath,
        default: Is("/initialize"),
        ty: "request path",
        doc: "HTTP hook: `POST` to this path on the function; turns serving on",
        show: |c| hook_path(c.initializer.as_ref().map(|i| &i.action)),
    },
    Key {
        section: "initializer",
        key: "command",
        kind: Kind::Args { nonempty: true },
        default: Depends("unset"),
        ty: "non-empty array",
        doc: "instead of `path`: a command (section 8, command hooks)",
        show: |c| hook_command(c.initializer.as_ref().map(|i| &i.action)),
    },
    Key {
        section: "initializer",
        key: "timeout",
        kind: Kind::Duration {
            nonzero: true,
            max: Some(MAX_INITIALIZER_TIMEOUT),
        },
        default: Is("60s"),
        ty: "duration, at most 300s",
        doc: "limit for one attempt, sent as `x-fc-initialization-timeout`",
        show: |c| initializer(c, |i| set(duration(i.timeout))),
    },
    Key {
        section: "initializer",
        key: "on_failure",
        kind: Kind::Choice(ON_FAILURE_CHOICES),
        default: Is("retry"),
        ty: "`retry` \\| `next-request` \\| `exit`",
        doc: "what a failed attempt leads to (section 8)",
        show: |c| {
            initializer(c, |i| {
                set(quote(match i.on_failure {
                    OnFailure::Retry => "retry",
                    OnFailure::NextRequest => "next-request",
                    OnFailure::Exit => "exit",
                }))
            })
        },
    },
    Key {
        section: "initializer",
        key: "max_attempts",
        kind: COUNT_U32,
        default: Is("0"),
        ty: "integer",
        doc: "under `retry`: attempts before giving up (exit 3); `0` = unlimited",
        show: |c| initializer(c, |i| set(i.max_attempts.to_string())),
    },
    Key {
        section: "initializer",
        key: "backoff",
        kind: POSITIVE,
        default: Is("100ms"),
        ty: "duration > 0",
        doc: "first retry delay; doubles after each failure",
        show: |c| initializer(c, |i| set(duration(i.backoff))),
    },
    Key {
        section: "initializer",
        key: "backoff_max",
        kind: POSITIVE,
        default: Is("10s"),
        ty: "duration > 0, ≥ backoff",
        doc: "largest retry delay",
        show: |c| initializer(c, |i| set(duration(i.backoff_max))),
    },
];

/// What `show` makes of the initializer's settings, when it is configured.
fn initializer(c: &Config, show: fn(&InitializerConfig) -> Shown) -> Shown {
    c.initializer
        .as_ref()
        .map_or_else(|| unset("", NOT_CONFIGURED), show)
}
