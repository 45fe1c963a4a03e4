//! The conformance suite against PostgreSQL through its async store (checkpoints included),
//! and what only async code can show: many tasks on a multi-threaded runtime, reads stopped
//! early or cancelled, connections that die in the pool or when used, a pool that stays
//! busy, and the sync and async stores serving one schema at once.
//!
//! Needs a server: set `ES_POSTGRES_URL` (e.g. `eval "$(bash .ci/postgres.sh)"`). Without
//! it the tests are skipped with a message, except under CI (`CI` set), where they fail.
//! Every test works in a fresh schema, dropped afterwards.
//!
//! The tests are plain `#[test]`s that run the async store on a runtime of their own
//! ([`runtime`]), so that the sync monitoring client and the sync store can be used between
//! `block_on` calls, outside the runtime, as their documentation asks.

use std::ops::ControlFlow;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use es_core::{
    AppendOptions, AsyncEventStore, AsyncRepository, EventStore, ExecuteOptions, ExpectedVersion,
    Metadata, NewEvent, StoreError, StreamRef,
};
use es_postgres::postgres::Client;
use es_postgres::{AcquireTimeout, AsyncPostgresStore, Options, PostgresStore};
use es_store_tests::{Account, Fixture, events};

#[path = "support/postgres.rs"]
mod support;
use support::{Schema, fresh_schema, url, with_param};
#[path = "support/proxy.rs"]
mod proxy;
use proxy::{Cut, Proxy, server_address, via_port};

type Store = Fixture<AsyncPostgresStore, Schema>;

async fn make() -> Store {
    let url = url().expect("the caller checked that the server is configured");
    let name = fresh_schema();
    let store = AsyncPostgresStore::connect_with_schema(&url, &name)
        .await
        .expect("connect to PostgreSQL");
    Fixture::new(store, Schema { url, name })
}

/// A sync client to the server, for setting up damage and watching `pg_stat_activity`;
/// used outside the runtime.
fn monitor(url: &str) -> Client {
    es_postgres::connect_client(url).expect("connect a monitoring client")
}

/// `jsonb` cannot hold invalid JSON, so the damage is metadata of the wrong shape.
fn corrupt(store: &Store, stream: StreamRef<'_>, version: u64) {
    let changed = monitor(&store.guard().url)
        .execute(
            &format!(
                "UPDATE \"{}\".es_events SET metadata = '{{\"correlation_id\": 42}}' \
                 WHERE aggregate_type = $1 AND stream_id = $2 AND stream_version = $3",
                store.guard().name
            ),
            &[&stream.aggregate_type, &stream.id, &(version as i64)],
        )
        .unwrap();
    assert_eq!(changed, 1, "the row to corrupt exists");
}

es_store_tests::async_store_tests! {
    make: make,
    enabled: url().is_some(),
    durable: { corrupt: corrupt },
}

es_store_tests::async_checkpoint_tests! {
    make: make,
    enabled: url().is_some(),
}

/// A multi-threaded runtime with 4 workers.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("build a tokio runtime")
}

/// A store in a fresh schema whose connections carry a unique `application_name`, so
/// `pg_stat_activity` shows exactly this store's sessions. Returns the name too.
fn make_named(
    runtime: &tokio::runtime::Runtime,
    url: &str,
    options: Options,
) -> (AsyncPostgresStore, Schema, String) {
    let schema = Schema::new(url, "es_async");
    let app = format!("{}_app", schema.name);
    let store = runtime
        .block_on(AsyncPostgresStore::connect_with_options(
            &with_param(url, "application_name", &app),
            &schema.name,
            options,
        ))
        .expect("connect to PostgreSQL");
    (store, schema, app)
}

/// The backend pids of the sessions of `app`, those running a query (`state <> 'idle'`)
/// or all of them.
fn pids_of(monitor: &mut Client, app: &str, active_only: bool) -> Vec<i32> {
    monitor
        .query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 \
             AND (NOT $2 OR state <> 'idle') ORDER BY pid",
            &[&app, &active_only],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Waits (at most 5 seconds) until `done` holds; whether it did.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done()
}

/// Kills every session of `app` server-side and waits until they are gone.
fn kill_sessions(monitor: &mut Client, app: &str) -> usize {
    let killed = monitor
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid()",
            &[&app],
        )
        .unwrap()
        .len();
    assert!(
        eventually(|| pids_of(monitor, app, false).is_empty()),
        "the sessions of {app} were not terminated"
    );
    killed
}

/// Many tasks on a multi-threaded runtime increment one stream, each reading its version
/// and appending with `ExpectedVersion::Exact`, retrying on a conflict: every increment
/// lands exactly once, at contiguous versions and global positions.
#[test]
fn many_tasks_appending_to_one_stream_lose_no_update() {
    let Some(_) = url() else { return };
    let runtime = runtime();
    const TASKS: u64 = 8;
    const EACH: u64 = 12;
    let fixture = runtime.block_on(make());
    let store = fixture.store().clone();
    let conflicts = runtime.block_on(async {
        let stream = StreamRef::new("Counter", "contended");
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut conflicts = 0;
                    for i in 0..EACH {
                        loop {
                            let version = store.stream_version(stream).await.expect("version");
                            match store
                                .append(
                                    stream,
                                    ExpectedVersion::from_version(version),
                                    &events(t * 1_000 + i, 1),
                                )
                                .await
                            {
                                Ok(outcome) => {
                                    assert_eq!(outcome.stream_version, version + 1);
                                    break;
                                }
                                Err(error) if error.is_conflict() => conflicts += 1,
                                Err(error) => panic!("append failed: {error}"),
                            }
                        }
                    }
                    conflicts
                })
            })
            .collect();
        let mut conflicts = 0;
        for task in tasks {
            conflicts += task.await.expect("the task finished");
        }
        conflicts
    });
    let stream = StreamRef::new("Counter", "contended");
    let read = runtime.block_on(async { store.read_stream(stream, 1).await.unwrap() });
    assert_eq!(read.len() as u64, TASKS * EACH, "no update lost or doubled");
    let versions: Vec<u64> = read.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (1..=TASKS * EACH).collect::<Vec<_>>());
    let positions: Vec<u64> = read.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, (1..=TASKS * EACH).collect::<Vec<_>>());
    let mut payloads: Vec<String> = read.iter().map(|e| e.payload.get().to_owned()).collect();
    payloads.sort();
    payloads.dedup();
    assert_eq!(payloads.len() as u64, TASKS * EACH, "each increment once");
    eprintln!("{conflicts} conflicts were retried");
}

/// Appends 20 batches of 1,000 events of 2 KB: more than the socket buffers hold (about
/// 40 MB), so the server is still sending a full read when its visitor stops.
async fn append_a_long_stream(store: &AsyncPostgresStore, stream: StreamRef<'_>) {
    let pad = "x".repeat(2_000);
    for batch in 0..20u64 {
        let batch_events: Vec<_> = (0..1_000)
            .map(|n| {
                NewEvent::new(
                    "Numbered",
                    1,
                    serde_json::json!({ "n": batch * 1_000 + n, "pad": pad }),
                    Metadata::new(),
                )
            })
            .collect();
        store
            .append(
                stream,
                ExpectedVersion::from_version(batch * 1_000),
                &batch_events,
            )
            .await
            .unwrap();
    }
}

/// A read whose visitor stops early does not give back a connection the server is still
/// streaming the rest of the query to: the connection that ran it is closed (its session
/// ends), where a pooled one would hold the query's snapshot while it drained the rest.
#[test]
fn a_read_stopped_early_leaves_no_query_running() {
    let Some(url) = url() else { return };
    let runtime = runtime();
    let (store, _schema, app) = make_named(&runtime, &url, Options::new().max_connections(1));
    let stream = StreamRef::new("Counter", "long");
    runtime.block_on(append_a_long_stream(&store, stream));
    let mut monitor = monitor(&url);
    let before = pids_of(&mut monitor, &app, false);
    assert_eq!(before.len(), 1, "one pooled connection: {before:?}");

    let seen = runtime.block_on(async {
        let mut seen = 0;
        store
            .visit_stream(stream, 1..=u64::MAX, &mut |_| {
                seen += 1;
                ControlFlow::Break(())
            })
            .await
            .unwrap();
        seen
    });
    assert_eq!(seen, 1);
    assert!(
        eventually(|| !pids_of(&mut monitor, &app, false).contains(&before[0])),
        "the session that ran the abandoned read was closed"
    );
    assert_eq!(
        pids_of(&mut monitor, &app, true),
        Vec::<i32>::new(),
        "no session of the store is still running the read"
    );
    // The store works on (a fresh connection in the freed slot).
    runtime.block_on(async {
        assert_eq!(store.stream_version(stream).await.unwrap(), 20_000);
        assert_eq!(store.read_stream(stream, 19_999).await.unwrap().len(), 2);
    });
}

/// A read whose future is dropped half-way (a timeout, a `select!`) leaves no query
/// running either: the connection is closed, not given back mid-stream.
#[test]
fn a_cancelled_read_leaves_no_query_running() {
    let Some(url) = url() else { return };
    let runtime = runtime();
    let (store, _schema, app) = make_named(&runtime, &url, Options::new().max_connections(1));
    let stream = StreamRef::new("Counter", "long");
    runtime.block_on(append_a_long_stream(&store, stream));
    let mut monitor = monitor(&url);
    let before = pids_of(&mut monitor, &app, false);
    assert_eq!(before.len(), 1, "one pooled connection: {before:?}");

    let seen = runtime.block_on(async {
        let (first_row, visited) = tokio::sync::oneshot::channel();
        let mut first_row = Some(first_row);
        let mut seen = 0u64;
        let mut visitor = |_: &es_core::EventRecord<'_>| {
            seen += 1;
            if let Some(first_row) = first_row.take() {
                let _ = first_row.send(());
            }
            ControlFlow::Continue(())
        };
        let read = store.visit_stream(stream, 1..=u64::MAX, &mut visitor);
        tokio::select! {
            biased;
            _ = visited => {}
            _ = read => panic!("the read finished before it could be cancelled"),
        }
        seen
    });
    assert!(
        seen > 0 && seen < 20_000,
        "cancelled mid-read after {seen} rows"
    );
    assert!(
        eventually(|| !pids_of(&mut monitor, &app, false).contains(&before[0])),
        "the session of the cancelled read was closed"
    );
    runtime.block_on(async {
        assert_eq!(store.stream_version(stream).await.unwrap(), 20_000);
    });
}

/// Fills the pool with several connections: `tasks` appends at once.
async fn warm_up(store: &AsyncPostgresStore, tasks: u64) {
    let appends: Vec<_> = (0..tasks)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = format!("warm{t}");
                for i in 0..3 {
                    store
                        .append(
                            StreamRef::new("Counter", &id),
                            ExpectedVersion::Any,
                            &events(i, 1),
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for append in appends {
        append.await.expect("the warm-up task finished");
    }
}

/// Runs 12 reads and 12 appends one after the other, returning the failures.
async fn reads_and_appends(store: &AsyncPostgresStore, stream: StreamRef<'_>) -> Vec<String> {
    let mut failures = Vec::new();
    let mut version = store.stream_version(stream).await.unwrap_or(0);
    for i in 0..12 {
        if let Err(error) = store.read_stream(stream, 1).await {
            failures.push(format!("read {i}: {error}"));
        }
        match store
            .append(stream, ExpectedVersion::Exact(version), &events(i, 1))
            .await
        {
            Ok(outcome) => version = outcome.stream_version,
            Err(error) => failures.push(format!("append {i}: {error}")),
        }
    }
    failures
}

/// Pooled connections whose sessions the server ended (`pg_terminate_backend`) are never
/// handed out: every call after the kill succeeds.
#[test]
fn idle_connections_the_server_closed_are_replaced() {
    let Some(url) = url() else { return };
    let runtime = runtime();
    // The default options: idle connections are only checked with a round trip after 5
    // seconds, so this is the check that the connection's task has not ended.
    let (store, _schema, app) = make_named(&runtime, &url, Options::new());
    runtime.block_on(warm_up(&store, 6));
    let mut monitor = monitor(&url);
    let killed = kill_sessions(&mut monitor, &app);
    assert!(
        killed >= 2,
        "several pooled connections were killed ({killed})"
    );

    let stream = StreamRef::new("Counter", "after-kill");
    let failures = runtime.block_on(reads_and_appends(&store, stream));
    assert!(
        failures.is_empty(),
        "{} calls failed: {failures:#?}",
        failures.len()
    );
    assert_eq!(runtime.block_on(store.stream_version(stream)).unwrap(), 12);
}

/// With one pool slot and no idle check, a killed connection is replaced in its slot:
/// the next call neither fails nor waits for a slot that leaked.
#[test]
fn a_killed_connection_frees_its_only_pool_slot() {
    let Some(url) = url() else { return };
    let runtime = runtime();
    let options = Options::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(2))
        .check_idle_after(Duration::from_secs(3600));
    let (store, _schema, app) = make_named(&runtime, &url, options);
    let stream = StreamRef::new("Counter", "slot");
    runtime
        .block_on(store.append(stream, ExpectedVersion::NoStream, &events(1, 1)))
        .unwrap();
    kill_sessions(&mut monitor(&url), &app);
    runtime.block_on(async {
        store
            .append(stream, ExpectedVersion::Exact(1), &events(2, 1))
            .await
            .expect("a fresh connection in the freed slot");
        assert_eq!(store.stream_version(stream).await.unwrap(), 2);
    });
}

/// A store reached through a fresh proxy, in a fresh schema, with its own
/// `application_name`.
struct Proxied {
    store: AsyncPostgresStore,
    proxy: Proxy,
    url: String,
    schema: Schema,
}

impl Proxied {
    fn new(runtime: &tokio::runtime::Runtime, options: Options) -> Option<Self> {
        let url = url()?;
        let proxy = Proxy::start(server_address(&url));
        let schema = Schema::new(&url, "es_async_fault");
        let app = format!("{}_app", schema.name);
        let store = runtime
            .block_on(AsyncPostgresStore::connect_with_options(
                &via_port(&url, proxy.port, &app),
                &schema.name,
                options,
            ))
            .expect("connect through the proxy");
        Some(Self {
            store,
            proxy,
            url,
            schema,
        })
    }

    /// The sync store on the same schema, connected to the server directly.
    fn direct(&self) -> PostgresStore {
        PostgresStore::connect_with_schema(&self.url, &self.schema.name).expect("connect directly")
    }
}

/// Connections that died unnoticed (the client only finds out by using them) make the
/// reads, and the appends whose `BEGIN` fails, run again on a fresh connection: no call
/// fails.
#[test]
fn connections_that_break_when_used_are_retried_if_nothing_ran() {
    let runtime = runtime();
    let Some(fx) = Proxied::new(&runtime, Options::new()) else {
        return;
    };
    runtime.block_on(warm_up(&fx.store, 6));
    fx.proxy.doom_open_connections();
    let stream = StreamRef::new("Counter", "after-doom");
    let failures = runtime.block_on(reads_and_appends(&fx.store, stream));
    assert!(
        failures.is_empty(),
        "{} calls failed: {failures:#?}",
        failures.len()
    );
    assert_eq!(fx.direct().stream_version(stream).unwrap(), 12);

    // The other reads too.
    fx.proxy.doom_open_connections();
    runtime.block_on(async {
        for _ in 0..4 {
            assert_eq!(fx.store.stream_version(stream).await.unwrap(), 12);
            assert_eq!(
                fx.store
                    .find_idempotency_key(stream, "no-such-key")
                    .await
                    .unwrap(),
                None
            );
            assert_eq!(fx.store.read_all(0, 1000).await.unwrap().len(), 6 * 3 + 12);
        }
    });
}

/// A read that broke after its visitor saw a row is not run again: the visitor would see
/// that row twice.
#[test]
fn a_read_that_broke_after_visiting_rows_is_not_run_again() {
    let runtime = runtime();
    let Some(fx) = Proxied::new(&runtime, Options::new()) else {
        return;
    };
    let stream = StreamRef::new("Counter", "cut-read");
    runtime.block_on(async {
        fx.store
            .append(stream, ExpectedVersion::NoStream, &events(1, 3))
            .await
            .unwrap();
        fx.proxy.arm(Cut::AfterFirstRow);
        let mut seen = Vec::new();
        let result = fx
            .store
            .visit_stream(stream, 1..=u64::MAX, &mut |record| {
                seen.push(record.stream_version);
                ControlFlow::Continue(())
            })
            .await;
        assert_eq!(fx.proxy.cuts(), 1);
        let error = result.expect_err("the connection broke after the first row");
        assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
        assert_eq!(seen, [1], "the visitor saw each row at most once");
        assert_eq!(fx.store.read_stream(stream, 1).await.unwrap().len(), 3);
    });
}

/// An append whose `COMMIT` reply was lost is not run again (it did commit); retried by
/// the caller with an idempotency key, it reports the first attempt as a duplicate and
/// credits the account once.
#[test]
fn a_lost_commit_reply_then_a_retry_with_a_key_credits_once() {
    let runtime = runtime();
    let Some(fx) = Proxied::new(&runtime, Options::new()) else {
        return;
    };
    let repo = AsyncRepository::<Account, _>::new(fx.store.clone());
    runtime.block_on(async {
        repo.execute("acc", |a| a.open("alice")).await.unwrap();
        let options = ExecuteOptions::new().idempotency_key("req-1");
        fx.proxy.arm(Cut::CommitReply);
        let error = repo
            .execute_with_options("acc", options, |a| a.deposit(10))
            .await
            .expect_err("the COMMIT reply was lost");
        assert_eq!(fx.proxy.cuts(), 1, "the proxy cut the COMMIT reply");
        assert!(error.to_string().contains("backend failed"), "{error}");
        let retried = repo
            .execute_with_options("acc", options, |a| a.deposit(10))
            .await
            .expect("the retry succeeds");
        assert!(retried.duplicate, "the first attempt committed");
        assert_eq!(retried.version, 2);
        assert_eq!(retried.state.balance, 10);
    });
    let stream = fx
        .direct()
        .read_stream(StreamRef::new("Account", "acc"), 1)
        .unwrap();
    assert_eq!(stream.len(), 2, "Opened and one Deposited");
}

/// With every connection busy, a call fails after the acquire timeout with the same
/// [`AcquireTimeout`] error as the sync store, and the pool serves again once one is free.
/// (The upper bound on the wait is loose: the suite runs many tests at once on few cores.)
#[test]
fn a_busy_pool_fails_after_the_acquire_timeout() {
    let Some(url) = url() else { return };
    let runtime = runtime();
    let options = Options::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(200));
    let (store, _schema, _app) = make_named(&runtime, &url, options);
    let stream = StreamRef::new("Counter", "busy");
    runtime.block_on(async {
        store
            .append(stream, ExpectedVersion::NoStream, &events(1, 1))
            .await
            .unwrap();
        let store = Arc::new(store);
        let holding = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));
        // Holds the only connection until released.
        let holder = {
            let (store, holding, release) = (
                Arc::clone(&store),
                Arc::clone(&holding),
                Arc::clone(&release),
            );
            tokio::spawn(async move {
                store
                    .visit_all(0, 10, &mut |_| {
                        holding.store(true, Ordering::SeqCst);
                        // A visitor cannot await; `block_in_place` hands this worker's
                        // other duties (the runtime's timers among them) to another thread
                        // while it waits.
                        tokio::task::block_in_place(|| {
                            let deadline = Instant::now() + Duration::from_secs(20);
                            while !release.load(Ordering::SeqCst) && Instant::now() < deadline {
                                std::thread::sleep(Duration::from_millis(5));
                            }
                        });
                        ControlFlow::Continue(())
                    })
                    .await
            })
        };
        while !holding.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let started = Instant::now();
        let result = store.stream_version(stream).await;
        let waited = started.elapsed();
        release.store(true, Ordering::SeqCst);
        let error = result.expect_err("no connection became free within the acquire timeout");
        assert!(
            waited >= Duration::from_millis(190) && waited < Duration::from_secs(5),
            "waited {waited:?}"
        );
        let StoreError::Backend(source) = &error else {
            panic!("{error:?}");
        };
        let timeout = source
            .downcast_ref::<AcquireTimeout>()
            .expect("an AcquireTimeout");
        assert_eq!(timeout.max_connections, 1);
        assert_eq!(timeout.timeout, Duration::from_millis(200));
        let message = error.to_string();
        assert!(message.contains("all 1 connections"), "{message}");
        holder.await.unwrap().expect("the holder's read succeeds");
        // The connection is free again.
        assert_eq!(store.stream_version(stream).await.unwrap(), 1);
    });
}

/// The sync and the async store serve one schema at once: each reads what the other
/// appended, their global positions interleave without gaps, expected versions and
/// idempotency keys hold across them, and concurrent appends through both lose nothing.
#[test]
fn sync_and_async_stores_share_one_schema() {
    let Some(url) = url() else { return };
    let runtime = runtime();
    let fixture = runtime.block_on(make());
    let store = fixture.store().clone();
    let name = fixture.guard().name.clone();
    let sync = PostgresStore::connect_with_schema(&url, &name).expect("the sync store");
    let stream = StreamRef::new("Account", "shared");

    // Append with one, read with the other, both ways.
    let first = runtime
        .block_on(store.append(stream, ExpectedVersion::NoStream, &events(1, 2)))
        .unwrap();
    assert_eq!(first.global_positions, 1..3);
    assert_eq!(sync.read_stream(stream, 1).unwrap().len(), 2);
    let third = events(3, 1);
    let second = sync
        .append(stream, ExpectedVersion::Exact(2), &third)
        .unwrap();
    assert_eq!((second.stream_version, second.global_positions), (3, 3..4));
    let read = runtime.block_on(store.read_stream(stream, 1)).unwrap();
    assert_eq!(
        read.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(read[2].event_id, third[0].event_id);
    let payload = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    assert_eq!(
        payload(read[2].payload.get()),
        payload(third[0].payload.get())
    );

    // Conflicts between them: each one's stale expectation fails against the other's
    // append, and writes nothing.
    let conflict = runtime
        .block_on(store.append(stream, ExpectedVersion::Exact(2), &events(4, 1)))
        .unwrap_err();
    assert!(
        matches!(conflict, StoreError::Conflict { actual: 3, .. }),
        "{conflict:?}"
    );
    let conflict = sync
        .append(stream, ExpectedVersion::NoStream, &events(4, 1))
        .unwrap_err();
    assert!(conflict.is_conflict(), "{conflict:?}");
    assert_eq!(runtime.block_on(store.stream_version(stream)).unwrap(), 3);

    // An idempotency key committed through one is a duplicate through the other.
    let keyed = AppendOptions::new().idempotency_key("cmd-1");
    let original = sync
        .append_with(stream, ExpectedVersion::Exact(3), &events(5, 1), keyed)
        .unwrap();
    let again = runtime
        .block_on(store.append_with(stream, ExpectedVersion::Exact(3), &events(6, 1), keyed))
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.global_positions, original.global_positions);
    assert_eq!(
        runtime
            .block_on(store.find_idempotency_key(stream, "cmd-1"))
            .unwrap()
            .map(|o| o.stream_version),
        Some(4)
    );

    // Concurrent appends through both to one stream, retried on conflicts: none lost.
    let contended = StreamRef::new("Counter", "both");
    let async_appends = {
        let store = store.clone();
        runtime.spawn(async move {
            for i in 0..20 {
                loop {
                    let version = store.stream_version(contended).await.unwrap();
                    match store
                        .append(
                            contended,
                            ExpectedVersion::from_version(version),
                            &events(100 + i, 1),
                        )
                        .await
                    {
                        Ok(_) => break,
                        Err(error) if error.is_conflict() => {}
                        Err(error) => panic!("async append: {error}"),
                    }
                }
            }
        })
    };
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0..20 {
                loop {
                    let version = sync.stream_version(contended).unwrap();
                    match sync.append(
                        contended,
                        ExpectedVersion::from_version(version),
                        &events(200 + i, 1),
                    ) {
                        Ok(_) => break,
                        Err(error) if error.is_conflict() => {}
                        Err(error) => panic!("sync append: {error}"),
                    }
                }
            }
        });
    });
    runtime.block_on(async_appends).expect("the async appends");
    assert_eq!(sync.stream_version(contended).unwrap(), 40);
    let log = sync.read_all(1, 1_000).unwrap();
    let positions: Vec<u64> = log.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, (1..=44).collect::<Vec<_>>(), "one log, no gaps");
    let async_log = runtime.block_on(store.read_all(1, 1_000)).unwrap();
    assert_eq!(async_log.len(), log.len());
}

/// Several async stores creating one new schema at once all succeed (the migration lock),
/// and see one store.
#[test]
fn stores_opening_a_new_schema_at_once_all_succeed() {
    let Some(url) = url() else { return };
    let runtime = runtime();
    let name = fresh_schema();
    let _drop = Schema {
        url: url.clone(),
        name: name.clone(),
    };
    runtime.block_on(async {
        let opening: Vec<_> = (0..4)
            .map(|_| {
                let (url, name) = (url.clone(), name.clone());
                tokio::spawn(
                    async move { AsyncPostgresStore::connect_with_schema(&url, &name).await },
                )
            })
            .collect();
        let mut stores = Vec::new();
        for opened in opening {
            stores.push(
                opened
                    .await
                    .unwrap()
                    .expect("concurrent first-time creation"),
            );
        }
        let stream = StreamRef::new("Counter", "shared");
        stores[0]
            .append(stream, ExpectedVersion::NoStream, &events(1, 1))
            .await
            .unwrap();
        assert_eq!(stores[3].stream_version(stream).await.unwrap(), 1);
    });
}

/// Bad schema names, bad URLs and a newer schema are refused as by the sync store, and so
/// is opening the store outside a Tokio runtime.
#[test]
fn bad_names_newer_schemas_and_no_runtime_are_errors() {
    let url = url().unwrap_or_else(|| "postgres://nobody@127.0.0.1:1/none".to_owned());
    let runtime = runtime();
    for bad in ["", "has-dash", "x\"; DROP TABLE y; --", &"a".repeat(64)] {
        let error = runtime
            .block_on(AsyncPostgresStore::connect_with_schema(&url, bad))
            .unwrap_err();
        assert!(
            matches!(error, es_postgres::Error::InvalidSchema { .. }),
            "{bad}: {error:?}"
        );
    }
    let error = runtime
        .block_on(AsyncPostgresStore::connect(
            "postgres://a:b@host:notaport/db",
        ))
        .unwrap_err();
    assert!(
        matches!(error, es_postgres::Error::InvalidUrl { .. }),
        "{error:?}"
    );
    assert!(!error.to_string().contains(":b@"), "no password: {error}");

    // Outside a runtime the first poll already fails, without touching the network.
    let mut connecting = pin!(AsyncPostgresStore::connect(&url));
    let polled = connecting
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()));
    let Poll::Ready(Err(error)) = polled else {
        panic!("opening outside a runtime did not fail at once");
    };
    assert!(matches!(error, es_postgres::Error::NoRuntime), "{error:?}");
    assert!(error.to_string().contains("Tokio runtime"), "{error}");

    if support::url().is_none() {
        return;
    }
    let fixture = runtime.block_on(make());
    let (url, name) = (fixture.guard().url.clone(), fixture.guard().name.clone());
    monitor(&url)
        .batch_execute(&format!(
            "INSERT INTO \"{name}\".es_schema_version (version) VALUES (5)"
        ))
        .unwrap();
    let error = runtime
        .block_on(AsyncPostgresStore::connect_with_schema(&url, &name))
        .unwrap_err();
    assert!(
        matches!(error, es_postgres::Error::SchemaTooNew { found: 5, .. }),
        "{error:?}"
    );
}

/// Names and owner ids holding NUL are refused before they reach the server (which would
/// reject them with an error that costs the connection), and the store works on.
#[test]
fn nul_characters_in_checkpoint_names_are_refused() {
    if url().is_none() {
        return;
    }
    let runtime = runtime();
    runtime.block_on(async {
        use es_core::AsyncCheckpointStore;
        let store = make().await;
        let ttl = Duration::from_secs(1);
        for error in [
            store.save_checkpoint("bad\0name", 1).await.unwrap_err(),
            store.load_checkpoint("bad\0name").await.unwrap_err(),
            store.delete_checkpoint("bad\0name").await.unwrap_err(),
            store
                .acquire_lease("ok", "bad\0owner", ttl)
                .await
                .unwrap_err(),
            store.release_lease("ok", "bad\0owner").await.unwrap_err(),
        ] {
            assert!(error.to_string().contains("NUL character"), "{error}");
        }
        store.save_checkpoint("ok", 3).await.unwrap();
        assert_eq!(store.load_checkpoint("ok").await.unwrap(), 3);
    });
}

/// The sync and async stores on one schema share checkpoints and leases: a lease the
/// async store took is held for the sync one, and a checkpoint either saves the other
/// loads.
#[test]
fn sync_and_async_stores_share_checkpoints_and_leases() {
    let Some(url) = url() else {
        return;
    };
    let runtime = runtime();
    let store = runtime.block_on(make());
    let sync = PostgresStore::connect_with_schema(&url, &store.guard().name).unwrap();
    let ttl = Duration::from_secs(60);
    let lease = runtime
        .block_on(es_core::AsyncCheckpointStore::acquire_lease(
            &store, "shared", "async", ttl,
        ))
        .unwrap();
    assert!(
        matches!(lease, es_core::Lease::Acquired { .. }),
        "{lease:?}"
    );
    use es_core::CheckpointStore;
    match sync.acquire_lease("shared", "sync", ttl).unwrap() {
        es_core::Lease::HeldBy { owner, .. } => assert_eq!(owner, "async"),
        other => panic!("the async store's lease is held for the sync one: {other:?}"),
    }
    sync.save_checkpoint("shared", 9).unwrap();
    let loaded = runtime
        .block_on(es_core::AsyncCheckpointStore::load_checkpoint(
            &store, "shared",
        ))
        .unwrap();
    assert_eq!(loaded, 9);
    runtime
        .block_on(es_core::AsyncCheckpointStore::release_lease(
            &store, "shared", "async",
        ))
        .unwrap();
    assert!(matches!(
        sync.acquire_lease("shared", "sync", ttl).unwrap(),
        es_core::Lease::Acquired { .. }
    ));
}
