//! A database this process cannot write is refused at open with [`Error::ReadOnly`], not at
//! the first append.
//!
//! File permission bits do not bind root (tests often run as root in containers), so when
//! they are not enforced for this process the test re-runs this test binary as a child
//! process under the unprivileged user `nobody` (uid and gid 65534), which they do bind. The
//! child sees `ES_SQLITE_READ_ONLY_CHILD` (the directory holding the prepared files), runs
//! the checks and exits with status 0, or prints what failed and exits with status 1.

use std::fs::{self, OpenOptions, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use es_core::{EventStore, ExpectedVersion, Metadata, NewEvent, StreamRef};
use es_sqlite::rusqlite::Connection;
use es_sqlite::{Error, SqliteStore};

/// This test's name, which the parent passes to the child's `--exact`.
const TEST_NAME: &str = "read_only_databases_are_refused_at_open";
/// The user and group the child runs as when this process is root.
const NOBODY: u32 = 65534;

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
}

/// An event store with one event, closed (so in WAL mode without `-wal` file).
fn create_store(path: &Path) {
    let store = SqliteStore::open(path).unwrap();
    let event = NewEvent::new("Incremented", 1, serde_json::json!({}), Metadata::new());
    store
        .append(
            StreamRef::new("Counter", "c-1"),
            ExpectedVersion::NoStream,
            &[event],
        )
        .unwrap();
}

/// Another program's database, in the default rollback-journal mode.
fn create_plain(path: &Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('hi');")
        .unwrap();
}

/// Lays out the cases under `root`:
/// - `ro-file/`: a writable directory with read-only (0444) files;
/// - `ro-dir/`: a read-only (0555) directory with writable (0666) files, where SQLite
///   cannot create the `-wal` and `-shm` files.
fn prepare(root: &Path) {
    chmod(root, 0o755);
    let ro_file = root.join("ro-file");
    let ro_dir = root.join("ro-dir");
    fs::create_dir(&ro_file).unwrap();
    fs::create_dir(&ro_dir).unwrap();
    for dir in [&ro_file, &ro_dir] {
        create_store(&dir.join("store.db"));
        create_plain(&dir.join("plain.db"));
    }
    for file in ["store.db", "plain.db"] {
        chmod(&ro_file.join(file), 0o444);
        chmod(&ro_dir.join(file), 0o666);
    }
    chmod(&ro_file, 0o777);
    chmod(&ro_dir, 0o555);
}

/// Whether this process is bound by the permission bits `prepare` set.
fn permissions_bind_me(root: &Path) -> bool {
    OpenOptions::new()
        .append(true)
        .open(root.join("ro-file/store.db"))
        .is_err()
}

/// The checks, as a process that the permission bits bind.
fn check(root: &Path) -> Result<(), String> {
    if !permissions_bind_me(root) {
        return Err("the permission bits do not bind this process".to_owned());
    }
    for case in [
        "ro-file/store.db",
        "ro-file/plain.db",
        "ro-dir/store.db",
        "ro-dir/plain.db",
    ] {
        let path = root.join(case);
        let before = fs::read(&path).map_err(|e| format!("{case}: {e}"))?;
        match SqliteStore::open(&path) {
            Err(error @ Error::ReadOnly { .. }) => {
                let message = error.to_string();
                for needed in ["read-only", "directory", "-wal", "permissions"] {
                    if !message.contains(needed) {
                        return Err(format!("{case}: the message lacks `{needed}`: {message}"));
                    }
                }
            }
            Err(other) => return Err(format!("{case}: another error: {other:?}: {other}")),
            Ok(store) => {
                let appended = store.append(
                    StreamRef::new("Counter", "c-2"),
                    ExpectedVersion::NoStream,
                    &[NewEvent::new(
                        "Incremented",
                        1,
                        serde_json::json!({}),
                        Metadata::new(),
                    )],
                );
                return Err(format!(
                    "{case}: opened; the first append gives {appended:?}"
                ));
            }
        }
        let after = fs::read(&path).map_err(|e| format!("{case}: {e}"))?;
        if before != after {
            return Err(format!("{case}: the refused open changed the file"));
        }
    }
    // A new file in a read-only directory cannot even be created.
    match SqliteStore::open(root.join("ro-dir/new.db")) {
        Err(error @ Error::Open { .. }) => {
            let message = error.to_string();
            if !message.contains("writable") {
                return Err(format!("ro-dir/new.db: {message}"));
            }
        }
        other => return Err(format!("ro-dir/new.db: {other:?}")),
    }
    Ok(())
}

#[test]
fn read_only_databases_are_refused_at_open() {
    if let Some(root) = std::env::var_os("ES_SQLITE_READ_ONLY_CHILD") {
        match check(Path::new(&root)) {
            Ok(()) => std::process::exit(0),
            Err(failure) => {
                eprintln!("es-read-only-child-failed: {failure}");
                std::process::exit(1);
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare(root);
    if permissions_bind_me(root) {
        check(root).unwrap();
    } else {
        eprintln!(
            "the permission bits do not bind this process (root?): running the checks as uid {NOBODY}"
        );
        let spawned = Command::new(std::env::current_exe().unwrap())
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env("ES_SQLITE_READ_ONLY_CHILD", root)
            .uid(NOBODY)
            .gid(NOBODY)
            .output();
        match spawned {
            Ok(output) => assert!(
                output.status.success(),
                "the checks failed as uid {NOBODY} ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
            // No way to drop privileges here (or the test binary is out of nobody's reach):
            // `check_writable`'s unit test still covers the detection.
            Err(error) => eprintln!(
                "SKIPPED: cannot run the checks as uid {NOBODY} ({error}); the permission bits do not bind this process"
            ),
        }
    }
    // Once writable again, the same files open, and the refused opens lost nothing.
    chmod(&root.join("ro-dir"), 0o755);
    for case in [
        "ro-file/store.db",
        "ro-file/plain.db",
        "ro-dir/store.db",
        "ro-dir/plain.db",
    ] {
        let path = root.join(case);
        chmod(&path, 0o644);
        let store = SqliteStore::open(&path).unwrap();
        let expected = usize::from(case.ends_with("store.db"));
        assert_eq!(store.read_all(1, 10).unwrap().len(), expected, "{case}");
    }
}
