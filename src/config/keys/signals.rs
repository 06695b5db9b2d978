//! The keys of `[signals]`: what fc-init does with the signals it passes on (docs/reference.md §3).

use crate::config::schema::{Kind, FORWARD_TO_CHOICES};
use crate::config::show::{quote, set, set_or, signal_name, Shown};
use crate::config::{Config, ForwardTo};

use super::KeyDefault::{Depends, Is, IsUnless};
use super::{Key, Section};

pub(super) const SECTION: Section = Section::plain("signals", KEYS);

const KEYS: &[Key] = &[
    Key {
        section: "signals",
        key: "forward_to",
        kind: Kind::Choice(FORWARD_TO_CHOICES),
        default: IsUnless("process", "(as tini; `group` under the name `dumb-init`)"),
        ty: "`process` \\| `group`",
        doc: "where forwarded signals go (SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT, \
            real-time ones): the function's own process, so gunicorn, nginx or uwsgi reload \
            without their workers dying mid-request, or its whole process group (`-g`). \
            `shutdown.kill_group` still decides where the stop signal and the final SIGKILL go",
        show: |c| {
            set(quote(match c.signals.forward_to {
                ForwardTo::Process => "process",
                ForwardTo::Group => "group",
            }))
        },
    },
    Key {
        section: "signals",
        key: "rewrite",
        kind: Kind::SignalRewrite,
        default: Is("{}"),
        ty: "table",
        doc: "a received signal forwarded as another, e.g. `{ SIGTERM = \"SIGQUIT\", SIGWINCH = 0 \
            }` (0 drops it; dumb-init's `-r`). Applies to what fc-init forwards, plain mode's \
            SIGTERM and SIGINT included (with `-r 15:3` the function gets SIGQUIT; rewritten to \
            0, the signal is ignored); the serving shutdown keeps sending `shutdown.stop_signal`",
        show: rewrite,
    },
    Key {
        section: "signals",
        key: "success_codes",
        kind: Kind::ExitCodes,
        default: Is("[]"),
        ty: "array of integers 0–255",
        doc: "the function's exit statuses that count as 0 in fc-init's own (tini's `-e`); \
            environment: `FC_INIT_SIGNALS_SUCCESS_CODES=\"143 137\"`",
        show: |c| {
            let codes: Vec<String> = c.signals.success_codes.iter().map(i32::to_string).collect();
            set(format!("[{}]", codes.join(", ")))
        },
    },
    Key {
        section: "signals",
        key: "parent_death_signal",
        kind: Kind::AnySignal,
        default: Depends("not set"),
        ty: "signal",
        doc: "asked of the kernel for fc-init when its parent dies (`PR_SET_PDEATHSIG`, tini's \
            `-p`); SIGTERM or SIGINT start the shutdown, any other is forwarded. A parent that \
            died before fc-init asked is noticed at start",
        show: |c| {
            set_or(
                (c.signals.parent_death_signal).map(|s| quote(&signal_name(s))),
                "\"SIGTERM\"",
                "not set: fc-init outlives its parent",
            )
        },
    },
    Key {
        section: "signals",
        key: "warn_reaped",
        kind: Kind::Bool,
        default: Is("false"),
        ty: "bool",
        doc: "a warning on stderr for every reaped process that is not the function (tini's `-w`)",
        show: |c| set(c.signals.warn_reaped.to_string()),
    },
];

fn rewrite(c: &Config) -> Shown {
    let rewrite: Vec<String> = c
        .signals
        .rewrite
        .iter()
        .map(|(from, to)| match to {
            // `SIGRTMIN+2` is not a bare TOML key.
            0 => format!("{} = 0", quote(&signal_name(*from))),
            to => format!(
                "{} = {}",
                quote(&signal_name(*from)),
                quote(&signal_name(*to))
            ),
        })
        .collect();
    set(match rewrite.is_empty() {
        true => "{}".to_owned(),
        false => format!("{{ {} }}", rewrite.join(", ")),
    })
}
