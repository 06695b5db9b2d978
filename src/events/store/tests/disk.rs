//! A store that cannot be used: locked, unopenable, too new, or on a full or read-only disk.

use super::*;

#[test]
fn a_second_open_of_the_same_file_is_locked_out() {
    let dir = TempDir::new("lock");
    let first = open(&dir);
    match Store::open(&dir.db(), opts()) {
        Err(StoreError::Locked { path }) => assert_eq!(path, dir.db()),
        other => panic!("{other:?}"),
    }
    drop(first);
    let _again = open(&dir);
}

#[test]
fn open_errors_name_the_path_and_do_not_panic() {
    let dir = TempDir::new("openerr");
    let missing = dir.0.join("no/such/dir/events.db");
    match Store::open(&missing, opts()) {
        Err(err @ StoreError::OpenFile { .. }) => {
            assert!(err.to_string().contains("no/such/dir"), "{err}");
            assert!(std::error::Error::source(&err).is_some());
        }
        other => panic!("{other:?}"),
    }
    // A directory where the file should be.
    assert!(matches!(
        Store::open(&dir.0, opts()),
        Err(StoreError::OpenFile { .. })
    ));
    // A file that is not a database.
    let junk = dir.0.join("junk.db");
    std::fs::write(&junk, vec![b'j'; 8192]).unwrap();
    match Store::open(&junk, opts()) {
        Err(StoreError::Sqlite { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = TempDir::new("schema");
    drop(open(&dir));
    Connection::open(dir.db())
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    match reopen(&dir.db(), opts()) {
        Err(StoreError::SchemaTooNew { found, .. }) => assert_eq!(found, SCHEMA_VERSION + 1),
        other => panic!("{other:?}"),
    }
}

/// SQLITE_FULL through `max_page_count`: the same error path as a full disk, on any machine.
#[test]
fn a_full_database_is_a_disk_error_and_the_store_recovers() {
    let dir = TempDir::new("pagefull");
    let store = open(&dir);
    submit(&store, "before", 1);
    let pages: i64 = {
        let conn = lock(&store.writer);
        conn.pragma_query_value(None, "page_count", |row| row.get(0))
            .unwrap()
    };
    store.set_max_page_count(u64::try_from(pages).unwrap() + 2);
    let mut big = new_event("big", 2);
    big.request.body = vec![7; 64 * 1024];
    match store.submit(big.clone()) {
        Err(err @ StoreError::Disk { .. }) => {
            assert!(err.to_string().contains("disk full"), "{err}")
        }
        other => panic!("{other:?}"),
    }
    assert!(store.get("big").unwrap().is_none(), "no false success");
    assert!(store.get("before").unwrap().is_some());
    // Other operations still work while full (they need no new pages).
    assert!(store.claim_next(3).unwrap().is_some());
    store.set_max_page_count(1 << 30);
    assert_eq!(store.submit(big).unwrap(), Submitted::Created);
}

/// A real full file system, where this process may mount a tmpfs.
#[test]
fn a_full_filesystem_fails_submissions_cleanly() {
    let dir = TempDir::new("tmpfsfull");
    let Some(_mount) = Mount::tmpfs(&dir.0, "size=1m") else {
        return;
    };
    // Take most of the space up front, so we can free it again afterwards.
    let filler = dir.0.join("filler");
    std::fs::write(&filler, vec![0u8; 512 * 1024]).unwrap();
    let store = open(&dir);
    let mut created = Vec::new();
    let mut failure = None;
    for i in 0..200 {
        let mut ev = new_event(&format!("f{i}"), i);
        ev.request.body = vec![1; 16 * 1024];
        match store.submit(ev) {
            Ok(Submitted::Created) => created.push(format!("f{i}")),
            Ok(other) => panic!("{other:?}"),
            Err(e) => {
                failure = Some((i, e));
                break;
            }
        }
    }
    let (failed_at, err) = failure.expect("a 1 MiB file system fills up");
    eprintln!("full after {} events: {err}", created.len());
    assert!(matches!(err, StoreError::Disk { .. }), "{err:?}");
    let failed_id = format!("f{failed_at}");
    assert!(store.get(&failed_id).unwrap().is_none(), "no false success");
    assert_eq!(
        store.counts_by_status().unwrap()[0].1,
        created.len() as u64,
        "reads still work"
    );
    // Free space: the same store accepts submissions again.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(submit(&store, "after", 1), Submitted::Created);
    drop(store);
    let store = open(&dir);
    for id in created.iter().chain(std::iter::once(&"after".to_string())) {
        assert!(store.get(id).unwrap().is_some(), "{id} lost");
    }
    assert!(store.get(&failed_id).unwrap().is_none());
}

/// Read-only file systems: creating the store fails, and so does opening an existing one
/// for writing (rather than SQLite silently falling back to read-only).
#[test]
fn a_read_only_filesystem_gives_open_errors() {
    let dir = TempDir::new("rofs");
    let Some(mount) = Mount::tmpfs(&dir.0, "size=4m") else {
        return;
    };
    drop(open(&dir));
    mount.remount("remount,ro");
    match Store::open(&dir.db(), opts()) {
        Err(StoreError::OpenFile { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(libc::EROFS))
        }
        other => panic!("{other:?}"),
    }
    match Store::open(&dir.0.join("new.db"), opts()) {
        Err(StoreError::OpenFile { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(libc::EROFS))
        }
        other => panic!("{other:?}"),
    }
}
