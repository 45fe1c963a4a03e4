//! Long streams: loading a 100,000-event stream with and without snapshots, `load_at` near
//! the end of it, and W2 (5,000 commands on one aggregate) with and without the state
//! cache, in memory and on SQLite.
//!
//! `cargo bench --bench snapshots`

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use es_core::{
    Aggregate, Event, EventStore, ExpectedVersion, InMemoryStore, Metadata, NewEvent, Repository,
    Snapshot, StreamRef, applies,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Deposited {
    amount: u64,
}

/// Without snapshots.
#[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "Account")]
struct Plain {
    balance: u64,
    count: u64,
}

#[applies(event_enum = PlainEvent)]
impl Plain {
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
        self.count += 1;
    }
}

/// The same aggregate type with snapshots every 1,000 events.
#[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "Account", snapshot_every = 1000)]
struct Snapshotted {
    balance: u64,
    count: u64,
}

#[applies(event_enum = SnapshottedEvent)]
impl Snapshotted {
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
        self.count += 1;
    }
}

const LONG: u64 = 100_000;
const W2_COMMANDS: u64 = 5_000;

/// A store holding one stream of `LONG` deposits with a snapshot every 1,000 events, as
/// the snapshotting repository keeps them: at versions 1,500, 2,500, ... 99,500, so that
/// a load with snapshots reads the last one and a 500-event tail.
fn long_stream<S: EventStore>(store: S) -> S {
    let stream = StreamRef::new("Account", "long");
    let mut state = Snapshotted::default();
    let mut version = 0;
    let mut append = |count: u64, state: &mut Snapshotted| {
        let events: Vec<NewEvent> = (0..count)
            .map(|i| NewEvent::new("Deposited", 1, json!({ "amount": i }), Metadata::new()))
            .collect();
        store
            .append(stream, ExpectedVersion::from_version(version), &events)
            .expect("append");
        version += count;
        state.balance += (0..count).sum::<u64>();
        state.count += count;
    };
    append(500, &mut state);
    while state.count + 1_000 < LONG {
        append(1_000, &mut state);
        let json = es_core::serde_json::value::to_raw_value(&state).expect("serialize");
        store
            .save_snapshot(stream, &Snapshot::new(state.count, 1, json))
            .expect("save snapshot");
    }
    append(LONG - state.count, &mut state);
    store
}

fn bench_loads<S: EventStore>(c: &mut Criterion, name: &str, store: &S) {
    let mut group = c.benchmark_group(format!("long_stream/{name}"));
    group.sample_size(10);
    let plain = Repository::<Plain, _>::new(store);
    let snapshotted = Repository::<Snapshotted, _>::new(store);
    // Both ways reach the same state (the snapshots are right).
    let (full, fast) = (
        plain.load("long").expect("load").expect("exists"),
        snapshotted.load("long").expect("load").expect("exists"),
    );
    assert_eq!(
        (full.state.balance, full.state.count),
        (fast.state.balance, fast.state.count)
    );
    group.bench_function("load_without_snapshots", |b| {
        b.iter(|| black_box(plain.load("long").expect("load")))
    });
    group.bench_function("load_with_snapshots", |b| {
        b.iter(|| black_box(snapshotted.load("long").expect("load")))
    });
    group.bench_function("load_at_near_end_with_snapshots", |b| {
        b.iter(|| black_box(snapshotted.load_at("long", LONG - 10).expect("load_at")))
    });
    group.bench_function("load_at_near_end_without_snapshots", |b| {
        b.iter(|| black_box(plain.load_at("long", LONG - 10).expect("load_at")))
    });
    group.finish();
}

fn bench_w2(c: &mut Criterion) {
    let mut group = c.benchmark_group("w2_5000_commands_one_aggregate/memory");
    group.sample_size(10);
    group.bench_function("with_state_cache", |b| {
        b.iter_batched(
            InMemoryStore::new,
            |store| {
                let repo = Repository::<Plain, _>::new(&store).with_cache(16);
                for _ in 0..W2_COMMANDS {
                    repo.execute_infallible("hot", |_| Deposited { amount: 1 })
                        .expect("command");
                }
                store
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("without_state_cache", |b| {
        b.iter_batched(
            InMemoryStore::new,
            |store| {
                let repo = Repository::<Plain, _>::new(&store);
                for _ in 0..W2_COMMANDS {
                    repo.execute_infallible("hot", |_| Deposited { amount: 1 })
                        .expect("command");
                }
                store
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let memory = long_stream(InMemoryStore::new());
    bench_loads(c, "memory", &memory);
    drop(memory);
    let dir = tempfile::tempdir().expect("temporary directory");
    let sqlite =
        long_stream(es_sqlite::SqliteStore::open(dir.path().join("long.db")).expect("open SQLite"));
    bench_loads(c, "sqlite", &sqlite);
    bench_w2(c);
}

criterion_group!(snapshots, benches);
criterion_main!(snapshots);
