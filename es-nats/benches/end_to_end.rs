//! End-to-end delay: from the start of an append on the command side to the moment a
//! remote read model's handler sees the event, through the publisher, a local JetStream
//! stream (file storage) and a `JetStreamProjector` following it (`run`).
//!
//! The appender writes one event at a time with a pause between appends (default 20 ms),
//! so the system is idle between events and each delay includes the publisher's and the
//! consumer's wait for it. Reported: median, 99th percentile and maximum, per log:
//!
//! * `sqlite`: the publisher polls (default pauses: 1 ms doubling to 250 ms while idle);
//! * `postgres`: likewise, over `AsyncPostgresStore` (when `ES_POSTGRES_URL` is set);
//! * `postgres listen`: the publisher is also woken by `AsyncPostgresStore::listen` at each
//!   committed append.
//!
//! ```sh
//! cargo bench -p es-nats --bench end_to_end                      # 300 events, 20 ms apart
//! cargo bench -p es-nats --bench end_to_end -- --events 100 --gap-ms 400
//! ```
//!
//! With `ES_BENCH_SHOW_SLOWEST` set it also prints the six slowest events of each row.
//!
//! Needs `nats-server` on the PATH (or `NATS_SERVER_BIN`); without it the bench says so and
//! exits.

#[path = "../tests/support/server.rs"]
mod server;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use es_core::{
    Aggregate, AsyncCheckpointStore, AsyncEventStore, Event, ExpectedVersion, InMemoryStore,
    Metadata, NewEvent, StopHandle, StreamRef, applies, read_model,
};
use es_nats::{ConsumerOptions, JetStreamProjector, Publisher, PublisherOptions};
use futures_util::StreamExt;
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

/// When the remote handler saw each event, by its number.
type Seen = Arc<Mutex<Vec<Option<Instant>>>>;

#[derive(Debug, Default)]
struct Clocked {
    seen: Seen,
}

#[read_model(from = Pinger, name = "end-to-end")]
impl Clocked {
    fn pinged(&mut self, e: &Pinged) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = seen.get_mut(e.n) {
            slot.get_or_insert_with(Instant::now);
        }
    }
}

/// Events appended (and waited for) before the measured ones.
const WARM_UP: usize = 3;

struct Args {
    events: usize,
    gap: Duration,
}

fn args() -> Args {
    let mut args = Args {
        events: 300 + WARM_UP,
        gap: Duration::from_millis(20),
    };
    let mut iter = std::env::args().skip(1);
    let quick = !std::env::args().any(|arg| arg == "--bench");
    while let Some(arg) = iter.next() {
        let mut value = || iter.next().and_then(|v| v.parse::<u64>().ok());
        match arg.as_str() {
            "--events" => args.events = value().map_or(args.events, |v| v as usize),
            "--gap-ms" => args.gap = value().map_or(args.gap, Duration::from_millis),
            _ => {} // `--bench` and friends from cargo
        }
    }
    // `cargo test --benches` runs this without `--bench`: a quick check only.
    if quick {
        args.events = args.events.min(WARM_UP + 5);
    }
    args
}

/// Runs the publisher over `store` and a remote read model, appends `args.events` events
/// one by one, and prints the delays.
async fn case<S>(
    name: &str,
    args: &Args,
    client: &async_nats::Client,
    js: &jetstream::Context,
    store: S,
    stop: StopHandle,
) where
    S: AsyncEventStore + AsyncCheckpointStore + Clone + 'static,
{
    // A stream of its own per case.
    let stream = format!("E2E_{}", name.replace(' ', "_").to_uppercase());
    let prefix = format!("e2e_{}", name.replace(' ', "_"));
    let options = PublisherOptions {
        stream_name: stream.clone(),
        prefix: prefix.clone(),
        ..Default::default()
    };
    let mut publisher =
        Publisher::new(js.clone(), store.clone(), store.clone(), options).expect("publisher");
    let publishing = tokio::spawn({
        let stop = stop.clone();
        async move { publisher.run(&stop).await }
    });

    // A plain NATS subscriber on the subjects: when each event left the publisher (the
    // server forwards a message to core subscribers as it stores it).
    let published: Seen = Arc::new(Mutex::new(vec![None; args.events]));
    let mut subscriber = client
        .subscribe(format!("{prefix}.>"))
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    let listening = tokio::spawn({
        let published = Arc::clone(&published);
        async move {
            while let Some(message) = subscriber.next().await {
                let Ok(ping) = serde_json::from_slice::<Pinged>(&message.payload) else {
                    continue;
                };
                let mut published = published.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(slot) = published.get_mut(ping.n) {
                    slot.get_or_insert_with(Instant::now);
                }
            }
        }
    });

    let seen: Seen = Arc::new(Mutex::new(vec![None; args.events]));
    let consumer_options = ConsumerOptions::new().stream(stream).prefix(prefix);
    let mut projector = JetStreamProjector::new(
        js.clone(),
        Clocked {
            seen: Arc::clone(&seen),
        },
        InMemoryStore::new(),
        consumer_options,
    );
    let consuming = tokio::spawn({
        let stop = stop.clone();
        async move { projector.run(&stop).await }
    });

    // Events 0..WARM_UP open the publisher's and the consumers' sessions (the consumer
    // creates its 16 durable consumers first, some 200 ms): they are appended and waited
    // for before the measured ones, and left out of the figures.
    let mut started = Vec::with_capacity(args.events);
    for n in 0..args.events {
        if n == WARM_UP {
            wait_until_seen(name, &seen, WARM_UP).await;
        }
        tokio::time::sleep(args.gap).await;
        let event = NewEvent::new("Pinged", 1, serde_json::json!({ "n": n }), Metadata::new());
        started.push(Instant::now());
        store
            .append(
                StreamRef::new("Pinger", &format!("p{}", n % 8)),
                ExpectedVersion::Any,
                &[event],
            )
            .await
            .expect("append");
    }
    wait_until_seen(name, &seen, args.events).await;
    stop.stop();
    publishing
        .await
        .expect("publisher task")
        .expect("publisher");
    consuming.await.expect("consumer task").expect("consumer");

    listening.abort();
    report(&format!("{name} published"), args, &started, &published);
    report(&format!("{name} read model"), args, &started, &seen);
}

/// Waits until the read model has seen the first `count` events.
async fn wait_until_seen(name: &str, seen: &Seen, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = seen.lock().unwrap_or_else(PoisonError::into_inner)[..count]
            .iter()
            .all(Option::is_some);
        if all {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: the remote read model fell behind"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Prints the distribution of the delays from `started` to `at`.
fn report(name: &str, args: &Args, started: &[Instant], at: &Seen) {
    let at = at.lock().unwrap_or_else(PoisonError::into_inner);
    let mut delays: Vec<Duration> = started
        .iter()
        .zip(at.iter())
        .skip(WARM_UP)
        .filter_map(|(start, at)| at.map(|at| at.saturating_duration_since(*start)))
        .collect();
    if delays.is_empty() {
        println!("{name:<28} nothing seen");
        return;
    }
    if std::env::var_os("ES_BENCH_SHOW_SLOWEST").is_some() {
        let mut indexed: Vec<(usize, Duration)> = delays.iter().copied().enumerate().collect();
        indexed.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
        println!(
            "  slowest (event, ms): {:?}",
            indexed
                .iter()
                .take(6)
                .map(|(i, d)| (*i, d.as_millis()))
                .collect::<Vec<_>>()
        );
    }
    delays.sort();
    let q = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<28} median {:>7.2} ms   p90 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms   ({} events, {} ms apart)",
        ms(q(0.5)),
        ms(q(0.9)),
        ms(q(0.99)),
        ms(q(1.0)),
        delays.len(),
        args.gap.as_millis()
    );
}

#[tokio::main]
async fn main() {
    let args = args();
    let Some(binary) = server::nats_server_binary() else {
        println!("nats-server not found (install it, or set NATS_SERVER_BIN): nothing to measure");
        return;
    };
    let server = server::NatsServer::start_with(binary);
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = jetstream::new(client.clone());

    let dir = tempfile::tempdir().expect("a temporary directory");
    let sqlite = es_sqlite::AsyncSqliteStore::open(dir.path().join("events.db"))
        .await
        .expect("SQLite");
    case("sqlite", &args, &client, &js, sqlite, StopHandle::new()).await;

    let Ok(url) = std::env::var("ES_POSTGRES_URL") else {
        println!("postgres: skipped (set ES_POSTGRES_URL)");
        return;
    };
    for listen in [false, true] {
        let schema = format!(
            "es_bench_e2e_{}_{}",
            if listen { "listen" } else { "poll" },
            std::process::id()
        );
        let store = es_postgres::AsyncPostgresStore::connect_with_schema(&url, &schema)
            .await
            .expect("PostgreSQL");
        let stop = StopHandle::new();
        let listener = if listen {
            Some(store.listen(&stop).await.expect("listen"))
        } else {
            None
        };
        let name = if listen {
            "postgres listen"
        } else {
            "postgres"
        };
        case(name, &args, &client, &js, store, stop).await;
        drop(listener);
        let (url, schema) = (url.clone(), schema.clone());
        tokio::task::spawn_blocking(move || {
            let mut client = es_postgres::connect_client(&url).expect("connect");
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .expect("drop the bench schema");
        })
        .await
        .expect("drop");
    }
}
