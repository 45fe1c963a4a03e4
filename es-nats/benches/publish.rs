//! Publish throughput: a 100,000-event log (SQLite; PostgreSQL too when `ES_POSTGRES_URL`
//! is set) published into a local JetStream stream with file storage, from an empty
//! stream each run. Prints every run and the median, in events per second.
//!
//! ```sh
//! cargo bench -p es-nats --bench publish                         # 100,000 events, 5 runs
//! cargo bench -p es-nats --bench publish -- --events 20000 --runs 3
//! ```
//!
//! Needs `nats-server` on the PATH (or `NATS_SERVER_BIN`); without it the bench says so and
//! exits.

#[path = "../tests/support/server.rs"]
mod server;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use es_core::{
    AsyncCheckpointStore, AsyncEventStore, ExpectedVersion, Metadata, NewEvent, StreamRef,
};
use es_nats::{Publisher, PublisherOptions, wire};
use es_postgres::AsyncPostgresStore;
use es_sqlite::AsyncSqliteStore;
use serde_json::json;

/// Events per append (one stream per append call).
const CHUNK: u64 = 100;

struct Args {
    events: u64,
    runs: usize,
}

fn args() -> Args {
    let mut args = Args {
        events: 100_000,
        runs: 5,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--events" => {
                args.events = iter
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(args.events)
            }
            "--runs" => {
                args.runs = iter
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(args.runs)
            }
            _ => {} // `--bench` and friends from cargo
        }
    }
    args
}

/// Fills `store` with `events` events of realistic size (~150-byte payloads, a third with
/// metadata), `CHUNK` per stream.
async fn fill<S: AsyncEventStore>(store: &S, events: u64) {
    let mut n = 0;
    while n < events {
        let id = format!("acc-{}", n / CHUNK);
        let batch: Vec<NewEvent> = (n..(n + CHUNK).min(events))
            .map(|i| {
                let metadata = if i % 3 == 0 {
                    Metadata::new().with_correlation_id(format!("req-{i}"))
                } else {
                    Metadata::new()
                };
                NewEvent::new(
                    "MoneyDeposited",
                    1,
                    json!({ "amount": i, "currency": "EUR", "reference": format!("transfer {i} from the savings account") }),
                    metadata,
                )
            })
            .collect();
        let count = batch.len() as u64;
        store
            .append(
                StreamRef::new("BankAccount", &id),
                ExpectedVersion::Any,
                &batch,
            )
            .await
            .expect("append");
        n += count;
    }
}

/// Publishes the whole log `runs` times into an empty stream; returns events/s per run.
async fn measure<S>(js: &jetstream::Context, store: &S, events: u64, runs: usize) -> Vec<f64>
where
    S: AsyncEventStore + AsyncCheckpointStore + Clone,
{
    let options = PublisherOptions {
        owner: "bench".to_owned(),
        ..Default::default()
    };
    let mut rates = Vec::new();
    for run in 0..runs {
        let _ = js.delete_stream(wire::DEFAULT_STREAM).await;
        AsyncCheckpointStore::delete_checkpoint(store, &options.name)
            .await
            .expect("reset the checkpoint");
        let mut publisher =
            Publisher::new(js.clone(), store.clone(), store.clone(), options.clone())
                .expect("valid options");
        let started = Instant::now();
        let done = publisher.catch_up().await.expect("publish");
        let elapsed = started.elapsed();
        assert_eq!(done.published, events, "every event published");
        let rate = events as f64 / elapsed.as_secs_f64();
        println!(
            "  run {}: {events} events in {elapsed:.2?}: {rate:.0} events/s",
            run + 1
        );
        rates.push(rate);
    }
    rates
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args = args();
    let Some(binary) = server::nats_server_binary() else {
        println!(
            "publish bench skipped: nats-server is not installed (apt-get install -y nats-server)"
        );
        return;
    };
    let server = server::NatsServer::start_with(binary);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let client = async_nats::connect(server.url()).await.expect("connect");
        let js = jetstream::new(client);
        println!(
            "es-nats publish throughput: {} events, {} runs, JetStream file storage (nats-server on 127.0.0.1)",
            args.events, args.runs
        );

        let dir = tempfile::tempdir().expect("a temp dir");
        let sqlite = AsyncSqliteStore::open(dir.path().join("bench.db"))
            .await
            .expect("open SQLite");
        let started = Instant::now();
        fill(&sqlite, args.events).await;
        println!("SQLite log filled in {:.2?}", started.elapsed());
        let rates = measure(&js, &sqlite, args.events, args.runs).await;
        println!("SQLite -> JetStream: median {:.0} events/s", median(rates));

        match std::env::var("ES_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => {
                let schema = format!(
                    "es_nats_bench_{}_{}",
                    std::process::id(),
                    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
                );
                let postgres = AsyncPostgresStore::connect_with_schema(&url, &schema)
                    .await
                    .expect("connect to PostgreSQL");
                let started = Instant::now();
                fill(&postgres, args.events).await;
                println!("PostgreSQL log filled in {:.2?}", started.elapsed());
                let rates = measure(&js, &postgres, args.events, args.runs).await;
                println!("PostgreSQL -> JetStream: median {:.0} events/s", median(rates));
                drop(postgres);
                let dropped = std::thread::spawn(move || {
                    es_postgres::connect_client(&url).map(|mut client| {
                        client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    })
                })
                .join();
                if !matches!(dropped, Ok(Ok(Ok(())))) {
                    eprintln!("could not drop the bench schema");
                }
            }
            _ => println!("PostgreSQL skipped: ES_POSTGRES_URL is not set"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    });
}
