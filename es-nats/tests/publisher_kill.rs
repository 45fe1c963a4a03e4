//! Exactly once under SIGKILL: a publisher process killed at random points, many times,
//! while events are appended, leaves every event in the JetStream stream exactly once, in
//! global order.
//!
//! The test re-runs this test binary as a child process (the ignored `publisher_child`
//! test, which only works when `ES_NATS_KILL_DB` is set). The child runs the publisher over
//! a SQLite log file in small batches and ack windows, so that kills land between publishes,
//! between acks, and between the acks and the checkpoint. The parent appends events while
//! the child runs, kills it with SIGKILL after a random delay, and checks that the stream
//! holds a prefix of the log, each event once. At the end a last publisher runs to the end
//! of the log and the stream holds all of it exactly once.

mod publisher_common;
mod support {
    pub mod server;
}

use std::time::{Duration, Instant};

use es_nats::{Publisher, PublisherOptions, StopHandle, wire};
use es_sqlite::AsyncSqliteStore;
use es_store_tests::crash::{self as kill, Lcg};
use publisher_common::{append, append_backlog, assert_exactly_once, connect, log, messages};
use support::server::nats_server_or_skip;

/// Kill rounds.
const ROUNDS: u64 = 25;
/// Events appended before each child starts (a backlog it is killed while publishing,
/// mostly); more follow one by one while it runs.
const EVENTS_BEFORE: u64 = 150;
/// What the child prints once it is about to publish.
const READY: &str = "es-nats-publisher-ready";
/// Every child is the same instance restarted: it takes its own lease back at once.
const OWNER: &str = "kill-test-publisher";

fn child_options() -> PublisherOptions {
    PublisherOptions {
        owner: OWNER.to_owned(),
        batch_size: 7,
        ack_window: 3,
        ..Default::default()
    }
}

/// The child: publish until killed.
#[test]
#[ignore = "child process of `exactly_once_under_sigkill`"]
fn publisher_child() {
    let (Some(path), Some(url)) = (
        std::env::var_os("ES_NATS_KILL_DB"),
        std::env::var("ES_NATS_KILL_URL").ok(),
    ) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the child");
    runtime.block_on(async {
        let store = AsyncSqliteStore::open(&path)
            .await
            .expect("the child opens the log");
        let js = connect(&url).await;
        let mut publisher =
            Publisher::new(js, store.clone(), store, child_options()).expect("valid options");
        println!("{READY}");
        let stop = StopHandle::new();
        let result = publisher.run(&stop).await;
        panic!("the publisher's run ended before the kill: {result:?}");
    });
}

/// Starts a child; returns it once it is about to publish.
fn spawn_child(path: &std::path::Path, url: &str) -> std::process::Child {
    let path = path.to_str().expect("a UTF-8 temporary path");
    kill::spawn_child(
        "publisher_child",
        &[("ES_NATS_KILL_DB", path), ("ES_NATS_KILL_URL", url)],
        READY,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_under_sigkill() {
    let Some(server) = nats_server_or_skip() else {
        return;
    };
    let js = connect(&server.url()).await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("log.db");
    let store = AsyncSqliteStore::open(&path).await.expect("open the log");
    let seed = std::env::var("ES_NATS_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(Lcg::seed);
    eprintln!("kill test seed: {seed} (set ES_NATS_KILL_SEED to replay)");
    let mut rng = Lcg::new(seed);
    let mut next = 0u64;
    let mut killed_with_lag = 0;
    // Events each child got into the stream before it was killed.
    let (mut progress, mut before) = (Vec::new(), 0);
    for round in 0..ROUNDS {
        append_backlog(&store, next, EVENTS_BEFORE).await;
        next += EVENTS_BEFORE;
        let mut child = spawn_child(&path, &server.url());
        // Keep appending while the child publishes; kill it after a random delay.
        let deadline = Instant::now() + Duration::from_millis(rng.next(80));
        while Instant::now() < deadline {
            append(&store, next, 1).await;
            next += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap the child");

        // The stream holds a prefix of the log, each event once.
        let stored: Vec<u64> = log(&store)
            .await
            .iter()
            .map(|e| e.global_position)
            .collect();
        let published: Vec<u64> = messages(&js, wire::DEFAULT_STREAM)
            .await
            .iter()
            .map(|m| m.event.global_position)
            .collect();
        assert!(
            published.len() <= stored.len() && published[..] == stored[..published.len()],
            "round {round} (seed {seed}): the stream is not a prefix of the log: {} messages, {} events",
            published.len(),
            stored.len()
        );
        if published.len() < stored.len() {
            killed_with_lag += 1;
        }
        progress.push(published.len() - before);
        before = published.len();
    }
    eprintln!(
        "{killed_with_lag} of {ROUNDS} kills left events to publish; events each child published: {progress:?}"
    );
    assert!(
        progress.iter().filter(|&&n| n > 0).count() as u64 > ROUNDS / 2,
        "most children publish something before they are killed: {progress:?}"
    );

    // A last run to the end of the log, as the same instance.
    let mut publisher = Publisher::new(js.clone(), store.clone(), store.clone(), child_options())
        .expect("valid options");
    let done = publisher.catch_up().await.expect("the last catch-up");
    assert_eq!(done.duplicates, 0, "seed {seed}");
    assert_eq!(
        assert_exactly_once(&js, &store, wire::DEFAULT_STREAM).await as u64,
        next,
        "seed {seed}"
    );
}
