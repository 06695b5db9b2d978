//! What the unit tests of several modules share (built for tests only): fresh scratch paths.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A path under the temp dir that no other test uses, in this process or a concurrent one:
/// `fc-init-<pid>-<n>-<name>`, `n` counting the calls. Whatever an earlier process with the
/// same pid left there is removed; nothing is created.
pub(crate) fn scratch_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("fc-init-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    let _ = std::fs::remove_file(&path);
    path
}
