//! Counters for `GET /metrics` (Prometheus text format 0.0.4): the traffic side records each
//! request's outcome and latency here with relaxed atomics (no lock on the hot path); the admin
//! API renders them together with the lifecycle status and the async store's counts.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::http::fc_error::ErrorType;
use crate::state::Status;

/// How a request ended, the label of `fc_init_requests_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The function answered (any status, for HTTP invocations; 2xx for event invocations).
    Success,
    /// An event invocation the function answered with a failure (non-2xx, x-fc-status: 404).
    FunctionError,
    /// fc-init answered with one of its own errors.
    Error(ErrorType),
    /// fc-init itself failed (the async store could not store an event, a panic while
    /// handling the request).
    InternalError,
    /// The client closed its connection before the answer was complete.
    ClientClosed,
}

const OUTCOMES: [&str; 11] = [
    "success",
    "function_error",
    "InitializationError",
    "UnhandledInvocationError",
    "FunctionTimeout",
    "TooManyRequests",
    "InstanceStopping",
    "InvalidArgument",
    "InternalError",
    "AsyncStoreUnavailable",
    "client_closed",
];

impl Outcome {
    fn index(self) -> usize {
        match self {
            Outcome::Success => 0,
            Outcome::FunctionError => 1,
            Outcome::Error(ErrorType::InitializationError) => 2,
            Outcome::Error(ErrorType::UnhandledInvocationError) => 3,
            Outcome::Error(ErrorType::FunctionTimeout) => 4,
            Outcome::Error(ErrorType::TooManyRequests) => 5,
            Outcome::Error(ErrorType::InstanceStopping) => 6,
            Outcome::Error(ErrorType::InvalidArgument) => 7,
            Outcome::InternalError => 8,
            Outcome::Error(ErrorType::AsyncStoreUnavailable) => 9,
            Outcome::ClientClosed => 10,
        }
    }
}

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
pub struct Metrics {
    requests: [AtomicU64; OUTCOMES.len()],
    /// Non-cumulative counts per bucket; the last one is +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    duration_sum_nanos: AtomicU64,
    /// Reads how many requests wait for a concurrency slot (set by the traffic side).
    queued: OnceLock<QueuedSource>,
    /// Panics caught while handling a connection (each cost that connection only).
    internal_errors: AtomicU64,
}

type QueuedSource = Box<dyn Fn() -> usize + Send + Sync>;

/// Lifecycle and async figures the metrics text includes besides the request counters.
pub struct Snapshot<'a> {
    pub status: &'a Status,
    pub in_flight: usize,
    /// `(status name, count)` per async event status, when the store is enabled.
    pub async_events: Option<Vec<(&'static str, u64)>>,
}

impl Metrics {
    pub fn record(&self, outcome: Outcome, took: Duration) {
        self.requests[outcome.index()].fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.duration_sum_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// A fault of fc-init's own (a panic) was contained: counted in
    /// `fc_init_internal_errors_total`.
    pub fn internal_error(&self) {
        self.internal_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests waiting for a concurrency slot now.
    pub fn queued(&self) -> usize {
        self.queued.get().map_or(0, |f| f())
    }

    /// Where [`Metrics::queued`] reads from; set once.
    pub fn set_queued_source(&self, f: impl Fn() -> usize + Send + Sync + 'static) {
        let _ = self.queued.set(Box::new(f));
    }

    /// The whole exposition, served as `text/plain; version=0.0.4`.
    pub fn render(&self, snap: &Snapshot<'_>) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let w = &mut out;
        family(
            w,
            "fc_init_requests_total",
            "counter",
            "Requests by how they ended.",
        );
        for (i, name) in OUTCOMES.iter().enumerate() {
            let n = self.requests[i].load(Ordering::Relaxed);
            let _ = writeln!(w, "fc_init_requests_total{{outcome=\"{name}\"}} {n}");
        }
        family(
            w,
            "fc_init_request_duration_seconds",
            "histogram",
            "Time from a request's head to its answer.",
        );
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                w,
                "fc_init_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.buckets[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            w,
            "fc_init_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.duration_sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(w, "fc_init_request_duration_seconds_sum {sum}");
        let _ = writeln!(w, "fc_init_request_duration_seconds_count {cumulative}");
        gauge(
            w,
            "fc_init_in_flight_requests",
            "Requests being forwarded to the function.",
            snap.in_flight as u64,
        );
        gauge(
            w,
            "fc_init_queued_requests",
            "Requests waiting for a concurrency slot.",
            self.queued() as u64,
        );
        family(
            w,
            "fc_init_initializer_attempts_total",
            "counter",
            "Initializer attempts by result.",
        );
        let s = snap.status;
        let failed = s.initializer_failures;
        // An attempt under way is neither yet.
        let succeeded = s.initializer_successes;
        let _ = writeln!(
            w,
            "fc_init_initializer_attempts_total{{result=\"success\"}} {succeeded}"
        );
        let _ = writeln!(
            w,
            "fc_init_initializer_attempts_total{{result=\"failure\"}} {failed}"
        );
        family(
            w,
            "fc_init_function_restarts_total",
            "counter",
            "Times the function was started again.",
        );
        let _ = writeln!(w, "fc_init_function_restarts_total {}", s.restarts);
        family(
            w,
            "fc_init_internal_errors_total",
            "counter",
            "Faults of fc-init's own (panics) contained to the connection they happened on.",
        );
        let _ = writeln!(
            w,
            "fc_init_internal_errors_total {}",
            self.internal_errors.load(Ordering::Relaxed)
        );
        if let Some(counts) = &snap.async_events {
            family(
                w,
                "fc_init_async_events",
                "gauge",
                "Stored asynchronous events by status.",
            );
            for (status, n) in counts {
                let _ = writeln!(w, "fc_init_async_events{{status=\"{status}\"}} {n}");
            }
        }
        out
    }
}

/// Appends `fc_init_async_destination_deliveries_total{result}` (docs/reference.md §10) to `w`.
pub fn render_deliveries(w: &mut String, counts: &[(&str, u64)]) {
    family(
        w,
        "fc_init_async_destination_deliveries_total",
        "counter",
        "Destination delivery tries of asynchronous events by result.",
    );
    for (result, n) in counts {
        let _ = writeln!(
            w,
            "fc_init_async_destination_deliveries_total{{result=\"{result}\"}} {n}"
        );
    }
}

fn family(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(w: &mut String, name: &str, help: &str, value: u64) {
    family(w, name, "gauge", help);
    let _ = writeln!(w, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Shared;

    #[test]
    fn histogram_is_cumulative_and_counts_match() {
        let m = Metrics::default();
        m.record(Outcome::Success, Duration::from_micros(300));
        m.record(Outcome::Success, Duration::from_millis(30));
        m.record(
            Outcome::Error(ErrorType::FunctionTimeout),
            Duration::from_secs(60),
        );
        let status = Shared::default().snapshot();
        let text = m.render(&Snapshot {
            status: &status,
            in_flight: 2,
            async_events: None,
        });
        assert!(
            text.contains("fc_init_requests_total{outcome=\"success\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("fc_init_requests_total{outcome=\"FunctionTimeout\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("fc_init_request_duration_seconds_bucket{le=\"0.0005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("fc_init_request_duration_seconds_bucket{le=\"0.05\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("fc_init_request_duration_seconds_bucket{le=\"+Inf\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("fc_init_request_duration_seconds_count 3"),
            "{text}"
        );
        assert!(text.contains("fc_init_in_flight_requests 2"), "{text}");
        assert!(text.contains("fc_init_internal_errors_total 0"), "{text}");
        m.internal_error();
        m.record(Outcome::ClientClosed, Duration::from_millis(1));
        let text = m.render(&Snapshot {
            status: &status,
            in_flight: 0,
            async_events: None,
        });
        assert!(text.contains("fc_init_internal_errors_total 1"), "{text}");
        assert!(
            text.contains("fc_init_requests_total{outcome=\"client_closed\"} 1"),
            "{text}"
        );
    }
}
