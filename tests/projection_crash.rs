//! Exactly-once projection on SQLite: a read model kept in the event store's file, whose
//! writes and checkpoint are committed in one transaction (`es_sqlite::ExactlyOnce`),
//! applies every event exactly once however often its projector is killed.
//!
//! The test re-runs this test binary as a child process (the ignored `projector_child`
//! test, which only works when `ES_PROJECTION_DB` is set). The child projects the log in
//! small batches, pausing inside each transaction after the read model's rows are written
//! and before the checkpoint is, so that kills often land between the two. The parent
//! appends more events between rounds, kills the child with SIGKILL after a random delay,
//! and checks the file: every handled event up to the checkpoint is in the read model's
//! table exactly once, and none after it. At the end a last child runs to the end of the
//! log and every event is there exactly once.

use std::thread;
use std::time::{Duration, Instant};

use es_core::{
    Aggregate, CheckpointStore, Event, EventRecord, EventStore, ExpectedVersion, Metadata,
    NewEvent, Projector, StreamRef, applies, read_model,
};
use es_sqlite::rusqlite::{Connection, Transaction, params};
use es_sqlite::{ExactlyOnce, SqliteReadModel, SqliteStore};
use serde::{Deserialize, Serialize};

use es_store_tests::crash::{self as kill, Lcg};

/// Kill rounds.
const ROUNDS: u64 = 40;
/// Events appended before each round (one in three is not handled by the read model).
const EVENTS_PER_ROUND: u64 = 60;
/// What the child prints once it has opened the store and starts projecting.
const READY: &str = "es-projection-ready";
const NAME: &str = "crash-counter";

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Ticked {
    n: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Ignored {
    n: u64,
}

#[derive(Debug, Default, Aggregate)]
struct Ticker {
    last: u64,
}

#[applies]
impl Ticker {
    fn ticked(&mut self, e: &Ticked) {
        self.last = e.n;
    }
    fn ignored(&mut self, _: &Ignored) {}
}

/// Rows to write: (global position, n). Written and forgotten by `write`.
#[derive(Debug, Default)]
struct Counted {
    pending: Vec<(u64, u64)>,
}

#[read_model(name = "crash-counter", from = Ticker)]
impl Counted {
    fn ticked(&mut self, e: &Ticked, record: &EventRecord<'_>) {
        self.pending.push((record.global_position, e.n));
    }
}

impl SqliteReadModel for Counted {
    fn write(&mut self, tx: &Transaction<'_>) -> es_sqlite::rusqlite::Result<()> {
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO rm_ticks (position, n) VALUES (?1, ?2)")?;
            for (position, n) in self.pending.drain(..) {
                insert.execute(params![position as i64, n as i64])?;
            }
        }
        tx.execute(
            "UPDATE rm_total SET count = (SELECT COUNT(*) FROM rm_ticks)",
            [],
        )?;
        // Between the read model's rows and the checkpoint: where a kill hurts most.
        thread::sleep(Duration::from_millis(2));
        Ok(())
    }

    fn clear(&mut self, tx: &Transaction<'_>) -> es_sqlite::rusqlite::Result<()> {
        tx.execute_batch("DELETE FROM rm_ticks; UPDATE rm_total SET count = 0;")
    }
}

fn create_tables(conn: &Connection) {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS rm_ticks (position INTEGER NOT NULL, n INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS rm_total (count INTEGER NOT NULL);
         INSERT INTO rm_total (count) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM rm_total);",
    )
    .unwrap();
}

/// The child: project until the end of the log, then exit (or be killed first).
#[test]
#[ignore = "child process of `exactly_once_under_sigkill`"]
fn projector_child() {
    let Some(path) = std::env::var_os("ES_PROJECTION_DB") else {
        return;
    };
    let store = SqliteStore::open(&path).expect("the child opens the store");
    let checkpoints = ExactlyOnce::open(&store).expect("a connection for the read model");
    let mut projector = Projector::new(store.clone(), Counted::default(), checkpoints)
        .with_batch_size(5)
        // Every child is the same instance restarted: it takes its own lease back at once,
        // where another owner would wait for the killed child's lease to expire.
        .with_owner("crash-child");
    println!("{READY}");
    loop {
        match projector.catch_up() {
            Ok(_) => return,
            // The previous (killed) child's lease has not expired yet.
            Err(es_core::ProjectionError::Locked { .. }) => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(error) => panic!("the projector failed: {error}"),
        }
    }
}

/// Starts a child; returns it once it is projecting.
fn spawn_child(path: &std::path::Path) -> std::process::Child {
    let path = path.to_str().expect("a UTF-8 temporary path");
    kill::spawn_child("projector_child", &[("ES_PROJECTION_DB", path)], READY)
}

/// Checks the file: the read model holds exactly the handled events up to its checkpoint,
/// each once. Returns the checkpoint and the number of rows.
fn check(store: &SqliteStore, conn: &Connection) -> (u64, u64) {
    let checkpoint = store.load_checkpoint(NAME).unwrap();
    let mut expected = Vec::new();
    for event in es_store_tests::read_everything(store) {
        if event.event_type == "Ticked" && event.global_position <= checkpoint {
            expected.push(event.global_position);
        }
    }
    let mut stmt = conn
        .prepare("SELECT position FROM rm_ticks ORDER BY position")
        .unwrap();
    let found: Vec<u64> = stmt
        .query_map([], |row| row.get::<_, i64>(0))
        .unwrap()
        .map(|p| p.unwrap() as u64)
        .collect();
    assert_eq!(
        found, expected,
        "every handled event up to checkpoint {checkpoint} is applied exactly once"
    );
    let total: i64 = conn
        .query_row("SELECT count FROM rm_total", [], |row| row.get(0))
        .unwrap();
    assert_eq!(
        total as usize,
        found.len(),
        "the total agrees with the rows"
    );
    (checkpoint, found.len() as u64)
}

fn append_round(store: &SqliteStore, round: u64) {
    let stream_id = format!("t{}", round % 3);
    let stream = StreamRef::new("Ticker", &stream_id);
    let events: Vec<NewEvent> = (0..EVENTS_PER_ROUND)
        .map(|i| {
            let n = round * EVENTS_PER_ROUND + i;
            let event_type = if n % 3 == 2 { "Ignored" } else { "Ticked" };
            NewEvent::new(
                event_type,
                1,
                serde_json::json!({ "n": n }),
                Metadata::new(),
            )
        })
        .collect();
    let version = store.stream_version(stream).unwrap();
    store
        .append(stream, ExpectedVersion::Exact(version), &events)
        .unwrap();
}

#[test]
fn exactly_once_under_sigkill() {
    let started = Instant::now();
    let seed = Lcg::seed();
    eprintln!("seed {seed}");
    let mut random = Lcg::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("projection.db");
    let store = SqliteStore::open(&path).unwrap();
    let conn = Connection::open(&path).unwrap();
    create_tables(&conn);

    let mut killed_mid_log = 0;
    let mut last_checkpoint = 0;
    for round in 0..ROUNDS {
        append_round(&store, round);
        let mut child = spawn_child(&path);
        thread::sleep(Duration::from_millis(2 + random.next(60)));
        child.kill().expect("SIGKILL the child"); // `kill` sends SIGKILL on Unix.
        child.wait().unwrap();
        let (checkpoint, rows) = check(&store, &conn);
        assert!(
            checkpoint >= last_checkpoint,
            "the checkpoint never goes back"
        );
        if checkpoint < (round + 1) * EVENTS_PER_ROUND {
            killed_mid_log += 1;
        }
        last_checkpoint = checkpoint;
        eprintln!("round {round}: checkpoint {checkpoint}, {rows} rows");
    }
    // A last child runs to the end of the log.
    let mut child = spawn_child(&path);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "the last child finishes: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "the last child finishes in time");
        thread::sleep(Duration::from_millis(20));
    }
    let (checkpoint, rows) = check(&store, &conn);
    let handled = ROUNDS * EVENTS_PER_ROUND * 2 / 3;
    assert_eq!(rows, handled, "every handled event applied exactly once");
    assert!(checkpoint >= ROUNDS * EVENTS_PER_ROUND - 1);
    assert!(
        killed_mid_log >= ROUNDS / 4,
        "most kills landed before the child had caught up ({killed_mid_log} of {ROUNDS})"
    );
    eprintln!(
        "projection crash test: {killed_mid_log} of {ROUNDS} kills mid-log, {:?}",
        started.elapsed()
    );
}
