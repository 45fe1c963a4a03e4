//! `AsyncProjector`: the read models of `tests/read_models.rs` fed by the async projector,
//! inside `tokio::spawn` on a multi-threaded runtime (its futures are `Send`): catch-up
//! with checkpoints, a handler error and the retry that resumes at it, a rebuild with
//! progress, the lease shared with a second instance, and `run` following new events,
//! woken early by `StopHandle::wake`; on the in-memory store, SQLite and PostgreSQL
//! (when `ES_POSTGRES_URL` is set).

use std::time::{Duration, Instant};

use es_core::{
    Aggregate, AsyncCheckpointStore, AsyncEventStore, AsyncProjector, AsyncRepository, Event,
    EventRecord, InMemoryStore, ProjectionError, RunOptions, StopHandle, applies, read_model,
};
use es_sqlite::AsyncSqliteStore;
use serde::{Deserialize, Serialize};

#[path = "support/postgres.rs"]
mod support;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Opened {
    owner: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Deposited {
    amount: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Noted {
    text: String,
}

#[derive(Debug, Default, Aggregate)]
struct Account {
    balance: u64,
}

#[applies]
impl Account {
    fn opened(&mut self, _: &Opened) {}
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }
    fn noted(&mut self, _: &Noted) {}
}

/// Deposits per account, and the positions applied (to see each event once, in order);
/// refuses deposits above `refuse_above` until told otherwise.
#[derive(Debug, Default)]
struct Balances {
    owners: Vec<String>,
    total: u64,
    positions: Vec<u64>,
    refuse_above: Option<u64>,
}

#[read_model(from = Account, name = "async-balances")]
impl Balances {
    fn opened(&mut self, e: &Opened, record: &EventRecord<'_>) {
        self.owners.push(e.owner.clone());
        self.positions.push(record.global_position);
    }
    fn deposited(&mut self, e: &Deposited, record: &EventRecord<'_>) -> Result<(), String> {
        if self.refuse_above.is_some_and(|limit| e.amount > limit) {
            return Err(format!("deposit of {} refused", e.amount));
        }
        self.total += e.amount;
        self.positions.push(record.global_position);
        Ok(())
    }
}

/// What every store under test is.
trait Store: AsyncEventStore + AsyncCheckpointStore + Clone + 'static {}
impl<S: AsyncEventStore + AsyncCheckpointStore + Clone + 'static> Store for S {}

/// Opens `owner`'s account `id` and deposits `amounts`, with a note (not handled) after
/// each deposit.
async fn fill<S: Store>(store: &S, id: &str, owner: &str, amounts: &[u64]) {
    let repo = AsyncRepository::<Account, _>::new(store.clone());
    let owner = owner.to_owned();
    repo.execute_infallible(id, move |_: &Account| Opened {
        owner: owner.clone(),
    })
    .await
    .unwrap();
    for &amount in amounts {
        repo.execute_infallible(id, move |_: &Account| Deposited { amount })
            .await
            .unwrap();
        repo.execute_infallible(id, |_: &Account| Noted { text: "n".into() })
            .await
            .unwrap();
    }
}

/// Catch-up applies each handled event once, in order, skipping the notes, and keeps its
/// checkpoint; a handler error stops at its event and a retry resumes there; a rebuild
/// replays everything with progress reports.
async fn catch_up_case<S: Store>(store: S) {
    fill(&store, "a", "ada", &[5, 7]).await;
    fill(&store, "b", "bob", &[500, 1]).await;
    let refusing = Balances {
        refuse_above: Some(100),
        ..Balances::default()
    };
    let checkpoints = store.clone();
    let (projector, error) = tokio::spawn(async move {
        let mut projector =
            AsyncProjector::new(store.clone(), refusing, checkpoints).with_batch_size(2);
        let error = projector.catch_up().await.unwrap_err();
        (projector, error)
    })
    .await
    .unwrap();
    match &error {
        ProjectionError::Handler {
            read_model,
            event_type,
            global_position,
            ..
        } => {
            assert_eq!(*read_model, "async-balances");
            assert_eq!(event_type, "Deposited");
            assert_eq!(*global_position, 7, "bob's deposit of 500");
        }
        other => panic!("expected a handler error, got {other:?}"),
    }
    assert!(
        error.to_string().contains("deposit of 500 refused"),
        "{error}"
    );
    let mut projector = projector;
    assert_eq!(
        projector
            .checkpoints()
            .load_checkpoint("async-balances")
            .await
            .unwrap(),
        6,
        "committed up to the event before the failure"
    );
    projector.read_model_mut().refuse_above = None;
    let done = projector.catch_up().await.unwrap();
    assert_eq!((done.applied, done.position), (2, 9));
    let balances = projector.read_model();
    assert_eq!(balances.owners, ["ada", "bob"]);
    assert_eq!(balances.total, 513);
    assert_eq!(
        balances.positions,
        [1, 2, 4, 6, 7, 9],
        "each handled event once"
    );
    assert_eq!(projector.catch_up().await.unwrap().applied, 0);

    let mut reports = Vec::new();
    let rebuilt = projector
        .rebuild(|progress| reports.push((progress.done, progress.total)))
        .await
        .unwrap();
    assert_eq!((rebuilt.applied, rebuilt.position), (6, 9));
    assert_eq!(
        projector.read_model().total,
        513,
        "the model was reset first"
    );
    assert_eq!(reports.last(), Some(&(10, 10)), "{reports:?}");
    assert!(reports.windows(2).all(|w| w[0].0 <= w[1].0), "{reports:?}");
}

/// `run` follows new events until stopped; with pauses far longer than the test, a
/// `wake` is what gets an appended event applied. A second instance is locked out while
/// the first runs, and takes over once it stopped.
async fn run_case<S: Store>(store: S) {
    fill(&store, "a", "ada", &[1]).await;
    let stop = StopHandle::new();
    let slow = RunOptions {
        min_delay: Duration::from_secs(600),
        max_delay: Duration::from_secs(600),
        ..RunOptions::default()
    };
    let running = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut projector =
                AsyncProjector::new(store.clone(), Balances::default(), store).with_owner("one");
            let applied = projector.run(&stop, slow).await;
            (applied, projector.into_read_model().await)
        })
    };
    // Read by type (one aggregate type): the checkpoint is the last handled event's.
    wait_for_checkpoint(&store, 2).await;

    let mut second =
        AsyncProjector::new(store.clone(), Balances::default(), store.clone()).with_owner("two");
    match second.catch_up().await {
        Err(ProjectionError::Locked { owner, .. }) => assert_eq!(owner, "one"),
        other => panic!("the lease is held by the running instance: {other:?}"),
    }

    fill(&store, "b", "bob", &[10]).await;
    stop.wake();
    wait_for_checkpoint(&store, 5).await;
    stop.stop();
    let (applied, balances) = running.await.unwrap();
    assert_eq!(applied.unwrap(), 4);
    assert_eq!(balances.total, 11);
    assert_eq!(balances.positions, [1, 2, 4, 5]);

    // It takes over from the checkpoint the first instance committed.
    let done = second.catch_up().await.expect("the lease was released");
    assert_eq!((done.applied, done.position), (0, 5));
    fill(&store, "c", "cyd", &[100]).await;
    let done = second.catch_up().await.unwrap();
    assert_eq!((done.applied, done.position), (2, 8));
}

/// Waits (up to 30 s) until the checkpoint of the balances reaches `position`.
async fn wait_for_checkpoint<S: Store>(store: &S, position: u64) {
    let started = Instant::now();
    loop {
        let at = store.load_checkpoint("async-balances").await.unwrap();
        if at >= position {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the projector did not reach position {position} (at {at})"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_catch_up_errors_and_rebuild() {
    catch_up_case(InMemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_run_wake_and_lease() {
    run_case(InMemoryStore::new()).await;
}

async fn sqlite() -> (AsyncSqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = AsyncSqliteStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    (store, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_catch_up_errors_and_rebuild() {
    let (store, _dir) = sqlite().await;
    catch_up_case(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_run_wake_and_lease() {
    let (store, _dir) = sqlite().await;
    run_case(store).await;
}

async fn postgres() -> Option<(es_postgres::AsyncPostgresStore, support::Schema)> {
    let url = support::url()?;
    let name = support::fresh_schema();
    let store = es_postgres::AsyncPostgresStore::connect_with_schema(&url, &name)
        .await
        .expect("connect to PostgreSQL");
    Some((store, support::Schema { url, name }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_catch_up_errors_and_rebuild() {
    let Some((store, _schema)) = postgres().await else {
        return;
    };
    catch_up_case(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_run_wake_and_lease() {
    let Some((store, _schema)) = postgres().await else {
        return;
    };
    run_case(store).await;
}
