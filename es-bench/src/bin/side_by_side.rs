//! One bank-account domain, three implementations, the same workloads:
//!
//! * a hand-written baseline (JSON strings in a `HashMap`, serde enum, hand `match`);
//! * cqrs-es 0.5 (`MemStore` + `CqrsFramework`);
//! * es (derived events and aggregate, `Repository`) over its in-memory, SQLite and
//!   PostgreSQL stores;
//! * es async (`AsyncRepository`, the same aggregate and decisions, `.await`ed) over the
//!   async in-memory, SQLite and PostgreSQL stores, on a tokio multi-thread runtime: W1 and
//!   W3, and W3c, W3's commands run by several concurrent tasks (sync: threads).
//!
//! ```text
//! cargo run --release --bin side_by_side                       # full sizes
//! cargo run --release --bin side_by_side -- --quick            # tiny sizes, seconds
//! cargo run --release --bin side_by_side -- --stores mem       # es stores to run
//! ES_BENCH_SCALE=1 cargo run --release --bin side_by_side      # SQL stores run full W3
//! ```
//!
//! Prints a markdown table: one row per workload, one column per implementation, then the
//! ratios es-in-memory / baseline and es-in-memory / cqrs-es (> 1: es is slower); then a
//! table of each es store sync against async, and the issue's targets for the async API.

use std::collections::HashMap;
use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use cqrs_es::mem_store::{MemStore, MemStoreAggregateContext};
use cqrs_es::{CqrsFramework, EventStore as _};
use es_bench::bank::BankError;
use es_bench::bank::baseline::{self, AccountEvent};
use es_bench::bank::cqrs::{AccountCommand, CqrsAccount};
use es_bench::bank::es::{self as es_domain, BankAccount};
use es_bench::measure::{fmt_count, fmt_rate, fmt_ratio, fmt_secs, median, timed};
use es_bench::quiet::{SilencedStdout, println_cost};
use es_bench::stores::{
    AsyncStoreSource, MemStores, PostgresSchemas, SqliteFiles, StoreKind, StoreSource,
    postgres_url, select_stores,
};
use es_core::{AsyncEventStore, AsyncRepository, EventStore, Repository};
use tokio::runtime::Runtime;

const USAGE: &str = "\
usage: side_by_side [--quick] [--stores mem,sqlite,postgres] [--sql-scale F] [--reps N]
                    [--tasks N]

  --quick          tiny sizes (a smoke test that runs in seconds)
  --stores LIST    es stores to run (default: mem,sqlite, plus postgres if ES_POSTGRES_URL
                   is set); the baseline and cqrs-es always run
  --sql-scale F    fraction of the W3 workload the SQLite/PostgreSQL stores run
                   (default 0.1, or ES_BENCH_SCALE; 1 = the full 100,000 commands)
  --reps N         runs of W2, W3 and W3c per implementation (default 3); the median is
                   reported
  --tasks N        concurrent tasks (async) and threads (sync) of W3c (default 8)";

/// The sizes of every workload.
#[derive(Debug, Clone)]
struct Plan {
    /// Events in the W1 stream: 1 `Opened`, the rest `Deposited`.
    w1_events: u64,
    /// Timed loads of the W1 stream (in memory).
    w1_loads: usize,
    /// Timed loads of the W1 stream (SQLite, PostgreSQL).
    w1_loads_durable: usize,
    /// Deposits on one aggregate in W2.
    w2_commands: u64,
    /// Aggregates in W3 (in memory).
    w3_aggregates: u64,
    /// Commands per W3 aggregate (1 open, the rest deposits), so also its events.
    w3_per_aggregate: u64,
    /// Fraction of `w3_aggregates` the SQL stores run.
    sql_scale: f64,
    /// Runs of W2, of W3 commands and passes of W3 loads.
    reps: usize,
    /// Concurrent tasks (async) or threads (sync) that share out W3c's aggregates.
    tasks: usize,
    /// The `--quick` sizes.
    quick: bool,
}

impl Plan {
    fn full() -> Self {
        Self {
            w1_events: 10_000,
            w1_loads: 20,
            w1_loads_durable: 10,
            w2_commands: 5_000,
            w3_aggregates: 10_000,
            w3_per_aggregate: 10,
            sql_scale: 0.1,
            reps: 3,
            tasks: 8,
            quick: false,
        }
    }

    fn quick() -> Self {
        Self {
            w1_events: 200,
            w1_loads: 5,
            w1_loads_durable: 3,
            w2_commands: 50,
            w3_aggregates: 20,
            w3_per_aggregate: 10,
            // 100 commands over 10 aggregates on the SQL stores, which run W3 four times
            // over (sync, sync W3c, async, async W3c).
            sql_scale: 0.5,
            reps: 3,
            tasks: 8,
            quick: true,
        }
    }

    /// The sizes one implementation runs.
    fn sizes(&self, durable: bool) -> Sizes {
        let w3_aggregates = if durable {
            ((self.w3_aggregates as f64 * self.sql_scale).round() as u64).max(1)
        } else {
            self.w3_aggregates
        };
        Sizes {
            w1_events: self.w1_events,
            w1_loads: if durable {
                self.w1_loads_durable
            } else {
                self.w1_loads
            },
            w2_commands: self.w2_commands,
            w3_aggregates,
            w3_per_aggregate: self.w3_per_aggregate,
            reps: self.reps,
            tasks: self.tasks,
        }
    }
}

/// What one implementation runs.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    w1_events: u64,
    w1_loads: usize,
    w2_commands: u64,
    w3_aggregates: u64,
    w3_per_aggregate: u64,
    reps: usize,
    tasks: usize,
}

impl Sizes {
    fn w3_commands(&self) -> u64 {
        self.w3_aggregates * self.w3_per_aggregate
    }

    /// W3's aggregate ids, made before any timing starts.
    fn w3_ids(&self) -> Vec<String> {
        (0..self.w3_aggregates)
            .map(|i| format!("acc-{i}"))
            .collect()
    }

    /// W3c's share of W3's aggregates per task: aggregate `i` goes to task `i % tasks`, so
    /// every task gets the same number (give or take one) and no two touch the same one.
    fn w3_shards(&self) -> Vec<Vec<String>> {
        let ids = self.w3_ids();
        (0..self.tasks)
            .map(|task| ids.iter().skip(task).step_by(self.tasks).cloned().collect())
            .filter(|shard: &Vec<String>| !shard.is_empty())
            .collect()
    }
}

/// The medians one implementation measured.
#[derive(Debug, Clone, Copy)]
struct Figures {
    /// W1: seconds per load of the long stream.
    w1_load: f64,
    /// W2: seconds for all its commands.
    w2_total: f64,
    /// W3: commands per second.
    w3_commands: f64,
    /// W3: loads per second.
    w3_loads: f64,
    /// W3c: commands per second with `sizes.tasks` threads (es only).
    w3_concurrent: Option<f64>,
    /// The sizes it ran.
    sizes: Sizes,
}

/// The medians one async es store measured.
#[derive(Debug, Clone, Copy)]
struct AsyncFigures {
    /// W1: seconds per load of the long stream.
    w1_load: f64,
    /// W3: commands per second, one task.
    w3_commands: f64,
    /// W3: loads per second, one task.
    w3_loads: f64,
    /// W3c: commands per second, `sizes.tasks` concurrent tasks.
    w3_concurrent: f64,
}

fn main() {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let plan = options.plan;

    sanity_check();

    let baseline = {
        progress("baseline");
        run_baseline(plan.sizes(false))
    };
    let cqrs = {
        progress("cqrs-es");
        run_cqrs(plan.sizes(false))
    };
    // Each store runs sync, then async, so that the two share the machine's conditions.
    let rt = multi_thread_runtime();
    let mut es = Vec::new();
    let mut es_async = Vec::new();
    for &kind in &options.stores {
        progress(kind.label());
        let sizes = plan.sizes(kind.is_durable());
        let (figures, async_figures) = match kind {
            StoreKind::Mem => (
                run_es(kind, &mut MemStores, sizes),
                Some(run_es_async(kind, &mut MemStores, &rt, sizes)),
            ),
            StoreKind::Sqlite => {
                let mut files = SqliteFiles::new().expect("create a temp dir for SQLite");
                let figures = run_es(kind, &mut files, sizes);
                (figures, Some(run_es_async(kind, &mut files, &rt, sizes)))
            }
            StoreKind::Postgres => {
                let url = postgres_url().expect("checked when parsing --stores");
                let mut schemas = PostgresSchemas::new(url);
                let figures = run_es(kind, &mut schemas, sizes);
                (figures, run_postgres_async(&mut schemas, &rt, sizes))
            }
        };
        es.push((kind, figures));
        if let Some(async_figures) = async_figures {
            es_async.push((kind, async_figures));
        }
    }
    let workers = rt.metrics().num_workers();
    drop(rt);
    // What one cqrs-es MemStore log line costs (to /dev/null), for the notes.
    let log_line = println_cost(100_000).expect("silence stdout");

    print_report(&plan, &baseline, &cqrs, &es, log_line);
    print_async_report(&plan, &es, &es_async, workers);
}

/// The async PostgreSQL store (es-bench's feature `postgres-async`).
#[cfg(feature = "postgres-async")]
fn run_postgres_async(
    schemas: &mut PostgresSchemas,
    rt: &Runtime,
    sizes: Sizes,
) -> Option<AsyncFigures> {
    Some(run_es_async(StoreKind::Postgres, schemas, rt, sizes))
}

/// Without es-bench's feature `postgres-async` there is no async PostgreSQL store to run.
#[cfg(not(feature = "postgres-async"))]
fn run_postgres_async(
    _schemas: &mut PostgresSchemas,
    _rt: &Runtime,
    _sizes: Sizes,
) -> Option<AsyncFigures> {
    eprintln!(
        "[side_by_side] es PostgreSQL (async) skipped: es-bench was built without its `postgres-async` feature"
    );
    None
}

/// Command-line options.
struct Options {
    plan: Plan,
    stores: Vec<StoreKind>,
}

impl Options {
    fn parse() -> Result<Self, String> {
        let mut quick = false;
        let mut stores = None;
        let mut sql_scale = None;
        let mut reps = None;
        let mut tasks = None;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => quick = true,
                "--stores" => stores = Some(args.next().ok_or("--stores needs a list")?),
                "--sql-scale" => sql_scale = Some(args.next().ok_or("--sql-scale needs F")?),
                "--reps" => reps = Some(args.next().ok_or("--reps needs N")?),
                "--tasks" => tasks = Some(args.next().ok_or("--tasks needs N")?),
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        let mut plan = if quick { Plan::quick() } else { Plan::full() };
        let sql_scale = sql_scale.or_else(|| std::env::var("ES_BENCH_SCALE").ok());
        if let Some(scale) = sql_scale {
            plan.sql_scale = scale
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && *f > 0.0)
                .ok_or_else(|| format!("the SQL scale must be a positive number, not `{scale}`"))?;
        }
        if let Some(reps) = reps {
            plan.reps = reps
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("--reps must be a positive integer, not `{reps}`"))?;
        }
        if let Some(tasks) = tasks {
            plan.tasks = tasks
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("--tasks must be a positive integer, not `{tasks}`"))?;
        }
        let stores = select_stores(stores.as_deref())?;
        Ok(Self { plan, stores })
    }
}

fn progress(what: &str) {
    eprintln!("[side_by_side] running {what} ...");
}

/// The three implementations make the same decisions: an overdraft is rejected, a covered
/// withdrawal is not, and the balance agrees.
fn sanity_check() {
    let mut hand = baseline::Store::new();
    hand.execute("a", |acc| acc.open("Alice")).expect("open");
    hand.execute("a", |acc| acc.deposit(10)).expect("deposit");
    assert!(matches!(
        hand.execute("a", |acc| acc.withdraw(11)),
        Err(baseline::CommandError::Rejected(
            BankError::InsufficientFunds { .. }
        ))
    ));
    hand.execute("a", |acc| acc.withdraw(4)).expect("withdraw");
    assert_eq!(hand.load("a").expect("load").0.balance, 6);

    let rt = runtime();
    let _quiet = SilencedStdout::new().expect("silence stdout");
    rt.block_on(async {
        let store = MemStore::<CqrsAccount>::default();
        let cqrs = CqrsFramework::new(store.clone(), vec![], ());
        let owner = "Alice".to_owned();
        cqrs.execute("a", AccountCommand::Open { owner })
            .await
            .expect("open");
        cqrs.execute("a", AccountCommand::Deposit { amount: 10 })
            .await
            .expect("deposit");
        let overdraft = cqrs
            .execute("a", AccountCommand::Withdraw { amount: 11 })
            .await;
        assert!(matches!(
            overdraft,
            Err(cqrs_es::AggregateError::UserError(
                BankError::InsufficientFunds { .. }
            ))
        ));
        cqrs.execute("a", AccountCommand::Withdraw { amount: 4 })
            .await
            .expect("withdraw");
        let loaded = store.load_aggregate("a").await.expect("load");
        assert_eq!(loaded.aggregate.0.balance, 6);
    });

    let repo = Repository::<BankAccount, _>::new(es_core::InMemoryStore::new());
    repo.execute("a", |acc| acc.open("Alice")).expect("open");
    repo.execute("a", |acc| acc.deposit(10)).expect("deposit");
    let overdraft = repo.execute("a", |acc| acc.withdraw(11)).unwrap_err();
    assert!(matches!(
        overdraft.rejection(),
        Some(BankError::InsufficientFunds { .. })
    ));
    repo.execute("a", |acc| acc.withdraw(4)).expect("withdraw");
    let loaded = repo.load("a").expect("load").expect("exists");
    assert_eq!(loaded.state.balance, 6);

    // The async repository, with the same decisions.
    let rt = multi_thread_runtime();
    let repo = AsyncRepository::<BankAccount, _>::new(es_core::InMemoryStore::new());
    on_worker(&rt, async move {
        repo.execute("a", |acc| acc.open("Alice"))
            .await
            .expect("open");
        repo.execute("a", |acc| acc.deposit(10))
            .await
            .expect("deposit");
        let overdraft = repo.execute("a", |acc| acc.withdraw(11)).await.unwrap_err();
        assert!(matches!(
            overdraft.rejection(),
            Some(BankError::InsufficientFunds { .. })
        ));
        repo.execute("a", |acc| acc.withdraw(4))
            .await
            .expect("withdraw");
        let loaded = repo.load("a").await.expect("load").expect("exists");
        assert_eq!(loaded.state.balance, 6);
    });
}

/// A single-threaded tokio runtime for cqrs-es (its in-memory store never awaits I/O).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("build a tokio runtime")
}

/// The runtime the async es stores run on: tokio's multi-thread scheduler with its default
/// worker count (one per core), I/O and time drivers on, as a service would have it.
fn multi_thread_runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build a tokio multi-thread runtime")
}

/// Runs `task` as a task of `rt` (on one of its workers, as a request handler would run)
/// and waits for its result.
fn on_worker<T: Send + 'static>(rt: &Runtime, task: impl Future<Output = T> + Send + 'static) -> T {
    rt.block_on(rt.spawn(task))
        .expect("a benchmark task panicked")
}

// ---------------------------------------------------------------------------------------
// Baseline

fn run_baseline(sizes: Sizes) -> Figures {
    // W1: one long stream, seeded without decisions.
    let mut store = baseline::Store::new();
    store
        .push(
            "acc-w1",
            &AccountEvent::Opened {
                owner: "Alice".into(),
            },
        )
        .expect("seed");
    for _ in 1..sizes.w1_events {
        store
            .push("acc-w1", &AccountEvent::Deposited { amount: 1 })
            .expect("seed");
    }
    let w1_load = warm_median_of(sizes.w1_loads, || {
        let ((account, version), secs) = timed(|| store.load(black_box("acc-w1")).expect("load"));
        assert_eq!(
            (version as u64, account.balance),
            (sizes.w1_events, sizes.w1_events - 1)
        );
        secs
    });

    // W2: deposits on one aggregate.
    let w2_total = median_of(sizes.reps, || {
        let mut store = baseline::Store::new();
        store
            .execute("acc-w2", |acc| acc.open("Alice"))
            .expect("open");
        let ((), secs) = timed(|| {
            for _ in 0..sizes.w2_commands {
                store
                    .execute("acc-w2", |acc| acc.deposit(1))
                    .expect("deposit");
            }
        });
        assert_eq!(
            store.load("acc-w2").expect("load").0.balance,
            sizes.w2_commands
        );
        secs
    });

    // W3: many aggregates, then load each.
    let ids = sizes.w3_ids();
    let mut last = baseline::Store::new();
    let w3_commands = median_of(sizes.reps, || {
        let mut store = baseline::Store::new();
        let ((), secs) = timed(|| {
            for id in &ids {
                store.execute(id, |acc| acc.open("Alice")).expect("open");
            }
            for _ in 1..sizes.w3_per_aggregate {
                for id in &ids {
                    store.execute(id, |acc| acc.deposit(1)).expect("deposit");
                }
            }
        });
        last = store;
        sizes.w3_commands() as f64 / secs
    });
    let w3_loads = median_of(sizes.reps, || {
        let ((), secs) = timed(|| {
            for id in &ids {
                let (_, version) = last.load(black_box(id)).expect("load");
                assert_eq!(version as u64, sizes.w3_per_aggregate);
            }
        });
        ids.len() as f64 / secs
    });

    Figures {
        w1_load,
        w2_total,
        w3_commands,
        w3_loads,
        w3_concurrent: None,
        sizes,
    }
}

// ---------------------------------------------------------------------------------------
// cqrs-es

fn run_cqrs(sizes: Sizes) -> Figures {
    let rt = runtime();
    // MemStore prints a line per load and per commit.
    let _quiet = SilencedStdout::new().expect("silence stdout");
    rt.block_on(async {
        // W1: one long stream, committed in one go.
        let store = MemStore::<CqrsAccount>::default();
        let mut events = vec![AccountEvent::Opened {
            owner: "Alice".into(),
        }];
        events.extend((1..sizes.w1_events).map(|_| AccountEvent::Deposited { amount: 1 }));
        let empty = MemStoreAggregateContext {
            aggregate_id: "acc-w1".to_owned(),
            aggregate: CqrsAccount::default(),
            current_sequence: 0,
        };
        store
            .commit(events, empty, HashMap::new())
            .await
            .expect("seed");
        let mut samples = Vec::with_capacity(sizes.w1_loads);
        for _ in 0..=sizes.w1_loads {
            let start = Instant::now();
            let loaded = store
                .load_aggregate(black_box("acc-w1"))
                .await
                .expect("load");
            let secs = start.elapsed().as_secs_f64();
            assert_eq!(loaded.current_sequence as u64, sizes.w1_events);
            samples.push(secs);
        }
        samples.remove(0); // warm-up
        let w1_load = median(samples);

        // W2: deposits on one aggregate.
        let mut samples = Vec::with_capacity(sizes.reps);
        for _ in 0..sizes.reps {
            let store = MemStore::<CqrsAccount>::default();
            let cqrs = CqrsFramework::new(store.clone(), vec![], ());
            let owner = "Alice".to_owned();
            cqrs.execute("acc-w2", AccountCommand::Open { owner })
                .await
                .expect("open");
            let start = Instant::now();
            for _ in 0..sizes.w2_commands {
                cqrs.execute("acc-w2", AccountCommand::Deposit { amount: 1 })
                    .await
                    .expect("deposit");
            }
            samples.push(start.elapsed().as_secs_f64());
            let loaded = store.load_aggregate("acc-w2").await.expect("load");
            assert_eq!(loaded.aggregate.0.balance, sizes.w2_commands);
        }
        let w2_total = median(samples);

        // W3: many aggregates, then load each.
        let ids = sizes.w3_ids();
        let mut samples = Vec::with_capacity(sizes.reps);
        let mut last = MemStore::<CqrsAccount>::default();
        for _ in 0..sizes.reps {
            let store = MemStore::<CqrsAccount>::default();
            let cqrs = CqrsFramework::new(store.clone(), vec![], ());
            let start = Instant::now();
            for id in &ids {
                let owner = "Alice".to_owned();
                cqrs.execute(id, AccountCommand::Open { owner })
                    .await
                    .expect("open");
            }
            for _ in 1..sizes.w3_per_aggregate {
                for id in &ids {
                    cqrs.execute(id, AccountCommand::Deposit { amount: 1 })
                        .await
                        .expect("deposit");
                }
            }
            samples.push(sizes.w3_commands() as f64 / start.elapsed().as_secs_f64());
            last = store;
        }
        let w3_commands = median(samples);
        let mut samples = Vec::with_capacity(sizes.reps);
        for _ in 0..sizes.reps {
            let start = Instant::now();
            for id in &ids {
                let loaded = last.load_aggregate(black_box(id)).await.expect("load");
                assert_eq!(loaded.current_sequence as u64, sizes.w3_per_aggregate);
            }
            samples.push(ids.len() as f64 / start.elapsed().as_secs_f64());
        }
        let w3_loads = median(samples);

        Figures {
            w1_load,
            w2_total,
            w3_commands,
            w3_loads,
            w3_concurrent: None,
            sizes,
        }
    })
}

// ---------------------------------------------------------------------------------------
// es

fn run_es<Src: StoreSource>(kind: StoreKind, source: &mut Src, sizes: Sizes) -> Figures {
    // W1: one long stream, appended directly in batches.
    let repo = Repository::<BankAccount, _>::new(source.fresh());
    es_domain::seed(repo.store(), "acc-w1", sizes.w1_events - 1);
    let w1_load = warm_median_of(sizes.w1_loads, || {
        let (loaded, secs) = timed(|| repo.load(black_box("acc-w1")).expect("load"));
        let loaded = loaded.expect("the stream exists");
        assert_eq!(
            (loaded.version, loaded.state.balance),
            (sizes.w1_events, sizes.w1_events - 1)
        );
        secs
    });
    drop(repo);

    // W2: deposits on one aggregate.
    let w2_total = median_of(sizes.reps, || {
        if kind.is_durable() {
            eprintln!(
                "[side_by_side]   {}: W2, {} commands ...",
                kind.label(),
                fmt_count(sizes.w2_commands)
            );
        }
        let repo = Repository::<BankAccount, _>::new(source.fresh());
        repo.execute("acc-w2", |acc| acc.open("Alice"))
            .expect("open");
        let ((), secs) = timed(|| {
            for _ in 0..sizes.w2_commands {
                repo.execute("acc-w2", |acc| acc.deposit(1))
                    .expect("deposit");
            }
        });
        let loaded = repo.load("acc-w2").expect("load").expect("exists");
        assert_eq!(loaded.state.balance, sizes.w2_commands);
        secs
    });

    // W3: many aggregates, then load each.
    let ids = sizes.w3_ids();
    let mut last = None;
    let w3_commands = median_of(sizes.reps, || {
        if kind.is_durable() {
            eprintln!(
                "[side_by_side]   {}: W3, {} commands ...",
                kind.label(),
                fmt_count(sizes.w3_commands())
            );
        }
        let repo = Repository::<BankAccount, _>::new(source.fresh());
        let ((), secs) = timed(|| run_w3_commands(&repo, &ids, sizes.w3_per_aggregate));
        last = Some(repo);
        sizes.w3_commands() as f64 / secs
    });
    let repo = last.expect("W3 ran at least once");
    let w3_loads = median_of(sizes.reps, || {
        let ((), secs) = timed(|| {
            for id in &ids {
                let loaded = repo.load(black_box(id)).expect("load").expect("exists");
                assert_w3_state(&loaded, sizes);
            }
        });
        ids.len() as f64 / secs
    });
    drop(repo);

    // W3c: the same commands, the aggregates shared out over `tasks` threads.
    let shards = sizes.w3_shards();
    let w3_concurrent = median_of(sizes.reps, || {
        if kind.is_durable() {
            eprintln!(
                "[side_by_side]   {}: W3c, {} commands on {} threads ...",
                kind.label(),
                fmt_count(sizes.w3_commands()),
                shards.len()
            );
        }
        let repo = Repository::<BankAccount, _>::new(source.fresh());
        // A pool opens connections on demand: let the threads open theirs before timing,
        // as W3's single thread has its connection from the store's opening.
        std::thread::scope(|scope| {
            for _ in &shards {
                let repo = &repo;
                scope.spawn(move || {
                    for _ in 0..WARM_UP_LOADS {
                        repo.load(WARM_UP_ID).expect("load");
                    }
                });
            }
        });
        let ((), secs) = timed(|| {
            std::thread::scope(|scope| {
                for shard in &shards {
                    let repo = &repo;
                    scope.spawn(move || run_w3_commands(repo, shard, sizes.w3_per_aggregate));
                }
            });
        });
        for id in &ids {
            let loaded = repo.load(id).expect("load").expect("exists");
            assert_w3_state(&loaded, sizes);
        }
        sizes.w3_commands() as f64 / secs
    });
    source.cleanup();

    Figures {
        w1_load,
        w2_total,
        w3_commands,
        w3_loads,
        w3_concurrent: Some(w3_concurrent),
        sizes,
    }
}

/// Loads of a stream that does not exist, by every W3c thread or task before the timing.
const WARM_UP_LOADS: usize = 3;
/// The aggregate those loads ask for (no W3 aggregate).
const WARM_UP_ID: &str = "warm-up";

/// W3's commands on `ids`: open each, then deposit 1 in each, round-robin, until each
/// has `per_aggregate` events.
fn run_w3_commands<S: EventStore>(
    repo: &Repository<BankAccount, S>,
    ids: &[String],
    per_aggregate: u64,
) {
    for id in ids {
        repo.execute(id, |acc| acc.open("Alice")).expect("open");
    }
    for _ in 1..per_aggregate {
        for id in ids {
            repo.execute(id, |acc| acc.deposit(1)).expect("deposit");
        }
    }
}

/// [`run_w3_commands`] through the async repository.
async fn run_w3_commands_async<S: AsyncEventStore>(
    repo: &AsyncRepository<BankAccount, S>,
    ids: &[String],
    per_aggregate: u64,
) {
    for id in ids {
        repo.execute(id, |acc| acc.open("Alice"))
            .await
            .expect("open");
    }
    for _ in 1..per_aggregate {
        for id in ids {
            repo.execute(id, |acc| acc.deposit(1))
                .await
                .expect("deposit");
        }
    }
}

/// A W3 aggregate after its commands: opened, `per_aggregate` events, the deposits summed.
fn assert_w3_state(loaded: &es_core::Versioned<BankAccount>, sizes: Sizes) {
    assert_eq!(
        (loaded.version, loaded.state.balance, loaded.state.open),
        (sizes.w3_per_aggregate, sizes.w3_per_aggregate - 1, true)
    );
}

// ---------------------------------------------------------------------------------------
// es, async

/// W1 and W3 (and W3c) on an async store, every workload a task of `rt`'s workers.
fn run_es_async<Src: AsyncStoreSource>(
    kind: StoreKind,
    source: &mut Src,
    rt: &Runtime,
    sizes: Sizes,
) -> AsyncFigures {
    progress(&format!("{} (async)", kind.label()));
    // W1: one long stream, appended directly in batches.
    let repo = AsyncRepository::<BankAccount, _>::new(source.fresh_async(rt));
    rt.block_on(es_domain::seed_async(
        repo.store(),
        "acc-w1",
        sizes.w1_events - 1,
    ));
    let mut samples = on_worker(rt, async move {
        // A warm-up load, then the timed ones.
        let mut samples = Vec::with_capacity(sizes.w1_loads + 1);
        for _ in 0..=sizes.w1_loads {
            let start = Instant::now();
            let loaded = repo.load(black_box("acc-w1")).await.expect("load");
            let secs = start.elapsed().as_secs_f64();
            let loaded = loaded.expect("the stream exists");
            assert_eq!(
                (loaded.version, loaded.state.balance),
                (sizes.w1_events, sizes.w1_events - 1)
            );
            samples.push(secs);
        }
        samples
    });
    samples.remove(0);
    let w1_load = median(samples);

    // W3: many aggregates by one task, then load each.
    let ids = Arc::new(sizes.w3_ids());
    let mut last = None;
    let w3_commands = median_of(sizes.reps, || {
        if kind.is_durable() {
            eprintln!(
                "[side_by_side]   {} (async): W3, {} commands ...",
                kind.label(),
                fmt_count(sizes.w3_commands())
            );
        }
        let repo = AsyncRepository::<BankAccount, _>::new(source.fresh_async(rt));
        let secs = on_worker(rt, {
            let (repo, ids) = (repo.clone(), Arc::clone(&ids));
            async move {
                let start = Instant::now();
                run_w3_commands_async(&repo, &ids, sizes.w3_per_aggregate).await;
                start.elapsed().as_secs_f64()
            }
        });
        last = Some(repo);
        sizes.w3_commands() as f64 / secs
    });
    let repo = last.expect("W3 ran at least once");
    let w3_loads = median_of(sizes.reps, || {
        let (repo, ids) = (repo.clone(), Arc::clone(&ids));
        on_worker(rt, async move {
            let start = Instant::now();
            for id in ids.iter() {
                let loaded = repo.load(black_box(id)).await.expect("load");
                assert_w3_state(&loaded.expect("exists"), sizes);
            }
            ids.len() as f64 / start.elapsed().as_secs_f64()
        })
    });
    drop(repo);

    // W3c: the same commands, the aggregates shared out over `tasks` concurrent tasks.
    let w3_concurrent = median_of(sizes.reps, || {
        let shards = sizes.w3_shards();
        if kind.is_durable() {
            eprintln!(
                "[side_by_side]   {} (async): W3c, {} commands in {} tasks ...",
                kind.label(),
                fmt_count(sizes.w3_commands()),
                shards.len()
            );
        }
        let repo = AsyncRepository::<BankAccount, _>::new(source.fresh_async(rt));
        // As in the sync W3c: the tasks' connections are opened before timing.
        rt.block_on(async {
            let warm_ups: Vec<_> = (0..shards.len())
                .map(|_| {
                    let repo = repo.clone();
                    tokio::spawn(async move {
                        for _ in 0..WARM_UP_LOADS {
                            repo.load(WARM_UP_ID).await.expect("load");
                        }
                    })
                })
                .collect();
            for warm_up in warm_ups {
                warm_up.await.expect("a warm-up task panicked");
            }
        });
        let secs = rt.block_on(async {
            let start = Instant::now();
            let tasks: Vec<_> = shards
                .into_iter()
                .map(|shard| {
                    let repo = repo.clone();
                    tokio::spawn(async move {
                        run_w3_commands_async(&repo, &shard, sizes.w3_per_aggregate).await;
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("a W3c task panicked");
            }
            start.elapsed().as_secs_f64()
        });
        let (check, ids) = (repo.clone(), Arc::clone(&ids));
        on_worker(rt, async move {
            for id in ids.iter() {
                let loaded = check.load(id).await.expect("load");
                assert_w3_state(&loaded.expect("exists"), sizes);
            }
        });
        sizes.w3_commands() as f64 / secs
    });
    source.cleanup_async();

    AsyncFigures {
        w1_load,
        w3_commands,
        w3_loads,
        w3_concurrent,
    }
}

/// The median of `runs` samples of `sample`.
fn median_of(runs: usize, mut sample: impl FnMut() -> f64) -> f64 {
    median((0..runs).map(|_| sample()).collect())
}

/// Like [`median_of`], after one untimed warm-up run (for short samples such as one load).
fn warm_median_of(runs: usize, mut sample: impl FnMut() -> f64) -> f64 {
    black_box(sample());
    median_of(runs, sample)
}

// ---------------------------------------------------------------------------------------
// Report

/// One row of the report table.
struct Row {
    name: String,
    /// The figure this row shows.
    value: fn(&Figures) -> f64,
    /// A rate (higher is better) rather than a time (lower is better).
    is_rate: bool,
    /// A W3 row: the SQL stores may have run it smaller.
    is_w3: bool,
}

impl Row {
    fn cell(&self, figures: &Figures) -> String {
        let value = (self.value)(figures);
        if self.is_rate {
            fmt_rate(value)
        } else {
            fmt_secs(value)
        }
    }
}

fn print_report(
    plan: &Plan,
    baseline: &Figures,
    cqrs: &Figures,
    es: &[(StoreKind, Figures)],
    log_line: f64,
) {
    let full = plan.sizes(false);
    let scaled = plan.sizes(true);
    let es_of = |kind| es.iter().find(|(k, _)| *k == kind).map(|(_, f)| f);
    let mem = es_of(StoreKind::Mem);
    let sql_scaled =
        scaled.w3_aggregates != full.w3_aggregates && es.iter().any(|(kind, _)| kind.is_durable());

    println!("# es side by side: a bank account three ways\n");
    es_bench::report::print_header("side_by_side");
    println!(
        "- sizes: W1 {} events, {} loads (SQL stores {}); W2 {} commands; W3 {} commands over {} aggregates; W2/W3 median of {} runs; W1 after a warm-up load",
        fmt_count(full.w1_events),
        full.w1_loads,
        scaled.w1_loads,
        fmt_count(full.w2_commands),
        fmt_count(full.w3_commands()),
        fmt_count(full.w3_aggregates),
        full.reps,
    );
    println!();

    let rows = [
        Row {
            name: format!(
                "W1 load one {}-event stream (time per load)",
                fmt_count(full.w1_events)
            ),
            value: |f| f.w1_load,
            is_rate: false,
            is_w3: false,
        },
        Row {
            name: format!(
                "W2 {} deposits on one aggregate (total time)",
                fmt_count(full.w2_commands)
            ),
            value: |f| f.w2_total,
            is_rate: false,
            is_w3: false,
        },
        Row {
            name: format!(
                "W3 commands: {} over {} aggregates (commands/s)",
                fmt_count(full.w3_commands()),
                fmt_count(full.w3_aggregates)
            ),
            value: |f| f.w3_commands,
            is_rate: true,
            is_w3: true,
        },
        Row {
            name: format!(
                "W3 loads: {} aggregates of {} events (loads/s)",
                fmt_count(full.w3_aggregates),
                full.w3_per_aggregate
            ),
            value: |f| f.w3_loads,
            is_rate: true,
            is_w3: true,
        },
    ];

    println!(
        "| workload | baseline | cqrs-es | es in-memory | es SQLite | es PostgreSQL | es-mem/baseline | es-mem/cqrs-es |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|");
    for row in &rows {
        let es_cell = |kind: StoreKind| {
            es_of(kind).map_or_else(
                || "—".to_owned(),
                |f| {
                    // Only W3 runs smaller on the SQL stores.
                    let mark = if row.is_w3 && sql_scaled && kind.is_durable() {
                        " ¹"
                    } else {
                        ""
                    };
                    format!("{}{mark}", row.cell(f))
                },
            )
        };
        // > 1 means es is slower: es/other for times, other/es for rates.
        let ratio = |other: &Figures| {
            mem.map_or_else(
                || "—".to_owned(),
                |m| {
                    let (es, other) = ((row.value)(m), (row.value)(other));
                    fmt_ratio(if row.is_rate { other / es } else { es / other })
                },
            )
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.name,
            row.cell(baseline),
            row.cell(cqrs),
            es_cell(StoreKind::Mem),
            es_cell(StoreKind::Sqlite),
            es_cell(StoreKind::Postgres),
            ratio(baseline),
            ratio(cqrs),
        );
    }
    println!();
    println!(
        "Ratios: > 1 means es (in-memory) is slower; for times es ÷ other, for rates other ÷ es."
    );
    if sql_scaled {
        println!(
            "¹ SQL stores ran W3 at {} of the size: {} commands over {} aggregates of {} events (set ES_BENCH_SCALE=1 or --sql-scale 1 for the full size).",
            plan.sql_scale,
            fmt_count(scaled.w3_commands()),
            fmt_count(scaled.w3_aggregates),
            scaled.w3_per_aggregate,
        );
    }
    println!();
    println!("Notes:");
    let per_event = |f: &Figures| fmt_secs(f.w1_load / f.sizes.w1_events as f64);
    let mut line = format!(
        "- W1 per event: baseline {}, cqrs-es {}",
        per_event(baseline),
        per_event(cqrs)
    );
    for (kind, figures) in es {
        line.push_str(&format!(", {} {}", kind.label(), per_event(figures)));
    }
    println!("{line}.");
    let per_command = |f: &Figures| {
        let n = f.sizes.w2_commands as f64;
        fmt_secs(f.w2_total / n)
    };
    let mut line = format!(
        "- W2 per command (each reloads the whole stream, so it grows with it): baseline {}, cqrs-es {}",
        per_command(baseline),
        per_command(cqrs)
    );
    for (kind, figures) in es {
        line.push_str(&format!(", {} {}", kind.label(), per_command(figures)));
    }
    println!("{line}.");
    println!(
        "- cqrs-es 0.5's MemStore `println!`s a line on every load and every commit; stdout pointed at /dev/null while it ran, where one such line costs {} (included in its figures: 2 lines per command, 1 per load). Its commit also copies the whole stream to append to it.",
        fmt_secs(log_line)
    );
}

/// One row of the sync-against-async table.
struct AsyncRow {
    name: String,
    /// The sync store's figure (W3c is only measured for es).
    sync: fn(&Figures) -> Option<f64>,
    /// The async store's figure.
    asynchronous: fn(&AsyncFigures) -> f64,
    is_rate: bool,
    is_w3: bool,
}

/// async ÷ sync for times, sync ÷ async for rates: > 1 means async is slower.
fn slowdown(is_rate: bool, sync: f64, asynchronous: f64) -> f64 {
    if is_rate {
        sync / asynchronous
    } else {
        asynchronous / sync
    }
}

fn print_async_report(
    plan: &Plan,
    es: &[(StoreKind, Figures)],
    es_async: &[(StoreKind, AsyncFigures)],
    workers: usize,
) {
    let full = plan.sizes(false);
    let scaled = plan.sizes(true);
    let sync_of = |kind| es.iter().find(|(k, _)| *k == kind).map(|(_, f)| f);
    let async_of = |kind| es_async.iter().find(|(k, _)| *k == kind).map(|(_, f)| f);
    let sql_scaled =
        scaled.w3_aggregates != full.w3_aggregates && es.iter().any(|(kind, _)| kind.is_durable());
    let tasks = full.w3_shards().len();

    println!();
    println!("## es sync and async\n");
    println!(
        "`AsyncRepository` (the same aggregate and decisions as `Repository`, `.await`ed) over `InMemoryStore` (its `AsyncEventStore` impl), `AsyncSqliteStore` and `AsyncPostgresStore`; every async workload runs as tasks of a tokio multi-thread runtime with {workers} workers. W3c is W3's commands shared out by aggregate: aggregate i is run by thread (sync) or task (async) i mod {tasks}, each running its aggregates round-robin as W3 does, so every aggregate gets the same open and {} deposits in the same order, and no two share one (no conflicts); timed from the first spawn to the last join. The store sizes are W3's.",
        full.w3_per_aggregate - 1
    );
    println!();
    println!(
        "| workload | es in-memory | async | async/sync | es SQLite | async | async/sync | es PostgreSQL | async | async/sync |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    let rows = [
        AsyncRow {
            name: format!(
                "W1 load one {}-event stream (time per load)",
                fmt_count(full.w1_events)
            ),
            sync: |f| Some(f.w1_load),
            asynchronous: |f| f.w1_load,
            is_rate: false,
            is_w3: false,
        },
        AsyncRow {
            name: format!(
                "W3 commands: {} over {} aggregates, 1 thread / 1 task (commands/s)",
                fmt_count(full.w3_commands()),
                fmt_count(full.w3_aggregates)
            ),
            sync: |f| Some(f.w3_commands),
            asynchronous: |f| f.w3_commands,
            is_rate: true,
            is_w3: true,
        },
        AsyncRow {
            name: format!(
                "W3 loads: {} aggregates of {} events, 1 thread / 1 task (loads/s)",
                fmt_count(full.w3_aggregates),
                full.w3_per_aggregate
            ),
            sync: |f| Some(f.w3_loads),
            asynchronous: |f| f.w3_loads,
            is_rate: true,
            is_w3: true,
        },
        AsyncRow {
            name: format!(
                "W3c commands: W3's {} on {tasks} threads / {tasks} tasks (commands/s)",
                fmt_count(full.w3_commands())
            ),
            sync: |f| f.w3_concurrent,
            asynchronous: |f| f.w3_concurrent,
            is_rate: true,
            is_w3: true,
        },
    ];
    let fmt = |is_rate: bool, value: f64| {
        if is_rate {
            fmt_rate(value)
        } else {
            fmt_secs(value)
        }
    };
    for row in &rows {
        let mut line = format!("| {} |", row.name);
        for kind in [StoreKind::Mem, StoreKind::Sqlite, StoreKind::Postgres] {
            let mark = if row.is_w3 && sql_scaled && kind.is_durable() {
                " ¹"
            } else {
                ""
            };
            let sync = sync_of(kind).and_then(row.sync);
            let asynchronous = async_of(kind).map(row.asynchronous);
            let cell = |value: Option<f64>| {
                value.map_or_else(
                    || "—".to_owned(),
                    |v| format!("{}{mark}", fmt(row.is_rate, v)),
                )
            };
            let ratio = match (sync, asynchronous) {
                (Some(s), Some(a)) => fmt_ratio(slowdown(row.is_rate, s, a)),
                _ => "—".to_owned(),
            };
            line.push_str(&format!(
                " {} | {} | {ratio} |",
                cell(sync),
                cell(asynchronous)
            ));
        }
        println!("{line}");
    }
    println!();
    println!(
        "async/sync: > 1 means async is slower; for times async ÷ sync, for rates sync ÷ async."
    );
    if sql_scaled {
        println!(
            "¹ SQL stores ran W3 and W3c at {} of the size: {} commands over {} aggregates.",
            plan.sql_scale,
            fmt_count(scaled.w3_commands()),
            fmt_count(scaled.w3_aggregates),
        );
    }
    if sync_of(StoreKind::Postgres).is_some() && async_of(StoreKind::Postgres).is_none() {
        println!(
            "The async PostgreSQL store did not run: es-bench was built without its `postgres-async` feature."
        );
    }

    println!();
    if plan.quick {
        println!("Targets (issue 9; `--quick` sizes are too small for these to mean anything):");
    } else {
        println!("Targets (issue 9):");
    }
    let verdict = |met: bool| if met { "**met**" } else { "**not met**" };
    match (sync_of(StoreKind::Mem), async_of(StoreKind::Mem)) {
        (Some(sync), Some(asynchronous)) => {
            let w1 = slowdown(false, sync.w1_load, asynchronous.w1_load);
            let w3 = slowdown(true, sync.w3_commands, asynchronous.w3_commands);
            let loads = slowdown(true, sync.w3_loads, asynchronous.w3_loads);
            println!(
                "- async in-memory within 1.3× of sync on W1 and W3: W1 {}, W3 commands {}, W3 loads {}: {}.",
                fmt_ratio(w1),
                fmt_ratio(w3),
                fmt_ratio(loads),
                verdict(w1 <= 1.3 && w3 <= 1.3 && loads <= 1.3)
            );
        }
        _ => println!("- async in-memory within 1.3× of sync: not run (`--stores` without mem)."),
    }
    match (sync_of(StoreKind::Postgres), async_of(StoreKind::Postgres)) {
        (Some(sync), Some(asynchronous)) => {
            println!(
                "- async PostgreSQL with {tasks} concurrent tasks (W3c) above sync PostgreSQL with one thread (W3): {} against {}, {}: {}.",
                fmt_rate(asynchronous.w3_concurrent),
                fmt_rate(sync.w3_commands),
                fmt_ratio(asynchronous.w3_concurrent / sync.w3_commands),
                verdict(asynchronous.w3_concurrent > sync.w3_commands)
            );
        }
        _ => println!(
            "- async PostgreSQL with {tasks} tasks above sync with one thread on W3: not run (needs ES_POSTGRES_URL and the `postgres-async` feature)."
        ),
    }
}
