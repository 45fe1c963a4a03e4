//! The publisher over a PostgreSQL log (`es_postgres::AsyncPostgresStore`), in a fresh
//! schema dropped afterwards: every event once, in global order, also while appends commit
//! concurrently (PostgreSQL hands out only the prefix of the log below transactions still
//! in flight, and the publisher never skips ahead of it).
//!
//! Needs a server: set `ES_POSTGRES_URL` (e.g. `eval "$(bash .ci/postgres.sh)"` at the
//! workspace root). Without it the test is skipped with a message, except under CI (`CI`
//! set), where it fails. Without nats-server likewise.

mod publisher_common;
mod support {
    pub mod server;
}

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use es_nats::{Publisher, PublisherOptions, StopHandle, wire};
use es_postgres::AsyncPostgresStore;
use publisher_common::{append, assert_exactly_once, connect};
use support::server::nats_server_or_skip;

/// The server URL, or `None` (with a message) when the test should be skipped.
fn postgres_url() -> Option<String> {
    match std::env::var("ES_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "ES_POSTGRES_URL is not set, but the PostgreSQL tests are required in CI: start a \
             server (`eval \"$(bash .ci/postgres.sh)\"`) and export its URL"
        ),
        _ => {
            eprintln!(
                "skipped: ES_POSTGRES_URL is not set (run `eval \"$(bash .ci/postgres.sh)\"` to \
                 start a local PostgreSQL and set it)"
            );
            None
        }
    }
}

/// A schema no other test run uses, dropped when the test ends.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn new(url: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .subsec_nanos();
        Self {
            url: url.to_owned(),
            name: format!(
                "es_nats_test_{}_{}_{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // On a thread of its own: the sync client must not run inside the test's runtime.
        let (url, name) = (self.url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            es_postgres::connect_client(&url).map(|mut client| {
                client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(Ok(())))) {
            eprintln!("could not drop test schema {}", self.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_a_postgres_log_exactly_once_while_appends_commit() {
    let Some(url) = postgres_url() else {
        return;
    };
    let Some(server) = nats_server_or_skip() else {
        return;
    };
    let schema = Schema::new(&url);
    let store = AsyncPostgresStore::connect_with_schema(&url, &schema.name)
        .await
        .expect("connect to PostgreSQL");
    let js = connect(&server.url()).await;
    append(&store, 0, 200).await;

    let options = PublisherOptions {
        owner: "pg-test".to_owned(),
        batch_size: 64,
        ..Default::default()
    };
    let mut publisher =
        Publisher::new(js.clone(), store.clone(), store.clone(), options.clone()).unwrap();
    let done = publisher.catch_up().await.expect("catch up");
    assert_eq!(done.published, 200);
    assert_eq!(
        assert_exactly_once(&js, &store, wire::DEFAULT_STREAM).await,
        200
    );

    // Concurrent appenders commit out of position order; the running publisher must
    // neither skip nor double any of them.
    let stop = StopHandle::new();
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { publisher.run(&stop).await }
    });
    let appenders: Vec<_> = (0..4u64)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..50u64 {
                    append(&store, 1000 + task * 100 + i, 1).await;
                }
            })
        })
        .collect();
    for appender in appenders {
        appender.await.expect("appender");
    }
    let checker = Publisher::new(js.clone(), store.clone(), store.clone(), options).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while checker.lag().await.expect("lag") > 0 {
        assert!(Instant::now() < deadline, "the publisher catches up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.stop();
    running.await.unwrap().expect("run ends without error");
    assert_eq!(
        assert_exactly_once(&js, &store, wire::DEFAULT_STREAM).await,
        400
    );
}

/// With pauses far longer than the test, only a wake-up gets a new event published: the
/// PostgreSQL listener (`AsyncPostgresStore::listen`) wakes the publisher through the same
/// `StopHandle` that stops it, at each append that commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_listener_wakes_the_publisher_at_each_commit() {
    let Some(url) = postgres_url() else {
        return;
    };
    let Some(server) = nats_server_or_skip() else {
        return;
    };
    let schema = Schema::new(&url);
    let store = AsyncPostgresStore::connect_with_schema(&url, &schema.name)
        .await
        .expect("connect to PostgreSQL");
    let js = connect(&server.url()).await;
    let options = PublisherOptions {
        owner: "pg-listen".to_owned(),
        min_delay: Duration::from_secs(600),
        max_delay: Duration::from_secs(600),
        ..Default::default()
    };
    let stop = StopHandle::new();
    let _listener = store.listen(&stop).await.expect("listen");
    let mut publisher =
        Publisher::new(js.clone(), store.clone(), store.clone(), options.clone()).unwrap();
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { publisher.run(&stop).await }
    });
    let checker = Publisher::new(js.clone(), store.clone(), store.clone(), options).unwrap();
    for round in 0..3u64 {
        append(&store, round * 10, 2).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let position = checker.position().await.unwrap_or(0);
            if position >= (round + 1) * 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: no wake-up, the stream ends at position {position}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    stop.stop();
    running.await.unwrap().expect("run ends without error");
    assert_eq!(
        assert_exactly_once(&js, &store, wire::DEFAULT_STREAM).await,
        6
    );
}
