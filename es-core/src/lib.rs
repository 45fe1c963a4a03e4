//! # es: event-sourced aggregates from plain Rust
//!
//! Write your domain as plain structs and methods; derive the rest.
//!
//! * [`#[derive(Event)]`](macro@Event) gives an event struct a stable stored name, a schema
//!   version and, as the schema evolves, an upcaster chain checked at compile time.
//! * [`#[applies]`](macro@applies) on an `impl` block turns each method into an event
//!   handler and generates the aggregate's event enum, its `apply` dispatch (a plain
//!   `match`) and its decoder.
//! * [`#[derive(Aggregate)]`](macro@Aggregate) names the stored aggregate type and links the
//!   struct to its handlers.
//! * [`Repository`] loads an aggregate (a [`Versioned`] state), runs a command (a closure
//!   returning events or a domain error) and appends the events with optimistic
//!   concurrency, retrying on conflict as its [`RetryPolicy`] says.
//! * [`#[read_model]`](macro@read_model) on an `impl` block declares a read model: each
//!   method handles one event type of one aggregate type (`#[from(Inventory)]`), optionally
//!   seeing the stored envelope ([`EventRecord`]). A [`Projector`] feeds it the global log
//!   from its checkpoint ([`CheckpointStore`]): [`catch_up`](Projector::catch_up),
//!   [`rebuild`](Projector::rebuild) with progress, and [`run`](Projector::run) to keep
//!   following new events until a [`StopHandle`] stops it.
//! * [`serde_json`] is re-exported, for upcasters that rewrite stored JSON payloads.
//! * [`EventStore`] is the storage contract; [`InMemoryStore`] implements it here, and the
//!   `es-sqlite` and `es-postgres` crates implement it durably.
//!
//! ```
//! use es_core::{Aggregate, Event, InMemoryStore, Repository, applies};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! struct AccountOpened { owner: String }
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! struct MoneyDeposited { amount: u64 }
//!
//! #[derive(Debug, Default, Aggregate)]
//! struct BankAccount { owner: String, balance: u64, open: bool }
//!
//! #[applies]
//! impl BankAccount {
//!     fn opened(&mut self, e: &AccountOpened) { self.owner = e.owner.clone(); self.open = true; }
//!     fn deposited(&mut self, e: &MoneyDeposited) { self.balance += e.amount; }
//! }
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("the account is closed")]
//! struct Closed;
//!
//! impl BankAccount {
//!     fn open(&self, owner: &str) -> Result<AccountOpened, Closed> {
//!         Ok(AccountOpened { owner: owner.into() })
//!     }
//!     fn deposit(&self, amount: u64) -> Result<MoneyDeposited, Closed> {
//!         if !self.open { return Err(Closed); }
//!         Ok(MoneyDeposited { amount })
//!     }
//! }
//!
//! let repo = Repository::<BankAccount, _>::new(InMemoryStore::new());
//! assert!(repo.execute("acc-1", |acc| acc.deposit(5)).unwrap_err().rejection().is_some());
//! repo.execute("acc-1", |acc| acc.open("Alice"))?;
//! repo.execute("acc-1", |acc| acc.deposit(50))?;
//! let acc = repo.load("acc-1")?.expect("the stream exists");
//! assert_eq!((acc.state.balance, acc.version), (50, 2));
//! assert!(repo.load("acc-2")?.is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Sync or async
//!
//! The same aggregates, events, handlers, decisions and upcasters work both ways; only the
//! repository and the store differ.
//!
//! | Where | Repository | Stores |
//! |---|---|---|
//! | CLI tools, tests, batch jobs, threads | [`Repository`] over an [`EventStore`] | [`InMemoryStore`], `es_sqlite::SqliteStore`, `es_postgres::PostgresStore` |
//! | tokio services (axum, tonic, ...) | `AsyncRepository` over an `AsyncEventStore` (feature `async`) | [`InMemoryStore`], `es_sqlite::AsyncSqliteStore`, `es_postgres::AsyncPostgresStore` (feature `async` of each crate) |
//!
//! Inside a tokio runtime use the async API: the sync PostgreSQL store refuses to run there
//! (its driver would block, or panic), and the sync SQLite store would hold a runtime
//! worker for the length of every call. The decide closure never awaits: a decision is a
//! pure function of the state, so it is the same code in both.
//!
//! ```toml
//! [dependencies]
//! es-core = { version = "0.1", features = ["async"] }
//! es-sqlite = { version = "0.1", features = ["async"] }
//! ```
//!
//! | Read side | Projector |
//! |---|---|
//! | threads | [`Projector`] over an [`EventStore`] and a [`CheckpointStore`] |
//! | tokio services | `AsyncProjector` over an `AsyncEventStore` and an `AsyncCheckpointStore` (feature `async`) |
//!
//! ## Errors
//!
//! Every error of es says what went wrong, where (stream, version, event type, global
//! position) and what to do. Its message is complete: an error caused by another (a
//! store's driver error, a handler's error, serde's message) includes that error's text,
//! and returns `None` from [`source()`](std::error::Error::source), so a report that walks
//! the chain (`anyhow`, `eyre`) prints each cause once. The cause stays reachable as the
//! variant's `cause` field.
//!
//! ## Features
//!
//! * `async`: `AsyncEventStore`, `AsyncRepository`, `AsyncCheckpointStore` and
//!   `AsyncProjector`. Pulls in tokio's timer and `sync` (for `Notify`) only; without it
//!   nothing of tokio is compiled.
//! * `tracing`: spans (`es.execute`, `es.load`) and events on load, append, conflict
//!   (with the pause before the retry, or a warning when the retry policy gives up) and
//!   duplicate commands, each with the aggregate type, stream id, versions and attempt.
#![warn(missing_docs)]

mod aggregate;
pub mod backend;
mod clock;
mod codec;
pub mod decision;
mod envelope;
mod error;
mod event;
mod id;
mod projection;
mod repository;
mod store;
pub mod testing;
mod trace;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use aggregate::{Aggregate, EventHandlers, SnapshotPolicy};
pub use clock::{Clock, ManualClock, SystemClock};
pub use codec::{DecodeError, UpcastError, decode_event};
/// An aggregate's state and its stream version, as [`Repository::load`] returns it.
pub use decision::Versioned;
pub use envelope::{
    EventRecord, Metadata, MetadataRef, NewEvent, RecordedEvent, StreamKey, StreamRef,
};
pub use error::Error;
pub use es_macros::{Aggregate, Event, applies, read_model};
pub use event::{Event, EventEnum, IntoEvents};
pub use id::new_event_id;
pub use projection::{
    ApplyError, CaughtUp, CheckpointStore, Checkpointer, DEFAULT_BATCH_SIZE, Handled, Lease,
    Progress, ProjectionError, Projector, Reaction, ReadModel, RunOptions, StopHandle, Waited,
    decide_lease,
};
#[cfg(feature = "async")]
pub use projection::{AsyncCheckpointStore, AsyncCheckpointer, AsyncProjector};
#[cfg(feature = "async")]
pub use repository::AsyncRepository;
pub use repository::{
    DEFAULT_MAX_RETRIES, DecodedEvent, ExecuteOptions, Executed, Repository, RetryPolicy,
    StateCache,
};
/// The `serde_json` crate es stores payloads with, so that an upcaster
/// (`fn(serde_json::Value) -> Result<serde_json::Value, UpcastError>`) needs no dependency
/// of its own: write `es_core::serde_json::Value`.
///
/// ```
/// use es_core::UpcastError;
/// use es_core::serde_json::{Value, json};
///
/// fn v1_to_v2(mut payload: Value) -> Result<Value, UpcastError> {
///     payload["currency"] = json!("EUR");
///     Ok(payload)
/// }
/// assert_eq!(v1_to_v2(json!({"amount": 5}))?, json!({"amount": 5, "currency": "EUR"}));
/// # Ok::<(), UpcastError>(())
/// ```
pub use serde_json;
pub use serde_json::value::RawValue;
pub use store::{
    AppendOptions, AppendOutcome, EventStore, ExpectedVersion, InMemoryStore,
    MAX_IDEMPOTENCY_KEY_LEN, Snapshot, StoreError, Visit, Visitor,
};
#[cfg(feature = "async")]
pub use store::{AsyncEventStore, AsyncVisitor};
pub use uuid::Uuid;
