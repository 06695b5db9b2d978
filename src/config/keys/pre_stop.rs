//! The keys of `[pre_stop]`: the hook run once when the instance stops (docs/reference.md §3).

use crate::config::schema::{Kind, POSITIVE};
use crate::config::show::{duration, set_or};

use super::hook::{hook_command, hook_path, NOT_CONFIGURED};
use super::KeyDefault::{Depends, Is};
use super::{Key, Section};

pub(super) const SECTION: Section = Section {
    present: |c| c.pre_stop.is_some(),
    ..Section::plain("pre_stop", KEYS)
};

const KEYS: &[Key] = &[
    Key {
        section: "pre_stop",
        key: "path",
        kind: Kind::HookPath,
        default: Is("/pre-stop"),
        ty: "request path",
        doc: "HTTP hook: `GET` this path on the function; turns serving on",
        show: |c| hook_path(c.pre_stop.as_ref().map(|p| &p.action)),
    },
    Key {
        section: "pre_stop",
        key: "command",
        kind: Kind::Args { nonempty: true },
        default: Depends("unset"),
        ty: "non-empty array",
        doc: "instead of `path`: a command",
        show: |c| hook_command(c.pre_stop.as_ref().map(|p| &p.action)),
    },
    Key {
        section: "pre_stop",
        key: "timeout",
        kind: POSITIVE,
        default: Is("10s"),
        ty: "duration > 0",
        doc: "limit for the hook",
        show: |c| {
            set_or(
                c.pre_stop.as_ref().map(|p| duration(p.timeout)),
                "",
                NOT_CONFIGURED,
            )
        },
    },
];
