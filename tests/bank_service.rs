//! Drives the HTTP service of `examples/bank_service` through a real socket: concurrent
//! deposits on one account (the repository's default retry policy absorbs the conflicts),
//! and the mapping of each kind of error to its status.

#[path = "../examples/bank_service/app.rs"]
mod app;
#[path = "../examples/bank_service/client.rs"]
mod client;
#[path = "support/postgres.rs"]
mod support;

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use es_core::{
    AppendOptions, AppendOutcome, AsyncEventStore, AsyncVisitor, ExpectedVersion, Metadata,
    NewEvent, RetryPolicy, StoreError, StreamRef,
};
use es_sqlite::AsyncSqliteStore;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, MutexGuard};

use app::{Accounts, Server};

/// A server over `store` with `policy` on 127.0.0.1, a free port, and this test's turn.
struct Running {
    server: Server,
    _turn: MutexGuard<'static, ()>,
}

impl Running {
    fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    async fn stop(self) {
        self.server
            .stop()
            .await
            .expect("the server ran without error");
    }
}

/// Starts a server. The tests take turns (each holds its turn while its server runs): on a
/// 2-core machine, the load of one (the concurrent deposits above all) would otherwise slow
/// the store of another and stretch its losing streaks.
async fn start<S: AsyncEventStore + 'static>(store: Arc<S>, policy: RetryPolicy) -> Running {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());
    let turn = ONE_AT_A_TIME.lock().await;
    let accounts: Accounts<S> = Accounts::new(store).with_retry(policy);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::start(listener, app::router(accounts), std::future::pending()).unwrap();
    Running {
        server,
        _turn: turn,
    }
}

/// A fresh SQLite file in a temporary directory (kept until the guard drops).
async fn sqlite() -> (Arc<AsyncSqliteStore>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = AsyncSqliteStore::open(dir.path().join("bank.db"))
        .await
        .expect("open the SQLite store");
    (Arc::new(store), dir)
}

fn amount(n: u64) -> Value {
    json!({ "amount": n })
}

async fn open(addr: SocketAddr, id: &str) {
    let reply = client::post(
        addr,
        &format!("/accounts/{id}/open"),
        &json!({"owner": "Alice"}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["version"], 1, "{reply:?}");
}

async fn deposit(addr: SocketAddr, id: &str, n: u64, key: Option<&str>) -> client::Reply {
    client::post(addr, &format!("/accounts/{id}/deposit"), &amount(n), key)
        .await
        .unwrap()
}

/// `(balance, version)` from `GET /accounts/{id}`.
async fn balance(addr: SocketAddr, id: &str) -> (u64, u64) {
    let reply = client::get(addr, &format!("/accounts/{id}")).await.unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    (
        reply.body["balance"].as_u64().unwrap(),
        reply.body["version"].as_u64().unwrap(),
    )
}

const CLIENTS: u64 = 8;
const DEPOSITS: u64 = 25;

/// `CLIENTS` tasks each send `DEPOSITS` deposits of 1 to one account at once, each a
/// request on its own connection, through a server whose repository has the default retry
/// policy: every one must succeed, and the balance and version must count each once.
async fn concurrent_deposits<S: AsyncEventStore + 'static>(store: Arc<S>, label: &str) {
    let server = start(store, RetryPolicy::default()).await;
    let addr = server.addr();
    open(addr, "acc-hot").await;

    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(async move {
                let mut replies = Vec::new();
                for _ in 0..DEPOSITS {
                    replies.push(deposit(addr, "acc-hot", 1, None).await);
                }
                replies
            })
        })
        .collect();
    let mut attempts = Vec::new();
    let mut errors = Vec::new();
    for client in clients {
        for reply in client.await.unwrap() {
            if reply.status == 200 {
                attempts.push(reply.body["attempts"].as_u64().unwrap());
            } else {
                errors.push((reply.status, reply.body));
            }
        }
    }
    let total = CLIENTS * DEPOSITS;
    let retried = attempts.iter().filter(|&&a| a > 1).count();
    let most = attempts.iter().max().copied().unwrap_or(0);
    eprintln!(
        "{label}: {CLIENTS} clients x {DEPOSITS} deposits: {} x 200 ({retried} needed a retry, \
         at most {most} attempts), {} errors ({} x 409)",
        attempts.len(),
        errors.len(),
        errors.iter().filter(|(status, _)| *status == 409).count(),
    );
    assert!(
        errors.is_empty(),
        "{label}: {} of {total} concurrent deposits failed (the default retry policy did not \
         absorb the contention): {errors:?}",
        errors.len()
    );
    assert_eq!(balance(addr, "acc-hot").await, (total, total + 1));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deposits_over_sqlite_all_succeed() {
    let (store, _dir) = sqlite().await;
    concurrent_deposits(store, "SQLite").await;
}

#[test]
fn concurrent_deposits_over_postgres_all_succeed() {
    let Some(url) = support::url() else { return };
    // Dropped (the schema with it) after the runtime, as it uses the sync client.
    let schema = support::Schema::new(&url, "es_bank_service");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = es_postgres::AsyncPostgresStore::connect_with_schema(&url, &schema.name)
            .await
            .expect("connect to PostgreSQL");
        concurrent_deposits(Arc::new(store), "PostgreSQL").await;
    });
    drop(runtime);
}

/// A store that, once armed, slips a deposit of 1 into the stream just before the next
/// append: that append then conflicts, as if another request had won the race.
struct Interfering<S> {
    inner: S,
    armed: AtomicBool,
}

impl<S: AsyncEventStore> AsyncEventStore for Interfering<S> {
    async fn append_with(
        &self,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: &[NewEvent],
        options: AppendOptions<'_>,
    ) -> Result<AppendOutcome, StoreError> {
        if self.armed.swap(false, Ordering::SeqCst) {
            let other = NewEvent::new(
                "MoneyDeposited",
                2,
                json!({"amount": 1, "currency": "EUR"}),
                Metadata::new(),
            );
            self.inner
                .append(stream, ExpectedVersion::Any, &[other])
                .await?;
        }
        self.inner
            .append_with(stream, expected, events, options)
            .await
    }

    async fn find_idempotency_key(
        &self,
        stream: StreamRef<'_>,
        idempotency_key: &str,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        self.inner
            .find_idempotency_key(stream, idempotency_key)
            .await
    }

    async fn visit_stream(
        &self,
        stream: StreamRef<'_>,
        versions: RangeInclusive<u64>,
        visitor: &mut AsyncVisitor<'_>,
    ) -> Result<(), StoreError> {
        self.inner.visit_stream(stream, versions, visitor).await
    }

    async fn visit_all(
        &self,
        from_position: u64,
        limit: usize,
        visitor: &mut AsyncVisitor<'_>,
    ) -> Result<(), StoreError> {
        self.inner.visit_all(from_position, limit, visitor).await
    }

    async fn stream_version(&self, stream: StreamRef<'_>) -> Result<u64, StoreError> {
        self.inner.stream_version(stream).await
    }
}

async fn interfering() -> (Arc<Interfering<AsyncSqliteStore>>, TempDir) {
    let (store, dir) = sqlite().await;
    let store = Interfering {
        inner: Arc::into_inner(store).unwrap(),
        armed: AtomicBool::new(false),
    };
    (Arc::new(store), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_the_retry_policy_does_not_absorb_is_409() {
    let (store, _dir) = interfering().await;
    // A repository that reports the first conflict: the service answers 409.
    let server = start(store.clone(), RetryPolicy::no_retry()).await;
    let addr = server.addr();
    open(addr, "acc-1").await;

    store.armed.store(true, Ordering::SeqCst);
    let reply = deposit(addr, "acc-1", 5, None).await;
    assert_eq!(reply.status, 409, "{reply:?}");
    assert_eq!(reply.body["error"], "conflict", "{reply:?}");
    assert_eq!(reply.body["retry"], true, "{reply:?}");
    assert!(
        reply.body["message"].as_str().unwrap().contains("retry"),
        "{reply:?}"
    );
    assert_eq!(reply.header("retry-after"), Some("1"));
    // Nothing of the refused deposit was stored; the interfering one was.
    assert_eq!(balance(addr, "acc-1").await, (1, 2));

    // The client retries, as told: it goes through.
    let reply = deposit(addr, "acc-1", 5, None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(balance(addr, "acc-1").await, (6, 3));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_default_retry_policy_the_same_conflict_is_retried() {
    let (store, _dir) = interfering().await;
    let server = start(store.clone(), RetryPolicy::default()).await;
    let addr = server.addr();
    open(addr, "acc-1").await;

    store.armed.store(true, Ordering::SeqCst);
    let reply = deposit(addr, "acc-1", 5, None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["attempts"], 2, "{reply:?}");
    assert_eq!(
        (
            reply.body["balance"].as_u64(),
            reply.body["version"].as_u64()
        ),
        (Some(6), Some(3))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overdraft_is_422_with_the_domain_message() {
    let (store, _dir) = sqlite().await;
    let server = start(store, RetryPolicy::default()).await;
    let addr = server.addr();
    open(addr, "acc-1").await;
    assert_eq!(deposit(addr, "acc-1", 10, None).await.status, 200);

    let reply = client::post(addr, "/accounts/acc-1/withdraw", &amount(11), None)
        .await
        .unwrap();
    assert_eq!(reply.status, 422, "{reply:?}");
    assert_eq!(reply.body["error"], "rejected");
    assert_eq!(
        reply.body["message"],
        "insufficient funds: balance 10, requested 11"
    );
    assert_eq!(
        balance(addr, "acc-1").await,
        (10, 2),
        "nothing was appended"
    );

    // Other rejections are 422 too.
    let reply = client::post(
        addr,
        "/accounts/acc-1/open",
        &json!({"owner": "Mallory"}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 422, "{reply:?}");
    assert_eq!(reply.body["message"], "the account is already open");
    assert_eq!(deposit(addr, "acc-1", 0, None).await.status, 422);

    let reply = client::post(addr, "/accounts/acc-1/withdraw", &amount(10), None)
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["balance"], 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_account_is_404() {
    let (store, _dir) = sqlite().await;
    let server = start(store, RetryPolicy::default()).await;
    let addr = server.addr();

    let reply = client::get(addr, "/accounts/nobody").await.unwrap();
    assert_eq!(reply.status, 404, "{reply:?}");
    assert_eq!(reply.body["error"], "not_found");
    assert_eq!(reply.body["message"], "account nobody does not exist");
    for command in ["deposit", "withdraw"] {
        let reply = client::post(
            addr,
            &format!("/accounts/nobody/{command}"),
            &amount(1),
            None,
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 404, "{command}: {reply:?}");
    }
    // ... and still is: the refused commands created nothing.
    assert_eq!(
        client::get(addr, "/accounts/nobody").await.unwrap().status,
        404
    );
    let reply = client::get(addr, "/no/such/route").await.unwrap();
    assert_eq!(reply.status, 404, "{reply:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_idempotency_key_deposits_once_and_answers_the_original_outcome() {
    let (store, _dir) = sqlite().await;
    let server = start(store, RetryPolicy::default()).await;
    let addr = server.addr();
    open(addr, "acc-1").await;

    let first = deposit(addr, "acc-1", 50, Some("req-1")).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.body["duplicate"], false);
    assert_eq!(
        (
            first.body["balance"].as_u64(),
            first.body["version"].as_u64()
        ),
        (Some(50), Some(2))
    );

    // Another deposit in between, then the client sends req-1 again (it never saw the
    // answer, say): 200, the outcome of the first send, and no second deposit.
    assert_eq!(deposit(addr, "acc-1", 7, None).await.status, 200);
    let replay = deposit(addr, "acc-1", 50, Some("req-1")).await;
    assert_eq!(replay.status, 200, "{replay:?}");
    assert_eq!(replay.body["duplicate"], true, "{replay:?}");
    assert_eq!(replay.body["balance"], first.body["balance"]);
    assert_eq!(replay.body["version"], first.body["version"]);
    assert_eq!(balance(addr, "acc-1").await, (57, 3));

    // A new key is a new command.
    let other = deposit(addr, "acc-1", 50, Some("req-2")).await;
    assert_eq!(
        (other.status, other.body["duplicate"].clone()),
        (200, json!(false))
    );
    assert_eq!(balance(addr, "acc-1").await, (107, 4));

    // A key the store cannot hold is the client's error, not the server's.
    let long = "k".repeat(es_core::MAX_IDEMPOTENCY_KEY_LEN + 1);
    let reply = deposit(addr, "acc-1", 1, Some(&long)).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_body_is_400_with_a_json_answer() {
    let (store, _dir) = sqlite().await;
    let server = start(store, RetryPolicy::default()).await;
    let addr = server.addr();
    open(addr, "acc-1").await;

    for body in [&b"{\"amount\": -1}"[..], b"{}", b"not json"] {
        let reply = client::send(addr, "POST", "/accounts/acc-1/deposit", &[], Some(body))
            .await
            .unwrap();
        assert_eq!(reply.status, 400, "{reply:?}");
        assert_eq!(reply.body["error"], "bad_request", "{reply:?}");
    }
    assert_eq!(balance(addr, "acc-1").await, (0, 1));
    // An id that is not UTF-8, or holds a control character.
    for path in ["/accounts/%FF", "/accounts/a%00b"] {
        let reply = client::get(addr, path).await.unwrap();
        assert_eq!(reply.status, 400, "{path}: {reply:?}");
        assert_eq!(reply.body["error"], "bad_request", "{path}: {reply:?}");
    }
    server.stop().await;
}
