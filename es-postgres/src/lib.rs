//! # es-postgres: a durable event store in PostgreSQL
//!
//! [`PostgresStore`] implements [`es_core::EventStore`] over PostgreSQL. It passes the same
//! conformance suite as every other es store, so code tested against
//! [`es_core::InMemoryStore`] behaves the same here.
//!
//! ```no_run
//! use es_core::{EventStore, ExpectedVersion, Metadata, NewEvent, StreamRef};
//! use es_postgres::PostgresStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresStore::connect_with_schema("postgres://es:es@localhost/es", "billing")?;
//! let stream = StreamRef::new("Invoice", "inv-1");
//! let event = NewEvent::new("Issued", 1, serde_json::json!({ "total": 120 }), Metadata::new());
//! store.append(stream, ExpectedVersion::NoStream, &[event])?;
//! assert_eq!(store.read_stream(stream, 1)?.len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! ## Layout
//!
//! [`PostgresStore::connect_with_schema`] creates, in its schema (`public` for
//! [`PostgresStore::connect`]):
//!
//! * `es_events`: the global log. `global_position bigint` is the primary key;
//!   `(aggregate_type, stream_id, stream_version)` and `event_id uuid` are unique;
//!   `recorded_at timestamptz` (microseconds; the appending process's clock); `payload` and
//!   `metadata` are `jsonb`, so you can query and index them. The payload is sent and read
//!   as JSON text, never through an intermediate `serde_json::Value`, and rows are streamed
//!   to the reader one at a time. A CHECK keeps versions and positions positive.
//! * `es_streams`: one row per stream with its current version, so the expected-version
//!   check of an append is one primary-key lookup, whatever the stream's length and
//!   whatever the planner's statistics (a `max(stream_version)` plan prepared while the
//!   table was empty once read the whole stream on every append).
//! * `es_commands`: the idempotency keys of committed appends, per stream, with their
//!   outcome (see [`es_core::AppendOptions`]).
//! * `es_position`: one row, the last global position handed out (see below).
//! * `es_snapshots`: aggregate snapshots, by stream and version.
//! * `es_checkpoints`: per read model (see [`es_core::Projector`]), the global position it
//!   has applied up to and the lease (owner, expiry) of the projector instance running it;
//!   [`PostgresStore`] implements [`es_core::CheckpointStore`] over it. A lease is taken or
//!   renewed by one conditional `INSERT ... ON CONFLICT DO UPDATE ... WHERE`, atomic on the
//!   server, with expiry on the server's clock, so two processes never both hold one: a
//!   second instance's `catch_up` reports
//!   [`ProjectionError::Locked`](es_core::ProjectionError::Locked) and its `run` waits
//!   until the lease is released or expires (30 s by default). A projector never skips an
//!   event that commits late: positions commit in order (see below), so a reader sees a
//!   prefix of the log, and an append still open only holds the reader back.
//! * the trigger `es_events_notify`: every committed insert into `es_events` (one
//!   notification per statement, from any writer) runs `pg_notify('es_events', <schema>)`,
//!   which [`PostgresStore::listen`] turns into wake-ups of a running projector, so it
//!   applies new events at once instead of at its next poll (see [`Listener`]).
//! * `es_schema_version`: the layout version, so later releases can migrate. A schema
//!   written by a newer release is refused with [`Error::SchemaTooNew`].
//!
//! Creation and migration run in a transaction holding an advisory lock, so several
//! processes starting at once do not trip over each other.
//!
//! ## The global log and late commits
//!
//! A reader of the global log ([`read_all`](es_core::EventStore::read_all)) remembers the
//! last position it processed and asks for what comes after. If positions came from a
//! sequence, a transaction could take position 10, a second one take 11 and commit first: a
//! reader would see 11, move past it, and never see 10 when it commits. Sequences are
//! assigned at insert, not at commit.
//!
//! So every append first runs
//! `UPDATE es_position SET last = last + n RETURNING last` on the single counter row. The
//! row lock it takes is held until the transaction ends, so the next append waits for it:
//! global positions are assigned and committed in the same order, a snapshot of the log is
//! always a prefix of it, and a rolled-back append gives its positions back (no gaps). The
//! expected-version check runs after the lock is taken, so it cannot race either.
//!
//! That check must see the appends committed while it waited for the lock, which is what
//! `READ COMMITTED` isolation gives: the store starts its append (and migration)
//! transactions at `READ COMMITTED` explicitly, whatever the server's or role's
//! `default_transaction_isolation`. Transactions passed to [`append_in_transaction`] must
//! be `READ COMMITTED` too.
//!
//! The price is that appends are serialised store-wide: one append transaction at a time
//! per store (per schema), however many streams are involved. An append is a few short
//! statements, so this allows hundreds to thousands of appends per second; separate
//! schemas are separate stores if one log is not enough.
//!
//! The alternative that keeps appends concurrent was rejected: take positions from a
//! sequence, store each row's writing transaction id, and let readers return only rows
//! written by transactions older than the oldest one still running
//! (`pg_snapshot_xmin(pg_current_snapshot())`). It needs an extra column and index and a
//! subtler read query, and its horizon is the oldest running transaction *in the whole
//! database*: one long transaction anywhere (a report, a migration, a session left idle in
//! transaction) stalls every reader of the log until it ends, for reasons unrelated to the
//! store. Positions would also have gaps (rolled-back sequence values). The counter row is
//! simple, evidently correct, and its cost is bounded and visible.
//!
//! ## Connections
//!
//! A store (and its clones) keeps a pool of at most 16 connections, or as many as
//! [`Options::max_connections`] says when opened with
//! [`PostgresStore::connect_with_options`]. A call that finds them all busy waits for one
//! to be given back rather than opening more, so many threads cannot exhaust the server's
//! `max_connections`; it waits at most [`Options::acquire_timeout`] (30 seconds by
//! default), then fails with a [`StoreError::Backend`](es_core::StoreError) holding an
//! [`AcquireTimeout`]. Connections report `application_name` [`DEFAULT_APPLICATION_NAME`]
//! (`es-postgres`) unless the connection string sets another, so they are easy to find in
//! `pg_stat_activity`.
//!
//! Connections break: the server restarts, an administrator runs `pg_terminate_backend`,
//! `idle_session_timeout` or a proxy ends quiet sessions, the network fails. The pool
//! deals with that in three ways:
//!
//! * Before it hands out an idle connection it takes in, without waiting, whatever the
//!   server sent meanwhile, and replaces the connection if the server closed it. One that
//!   sat idle for more than [`Options::check_idle_after`] (5 seconds by default) is also
//!   checked with a round trip.
//! * A connection on which a call failed is closed, never given back.
//! * A call that failed because its connection turned out to be broken runs once more, on
//!   a new connection, when that cannot repeat anything: a read
//!   ([`visit_stream`](es_core::EventStore::visit_stream),
//!   [`visit_all`](es_core::EventStore::visit_all),
//!   [`stream_version`](es_core::EventStore::stream_version),
//!   [`find_idempotency_key`](es_core::EventStore::find_idempotency_key)) whose visitor has
//!   not been handed a row yet, or an append whose transaction had not begun.
//!
//! An append whose connection broke after its transaction began is *not* run again,
//! because it may have committed: the server may have committed the `COMMIT` whose reply
//! was lost. It fails with a [`StoreError::Backend`](es_core::StoreError), and the outcome
//! is unknown. To retry such a command safely, give it an idempotency key
//! ([`AppendOptions::idempotency_key`](es_core::AppendOptions), or
//! [`ExecuteOptions::idempotency_key`](es_core::ExecuteOptions::idempotency_key) for a
//! [`Repository`](es_core::Repository) command): a retry of an append that did commit then
//! writes nothing and reports the first one's outcome as a
//! [duplicate](es_core::AppendOutcome::duplicate). Without a key, a retry appends the
//! events a second time.
//!
//! ## TLS
//!
//! Connections use TLS (rustls) as the connection string's `sslmode` says, with libpq's
//! names: `disable` (plaintext), `prefer` (the default: TLS if the server offers it),
//! `require`, `verify-ca` and `verify-full` (TLS or nothing). `sslrootcert=/path/ca.crt`
//! names the PEM file of the CA to trust (`sslrootcert=system`, or no `sslrootcert`: the
//! operating system's trust store). Both URL forms take them:
//!
//! ```text
//! postgres://app:secret@db.internal/billing?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.crt
//! host=db.internal user=app dbname=billing sslmode=verify-full sslrootcert=/etc/ssl/db-ca.crt
//! ```
//!
//! **Whenever TLS is used, the server's certificate is verified**: with `prefer`,
//! `require` and `verify-full`, it must chain to a trusted CA and be for the host name (or
//! IP address) connected to; with `verify-ca`, only the chain is checked. That is stricter
//! than libpq, whose `prefer` and `require` accept any certificate: encryption with an
//! unchecked certificate stops someone who can only listen, but not someone who can
//! intercept, who presents a certificate of their own and reads the events and the login.
//! A server with a self-signed certificate (Debian's default `ssl-cert-snakeoil`, for one)
//! therefore needs `sslrootcert` naming that certificate or its CA, or `sslmode=disable`;
//! the error says so ([`Error::TlsHandshake`]). `prefer` falls back to plaintext when the
//! server offers no TLS, which an attacker on the path can fake: use `verify-full` (or
//! `require`) where the network is not trusted. Client certificates (`sslcert`, `sslkey`)
//! are not supported and are refused with [`Error::InvalidParameter`], as is an unknown
//! `sslmode`.
//!
//! [`connect_client`] opens a plain [`postgres::Client`] from the same connection string,
//! with the same TLS, for the transactions you pass to [`append_in_transaction`].
//!
//! ## Async code and tokio
//!
//! [`PostgresStore`] is synchronous: each call blocks its thread until the server
//! answers. Use it from ordinary threads, or from async code through
//! `tokio::task::spawn_blocking`; in async code, the async store (`AsyncPostgresStore`,
//! feature `async`) does not block the runtime's threads at all.
//!
//! The `postgres` driver under [`PostgresStore`] runs a tokio runtime of its own, and
//! tokio panics when a runtime is started or dropped on a thread that already runs one:
//! calling the driver from an async task panics, and dropping one of its connections
//! there aborts the process. The store does not let that happen: on a thread that knows a
//! tokio runtime (an async task, `block_on`, or a `spawn_blocking` thread: tokio offers no
//! way to tell them apart), each call runs the driver on a short-lived thread of its own
//! and waits for it, and a store dropped there closes its connections on another thread.
//! So a call from an async task works, but it still blocks that task's worker thread for
//! the whole call, as any blocking call does: prefer `spawn_blocking` or the async store.
//!
//! The async store, `AsyncPostgresStore` (feature `async`, off by default so that sync
//! users compile no pool), implements `es_core::AsyncEventStore` on tokio-postgres with a
//! deadpool pool. It uses the same tables, SQL, checks, locking and pool rules as
//! [`PostgresStore`] (this page's sections hold for both), takes the same connection
//! strings and [`Options`], and the two can serve one schema at once. Open and use it
//! inside a tokio runtime.
//!
//! ## Upgrading a database
//!
//! The first store of a newer release to connect migrates the schema in one transaction,
//! holding the migration lock and locking `es_position` and `es_events` so that appends
//! still in flight finish first and none slips between the steps; readers carry on. A
//! schema written by a newer release is refused. Stop every process of the older release
//! before the first process of the newer one connects: an older process that is still
//! running would keep appending without updating the newer tables (`es_streams`), and the
//! streams it touched would then conflict on every later append.
//!
//! ## Appending with your own writes
//!
//! [`append_in_transaction`] (or [`PostgresStore::append_in_transaction`]) appends inside
//! a transaction you control, so events commit atomically with other writes to the same
//! database. The store's own [`append`](es_core::EventStore::append) runs the same
//! function in a transaction of its own.
//!
//! ## Exactly-once read models
//!
//! A projector's checkpoint is normally saved after its read model applied the events, so
//! a crash in between applies them again (at least once). A read model whose tables live
//! in the store's database can do better: implement [`PostgresReadModel`] (its handlers
//! gather changes, `write` writes them in a transaction) and give the projector an
//! [`ExactlyOnce`] checkpointer, which commits each batch's writes and its checkpoint in
//! one transaction. That transaction also locks the read model's checkpoint row and checks
//! that this instance still holds the lease and that the checkpoint is where it left it,
//! so an instance that stalled past its lease, or fell behind another, writes nothing
//! ([`CommitRefused`]). Killing the projector at any point leaves every event applied
//! exactly once (`tests/projection_crash_postgres.rs` does, with SIGKILL, many times).
//! For the async projector (`es_core::AsyncProjector`), `AsyncExactlyOnce` and
//! `AsyncPostgresReadModel` (feature `async`) do the same with tokio-postgres, on the async
//! store's pool.
//!
//! ## Bad data
//!
//! Rows are checked as they are read: metadata of the wrong shape, an out-of-range number
//! or timestamp yields [`StoreError::Corrupt`](es_core::StoreError) naming the stream,
//! version and event type, and the store stays usable. (`jsonb` columns cannot hold
//! invalid JSON in the first place.) A duplicate event id is refused with
//! [`StoreError::Invalid`](es_core::StoreError). A position counter that was set below
//! zero or behind the stored events (by hand, or by a tool writing `es_events` directly)
//! makes appends fail with a [`StoreError::Backend`](es_core::StoreError) that names the
//! schema and gives the `UPDATE` that repairs it.
#![warn(missing_docs)]

mod append;
#[cfg(feature = "async")]
mod asynchronous;
mod checkpoint;
mod error;
mod exactly_once;
mod listen;
mod offload;
mod options;
mod pool;
mod row;
mod schema;
mod snapshot;
mod statements;
mod store;
mod tls;

pub use append::{append_in_transaction, append_in_transaction_with};
#[cfg(feature = "async")]
pub use asynchronous::{AsyncExactlyOnce, AsyncPostgresReadModel, AsyncPostgresStore};
pub use error::{AcquireTimeout, Error};
pub use exactly_once::{CommitRefused, ExactlyOnce, PostgresReadModel};
pub use listen::Listener;
pub use options::Options;
pub use store::{DEFAULT_APPLICATION_NAME, PostgresStore};
pub use tls::connect_client;

/// The `postgres` driver this crate is built with, for opening the connection whose
/// transaction you pass to [`append_in_transaction`] without a version mismatch.
pub use postgres;

/// The async driver under the async store, for the transactions an
/// [`AsyncPostgresReadModel`] writes in without a version mismatch.
#[cfg(feature = "async")]
pub use tokio_postgres;
