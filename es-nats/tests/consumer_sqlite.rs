//! `es_nats::sqlite::ExactlyOncePartitions` (feature `sqlite`) against a real
//! `nats-server -js`: a SQLite read model fed from JetStream, its rows and its partition
//! checkpoints committed in one transaction, holds every handled event exactly once across
//! a crash between the commit and the acknowledgements, a full redelivery, a commit that
//! rolls back, and a second instance committing the same partitions.

mod accounts;
mod support {
    pub mod server;
}

use std::collections::BTreeMap;

use async_nats::jetstream;
use es_core::{EventRecord, EventStore, InMemoryStore, Repository, StoreError, read_model};
use es_nats::sqlite::ExactlyOncePartitions;
use es_nats::wire::partition_of;
use es_nats::{
    ConsumeError, ConsumerOptions, JetStreamProjector, PartitionCheckpoints, Publisher,
    PublisherOptions,
};
use es_sqlite::rusqlite::{Connection, Transaction, params};
use es_sqlite::{SqliteReadModel, SqliteStore};

use support::server::{NatsServer, nats_server_or_skip};

/// The publisher's (and so the consumer's) default partition count.
const PARTITIONS: u32 = 16;

// ---- the domain -----------------------------------------------------------------------------

use accounts::{Account, Deposited, Opened, Withdrawn};

// ---- the read model: one row per handled event, in `rm_events` ------------------------------

/// One row: (global position, stream id, stream version, event type).
type Row = (u64, String, u64, String);

/// The rows gathered from the events of one batch, written to `rm_events` by
/// [`SqliteReadModel::write`].
#[derive(Debug, Default)]
struct EventRows {
    pending: Vec<Row>,
    /// The next `write` fails, after writing its rows: its transaction must roll back.
    fail_next_write: bool,
}

#[read_model(name = "event-rows", from = Account)]
impl EventRows {
    fn opened(&mut self, _: &Opened, r: &EventRecord<'_>) {
        self.note(r);
    }
    fn deposited(&mut self, _: &Deposited, r: &EventRecord<'_>) {
        self.note(r);
    }
}

impl EventRows {
    fn note(&mut self, r: &EventRecord<'_>) {
        self.pending.push((
            r.global_position,
            r.stream.id.to_owned(),
            r.stream_version,
            r.event_type.to_owned(),
        ));
    }
}

impl SqliteReadModel for EventRows {
    fn write(&mut self, tx: &Transaction<'_>) -> es_sqlite::rusqlite::Result<()> {
        for (position, stream, version, event_type) in self.pending.drain(..) {
            tx.execute(
                "INSERT INTO rm_events (position, stream, version, event_type) VALUES (?1, ?2, ?3, ?4)",
                params![position as i64, stream, version as i64, event_type],
            )?;
        }
        if std::mem::take(&mut self.fail_next_write) {
            // As if the disk were full: a statement fails after the rows were written.
            tx.execute("INSERT INTO rm_full (position) VALUES (1)", [])?;
        }
        Ok(())
    }

    fn clear(&mut self, tx: &Transaction<'_>) -> es_sqlite::rusqlite::Result<()> {
        tx.execute("DELETE FROM rm_events", []).map(drop)
    }
}

/// The read model's rows, in the order they were written.
fn rows(conn: &Connection) -> Vec<Row> {
    let mut stmt = conn
        .prepare("SELECT position, stream, version, event_type FROM rm_events ORDER BY rowid")
        .expect("prepare");
    stmt.query_map([], |row| {
        Ok((
            row.get::<_, i64>(0)? as u64,
            row.get(1)?,
            row.get::<_, i64>(2)? as u64,
            row.get(3)?,
        ))
    })
    .expect("query")
    .map(|row| row.expect("row"))
    .collect()
}

/// The read model's partition checkpoints stored in the file, by key.
fn stored_checkpoints(conn: &Connection) -> BTreeMap<String, u64> {
    let mut stmt = conn
        .prepare("SELECT name, position FROM es_checkpoints WHERE name LIKE 'event-rows@ES_EVENTS/event-rows#p%'")
        .expect("prepare");
    stmt.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
    })
    .expect("query")
    .map(|row| row.expect("row"))
    .collect()
}

// ---- helpers ----------------------------------------------------------------------------------

struct World {
    store: InMemoryStore,
    jetstream: jetstream::Context,
    /// The read model's SQLite file (its own `es_checkpoints` table, next to `rm_events`).
    file: SqliteStore,
    _dir: tempfile::TempDir,
    /// Dropped last (fields drop in order): kills the server.
    _server: NatsServer,
}

async fn world() -> Option<World> {
    let server = nats_server_or_skip()?;
    let client = async_nats::connect(server.url()).await.expect("connect");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = SqliteStore::open(dir.path().join("read-model.db")).expect("read model file");
    Some(World {
        store: InMemoryStore::new(),
        jetstream: jetstream::new(client),
        file,
        _dir: dir,
        _server: server,
    })
}

impl World {
    /// Appends, for each of `accounts` accounts, an opening, `deposits` deposits and a
    /// withdrawal, interleaved across the accounts, and publishes everything appended.
    async fn history(&self, accounts: usize, deposits: u64, tag: &str) {
        let repo = Repository::<Account, _>::new(self.store.clone());
        let ids: Vec<String> = (0..accounts).map(|i| format!("{tag}-{i}")).collect();
        for id in &ids {
            repo.execute_infallible(id, |_: &Account| Opened { owner: id.clone() })
                .expect("open");
        }
        for amount in 1..=deposits {
            for id in &ids {
                repo.execute_infallible(id, |_: &Account| Deposited { amount })
                    .expect("deposit");
            }
        }
        for id in &ids {
            repo.execute_infallible(id, |_: &Account| Withdrawn { amount: 1 })
                .expect("withdraw");
        }
        Publisher::new(
            self.jetstream.clone(),
            self.store.clone(),
            self.store.clone(),
            PublisherOptions::default(),
        )
        .expect("publisher options")
        .catch_up()
        .await
        .expect("publish");
    }

    /// Fresh exactly-once checkpoints on the read model's file (as a restarted process
    /// opens them), with the read model's table.
    fn checkpoints(&self) -> ExactlyOncePartitions {
        let checkpoints = ExactlyOncePartitions::open(&self.file).expect("open the file");
        checkpoints
            .connection()
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS rm_events (
                    position INTEGER NOT NULL, stream TEXT NOT NULL,
                    version INTEGER NOT NULL, event_type TEXT NOT NULL)",
            )
            .expect("create rm_events");
        checkpoints
    }

    fn projector<C: PartitionCheckpoints<EventRows>>(
        &self,
        checkpoints: C,
    ) -> JetStreamProjector<EventRows, C> {
        JetStreamProjector::new(
            self.jetstream.clone(),
            EventRows::default(),
            checkpoints,
            ConsumerOptions::new().batch_size(4),
        )
    }

    /// The log's events, in global order.
    fn log(&self) -> Vec<es_core::RecordedEvent> {
        self.store.read_all(0, usize::MAX).expect("read the log")
    }

    /// The rows the read model must hold: one per handled event of the log.
    fn expected_rows(&self) -> Vec<Row> {
        self.log()
            .into_iter()
            .filter(|e| e.event_type != "Withdrawn")
            .map(|e| {
                (
                    e.global_position,
                    e.stream_id,
                    e.stream_version,
                    e.event_type,
                )
            })
            .collect()
    }

    /// The checkpoint each partition must have: its last event's position.
    fn expected_checkpoints(&self) -> BTreeMap<String, u64> {
        let mut checkpoints = BTreeMap::new();
        for event in self.log() {
            let partition = partition_of("Account", &event.stream_id, PARTITIONS);
            checkpoints.insert(
                format!("event-rows@ES_EVENTS/event-rows#p{partition}/{PARTITIONS}"),
                event.global_position,
            );
        }
        checkpoints
    }
}

/// Checks that `rows` hold every expected row exactly once, each stream's in its order.
fn assert_exactly_once(rows: &[Row], expected: &[Row]) {
    let mut versions: BTreeMap<&str, u64> = BTreeMap::new();
    for (position, stream, version, _) in rows {
        let last = versions.entry(stream).or_default();
        assert!(
            version > last,
            "{stream}: version {version} (position {position}) written after {last}"
        );
        *last = *version;
    }
    let mut sorted = rows.to_vec();
    sorted.sort();
    let mut deduped = sorted.clone();
    deduped.dedup();
    assert_eq!(sorted.len(), deduped.len(), "a row was written twice");
    assert_eq!(sorted, expected, "the rows are the handled events");
}

/// Commits, then reports a failure: as if the process died after the commit and before
/// the acknowledgements.
struct DiesAfterCommit(ExactlyOncePartitions);

impl PartitionCheckpoints<EventRows> for DiesAfterCommit {
    async fn load(&mut self, read_model: &mut EventRows, key: &str) -> Result<u64, StoreError> {
        self.0.load(read_model, key).await
    }

    async fn commit(
        &mut self,
        read_model: &mut EventRows,
        positions: &[(&str, u64)],
    ) -> Result<(), StoreError> {
        self.0.commit(read_model, positions).await?;
        Err(StoreError::backend("the process died after the commit"))
    }

    async fn reset(&mut self, read_model: &mut EventRows, keys: &[&str]) -> Result<(), StoreError> {
        PartitionCheckpoints::<EventRows>::reset(&mut self.0, read_model, keys).await
    }
}

// ---- tests ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_handled_event_is_written_once_with_its_checkpoints_in_the_same_file() {
    let Some(world) = world().await else { return };
    world.history(6, 5, "acc").await;
    let mut projector = world.projector(world.checkpoints());
    let done = projector.catch_up().await.expect("catch up");
    let total = world.log().len() as u64;
    let handled = world.expected_rows().len() as u64;
    assert_eq!(
        (done.read, done.applied, done.duplicates),
        (total, handled, 0)
    );
    let conn = projector.checkpoints().connection();
    assert_exactly_once(&rows(conn), &world.expected_rows());
    assert_eq!(stored_checkpoints(conn), world.expected_checkpoints());
    assert!(projector.read_model().pending.is_empty(), "all written");

    // New events: only they are applied.
    world.history(3, 2, "more").await;
    let done = projector.catch_up().await.expect("catch up again");
    assert_eq!(done.read, world.log().len() as u64 - total);
    let conn = projector.checkpoints().connection();
    assert_exactly_once(&rows(conn), &world.expected_rows());
    assert_eq!(stored_checkpoints(conn), world.expected_checkpoints());
    assert_eq!(projector.catch_up().await.expect("nothing left").read, 0);

    // A rebuild empties the table and the checkpoints in one transaction, and reads
    // everything again.
    let done = projector.rebuild().await.expect("rebuild");
    assert_eq!(done.applied, world.expected_rows().len() as u64);
    let conn = projector.checkpoints().connection();
    assert_exactly_once(&rows(conn), &world.expected_rows());
    assert_eq!(stored_checkpoints(conn), world.expected_checkpoints());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_commit_and_the_acks_applies_nothing_twice() {
    let Some(world) = world().await else { return };
    world.history(5, 4, "acc").await;

    // The first batch is committed, then the process dies before acknowledging it.
    let mut dying = world.projector(DiesAfterCommit(world.checkpoints()));
    let error = dying.catch_up().await.expect_err("died");
    assert!(
        error.to_string().contains("died after the commit"),
        "{error}"
    );
    let committed = rows(dying.checkpoints().0.connection());
    assert!(!committed.is_empty(), "a batch was committed");
    drop(dying);

    // Restarted with fresh checkpoints on the same file: JetStream delivers the committed
    // batch again, and its checkpoints skip it.
    let mut restarted = world.projector(world.checkpoints());
    let done = restarted.catch_up().await.expect("after the crash");
    assert!(done.duplicates >= 1, "{done:?}");
    assert_eq!(
        done.applied + committed.len() as u64,
        world.expected_rows().len() as u64,
        "{done:?}"
    );
    let conn = restarted.checkpoints().connection();
    assert_exactly_once(&rows(conn), &world.expected_rows());
    assert_eq!(stored_checkpoints(conn), world.expected_checkpoints());
    let consumers = restarted.consumer_names();
    drop(restarted);

    // The durable consumers are deleted: JetStream delivers everything again, to a fresh
    // instance, which skips all of it by the checkpoints in the file.
    let stream = world
        .jetstream
        .get_stream(es_nats::wire::DEFAULT_STREAM)
        .await
        .expect("the stream");
    for name in &consumers {
        // `catch_up` created every partition's consumer.
        stream.delete_consumer(name).await.expect("delete consumer");
    }
    let mut again = world.projector(world.checkpoints());
    let done = again.catch_up().await.expect("everything redelivered");
    let total = world.log().len() as u64;
    assert_eq!(
        (done.read, done.applied, done.duplicates),
        (total, 0, total)
    );
    let conn = again.checkpoints().connection();
    assert_exactly_once(&rows(conn), &world.expected_rows());
    assert_eq!(stored_checkpoints(conn), world.expected_checkpoints());

    // And new events still arrive once.
    world.history(2, 1, "later").await;
    let done = again.catch_up().await.expect("new events");
    assert_eq!(done.duplicates, 0, "{done:?}");
    assert_exactly_once(
        &rows(again.checkpoints().connection()),
        &world.expected_rows(),
    );
}

/// On a current-thread runtime, where the transactions run inline.
#[tokio::test]
async fn a_commit_that_fails_rolls_back_and_its_events_are_applied_again() {
    let Some(world) = world().await else { return };
    world.history(4, 3, "acc").await;
    let mut projector = world.projector(world.checkpoints());
    projector.catch_up().await.expect("catch up");
    let before = rows(projector.checkpoints().connection());
    let checkpoints_before = stored_checkpoints(projector.checkpoints().connection());
    assert_exactly_once(&before, &world.expected_rows());

    // The next batch's `write` fails after writing its rows: the transaction rolls back,
    // rows and checkpoints alike, and nothing is acknowledged.
    world.history(4, 2, "more").await;
    projector.read_model_mut().fail_next_write = true;
    let error = projector.catch_up().await.expect_err("the write fails");
    assert!(
        matches!(error, ConsumeError::Checkpoint { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("no such table: rm_full"),
        "{error}"
    );
    let conn = projector.checkpoints().connection();
    assert_eq!(
        rows(conn),
        before,
        "the failed batch's rows were rolled back"
    );
    assert_eq!(stored_checkpoints(conn), checkpoints_before);
    assert!(
        projector.read_model().pending.is_empty(),
        "reset after the rollback"
    );

    // The next run applies those events again, once.
    let done = projector.catch_up().await.expect("the write works again");
    assert_eq!(done.duplicates, 0, "{done:?}");
    let conn = projector.checkpoints().connection();
    assert_exactly_once(&rows(conn), &world.expected_rows());
    assert_eq!(stored_checkpoints(conn), world.expected_checkpoints());
    assert_eq!(projector.catch_up().await.expect("nothing left").read, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_on_the_same_partitions_makes_the_first_write_nothing() {
    let Some(world) = world().await else { return };
    world.history(4, 2, "acc").await;
    // Both load their checkpoints (0); the second commits everything first.
    let mut first = world.projector(world.checkpoints());
    first.positions().await.expect("load");
    let mut second = world.projector(world.checkpoints());
    second.catch_up().await.expect("second");
    let committed = rows(second.checkpoints().connection());
    assert_exactly_once(&committed, &world.expected_rows());

    // The first, behind the stored checkpoints, applies the new events on top of its stale
    // positions: its commit is refused and writes nothing.
    world.history(2, 1, "more").await;
    let error = first.catch_up().await.expect_err("refused");
    let message = error.to_string();
    assert!(
        message.contains("another instance committed or reset it"),
        "{message}"
    );
    assert!(
        message.contains("checkpoint `event-rows@ES_EVENTS/event-rows#p"),
        "{message}"
    );
    assert_eq!(rows(first.checkpoints().connection()), committed);
    drop(first);

    // A new instance loads the stored checkpoints and applies the new events once.
    let mut third = world.projector(world.checkpoints());
    third.catch_up().await.expect("third");
    let conn = third.checkpoints().connection();
    assert_exactly_once(&rows(conn), &world.expected_rows());
    assert_eq!(stored_checkpoints(conn), world.expected_checkpoints());
}
