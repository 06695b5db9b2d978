//! fc-init's own diagnostics: stderr, filtered by `FC_INIT_LOG` (env_logger syntax) or `-v`.
//! `RUST_LOG` is never read: it belongs to the function.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::LogFormat;

pub fn init(verbosity: u8, format: LogFormat) {
    let level = match verbosity {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    let mut builder = env_logger::Builder::new();
    builder
        .filter_level(level)
        .target(env_logger::Target::Stderr);
    if let Ok(filters) = std::env::var("FC_INIT_LOG") {
        builder.parse_filters(&filters);
    }
    match format {
        LogFormat::Text => builder
            .format(|buf, record| writeln!(buf, "fc-init {}: {}", record.level(), record.args())),
        LogFormat::Json => builder.format(|buf, record| {
            let line = JsonLine {
                time: buf.timestamp_millis().to_string(),
                level: record.level().as_str(),
                message: record.args().to_string(),
            };
            let text = serde_json::to_string(&line).map_err(std::io::Error::other)?;
            writeln!(buf, "{text}")
        }),
    };
    // A second init (only possible in tests) keeps the first logger.
    let _ = builder.try_init();
}

/// One diagnostic with `log.format = "json"`: one object per line.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    /// RFC 3339, milliseconds, UTC.
    time: String,
    level: &'a str,
    message: String,
}

/// Writes one whole line to stdout: the contract's `FC ... RequestId:` lines. The lock keeps
/// lines from several threads whole; a closed stdout is no reason to stop supervising.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{args}");
    let _ = out.flush();
}

/// An error with its causes, `operation: cause: cause`, for the one place an error is printed.
/// A cause whose text the message already carries is not repeated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Lets a repeated diagnostic through at most once a second (a store that is down fails
/// every call, a descriptor shortage every accept: the log must not flood stderr). Also the
/// gate of other once-a-second work (the proxy's memory trim).
#[derive(Debug, Default)]
pub struct Throttle {
    /// When a line last went through, ms since the epoch.
    last: AtomicU64,
}

impl Throttle {
    pub const fn new() -> Throttle {
        Throttle {
            last: AtomicU64::new(0),
        }
    }

    /// Whether a line may be written now; if so, the next one may only in a second.
    pub fn ready(&self) -> bool {
        let now = crate::events::time::now_ms();
        let last = self.last.load(Ordering::Relaxed);
        now.saturating_sub(last) >= 1000
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}
