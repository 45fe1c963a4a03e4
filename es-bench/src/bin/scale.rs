//! How the cost of es stores grows with their size.
//!
//! For each store and each size N:
//!
//! * **one stream**: append N `Deposited` events to one growing stream, in batches of 100
//!   with an exact expected version; events/s over the first tenth and the last tenth of the
//!   fill, and their ratio;
//! * **load memory**: then load that stream through the `Repository` (the state it rebuilds is
//!   three fields): the time, and the peak heap above what was live before the load, counted by
//!   a global allocator wrapping `System`;
//! * **N/10 streams**: fill a fresh store to N events spread over N/10 streams, one append
//!   of 10 events per stream; events/s over the first and the last tenth.
//!
//! ```text
//! cargo run --release --bin scale                                   # 10,000 and 100,000
//! cargo run --release --bin scale -- --sizes 10000,100000,1000000 --stores mem,sqlite,postgres
//! ```

use std::hint::black_box;

use es_bench::bank::es::BankAccount;
use es_bench::heap;
use es_bench::measure::{fmt_count, fmt_mib, fmt_rate, fmt_ratio, fmt_secs, median, timed};
use es_bench::stores::{
    MemStores, PostgresSchemas, SqliteFiles, StoreKind, StoreSource, postgres_url, select_stores,
};
use es_core::{Aggregate, EventStore, ExpectedVersion, Metadata, NewEvent, Repository, StreamRef};

#[global_allocator]
static ALLOC: heap::Counting = heap::Counting;

const USAGE: &str = "\
usage: scale [--sizes 10000,100000,1000000] [--stores mem,sqlite,postgres] [--loads N]

  --sizes LIST     store sizes N in events (default 10000,100000); multiples of 1,000
  --stores LIST    es stores to run (default: mem,sqlite, plus postgres if ES_POSTGRES_URL
                   is set)
  --loads N        timed loads of the N-event stream (default 3); the median is reported";

/// Events per append on the one growing stream.
const SINGLE_BATCH: u64 = 100;
/// Events per stream (and per append) in the many-streams fill.
const MULTI_BATCH: u64 = 10;

/// What one store measured at one size.
#[derive(Debug, Clone)]
struct Row {
    n: u64,
    single: Fill,
    /// Heap the store held after the one-stream fill.
    store_heap: usize,
    /// Median seconds to load the N-event stream.
    load_secs: f64,
    /// Highest extra heap during a load.
    load_peak: usize,
    multi: Fill,
}

/// The append rate at the start and at the end of a fill.
#[derive(Debug, Clone, Copy)]
struct Fill {
    /// Events/s over the first tenth of the appends.
    first: f64,
    /// Events/s over the last tenth.
    last: f64,
}

impl Fill {
    /// From the seconds of each append of `batch` events.
    fn from_appends(secs: &[f64], batch: u64) -> Self {
        let tenth = (secs.len() / 10).max(1);
        let rate = |part: &[f64]| (part.len() as u64 * batch) as f64 / part.iter().sum::<f64>();
        Self {
            first: rate(&secs[..tenth]),
            last: rate(&secs[secs.len() - tenth..]),
        }
    }
}

fn main() {
    let (sizes, stores, loads) = match parse_args() {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };

    let mut results = Vec::new();
    for &kind in &stores {
        let rows = match kind {
            StoreKind::Mem => run_store(kind, &mut MemStores, &sizes, loads),
            StoreKind::Sqlite => {
                let mut files = SqliteFiles::new().expect("create a temp dir for SQLite");
                run_store(kind, &mut files, &sizes, loads)
            }
            StoreKind::Postgres => {
                let url = postgres_url().expect("checked when parsing --stores");
                run_store(kind, &mut PostgresSchemas::new(url), &sizes, loads)
            }
        };
        results.push((kind, rows));
    }
    print_report(&results, loads);
}

fn parse_args() -> Result<(Vec<u64>, Vec<StoreKind>, usize), String> {
    let mut sizes = vec![10_000, 100_000];
    let mut stores = None;
    let mut loads = 3;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sizes" => {
                let list = args.next().ok_or("--sizes needs a list")?;
                sizes = list
                    .split(',')
                    .map(|s| s.trim().replace('_', ""))
                    .map(|s| match s.parse::<u64>() {
                        Ok(n) if n >= 1_000 && n.is_multiple_of(1_000) => Ok(n),
                        _ => Err(format!("--sizes: `{s}` is not a multiple of 1,000")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--stores" => stores = Some(args.next().ok_or("--stores needs a list")?),
            "--loads" => {
                let n = args.next().ok_or("--loads needs N")?;
                loads = n
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("--loads must be a positive integer, not `{n}`"))?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok((sizes, select_stores(stores.as_deref())?, loads))
}

/// Every measurement of one store, at every size.
fn run_store<Src: StoreSource>(
    kind: StoreKind,
    source: &mut Src,
    sizes: &[u64],
    loads: usize,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for &n in sizes {
        eprintln!(
            "[scale] {}: one stream of {} events ...",
            kind.label(),
            fmt_count(n)
        );
        let before = heap::current();
        let repo = Repository::<BankAccount, _>::new(source.fresh());
        let single = fill_one_stream(repo.store(), n);
        let store_heap = heap::current().saturating_sub(before);

        eprintln!("[scale] {}: loading it {loads} times ...", kind.label());
        let (load_secs, load_peak) = measure_loads(&repo, n, loads);
        drop(repo);

        eprintln!(
            "[scale] {}: {} events over {} streams ...",
            kind.label(),
            fmt_count(n),
            fmt_count(n / MULTI_BATCH)
        );
        let store = source.fresh();
        let multi = fill_many_streams(&store, n);
        drop(store);
        source.cleanup();

        rows.push(Row {
            n,
            single,
            store_heap,
            load_secs,
            load_peak,
            multi,
        });
    }
    rows
}

/// Appends `n` events to `BankAccount/acc-1` in batches of [`SINGLE_BATCH`].
fn fill_one_stream<S: EventStore>(store: &S, n: u64) -> Fill {
    let stream = StreamRef::new(BankAccount::AGGREGATE_TYPE, "acc-1");
    let mut secs = Vec::with_capacity((n / SINGLE_BATCH) as usize);
    let mut version = 0;
    while version < n {
        let batch = deposits(SINGLE_BATCH.min(n - version)); // made outside the timing
        let (outcome, t) = timed(|| {
            store
                .append(stream, ExpectedVersion::Exact(version), &batch)
                .expect("append to the one stream")
        });
        version = outcome.stream_version;
        secs.push(t);
    }
    Fill::from_appends(&secs, SINGLE_BATCH)
}

/// Fills a store to `n` events over `n / MULTI_BATCH` streams, one append each.
fn fill_many_streams<S: EventStore>(store: &S, n: u64) -> Fill {
    let ids: Vec<String> = (0..n / MULTI_BATCH).map(|i| format!("acc-{i}")).collect();
    let mut secs = Vec::with_capacity(ids.len());
    for id in &ids {
        let stream = StreamRef::new(BankAccount::AGGREGATE_TYPE, id);
        let batch = deposits(MULTI_BATCH);
        let (_, t) = timed(|| {
            store
                .append(stream, ExpectedVersion::NoStream, &batch)
                .expect("append a new stream")
        });
        secs.push(t);
    }
    Fill::from_appends(&secs, MULTI_BATCH)
}

/// `count` stored `Deposited { amount: 1 }` events.
fn deposits(count: u64) -> Vec<NewEvent> {
    (0..count)
        .map(|_| {
            NewEvent::new(
                "Deposited",
                1,
                serde_json::json!({ "amount": 1 }),
                Metadata::new(),
            )
        })
        .collect()
}

/// Loads `acc-1` (`n` events) `loads` times: the median seconds and the highest extra heap.
fn measure_loads<S: EventStore>(
    repo: &Repository<BankAccount, S>,
    n: u64,
    loads: usize,
) -> (f64, usize) {
    let mut times = Vec::with_capacity(loads);
    let mut peak = 0;
    for _ in 0..loads {
        heap::reset_peak();
        let (loaded, secs) = timed(|| repo.load(black_box("acc-1")).expect("load"));
        peak = peak.max(heap::peak_since_reset());
        let loaded = loaded.expect("the stream exists");
        assert_eq!((loaded.version, loaded.state.balance), (n, n));
        times.push(secs);
    }
    (median(times), peak)
}

fn print_report(results: &[(StoreKind, Vec<Row>)], loads: usize) {
    println!("# es store scaling\n");
    es_bench::report::print_header("scale");
    println!(
        "- one stream: batches of {SINGLE_BATCH} with `ExpectedVersion::Exact`; N/10 streams: one append of {MULTI_BATCH} events per new stream; load: `Repository::load` of the one N-event stream, median of {loads}, peak extra heap the highest of them"
    );
    println!(
        "- rates are events/s over the first and the last tenth of the appends; last/first < 1 means appends slow down as the store grows"
    );
    println!(
        "- store heap: heap the store held after the one-stream fill (for SQL stores, the client side only)"
    );
    for (kind, rows) in results {
        println!("\n## {}\n", kind.label());
        println!(
            "| N events | one stream: first 10% | last 10% | last/first | N/10 streams: first 10% | last 10% | last/first | load N events | load peak extra heap | store heap |"
        );
        println!("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        for row in rows {
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} ({} B/event) | {} |",
                fmt_count(row.n),
                fmt_rate(row.single.first),
                fmt_rate(row.single.last),
                fmt_ratio(row.single.last / row.single.first),
                fmt_rate(row.multi.first),
                fmt_rate(row.multi.last),
                fmt_ratio(row.multi.last / row.multi.first),
                fmt_secs(row.load_secs),
                fmt_mib(row.load_peak),
                row.load_peak as u64 / row.n,
                fmt_mib(row.store_heap),
            );
        }
    }
}
