//! Throughput of the SQLite event store's group commit ([`Store::submit`]) against the plain
//! one-row-per-commit baseline on the same disk, so that the gain is a ratio measured in one
//! run. Benchmark tooling, not part of the library:
//!
//!     cargo run --release --example store_bench [DIR]
//!     cargo run --release --example store_bench -- --list [DIR]
//!
//! DIR (default: the temp dir) is where the databases are made; put it on the disk to measure.
//! `--list` measures instead the latency of filtered lists of 100 events out of 1,000,000
//! stored (docs/reference.md §10: under 50 ms each).

use std::path::Path;
use std::time::{Duration, Instant};

use fc_init::events::store::{
    ListQuery, NewEvent, Order, OrderBy, Status, Store, StoreError, StoreOptions, StoredRequest,
};
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
            ..StoreOptions::default()
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
                            ..NewEvent::default()
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

/// Events stored for the list benchmark, and how many of them each filter selects.
const LIST_EVENTS: u64 = 1_000_000;
const SELECTED: u64 = 100;

/// A store at `path` holding [`LIST_EVENTS`] ended events, written straight into its table in
/// one transaction (the submission path is measured apart): every 10,000th is FAILED, has
/// qualifier `canary` and an id starting `zz-`; submit times are 10 ms apart.
fn fill(path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    drop(Store::open(path, StoreOptions::default())?);
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO events (request_id, status, submit_time, start_time, end_time, \
                 duration_ms, status_code, attempts, next_attempt_at, function_name, qualifier, \
                 method, target, headers, body) \
             VALUES (?1, ?2, ?3, ?3 + 1, ?3 + 5, 4, 200, 1, ?3, 'app', ?4, 'POST', '/invoke', \
                 x'', x'7b7d')",
        )?;
        let every = LIST_EVENTS / SELECTED;
        for i in 0..LIST_EVENTS {
            let rare = i % every == every / 2;
            let id = match rare {
                true => format!("zz-{i:07}"),
                false => format!("evt-{i:07}"),
            };
            let status = if rare { "FAILED" } else { "FINISHED" };
            let qualifier = if rare { "canary" } else { "LATEST" };
            insert.execute(params![
                id,
                status,
                1_700_000_000_000 + i as i64 * 10,
                qualifier
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// The median time of five runs of `q` on `store`, and what it found.
fn time_list(store: &Store, q: &ListQuery) -> Result<(Duration, u64, usize), StoreError> {
    let mut times = Vec::new();
    let mut found = (0, 0);
    for _ in 0..5 {
        let start = Instant::now();
        let (total, events) = store.list(q)?;
        times.push(start.elapsed());
        found = (total, events.len());
    }
    times.sort();
    Ok((times[2], found.0, found.1))
}

fn list_bench(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let path = dir.join("list.db");
    let t = Instant::now();
    fill(&path)?;
    println!(
        "filled {LIST_EVENTS} events in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let store = Store::open(&path, StoreOptions::default())?;
    let window = 1_700_000_000_000 + (LIST_EVENTS / 2) * 10;
    let page = ListQuery {
        limit: 100,
        ..ListQuery::default()
    };
    let cases = [
        ("newest 100, no filter", page.clone()),
        (
            "status=FAILED",
            ListQuery {
                statuses: vec![Status::Failed],
                ..page.clone()
            },
        ),
        (
            "functionName=app&qualifier=canary",
            ListQuery {
                function_name: Some("app".into()),
                qualifier: Some("canary".into()),
                ..page.clone()
            },
        ),
        (
            "requestIdPrefix=zz-",
            ListQuery {
                request_id_prefix: Some("zz-".into()),
                ..page.clone()
            },
        ),
        (
            "endedSince..endedUntil (100), orderBy=endTime asc",
            ListQuery {
                ended_since: Some(window),
                ended_until: Some(window + SELECTED * 10),
                order_by: OrderBy::EndTime,
                order: Order::Asc,
                ..page.clone()
            },
        ),
        (
            "startedSince..startedUntil (100)",
            ListQuery {
                started_since: Some(window),
                started_until: Some(window + SELECTED * 10),
                ..page.clone()
            },
        ),
        (
            "status=FINISHED (999,900 match)",
            ListQuery {
                statuses: vec![Status::Finished],
                ..page.clone()
            },
        ),
    ];
    for (name, q) in &cases {
        let (took, total, got) = time_list(&store, q)?;
        println!(
            "list {name}: {:.2} ms (totalCount {total}, {got} returned)",
            took.as_secs_f64() * 1000.0
        );
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let list = std::env::args().nth(1).is_some_and(|a| a == "--list");
    let base = std::env::args_os()
        .nth(1 + usize::from(list))
        .map_or_else(std::env::temp_dir, Into::into);
    let dir = base.join(format!("fc-init-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    if list {
        let result = list_bench(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        return result;
    }
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
