//! The bank account service: the domain (the aggregate, events and decisions of
//! `examples/bank_account.rs`), the axum router over an [`AsyncRepository`], and the mapping
//! of `es_core::Error` to HTTP statuses.
//!
//! `main.rs` serves it; `tests/bank_service.rs` includes this file with
//! `#[path = "../examples/bank_service/app.rs"] mod app;` and drives it over a socket.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use es_core::{
    Aggregate, AsyncEventStore, AsyncRepository, Error, Event, ExecuteOptions, Executed,
    IntoEvents, MAX_IDEMPOTENCY_KEY_LEN, UpcastError, applies,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument;

// ---------------------------------------------------------------------------------------
// The domain: the same aggregate and stored events as examples/bank_account.rs, so the
// service reads (and credits) the accounts that example wrote to the same store.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct AccountOpened {
    pub owner: String,
}

/// Version 1 (stored as `FundsAdded` by an older release) had no currency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "MoneyDeposited", version = 2,
        upcast(from = 1, with = deposit_v1_to_v2),
        aliases("FundsAdded"))]
pub struct MoneyDeposited {
    pub amount: u64,
    pub currency: String,
}

fn deposit_v1_to_v2(mut payload: Value) -> Result<Value, UpcastError> {
    payload
        .as_object_mut()
        .ok_or_else(|| UpcastError::new("payload is not an object"))?
        .insert("currency".into(), "EUR".into());
    Ok(payload)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct MoneyWithdrawn {
    pub amount: u64,
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(name = "BankAccount")]
pub struct BankAccount {
    pub owner: String,
    pub balance: u64,
    pub open: bool,
}

#[applies]
impl BankAccount {
    fn opened(&mut self, e: &AccountOpened) {
        self.owner.clone_from(&e.owner);
        self.open = true;
    }
    fn deposited(&mut self, e: &MoneyDeposited) {
        // Saturating: a stored stream is never a reason to panic (the decision below
        // refuses a deposit that would overflow).
        self.balance = self.balance.saturating_add(e.amount);
    }
    fn withdrawn(&mut self, e: &MoneyWithdrawn) {
        self.balance = self.balance.saturating_sub(e.amount);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BankError {
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("the account is not open")]
    NotOpen,
    #[error("insufficient funds: balance {balance}, requested {requested}")]
    InsufficientFunds { balance: u64, requested: u64 },
    // Two more than in bank_account.rs: amounts come from the network here.
    #[error("the amount must be at least 1")]
    ZeroAmount,
    #[error("a deposit of {amount} would overflow the balance {balance}")]
    Overflow { balance: u64, amount: u64 },
}

impl BankAccount {
    pub fn open(&self, owner: &str) -> Result<AccountOpened, BankError> {
        if self.open {
            return Err(BankError::AlreadyOpen);
        }
        Ok(AccountOpened {
            owner: owner.into(),
        })
    }

    pub fn deposit(&self, amount: u64) -> Result<MoneyDeposited, BankError> {
        if !self.open {
            return Err(BankError::NotOpen);
        }
        if amount == 0 {
            return Err(BankError::ZeroAmount);
        }
        if self.balance.checked_add(amount).is_none() {
            return Err(BankError::Overflow {
                balance: self.balance,
                amount,
            });
        }
        Ok(MoneyDeposited {
            amount,
            currency: "EUR".into(),
        })
    }

    pub fn withdraw(&self, amount: u64) -> Result<MoneyWithdrawn, BankError> {
        if !self.open {
            return Err(BankError::NotOpen);
        }
        if amount == 0 {
            return Err(BankError::ZeroAmount);
        }
        if amount > self.balance {
            return Err(BankError::InsufficientFunds {
                balance: self.balance,
                requested: amount,
            });
        }
        Ok(MoneyWithdrawn { amount })
    }
}

// ---------------------------------------------------------------------------------------
// HTTP

/// The repository the handlers share: any async store behind an `Arc`, with the retry
/// policy the caller chose (`AsyncRepository::new` uses `RetryPolicy::default()`).
pub type Accounts<S> = AsyncRepository<BankAccount, std::sync::Arc<S>>;

/// The request header that names a command, so that sending it again appends nothing.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Body of `POST /accounts/{id}/open`.
#[derive(Debug, Deserialize)]
pub struct OpenRequest {
    pub owner: String,
}

/// Body of `POST /accounts/{id}/deposit` and `/withdraw`.
#[derive(Debug, Deserialize)]
pub struct AmountRequest {
    pub amount: u64,
}

/// An account as `GET /accounts/{id}` shows it.
#[derive(Debug, Serialize)]
pub struct AccountView {
    pub id: String,
    pub owner: String,
    pub balance: u64,
    pub version: u64,
}

/// What a command answers: the account after it, how many times the decision ran, and
/// whether the request was a replay of an idempotency key already committed (then the
/// account is shown as that earlier request left it).
#[derive(Debug, Serialize)]
pub struct CommandView {
    #[serde(flatten)]
    pub account: AccountView,
    pub attempts: u32,
    pub duplicate: bool,
}

/// The routes, over `accounts`:
///
/// | route | body | success |
/// |---|---|---|
/// | `POST /accounts/{id}/open` | `{"owner": "Alice"}` | 200, [`CommandView`] |
/// | `POST /accounts/{id}/deposit` | `{"amount": 100}` | 200, [`CommandView`] |
/// | `POST /accounts/{id}/withdraw` | `{"amount": 30}` | 200, [`CommandView`] |
/// | `GET /accounts/{id}` | | 200, [`AccountView`] |
///
/// Errors are JSON `{"error": kind, "message": ...}`: 400 `bad_request` (body or header
/// malformed), 404 `not_found` (no such account), 409 `conflict` (concurrent requests kept
/// winning the race; retry, with `Retry-After`), 422 `rejected` (the domain said no: the
/// message says why), 500 `internal` (logged; the body says no more).
pub fn router<S: AsyncEventStore + 'static>(accounts: Accounts<S>) -> Router {
    Router::new()
        .route("/accounts/{id}", get(show::<S>))
        .route("/accounts/{id}/open", post(open::<S>))
        .route("/accounts/{id}/deposit", post(deposit::<S>))
        .route("/accounts/{id}/withdraw", post(withdraw::<S>))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(accounts)
        .layer(middleware::from_fn(trace_request))
}

async fn show<S: AsyncEventStore + 'static>(
    State(accounts): State<Accounts<S>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AccountView>, ApiError> {
    let Path(id) = path?;
    check_id(&id)?;
    match accounts.load(&id).await {
        Ok(Some(account)) => Ok(Json(view(id, &account.state, account.version))),
        Ok(None) => Err(not_found(&id)),
        Err(error) => Err(ApiError::from_es(&id, error.widen())),
    }
}

async fn open<S: AsyncEventStore + 'static>(
    State(accounts): State<Accounts<S>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Json<OpenRequest>, JsonRejection>,
) -> Result<Json<CommandView>, ApiError> {
    let Path(id) = path?;
    let Json(request) = body?;
    run(&accounts, id, &headers, |acc| acc.open(&request.owner)).await
}

async fn deposit<S: AsyncEventStore + 'static>(
    State(accounts): State<Accounts<S>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Json<AmountRequest>, JsonRejection>,
) -> Result<Json<CommandView>, ApiError> {
    let Path(id) = path?;
    let Json(request) = body?;
    run(&accounts, id, &headers, |acc| acc.deposit(request.amount)).await
}

async fn withdraw<S: AsyncEventStore + 'static>(
    State(accounts): State<Accounts<S>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Json<AmountRequest>, JsonRejection>,
) -> Result<Json<CommandView>, ApiError> {
    let Path(id) = path?;
    let Json(request) = body?;
    run(&accounts, id, &headers, |acc| acc.withdraw(request.amount)).await
}

/// Runs one command, with the request's idempotency key if it has one.
async fn run<S, R, F>(
    accounts: &Accounts<S>,
    id: String,
    headers: &HeaderMap,
    decide: F,
) -> Result<Json<CommandView>, ApiError>
where
    S: AsyncEventStore + 'static,
    R: IntoEvents<BankAccountEvent>,
    F: FnMut(&BankAccount) -> Result<R, BankError> + Send,
{
    check_id(&id)?;
    let mut options = ExecuteOptions::new();
    if let Some(key) = idempotency_key(headers)? {
        options = options.idempotency_key(key);
    }
    match accounts.execute_with_options(&id, options, decide).await {
        Ok(done) => Ok(Json(command_view(id, &done))),
        Err(error) => Err(ApiError::from_es(&id, error)),
    }
}

fn view(id: String, account: &BankAccount, version: u64) -> AccountView {
    AccountView {
        id,
        owner: account.owner.clone(),
        balance: account.balance,
        version,
    }
}

fn command_view(id: String, done: &Executed<BankAccount>) -> CommandView {
    CommandView {
        account: view(id, &done.state, done.version),
        attempts: done.attempts,
        duplicate: done.duplicate,
    }
}

/// Account ids are path segments: refuse what no store should be asked to keep.
fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "an account id is 1 to 128 bytes without control characters",
        ));
    }
    Ok(())
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    match value.to_str() {
        // `to_str` accepts visible ASCII only, so no NUL reaches the store.
        Ok(key) if !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_LEN => Ok(Some(key)),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!(
                "the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ),
        )),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("account {id} does not exist"),
    )
}

/// An error answer: a status and a JSON body `{"error": kind, "message": ...}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "error": kind, "message": message.into() }),
        }
    }

    /// The answer to a failed repository call on account `id`.
    fn from_es(id: &str, error: Error<BankError>) -> Self {
        match error {
            Error::Rejected {
                cause: BankError::NotOpen,
                ..
            } => not_found(id),
            Error::Rejected { cause, .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "rejected",
                cause.to_string(),
            ),
            Error::Conflict { attempts, .. } => {
                tracing::warn!(account = id, attempts, "answering 409: {error}");
                let mut answer = Self::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!(
                        "account {id} was changed by concurrent requests {attempts} times in a row; retry the request"
                    ),
                );
                answer.body["retry"] = Value::Bool(true);
                answer
            }
            // Store failures, undecodable stored events, ...: the details go to the log,
            // not to the client.
            other => {
                tracing::error!(account = id, "answering 500: {other}");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; the service log has the details",
                )
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            rejection.body_text(),
        )
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            rejection.body_text(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let conflict = self.status == StatusCode::CONFLICT;
        let mut response = (self.status, Json(self.body)).into_response();
        if conflict {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Wraps each request in a span (so the repository's load/append/conflict/retry events
/// show which request they belong to) and logs its status and duration.
async fn trace_request(request: Request, next: Next) -> Response {
    // Numbers the requests, so that the lines of concurrent ones can be told apart.
    static REQUESTS: AtomicU64 = AtomicU64::new(1);
    let span = tracing::info_span!(
        "http",
        request = REQUESTS.fetch_add(1, Ordering::Relaxed),
        method = %request.method(),
        path = request.uri().path(),
    );
    async move {
        let started = Instant::now();
        let response = next.run(request).await;
        tracing::info!(
            status = response.status().as_u16(),
            micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "answered"
        );
        response
    }
    .instrument(span)
    .await
}

// ---------------------------------------------------------------------------------------
// Serving

/// A server running on a tokio task until [`stop`](Server::stop) or its shutdown signal.
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl Server {
    /// Serves `router` on `listener` until [`stop`](Server::stop) or until `shutdown`
    /// completes, whichever comes first; requests in flight are finished first.
    pub fn start(
        listener: TcpListener,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    tokio::select! {
                        _ = stopped => {}
                        () = shutdown => {}
                    }
                })
                .await
        });
        Ok(Self {
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the server ends (after its shutdown signal).
    pub async fn wait(self) -> io::Result<()> {
        match self.task.await {
            Ok(served) => served,
            Err(join) => Err(io::Error::other(join)),
        }
    }

    /// Stops the server: finishes the requests in flight, then returns.
    pub async fn stop(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            // An error means the server has already ended: `wait` reports how.
            let _ = stop.send(());
        }
        self.wait().await
    }
}
