//! The synchronous `PostgresStore` called from inside a tokio runtime.
//!
//! The `postgres` driver runs a runtime of its own per connection, and tokio panics when
//! one is started or dropped on a thread that runs a runtime already: a call from an async
//! task used to panic ("Cannot start a runtime from within a runtime"), and dropping the
//! store there panicked again, aborting the process. These tests call every kind of entry
//! point from async tasks (both runtime flavours), from `block_on`, and from
//! `spawn_blocking`, and drop stores inside the runtime: an abort would end the whole test
//! binary.
//!
//! Each test builds its runtime itself, so that its schema guard (which uses a plain
//! driver client) is dropped outside it.
//!
//! Needs a server: set `ES_POSTGRES_URL` (e.g. `eval "$(bash .ci/postgres.sh)"`). Without
//! it the tests are skipped with a message, except under CI (`CI` set), where they fail.

use std::cell::Cell;
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::{Duration, Instant};

use es_core::{EventStore, ExpectedVersion, Repository, StreamRef};
use es_postgres::{Options, PostgresStore};
use es_store_tests::{Account, events};

#[path = "support/postgres.rs"]
mod support;
use support::{Schema, unique, url, with_param};

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Every kind of store call, as an async task would make it: connect, append, read (with
/// a visitor that is not `Send`), the log, versions, idempotency keys, and a repository's
/// load and execute; then the store is dropped, still on the runtime's thread.
fn exercise(url: &str, schema: &str) {
    let store = PostgresStore::connect_with_schema(url, schema).expect("connect inside a runtime");
    let stream = StreamRef::new("Runtime", "one");
    store
        .append(stream, ExpectedVersion::NoStream, &events(1, 3))
        .expect("append inside a runtime");
    assert_eq!(store.read_stream(stream, 1).expect("read").len(), 3);
    assert_eq!(store.stream_version(stream).expect("version"), 3);
    assert_eq!(store.read_all(0, 10).expect("read the log").len(), 3);

    // A visitor that is not `Send` (an `Rc`) sees each row, on this thread.
    let seen = Rc::new(Cell::new(0));
    let counter = seen.clone();
    store
        .visit_stream(stream, 1..=u64::MAX, &mut |_| {
            counter.set(counter.get() + 1);
            ControlFlow::Continue(())
        })
        .expect("visit");
    assert_eq!(seen.get(), 3);
    // One that stops early leaves the store usable.
    let mut first = 0;
    store
        .visit_all(0, 10, &mut |event| {
            first = event.global_position;
            ControlFlow::Break(())
        })
        .expect("visit, stopping");
    assert_eq!(first, 1);
    assert_eq!(
        store
            .find_idempotency_key(stream, "no-such-key")
            .expect("key"),
        None
    );

    let repo = Repository::<Account, _>::new(store.clone());
    assert!(repo.load("acc").expect("load inside a runtime").is_none());
    repo.execute("acc", |account| account.open("ann"))
        .expect("execute inside a runtime");
    repo.execute("acc", |account| account.deposit(5))
        .expect("execute inside a runtime");
    let loaded = repo.load("acc").expect("load").expect("the account exists");
    assert_eq!(loaded.version, 2);
    // Both clones (with their idle connections) are dropped here, on the runtime's thread.
}

#[test]
fn every_call_works_in_an_async_task_on_a_multi_thread_runtime() {
    let Some(url) = url() else { return };
    let schema = Schema::new(&url, "es_rt");
    let name = schema.name.clone();
    multi_thread().block_on(async move {
        tokio::spawn(async move { exercise(&url, &name) })
            .await
            .expect("the task neither panics nor aborts");
    });
}

#[test]
fn every_call_works_in_an_async_task_on_a_current_thread_runtime() {
    let Some(url) = url() else { return };
    let schema = Schema::new(&url, "es_rt");
    let name = schema.name.clone();
    current_thread().block_on(async move {
        tokio::spawn(async move { exercise(&url, &name) })
            .await
            .expect("the task neither panics nor aborts");
    });
}

#[test]
fn every_call_works_in_block_on() {
    let Some(url) = url() else { return };
    let schema = Schema::new(&url, "es_rt");
    multi_thread().block_on(async { exercise(&url, &schema.name) });
}

#[test]
fn the_same_store_works_from_spawn_blocking_and_from_tasks() {
    let Some(url) = url() else { return };
    let schema = Schema::new(&url, "es_rt");
    let store = PostgresStore::connect_with_schema(&url, &schema.name).expect("connect");
    let stream = StreamRef::new("Runtime", "shared");
    multi_thread().block_on(async {
        let blocking = store.clone();
        let version = tokio::task::spawn_blocking(move || {
            blocking
                .append(stream, ExpectedVersion::NoStream, &events(1, 2))
                .expect("append in spawn_blocking");
            blocking.read_stream(stream, 1).expect("read").len()
        })
        .await
        .expect("spawn_blocking");
        assert_eq!(version, 2);
        // The same store, from the async task itself.
        store
            .append(stream, ExpectedVersion::Exact(2), &events(3, 1))
            .expect("append in the task");
        let blocking = store.clone();
        let events = tokio::task::spawn_blocking(move || blocking.read_stream(stream, 1))
            .await
            .expect("spawn_blocking")
            .expect("read");
        assert_eq!(events.len(), 3);
    });
    // Out of the runtime it works as ever.
    assert_eq!(store.stream_version(stream).expect("version"), 3);
}

#[test]
fn a_store_dropped_inside_a_runtime_closes_its_connections() {
    let Some(url) = url() else { return };
    let schema = Schema::new(&url, "es_rt");
    let app = unique("es_rt_app");
    let store_url = with_param(&url, "application_name", &app);
    let mut monitor = es_postgres::connect_client(&url).expect("monitor");
    let sessions = |monitor: &mut es_postgres::postgres::Client| -> i64 {
        monitor
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .expect("count sessions")
            .get(0)
    };

    let name = schema.name.clone();
    current_thread().block_on(async move {
        let store = PostgresStore::connect_with_options(
            &store_url,
            &name,
            Options::new().max_connections(3),
        )
        .expect("connect");
        // Three connections in use at once, then idle in the pool.
        std::thread::scope(|scope| {
            for t in 0..3 {
                let store = &store;
                scope.spawn(move || {
                    let stream_id = format!("s{t}");
                    store
                        .append(
                            StreamRef::new("Runtime", &stream_id),
                            ExpectedVersion::Any,
                            &events(1, 1),
                        )
                        .expect("append");
                    std::thread::sleep(Duration::from_millis(100));
                    store
                        .read_stream(StreamRef::new("Runtime", &stream_id), 1)
                        .expect("read");
                });
            }
        });
        drop(store);
    });

    // The connections close on a thread of their own: wait for the server to see it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = sessions(&mut monitor);
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} sessions of the dropped store are still open"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_panicking_visitor_inside_a_runtime_panics_the_caller_only() {
    let Some(url) = url() else { return };
    let schema = Schema::new(&url, "es_rt");
    let name = schema.name.clone();
    multi_thread().block_on(async move {
        let store = PostgresStore::connect_with_schema(&url, &name).expect("connect");
        let stream = StreamRef::new("Runtime", "panics");
        store
            .append(stream, ExpectedVersion::NoStream, &events(1, 2))
            .expect("append");
        let caught = std::panic::catch_unwind(AssertUnwindSafe(|| {
            store.visit_stream(stream, 1..=u64::MAX, &mut |_| panic!("the visitor panics"))
        }));
        let panic = caught.expect_err("the visitor's panic reaches the caller");
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"the visitor panics"));
        // The store is still usable.
        assert_eq!(store.read_stream(stream, 1).expect("read").len(), 2);
    });
}
