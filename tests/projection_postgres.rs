//! Projectors over PostgreSQL: an event whose append commits late is never skipped (by a
//! `catch_up`, nor by a `run` polling all along), and two stores on one schema (two
//! processes) share a read model's lease and checkpoint.
//!
//! Needs a server: set `ES_POSTGRES_URL` (e.g. `eval "$(bash .ci/postgres.sh)"`). Without
//! it the tests are skipped with a message, except under CI (`CI` set), where they fail.
//! Every test works in a fresh schema, dropped afterwards.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use es_core::{
    Aggregate, CheckpointStore, Event, EventRecord, EventStore, ExpectedVersion, Metadata,
    NewEvent, ProjectionError, Projector, Repository, RunOptions, StopHandle, StreamRef, applies,
    read_model,
};
use es_postgres::PostgresStore;
use es_postgres::postgres::IsolationLevel;
use es_store_tests::{Account, Deposited, read_everything};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[path = "support/postgres.rs"]
mod support;
use support::{Schema, fresh_schema, url};

/// A second aggregate, so that a read model of both reads the whole log (`visit_all`)
/// while one of `Account` alone reads by type (`visit_by_type`).
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Noted {
    text: String,
}

#[derive(Debug, Default, Aggregate)]
struct Audit {
    notes: u32,
}

#[applies]
impl Audit {
    fn noted(&mut self, _: &Noted) {
        self.notes += 1;
    }
}

/// What a read model applied: (global position, stream id, event type), in order.
type Applied = Arc<Mutex<Vec<(u64, String, String)>>>;

fn push(applied: &Applied, record: &EventRecord<'_>) {
    applied.lock().unwrap().push((
        record.global_position,
        record.stream.id.to_owned(),
        record.event_type.to_owned(),
    ));
}

/// Deposits only: one aggregate, read by type.
#[derive(Debug, Default)]
struct Deposits {
    applied: Applied,
}

#[read_model(name = "deposits")]
impl Deposits {
    #[from(Account)]
    fn deposited(&mut self, _: &Deposited, record: &EventRecord<'_>) {
        push(&self.applied, record);
    }
}

/// Deposits and notes: two aggregates, read from the whole log.
#[derive(Debug, Default)]
struct Activity {
    applied: Applied,
}

#[read_model(name = "activity")]
impl Activity {
    #[from(Account)]
    fn deposited(&mut self, _: &Deposited, record: &EventRecord<'_>) {
        push(&self.applied, record);
    }
    #[from(Audit)]
    fn noted(&mut self, _: &Noted, record: &EventRecord<'_>) {
        push(&self.applied, record);
    }
}

/// A store in a fresh schema, and the schema's guard (dropped after the store).
fn make() -> Option<(PostgresStore, Schema)> {
    let url = url()?;
    let name = fresh_schema();
    let store = PostgresStore::connect_with_schema(&url, &name).expect("connect to PostgreSQL");
    Some((store, Schema { url, name }))
}

fn deposit(amount: u64) -> NewEvent {
    NewEvent::new("Deposited", 1, json!({ "amount": amount }), Metadata::new())
}

fn note(text: &str) -> NewEvent {
    NewEvent::new("Noted", 1, json!({ "text": text }), Metadata::new())
}

/// What a model of `handled` event types must have applied: every such event of the log,
/// once, in global order.
fn expected(store: &PostgresStore, handled: &[(&str, &str)]) -> Vec<(u64, String, String)> {
    read_everything(store)
        .into_iter()
        .filter(|e| {
            handled
                .iter()
                .any(|(a, t)| e.aggregate_type == *a && e.event_type == *t)
        })
        .map(|e| (e.global_position, e.stream_id, e.event_type))
        .collect()
}

fn positions(applied: &Applied) -> Vec<u64> {
    applied.lock().unwrap().iter().map(|a| a.0).collect()
}

/// An append's transaction is held open (on a connection of its own) while a second
/// append waits for the position counter behind it and projectors read the log: a
/// `catch_up` stops before the held positions instead of skipping past them to the second
/// append's, and so does a `run` polling every millisecond meanwhile. Once both commit,
/// every event has been applied exactly once, in global order.
#[test]
fn a_projector_never_skips_an_event_that_commits_late() {
    let Some((store, schema)) = make() else {
        return;
    };
    let accounts = Repository::<Account, _>::new(&store);
    accounts.execute("a", |acc| acc.open("ann")).unwrap();
    accounts.execute("a", |acc| acc.deposit(10)).unwrap();
    store
        .append(
            StreamRef::new("Audit", "log"),
            ExpectedVersion::NoStream,
            &[note("opened a")],
        )
        .unwrap();
    // Positions 1 to 3 are committed.

    // A `run` follows the log all along, polling every millisecond.
    let activity = Activity::default();
    let run_applied = activity.applied.clone();
    let stop = StopHandle::new();
    let runner = {
        let (store, stop) = (store.clone(), stop.clone());
        thread::spawn(move || {
            let options = RunOptions {
                min_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(1),
                ..RunOptions::default()
            };
            Projector::new(store.clone(), activity, store)
                .with_batch_size(2)
                .run(&stop, options)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.load_checkpoint("activity").unwrap() < 3 {
        assert!(Instant::now() < deadline, "the runner catches up");
        thread::sleep(Duration::from_millis(2));
    }

    // Positions 4 to 6 are taken by a transaction held open on another connection.
    let mut other = es_postgres::connect_client(&schema.url).unwrap();
    let mut tx = other
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .unwrap();
    let held = es_postgres::append_in_transaction(
        &mut tx,
        &schema.name,
        StreamRef::new("Account", "b"),
        ExpectedVersion::NoStream,
        &[deposit(20), deposit(30)],
    )
    .unwrap();
    assert_eq!(held.global_positions, 4..6);
    let held_note = es_postgres::append_in_transaction(
        &mut tx,
        &schema.name,
        StreamRef::new("Audit", "log"),
        ExpectedVersion::Exact(1),
        &[note("deposits to b")],
    )
    .unwrap();
    assert_eq!(held_note.global_positions, 6..7);

    let mut deposits = Projector::new(store.clone(), Deposits::default(), store.clone());
    let second_done = AtomicBool::new(false);
    thread::scope(|scope| {
        // The second append waits for the counter row the held transaction locked.
        let appender = scope.spawn(|| {
            let outcome = store
                .append(
                    StreamRef::new("Account", "c"),
                    ExpectedVersion::NoStream,
                    &[deposit(40)],
                )
                .unwrap();
            second_done.store(true, Ordering::SeqCst);
            outcome
        });
        thread::sleep(Duration::from_millis(300));
        assert!(
            !second_done.load(Ordering::SeqCst),
            "the second append finished while the first held the position counter"
        );

        // The catch-up stops before the held positions: it applies the committed deposit
        // and nothing after it.
        let started = Instant::now();
        let caught_up = deposits.catch_up().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the catch-up returns while the append is held"
        );
        assert_eq!(caught_up.applied, 1);
        assert!(caught_up.position < 4, "{caught_up:?}");
        assert!(store.load_checkpoint("deposits").unwrap() < 4);
        assert_eq!(positions(&deposits.read_model().applied), [2]);
        // The runner, which has polled a few hundred times by now, is still at 3.
        assert_eq!(positions(&run_applied), [2, 3]);
        assert_eq!(store.load_checkpoint("activity").unwrap(), 3);

        tx.commit().unwrap();
        let outcome = appender.join().unwrap();
        assert_eq!(
            outcome.global_positions,
            7..8,
            "committed after the held one"
        );
    });

    // Caught up again: the late events, then the one that waited for them.
    let caught_up = deposits.catch_up().unwrap();
    assert_eq!((caught_up.applied, caught_up.position), (3, 7));
    let everything = [("Account", "Deposited"), ("Audit", "Noted")];
    let want = expected(&store, &everything[..1]);
    assert_eq!(*deposits.read_model().applied.lock().unwrap(), want);
    assert_eq!(positions(&deposits.read_model().applied), [2, 4, 5, 7]);

    while store.load_checkpoint("activity").unwrap() < 7 {
        assert!(
            Instant::now() < deadline,
            "the runner follows the late commit"
        );
        thread::sleep(Duration::from_millis(2));
    }
    stop.stop();
    assert_eq!(runner.join().unwrap().unwrap(), 6);
    assert_eq!(*run_applied.lock().unwrap(), expected(&store, &everything));
    assert_eq!(positions(&run_applied), [2, 3, 4, 5, 6, 7]);
}

/// Two stores on one schema stand for two processes: while one runs the read model, the
/// other's `catch_up` is locked out; once it stops, the other resumes at its checkpoint.
#[test]
fn a_second_process_is_locked_out_then_resumes_at_the_checkpoint() {
    let Some((one, schema)) = make() else {
        return;
    };
    let two = PostgresStore::connect_with_schema(&schema.url, &schema.name).unwrap();
    let accounts = Repository::<Account, _>::new(&one);
    accounts.execute("a", |acc| acc.open("ann")).unwrap();
    for amount in [1, 2, 3] {
        accounts.execute("a", |acc| acc.deposit(amount)).unwrap();
    }
    let first = Deposits::default();
    let first_applied = first.applied.clone();
    let stop = StopHandle::new();
    let runner = {
        let (store, stop) = (one.clone(), stop.clone());
        thread::spawn(move || {
            let options = RunOptions {
                max_delay: Duration::from_millis(20),
                ..RunOptions::default()
            };
            Projector::new(store.clone(), first, store)
                .with_owner("process-one")
                .run(&stop, options)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while two.load_checkpoint("deposits").unwrap() < 4 {
        assert!(Instant::now() < deadline, "the first process catches up");
        thread::sleep(Duration::from_millis(5));
    }
    let mut second =
        Projector::new(two.clone(), Deposits::default(), two.clone()).with_owner("process-two");
    match second.catch_up() {
        Err(ProjectionError::Locked { owner, until, .. }) => {
            assert_eq!(owner, "process-one");
            assert!(until > std::time::SystemTime::now(), "{until:?}");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    stop.stop();
    assert_eq!(runner.join().unwrap().unwrap(), 3);
    assert_eq!(positions(&first_applied), [2, 3, 4]);

    Repository::<Account, _>::new(&two)
        .execute("a", |acc| acc.deposit(4))
        .unwrap();
    let caught_up = second.catch_up().unwrap();
    assert_eq!((caught_up.applied, caught_up.position), (1, 5));
    assert_eq!(
        positions(&second.read_model().applied),
        [5],
        "only what followed the first process's checkpoint"
    );
    assert_eq!(one.load_checkpoint("deposits").unwrap(), 5);
}
