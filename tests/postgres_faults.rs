//! Faults between the PostgreSQL store and its server: a lost `COMMIT` reply, connections
//! that die while pooled or while used, a pool that stays busy, and server errors.
//!
//! Needs a server: set `ES_POSTGRES_URL` (e.g. `eval "$(bash .ci/postgres.sh)"`). Without
//! it the tests are skipped with a message, except under CI (`CI` set), where they fail.
//! Every test works in a fresh schema, dropped afterwards.
//!
//! Most faults are made by [`Proxy`], a small TCP proxy on 127.0.0.1 between the store and
//! the server that can cut connections at chosen points of the wire protocol.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use es_core::{EventStore, ExecuteOptions, ExpectedVersion, Repository, StoreError, StreamRef};
use es_postgres::postgres::config::Host;
use es_postgres::postgres::{Client, Config};
use es_postgres::{AcquireTimeout, Options, PostgresStore};
use es_store_tests::{Account, events};

#[path = "support/postgres.rs"]
mod support;
use support::{Schema, unique, url, with_param, without_tls_params};
/// A value quoted for a `key=value` connection string.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The server's TCP address, from `url`.
fn server_address(url: &str) -> String {
    let config: Config = without_tls_params(url)
        .parse()
        .expect("ES_POSTGRES_URL parses");
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        other => panic!(
            "the fault tests reach the server over TCP through a proxy; ES_POSTGRES_URL must \
             name a TCP host, not {other:?}"
        ),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A connection string like `url`, but to 127.0.0.1:`port` (the proxy), with
/// `application_name` set to `app`, unencrypted: the proxy reads the protocol's messages to
/// cut the connection at the right one.
fn via_port(url: &str, port: u16, app: &str) -> String {
    let config: Config = without_tls_params(url)
        .parse()
        .expect("ES_POSTGRES_URL parses");
    let mut text = format!(
        "host=127.0.0.1 port={port} sslmode=disable application_name={}",
        quoted(app)
    );
    if let Some(user) = config.get_user() {
        text.push_str(&format!(" user={}", quoted(user)));
    }
    if let Some(password) = config.get_password() {
        let password = std::str::from_utf8(password).expect("a UTF-8 password");
        text.push_str(&format!(" password={}", quoted(password)));
    }
    if let Some(dbname) = config.get_dbname() {
        text.push_str(&format!(" dbname={}", quoted(dbname)));
    }
    text
}

/// Where the proxy cuts a connection's server-to-client traffic, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Nowhere.
    Off,
    /// Instead of forwarding the `CommandComplete` of a `COMMIT`: the transaction commits
    /// on the server, but the client only sees its connection break.
    CommitReply,
    /// Right after forwarding the first `DataRow`: the client reads one row, then the
    /// connection breaks.
    AfterFirstRow,
}

struct ProxyState {
    upstream: String,
    cut: Mutex<Cut>,
    /// How many connections the proxy cut.
    cuts: AtomicUsize,
    /// How many client connections were accepted; each connection's number is its rank.
    accepted: AtomicUsize,
    /// Connections ranked below this die as soon as the client sends anything, as if the
    /// server or a firewall had dropped them silently while they sat idle.
    doomed_below: AtomicUsize,
    stopping: AtomicBool,
    sockets: Mutex<Vec<TcpStream>>,
}

/// A TCP proxy on 127.0.0.1 in front of the server, which breaks connections on demand.
struct Proxy {
    port: u16,
    state: Arc<ProxyState>,
}

impl Proxy {
    fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState {
            upstream,
            cut: Mutex::new(Cut::Off),
            cuts: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            doomed_below: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            sockets: Mutex::new(Vec::new()),
        });
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for client in listener.incoming() {
                if shared.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let rank = shared.accepted.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(&shared.upstream) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut sockets = shared.sockets.lock().unwrap();
                    sockets.push(client.try_clone().unwrap());
                    sockets.push(server.try_clone().unwrap());
                }
                let (c, s, state) = (
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    Arc::clone(&shared),
                );
                thread::spawn(move || requests(rank, c, s, &state));
                let state = Arc::clone(&shared);
                thread::spawn(move || replies(server, client, &state));
            }
        });
        Self { port, state }
    }

    /// Cuts the next connection that reaches `cut`, then forwards normally again.
    fn arm(&self, cut: Cut) {
        *self.state.cut.lock().unwrap() = cut;
    }

    /// How many connections were cut so far (by [`arm`](Proxy::arm)).
    fn cuts(&self) -> usize {
        self.state.cuts.load(Ordering::SeqCst)
    }

    /// Every connection open now dies the next time the client sends anything; new ones
    /// are left alone.
    fn doom_open_connections(&self) {
        let accepted = self.state.accepted.load(Ordering::SeqCst);
        self.state.doomed_below.store(accepted, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop, and end every forwarding thread.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for socket in self.state.sockets.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

fn close(a: &TcpStream, b: &TcpStream) {
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
}

/// Forwards client-to-server bytes.
fn requests(rank: usize, mut client: TcpStream, mut server: TcpStream, state: &ProxyState) {
    let mut buffer = [0; 16 * 1024];
    loop {
        let n = match client.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if rank < state.doomed_below.load(Ordering::SeqCst) {
            break;
        }
        if server.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    close(&client, &server);
}

/// Forwards server-to-client bytes whole message by whole message (type byte, `int32`
/// length including itself, body), so that a cut falls exactly where it is armed.
fn replies(mut server: TcpStream, mut client: TcpStream, state: &ProxyState) {
    let mut buffer = [0; 16 * 1024];
    let mut pending = Vec::new();
    loop {
        let n = match server.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buffer[..n]);
        let mut complete = 0;
        while pending.len() - complete >= 5 {
            let length =
                u32::from_be_bytes(pending[complete + 1..complete + 5].try_into().unwrap());
            let end = complete + 1 + length as usize;
            if pending.len() < end {
                break;
            }
            let message = &pending[complete..end];
            let forward_to = {
                let mut cut = state.cut.lock().unwrap();
                let at = match *cut {
                    Cut::CommitReply if message[0] == b'C' && &message[5..] == b"COMMIT\0" => {
                        Some(complete)
                    }
                    Cut::AfterFirstRow if message[0] == b'D' => Some(end),
                    _ => None,
                };
                if at.is_some() {
                    *cut = Cut::Off;
                    state.cuts.fetch_add(1, Ordering::SeqCst);
                }
                at
            };
            if let Some(at) = forward_to {
                let _ = client.write_all(&pending[..at]);
                if at == end {
                    // Let the client take the row before its connection breaks.
                    thread::sleep(Duration::from_millis(200));
                }
                close(&client, &server);
                return;
            }
            complete = end;
        }
        if client.write_all(&pending[..complete]).is_err() {
            break;
        }
        pending.drain(..complete);
    }
    close(&client, &server);
}

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
