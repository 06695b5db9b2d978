//! fc-init's own diagnostics: stderr, filtered by `FC_INIT_LOG` (env_logger syntax) or `-v`.
//! `RUST_LOG` is never read: it belongs to the function.

use std::io::Write;

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
