//! The keys of `[server]`: where fc-init listens and the limits of its proxy (docs/reference.md §3).

use crate::config::schema::{
    Kind, AT_LEAST_ONE, COUNT, HTTP2_CHOICES, MAX_BUSY_POLL, PLATFORM_CHOICES, POSITIVE,
};
use crate::config::show::{duration, quote, set, set_or, size, Shown};
use crate::config::{Config, Platform};

use super::KeyDefault::{Depends, Is};
use super::{Key, Section};

pub(super) const SECTION: Section = Section::plain("server", KEYS);

const KEYS: &[Key] = &[
    Key {
        section: "server",
        key: "listen",
        kind: Kind::Addr,
        default: Depends(
            "`0.0.0.0:9000` when serving (`0.0.0.0:$FC_CUSTOM_LISTEN_PORT` / `$FC_SERVER_PORT` \
            when set); unset otherwise",
        ),
        ty: "`IP:PORT`",
        doc: "where fc-init accepts invocations; setting it turns serving on",
        show: |c| {
            set_or(
                c.server.listen.map(|listen| quote(&listen.to_string())),
                "\"0.0.0.0:9000\"",
                "plain-init mode: nothing listens, as with tini",
            )
        },
    },
    Key {
        section: "server",
        key: "platform",
        kind: Kind::Choice(PLATFORM_CHOICES),
        default: Is("auto"),
        ty: "`auto` \\| `fc` \\| `none`",
        doc: "who sends lifecycle calls (section 5); `auto` is `fc` when both `FC_FUNCTION_NAME` \
            and `FC_REGION` are set, else `none`",
        show: platform,
    },
    Key {
        section: "server",
        key: "max_concurrency",
        kind: COUNT,
        default: Is("100"),
        ty: "integer",
        doc: "requests in flight to the function at once; `0` = unlimited",
        show: |c| set(c.server.max_concurrency.to_string()),
    },
    Key {
        section: "server",
        key: "max_queue",
        kind: COUNT,
        default: Is("1000"),
        ty: "integer",
        doc: "requests waiting for a free slot; beyond it `TooManyRequests`",
        show: |c| set(c.server.max_queue.to_string()),
    },
    Key {
        section: "server",
        key: "max_connections",
        kind: AT_LEAST_ONE,
        default: Is("4096"),
        ty: "integer ≥ 1",
        doc: "client connections open at once; one more is answered 429 `TooManyRequests` and \
            closed",
        show: |c| set(c.server.max_connections.to_string()),
    },
    Key {
        section: "server",
        key: "max_header_bytes",
        kind: Kind::Size { min: 1024 },
        default: Is("8KiB"),
        ty: "size ≥ 1KiB",
        doc: "largest request header block; beyond it 431",
        show: |c| set(size(c.server.max_header_bytes as u64)),
    },
    Key {
        section: "server",
        key: "max_body",
        kind: Kind::Size { min: 0 },
        default: Is("32MiB"),
        ty: "size",
        doc: "largest request body; beyond it 413; the function never receives more",
        show: |c| set(size(c.server.max_body)),
    },
    Key {
        section: "server",
        key: "header_timeout",
        kind: POSITIVE,
        default: Is("10s"),
        ty: "duration > 0",
        doc: "time for a client to send a whole header block (from accept, for a connection's \
            first request), however slowly it trickles; then 408 and the connection is closed. A \
            connection that has sent nothing at all by then (or, between requests, by \
            `idle_timeout`) is closed without an answer",
        show: |c| set(duration(c.server.header_timeout)),
    },
    Key {
        section: "server",
        key: "body_buffer",
        kind: Kind::Size { min: 0 },
        default: Is("1MiB"),
        ty: "size",
        doc: "a request body up to this size is read whole before the request takes a concurrency \
            slot, so a slow sender holds only its connection; larger bodies stream to the \
            function from a slot",
        show: |c| set(size(c.server.body_buffer)),
    },
    Key {
        section: "server",
        key: "body_timeout",
        kind: POSITIVE,
        default: Is("30s"),
        ty: "duration > 0",
        doc: "time for that buffered read as a whole; then 408 and the connection is closed",
        show: |c| set(duration(c.server.body_timeout)),
    },
    Key {
        section: "server",
        key: "idle_timeout",
        kind: POSITIVE,
        default: Is("60s"),
        ty: "duration > 0",
        doc: "how long an idle keep-alive client connection stays open",
        show: |c| set(duration(c.server.idle_timeout)),
    },
    Key {
        section: "server",
        key: "busy_poll",
        kind: Kind::Duration {
            nonzero: false,
            max: Some(MAX_BUSY_POLL),
        },
        default: Is("50us"),
        ty: "duration, at most `1ms`",
        doc: "after handling traffic an event loop keeps polling this long, yielding its CPU to \
            anything runnable, before it sleeps: it saves the cost of waking a sleeping thread \
            (tens of µs on a virtual machine) between one request and the next; an idle instance \
            never polls; `0s` turns it off (where CPU time is capped or billed by use); off with \
            fewer than 2 CPUs",
        show: |c| set(duration(c.server.busy_poll)),
    },
    Key {
        section: "server",
        key: "body_buffer_total",
        kind: Kind::Size { min: 0 },
        default: Is("64MiB"),
        ty: "size",
        doc: "what the request bodies buffered by all connections (see `body_buffer`; \
            asynchronous submissions included) may take together, across every event loop; a \
            connection whose body does not fit reads nothing more (TCP backpressure) until there \
            is room or its `body_timeout` ends (408), so memory stays bounded however many \
            clients send at once. A body of known length is reserved whole; a chunked invocation \
            that cannot grow its share goes on with what it has buffered and streams the rest \
            from a slot. An asynchronous submission larger than it is refused 413",
        show: |c| set(size(c.server.body_buffer_total)),
    },
    Key {
        section: "server",
        key: "http2",
        kind: Kind::Choice(HTTP2_CHOICES),
        default: Is("on"),
        ty: "`on` \\| `off`",
        doc: "a client connection that opens with the HTTP/2 preface (prior knowledge, as gRPC \
            clients do over plaintext) is relayed as h2c to a connection of its own to the \
            function, which must speak h2c; each request stream is an invocation \
            ([§14](#14-http2-cleartext-h2c-and-grpc)). `off`: the preface is a malformed \
            HTTP/1.1 request (400)",
        show: |c| set(quote(if c.server.http2 { "on" } else { "off" })),
    },
];

fn platform(c: &Config) -> Shown {
    let platform = match c.server.platform {
        Platform::Fc => "fc",
        Platform::None => "none",
    };
    match c.server.platform_auto {
        true => Shown::Noted(quote("auto"), format!("resolves to {platform} here")),
        false => set(quote(platform)),
    }
}
