//! The keys of `[function]`: the program fc-init runs and how it serves (docs/reference.md §3).

use crate::config::schema::{Kind, ANY_DURATION, POSITIVE, RESTART_CHOICES};
use crate::config::show::{duration, list, path, quote, set, set_or, table, unset, Shown};
use crate::config::{Config, Endpoint, RestartPolicy};

use super::KeyDefault::{Depends, Is};
use super::{Key, Section};

pub(super) const SECTION: Section = Section::plain("function", KEYS);

const KEYS: &[Key] = &[
    Key {
        section: "function",
        key: "command",
        kind: Kind::Args { nonempty: false },
        default: Depends("none"),
        ty: "array of strings",
        doc: "the program and its arguments; a COMMAND on the command line replaces it; one of \
            the two is required",
        show: |c| set(list(&c.function.command)),
    },
    Key {
        section: "function",
        key: "working_dir",
        kind: Kind::Path,
        default: Depends("fc-init's own"),
        ty: "path",
        doc: "working directory of the function (and of command hooks)",
        show: |c| {
            set_or(
                c.function.working_dir.as_deref().map(path),
                "\"\"",
                "not set: fc-init's working directory",
            )
        },
    },
    Key {
        section: "function",
        key: "env",
        kind: Kind::EnvTable,
        default: Is("{}"),
        ty: "table of strings",
        doc: "variables added to the inherited environment",
        show: |c| set(table(&c.function.env)),
    },
    Key {
        section: "function",
        key: "socket",
        kind: Kind::SocketPath,
        default: Depends("`function.sock` in the runtime directory"),
        ty: "path (≤ 107 bytes)",
        doc: "the unix socket the function serves HTTP/1.1 on, passed as `FC_FUNCTION_SOCKET`; \
            setting it turns serving on",
        show: socket,
    },
    Key {
        section: "function",
        key: "port",
        kind: Kind::Int { min: 1, max: 65535 },
        default: Depends("unset"),
        ty: "integer 1–65535",
        doc: "instead of `socket`: the function serves on `127.0.0.1:PORT`, passed as \
            `FC_FUNCTION_PORT` and `FC_SERVER_PORT`; must differ from the listener's port; \
            setting it turns serving on. With an FC port variable set and neither key \
            configured, fc-init picks a free loopback port (section 4)",
        show: port,
    },
    Key {
        section: "function",
        key: "start_timeout",
        kind: POSITIVE,
        default: Is("120s"),
        ty: "duration > 0",
        doc: "how long the first initializer attempt (or, without an initializer, the wait before \
            traffic) waits for the function to accept connections; a function still running but \
            not accepting by then makes fc-init exit 3",
        show: |c| set(duration(c.function.start_timeout)),
    },
    Key {
        section: "function",
        key: "name",
        kind: Kind::Text,
        default: Depends("`$FC_FUNCTION_NAME`, else the file name of the command"),
        ty: "text",
        doc: "sent to the function as `x-fc-function-name`; the default async queue name",
        show: |c| set(quote(&c.function.name)),
    },
    Key {
        section: "function",
        key: "timeout",
        kind: POSITIVE,
        default: Is("60s"),
        ty: "duration > 0",
        doc: "limit for one invocation (including the wait for an initialized instance or a free \
            slot); then `FunctionTimeout`",
        show: |c| set(duration(c.function.timeout)),
    },
    Key {
        section: "function",
        key: "user",
        kind: Kind::User,
        default: Depends("fc-init's own user"),
        ty: "name, uid, `uid:gid` or `name:group`",
        doc: "run the function (and command hooks) as this user: setgid, initgroups, setuid \
            before exec; users and groups are read from the image's `/etc/passwd` and \
            `/etc/group`",
        show: user,
    },
    Key {
        section: "function",
        key: "restart",
        kind: Kind::Choice(RESTART_CHOICES),
        default: Is("never"),
        ty: "`never` \\| `on-failure` \\| `always`",
        doc: "what to do when the function exits: `never` ends fc-init with the function's \
            status; `on-failure` respawns after a non-zero exit or a signal; `always` respawns \
            after any exit",
        show: |c| {
            set(quote(match c.function.restart {
                RestartPolicy::Never => "never",
                RestartPolicy::OnFailure => "on-failure",
                RestartPolicy::Always => "always",
            }))
        },
    },
    Key {
        section: "function",
        key: "restart_backoff_max",
        kind: ANY_DURATION,
        default: Is("30s"),
        ty: "duration",
        doc: "respawns wait 100 ms, doubling up to this; a function that ran at least this long \
            starts the backoff over",
        show: |c| set(duration(c.function.restart_backoff_max)),
    },
    Key {
        section: "function",
        key: "qualifier",
        kind: Kind::Text,
        default: Depends("`$FC_QUALIFIER`, else `LATEST`"),
        ty: "text",
        doc: "the `qualifier` of an asynchronous event whose request has no `x-fc-qualifier` \
            (section 10)",
        show: |c| set(quote(&c.function.qualifier)),
    },
];

// With no listener the function need not serve at all; the socket line stays a comment so
// that reading the output back keeps plain-init mode (setting it would turn serving on).
fn socket(c: &Config) -> Shown {
    match (&c.function.endpoint, c.serves_http()) {
        (Endpoint::Unix(socket), true) => set(path(socket)),
        (Endpoint::Unix(socket), false) => Shown::Unset {
            example: path(socket),
            why: "plain-init mode: nothing listens and the function need not serve",
        },
        (Endpoint::Tcp(_), _) => unset("\"\"", "not set: the function serves on port"),
    }
}

fn port(c: &Config) -> Shown {
    match (&c.function.endpoint, c.serves_http()) {
        (Endpoint::Unix(_), true) => unset("9001", "not set: the function serves on socket"),
        (Endpoint::Unix(_), false) => unset("9001", "not set"),
        (Endpoint::Tcp(port), _) => set(port.to_string()),
    }
}

fn user(c: &Config) -> Shown {
    let user = c.function.user.as_ref().map(|user| match &user.group {
        Some(group) => quote(&format!("{}:{group}", user.user)),
        None => quote(&user.user),
    });
    set_or(user, "\"\"", "not set: runs as fc-init's user")
}
