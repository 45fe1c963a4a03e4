//! Opening PostgreSQL event stores that the previous release (schema version 1) wrote.
//!
//! Each test builds a version-1 schema exactly as es-postgres's version-1 code did (the DDL
//! below is that code's, verbatim; the rows are written as its append wrote them), then
//! connects today's [`PostgresStore`], which migrates it through versions 2 and 3 (the
//! by-type index, snapshots and checkpoints) to version 4 (the append notification).
//!
//! Needs a server: set `ES_POSTGRES_URL` (e.g. `eval "$(bash .ci/postgres.sh)"`). Without
//! it the tests are skipped with a message, except under CI (`CI` set), where they fail.
//! Every test works in a fresh schema, dropped afterwards.
//!
//! A newer schema being refused (`Error::SchemaTooNew`) is
//! covered by `a_newer_schema_is_refused_with_an_error` in `tests/store_postgres.rs`.

use std::sync::Barrier;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use es_core::{
    AppendOptions, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, Repository,
    StoreError, StreamRef, Uuid,
};
use es_postgres::PostgresStore;
use es_postgres::postgres::Client;
use es_postgres::postgres::error::SqlState;
use es_postgres::postgres::types::Json;
use es_store_tests::{Account, assert_conflict};
use serde_json::{Value, json};
/// What es-postgres's version-1 `migrate` ran in a new schema (`{s}` is the quoted schema,
/// created just before): the version table, `migration(0)` and the version row, verbatim
/// from the previous release. It is what every version-1 schema holds; never edit it.
const V1_DDL: &str = "CREATE TABLE IF NOT EXISTS {s}.es_schema_version (version integer NOT NULL);
            CREATE TABLE {s}.es_position (
                 id   boolean PRIMARY KEY DEFAULT true CHECK (id),
                 last bigint  NOT NULL
             );
             INSERT INTO {s}.es_position (id, last) VALUES (true, 0);
             CREATE TABLE {s}.es_events (
                 global_position bigint      PRIMARY KEY,
                 event_id        uuid        NOT NULL,
                 aggregate_type  text        NOT NULL,
                 stream_id       text        NOT NULL,
                 stream_version  bigint      NOT NULL,
                 event_type      text        NOT NULL,
                 schema_version  bigint      NOT NULL,
                 recorded_at     timestamptz NOT NULL,
                 payload         jsonb       NOT NULL,
                 metadata        jsonb       NOT NULL,
                 CONSTRAINT es_events_event_id_key UNIQUE (event_id),
                 CONSTRAINT es_events_stream_key
                     UNIQUE (aggregate_type, stream_id, stream_version)
             );
             INSERT INTO {s}.es_schema_version (version) VALUES (1);";

#[path = "support/postgres.rs"]
mod support;
use support::{Schema, fresh_schema, url};

/// One row as the version-1 append wrote it.
struct V1Event {
    /// The `uuid`, as text.
    event_id: &'static str,
    aggregate_type: &'static str,
    stream_id: &'static str,
    stream_version: i64,
    event_type: &'static str,
    schema_version: i64,
    /// Microseconds since the Unix epoch (a `timestamptz`).
    recorded_at: i64,
    /// The payload JSON (v1 sent it as `jsonb` from a `serde_json::Value`).
    payload: &'static str,
    /// The `Metadata` as JSON.
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
fn recorded_at(micros: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros.unsigned_abs())
}

/// A fresh schema holding a version-1 store with `events`, created as the previous
/// release's `connect_with_schema` and appends did; dropped when the guard is.
fn create_v1(url: &str, events: &[V1Event]) -> (Schema, Client) {
    let schema = Schema {
        url: url.to_owned(),
        name: fresh_schema(),
    };
    let mut client = es_postgres::connect_client(url).expect("connect to PostgreSQL");
    let quoted = format!("\"{}\"", schema.name);
    let mut tx = client.transaction().unwrap();
    tx.batch_execute(&format!("CREATE SCHEMA {quoted}"))
        .unwrap();
    tx.batch_execute(&V1_DDL.replace("{s}", &quoted)).unwrap();
    tx.commit().unwrap();
    insert_v1(&mut client, &schema.name, events, 1);
    (schema, client)
}

/// Appends rows at positions from `first_position` on, as the version-1 append wrote them:
/// each with its position taken from `es_position`, which ends at the last one.
fn insert_v1(client: &mut Client, schema: &str, events: &[V1Event], first_position: i64) {
    let mut tx = client.transaction().unwrap();
    let insert = tx
        .prepare(&format!(
            "INSERT INTO \"{schema}\".es_events (global_position, event_id, aggregate_type, \
             stream_id, stream_version, event_type, schema_version, recorded_at, payload, \
             metadata) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .unwrap();
    for (position, e) in (first_position..).zip(events) {
        let payload: Value = serde_json::from_str(e.payload).unwrap();
        let metadata: Metadata = serde_json::from_str(e.metadata).unwrap();
        tx.execute(
            &insert,
            &[
                &position,
                &Uuid::parse_str(e.event_id).unwrap(),
                &e.aggregate_type,
                &e.stream_id,
                &e.stream_version,
                &e.event_type,
                &e.schema_version,
                &recorded_at(e.recorded_at),
                &Json(&payload),
                &Json(&metadata),
            ],
        )
        .unwrap();
    }
    let count = i64::try_from(events.len()).unwrap();
    tx.execute(
        &format!("UPDATE \"{schema}\".es_position SET last = last + $1 WHERE id"),
        &[&count],
    )
    .unwrap();
    tx.commit().unwrap();
}

fn versions_stored(client: &mut Client, schema: &str) -> Vec<i32> {
    client
        .query(
            &format!("SELECT version FROM \"{schema}\".es_schema_version ORDER BY version"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The kind (`r` table, `v` view, `i` index, ...) of the relation `name` in `schema`.
fn relation_kind(client: &mut Client, schema: &str, name: &str) -> Option<String> {
    client
        .query_opt(
            "SELECT c.relkind::text FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&schema, &name],
        )
        .unwrap()
        .map(|row| row.get(0))
}

/// Whether `es_events` has the version-2 CHECK, and if so whether it is validated.
fn positive_check(client: &mut Client, schema: &str) -> Option<bool> {
    client
        .query_opt(
            "SELECT con.convalidated FROM pg_catalog.pg_constraint con \
             JOIN pg_catalog.pg_class c ON c.oid = con.conrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = 'es_events' \
               AND con.conname = 'es_events_positive_check'",
            &[&schema],
        )
        .unwrap()
        .map(|row| row.get(0))
}

/// Every `es_events` row and the position counter, as text.
fn snapshot(client: &mut Client, schema: &str) -> (Vec<String>, i64) {
    let rows = client
        .query(
            &format!("SELECT e::text FROM \"{schema}\".es_events e ORDER BY global_position"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let last = client
        .query_one(&format!("SELECT last FROM \"{schema}\".es_position"), &[])
        .unwrap()
        .get(0);
    (rows, last)
}

fn es_streams(client: &mut Client, schema: &str) -> Vec<(String, String, i64)> {
    client
        .query(
            &format!(
                "SELECT aggregate_type, stream_id, version FROM \"{schema}\".es_streams \
                 ORDER BY aggregate_type, stream_id"
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
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
        recorded_at(expected.recorded_at),
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
fn a_release1_schema_is_migrated_and_reads_back_unchanged() {
    let Some(url) = url() else { return };
    let (schema, mut client) = create_v1(&url, &V1_EVENTS);
    let name = schema.name.as_str();
    assert_eq!(versions_stored(&mut client, name), [1]);
    assert_eq!(relation_kind(&mut client, name, "es_streams"), None);

    let store = PostgresStore::connect_with_schema(&url, name).expect("open a version-1 schema");
    assert_eq!(
        versions_stored(&mut client, name),
        [1, 2, 3, 4],
        "one row for each version, 2 to 4"
    );
    assert_eq!(
        relation_kind(&mut client, name, "es_commands").as_deref(),
        Some("r")
    );
    for table in ["es_snapshots", "es_checkpoints"] {
        assert_eq!(
            relation_kind(&mut client, name, table).as_deref(),
            Some("r"),
            "version 3 adds {table}"
        );
    }
    assert_eq!(
        positive_check(&mut client, name),
        Some(false),
        "the CHECK is there, NOT VALID"
    );
    // The migration filled es_streams with each old stream's version.
    let expected_streams: Vec<(String, String, i64)> = V1_STREAMS
        .iter()
        .map(|&(t, id, v)| (t.to_owned(), id.to_owned(), i64::try_from(v).unwrap()))
        .collect();
    assert_eq!(es_streams(&mut client, name), expected_streams);

    // Every old event, through the global log and through its stream.
    let all = store.read_all(1, 100).unwrap();
    assert_eq!(all.len(), V1_EVENTS.len());
    for ((event, expected), position) in all.iter().zip(&V1_EVENTS).zip(1..) {
        assert_v1_event(event, expected, position);
    }
    assert!(store.read_all(9, 100).unwrap().is_empty());
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
        // Read from es_streams, which only the migration can have filled.
        assert_eq!(store.stream_version(stream).unwrap(), version, "{stream}");
        let tail = store.read_stream(stream, version).unwrap();
        assert_eq!(tail.len(), 1, "{stream}");
        assert_eq!(tail[0].stream_version, version);
    }
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
        "positions continue after the old ones, no gap from the conflicts"
    );

    // Idempotency keys work on the migrated schema.
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
    let elsewhere = store
        .append_with(
            StreamRef::new("Order", "ord-1"),
            ExpectedVersion::Exact(3),
            &[NewEvent::new("Returned", 1, json!({}), Metadata::new())],
            keyed,
        )
        .unwrap();
    assert!(!elsewhere.duplicate, "the key belongs to its stream");
    assert_eq!(
        elsewhere.global_positions,
        12..13,
        "the duplicate gave its positions back"
    );

    // A command through the repository on an old stream.
    let executed = repo.execute("acc-1", |a| a.deposit(20)).unwrap();
    assert_eq!(executed.version, 5);
    assert_eq!(executed.global_positions, 13..14);
    assert_eq!(executed.state.balance, 15 + 1 + 20);
    assert_eq!(
        repo.load("acc-2").unwrap().unwrap().state.balance,
        7 + 2 + 3
    );

    // The whole log: the old events unchanged, then the new ones, without gaps; the
    // counter agrees.
    let all = store.read_all(1, 100).unwrap();
    let positions: Vec<u64> = all.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, (1..=13).collect::<Vec<_>>());
    for ((event, expected), position) in all.iter().zip(&V1_EVENTS).zip(1..) {
        assert_v1_event(event, expected, position);
    }
    assert_eq!(snapshot(&mut client, name).1, 13);
    drop(store);

    // Connecting again migrates nothing.
    let store = PostgresStore::connect_with_schema(&url, name).unwrap();
    assert_eq!(versions_stored(&mut client, name), [1, 2, 3, 4]);
    assert_eq!(store.stream_version(acc1_stream).unwrap(), 5);
    assert_eq!(
        store.find_idempotency_key(acc2_stream, "k").unwrap(),
        Some(again)
    );
}

/// Asserts the schema is still the untouched version-1 store: version 1 only, the same
/// rows and counter, and nothing of version 2 (`es_streams` is checked by the caller).
#[track_caller]
fn assert_still_v1(client: &mut Client, schema: &str, before: &(Vec<String>, i64)) {
    assert_eq!(versions_stored(client, schema), [1], "still at version 1");
    assert_eq!(&snapshot(client, schema), before, "every row intact");
    assert_eq!(before.0.len(), V1_EVENTS.len());
    assert_eq!(relation_kind(client, schema, "es_commands"), None);
    assert_eq!(relation_kind(client, schema, "es_commands_pkey"), None);
    assert_eq!(relation_kind(client, schema, "es_streams_pkey"), None);
    assert_eq!(positive_check(client, schema), None, "no CHECK added");
}

#[track_caller]
fn assert_migrate_error(error: &es_postgres::Error, schema: &str, says: &[&str]) {
    assert!(
        matches!(error, es_postgres::Error::Migrate { schema: s, .. } if s == schema),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(schema), "names the schema: {message}");
    assert!(message.contains("migrate"), "says what failed: {message}");
    for part in says {
        assert!(message.contains(part), "says {part:?}: {message}");
    }
}

#[test]
fn a_failing_migration_leaves_the_release1_schema_as_it_was() {
    let Some(url) = url() else { return };
    let (schema, mut client) = create_v1(&url, &V1_EVENTS);
    let name = schema.name.as_str();
    // Something else's view where version 2 wants its table.
    client
        .batch_execute(&format!(
            "CREATE VIEW \"{name}\".es_streams AS SELECT 'not an event store table'::text AS note"
        ))
        .unwrap();
    let before = snapshot(&mut client, name);

    let error = PostgresStore::connect_with_schema(&url, name).unwrap_err();
    assert_migrate_error(&error, name, &["42P07", "es_streams", "already exists"]);
    assert_still_v1(&mut client, name, &before);
    assert_eq!(
        relation_kind(&mut client, name, "es_streams").as_deref(),
        Some("v"),
        "the view is kept"
    );

    // Once the view is gone, the migration goes through.
    client
        .batch_execute(&format!("DROP VIEW \"{name}\".es_streams"))
        .unwrap();
    let store = PostgresStore::connect_with_schema(&url, name).unwrap();
    assert_eq!(versions_stored(&mut client, name), [1, 2, 3, 4]);
    assert_eq!(store.read_all(1, 100).unwrap().len(), V1_EVENTS.len());
}

#[test]
fn a_migration_failing_after_its_ddl_rolls_all_of_it_back() {
    let Some(url) = url() else { return };
    let (schema, mut client) = create_v1(&url, &V1_EVENTS);
    let name = schema.name.as_str();
    // The last step of the migration (recording version 2) fails, after every table,
    // row and constraint of version 2 was created in the same transaction.
    client
        .batch_execute(&format!(
            "CREATE FUNCTION \"{name}\".pin_version() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN RAISE EXCEPTION 'schema upgrades are frozen'; END $$;
             CREATE TRIGGER pin_version BEFORE INSERT ON \"{name}\".es_schema_version
                 FOR EACH ROW EXECUTE FUNCTION \"{name}\".pin_version();"
        ))
        .unwrap();
    let before = snapshot(&mut client, name);

    let error = PostgresStore::connect_with_schema(&url, name).unwrap_err();
    assert_migrate_error(&error, name, &["schema upgrades are frozen"]);
    assert_still_v1(&mut client, name, &before);
    assert_eq!(
        relation_kind(&mut client, name, "es_streams"),
        None,
        "the filled es_streams table was rolled back"
    );

    client
        .batch_execute(&format!(
            "DROP TRIGGER pin_version ON \"{name}\".es_schema_version"
        ))
        .unwrap();
    PostgresStore::connect_with_schema(&url, name).unwrap();
    assert_eq!(versions_stored(&mut client, name), [1, 2, 3, 4]);
    assert_eq!(positive_check(&mut client, name), Some(false));
}

#[test]
fn stores_opening_a_release1_schema_at_once_migrate_it_once() {
    let Some(url) = url() else { return };
    // A few rounds: the race is between the sessions' first looks at the version.
    for round in 0..3 {
        let (schema, mut client) = create_v1(&url, &V1_EVENTS);
        let name = schema.name.as_str();
        let barrier = Barrier::new(4);
        let stores: Vec<PostgresStore> = thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        PostgresStore::connect_with_schema(&url, name)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().expect("concurrent first open"))
                .collect()
        });
        assert_eq!(
            versions_stored(&mut client, name),
            [1, 2, 3, 4],
            "round {round}: the migration ran exactly once"
        );
        let expected_streams: Vec<(String, String, i64)> = V1_STREAMS
            .iter()
            .map(|&(t, id, v)| (t.to_owned(), id.to_owned(), i64::try_from(v).unwrap()))
            .collect();
        assert_eq!(es_streams(&mut client, name), expected_streams);
        for store in &stores {
            for (aggregate_type, id, version) in V1_STREAMS {
                let stream = StreamRef::new(aggregate_type, id);
                assert_eq!(store.stream_version(stream).unwrap(), version);
            }
        }
        // Every store appends where the log left off.
        let stream = StreamRef::new("Order", "ord-1");
        for (i, store) in (0..).zip(&stores) {
            let outcome = store
                .append(stream, ExpectedVersion::Exact(3 + i), &[deposited(i)])
                .unwrap();
            assert_eq!(outcome.global_positions.start, 9 + i);
        }
    }
}

/// A row with a negative stream version, written while the schema was at version 1 (the
/// CHECK only came with version 2, NOT VALID, so it does not look at old rows), is
/// reported when its stream is read from the start, not silently dropped.
#[test]
fn a_negative_stream_version_from_release1_is_reported_after_migration() {
    let Some(url) = url() else { return };
    let (schema, mut client) = create_v1(&url, &V1_EVENTS);
    let name = schema.name.as_str();
    insert_v1(
        &mut client,
        name,
        &[
            V1Event {
                event_id: "0b6f3c1e-8a3b-4c55-9a7e-2f1d00000009",
                aggregate_type: "Account",
                stream_id: "acc-1",
                stream_version: -1,
                event_type: "Deposited",
                schema_version: 1,
                recorded_at: T0 + 8_000,
                payload: r#"{"amount":1000}"#,
                metadata: "{}",
            },
            // A stream whose only row is damaged.
            V1Event {
                event_id: "0b6f3c1e-8a3b-4c55-9a7e-2f1d0000000a",
                aggregate_type: "Account",
                stream_id: "acc-3",
                stream_version: -5,
                event_type: "Deposited",
                schema_version: 1,
                recorded_at: T0 + 9_000,
                payload: r#"{"amount":1}"#,
                metadata: "{}",
            },
        ],
        9,
    );
    let store = PostgresStore::connect_with_schema(&url, name)
        .expect("the migration does not trip over old damage");
    assert_eq!(versions_stored(&mut client, name), [1, 2, 3, 4]);
    assert_eq!(positive_check(&mut client, name), Some(false));

    let assert_reported = |read: Result<Vec<RecordedEvent>, StoreError>,
                           stream: StreamRef<'_>,
                           position: u64,
                           version: i64| match read {
        Err(StoreError::Corrupt {
            stream: found,
            version: reported_version,
            global_position,
            event_type,
            reason,
        }) => {
            assert_eq!(found, stream.to_key());
            assert_eq!(reported_version, 0, "the version column is what is damaged");
            assert_eq!(global_position, position);
            assert_eq!(event_type, "Deposited");
            assert!(
                reason.contains(&format!("stream version {version} is not positive")),
                "{reason}"
            );
        }
        other => panic!("the damaged row was not reported: {other:?}"),
    };
    let acc1 = StreamRef::new("Account", "acc-1");
    assert_reported(store.read_stream(acc1, 1), acc1, 9, -1);
    assert_reported(store.read_stream(acc1, 0), acc1, 9, -1);
    assert_reported(store.read_all(1, 100), acc1, 9, -1);
    let acc3 = StreamRef::new("Account", "acc-3");
    assert_reported(store.read_stream(acc3, 1), acc3, 10, -5);
    assert_reported(store.read_all(10, 100), acc3, 10, -5);
    assert!(
        Repository::<Account, _>::new(&store).load("acc-1").is_err(),
        "loading the aggregate does not skip it either"
    );
    // The global log can be read past the damage; other streams are unaffected.
    assert!(store.read_all(11, 100).unwrap().is_empty());
    assert_eq!(
        store
            .read_stream(StreamRef::new("Account", "acc-2"), 1)
            .unwrap()
            .len(),
        2
    );
    // es_streams holds the highest positive version of a partly damaged stream, and no
    // row for a stream with nothing but damage (its CHECK allows positive versions only).
    assert_eq!(store.stream_version(acc1).unwrap(), 3);
    assert_eq!(store.stream_version(acc3).unwrap(), 0);

    // From version 2 on, the CHECK refuses such rows.
    let refused = client
        .execute(
            &format!(
                "INSERT INTO \"{name}\".es_events (global_position, event_id, aggregate_type, \
                 stream_id, stream_version, event_type, schema_version, recorded_at, payload, \
                 metadata) VALUES (11, $1, 'Account', 'acc-4', -1, 'Deposited', 1, now(), \
                 '{{}}', '{{}}')"
            ),
            &[&Uuid::parse_str("0b6f3c1e-8a3b-4c55-9a7e-2f1d0000000b").unwrap()],
        )
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(&SqlState::CHECK_VIOLATION),
        "{refused}"
    );
}

/// Whether some session waits for a lock on this schema's `es_position` or `es_events`.
fn someone_waits_for_the_log(client: &mut Client, schema: &str) -> bool {
    client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l \
             JOIN pg_catalog.pg_class c ON c.oid = l.relation \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname IN ('es_position', 'es_events') \
               AND NOT l.granted)",
            &[&schema],
        )
        .unwrap()
        .get(0)
}

/// An append by a process still running the previous release is in flight when the new
/// release migrates the schema: it has taken its position, and inserted its event if
/// `inserted`. It commits while the migration waits, and es_streams must count it, or the
/// stream's version would be stale for good (every later append to it would conflict).
fn release1_append_in_flight_during_the_migration(inserted: bool) {
    let Some(url) = url() else { return };
    let (schema, mut client) = create_v1(&url, &V1_EVENTS);
    let name = schema.name.as_str();

    // The version-1 append: take position 9 for version 4 of acc-1.
    let mut old_release = es_postgres::connect_client(&url).unwrap();
    let mut append = old_release.transaction().unwrap();
    let last: i64 = append
        .query_one(
            &format!("UPDATE \"{name}\".es_position SET last = last + 1 WHERE id RETURNING last"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(last, 9);
    let insert = |append: &mut es_postgres::postgres::Transaction<'_>| {
        append
            .execute(
                &format!(
                    "INSERT INTO \"{name}\".es_events (global_position, event_id, \
                     aggregate_type, stream_id, stream_version, event_type, schema_version, \
                     recorded_at, payload, metadata) VALUES (9, $1, 'Account', 'acc-1', 4, \
                     'Deposited', 1, now(), '{{\"amount\": 100}}', '{{}}')"
                ),
                &[&Uuid::parse_str("0b6f3c1e-8a3b-4c55-9a7e-2f1d00000009").unwrap()],
            )
            .unwrap();
    };
    if inserted {
        insert(&mut append);
    }

    let store = thread::scope(|scope| {
        let migrating = scope.spawn(|| PostgresStore::connect_with_schema(&url, name));
        // The migration must wait for the append to end.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !someone_waits_for_the_log(&mut client, name) {
            assert!(
                !migrating.is_finished(),
                "the migration finished while a version-1 append was in flight"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "the migration never waited for the in-flight append"
            );
            thread::sleep(Duration::from_millis(20));
        }
        if !inserted {
            insert(&mut append);
        }
        append.commit().unwrap();
        migrating.join().unwrap().expect("the migration")
    });
    assert_eq!(versions_stored(&mut client, name), [1, 2, 3, 4]);

    let acc1 = StreamRef::new("Account", "acc-1");
    assert_eq!(
        store.stream_version(acc1).unwrap(),
        4,
        "es_streams counts the append committed during the migration"
    );
    let outcome = store
        .append(acc1, ExpectedVersion::Exact(4), &[deposited(1)])
        .unwrap();
    assert_eq!(outcome.global_positions, 10..11);
    assert_eq!(
        Repository::<Account, _>::new(&store)
            .load("acc-1")
            .unwrap()
            .unwrap()
            .state
            .balance,
        15 + 100 + 1
    );
}

#[test]
fn a_release1_append_in_flight_during_the_migration_is_counted() {
    release1_append_in_flight_during_the_migration(true);
}

#[test]
fn a_release1_append_that_only_took_its_position_is_counted() {
    release1_append_in_flight_during_the_migration(false);
}
