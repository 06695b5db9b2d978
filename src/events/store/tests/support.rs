//! Helpers of the event store's tests: scratch directories, tmpfs mounts, reopening a store
//! file, and sample events.

use super::*;
use std::process::Command;
use std::thread;

/// A fresh directory under the temp dir, removed on drop.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new(name: &str) -> TempDir {
        let dir = crate::test_support::scratch_path(&format!("events-{name}"));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub(super) fn db(&self) -> PathBuf {
        self.0.join("events.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tmpfs mounted on a directory, unmounted on drop. `None` (with the reason printed) where
/// this test process may not mount.
pub(super) struct Mount(PathBuf);

impl Mount {
    pub(super) fn tmpfs(dir: &Path, options: &str) -> Option<Mount> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Mount(dir.to_path_buf())),
            Ok(out) => {
                eprintln!(
                    "SKIPPED: cannot mount tmpfs ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    /// Remounts with `options`. A read-only remount fails (EBUSY) while any descriptor open
    /// for writing on the file system exists, and a child that another test forked holds
    /// copies of this process's descriptors until it execs (see [`reopen`]): retried until
    /// such a moment has passed.
    pub(super) fn remount(&self, options: &str) {
        let deadline = Instant::now() + TRANSIENT_HOLDERS;
        loop {
            let status = Command::new("mount")
                .args(["-o", options])
                .arg(&self.0)
                .status()
                .expect("run mount");
            if status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "remount {options}: {status}");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

pub(super) fn opts() -> StoreOptions {
    StoreOptions {
        max_queued: 0,
        retention: Duration::from_secs(3600),
        ..StoreOptions::default()
    }
}

pub(super) fn open(dir: &TempDir) -> Store {
    reopen(&dir.db(), opts()).expect("open store")
}

/// How long a copy of a descriptor held by a forked child may keep a lock of ours.
pub(super) const TRANSIENT_HOLDERS: Duration = Duration::from_secs(10);

/// [`Store::open`] for a file this process may have had open before, in a test process whose
/// other tests fork children (`mount`, or any `Command`) at any moment: a child holds a copy
/// of every descriptor of this process from `fork` until its `exec` closes them
/// (close-on-exec), the store's `flock`ed one included, and under load that moment lasts long
/// enough for a reopen to find the lock taken (the bug: `Locked` about one run in six). A
/// lock that stays taken past [`TRANSIENT_HOLDERS`] is a real holder, and the error stands.
pub(super) fn reopen(path: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
    let deadline = Instant::now() + TRANSIENT_HOLDERS;
    loop {
        match Store::open(path, opts.clone()) {
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(5))
            }
            other => return other,
        }
    }
}

pub(super) fn new_event(id: &str, submit_time: u64) -> NewEvent {
    NewEvent {
        request_id: id.to_string(),
        submit_time,
        request: StoredRequest {
            method: "POST".into(),
            target: "/invoke?a=1&b=%20".into(),
            headers: vec![
                ("content-type".into(), b"application/json".to_vec()),
                ("x-odd".into(), vec![0, 0xff, b'\r', b'\n']),
            ],
            body: format!("{{\"id\":\"{id}\"}}").into_bytes(),
        },
        ..NewEvent::default()
    }
}

pub(super) fn submit(store: &Store, id: &str, t: u64) -> Submitted {
    store.submit(new_event(id, t)).expect("submit")
}

pub(super) fn ok_outcome(end: u64) -> Outcome {
    Outcome {
        status: Status::Finished,
        status_code: Some(200),
        error_type: None,
        error_message: None,
        end,
        answer: None,
    }
}
