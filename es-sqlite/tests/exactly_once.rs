//! `ExactlyOnce`: a read model in the event store's file, committed with its checkpoint;
//! rebuilds clear its tables; a commit after the lease was taken over writes nothing.
//! (The SIGKILL test is the workspace's `tests/projection_crash.rs`.)

use std::time::Duration;

use es_core::{
    ApplyError, CheckpointStore, Checkpointer, EventRecord, EventStore, ExpectedVersion, Handled,
    Lease, Metadata, NewEvent, Projector, ReadModel, StreamRef,
};
use es_sqlite::rusqlite::{Transaction, params};
use es_sqlite::{ExactlyOnce, SqliteReadModel, SqliteStore};

/// Written by hand (es-sqlite's tests do not use the macros): sums `n` of `Counted`.
#[derive(Debug, Default)]
struct Sum {
    pending: Vec<(u64, u64)>,
}

impl ReadModel for Sum {
    const NAME: &'static str = "sum";
    const HANDLES: &'static [Handled] = &[Handled {
        aggregate_type: "Counter",
        event_type: "Counted",
        aliases: &[],
    }];

    fn apply(&mut self, record: &EventRecord<'_>) -> Result<(), ApplyError> {
        if Self::HANDLES[0].matches(record) {
            let payload: serde_json::Value =
                serde_json::from_str(record.payload).map_err(ApplyError::handler)?;
            let n = payload["n"]
                .as_u64()
                .ok_or("no `n`")
                .map_err(ApplyError::handler)?;
            self.pending.push((record.global_position, n));
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.pending.clear();
    }
}

impl SqliteReadModel for Sum {
    fn write(&mut self, tx: &Transaction<'_>) -> es_sqlite::rusqlite::Result<()> {
        for (position, n) in self.pending.drain(..) {
            tx.execute(
                "INSERT INTO rm_sum (position, n) VALUES (?1, ?2)",
                params![position as i64, n as i64],
            )?;
        }
        Ok(())
    }

    fn clear(&mut self, tx: &Transaction<'_>) -> es_sqlite::rusqlite::Result<()> {
        tx.execute("DELETE FROM rm_sum", []).map(drop)
    }
}

fn counted(n: u64) -> NewEvent {
    NewEvent::new("Counted", 1, serde_json::json!({ "n": n }), Metadata::new())
}

fn open() -> (tempfile::TempDir, SqliteStore, ExactlyOnce) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("events.db")).unwrap();
    let checkpoints = ExactlyOnce::open(&store).unwrap();
    checkpoints
        .connection()
        .execute_batch("CREATE TABLE rm_sum (position INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        .unwrap();
    (dir, store, checkpoints)
}

fn rows(checkpoints: &ExactlyOnce) -> (i64, i64) {
    checkpoints
        .connection()
        .query_row(
            "SELECT COUNT(*), COALESCE(SUM(n), 0) FROM rm_sum",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap()
}

#[test]
fn rows_and_checkpoint_are_committed_together_and_rebuilds_clear_the_tables() {
    let (_dir, store, checkpoints) = open();
    let stream = StreamRef::new("Counter", "c");
    let events: Vec<NewEvent> = (1..=10).map(counted).collect();
    store
        .append(stream, ExpectedVersion::NoStream, &events)
        .unwrap();
    let other = StreamRef::new("Other", "c");
    store
        .append(other, ExpectedVersion::NoStream, &[counted(100)])
        .unwrap();

    let mut projector =
        Projector::new(store.clone(), Sum::default(), checkpoints).with_batch_size(3);
    assert_eq!(projector.catch_up().unwrap().applied, 10);
    assert_eq!(rows(projector.checkpoints()), (10, 55));
    assert_eq!(store.load_checkpoint("sum").unwrap(), 10);

    let mut reports = Vec::new();
    projector.rebuild(|p| reports.push(p.done)).unwrap();
    assert_eq!(
        rows(projector.checkpoints()),
        (10, 55),
        "cleared, then replayed once"
    );
    assert!(!reports.is_empty());
}

#[test]
fn a_commit_after_the_lease_was_taken_over_writes_nothing() {
    let (_dir, store, mut checkpoints) = open();
    let stream = StreamRef::new("Counter", "c");
    store
        .append(stream, ExpectedVersion::NoStream, &[counted(1)])
        .unwrap();
    let mut model = Sum::default();
    let short = Duration::from_millis(30);
    let lease =
        Checkpointer::<Sum>::acquire_lease(&mut checkpoints, "sum", "stalled", short).unwrap();
    assert!(matches!(lease, Lease::Acquired { .. }));
    std::thread::sleep(Duration::from_millis(80));
    // Another instance takes the expired lease.
    assert!(matches!(
        store
            .acquire_lease("sum", "other", Duration::from_secs(60))
            .unwrap(),
        Lease::Acquired { .. }
    ));
    model.pending.push((1, 1));
    let error = Checkpointer::<Sum>::commit(&mut checkpoints, &mut model, 1).unwrap_err();
    assert!(
        error.to_string().contains("taken over by `other`"),
        "{error}"
    );
    assert_eq!(rows(&checkpoints), (0, 0));
    assert_eq!(store.load_checkpoint("sum").unwrap(), 0);
}

#[test]
fn an_in_memory_store_is_refused() {
    let store = SqliteStore::open_in_memory().unwrap();
    let error = ExactlyOnce::open(&store).unwrap_err();
    assert!(error.to_string().contains("in-memory"), "{error}");
}
