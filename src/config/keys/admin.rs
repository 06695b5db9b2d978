//! The keys of `[admin]`: the admin API's socket and its extra listener (docs/reference.md §3).

use crate::config::schema::Kind;
use crate::config::show::{path, quote, set, set_or};

use super::KeyDefault::Depends;
use super::{Key, Section};

pub(super) const SECTION: Section = Section::plain("admin", KEYS);

const KEYS: &[Key] = &[
    Key {
        section: "admin",
        key: "socket",
        kind: Kind::SocketPath,
        default: Depends("`admin.sock` in the runtime directory"),
        ty: "path (≤ 107 bytes)",
        doc: "the admin API socket (mode 0600), used by `fc-init ctl`; exists only when fc-init \
            serves",
        show: |c| set(path(&c.admin.socket)),
    },
    Key {
        section: "admin",
        key: "listen",
        kind: Kind::Addr,
        default: Depends("unset"),
        ty: "`IP:PORT`",
        doc: "an extra TCP listener that serves only `GET /health` and `GET /metrics`; must \
            differ from `server.listen`",
        show: |c| {
            set_or(
                c.admin.listen.map(|listen| quote(&listen.to_string())),
                "\"\"",
                "not set: only the admin socket serves",
            )
        },
    },
];
