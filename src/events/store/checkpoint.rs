//! Checkpoints of the SQLite store's WAL on a thread of their own, off the submissions'
//! commit path (see the store's docs, "Checkpoints off the commit path").

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use rusqlite::{Connection, OpenFlags};

use super::rows::sql_err;
use super::BUSY_TIMEOUT;
use crate::events::error::StoreError;
use crate::events::signal::lock;

/// Commits between two background checkpoints.
pub(super) const CHECKPOINT_EVERY: u64 = 64;

/// Copies committed WAL pages into the database file on a thread of its own, with its own
/// connection (`PRAGMA wal_checkpoint(PASSIVE)`: never blocks the writer), so that the
/// copying and the database file's fsync stay off the submissions' commit path. The writer's
/// own automatic checkpoint ([`WAL_CHECKPOINT_PAGES`]) remains the backstop, and is what
/// rewinds the WAL under sustained load; it finds most pages copied already.
///
/// Failure modes: a failed checkpoint is logged and retried at the next request; nothing
/// depends on it but the WAL's size.
pub(super) struct Checkpointer {
    shared: Arc<CheckpointShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct CheckpointShared {
    /// (a checkpoint is due, the store is closing)
    state: Mutex<(bool, bool)>,
    cv: Condvar,
}

impl Checkpointer {
    pub(super) fn start(path: &Path, flags: OpenFlags) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open_with_flags(path, flags).map_err(sql_err("open"))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err("open"))?;
        let shared = Arc::new(CheckpointShared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fc-init-checkpoint".into())
            .spawn(move || checkpoint_loop(&conn, &s))
            .map_err(|e| StoreError::OpenFile {
                path: path.to_path_buf(),
                source: Arc::new(e),
            })?;
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }

    pub(super) fn request(&self) {
        lock(&self.shared.state).0 = true;
        self.shared.cv.notify_one();
    }
}

impl Drop for Checkpointer {
    /// Waits for the thread: its connection must be closed before the file's lock is.
    fn drop(&mut self) {
        lock(&self.shared.state).1 = true;
        self.shared.cv.notify_one();
        if let Some(t) = self.thread.take() {
            // A panic in it was logged by the panic hook; the store closes regardless.
            let _ = t.join();
        }
    }
}

fn checkpoint_loop(conn: &Connection, shared: &CheckpointShared) {
    loop {
        let mut state = lock(&shared.state);
        while !state.0 && !state.1 {
            state = shared
                .cv
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.1 {
            return;
        }
        state.0 = false;
        drop(state);
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if let Err(e) = result {
            log::warn!("event store: background checkpoint: {e}");
        }
    }
}
