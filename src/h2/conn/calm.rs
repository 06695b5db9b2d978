//! The flood limits on what a client makes fc-init (and the function) do for nothing: frames
//! that carry no request (PING, SETTINGS, PRIORITY, RST_STREAM, unknown types, empty DATA,
//! streams refused or answered by fc-init), and invocations the client cancels or breaks
//! (Rapid Reset, CVE-2023-44487: HEADERS then RST_STREAM in a loop starts work on the
//! function at no cost to the attacker). Each is a token bucket, filled at a steady rate up
//! to a burst; a client that empties one gets `GOAWAY ENHANCE_YOUR_CALM` and the connection
//! closes (RFC 9113 §10.5: "an endpoint MAY treat activity that is suspicious as a
//! connection error of type ENHANCE_YOUR_CALM").
//!
//! The numbers are constants, not settings: a well-behaved client is far below them (a gRPC
//! channel pings every few seconds at most and cancels calls one by one), an attack is far
//! above (thousands a second), and nothing between needs tuning.

use std::time::{Duration, Instant};

use crate::h2::frame::{ErrorCode, H2Error};

/// Frames that carry no request, at most this many at once...
pub const FRAME_BURST: u32 = 2000;
/// ...and this many a second after that.
pub const FRAME_RATE: u32 = 1000;
/// Invocations the client cancels or breaks (RST_STREAM, a stream error), at most this many
/// at once...
pub const RESET_BURST: u32 = 200;
/// ...and this many a second after that.
pub const RESET_RATE: u32 = 100;

/// A token bucket in thousandths of a token.
#[derive(Debug)]
pub(super) struct Bucket {
    level: u64,
    burst: u64,
    /// Thousandths of a token per millisecond (= tokens per second).
    rate: u64,
    at: Option<Instant>,
}

impl Bucket {
    pub(super) fn new(burst: u32, rate: u32) -> Bucket {
        Bucket {
            level: u64::from(burst) * 1000,
            burst: u64::from(burst) * 1000,
            rate: u64::from(rate),
            at: None,
        }
    }

    /// Takes one token at `now`; `false` when none is left.
    pub(super) fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let ms = now.saturating_duration_since(at).as_millis();
            let ms = u64::try_from(ms).unwrap_or(u64::MAX);
            self.level = self
                .level
                .saturating_add(ms.saturating_mul(self.rate))
                .min(self.burst);
            // Only whole milliseconds are counted: the rest waits for the next call.
            self.at = Some(at + Duration::from_millis(ms));
        } else {
            self.at = Some(now);
        }
        if self.level < 1000 {
            return false;
        }
        self.level -= 1000;
        true
    }
}

/// A client's two budgets.
#[derive(Debug)]
pub(super) struct Calm {
    frames: Bucket,
    resets: Bucket,
}

impl Calm {
    pub(super) fn new() -> Calm {
        Calm {
            frames: Bucket::new(FRAME_BURST, FRAME_RATE),
            resets: Bucket::new(RESET_BURST, RESET_RATE),
        }
    }

    /// A frame (or a stream) that carries no request.
    pub(super) fn frame(&mut self, now: Instant) -> Result<(), H2Error> {
        match self.frames.take(now) {
            true => Ok(()),
            false => Err(H2Error::conn(
                ErrorCode::EnhanceYourCalm,
                "too many frames without a request",
            )),
        }
    }

    /// An invocation the client cancelled or broke.
    pub(super) fn reset(&mut self, now: Instant) -> Result<(), H2Error> {
        match self.resets.take(now) {
            true => Ok(()),
            false => Err(H2Error::conn(
                ErrorCode::EnhanceYourCalm,
                "too many streams reset (rapid reset)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10, 100);
        for i in 0..10 {
            assert!(b.take(t0), "token {i} of the burst");
        }
        assert!(!b.take(t0), "the burst is spent");
        // 100 a second: one every 10 ms.
        assert!(b.take(t0 + Duration::from_millis(10)));
        assert!(!b.take(t0 + Duration::from_millis(10)));
        // A long pause refills the burst, not more.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..10 {
            assert!(b.take(later));
        }
        assert!(!b.take(later));
    }

    #[test]
    fn fractions_of_a_millisecond_are_not_lost() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1, 1000);
        assert!(b.take(t0));
        // One a millisecond, asked every 1.5 ms: every call finds its token.
        for i in 1..1000u64 {
            assert!(b.take(t0 + Duration::from_micros(i * 1500)), "at {i}");
        }
    }

    #[test]
    fn a_steady_rate_under_the_limit_is_never_refused() {
        let t0 = Instant::now();
        let mut b = Bucket::new(5, 100);
        for i in 0..10_000u64 {
            // 50 a second, for 200 s.
            assert!(b.take(t0 + Duration::from_millis(i * 20)), "at {i}");
        }
    }
}
