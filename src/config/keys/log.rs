//! The keys of `[log]`: what fc-init writes about itself (docs/reference.md §3).

use crate::config::schema::{Kind, FORMAT_CHOICES};
use crate::config::show::{quote, set};
use crate::config::LogFormat;

use super::KeyDefault::Is;
use super::{Key, Section};

pub(super) const SECTION: Section = Section::plain("log", KEYS);

const KEYS: &[Key] = &[
    Key {
        section: "log",
        key: "invocations",
        kind: Kind::Bool,
        default: Is("true"),
        ty: "bool",
        doc: "print the `FC Invoke Start/End` lines",
        show: |c| set(c.log.invocations.to_string()),
    },
    Key {
        section: "log",
        key: "format",
        kind: Kind::Choice(FORMAT_CHOICES),
        default: Is("text"),
        ty: "`text` \\| `json`",
        doc: "format of fc-init's own diagnostics on stderr: `fc-init LEVEL: message`, or one \
            JSON object `{\"time\",\"level\",\"message\"}` per line",
        show: |c| {
            set(quote(match c.log.format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            }))
        },
    },
];
