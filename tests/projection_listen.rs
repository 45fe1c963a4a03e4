//! PostgreSQL wake-ups: a projector that pauses far longer than the test between polls
//! applies new events at once when a `Listener` hears the notification their append
//! commits, from the store, from another store on the same schema and from
//! `append_in_transaction`; appends to another schema do not wake it; and a listening
//! connection the server terminates is opened again, after which wake-ups go on.
//!
//! Needs a server: set `ES_POSTGRES_URL`. Without it the tests are skipped with a message,
//! except under CI (`CI` set), where they fail.

use std::thread;
use std::time::{Duration, Instant};

use es_core::{
    Aggregate, AsyncProjector, CheckpointStore, Event, ExpectedVersion, Metadata, NewEvent,
    Projector, Repository, RunOptions, StopHandle, StreamRef, applies, read_model,
};
use es_postgres::{AsyncPostgresStore, PostgresStore};
use serde::{Deserialize, Serialize};

#[path = "support/postgres.rs"]
mod support;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Pinged {
    n: u64,
}

#[derive(Debug, Default, Aggregate)]
struct Pinger {
    last: u64,
}

#[applies]
impl Pinger {
    fn pinged(&mut self, e: &Pinged) {
        self.last = e.n;
    }
}

#[derive(Debug, Default)]
struct Pings {
    seen: Vec<u64>,
}

#[read_model(from = Pinger, name = "pings")]
impl Pings {
    fn pinged(&mut self, e: &Pinged) {
        self.seen.push(e.n);
    }
}

/// Polls so rarely that only a wake-up gets an event applied within the test.
const NEVER: RunOptions = RunOptions {
    min_delay: Duration::from_secs(600),
    max_delay: Duration::from_secs(600),
    max_store_failures: 10,
};

fn ping(store: &PostgresStore, id: &str, n: u64) {
    Repository::<Pinger, _>::new(store.clone())
        .execute_infallible(id, move |_: &Pinger| Pinged { n })
        .unwrap();
}

/// Waits up to 20 s for the checkpoint of `pings` to reach `position`.
fn wait_for(store: &PostgresStore, position: u64) {
    let started = Instant::now();
    loop {
        let at = store.load_checkpoint("pings").unwrap();
        if at >= position {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no wake-up: the projector is at {at}, not {position}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Terminates the server sessions that listen on this database.
fn terminate_listeners(url: &str) -> u64 {
    let mut client = es_postgres::connect_client(url).unwrap();
    let rows = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE query = 'LISTEN es_events' AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap();
    rows.len() as u64
}

#[test]
fn a_listener_wakes_a_sync_projector_at_each_commit_and_survives_a_lost_connection() {
    let Some(url) = support::url() else { return };
    let schema = support::Schema::new(&url, "listen");
    let store = PostgresStore::connect_with_schema(&url, &schema.name).unwrap();
    let other = support::Schema::new(&url, "listen_other");
    let elsewhere = PostgresStore::connect_with_schema(&url, &other.name).unwrap();

    let stop = StopHandle::new();
    let listener = store.listen(&stop).unwrap();
    let running = {
        let (store, stop) = (store.clone(), stop.clone());
        thread::spawn(move || {
            let mut projector = Projector::new(store.clone(), Pings::default(), store);
            let applied = projector.run(&stop, NEVER);
            (applied, projector.into_read_model())
        })
    };
    // The first poll happens at once; then it sleeps for ten minutes unless woken.
    ping(&store, "a", 1);
    wait_for(&store, 1);

    ping(&store, "a", 2);
    wait_for(&store, 2);

    // Another store on the schema, and a transaction of the user's own, notify too.
    let second = PostgresStore::connect_with_schema(&url, &schema.name).unwrap();
    ping(&second, "b", 3);
    wait_for(&store, 3);
    let mut client = es_postgres::connect_client(&url).unwrap();
    let mut tx = client.transaction().unwrap();
    let event = NewEvent::new("Pinged", 1, serde_json::json!({ "n": 4 }), Metadata::new());
    es_postgres::append_in_transaction(
        &mut tx,
        &schema.name,
        StreamRef::new("Pinger", "c"),
        ExpectedVersion::NoStream,
        &[event],
    )
    .unwrap();
    tx.commit().unwrap();
    wait_for(&store, 4);

    // An append to another schema is not for this projector: it stays where it is.
    ping(&elsewhere, "z", 99);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(store.load_checkpoint("pings").unwrap(), 4);

    // The server drops the listening session: the listener connects again and goes on.
    assert!(
        terminate_listeners(&url) >= 1,
        "the listener's session was found"
    );
    let started = Instant::now();
    loop {
        ping(&store, "a", 100 + started.elapsed().as_millis() as u64);
        let head = store.load_checkpoint("pings").unwrap();
        if head >= 5 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no wake-up after the listening connection was lost"
        );
        thread::sleep(Duration::from_millis(200));
    }
    assert!(listener.is_running());

    stop.stop();
    let (applied, pings) = running.join().unwrap();
    assert!(applied.unwrap() >= 5);
    assert_eq!(&pings.seen[..4], [1, 2, 3, 4], "in order, each once");
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_wakes_an_async_projector() {
    let Some(url) = support::url() else { return };
    let schema = support::Schema::new(&url, "listen_async");
    let store = AsyncPostgresStore::connect_with_schema(&url, &schema.name)
        .await
        .unwrap();
    let sync = {
        let (url, name) = (url.clone(), schema.name.clone());
        tokio::task::spawn_blocking(move || PostgresStore::connect_with_schema(&url, &name))
            .await
            .unwrap()
            .unwrap()
    };

    let stop = StopHandle::new();
    let listener = store.listen(&stop).await.unwrap();
    let running = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut projector = AsyncProjector::new(store.clone(), Pings::default(), store);
            let applied = projector.run(&stop, NEVER).await;
            (applied, projector.into_read_model().await)
        })
    };
    for n in 1..=3 {
        let sync = sync.clone();
        tokio::task::spawn_blocking(move || {
            ping(&sync, "a", n);
            wait_for(&sync, n);
        })
        .await
        .unwrap();
    }
    assert!(listener.is_running());
    stop.stop();
    let (applied, pings) = running.await.unwrap();
    assert_eq!(applied.unwrap(), 3);
    assert_eq!(pings.seen, [1, 2, 3]);
    // Stopped, the listener ends too.
    let started = Instant::now();
    while listener.is_running() {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
