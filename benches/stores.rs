//! Store throughput: appends in batches of 1 and 100, and loading a 10,000-event stream
//! through the repository, for each store.
//!
//! `cargo bench --bench stores` (PostgreSQL too when `ES_POSTGRES_URL` is set).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use es_core::{
    Aggregate, Event, EventStore, ExpectedVersion, InMemoryStore, Metadata, NewEvent, Repository,
    StreamRef, applies,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Deposited {
    amount: u64,
}

#[derive(Debug, Default, Aggregate)]
struct Account {
    balance: u64,
}

#[applies]
impl Account {
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }
}

const LOAD_EVENTS: u64 = 10_000;

fn batch(n: u64) -> Vec<NewEvent> {
    (0..n)
        .map(|i| NewEvent::new("Deposited", 1, json!({ "amount": i }), Metadata::new()))
        .collect()
}

/// A fresh stream id per append, so every append is a new-stream append of the same cost.
fn next_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("bench-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn bench_store<S: EventStore>(c: &mut Criterion, name: &str, store: &S) {
    let mut group = c.benchmark_group(format!("append/{name}"));
    for size in [1_u64, 100] {
        group.throughput(Throughput::Elements(size));
        group.bench_function(BenchmarkId::new("batch", size), |b| {
            // Fresh events (event ids are unique store-wide) and a fresh stream per append,
            // built outside the timed section.
            b.iter_batched(
                || (next_id(), batch(size)),
                |(id, events)| {
                    store
                        .append(
                            StreamRef::new("Account", &id),
                            ExpectedVersion::NoStream,
                            &events,
                        )
                        .expect("append")
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();

    // One 10,000-event stream, appended in batches of 1,000.
    let id = next_id();
    for chunk in 0..LOAD_EVENTS / 1_000 {
        store
            .append(
                StreamRef::new("Account", &id),
                ExpectedVersion::Exact(chunk * 1_000),
                &batch(1_000),
            )
            .expect("seed");
    }
    let repo = Repository::<Account, _>::new(store);
    let mut group = c.benchmark_group(format!("load/{name}"));
    group.throughput(Throughput::Elements(LOAD_EVENTS));
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("events", LOAD_EVENTS), |b| {
        b.iter(|| {
            let loaded = repo.load(black_box(&id)).expect("load").expect("exists");
            assert_eq!(loaded.version, LOAD_EVENTS);
            loaded
        });
    });
    group.finish();
}

fn stores(c: &mut Criterion) {
    bench_store(c, "memory", &InMemoryStore::new());

    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = es_sqlite::SqliteStore::open(dir.path().join("bench.db")).expect("open sqlite");
    bench_store(c, "sqlite", &sqlite);

    match std::env::var("ES_POSTGRES_URL") {
        Ok(url) => {
            let schema = format!("bench_{}", std::process::id());
            let pg = es_postgres::PostgresStore::connect_with_schema(&url, &schema)
                .expect("connect to PostgreSQL");
            // The cost of the append notification (schema version 4): compare a run with
            // `ES_BENCH_NO_NOTIFY` set, which drops its trigger.
            if std::env::var_os("ES_BENCH_NO_NOTIFY").is_some() {
                let mut client = es_postgres::connect_client(&url).expect("connect");
                client
                    .batch_execute(&format!(
                        "DROP TRIGGER es_events_notify ON \"{schema}\".es_events"
                    ))
                    .expect("drop the notify trigger");
            }
            bench_store(c, "postgres", &pg);
        }
        Err(_) => eprintln!("ES_POSTGRES_URL is not set: skipping the PostgreSQL benches"),
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = stores
}
criterion_main!(benches);
