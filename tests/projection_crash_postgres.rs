//! Exactly-once projection on PostgreSQL: a read model kept in the event store's database,
//! whose writes and checkpoint are committed in one transaction (`es_postgres::ExactlyOnce`),
//! applies every event exactly once however often its projector is killed, and an instance
//! that lost its lease, or whose read model is behind the stored checkpoint, writes nothing.
//!
//! The kill tests re-run this test binary as a child process (the ignored
//! `projector_child` test, which only works when `ES_PROJECTION_PG_SCHEMA` is set; with
//! `ES_PROJECTION_PG_ASYNC` set it projects with the async projector and
//! `es_postgres::AsyncExactlyOnce`). The child projects the log in small batches, pausing inside each transaction after the read
//! model's rows are written and before the checkpoint is, so that kills often land between
//! the two. The parent appends more events between rounds, kills the child with SIGKILL
//! after a random delay, and checks the database: every handled event up to the checkpoint
//! is in the read model's table exactly once, and none after it. At the end a last child
//! runs to the end of the log and every event is there exactly once.
//!
//! Needs a server: set `ES_POSTGRES_URL` (e.g. `eval "$(bash .ci/postgres.sh)"`). Without
//! it the tests are skipped with a message, except under CI (`CI` set), where they fail.
//! Every test works in a fresh schema, dropped afterwards.

use std::thread;
use std::time::{Duration, Instant};

use es_core::{
    Aggregate, AsyncCheckpointer, AsyncProjector, CheckpointStore, Checkpointer, Event,
    EventRecord, EventStore, ExpectedVersion, Lease, Metadata, NewEvent, ProjectionError,
    Projector, StoreError, StreamRef, applies, read_model,
};
use es_postgres::postgres::{Client, IsolationLevel, Transaction};
use es_postgres::{
    AsyncExactlyOnce, AsyncPostgresReadModel, AsyncPostgresStore, CommitRefused, ExactlyOnce,
    PostgresReadModel, PostgresStore,
};
use serde::{Deserialize, Serialize};

use es_store_tests::crash::{self as kill, Lcg};

#[path = "support/postgres.rs"]
mod support;
use support::{Schema, url};

/// Kill rounds.
const ROUNDS: u64 = 30;
/// Events appended before each round (one in three is not handled by the read model).
const EVENTS_PER_ROUND: u64 = 60;
/// What the child prints once it has connected and starts projecting.
const READY: &str = "es-projection-ready";
/// The environment variable naming the child's schema.
const CHILD_SCHEMA: &str = "ES_PROJECTION_PG_SCHEMA";
/// Set for a child that projects with the async projector and `AsyncExactlyOnce`.
const CHILD_ASYNC: &str = "ES_PROJECTION_PG_ASYNC";
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

/// Rows to write: (global position, n), into tables of `schema`. Written and forgotten by
/// `write`; a reset forgets them (and keeps the schema).
#[derive(Debug, Default)]
struct Counted {
    schema: String,
    pending: Vec<(u64, u64)>,
}

impl Counted {
    fn new(schema: &str) -> Self {
        Self {
            schema: schema.to_owned(),
            pending: Vec::new(),
        }
    }

    fn forget(&mut self) {
        self.pending.clear();
    }
}

#[read_model(name = "crash-counter", from = Ticker, reset = Counted::forget)]
impl Counted {
    fn ticked(&mut self, e: &Ticked, record: &EventRecord<'_>) {
        self.pending.push((record.global_position, e.n));
    }
}

impl PostgresReadModel for Counted {
    fn write(&mut self, tx: &mut Transaction<'_>) -> Result<(), es_postgres::postgres::Error> {
        let s = &self.schema;
        let insert = tx.prepare(&format!(
            "INSERT INTO \"{s}\".rm_ticks (position, n) VALUES ($1, $2)"
        ))?;
        for (position, n) in self.pending.drain(..) {
            tx.execute(&insert, &[&(position as i64), &(n as i64)])?;
        }
        tx.execute(
            &format!("UPDATE \"{s}\".rm_total SET count = (SELECT count(*) FROM \"{s}\".rm_ticks)"),
            &[],
        )?;
        // Between the read model's rows and the checkpoint: where a kill hurts most.
        thread::sleep(Duration::from_millis(2));
        Ok(())
    }

    fn clear(&mut self, tx: &mut Transaction<'_>) -> Result<(), es_postgres::postgres::Error> {
        let s = &self.schema;
        tx.batch_execute(&format!(
            "DELETE FROM \"{s}\".rm_ticks; UPDATE \"{s}\".rm_total SET count = 0;"
        ))
    }
}

fn create_tables(client: &mut Client, s: &str) {
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS \"{s}\".rm_ticks (position bigint NOT NULL, n bigint NOT NULL);
             CREATE TABLE IF NOT EXISTS \"{s}\".rm_total (count bigint NOT NULL);
             INSERT INTO \"{s}\".rm_total (count) SELECT 0
                 WHERE NOT EXISTS (SELECT 1 FROM \"{s}\".rm_total);"
        ))
        .expect("create the read model's tables");
}

/// A store in a fresh schema with the read model's tables, a client for checking them, and
/// the schema's guard.
fn setup(url: String) -> (PostgresStore, Client, Schema) {
    let guard = Schema::new(&url, "es_crash");
    let store =
        PostgresStore::connect_with_schema(&url, &guard.name).expect("connect to PostgreSQL");
    let mut client = es_postgres::connect_client(&url).expect("connect a checking client");
    create_tables(&mut client, &guard.name);
    (store, client, guard)
}

/// The child: project until the end of the log, then exit (or be killed first).
#[test]
#[ignore = "child process of `exactly_once_under_sigkill`"]
fn projector_child() {
    let Ok(name) = std::env::var(CHILD_SCHEMA) else {
        return;
    };
    let url = std::env::var("ES_POSTGRES_URL").expect("the parent passes ES_POSTGRES_URL");
    if std::env::var_os(CHILD_ASYNC).is_some() {
        return async_projector_child(&url, &name);
    }
    let store = PostgresStore::connect_with_schema(&url, &name).expect("the child connects");
    let checkpoints = ExactlyOnce::connect(&store).expect("a connection for the read model");
    let mut projector = Projector::new(store.clone(), Counted::new(&name), checkpoints)
        .with_batch_size(5)
        // Every child is the same instance restarted: it takes its own lease back at once,
        // where another owner would wait for the killed child's lease to expire.
        .with_owner("crash-child");
    println!("{READY}");
    loop {
        match projector.catch_up() {
            Ok(_) => return,
            // The previous (killed) child's lease has not expired yet.
            Err(ProjectionError::Locked { .. }) => thread::sleep(Duration::from_millis(20)),
            Err(error) => panic!("the projector failed: {error}"),
        }
    }
}

/// The async child: the same, with [`AsyncProjector`] and [`AsyncExactlyOnce`].
fn async_projector_child(url: &str, name: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = AsyncPostgresStore::connect_with_schema(url, name)
            .await
            .expect("the child connects");
        let mut projector = AsyncProjector::new(
            store.clone(),
            AsyncCounted::new(name),
            AsyncExactlyOnce::new(&store),
        )
        .with_batch_size(5)
        .with_owner("crash-child");
        println!("{READY}");
        loop {
            match projector.catch_up().await {
                Ok(_) => return,
                Err(ProjectionError::Locked { .. }) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(error) => panic!("the projector failed: {error}"),
            }
        }
    });
}

/// Starts a child (an async one if `async_child`); returns it once it is projecting.
fn spawn_child(url: &str, schema: &str, async_child: bool) -> std::process::Child {
    let mut env = vec![(CHILD_SCHEMA, schema), ("ES_POSTGRES_URL", url)];
    if async_child {
        env.push((CHILD_ASYNC, "1"));
    }
    kill::spawn_child("projector_child", &env, READY)
}

/// The positions in the read model's table, in order.
fn rows(client: &mut Client, schema: &str) -> Vec<u64> {
    client
        .query(
            &format!("SELECT position FROM \"{schema}\".rm_ticks ORDER BY position"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get::<_, i64>(0) as u64)
        .collect()
}

/// Checks the database: the read model holds exactly the handled events up to its
/// checkpoint, each once. Returns the checkpoint and the number of rows.
///
/// The checkpoint, the rows and the total are read in one `REPEATABLE READ` snapshot: a
/// killed child's `COMMIT` may still land on the server after the kill (it was sent
/// before), and must not land between the reads.
fn check(store: &PostgresStore, client: &mut Client) -> (u64, u64) {
    let s = store.schema();
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .unwrap();
    let checkpoint = tx
        .query_opt(
            &format!("SELECT position FROM \"{s}\".es_checkpoints WHERE name = $1"),
            &[&NAME],
        )
        .unwrap()
        .map_or(0, |row| row.get::<_, i64>(0) as u64);
    let found: Vec<u64> = tx
        .query(
            &format!("SELECT position FROM \"{s}\".rm_ticks ORDER BY position"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get::<_, i64>(0) as u64)
        .collect();
    let total: i64 = tx
        .query_one(&format!("SELECT count FROM \"{s}\".rm_total"), &[])
        .unwrap()
        .get(0);
    tx.commit().unwrap();
    let expected: Vec<u64> = es_store_tests::read_everything(store)
        .into_iter()
        .filter(|event| event.event_type == "Ticked" && event.global_position <= checkpoint)
        .map(|event| event.global_position)
        .collect();
    assert_eq!(
        found, expected,
        "every handled event up to checkpoint {checkpoint} is applied exactly once"
    );
    assert_eq!(
        total as usize,
        found.len(),
        "the total agrees with the rows"
    );
    (checkpoint, found.len() as u64)
}

/// Appends `count` events to stream `t{round % 3}`, numbered from `first`; one in three
/// is not handled by the read model.
fn append_events(store: &PostgresStore, round: u64, first: u64, count: u64) {
    let stream_id = format!("t{}", round % 3);
    let stream = StreamRef::new("Ticker", &stream_id);
    let events: Vec<NewEvent> = (first..first + count)
        .map(|n| {
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
    if let Some(url) = url() {
        sigkill_rounds(&url, false);
    }
}

/// The same with the async projector and [`AsyncExactlyOnce`] in the child.
#[test]
fn async_exactly_once_under_sigkill() {
    if let Some(url) = url() {
        sigkill_rounds(&url, true);
    }
}

/// Kills a child projecting into a fresh schema [`ROUNDS`] times, checking the tables
/// after each kill, then lets a last child run to the end.
fn sigkill_rounds(url: &str, async_child: bool) {
    let url = url.to_owned();
    let started = Instant::now();
    let seed = Lcg::seed();
    eprintln!("seed {seed}");
    let mut random = Lcg::new(seed);
    let (store, mut client, schema) = setup(url.clone());

    let mut killed_mid_log = 0;
    let mut last_checkpoint = 0;
    for round in 0..ROUNDS {
        append_events(&store, round, round * EVENTS_PER_ROUND, EVENTS_PER_ROUND);
        let mut child = spawn_child(&url, &schema.name, async_child);
        thread::sleep(Duration::from_millis(2 + random.next(80)));
        child.kill().expect("SIGKILL the child"); // `kill` sends SIGKILL on Unix.
        child.wait().unwrap();
        let (checkpoint, rows) = check(&store, &mut client);
        assert!(
            checkpoint >= last_checkpoint,
            "the checkpoint never goes back"
        );
        if checkpoint < (round + 1) * EVENTS_PER_ROUND {
            killed_mid_log += 1;
        }
        last_checkpoint = checkpoint;
        eprintln!("round {round} (async: {async_child}): checkpoint {checkpoint}, {rows} rows");
    }
    // A last child runs to the end of the log.
    let mut child = spawn_child(&url, &schema.name, async_child);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "the last child finishes: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "the last child finishes in time");
        thread::sleep(Duration::from_millis(20));
    }
    let (checkpoint, rows) = check(&store, &mut client);
    let handled = ROUNDS * EVENTS_PER_ROUND * 2 / 3;
    assert_eq!(rows, handled, "every handled event applied exactly once");
    // The checkpoint is the last handled event's position (the last event is not handled).
    assert_eq!(checkpoint, ROUNDS * EVENTS_PER_ROUND - 1, "the whole log");
    assert!(
        killed_mid_log >= ROUNDS / 4,
        "most kills landed before the child had caught up ({killed_mid_log} of {ROUNDS})"
    );
    eprintln!(
        "PostgreSQL projection crash test (async: {async_child}): {killed_mid_log} of {ROUNDS} kills mid-log, {:?}",
        started.elapsed()
    );
}

/// The [`CommitRefused`] inside a failed commit's store error.
fn refusal(error: &StoreError) -> &CommitRefused {
    let StoreError::Backend(inner) = error else {
        panic!("expected a backend error, got {error:?}");
    };
    inner
        .downcast_ref::<CommitRefused>()
        .unwrap_or_else(|| panic!("expected CommitRefused, got {inner}"))
}

/// Two instances: the first takes the lease, applies an event and stalls past its lease;
/// the second takes the lease over and commits. The first's commit then fails, naming the
/// new holder, and writes nothing; the projector would resume from the position the second
/// stored. After the second releases the lease, the first still may not write.
#[test]
fn an_instance_that_lost_its_lease_writes_nothing() {
    let Some(url) = url() else {
        return;
    };
    let (store, mut client, schema) = setup(url);
    let s = schema.name.as_str();
    append_events(&store, 0, 0, 2);
    let mut one = ExactlyOnce::connect(&store).expect("connect the first instance");
    let mut two = ExactlyOnce::connect(&store).expect("connect the second instance");
    let (mut model_one, mut model_two) = (Counted::new(s), Counted::new(s));

    let short =
        Checkpointer::<Counted>::acquire_lease(&mut one, NAME, "one", Duration::from_millis(200))
            .unwrap();
    assert!(matches!(short, Lease::Acquired { .. }), "{short:?}");
    assert_eq!(one.load(&mut model_one).unwrap(), 0);
    model_one.pending.push((1, 0));
    // The first instance stalls past its lease; the second takes over and commits.
    thread::sleep(Duration::from_millis(400));
    let taken =
        Checkpointer::<Counted>::acquire_lease(&mut two, NAME, "two", Duration::from_secs(60))
            .unwrap();
    assert!(matches!(taken, Lease::Acquired { .. }), "{taken:?}");
    assert_eq!(two.load(&mut model_two).unwrap(), 0);
    model_two.pending.push((1, 0));
    two.commit(&mut model_two, 1).expect("the holder commits");

    let error = one
        .commit(&mut model_one, 1)
        .expect_err("the stalled instance's commit is refused");
    match refusal(&error) {
        CommitRefused::LeaseLost { owner, holder, .. } => {
            assert_eq!(owner.as_deref(), Some("one"));
            assert_eq!(holder.as_deref(), Some("two"));
        }
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    assert!(error.to_string().contains("`two`"), "{error}");
    assert_eq!(
        rows(&mut client, s),
        [1],
        "the stalled instance wrote nothing"
    );
    assert_eq!(store.load_checkpoint(NAME).unwrap(), 1);
    assert_eq!(
        one.after_failed_commit(&mut model_one, 0, 1),
        1,
        "it would resume from the position stored by the new holder"
    );
    assert!(model_one.pending.is_empty(), "what it gathered is dropped");

    // Released by the second instance: still not the first's to write.
    Checkpointer::<Counted>::release_lease(&mut two, NAME, "two").unwrap();
    model_one.pending.push((2, 1));
    let error = one
        .commit(&mut model_one, 2)
        .expect_err("a lease taken over and released is still lost");
    assert!(
        matches!(
            refusal(&error),
            CommitRefused::LeaseLost { holder: None, .. }
        ),
        "{error}"
    );
    assert_eq!(rows(&mut client, s), [1]);
    assert_eq!(store.load_checkpoint(NAME).unwrap(), 1);
}

/// A projector whose in-memory position fell behind the stored checkpoint (another
/// instance projected meanwhile, as after a lost commit reply) does not apply the events
/// in between again: its commit is refused with `CheckpointMoved`, it resumes from the
/// stored position, and every event ends up in the table exactly once.
#[test]
fn a_projector_behind_the_stored_checkpoint_applies_nothing_twice() {
    let Some(url) = url() else {
        return;
    };
    let (store, mut client, _schema) = setup(url);
    append_events(&store, 0, 0, 6);
    let mut first = Projector::new(
        store.clone(),
        Counted::new(store.schema()),
        ExactlyOnce::connect(&store).unwrap(),
    )
    .with_owner("first");
    // Positions 1 to 6 hold n = 0 to 5, of which n = 2 and 5 are not handled: the
    // checkpoint is the last handled event's position, 5.
    assert_eq!(first.catch_up().unwrap().position, 5);

    // Another instance projects the next events (the first gave the lease up).
    append_events(&store, 0, 6, 6);
    let mut second = Projector::new(
        store.clone(),
        Counted::new(store.schema()),
        ExactlyOnce::connect(&store).unwrap(),
    )
    .with_owner("second");
    assert_eq!(second.catch_up().unwrap().position, 11);
    drop(second);

    // The first, still at 5 in memory, is refused, then resumes from 11.
    append_events(&store, 0, 12, 6);
    match first.catch_up() {
        Err(ProjectionError::Store { cause, .. }) => match refusal(&cause) {
            CommitRefused::CheckpointMoved {
                expected, stored, ..
            } => assert_eq!((*expected, *stored), (5, 11)),
            other => panic!("expected CheckpointMoved, got {other:?}"),
        },
        other => panic!("expected the commit to be refused, got {other:?}"),
    }
    let resumed = first.catch_up().unwrap();
    assert_eq!(resumed.position, 17);
    let (checkpoint, count) = check(&store, &mut client);
    assert_eq!(
        (checkpoint, count),
        (17, 12),
        "each handled event exactly once"
    );
}

/// A rebuild clears the tables and the checkpoint in one transaction, and replays the log.
#[test]
fn a_rebuild_clears_the_tables_and_replays() {
    let Some(url) = url() else {
        return;
    };
    let (store, mut client, _schema) = setup(url);
    append_events(&store, 0, 0, 9);
    let mut projector = Projector::new(
        store.clone(),
        Counted::new(store.schema()),
        ExactlyOnce::connect(&store).unwrap(),
    )
    .with_batch_size(4);
    projector.catch_up().unwrap();
    assert_eq!(check(&store, &mut client), (8, 6));
    projector.rebuild(|_| {}).unwrap();
    assert_eq!(
        check(&store, &mut client),
        (8, 6),
        "replayed once, not added"
    );
}

/// The read model of [`Counted`], written with tokio-postgres for [`AsyncExactlyOnce`].
#[derive(Debug, Default)]
struct AsyncCounted {
    schema: String,
    pending: Vec<(u64, u64)>,
}

impl AsyncCounted {
    fn new(schema: &str) -> Self {
        Self {
            schema: schema.to_owned(),
            pending: Vec::new(),
        }
    }

    fn forget(&mut self) {
        self.pending.clear();
    }
}

#[read_model(name = "crash-counter", from = Ticker, reset = AsyncCounted::forget)]
impl AsyncCounted {
    fn ticked(&mut self, e: &Ticked, record: &EventRecord<'_>) {
        self.pending.push((record.global_position, e.n));
    }
}

impl AsyncPostgresReadModel for AsyncCounted {
    async fn write(
        &mut self,
        tx: &es_postgres::tokio_postgres::Transaction<'_>,
    ) -> Result<(), es_postgres::tokio_postgres::Error> {
        let s = &self.schema;
        let insert = tx
            .prepare(&format!(
                "INSERT INTO \"{s}\".rm_ticks (position, n) VALUES ($1, $2)"
            ))
            .await?;
        for (position, n) in std::mem::take(&mut self.pending) {
            tx.execute(&insert, &[&(position as i64), &(n as i64)])
                .await?;
        }
        tx.execute(
            &format!("UPDATE \"{s}\".rm_total SET count = (SELECT count(*) FROM \"{s}\".rm_ticks)"),
            &[],
        )
        .await?;
        // Between the read model's rows and the checkpoint: where a kill hurts most.
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(())
    }

    async fn clear(
        &mut self,
        tx: &es_postgres::tokio_postgres::Transaction<'_>,
    ) -> Result<(), es_postgres::tokio_postgres::Error> {
        let s = &self.schema;
        tx.batch_execute(&format!(
            "DELETE FROM \"{s}\".rm_ticks; UPDATE \"{s}\".rm_total SET count = 0;"
        ))
        .await
    }
}

/// [`AsyncExactlyOnce`] under an [`AsyncProjector`]: every handled event is in the table
/// exactly once with the checkpoint; a projector behind the stored checkpoint is refused
/// and resumes from it; a rebuild replays once; an instance that lost its lease writes
/// nothing. (The sync client checks the tables between `block_on`s, outside the runtime.)
#[test]
fn async_exactly_once_commits_with_the_checkpoint_and_fences() {
    let Some(url) = url() else {
        return;
    };
    let (sync_store, mut client, schema) = setup(url.clone());
    let s = schema.name.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = runtime
        .block_on(AsyncPostgresStore::connect_with_schema(&url, &s))
        .expect("connect the async store");
    let projector = |owner: &str| {
        AsyncProjector::new(
            store.clone(),
            AsyncCounted::new(&s),
            AsyncExactlyOnce::new(&store),
        )
        .with_batch_size(4)
        .with_owner(owner)
    };

    append_events(&sync_store, 0, 0, 6);
    let mut first = projector("first");
    let caught_up = runtime.block_on(first.catch_up()).unwrap();
    assert_eq!(caught_up.position, 5);
    assert_eq!(check(&sync_store, &mut client), (5, 4));

    // Another instance projects the next events; the first, behind it, is refused once.
    append_events(&sync_store, 0, 6, 6);
    let mut second = projector("second");
    assert_eq!(runtime.block_on(second.catch_up()).unwrap().position, 11);
    append_events(&sync_store, 0, 12, 6);
    match runtime.block_on(first.catch_up()) {
        Err(ProjectionError::Store { cause, .. }) => match refusal(&cause) {
            CommitRefused::CheckpointMoved {
                expected, stored, ..
            } => assert_eq!((*expected, *stored), (5, 11)),
            other => panic!("expected CheckpointMoved, got {other:?}"),
        },
        other => panic!("expected the commit to be refused, got {other:?}"),
    }
    assert_eq!(runtime.block_on(first.catch_up()).unwrap().position, 17);
    assert_eq!(check(&sync_store, &mut client), (17, 12));
    runtime.block_on(first.rebuild(|_| {})).unwrap();
    assert_eq!(check(&sync_store, &mut client), (17, 12), "replayed once");

    // An instance that stalled past its lease while another took over writes nothing.
    let refused = runtime.block_on(async {
        let (mut one, mut two) = (AsyncExactlyOnce::new(&store), AsyncExactlyOnce::new(&store));
        let (mut model_one, mut model_two) = (AsyncCounted::new(&s), AsyncCounted::new(&s));
        let short = Duration::from_millis(200);
        let lease = AsyncCheckpointer::<AsyncCounted>::acquire_lease(&mut one, NAME, "one", short)
            .await
            .unwrap();
        assert!(matches!(lease, Lease::Acquired { .. }), "{lease:?}");
        assert_eq!(one.load(&mut model_one).await.unwrap(), 17);
        model_one.pending.push((19, 18));
        tokio::time::sleep(Duration::from_millis(400)).await;
        let long = Duration::from_secs(60);
        let lease = AsyncCheckpointer::<AsyncCounted>::acquire_lease(&mut two, NAME, "two", long)
            .await
            .unwrap();
        assert!(matches!(lease, Lease::Acquired { .. }), "{lease:?}");
        assert_eq!(two.load(&mut model_two).await.unwrap(), 17);
        one.commit(&mut model_one, 19).await.expect_err("refused")
    });
    match refusal(&refused) {
        CommitRefused::LeaseLost { owner, holder, .. } => {
            assert_eq!(owner.as_deref(), Some("one"));
            assert_eq!(holder.as_deref(), Some("two"));
        }
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    assert_eq!(check(&sync_store, &mut client), (17, 12), "nothing written");
}
