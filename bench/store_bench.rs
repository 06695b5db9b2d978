//! Throughput of the SQLite event store's group commit ([`Store::submit`]) against the plain
//! one-row-per-commit baseline on the same disk, so that the gain is a ratio measured in one
//! run. Benchmark tooling, not part of the library:
//!
//!     cargo run --release --example store_bench [DIR]
//!
//! DIR (default: the temp dir) is where the databases are made; put it on the disk to measure.

use std::path::Path;
use std::time::{Duration, Instant};

use fc_init::events::store::{NewEvent, Store, StoreError, StoreOptions, StoredRequest};
use fc_init::events::time::now_ms;
use rusqlite::{params, Connection};

/// Commits per second of one-row transactions (WAL, `synchronous=FULL`) in a loop on a
/// fresh database at `path`: what every submission would cost without group commit.
fn fsync_baseline(path: &Path, n: u64) -> rusqlite::Result<f64> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, request_id TEXT UNIQUE, body BLOB)",
    )?;
    let body = vec![b'x'; 1024];
    let start = Instant::now();
    for i in 0..n {
        conn.prepare_cached("INSERT INTO t (request_id, body) VALUES (?1, ?2)")?
            .execute(params![format!("base-{i}"), body])?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Submissions per second through [`Store::submit`] from `threads` threads, each submitting
/// `per_thread` distinct events with a 1 KiB body, on a fresh store at `path`.
fn group_commit(path: &Path, threads: usize, per_thread: usize) -> Result<f64, StoreError> {
    let store = Store::open(
        path,
        StoreOptions {
            max_queued: 0,
            retention: Duration::from_secs(3600),
        },
    )?;
    let barrier = std::sync::Barrier::new(threads + 1);
    let elapsed = std::thread::scope(|scope| -> Result<Duration, StoreError> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (store, barrier) = (&store, &barrier);
                scope.spawn(move || -> Result<(), StoreError> {
                    barrier.wait();
                    for i in 0..per_thread {
                        store.submit(NewEvent {
                            request_id: format!("bench-{t}-{i}"),
                            submit_time: now_ms(),
                            request: StoredRequest {
                                method: "POST".into(),
                                target: "/invoke".into(),
                                headers: vec![("content-type".into(), b"text/plain".to_vec())],
                                body: vec![b'x'; 1024],
                            },
                        })?;
                    }
                    Ok(())
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for handle in handles {
            handle.join().map_err(|_| StoreError::CommitAbandoned)??;
        }
        Ok(start.elapsed())
    })?;
    Ok((threads * per_thread) as f64 / elapsed.as_secs_f64())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::args_os()
        .nth(1)
        .map_or_else(std::env::temp_dir, Into::into);
    let dir = base.join(format!("fc-init-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = (|| -> Result<(), Box<dyn std::error::Error>> {
        let baseline = fsync_baseline(&dir.join("base.db"), 2000)?;
        let one = group_commit(&dir.join("one.db"), 1, 2000)?;
        let many = group_commit(&dir.join("many.db"), 64, 100)?;
        println!("baseline (1 row per commit): {baseline:.0} commits/s");
        println!(
            "submit, 1 thread:   {one:.0} submissions/s ({:.2}x baseline)",
            one / baseline
        );
        println!(
            "submit, 64 threads: {many:.0} submissions/s ({:.2}x baseline)",
            many / baseline
        );
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
