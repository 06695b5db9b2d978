//! The FC Invoke lines of a loop's requests (docs/reference.md §7), and the rule that a request's
//! Start line is on stdout before the request reaches the function, in one place: a request
//! asks [`Lines::may_send`] before it goes out; one whose line is not written yet waits, and
//! the loop lets every waiting request go right after it has written the lines of its batch
//! ([`Lines::write`]), so the lines of many requests cost one write.

use std::io::Write;

use mio::Token;

use crate::metrics::Outcome;

/// The fixed parts of the lines.
const INVOKE_START: &str = "FC Invoke Start RequestId: ";
const INVOKE_END: &str = "FC Invoke End RequestId: ";
/// After `, Error: ` on the End line of a failed invocation (docs/reference.md §7).
const END_ERROR: &str = "Unhandled function error";
/// ... of an invocation whose client closed its connection before the answer was complete
/// (docs/reference.md §8).
const CLIENT_CLOSED: &str = "client closed the connection";
/// ... of an invocation cut by a fault of fc-init's own (a panic while handling it).
const INTERNAL_ERROR: &str = "fc-init internal error";

/// A request's Start line, queued at this write (see [`Lines::may_send`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Started(u64);

/// A loop's lines not yet on stdout, and the requests that wait for them.
#[derive(Default)]
pub(super) struct Lines {
    pending: Vec<u8>,
    /// Bumped by every write: a Start line queued at an earlier one is out.
    written: u64,
    waiting: Vec<Token>,
}

impl Lines {
    /// Queues the Start line of `request_id`.
    pub(super) fn start(&mut self, request_id: &str) -> Started {
        self.pending.extend_from_slice(INVOKE_START.as_bytes());
        self.pending.extend_from_slice(request_id.as_bytes());
        self.pending.push(b'\n');
        Started(self.written)
    }

    /// Queues the End line of `request_id`, which ended with `outcome`.
    pub(super) fn end(&mut self, request_id: &str, outcome: Outcome) {
        self.pending.extend_from_slice(INVOKE_END.as_bytes());
        self.pending.extend_from_slice(request_id.as_bytes());
        if let Some(error) = end_error(outcome) {
            self.pending.extend_from_slice(b", Error: ");
            self.pending.extend_from_slice(error.as_bytes());
        }
        self.pending.push(b'\n');
    }

    /// The rule: whether the request of client `t`, whose Start line is `started` (`None`:
    /// it has none, `log.invocations = false`), may go to the function now. If its line is
    /// not written yet, `t` waits for the loop's next [`Lines::write`].
    pub(super) fn may_send(&mut self, started: Option<Started>, t: Token) -> bool {
        match started {
            Some(Started(at)) if at >= self.written => {
                self.waiting.push(t);
                false
            }
            _ => true,
        }
    }

    /// Whether requests wait for their Start line (the exchange harness asks).
    #[cfg(any(test, feature = "exchange-seam"))]
    pub(super) fn anyone_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Writes the pending lines to `out` in one go, and returns the clients whose requests
    /// waited for them (they may go now).
    pub(super) fn write(&mut self, out: &mut impl Write) -> Vec<Token> {
        if !self.pending.is_empty() {
            // A closed stdout is no reason to stop serving.
            let _ = out.write_all(&self.pending);
            let _ = out.flush();
            self.pending.clear();
            self.written += 1;
        }
        std::mem::take(&mut self.waiting)
    }
}

/// What the End line of an invocation that ended with `outcome` says after `, Error: `
/// (docs/reference.md §7, §8): nothing for a function's answer to an HTTP invocation (whatever its
/// status); the function's failure for a failed `/invoke` and for fc-init's own error
/// answers; the client's part when it went away first.
pub(super) fn end_error(outcome: Outcome) -> Option<&'static str> {
    match outcome {
        Outcome::Success => None,
        Outcome::FunctionError | Outcome::Error(_) => Some(END_ERROR),
        Outcome::ClientClosed => Some(CLIENT_CLOSED),
        Outcome::InternalError => Some(INTERNAL_ERROR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_goes_out_only_after_its_start_line_is_written() {
        let mut l = Lines::default();
        let started = l.start("a");
        assert!(!l.may_send(Some(started), Token(7)), "not written yet");
        assert!(l.may_send(None, Token(8)), "no line, no wait");
        let mut out = Vec::new();
        assert_eq!(l.write(&mut out), vec![Token(7)]);
        assert_eq!(out, b"FC Invoke Start RequestId: a\n");
        assert!(l.may_send(Some(started), Token(7)));
        l.end("a", Outcome::ClientClosed);
        l.write(&mut out);
        assert!(String::from_utf8_lossy(&out)
            .ends_with("FC Invoke End RequestId: a, Error: client closed the connection\n"));
    }
}
