//! Faults between the PostgreSQL store and its server: a lost `COMMIT` reply, connections
//! that die while pooled or while used, a pool that stays busy, and server errors.
//!
//! Needs a server: set `ES_POSTGRES_URL` (e.g. `eval "$(bash .ci/postgres.sh)"`). Without
//! it the tests are skipped with a message, except under CI (`CI` set), where they fail.
//! Every test works in a fresh schema, dropped afterwards.
//!
//! Most faults are made by [`Proxy`], a small TCP proxy on 127.0.0.1 between the store and
//! the server that can cut connections at chosen points of the wire protocol.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use es_core::{EventStore, ExecuteOptions, ExpectedVersion, Repository, StoreError, StreamRef};
use es_postgres::postgres::Client;
use es_postgres::{AcquireTimeout, Options, PostgresStore};
use es_store_tests::{Account, events};

#[path = "support/postgres.rs"]
mod support;
use support::{Schema, unique, url, with_param};
#[path = "support/proxy.rs"]
mod proxy;
use proxy::{Cut, Proxy, server_address, via_port};

/// A store reached through a fresh proxy, in a fresh schema, with its own
/// `application_name`.
struct Proxied {
    store: PostgresStore,
    proxy: Proxy,
    url: String,
    schema: Schema,
}

impl Proxied {
    fn new(options: Options) -> Option<Self> {
        let url = url()?;
        let proxy = Proxy::start(server_address(&url));
        let schema = Schema::new(&url, "es_fault");
        let app = format!("{}_app", schema.name);
        let store = PostgresStore::connect_with_options(
            &via_port(&url, proxy.port, &app),
            &schema.name,
            options,
        )
        .expect("connect through the proxy");
        Some(Self {
            store,
            proxy,
            url,
            schema,
        })
    }

    /// A second store on the same schema, connected to the server directly.
    fn direct(&self) -> PostgresStore {
        PostgresStore::connect_with_schema(&self.url, &self.schema.name).expect("connect directly")
    }
}

/// The balance of account `id`, read through a store that does not use the proxy.
fn balance(store: &PostgresStore, id: &str) -> u64 {
    Repository::<Account, _>::new(store.clone())
        .load(id)
        .unwrap()
        .expect("the account exists")
        .state
        .balance
}

#[test]
fn a_lost_commit_reply_makes_a_retry_without_a_key_credit_twice() {
    let Some(fx) = Proxied::new(Options::new()) else {
        return;
    };
    let repo = Repository::<Account, _>::new(fx.store.clone());
    repo.execute("acc", |a| a.open("alice")).unwrap();

    fx.proxy.arm(Cut::CommitReply);
    let error = repo
        .execute("acc", |a| a.deposit(10))
        .expect_err("the COMMIT reply was lost");
    assert_eq!(fx.proxy.cuts(), 1, "the proxy cut the COMMIT reply");
    assert!(error.to_string().contains("backend failed"), "{error}");
    // Yet the deposit is committed.
    assert_eq!(balance(&fx.direct(), "acc"), 10);

    // The caller cannot tell, retries, and the account is credited twice: the fault an
    // idempotency key prevents (see the next test).
    let again = repo.execute("acc", |a| a.deposit(10)).unwrap();
    assert!(!again.duplicate);
    assert_eq!(balance(&fx.direct(), "acc"), 20, "credited twice");
}

#[test]
fn a_lost_commit_reply_then_a_retry_with_a_key_credits_once() {
    let Some(fx) = Proxied::new(Options::new()) else {
        return;
    };
    let repo = Repository::<Account, _>::new(fx.store.clone());
    repo.execute("acc", |a| a.open("alice")).unwrap();

    let options = ExecuteOptions::new().idempotency_key("req-1");
    fx.proxy.arm(Cut::CommitReply);
    let error = repo
        .execute_with_options("acc", options, |a| a.deposit(10))
        .expect_err("the COMMIT reply was lost");
    assert_eq!(fx.proxy.cuts(), 1, "the proxy cut the COMMIT reply");
    assert!(error.to_string().contains("backend failed"), "{error}");

    // The proxy is disarmed; the pool dropped the broken connection.
    let retried = repo
        .execute_with_options("acc", options, |a| a.deposit(10))
        .expect("the retry succeeds");
    assert!(retried.duplicate, "the first attempt committed");
    assert_eq!(retried.version, 2);
    assert_eq!(retried.state.balance, 10);
    let direct = fx.direct();
    assert_eq!(balance(&direct, "acc"), 10, "credited once");
    assert_eq!(
        direct
            .read_stream(StreamRef::new("Account", "acc"), 1)
            .unwrap()
            .len(),
        2,
        "Opened and one Deposited"
    );
}

#[test]
fn many_lost_commit_replies_with_keys_never_append_twice() {
    let Some(fx) = Proxied::new(Options::new().max_connections(4)) else {
        return;
    };
    let repo = Repository::<Account, _>::new(fx.store.clone());
    repo.execute("acc", |a| a.open("alice")).unwrap();
    const ROUNDS: u64 = 20;
    for round in 0..ROUNDS {
        let key = format!("req-{round}");
        let options = ExecuteOptions::new().idempotency_key(&key);
        fx.proxy.arm(Cut::CommitReply);
        repo.execute_with_options("acc", options, |a| a.deposit(10))
            .expect_err("the COMMIT reply was lost");
        assert_eq!(fx.proxy.cuts() as u64, round + 1);
        // Retry until the caller hears back; one retry is enough here.
        let retried = repo
            .execute_with_options("acc", options, |a| a.deposit(10))
            .expect("the retry succeeds");
        assert!(
            retried.duplicate,
            "round {round}: the first attempt committed"
        );
        assert_eq!(retried.version, round + 2);
    }
    let direct = fx.direct();
    assert_eq!(
        balance(&direct, "acc"),
        10 * ROUNDS,
        "every deposit exactly once"
    );
    let stream = direct
        .read_stream(StreamRef::new("Account", "acc"), 1)
        .unwrap();
    assert_eq!(stream.len() as u64, 1 + ROUNDS);
    // And the store still works through the proxy after 20 broken connections.
    let executed = repo.execute("acc", |a| a.deposit(1)).unwrap();
    assert_eq!(executed.state.balance, 10 * ROUNDS + 1);
}

#[test]
fn a_connection_that_broke_mid_append_frees_the_only_pool_slot() {
    // One slot, and a short acquire timeout: a leaked slot would fail the next call.
    let options = Options::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(2));
    let Some(fx) = Proxied::new(options) else {
        return;
    };
    let stream = StreamRef::new("Counter", "slot");
    fx.store
        .append(stream, ExpectedVersion::NoStream, &events(1, 1))
        .unwrap();
    // Broken after BEGIN (at the COMMIT reply): not run again, so the caller sees it.
    fx.proxy.arm(Cut::CommitReply);
    let error = fx
        .store
        .append(stream, ExpectedVersion::Exact(1), &events(2, 1))
        .expect_err("the connection broke");
    assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
    assert_eq!(fx.proxy.cuts(), 1);
    // The broken connection was closed and its slot freed for a fresh connection.
    assert_eq!(fx.store.stream_version(stream).unwrap(), 2, "it did commit");
    fx.store
        .append(stream, ExpectedVersion::Exact(2), &events(3, 1))
        .expect("a fresh connection in the freed slot");
    assert_eq!(fx.direct().stream_version(stream).unwrap(), 3);
}

#[test]
fn a_busy_pool_fails_after_the_acquire_timeout() {
    let Some(url) = url() else { return };
    let schema = Schema::new(&url, "es_fault");
    let options = Options::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(200));
    assert_eq!(options.get_acquire_timeout(), Duration::from_millis(200));
    assert_eq!(
        Options::new().get_acquire_timeout(),
        Duration::from_secs(30),
        "the documented default"
    );
    let store = PostgresStore::connect_with_options(&url, &schema.name, options).unwrap();
    let stream = StreamRef::new("Counter", "busy");
    store
        .append(stream, ExpectedVersion::NoStream, &events(1, 1))
        .unwrap();

    let holding = AtomicBool::new(false);
    thread::scope(|scope| {
        // Holds the only connection for a second.
        let holder = scope.spawn(|| {
            store.visit_all(0, 10, &mut |_| {
                holding.store(true, Ordering::SeqCst);
                thread::sleep(Duration::from_secs(1));
                ControlFlow::Continue(())
            })
        });
        while !holding.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(1));
        }
        let started = Instant::now();
        let error = store
            .stream_version(stream)
            .expect_err("no connection became free within the acquire timeout");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(190) && waited < Duration::from_millis(800),
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
        assert!(message.contains("max_connections"), "{message}");
        holder.join().unwrap().expect("the holder's read succeeds");
    });
    // The connection is free again.
    assert_eq!(store.stream_version(stream).unwrap(), 1);
}

/// Kills every session of `app` server-side (from `monitor`'s own session) and waits until
/// the server has ended them.
fn terminate_sessions(monitor: &mut Client, app: &str) -> i64 {
    let killed = monitor
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid()",
            &[&app],
        )
        .unwrap()
        .len();
    for _ in 0..500 {
        let left: i64 = monitor
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .unwrap()
            .get(0);
        if left == 0 {
            return killed as i64;
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("the sessions of {app} were not terminated");
}

/// Runs 12 reads and 12 appends one after the other, returning the failures.
fn reads_and_appends(store: &PostgresStore, stream: StreamRef<'_>) -> Vec<String> {
    let mut failures = Vec::new();
    let mut version = store.stream_version(stream).unwrap_or(0);
    for i in 0..12 {
        if let Err(error) = store.read_stream(stream, 1) {
            failures.push(format!("read {i}: {error}"));
        }
        match store.append(stream, ExpectedVersion::Exact(version), &events(i, 1)) {
            Ok(outcome) => version = outcome.stream_version,
            Err(error) => failures.push(format!("append {i}: {error}")),
        }
    }
    failures
}

/// Fills the pool with several connections: `threads` appends at once.
fn warm_up(store: &PostgresStore, threads: u64) {
    thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                let id = format!("warm{t}");
                for i in 0..3 {
                    store
                        .append(
                            StreamRef::new("Counter", &id),
                            ExpectedVersion::Any,
                            &events(i, 1),
                        )
                        .unwrap();
                }
            });
        }
    });
}

#[test]
fn idle_connections_the_server_closed_are_not_handed_out() {
    let Some(url) = url() else { return };
    let schema = Schema::new(&url, "es_fault");
    let app = unique("es_fault_app");
    // The default options: idle connections are only checked after 5 seconds.
    let store = PostgresStore::connect_with_options(
        &with_param(&url, "application_name", &app),
        &schema.name,
        Options::new(),
    )
    .unwrap();
    warm_up(&store, 6);
    let mut monitor = es_postgres::connect_client(&url).unwrap();
    let killed = terminate_sessions(&mut monitor, &app);
    assert!(
        killed >= 2,
        "several pooled connections were killed ({killed})"
    );

    let stream = StreamRef::new("Counter", "after-kill");
    let failures = reads_and_appends(&store, stream);
    assert!(
        failures.is_empty(),
        "{} calls failed: {failures:#?}",
        failures.len()
    );
    assert_eq!(store.stream_version(stream).unwrap(), 12);
}

#[test]
fn connections_that_break_when_used_are_retried_if_nothing_ran() {
    let Some(fx) = Proxied::new(Options::new()) else {
        return;
    };
    warm_up(&fx.store, 6);
    // Every pooled connection is dead, but the client only finds out by using it: the
    // reads, and the appends whose BEGIN fails, run again on a fresh connection.
    fx.proxy.doom_open_connections();
    let stream = StreamRef::new("Counter", "after-doom");
    let failures = reads_and_appends(&fx.store, stream);
    assert!(
        failures.is_empty(),
        "{} calls failed: {failures:#?}",
        failures.len()
    );
    let direct = fx.direct();
    assert_eq!(direct.stream_version(stream).unwrap(), 12);

    // The other reads too.
    fx.proxy.doom_open_connections();
    for _ in 0..4 {
        assert_eq!(fx.store.stream_version(stream).unwrap(), 12);
        assert_eq!(
            fx.store
                .find_idempotency_key(stream, "no-such-key")
                .unwrap(),
            None
        );
        assert_eq!(fx.store.read_all(0, 1000).unwrap().len(), 6 * 3 + 12);
    }
}

#[test]
fn a_read_that_broke_after_visiting_rows_is_not_run_again() {
    let Some(fx) = Proxied::new(Options::new()) else {
        return;
    };
    let stream = StreamRef::new("Counter", "cut-read");
    fx.store
        .append(stream, ExpectedVersion::NoStream, &events(1, 3))
        .unwrap();
    fx.proxy.arm(Cut::AfterFirstRow);
    let mut seen = Vec::new();
    let result = fx.store.visit_stream(stream, 1..=u64::MAX, &mut |record| {
        seen.push(record.stream_version);
        ControlFlow::Continue(())
    });
    assert_eq!(fx.proxy.cuts(), 1);
    let error = result.expect_err("the connection broke after the first row");
    assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
    // A second run would hand the visitor version 1 again.
    assert_eq!(seen, [1], "the visitor saw each row at most once");
    assert_eq!(fx.store.read_stream(stream, 1).unwrap().len(), 3);
}

#[test]
fn server_errors_show_the_servers_message_and_code() {
    let Some(url) = url() else { return };
    let schema = Schema::new(&url, "es_fault");
    let store = PostgresStore::connect_with_schema(&url, &schema.name).unwrap();
    let stream = StreamRef::new("Counter", "gone");
    store
        .append(stream, ExpectedVersion::NoStream, &events(1, 1))
        .unwrap();
    es_postgres::connect_client(&url)
        .unwrap()
        .batch_execute(&format!("DROP TABLE \"{}\".es_events CASCADE", schema.name))
        .unwrap();

    let error = store.read_stream(stream, 1).unwrap_err();
    assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
    let message = error.to_string();
    for part in ["relation", "es_events", "does not exist", "42P01"] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    assert!(
        message != "event store backend failed: db error",
        "{message}"
    );
}
