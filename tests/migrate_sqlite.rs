//! Opening SQLite event stores that the previous release (schema version 1) wrote.
//!
//! Each test builds a version-1 file exactly as es-sqlite's version-1 code did (the DDL
//! below is that code's, verbatim; the rows are written as its append wrote them), then
//! opens it with today's [`SqliteStore`], which migrates it through version 2 (idempotency keys) to
//! version 3 (the by-type index and snapshots).
//!
//! A newer schema being refused (`Error::SchemaTooNew { found: 3, supported: 2 }`) is
//! covered by `a_newer_schema_is_refused_with_an_error` in `tests/store_sqlite.rs`.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use es_core::{
    AppendOptions, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, Repository,
    StoreError, StreamRef, Uuid,
};
use es_sqlite::SqliteStore;
use es_sqlite::rusqlite::{Connection, params};
use es_store_tests::{Account, assert_conflict};
use serde_json::{Value, json};

const FILE: &str = "events.db";

/// The version-1 layout: `MIGRATIONS[0]` of es-sqlite's schema version 1 (the previous
/// release), verbatim. It is what every version-1 file holds; never edit it.
const V1_DDL: &str = "CREATE TABLE es_schema_version (version INTEGER NOT NULL);
     INSERT INTO es_schema_version (version) VALUES (0);
     CREATE TABLE es_events (
         global_position INTEGER PRIMARY KEY AUTOINCREMENT,
         event_id        TEXT    NOT NULL UNIQUE,
         aggregate_type  TEXT    NOT NULL,
         stream_id       TEXT    NOT NULL,
         stream_version  INTEGER NOT NULL,
         event_type      TEXT    NOT NULL,
         schema_version  INTEGER NOT NULL,
         recorded_at     INTEGER NOT NULL, -- microseconds since the Unix epoch
         payload         TEXT    NOT NULL, -- JSON
         metadata        TEXT    NOT NULL, -- JSON
         UNIQUE (aggregate_type, stream_id, stream_version)
     );";

/// One row as the version-1 append wrote it.
struct V1Event {
    /// Hyphenated lower-case UUID text.
    event_id: &'static str,
    aggregate_type: &'static str,
    stream_id: &'static str,
    stream_version: i64,
    event_type: &'static str,
    schema_version: i64,
    /// Microseconds since the Unix epoch.
    recorded_at: i64,
    /// `serde_json::to_string` of the payload value.
    payload: &'static str,
    /// `serde_json::to_string` of the `Metadata`.
    metadata: &'static str,
}

const T0: i64 = 1_700_000_000_123_456;

/// What the version-1 store held, in commit (= global position) order: two aggregate
/// types, three streams, interleaved appends.
const V1_EVENTS: [V1Event; 8] = [
    V1Event {
        event_id: "0b6f3c1e-8a3b-4c55-9a7e-2f1d00000001",
        aggregate_type: "Account",
        stream_id: "acc-1",
        stream_version: 1,
        event_type: "Opened",
        schema_version: 1,
        recorded_at: T0,
        payload: r#"{"owner":"alice"}"#,
        metadata: r#"{"correlation_id":"req-1","causation_id":"cmd-1","extra":{"user":"alice"}}"#,
    },
    V1Event {
        event_id: "0b6f3c1e-8a3b-4c55-9a7e-2f1d00000002",
        aggregate_type: "Order",
        stream_id: "ord-1",
        stream_version: 1,
        event_type: "Placed",
        schema_version: 2,
        recorded_at: T0 + 1_000,
        payload: r#"{"items":["book","pen"],"total":1250}"#,
        metadata: "{}",
    },
    V1Event {
        event_id: "0b6f3c1e-8a3b-4c55-9a7e-2f1d00000003",
        aggregate_type: "Account",
        stream_id: "acc-1",
        stream_version: 2,
        event_type: "Deposited",
        schema_version: 1,
        recorded_at: T0 + 2_000,
        payload: r#"{"amount":10}"#,
        metadata: r#"{"correlation_id":"req-2"}"#,
    },
    V1Event {
        event_id: "0b6f3c1e-8a3b-4c55-9a7e-2f1d00000004",
        aggregate_type: "Account",
        stream_id: "acc-2",
        stream_version: 1,
        event_type: "Opened",
        schema_version: 1,
        recorded_at: T0 + 3_000,
        payload: r#"{"owner":"bob"}"#,
        metadata: "{}",
    },
    V1Event {
        event_id: "0b6f3c1e-8a3b-4c55-9a7e-2f1d00000005",
        aggregate_type: "Order",
        stream_id: "ord-1",
        stream_version: 2,
        event_type: "Shipped",
        schema_version: 1,
        recorded_at: T0 + 4_000,
        payload: r#"{"carrier":"post","tracking":null}"#,
        metadata: r#"{"extra":{"batch":7,"source":"import"}}"#,
    },
    V1Event {
        event_id: "0b6f3c1e-8a3b-4c55-9a7e-2f1d00000006",
        aggregate_type: "Account",
        stream_id: "acc-1",
        stream_version: 3,
        event_type: "Deposited",
        schema_version: 1,
        recorded_at: T0 + 5_000,
        payload: r#"{"amount":5}"#,
        metadata: "{}",
    },
    V1Event {
        event_id: "0b6f3c1e-8a3b-4c55-9a7e-2f1d00000007",
        aggregate_type: "Account",
        stream_id: "acc-2",
        stream_version: 2,
        event_type: "Deposited",
        schema_version: 1,
        recorded_at: T0 + 6_000,
        payload: r#"{"amount":7}"#,
        metadata: "{}",
    },
    V1Event {
        event_id: "0b6f3c1e-8a3b-4c55-9a7e-2f1d00000008",
        aggregate_type: "Order",
        stream_id: "ord-1",
        stream_version: 3,
        event_type: "Delivered",
        schema_version: 1,
        recorded_at: T0 + 7_000,
        payload: r#"{"signed_by":"carol"}"#,
        metadata: r#"{"causation_id":"evt-5"}"#,
    },
];

/// The version-1 streams and their versions.
const V1_STREAMS: [(&str, &str, u64); 3] = [
    ("Account", "acc-1", 3),
    ("Account", "acc-2", 2),
    ("Order", "ord-1", 3),
];

/// Creates a version-1 event store at `path` as the previous release's `open` did (WAL
/// mode, then the version-1 DDL and the version set to 1 in one transaction) and appends
/// `events` as its append did (positions from AUTOINCREMENT, in order).
fn create_v1(path: &Path, events: &[V1Event]) {
    let mut conn = Connection::open(path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let tx = conn.transaction().unwrap();
    tx.execute_batch(V1_DDL).unwrap();
    tx.execute("UPDATE es_schema_version SET version = ?1", [1_i64])
        .unwrap();
    tx.commit().unwrap();
    insert_v1(&conn, events);
}

/// Appends rows as the version-1 append wrote them.
fn insert_v1(conn: &Connection, events: &[V1Event]) {
    let mut insert = conn
        .prepare(
            "INSERT INTO es_events (event_id, aggregate_type, stream_id, stream_version, \
             event_type, schema_version, recorded_at, payload, metadata) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .unwrap();
    for e in events {
        insert
            .execute(params![
                e.event_id,
                e.aggregate_type,
                e.stream_id,
                e.stream_version,
                e.event_type,
                e.schema_version,
                e.recorded_at,
                e.payload,
                e.metadata,
            ])
            .unwrap();
    }
}

fn versions_stored(path: &Path) -> Vec<i64> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT version FROM es_schema_version ORDER BY version")
        .unwrap();
    stmt.query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn table_exists(path: &Path, name: &str) -> bool {
    Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [name],
            |row| row.get(0),
        )
        .unwrap()
}

/// The `es_events` rows as raw column text, to prove a failed migration left them alone.
fn raw_rows(path: &Path) -> Vec<String> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT global_position || '|' || event_id || '|' || aggregate_type || '|' || \
             stream_id || '|' || stream_version || '|' || event_type || '|' || schema_version \
             || '|' || recorded_at || '|' || payload || '|' || metadata \
             FROM es_events ORDER BY global_position",
        )
        .unwrap();
    stmt.query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn expected_raw_rows() -> Vec<String> {
    (1..)
        .zip(&V1_EVENTS)
        .map(|(position, e)| {
            format!(
                "{position}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
                e.event_id,
                e.aggregate_type,
                e.stream_id,
                e.stream_version,
                e.event_type,
                e.schema_version,
                e.recorded_at,
                e.payload,
                e.metadata
            )
        })
        .collect()
}

/// Asserts that `event`, read back, is exactly the version-1 row `expected` stored at
/// `position`.
#[track_caller]
fn assert_v1_event(event: &RecordedEvent, expected: &V1Event, position: u64) {
    let what = format!("event at position {position}");
    assert_eq!(
        event.event_id,
        Uuid::parse_str(expected.event_id).unwrap(),
        "{what}: id"
    );
    assert_eq!(event.aggregate_type, expected.aggregate_type, "{what}");
    assert_eq!(event.stream_id, expected.stream_id, "{what}");
    assert_eq!(
        event.stream_version,
        u64::try_from(expected.stream_version).unwrap(),
        "{what}: stream version"
    );
    assert_eq!(event.global_position, position, "{what}: position");
    assert_eq!(event.event_type, expected.event_type, "{what}");
    assert_eq!(
        i64::from(event.schema_version),
        expected.schema_version,
        "{what}: schema version"
    );
    assert_eq!(
        event.recorded_at,
        UNIX_EPOCH + Duration::from_micros(expected.recorded_at.unsigned_abs()),
        "{what}: recorded_at"
    );
    assert_eq!(
        event.payload_value().unwrap(),
        serde_json::from_str::<Value>(expected.payload).unwrap(),
        "{what}: payload"
    );
    assert_eq!(
        event.metadata,
        serde_json::from_str::<Metadata>(expected.metadata).unwrap(),
        "{what}: metadata"
    );
}

fn deposited(amount: u64) -> NewEvent {
    NewEvent::new("Deposited", 1, json!({ "amount": amount }), Metadata::new())
}

#[test]
fn a_release1_file_is_migrated_and_reads_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE);
    create_v1(&path, &V1_EVENTS);
    assert_eq!(versions_stored(&path), [1]);
    assert!(!table_exists(&path, "es_commands"));

    let store = SqliteStore::open(&path).expect("open a version-1 file");
    assert_eq!(
        versions_stored(&path),
        [3],
        "migrated to version 3, the current one"
    );
    assert!(
        table_exists(&path, "es_snapshots"),
        "version 3 keeps snapshots"
    );
    assert!(
        table_exists(&path, "es_checkpoints"),
        "version 3 keeps read-model checkpoints"
    );
    let by_type: i64 = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'es_events_by_type'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(by_type, 1, "version 3 indexes events by type");
    assert!(table_exists(&path, "es_commands"));

    // Every old event, through the global log and through its stream.
    let all = store.read_all(1, 100).unwrap();
    assert_eq!(all.len(), V1_EVENTS.len());
    for ((event, expected), position) in all.iter().zip(&V1_EVENTS).zip(1..) {
        assert_v1_event(event, expected, position);
    }
    assert!(
        store.read_all(9, 100).unwrap().is_empty(),
        "nothing after them"
    );
    for (aggregate_type, id, version) in V1_STREAMS {
        let stream = StreamRef::new(aggregate_type, id);
        let read = store.read_stream(stream, 1).unwrap();
        let expected: Vec<(&V1Event, u64)> = V1_EVENTS
            .iter()
            .zip(1..)
            .filter(|(e, _)| e.aggregate_type == aggregate_type && e.stream_id == id)
            .collect();
        assert_eq!(read.len(), expected.len(), "{stream}");
        for (event, (expected, position)) in read.iter().zip(expected) {
            assert_v1_event(event, expected, position);
        }
        assert_eq!(store.stream_version(stream).unwrap(), version, "{stream}");
        // A read from a later version starts there.
        let tail = store.read_stream(stream, version).unwrap();
        assert_eq!(tail.len(), 1, "{stream}");
        assert_eq!(tail[0].stream_version, version);
    }
    // Same ids under another aggregate type are other (empty) streams.
    assert_eq!(
        store
            .stream_version(StreamRef::new("Order", "acc-1"))
            .unwrap(),
        0
    );

    // The repository loads the old streams.
    let repo = Repository::<Account, _>::new(&store);
    let acc1 = repo.load("acc-1").unwrap().expect("acc-1 exists");
    assert_eq!(acc1.version, 3);
    assert_eq!(
        (
            acc1.state.owner.as_str(),
            acc1.state.balance,
            acc1.state.open
        ),
        ("alice", 15, true)
    );
    let acc2 = repo.load("acc-2").unwrap().expect("acc-2 exists");
    assert_eq!(acc2.version, 2);
    assert_eq!((acc2.state.owner.as_str(), acc2.state.balance), ("bob", 7));

    // Expected versions hold against the old versions.
    let acc1_stream = StreamRef::new("Account", "acc-1");
    assert_conflict(
        store.append(acc1_stream, ExpectedVersion::Exact(2), &[deposited(1)]),
        acc1_stream,
        ExpectedVersion::Exact(2),
        3,
    );
    assert_conflict(
        store.append(acc1_stream, ExpectedVersion::NoStream, &[deposited(1)]),
        acc1_stream,
        ExpectedVersion::NoStream,
        3,
    );
    let outcome = store
        .append(acc1_stream, ExpectedVersion::Exact(3), &[deposited(1)])
        .unwrap();
    assert_eq!(outcome.stream_version, 4);
    assert_eq!(
        outcome.global_positions,
        9..10,
        "positions continue after the old ones"
    );

    // Idempotency keys work on the migrated file.
    let acc2_stream = StreamRef::new("Account", "acc-2");
    let keyed = AppendOptions::new().idempotency_key("k");
    let first = store
        .append_with(
            acc2_stream,
            ExpectedVersion::Exact(2),
            &[deposited(2), deposited(3)],
            keyed,
        )
        .unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.stream_version, 4);
    assert_eq!(first.global_positions, 10..12);
    let again = store
        .append_with(
            acc2_stream,
            ExpectedVersion::Exact(2),
            &[deposited(2), deposited(3)],
            keyed,
        )
        .unwrap();
    assert!(
        again.duplicate,
        "the second append with the key is a duplicate"
    );
    assert_eq!(again.stream_version, first.stream_version);
    assert_eq!(again.global_positions, first.global_positions);
    assert_eq!(store.stream_version(acc2_stream).unwrap(), 4);
    assert_eq!(
        store.read_all(1, 100).unwrap().len(),
        11,
        "the duplicate wrote nothing"
    );
    assert_eq!(
        store.find_idempotency_key(acc2_stream, "k").unwrap(),
        Some(again.clone())
    );
    // The key belongs to its stream: the same key elsewhere is a new append.
    let elsewhere = store
        .append_with(
            StreamRef::new("Order", "ord-1"),
            ExpectedVersion::Exact(3),
            &[NewEvent::new("Returned", 1, json!({}), Metadata::new())],
            keyed,
        )
        .unwrap();
    assert!(!elsewhere.duplicate);
    assert_eq!(elsewhere.global_positions, 12..13);

    // A command through the repository on an old stream.
    let executed = repo.execute("acc-1", |a| a.deposit(20)).unwrap();
    assert_eq!(executed.version, 5);
    assert_eq!(executed.global_positions, 13..14);
    assert_eq!(executed.state.balance, 15 + 1 + 20);
    assert_eq!(
        repo.load("acc-2").unwrap().unwrap().state.balance,
        7 + 2 + 3
    );

    // The whole log: the old events unchanged, then the new ones, without gaps.
    let all = store.read_all(1, 100).unwrap();
    let positions: Vec<u64> = all.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, (1..=13).collect::<Vec<_>>());
    for ((event, expected), position) in all.iter().zip(&V1_EVENTS).zip(1..) {
        assert_v1_event(event, expected, position);
    }
    drop(store);

    // Reopening finds version 3 and migrates nothing again.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(versions_stored(&path), [3]);
    assert_eq!(store.stream_version(acc1_stream).unwrap(), 5);
    assert_eq!(
        store.find_idempotency_key(acc2_stream, "k").unwrap(),
        Some(again)
    );
}

/// Asserts the file is still the untouched version-1 store.
#[track_caller]
fn assert_still_v1(path: &Path) {
    assert_eq!(versions_stored(path), [1], "still at version 1");
    assert_eq!(raw_rows(path), expected_raw_rows(), "every row intact");
}

#[track_caller]
fn assert_migrate_error(error: &es_sqlite::Error, path: &Path, says: &[&str]) {
    assert!(
        matches!(error, es_sqlite::Error::Migrate { path: p, .. } if p == path),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(FILE), "names the file: {message}");
    assert!(
        message.contains("migrating the schema from version 1 to version 2"),
        "says which step failed: {message}"
    );
    assert!(
        !message.contains("CREATE TABLE"),
        "SQLite's message, not the migration's SQL text: {message}"
    );
    for part in says {
        assert!(message.contains(part), "says {part:?}: {message}");
    }
}

#[test]
fn a_failing_migration_leaves_the_release1_file_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE);
    create_v1(&path, &V1_EVENTS);
    // Some other program's table where version 2 wants its own.
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TABLE es_commands (note TEXT NOT NULL);
             INSERT INTO es_commands (note) VALUES ('not an event store table');",
        )
        .unwrap();

    let error = SqliteStore::open(&path).unwrap_err();
    assert_migrate_error(&error, &path, &["es_commands", "already exists"]);
    assert_still_v1(&path);
    let note: String = Connection::open(&path)
        .unwrap()
        .query_row("SELECT note FROM es_commands", [], |row| row.get(0))
        .unwrap();
    assert_eq!(note, "not an event store table", "the other table is kept");

    // Once the conflicting table is gone, the migration goes through.
    Connection::open(&path)
        .unwrap()
        .execute_batch("DROP TABLE es_commands")
        .unwrap();
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(versions_stored(&path), [3]);
    assert_eq!(store.read_all(1, 100).unwrap().len(), V1_EVENTS.len());
}

#[test]
fn a_migration_failing_after_its_ddl_rolls_the_ddl_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE);
    create_v1(&path, &V1_EVENTS);
    // The last step of the migration (recording version 2) fails, after `es_commands`
    // was created in the same transaction.
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER pin_version BEFORE UPDATE ON es_schema_version
             BEGIN SELECT RAISE(ABORT, 'schema upgrades are frozen'); END;",
        )
        .unwrap();

    let error = SqliteStore::open(&path).unwrap_err();
    assert_migrate_error(&error, &path, &["schema upgrades are frozen"]);
    assert_still_v1(&path);
    assert!(
        !table_exists(&path, "es_commands"),
        "the table the migration created was rolled back with it"
    );

    Connection::open(&path)
        .unwrap()
        .execute_batch("DROP TRIGGER pin_version")
        .unwrap();
    SqliteStore::open(&path).unwrap();
    assert_eq!(versions_stored(&path), [3]);
    assert!(table_exists(&path, "es_commands"));
}

/// es-sqlite has no CHECK on the stream version, so a damaged row can be stored before
/// and after the migration; either way, a read of the stream from the start reports it.
#[test]
fn a_negative_stream_version_is_reported_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE);
    create_v1(&path, &V1_EVENTS);
    // Damage written while the file was at version 1: position 9, version -1.
    insert_v1(
        &Connection::open(&path).unwrap(),
        &[V1Event {
            event_id: "0b6f3c1e-8a3b-4c55-9a7e-2f1d00000009",
            aggregate_type: "Account",
            stream_id: "acc-1",
            stream_version: -1,
            event_type: "Deposited",
            schema_version: 1,
            recorded_at: T0 + 8_000,
            payload: r#"{"amount":1000}"#,
            metadata: "{}",
        }],
    );
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(versions_stored(&path), [3]);

    let stream = StreamRef::new("Account", "acc-1");
    let assert_reported = |read: Result<Vec<RecordedEvent>, StoreError>, position: u64| match read {
        Err(StoreError::Corrupt {
            stream: found,
            version,
            global_position,
            event_type,
            reason,
        }) => {
            assert_eq!(found, stream.to_key());
            assert_eq!(version, 0, "the version column is what is unreadable");
            assert_eq!(global_position, position);
            assert_eq!(event_type, "Deposited");
            assert!(
                reason.contains("stream version -1 is not positive"),
                "{reason}"
            );
        }
        other => panic!("the damaged row was not reported: {other:?}"),
    };
    assert_reported(store.read_stream(stream, 1), 9);
    assert_reported(store.read_stream(stream, 0), 9);
    assert_reported(store.read_all(1, 100), 9);
    assert!(
        Repository::<Account, _>::new(&store).load("acc-1").is_err(),
        "loading the aggregate does not skip it either"
    );
    // The global log can be read past it.
    assert!(store.read_all(10, 100).unwrap().is_empty());
    // Other streams are unaffected.
    assert_eq!(
        store
            .read_stream(StreamRef::new("Account", "acc-2"), 1)
            .unwrap()
            .len(),
        2
    );

    // Damage written after the migration, to a stream of its own, is reported too.
    insert_v1(
        &Connection::open(&path).unwrap(),
        &[V1Event {
            event_id: "0b6f3c1e-8a3b-4c55-9a7e-2f1d0000000a",
            aggregate_type: "Account",
            stream_id: "acc-3",
            stream_version: -5,
            event_type: "Deposited",
            schema_version: 1,
            recorded_at: T0 + 9_000,
            payload: r#"{"amount":1}"#,
            metadata: "{}",
        }],
    );
    let acc3 = StreamRef::new("Account", "acc-3");
    match store.read_stream(acc3, 1) {
        Err(StoreError::Corrupt {
            global_position,
            reason,
            ..
        }) => {
            assert_eq!(global_position, 10);
            assert!(
                reason.contains("stream version -5 is not positive"),
                "{reason}"
            );
        }
        other => panic!("the damaged row was not reported: {other:?}"),
    }
    assert!(
        matches!(
            store.stream_version(acc3),
            Err(StoreError::CorruptStream { .. })
        ),
        "a stream whose only row is damaged has no usable version"
    );
}

#[test]
fn threads_opening_a_release1_file_at_once_migrate_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE);
    create_v1(&path, &V1_EVENTS);
    let barrier = std::sync::Barrier::new(4);
    let stores: Vec<SqliteStore> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    SqliteStore::open(&path)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().expect("concurrent first open"))
            .collect()
    });
    assert_eq!(versions_stored(&path), [3]);
    for store in &stores {
        assert_eq!(
            store
                .stream_version(StreamRef::new("Order", "ord-1"))
                .unwrap(),
            3
        );
    }
    assert_eq!(raw_rows(&path), expected_raw_rows());
}
