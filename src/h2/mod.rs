//! h2c: HTTP/2 over cleartext relayed between a client and the function, as
//! a sans-IO core: [`conn::Conn`] takes bytes from each side, the time and the shutdown, and
//! gives bytes for each side and actions; the proxy's event loop owns the sockets.
//!
//! Its one job: every request stream of a client's h2c connection is an invocation, relayed
//! on the connection's own function connection, with the guarantees fc-init gives HTTP/1.1
//! requests (a request id, a deadline, a concurrency limit, a drain), without the relay ever
//! being what breaks a peer's protocol state.
//!
//! Rooms: [`frame`] reads and writes frames (RFC 9113), [`hpack`] decodes and encodes
//! header blocks (RFC 7541), [`block`] decides how each header block goes on, [`conn`] is
//! the connection.
//!
//! The rules:
//! - Stream ids are the same on both connections: the client's streams are the function's.
//!   Frames go on as they came wherever fc-init has nothing to add (DATA, PING, GOAWAY,
//!   WINDOW_UPDATE, RST_STREAM, SETTINGS ACKs). fc-init sends no SETTINGS of its own; the
//!   client's SETTINGS are the function connection's, and the other way round.
//! - SETTINGS are passed on with three changes: `SETTINGS_MAX_FRAME_SIZE` and
//!   `SETTINGS_HEADER_TABLE_SIZE` are lowered to fc-init's limits (they bound what fc-init
//!   must hold: one frame, one mirrored HPACK table), and `SETTINGS_ENABLE_PUSH` is 0
//!   towards the function (fc-init relays no pushed streams; a PUSH_PROMISE is a protocol
//!   error, as it would be for the client).
//! - Flow control passes through: DATA frames go on unchanged, so each peer's windows are
//!   the other's, and WINDOW_UPDATEs go on unchanged. fc-init never sends DATA. When it
//!   drops DATA (on a stream it refused or reset, the bytes already in flight), it gives the
//!   sender the connection window back with a WINDOW_UPDATE on stream 0, since the receiver
//!   will never do so for bytes it did not get (RFC 9113 §6.9). Neither side's window is
//!   violated by fc-init; a peer that violates the other's is the other's to refuse. The
//!   proxy bounds its buffers by back-pressure (it stops reading a side while the output
//!   towards the other is full), not by window accounting.
//! - Header blocks: fc-init decodes every block from both sides with a mirror of the
//!   sender's HPACK table, and writes it on without disturbing the receiver's table: the
//!   sender's bytes as they were, plus `x-fc-request-id` appended as a literal without
//!   indexing when fc-init adds it; when a block that changed the sender's table must be
//!   dropped or cut, that direction switches to re-encoding every block with no table at
//!   all ([`block`] says why that stays consistent). HEADERS and CONTINUATION are written
//!   again (without padding or priority), split at 16 KiB.
//! - A new request stream is an invocation ([`conn::Action::Started`]): the client's valid
//!   `x-fc-request-id` (`[A-Za-z0-9._:-]{1,128}`) is kept, else the id the host gives is
//!   added (an invalid one is taken out). Over the concurrency limit (the host's permit
//!   says no), after fc-init's GOAWAY or a peer's, or beyond `max_streams`, the stream gets
//!   `RST_STREAM REFUSED_STREAM`, which clients retry.
//! - `function.timeout` runs from the request headers to the end of the function's
//!   response: then `RST_STREAM CANCEL` to the function and, to the client, `:status 504`
//!   with `x-fc-error-type: FunctionTimeout`, or for `content-type: application/grpc` a
//!   trailers-only answer with `grpc-status: 4` (trailers after the response headers if the
//!   function had sent them; a plain HTTP response already under way gets `RST_STREAM
//!   CANCEL`); `RST_STREAM NO_ERROR` follows when the client had not finished sending.
//! - The function's connection failing answers the running streams like a timeout, with
//!   `UnhandledInvocationError` (502, or `grpc-status: 14`).
//! - Shutdown: GOAWAY (last stream = the last the client opened, `NO_ERROR`) to the client;
//!   open streams run on until they end or the drain deadline, when they are answered
//!   `InstanceStopping` (503 or `grpc-status: 14`); then GOAWAY to the function and close.
//! - Errors (RFC 9113 §5.4): a connection error is answered with GOAWAY to the side at
//!   fault, the streams end, both connections close; a stream error resets that stream on
//!   both sides. Nothing panics on any bytes; sizes are bounded (frames by
//!   `max_frame_size`, header blocks by `max_header_block` on the wire and by
//!   `max_request_headers`/`max_response_headers` decoded (an HPACK bomb: a request over it
//!   is answered `:status 431`), tables by `max_table_size`, streams by `max_streams`).
//! - Floods ([`conn::calm`]): frames that carry no request and invocations the client cancels
//!   or breaks (Rapid Reset) each spend a token bucket; a client that empties one gets
//!   `GOAWAY ENHANCE_YOUR_CALM`.
//!
//! What the shell around it does (the proxy's `h2c` module): sniff [`frame::PREFACE`]
//! on a new client connection; open the connection's own function connection; hand each
//! side's bytes to `on_client_bytes`/`on_function_bytes` from a buffer of at least
//! `max_frame_size + 9` bytes, keeping what was not consumed; write out `to_client` and
//! `to_function`, reading no more from a side while the buffer towards the other is full;
//! report end of file or errors with `on_client_closed`/`on_function_closed`; wake at
//! `next_deadline` for `on_tick`; call `shutdown` with the drain deadline; answer
//! [`conn::Host`] from its limiter and request ids; and turn the actions into FC lines,
//! metrics and the in-flight count ([`conn::Action::Ended`] comes exactly once per
//! [`conn::Action::Started`]).

pub mod block;
pub mod conn;
pub mod frame;
pub mod hpack;
mod huffman;

#[cfg(test)]
mod tests;
