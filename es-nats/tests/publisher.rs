//! The publisher against a real nats-server (started per test by `support/server.rs`),
//! over the in-memory store and SQLite files: every event once, in global order, with
//! every header; resuming without duplicates, also without a saved checkpoint and beyond
//! the dedupe window; NATS restarts while running; permanent failures; lag; the lease.
//!
//! Without nats-server the tests are skipped with a printed reason (they fail with `CI`
//! set).

mod publisher_common;
mod support {
    pub mod server;
}

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use es_core::{
    AsyncCheckpointStore, AsyncEventStore, ExpectedVersion, InMemoryStore, Lease, Metadata,
    NewEvent, StreamRef,
};
use es_nats::wire;
use es_nats::{PublishError, Publisher, PublisherOptions, StopHandle};
use es_sqlite::AsyncSqliteStore;
use publisher_common::{append, assert_exactly_once, connect, messages};
use serde_json::json;
use support::server::nats_server_or_skip;

const STREAM: &str = wire::DEFAULT_STREAM;

fn options() -> PublisherOptions {
    PublisherOptions {
        owner: "test-publisher".to_owned(),
        ..Default::default()
    }
}

async fn sqlite(dir: &tempfile::TempDir) -> AsyncSqliteStore {
    AsyncSqliteStore::open(dir.path().join("log.db"))
        .await
        .expect("open the SQLite log")
}

/// Waits until `f` holds, polling; panics with `what` after `timeout`.
async fn eventually<F: AsyncFnMut() -> bool>(timeout: Duration, what: &str, mut f: F) {
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_every_event_once_in_global_order_with_all_headers() {
    let Some(server) = nats_server_or_skip() else {
        return;
    };
    let js = connect(&server.url()).await;
    let store = InMemoryStore::new();
    append(&store, 0, 300).await;

    let mut publisher =
        Publisher::new(js.clone(), store.clone(), store.clone(), options()).expect("valid options");
    let done = publisher.catch_up().await.expect("catch up");
    assert_eq!(done.published, 300);
    assert_eq!(done.duplicates, 0);
    assert_eq!(done.position, 300);
    assert_eq!(assert_exactly_once(&js, &store, STREAM).await, 300);

    // Every header of the format, on the events that have metadata ids too.
    let all = messages(&js, STREAM).await;
    for message in &all {
        for header in [
            wire::NATS_MSG_ID,
            wire::EVENT_ID,
            wire::AGGREGATE_TYPE,
            wire::STREAM_ID,
            wire::STREAM_VERSION,
            wire::GLOBAL_POSITION,
            wire::EVENT_TYPE,
            wire::SCHEMA_VERSION,
            wire::RECORDED_AT,
        ] {
            assert!(message.headers.get(header).is_some(), "{header} missing");
        }
        let n = message.event.global_position - 1;
        let with_metadata = n % 3 == 0;
        for header in [wire::CORRELATION_ID, wire::CAUSATION_ID, wire::METADATA] {
            assert_eq!(
                message.headers.get(header).is_some(),
                with_metadata,
                "{header} at {n}"
            );
        }
        if with_metadata {
            assert_eq!(
                message.event.correlation_id.as_deref(),
                Some(format!("corr-{n}").as_str())
            );
            assert_eq!(
                message.event.causation_id.as_deref(),
                Some(format!("cause\n{n}").as_str())
            );
        }
    }
    // The checkpoint is saved.
    assert_eq!(
        AsyncCheckpointStore::load_checkpoint(&store, "es-nats-publisher")
            .await
            .unwrap(),
        300
    );
    // Nothing new: nothing published.
    let again = publisher.catch_up().await.expect("catch up again");
    assert_eq!((again.published, again.position), (0, 300));
    assert_eq!(messages(&js, STREAM).await.len(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_after_a_restart_of_the_publisher_does_not_duplicate() {
    let Some(server) = nats_server_or_skip() else {
        return;
    };
    let js = connect(&server.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(&dir).await;
    let small = PublisherOptions {
        batch_size: 17,
        ack_window: 5,
        ..options()
    };
    append(&store, 0, 120).await;
    for round in 0..3u64 {
        // A new publisher (and a new store handle) per round: a restarted process.
        let store = sqlite(&dir).await;
        let mut publisher =
            Publisher::new(js.clone(), store.clone(), store.clone(), small.clone()).unwrap();
        let done = publisher.catch_up().await.expect("catch up");
        assert_eq!(
            done.published,
            if round == 0 { 120 } else { 40 },
            "round {round}"
        );
        assert_eq!(done.duplicates, 0);
        assert_exactly_once(&js, &store, STREAM).await;
        append(&store, 120 + 40 * round, 40).await;
    }
    let mut publisher = Publisher::new(js.clone(), store.clone(), store.clone(), small).unwrap();
    publisher.catch_up().await.expect("last catch up");
    assert_eq!(assert_exactly_once(&js, &store, STREAM).await, 240);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_that_was_not_saved_republishes_nothing_even_beyond_the_dedupe_window() {
    let Some(server) = nats_server_or_skip() else {
        return;
    };
    let js = connect(&server.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(&dir).await;
    // A dedupe window of 1 s, waited out: only the resume rule can prevent duplicates.
    let options = PublisherOptions {
        duplicate_window: Duration::from_secs(1),
        batch_size: 50,
        ..options()
    };
    append(&store, 0, 100).await;
    let mut publisher =
        Publisher::new(js.clone(), store.clone(), store.clone(), options.clone()).unwrap();
    assert_eq!(publisher.catch_up().await.unwrap().published, 100);
    drop(publisher);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // A crash after the acks, before the checkpoint: the checkpoint is back at 0 (or was
    // never written).
    AsyncCheckpointStore::save_checkpoint(&store, &options.name, 0)
        .await
        .unwrap();
    append(&store, 100, 30).await;
    let mut publisher =
        Publisher::new(js.clone(), store.clone(), store.clone(), options.clone()).unwrap();
    assert_eq!(
        publisher.position().await.unwrap(),
        100,
        "the stream gives the resume position"
    );
    let done = publisher.catch_up().await.unwrap();
    assert_eq!(
        (done.published, done.duplicates, done.position),
        (30, 0, 130)
    );
    assert_eq!(assert_exactly_once(&js, &store, STREAM).await, 130);

    // And without any checkpoint at all.
    AsyncCheckpointStore::delete_checkpoint(&store, &options.name)
        .await
        .unwrap();
    let mut publisher = Publisher::new(js.clone(), store.clone(), store.clone(), options).unwrap();
    assert_eq!(publisher.catch_up().await.unwrap().published, 0);
    assert_eq!(assert_exactly_once(&js, &store, STREAM).await, 130);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_follows_the_log_and_stops_on_request() {
    let Some(server) = nats_server_or_skip() else {
        return;
    };
    let js = connect(&server.url()).await;
    let store = Arc::new(InMemoryStore::new());
    append(&*store, 0, 10).await;
    let mut publisher =
        Publisher::new(js.clone(), store.clone(), store.clone(), options()).unwrap();
    let status = publisher.status();
    let stop = StopHandle::new();
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { publisher.run(&stop).await }
    });
    for round in 1..=5u64 {
        append(&*store, 10 * round, 10).await;
        let target = 10 * (round + 1);
        let mut status = status.clone();
        eventually(
            Duration::from_secs(10),
            "the new events are published",
            async || status.borrow_and_update().position == target,
        )
        .await;
    }
    stop.stop();
    let published = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("run stops promptly")
        .expect("run does not panic")
        .expect("run ends without error");
    assert_eq!(published, 60);
    assert_eq!(assert_exactly_once(&js, &*store, STREAM).await, 60);
    // The lease was given up: another owner takes it at once.
    let lease = AsyncCheckpointStore::acquire_lease(
        &*store,
        "es-nats-publisher",
        "someone-else",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(matches!(lease, Lease::Acquired { .. }), "{lease:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_is_locked_out_or_waits() {
    let Some(server) = nats_server_or_skip() else {
        return;
    };
    let js = connect(&server.url()).await;
    let store = Arc::new(InMemoryStore::new());
    append(&*store, 0, 20).await;
    let held = AsyncCheckpointStore::acquire_lease(
        &*store,
        "es-nats-publisher",
        "the-other-instance",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert!(matches!(held, Lease::Acquired { .. }));

    let mut publisher =
        Publisher::new(js.clone(), store.clone(), store.clone(), options()).unwrap();
    let error = publisher.catch_up().await.expect_err("locked");
    assert!(
        matches!(error, PublishError::Locked { ref owner, .. } if owner == "the-other-instance"),
        "{error}"
    );
    assert!(error.to_string().contains("the-other-instance"), "{error}");
    assert!(
        messages(&js, STREAM).await.is_empty(),
        "nothing published while locked"
    );

    // `run` waits for the lease, then publishes.
    let status = publisher.status();
    let stop = StopHandle::new();
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { publisher.run(&stop).await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        messages(&js, STREAM).await.is_empty(),
        "still waiting for the lease"
    );
    AsyncCheckpointStore::release_lease(&*store, "es-nats-publisher", "the-other-instance")
        .await
        .unwrap();
    let mut status = status.clone();
    eventually(
        Duration::from_secs(10),
        "the waiting instance publishes",
        async || status.borrow_and_update().position == 20,
    )
    .await;
    stop.stop();
    running.await.unwrap().unwrap();
    assert_eq!(assert_exactly_once(&js, &*store, STREAM).await, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_that_may_not_be_created_is_a_permanent_error() {
    let Some(server) = nats_server_or_skip() else {
        return;
    };
    let js = connect(&server.url()).await;
    let store = InMemoryStore::new();
    append(&store, 0, 5).await;
    let options = PublisherOptions {
        create_stream: false,
        stream_name: "NOT_THERE".to_owned(),
        ..options()
    };
    let mut publisher = Publisher::new(js.clone(), store.clone(), store.clone(), options).unwrap();
    let error = publisher.catch_up().await.expect_err("no stream");
    assert!(
        matches!(error, PublishError::StreamMissing { .. }),
        "{error}"
    );
    assert!(!error.is_transient());
    let text = error.to_string();
    assert!(
        text.contains("NOT_THERE") && text.contains("es.>") && text.contains("create_stream"),
        "{text}"
    );
    // `run` does not retry it either.
    let stop = StopHandle::new();
    let error = tokio::time::timeout(Duration::from_secs(5), publisher.run(&stop))
        .await
        .expect("run gives up at once")
        .expect_err("no stream");
    assert!(
        matches!(error, PublishError::StreamMissing { .. }),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_does_not_take_the_subjects_is_a_permanent_error() {
    let Some(server) = nats_server_or_skip() else {
        return;
    };
    let js = connect(&server.url()).await;
    js.create_stream(jetstream::stream::Config {
        name: STREAM.to_owned(),
        subjects: vec!["other.>".to_owned()],
        ..Default::default()
    })
    .await
    .unwrap();
    let store = InMemoryStore::new();
    append(&store, 0, 5).await;
    let mut publisher =
        Publisher::new(js.clone(), store.clone(), store.clone(), options()).unwrap();
    let error = publisher.catch_up().await.expect_err("wrong subjects");
    assert!(
        matches!(error, PublishError::StreamSubjects { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("other.>"), "{error}");

    // A second stream cannot take `es.>` while... it does not overlap: creating one under
    // another name for the same subjects works, but a stream whose subjects overlap an
    // existing one is refused by JetStream: a clear creation error.
    js.create_stream(jetstream::stream::Config {
        name: "TAKEN".to_owned(),
        subjects: vec!["es.1.>".to_owned()],
        ..Default::default()
    })
    .await
    .unwrap();
    let options = PublisherOptions {
        stream_name: "NEW_ONE".to_owned(),
        ..options()
    };
    let mut publisher = Publisher::new(js.clone(), store.clone(), store.clone(), options).unwrap();
    let error = publisher.catch_up().await.expect_err("overlap");
    assert!(
        matches!(error, PublishError::StreamCreate { .. }),
        "{error}"
    );
    assert!(!error.is_transient());
    assert!(error.to_string().contains("NEW_ONE"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_larger_than_the_server_accepts_is_a_permanent_error() {
    let Some(server) = nats_server_or_skip() else {
        return;
    };
    let js = connect(&server.url()).await;
    let store = InMemoryStore::new();
    append(&store, 0, 3).await;
    // nats-server accepts 1 MiB by default.
    let big = NewEvent::new(
        "Huge",
        1,
        json!({ "blob": "x".repeat(1_200_000) }),
        Metadata::new(),
    );
    let big_id = big.event_id;
    AsyncEventStore::append(
        &store,
        StreamRef::new("Blob", "b-1"),
        ExpectedVersion::Any,
        &[big],
    )
    .await
    .unwrap();
    append(&store, 3, 2).await;
    let mut publisher =
        Publisher::new(js.clone(), store.clone(), store.clone(), options()).unwrap();
    let error = publisher.catch_up().await.expect_err("too large");
    assert!(
        matches!(error, PublishError::TooLarge { position: 4, .. }),
        "{error}"
    );
    assert!(!error.is_transient());
    assert!(error.to_string().contains(&big_id.to_string()), "{error}");
    // What came before it is published, once; nothing after it.
    let positions: Vec<u64> = messages(&js, STREAM)
        .await
        .iter()
        .map(|m| m.event.global_position)
        .collect();
    assert_eq!(positions, [1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_counts_the_events_not_yet_in_the_stream() {
    let Some(server) = nats_server_or_skip() else {
        return;
    };
    let js = connect(&server.url()).await;
    let store = InMemoryStore::new();
    let mut publisher =
        Publisher::new(js.clone(), store.clone(), store.clone(), options()).unwrap();
    assert_eq!(publisher.lag().await.unwrap(), 0, "empty log, no stream");
    append(&store, 0, 100).await;
    assert_eq!(publisher.lag().await.unwrap(), 100, "no stream yet");
    publisher.catch_up().await.unwrap();
    assert_eq!(publisher.lag().await.unwrap(), 0);
    append(&store, 100, 7).await;
    assert_eq!(publisher.lag().await.unwrap(), 7);
    // Another instance (not running) sees the same.
    let other = Publisher::new(js.clone(), store.clone(), store.clone(), options()).unwrap();
    assert_eq!(other.lag().await.unwrap(), 7);
    assert_eq!(other.position().await.unwrap(), 100);
    publisher.catch_up().await.unwrap();
    assert_eq!(other.lag().await.unwrap(), 0);
    append(&store, 107, 1000).await;
    assert_eq!(other.lag().await.unwrap(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarts_while_running_lose_and_double_nothing() {
    let Some(mut server) = nats_server_or_skip() else {
        return;
    };
    let js = connect(&server.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(&dir).await;
    append(&store, 0, 200).await;
    let options = PublisherOptions {
        batch_size: 50,
        ack_window: 20,
        max_retry_delay: Duration::from_millis(300),
        ..options()
    };
    // The client buffers publishes while it reconnects, and acks that come within the
    // context's timeout just arrive late: a timeout shorter than the 700 ms the server is
    // down makes acks time out, so that the run also re-derives where the stream ends.
    let impatient = jetstream::ContextBuilder::new()
        .timeout(Duration::from_millis(500))
        .build(js.client());
    let mut publisher =
        Publisher::new(impatient, store.clone(), store.clone(), options.clone()).unwrap();
    let status = publisher.status();
    let stop = StopHandle::new();
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { publisher.run(&stop).await }
    });
    // Events keep coming while the server goes down and up again, until the restarts
    // are over.
    let restarting = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let appending = tokio::spawn({
        let (store, restarting) = (store.clone(), restarting.clone());
        async move {
            let mut n = 200;
            while restarting.load(std::sync::atomic::Ordering::SeqCst) {
                append(&store, n, 5).await;
                n += 5;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            n
        }
    });
    for cycle in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server = tokio::task::spawn_blocking(move || {
            // Clean shutdowns (SIGTERM) and one crash (SIGKILL: what the server acked is in
            // its files already, in the OS's cache).
            if cycle == 1 {
                server.kill();
            } else {
                server.stop();
            }
            std::thread::sleep(Duration::from_millis(700));
            server.start_again();
            server
        })
        .await
        .unwrap();
    }
    restarting.store(false, std::sync::atomic::Ordering::SeqCst);
    let total = appending.await.unwrap();
    let checker = Publisher::new(js.clone(), store.clone(), store.clone(), options).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match checker.lag().await {
            Ok(0) => break,
            Ok(_) | Err(_) => {
                assert!(
                    Instant::now() < deadline,
                    "the publisher catches up after the restarts: {:?}",
                    status.borrow()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    stop.stop();
    running.await.unwrap().expect("run rides out the restarts");
    let status = status.borrow().clone();
    eprintln!(
        "{} transient failures ridden out, the last: {:?}",
        status.failures, status.last_error
    );
    assert!(status.failures > 0, "acks timed out during the restarts");
    assert_eq!(assert_exactly_once(&js, &store, STREAM).await as u64, total);
}

/// The in-memory store, whose `visit_all` fails (as a busy or unreachable database would)
/// while `failures` is above zero, or reports a corrupt event when `corrupt` is set.
#[derive(Clone, Default)]
struct FlakyStore {
    inner: InMemoryStore,
    failures: Arc<std::sync::atomic::AtomicU32>,
    corrupt: Arc<std::sync::atomic::AtomicBool>,
}

impl AsyncEventStore for FlakyStore {
    async fn append_with(
        &self,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: &[NewEvent],
        options: es_core::AppendOptions<'_>,
    ) -> Result<es_core::AppendOutcome, es_core::StoreError> {
        AsyncEventStore::append_with(&self.inner, stream, expected, events, options).await
    }

    async fn find_idempotency_key(
        &self,
        stream: StreamRef<'_>,
        key: &str,
    ) -> Result<Option<es_core::AppendOutcome>, es_core::StoreError> {
        AsyncEventStore::find_idempotency_key(&self.inner, stream, key).await
    }

    async fn visit_stream(
        &self,
        stream: StreamRef<'_>,
        versions: std::ops::RangeInclusive<u64>,
        visitor: &mut es_core::AsyncVisitor<'_>,
    ) -> Result<(), es_core::StoreError> {
        AsyncEventStore::visit_stream(&self.inner, stream, versions, visitor).await
    }

    async fn visit_all(
        &self,
        from: u64,
        limit: usize,
        visitor: &mut es_core::AsyncVisitor<'_>,
    ) -> Result<(), es_core::StoreError> {
        use std::sync::atomic::Ordering;
        if self.corrupt.load(Ordering::SeqCst) {
            return Err(es_core::StoreError::Corrupt {
                stream: StreamRef::new("BankAccount", "acc-1").to_key(),
                version: 1,
                global_position: from,
                event_type: "Opened".to_owned(),
                reason: "payload is not valid JSON".to_owned(),
            });
        }
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(es_core::StoreError::backend("database is locked"));
        }
        AsyncEventStore::visit_all(&self.inner, from, limit, visitor).await
    }

    async fn stream_version(&self, stream: StreamRef<'_>) -> Result<u64, es_core::StoreError> {
        AsyncEventStore::stream_version(&self.inner, stream).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failures_are_ridden_out_by_run_and_corruption_stops_it() {
    use std::sync::atomic::Ordering;
    let Some(server) = nats_server_or_skip() else {
        return;
    };
    let js = connect(&server.url()).await;
    let store = FlakyStore::default();
    append(&store, 0, 50).await;
    let options = PublisherOptions {
        batch_size: 10,
        max_retry_delay: Duration::from_millis(50),
        ..options()
    };
    // A one-shot catch-up reports a transient failure.
    store.failures.store(1, Ordering::SeqCst);
    let mut publisher =
        Publisher::new(js.clone(), store.clone(), store.inner.clone(), options).unwrap();
    let error = publisher.catch_up().await.expect_err("busy store");
    assert!(matches!(error, PublishError::Store { .. }), "{error}");
    assert!(error.is_transient());
    assert!(error.to_string().contains("database is locked"), "{error}");

    // `run` rides out several in a row.
    store.failures.store(5, Ordering::SeqCst);
    let status = publisher.status();
    let stop = StopHandle::new();
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { (publisher.run(&stop).await, publisher) }
    });
    let mut watch = status.clone();
    eventually(Duration::from_secs(10), "all is published", async || {
        watch.borrow_and_update().position == 50
    })
    .await;
    assert_eq!(
        store.failures.load(Ordering::SeqCst),
        0,
        "every failure was hit"
    );
    assert_eq!(assert_exactly_once(&js, &store, STREAM).await, 50);

    // A corrupt event is permanent: the run ends with it.
    store.corrupt.store(true, Ordering::SeqCst);
    append(&store, 50, 1).await;
    let (result, _publisher) = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("run ends on its own")
        .unwrap();
    let error = result.expect_err("corrupt event");
    assert!(
        matches!(error, PublishError::StoreRefused { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("corrupt"), "{error}");
    stop.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_racing_without_a_common_lease_still_publish_each_event_once() {
    let Some(server) = nats_server_or_skip() else {
        return;
    };
    let js = connect(&server.url()).await;
    let store = InMemoryStore::new();
    append(&store, 0, 2000).await;
    // Different names: different leases, as after a lease expired under a stalled
    // instance. Only the stream's expected last sequence (and the dedupe window) fence
    // them.
    let instance = |name: &str| {
        Publisher::new(
            js.clone(),
            store.clone(),
            store.clone(),
            PublisherOptions {
                name: name.to_owned(),
                batch_size: 100,
                ack_window: 10,
                ..options()
            },
        )
        .unwrap()
    };
    let (mut a, mut b) = (instance("racer-a"), instance("racer-b"));
    let race = async |publisher: &mut Publisher<InMemoryStore, InMemoryStore>| {
        let mut moved = 0;
        loop {
            match publisher.catch_up().await {
                Ok(done) => return (done, moved),
                Err(PublishError::StreamMoved { .. }) => moved += 1,
                Err(error) => panic!("unexpected failure: {error}"),
            }
        }
    };
    let ((done_a, moved_a), (done_b, moved_b)) = tokio::join!(race(&mut a), race(&mut b));
    eprintln!("a: {done_a:?} after {moved_a} moves, b: {done_b:?} after {moved_b} moves");
    assert_eq!(assert_exactly_once(&js, &store, STREAM).await, 2000);

    // Beyond the dedupe window, the expected last sequence alone keeps a stale instance
    // from publishing again what another one published after it last looked.
    js.delete_stream(STREAM).await.unwrap();
    js.create_stream(jetstream::stream::Config {
        name: STREAM.to_owned(),
        subjects: vec![wire::all_filter(wire::DEFAULT_PREFIX)],
        duplicate_window: Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .unwrap();
    for name in ["racer-a", "racer-b"] {
        AsyncCheckpointStore::delete_checkpoint(&store, name)
            .await
            .unwrap();
    }
    let fresh = InMemoryStore::new();
    let instance = |name: &str| {
        Publisher::new(
            js.clone(),
            fresh.clone(),
            fresh.clone(),
            PublisherOptions {
                name: name.to_owned(),
                // Smaller than the gap: the stale first batch lies wholly below the end.
                batch_size: 100,
                ..options()
            },
        )
        .unwrap()
    };
    let (mut stale, mut other) = (instance("racer-a"), instance("racer-b"));
    append(&fresh, 0, 500).await;
    assert_eq!(stale.catch_up().await.unwrap().published, 500);
    append(&fresh, 500, 500).await;
    assert_eq!(other.catch_up().await.unwrap().published, 500);
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&fresh, 1000, 10).await;
    // `stale` still believes the stream ends at event 500: its first publish is refused
    // (the stream moved), it re-reads the stream's end and publishes the 10 new ones only.
    let done = stale.catch_up().await.unwrap();
    assert_eq!(
        (done.published, done.duplicates, done.position),
        (10, 0, 1010)
    );
    assert_eq!(assert_exactly_once(&js, &fresh, STREAM).await, 1010);
}

/// A stream deleted (and re-created) behind the publisher's back would miss every event
/// up to the checkpoint for good: the publisher refuses, names the way out, and once the
/// checkpoint is deleted it publishes the whole log again, each event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_created_stream_behind_the_checkpoint_is_refused_until_the_checkpoint_goes() {
    let Some(server) = nats_server_or_skip() else {
        return;
    };
    let js = connect(&server.url()).await;
    let store = InMemoryStore::new();
    append(&store, 0, 20).await;
    let mut publisher =
        Publisher::new(js.clone(), store.clone(), store.clone(), options()).unwrap();
    assert_eq!(publisher.catch_up().await.unwrap().published, 20);

    js.delete_stream(STREAM).await.expect("delete the stream");
    append(&store, 20, 5).await;
    // The first call may still publish to the stream it knew, and find it gone (a
    // transient error: the stream may be coming back); the next looks again.
    let mut error = publisher
        .catch_up()
        .await
        .expect_err("the stream lost its events");
    if error.is_transient() {
        error = publisher
            .catch_up()
            .await
            .expect_err("the stream lost its events");
    }
    assert!(
        matches!(error, PublishError::StreamReset { checkpoint: 20, .. }),
        "{error}"
    );
    assert!(!error.is_transient(), "run does not go on past it either");
    let text = error.to_string();
    assert!(text.contains("delete the checkpoint"), "{text}");
    let stop = StopHandle::new();
    let run = tokio::time::timeout(Duration::from_secs(10), publisher.run(&stop))
        .await
        .expect("run stops at once");
    assert!(
        matches!(run, Err(PublishError::StreamReset { .. })),
        "{run:?}"
    );

    store
        .delete_checkpoint(es_nats::DEFAULT_PUBLISHER_NAME)
        .await
        .unwrap();
    let mut publisher =
        Publisher::new(js.clone(), store.clone(), store.clone(), options()).unwrap();
    assert_eq!(publisher.catch_up().await.unwrap().published, 25);
    assert_eq!(assert_exactly_once(&js, &store, STREAM).await, 25);
}

/// A JetStream context that allows fewer acks in flight than the publisher's window
/// used to stall it for good (every permit held by its own pending acks); it now keeps
/// the window to what the context allows, and publishes everything once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_with_fewer_acks_in_flight_than_the_window_does_not_stall() {
    let Some(server) = nats_server_or_skip() else {
        return;
    };
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(8)
        .build(client);
    let store = InMemoryStore::new();
    append(&store, 0, 300).await;
    let options = PublisherOptions {
        ack_window: 100,
        ..options()
    };
    let mut publisher = Publisher::new(js.clone(), store.clone(), store.clone(), options).unwrap();
    let done = tokio::time::timeout(Duration::from_secs(30), publisher.catch_up())
        .await
        .expect("no stall")
        .expect("published");
    assert_eq!(done.published, 300);
    assert_eq!(assert_exactly_once(&js, &store, STREAM).await, 300);
}
