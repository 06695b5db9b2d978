//! fc-init's exit statuses (docs/reference.md §8), in one table that `fc-init` itself and
//! `fc-init ctl` both return to, and that the reference documents (a test checks it).
//!
//! A supervised function's own status passes through unchanged (0..=255, or 128+N when it died
//! of signal N), as with tini; the statuses below are the ones fc-init makes itself.

/// Success: the function exited 0, or `ctl` got a 2xx answer.
pub const OK: i32 = 0;
/// fc-init's own failure (the runtime directory, the listener, the store); `ctl`: the admin API
/// answered an error or could not be reached.
pub const FAILURE: i32 = 1;
/// A usage or configuration error, reported before anything was started.
pub const USAGE: i32 = 2;
/// The instance could not be initialized: the initializer failed under `on_failure = "exit"`
/// or after `max_attempts`, or a function that is still running never accepted connections
/// within `start_timeout`.
pub const NOT_INITIALIZED: i32 = 3;
/// The command was found but could not be executed (EACCES, ENOEXEC).
pub const NOT_EXECUTABLE: i32 = 126;
/// The command was not found (ENOENT).
pub const NOT_FOUND: i32 = 127;
/// Added to a signal's number when the function died of that signal (SIGKILL: 137).
pub const SIGNAL_BASE: i32 = 128;

/// Every status fc-init makes itself, with what it means, in the reference's order.
pub const TABLE: &[(i32, &str)] = &[
    (
        OK,
        "the function exited 0; for ctl, the admin API answered 2xx",
    ),
    (
        FAILURE,
        "fc-init's own failure; for ctl, an API error or an unreachable socket",
    ),
    (USAGE, "usage or configuration error (nothing was started)"),
    (NOT_INITIALIZED, "the instance could not be initialized"),
    (NOT_EXECUTABLE, "the command is not executable"),
    (NOT_FOUND, "the command was not found"),
    (SIGNAL_BASE, "128+N: the function died of signal N"),
];

/// The status for a function that died of signal `signo`.
pub fn for_signal(signo: i32) -> i32 {
    SIGNAL_BASE + signo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_each_status_once() {
        let mut codes: Vec<i32> = TABLE.iter().map(|(c, _)| *c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), TABLE.len());
        assert_eq!(for_signal(9), 137);
    }
}
