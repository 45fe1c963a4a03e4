//! The conformance suite against SQLite: a fresh database file per case, in a temporary
//! directory deleted afterwards.

use es_core::StreamRef;
use es_sqlite::SqliteStore;
use es_sqlite::rusqlite::{Connection, params};
use es_store_tests::Fixture;
use tempfile::TempDir;

type Store = Fixture<SqliteStore, TempDir>;

const FILE: &str = "events.db";

fn make() -> Store {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let store = SqliteStore::open(dir.path().join(FILE)).expect("open the SQLite store");
    Fixture::new(store, dir)
}

/// Writes a payload that is not JSON into the row, through a second connection.
fn corrupt(store: &Store, stream: StreamRef<'_>, version: u64) {
    let conn = Connection::open(store.guard().path().join(FILE)).unwrap();
    let changed = conn
        .execute(
            "UPDATE es_events SET payload = '{\"amount\": 1,' \
             WHERE aggregate_type = ?1 AND stream_id = ?2 AND stream_version = ?3",
            params![stream.aggregate_type, stream.id, version as i64],
        )
        .unwrap();
    assert_eq!(changed, 1, "the row to corrupt exists");
}

es_store_tests::store_tests! {
    make: make,
    durable: { corrupt: corrupt },
}

/// `open_in_memory` runs the same SQL over one connection instead of a reader pool; these
/// cases cover that path (the 8 x 250 concurrency case is left to the file store, whose
/// code path is the same but for the pool, to keep the suite's runtime down).
mod in_memory {
    use es_store_tests as suite;

    fn make() -> es_sqlite::SqliteStore {
        es_sqlite::SqliteStore::open_in_memory().expect("open an in-memory store")
    }

    #[test]
    fn expected_versions() {
        suite::expected_any(&make);
        suite::expected_no_stream(&make);
        suite::expected_stream_exists(&make);
        suite::expected_exact(&make);
        suite::conflicting_batch_stores_nothing(&make);
    }

    #[test]
    fn log() {
        suite::stream_versions_contiguous_from_one(&make);
        suite::global_positions_strictly_increase(&make);
        suite::read_stream_from_version(&make);
        suite::read_all_from_position_with_limit(&make);
        suite::empty_batch(&make);
        suite::envelope_round_trips(&make);
        suite::same_id_two_aggregate_types(&make);
    }

    #[test]
    fn bad_data() {
        suite::unknown_event_type_is_reported(&make);
        suite::event_ids_are_unique(&make);
    }

    #[test]
    fn concurrent_batches_do_not_interleave() {
        suite::concurrent_batches_do_not_interleave(&make);
    }
}

#[test]
fn a_newer_schema_is_refused_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE);
    drop(SqliteStore::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .execute("UPDATE es_schema_version SET version = version + 1", [])
        .unwrap();
    let error = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(
            error,
            es_sqlite::Error::SchemaTooNew {
                found: 4,
                supported: 3,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("upgrade es-sqlite"), "{error}");
}

#[test]
fn reopening_keeps_events_and_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE);
    let stream = StreamRef::new("Counter", "c");
    {
        let store = SqliteStore::open(&path).unwrap();
        es_core::EventStore::append(
            &store,
            stream,
            es_core::ExpectedVersion::NoStream,
            &es_store_tests::events(1, 3),
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        es_core::EventStore::stream_version(&store, stream).unwrap(),
        3
    );
    let conn = Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_file_that_is_not_sqlite_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE);
    std::fs::write(&path, b"this is not a database, just some text long enough").unwrap();
    let error = SqliteStore::open(&path).unwrap_err();
    let message = error.to_string();
    assert!(message.contains(FILE), "{message}");
}

#[test]
fn two_stores_on_one_file_share_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE);
    let a = SqliteStore::open(&path).unwrap();
    let b = SqliteStore::open(&path).unwrap();
    let stream = StreamRef::new("Counter", "shared");
    use es_core::{EventStore, ExpectedVersion};
    a.append(
        stream,
        ExpectedVersion::NoStream,
        &es_store_tests::events(1, 1),
    )
    .unwrap();
    let conflict = b.append(
        stream,
        ExpectedVersion::NoStream,
        &es_store_tests::events(2, 1),
    );
    assert!(conflict.unwrap_err().is_conflict());
    b.append(
        stream,
        ExpectedVersion::Exact(1),
        &es_store_tests::events(2, 1),
    )
    .unwrap();
    assert_eq!(a.read_stream(stream, 1).unwrap().len(), 2);
}

#[test]
fn a_reader_never_creates_a_database_where_the_file_was_removed() {
    use es_core::{EventStore, StoreError};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE);
    let store = SqliteStore::open(&path).unwrap();
    // Something outside the store removes its files before any reader was opened.
    for suffix in ["", "-wal", "-shm"] {
        let file = dir.path().join(format!("{FILE}{suffix}"));
        if file.exists() {
            std::fs::remove_file(file).unwrap();
        }
    }
    let read = store.read_stream(StreamRef::new("Counter", "c"), 1);
    assert!(matches!(read, Err(StoreError::Backend(_))), "{read:?}");
    assert!(
        !path.exists(),
        "the reader must not create an empty database"
    );
}

mod checkpoints {
    es_store_tests::checkpoint_tests!(super::make);

    mod in_memory {
        es_store_tests::checkpoint_tests!(|| es_sqlite::SqliteStore::open_in_memory().unwrap());
    }
}
