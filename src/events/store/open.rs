//! Opening the store: creating the file (mode 0600, `flock`ed), setting up WAL and the
//! writer, reader and checkpointer connections, and queueing again what a crash left RUNNING.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

use super::checkpoint::Checkpointer;
use super::rows::{migrate, run_tx, sql_err};
use super::{Store, StoreError, StoreOptions, StoreStats, BUSY_TIMEOUT, WAL_CHECKPOINT_PAGES};
use crate::events::signal::Signal;

impl Store {
    /// Opens (creating if needed, mode 0600) the store at `path`, migrates its schema, and puts
    /// events a crashed fc-init left RUNNING back to QUEUED (see [`Store::recovered_at_open`]).
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        let open_err = |source: io::Error| StoreError::OpenFile {
            path: path.to_path_buf(),
            source: Arc::new(source),
        };
        // Create the file ourselves: SQLite would use 0644, and the store holds request
        // bodies. SQLite gives its -wal and -shm files the database file's mode.
        let (file, created) = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(file) => (file, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(open_err)?,
                false,
            ),
            Err(e) => return Err(open_err(e)),
        };
        flock_exclusive(&file).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                StoreError::Locked {
                    path: path.to_path_buf(),
                }
            } else {
                open_err(e)
            }
        })?;
        if created {
            // The new directory entry must be durable before any event in the file is.
            sync_parent_dir(path).map_err(open_err)?;
        }

        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let writer = Connection::open_with_flags(path, flags).map_err(sql_err("open"))?;
        writer.busy_timeout(BUSY_TIMEOUT).map_err(sql_err("open"))?;
        let journal_mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(sql_err("open"))?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::WalUnavailable {
                path: path.to_path_buf(),
                journal_mode,
            });
        }
        // FULL: fsync the WAL on every commit (see the module docs).
        writer
            .pragma_update(None, "synchronous", "FULL")
            .map_err(sql_err("open"))?;
        // The WAL is reused, not shrunk, after a checkpoint; cap what a burst leaves behind.
        writer
            .pragma_update(None, "journal_size_limit", 32 * 1024 * 1024)
            .map_err(sql_err("open"))?;
        // A checkpoint runs inside the commit that crosses this many WAL pages, on the
        // submissions' critical path; SQLite's 1000 pages (4 MiB) means one every few dozen
        // group commits under load. Fewer, larger checkpoints also write a page rewritten by
        // many commits (the tail of the time-ordered indexes) once instead of many times.
        writer
            .pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
            .map_err(sql_err("open"))?;
        // The page cache stays at SQLite's default (2 MiB): every commit ends by scanning the
        // cache's hash table (`pcache1TruncateUnsafe`), so a larger cache measured slower under
        // load (33k against 36k submissions/s with 16 MiB), preads saved included.
        writer.set_prepared_statement_cache_capacity(32);
        migrate(&writer, path)?;

        let recovered = run_tx(&writer, "recover running events", |tx| {
            let n = tx
                .prepare_cached("UPDATE events SET status = 'QUEUED' WHERE status = 'RUNNING'")?
                .execute([])?;
            Ok(n as u64)
        })?;
        if recovered > 0 {
            log::warn!(
                "event store {}: {recovered} event(s) were running when fc-init stopped; they run again",
                path.display()
            );
        }

        let queued = run_tx(&writer, "count queued events", |tx| {
            tx.prepare_cached("SELECT COUNT(*) FROM events WHERE status = 'QUEUED'")?
                .query_row([], |row| row.get::<_, i64>(0))
        })?;
        let queued = u64::try_from(queued).unwrap_or(0);

        let reader = Connection::open_with_flags(path, flags).map_err(sql_err("open"))?;
        reader.busy_timeout(BUSY_TIMEOUT).map_err(sql_err("open"))?;
        // Belt and braces: every write must go through the writer's transactions.
        reader
            .pragma_update(None, "query_only", true)
            .map_err(sql_err("open"))?;
        reader.set_prepared_statement_cache_capacity(32);

        let checkpointer = Checkpointer::start(path, flags)?;
        Ok(Store {
            commits: AtomicU64::new(0),
            checkpointer,
            writer: Mutex::new(writer),
            writer_relaxed: AtomicBool::new(false),
            reader: Mutex::new(reader),
            batch: Arc::default(),
            queued: AtomicU64::new(queued),
            work: Signal::default(),
            ended: Signal::default(),
            outbox: Signal::default(),
            expired: AtomicU64::new(0),
            opts,
            recovered_at_open: recovered,
            _lock: file,
        })
    }

    /// How many RUNNING events [`Store::open`] put back to QUEUED.
    pub fn recovered_at_open(&self) -> u64 {
        self.recovered_at_open
    }

    pub fn options(&self) -> &StoreOptions {
        &self.opts
    }

    /// Group-commit counters.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            batches: self.batch.batches.load(Ordering::Relaxed),
            submissions: self.batch.submissions.load(Ordering::Relaxed),
        }
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: `WouldBlock` when another open file description holds it.
/// flock locks are independent of SQLite's POSIX record locks on Linux, so they do not clash.
fn flock_exclusive(file: &File) -> io::Result<()> {
    crate::sys::retry(|| {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    })
}

/// fsync(2) of the directory holding `path`, so a newly created file's entry is durable.
fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}
