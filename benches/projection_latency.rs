//! Read-model delay in `run` mode: the time from the start of an append to the moment the
//! running projector's handler sees the event, for a projector following the log with the
//! default [`RunOptions`] (pauses doubling from 1 ms to 250 ms while idle).
//!
//! The appender writes one event at a time with a pause between appends (default 20 ms:
//! an idle system, so the projector's pause has grown before the next event), and the read
//! model records when its handler ran. Reported per store: median, 99th percentile and
//! maximum of the delays, over `ES_BENCH_EVENTS` events (default 300).
//!
//! * `memory`, `sqlite`: polling only;
//! * `postgres poll`: polling only;
//! * `postgres listen`: polling plus `PostgresStore::listen` (LISTEN/NOTIFY) wake-ups;
//! * `postgres async listen`: `AsyncProjector` with `AsyncPostgresStore::listen`.
//!
//! `cargo bench --bench projection_latency` (PostgreSQL rows when `ES_POSTGRES_URL` is set;
//! `ES_BENCH_GAP_MS` sets the pause between appends).

use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use es_core::{
    Aggregate, AsyncProjector, Event, InMemoryStore, Projector, Repository, RunOptions, StopHandle,
    applies, read_model,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Pinged {
    n: usize,
}

#[derive(Debug, Default, Aggregate)]
struct Pinger {
    last: usize,
}

#[applies]
impl Pinger {
    fn pinged(&mut self, e: &Pinged) {
        self.last = e.n;
    }
}

/// When each event was seen by the handler, by its number.
type Seen = Arc<Mutex<Vec<Option<Instant>>>>;

#[derive(Debug, Default)]
struct Clocked {
    seen: Seen,
}

#[read_model(from = Pinger, name = "latency")]
impl Clocked {
    fn pinged(&mut self, e: &Pinged) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = seen.get_mut(e.n) {
            slot.get_or_insert_with(Instant::now);
        }
    }
}

struct Setup {
    events: usize,
    gap: Duration,
}

/// Appends `setup.events` events one by one through `append`, then waits until each was
/// seen; returns the delays.
fn measure(setup: &Setup, seen: &Seen, append: impl Fn(usize)) -> Vec<Duration> {
    let mut started = Vec::with_capacity(setup.events);
    for n in 0..setup.events {
        thread::sleep(setup.gap);
        started.push(Instant::now());
        append(n);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .all(Option::is_some);
        if all {
            break;
        }
        assert!(Instant::now() < deadline, "the projector fell behind");
        thread::sleep(Duration::from_millis(5));
    }
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
    started
        .iter()
        .zip(seen.iter())
        .map(|(start, at)| at.expect("seen").saturating_duration_since(*start))
        .collect()
}

fn report(name: &str, mut delays: Vec<Duration>) {
    delays.sort();
    let at = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<24} median {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms   ({} events)",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(at(1.0)),
        delays.len()
    );
}

/// No listener: the projector only polls.
fn none<S>(_: &S, _: &StopHandle) -> Box<dyn Send> {
    Box::new(())
}

/// Runs a sync projector over `store` in a thread (woken by `listen`'s listener, if
/// any), measures, stops it.
fn sync_case<S>(
    name: &str,
    setup: &Setup,
    store: S,
    listen: impl FnOnce(&S, &StopHandle) -> Box<dyn Send>,
) where
    S: es_core::EventStore + es_core::CheckpointStore + Clone + Send + 'static,
{
    let seen: Seen = Arc::new(Mutex::new(vec![None; setup.events]));
    let stop = StopHandle::new();
    let _listener = listen(&store, &stop);
    let running = {
        let (store, stop, seen) = (store.clone(), stop.clone(), Arc::clone(&seen));
        thread::spawn(move || {
            let mut projector = Projector::new(store.clone(), Clocked { seen }, store);
            projector.run(&stop, RunOptions::default()).expect("run");
        })
    };
    let repo = Repository::<Pinger, _>::new(store);
    let delays = measure(setup, &seen, |n| {
        repo.execute_infallible("p", move |_: &Pinger| Pinged { n })
            .expect("append");
    });
    stop.stop();
    running.join().expect("the projector thread");
    report(name, delays);
}

fn main() {
    let number = |key: &str, default: u64| {
        std::env::var(key)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let setup = Setup {
        events: number("ES_BENCH_EVENTS", 300) as usize,
        gap: Duration::from_millis(number("ES_BENCH_GAP_MS", 20)),
    };
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and wants a
    // quick check only.
    let quick = !std::env::args().any(|arg| arg == "--bench");
    let setup = if quick {
        Setup {
            events: 5,
            gap: Duration::from_millis(1),
        }
    } else {
        setup
    };
    sync_case("memory", &setup, InMemoryStore::new(), none);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sqlite = es_sqlite::SqliteStore::open(dir.path().join("events.db")).expect("SQLite");
    sync_case("sqlite", &setup, sqlite, none);

    let Ok(url) = std::env::var("ES_POSTGRES_URL") else {
        println!("postgres: skipped (set ES_POSTGRES_URL)");
        return;
    };
    let schema = |suffix: &str| format!("es_bench_latency_{suffix}_{}", std::process::id());
    let drop_schema = |name: &str| {
        let mut client = es_postgres::connect_client(&url).expect("connect");
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
            .expect("drop the bench schema");
    };
    let poll = schema("poll");
    let store = es_postgres::PostgresStore::connect_with_schema(&url, &poll).expect("PostgreSQL");
    sync_case("postgres poll", &setup, store, none);
    drop_schema(&poll);

    let listen = schema("listen");
    let store = es_postgres::PostgresStore::connect_with_schema(&url, &listen).expect("PostgreSQL");
    sync_case("postgres listen", &setup, store, |store, stop| {
        Box::new(store.listen(stop).expect("listen"))
    });
    drop_schema(&listen);

    let asynchronous = schema("async");
    async_listen_case(&setup, &url, &asynchronous);
    drop_schema(&asynchronous);
}

/// `AsyncProjector` with `AsyncPostgresStore::listen`, on a runtime of its own; the
/// appends come from the sync store on this thread.
fn async_listen_case(setup: &Setup, url: &str, schema: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let store = runtime
        .block_on(es_postgres::AsyncPostgresStore::connect_with_schema(
            url, schema,
        ))
        .expect("PostgreSQL");
    let seen: Seen = Arc::new(Mutex::new(vec![None; setup.events]));
    let stop = StopHandle::new();
    let listener = runtime.block_on(store.listen(&stop)).expect("listen");
    let running = {
        let (store, stop, seen) = (store.clone(), stop.clone(), Arc::clone(&seen));
        runtime.spawn(async move {
            let mut projector = AsyncProjector::new(store.clone(), Clocked { seen }, store);
            projector
                .run(&stop, RunOptions::default())
                .await
                .expect("run");
        })
    };
    let sync = es_postgres::PostgresStore::connect_with_schema(url, schema).expect("PostgreSQL");
    let repo = Repository::<Pinger, _>::new(sync);
    let delays = measure(setup, &seen, |n| {
        repo.execute_infallible("p", move |_: &Pinger| Pinged { n })
            .expect("append");
    });
    stop.stop();
    runtime.block_on(running).expect("the projector task");
    drop(listener);
    report("postgres async listen", delays);
}
