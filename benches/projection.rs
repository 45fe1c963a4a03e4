//! Read-model catch-up throughput: one read model catching up from position 0 over a
//! 100,000-event log of which it handles a third, in memory, on SQLite and on PostgreSQL
//! (when `ES_POSTGRES_URL` is set). Throughput is in log events per second.
//!
//! Two read models handle the same third (the `Deposited` events):
//!
//! * `by_type`: `Deposited` of `Account` only, so the projector reads by type
//!   (`visit_by_type`: the store returns matching events only) and never sees the other
//!   two thirds;
//! * `whole_log`: also an event of a second aggregate type that the log does not hold, so
//!   the projector reads the whole log (`visit_all`) and skips two thirds undecoded.
//!
//! Each iteration deletes the checkpoint (untimed) and times one `catch_up` from 0,
//! checkpoint commits (one per batch) and lease included, with the default batch size
//! (512), and `whole_log_batch_5000` with batches of 5,000, which commits a tenth as often:
//! on SQLite, whose commits are `synchronous = FULL`, each commit costs an fsync.
//!
//! `cargo bench --bench projection -- --noplot`; the PostgreSQL log is `ANALYZE`d after it
//! is filled unless `ES_BENCH_NO_ANALYZE` is set.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use es_core::{
    Aggregate, CheckpointStore, DEFAULT_BATCH_SIZE, Event, EventRecord, EventStore,
    ExpectedVersion, InMemoryStore, Metadata, NewEvent, Projector, ReadModel, StreamRef, applies,
    read_model,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Deposited {
    amount: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Withdrawn {
    amount: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Renamed {
    name: String,
}

#[derive(Debug, Default, Aggregate)]
struct Account {
    balance: i64,
}

#[applies]
impl Account {
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount as i64;
    }
    fn withdrawn(&mut self, e: &Withdrawn) {
        self.balance -= e.amount as i64;
    }
    fn renamed(&mut self, _: &Renamed) {}
}

/// A second aggregate type, none of whose events the log holds.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Audited {
    by: String,
}

#[derive(Debug, Default, Aggregate)]
struct Audit {
    count: u64,
}

#[applies]
impl Audit {
    fn audited(&mut self, _: &Audited) {
        self.count += 1;
    }
}

/// Deposits per account: one aggregate, read by type.
#[derive(Debug, Default)]
struct Deposits {
    by_account: HashMap<String, u64>,
    applied: u64,
}

#[read_model(name = "bench.deposits")]
impl Deposits {
    #[from(Account)]
    fn deposited(&mut self, e: &Deposited, record: &EventRecord<'_>) {
        add(&mut self.by_account, record.stream.id, e.amount);
        self.applied += 1;
    }
}

/// The same deposits, plus audits: two aggregate types, read from the whole log.
#[derive(Debug, Default)]
struct DepositsAndAudits {
    by_account: HashMap<String, u64>,
    applied: u64,
}

#[read_model(name = "bench.deposits_and_audits")]
impl DepositsAndAudits {
    #[from(Account)]
    fn deposited(&mut self, e: &Deposited, record: &EventRecord<'_>) {
        add(&mut self.by_account, record.stream.id, e.amount);
        self.applied += 1;
    }
    #[from(Audit)]
    fn audited(&mut self, _: &Audited) {
        self.applied += 1;
    }
}

fn add(totals: &mut HashMap<String, u64>, id: &str, amount: u64) {
    match totals.get_mut(id) {
        Some(total) => *total += amount,
        None => {
            totals.insert(id.to_owned(), amount);
        }
    }
}

const LOG: u64 = 100_000;
const STREAMS: u64 = 1_000;
const PER_STREAM: u64 = LOG / STREAMS;
/// Every third event is a deposit.
const HANDLED: u64 = LOG / 3 + 1;

/// Fills `store` with `LOG` events: `STREAMS` accounts of `PER_STREAM` events each, one
/// append per account, cycling through deposit, withdrawal and rename.
fn fill<S: EventStore>(store: &S) {
    for stream in 0..STREAMS {
        let id = format!("acc-{stream}");
        let events: Vec<NewEvent> = (0..PER_STREAM)
            .map(|i| {
                let n = stream * PER_STREAM + i;
                match n % 3 {
                    0 => NewEvent::new("Deposited", 1, json!({ "amount": n }), Metadata::new()),
                    1 => NewEvent::new("Withdrawn", 1, json!({ "amount": 1 }), Metadata::new()),
                    _ => NewEvent::new(
                        "Renamed",
                        1,
                        json!({ "name": format!("owner {n}") }),
                        Metadata::new(),
                    ),
                }
            })
            .collect();
        store
            .append(
                StreamRef::new("Account", &id),
                ExpectedVersion::NoStream,
                &events,
            )
            .expect("fill the log");
    }
}

fn bench_model<S, R>(
    c: &mut Criterion,
    store_name: &str,
    variant: &str,
    batch_size: usize,
    store: &S,
) where
    S: EventStore + CheckpointStore,
    R: ReadModel + Default,
    R: Applied,
{
    let mut group = c.benchmark_group(format!("catch_up/{store_name}"));
    group.throughput(Throughput::Elements(LOG));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.bench_function(BenchmarkId::new(variant, LOG), |b| {
        b.iter_batched(
            || {
                store
                    .delete_checkpoint(R::NAME)
                    .expect("reset the checkpoint");
                Projector::new(store, R::default(), store).with_batch_size(batch_size)
            },
            |mut projector| {
                let done = projector.catch_up().expect("catch up");
                assert_eq!(done.applied, HANDLED);
                assert_eq!(projector.read_model().applied(), HANDLED);
                black_box(projector)
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// How many events a bench read model applied.
trait Applied {
    fn applied(&self) -> u64;
}

impl Applied for Deposits {
    fn applied(&self) -> u64 {
        self.applied
    }
}

impl Applied for DepositsAndAudits {
    fn applied(&self) -> u64 {
        self.applied
    }
}

/// Fills `store`, runs `after_fill`, and benches both read models over it.
fn bench_store<S: EventStore + CheckpointStore>(
    c: &mut Criterion,
    name: &str,
    store: &S,
    after_fill: impl FnOnce(),
) {
    fill(store);
    after_fill();
    bench_model::<S, Deposits>(c, name, "by_type", DEFAULT_BATCH_SIZE, store);
    bench_model::<S, DepositsAndAudits>(c, name, "whole_log", DEFAULT_BATCH_SIZE, store);
    bench_model::<S, DepositsAndAudits>(c, name, "whole_log_batch_5000", 5_000, store);
}

fn projection(c: &mut Criterion) {
    bench_store(c, "memory", &InMemoryStore::new(), || {});

    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = es_sqlite::SqliteStore::open(dir.path().join("bench.db")).expect("open sqlite");
    bench_store(c, "sqlite", &sqlite, || {});

    match std::env::var("ES_POSTGRES_URL") {
        Ok(url) => {
            let schema = format!("bench_projection_{}", std::process::id());
            let pg = es_postgres::PostgresStore::connect_with_schema(&url, &schema)
                .expect("connect to PostgreSQL");
            // Statistics as autovacuum would have them by now on a table that has grown
            // over time: right after a bulk load (no statistics yet) the by-type read is
            // planned as a bitmap scan and sort of every matching event after the
            // checkpoint, per batch, which `ES_BENCH_NO_ANALYZE=1` measures.
            let analyze = std::env::var_os("ES_BENCH_NO_ANALYZE").is_none();
            let sql = |statement: String| {
                let done = es_postgres::connect_client(&url)
                    .map_err(|error| error.to_string())
                    .and_then(|mut client| {
                        client
                            .batch_execute(&statement)
                            .map_err(|error| error.to_string())
                    });
                if let Err(error) = done {
                    eprintln!("`{statement}` failed: {error}");
                }
            };
            bench_store(c, "postgres", &pg, || {
                if analyze {
                    sql(format!("ANALYZE \"{schema}\".es_events"));
                }
            });
            drop(pg);
            sql(format!("DROP SCHEMA \"{schema}\" CASCADE"));
        }
        Err(_) => eprintln!("ES_POSTGRES_URL is not set: skipping the PostgreSQL benches"),
    }
}

criterion_group!(benches, projection);
criterion_main!(benches);
