//! # es-sqlite: a durable event store in one SQLite file
//!
//! [`SqliteStore`] implements [`es_core::EventStore`] over a SQLite database: embedded, no
//! server, one file that several processes can share. It passes the same conformance suite
//! as every other es store, so code tested against [`es_core::InMemoryStore`] behaves the
//! same here.
//!
//! ```
//! use es_core::{EventStore, ExpectedVersion, Metadata, NewEvent, StreamRef};
//! use es_sqlite::SqliteStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("es-sqlite-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! let store = SqliteStore::open(dir.join("events.db"))?;
//! let stream = StreamRef::new("Counter", "c-1");
//! let event = NewEvent::new("Incremented", 1, serde_json::json!({ "by": 2 }), Metadata::new());
//! let outcome = store.append(stream, ExpectedVersion::NoStream, &[event])?;
//! assert_eq!(outcome.stream_version, 1);
//!
//! // Reopening the file finds the event again.
//! drop(store);
//! let store = SqliteStore::open(dir.join("events.db"))?;
//! let events = store.read_stream(stream, 1)?;
//! assert_eq!(events[0].payload_value()?["by"], 2);
//! # drop(store);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Layout
//!
//! One table, `es_events`, holds the global log. Its `global_position` is an
//! `INTEGER PRIMARY KEY AUTOINCREMENT`, so positions are never reused, even after rows are
//! deleted; `(aggregate_type, stream_id, stream_version)` and `event_id` are unique.
//! `recorded_at` is stored as integer microseconds since the Unix epoch (the read value is
//! the append time truncated to microseconds), `payload` and `metadata` as JSON text.
//! `es_commands` keeps the idempotency keys of committed appends, per stream, with their
//! outcome (see [`es_core::AppendOptions`]). Event ids are time-ordered (UUID v7), so the
//! unique index on them grows at its right edge instead of taking a random page per insert.
//! Rows are stepped one at a time and handed to the reader borrowed: loading a long stream
//! never holds it in memory.
//! `es_checkpoints` keeps, per read model (see [`es_core::Projector`]), the global position
//! it has applied up to and the lease (owner, expiry) of the projector instance running it.
//! A lease is taken or renewed in a `BEGIN IMMEDIATE` transaction, under the database's
//! write lock, so two processes sharing the file never both hold one: a second instance's
//! `catch_up` reports [`ProjectionError::Locked`](es_core::ProjectionError::Locked) and its
//! `run` waits until the lease is released or expires (30 s by default, so a killed
//! instance blocks others for at most that long, unless it restarts under the same owner id).
//! A read model kept in tables of the same file can be committed exactly once with its
//! checkpoint: see [`ExactlyOnce`] and [`SqliteReadModel`].
//! The schema version lives in its own table, `es_schema_version`, rather than in
//! `PRAGMA user_version`, so the file can also hold your own tables and their migrations.
//! [`SqliteStore::open`] creates or migrates the schema and refuses (with
//! [`Error::SchemaTooNew`]) a file written by a newer release.
//!
//! ## Opening a file: what `open` changes, and what it refuses
//!
//! [`SqliteStore::open`] takes the path of a file. If it does not exist, it is created. If it
//! is a SQLite database that is not an event store yet (your application's own database,
//! say), it becomes one **in place and for good**:
//!
//! - the tables `es_events`, `es_commands` and `es_schema_version` (and SQLite's
//!   `sqlite_sequence`) are created next to yours; your tables, rows, indexes and
//!   `PRAGMA user_version` are not touched, and you can keep using them through your own
//!   connections (open them with the re-exported [`rusqlite`] to get the same SQLite);
//! - the file is switched to WAL mode, which SQLite records in the file: from then on every
//!   connection to it, also other programs', runs in WAL mode (and SQLite older than 3.7.0
//!   cannot read it);
//! - the directory must be writable by every process using the file, as SQLite keeps the
//!   `-wal` and `-shm` files next to it.
//!
//! Use a file of its own for the event store if any of that is unwelcome. `open` refuses,
//! without changing anything:
//!
//! - `""`, `:memory:` and SQLite URIs (`file:...`) with [`Error::InvalidPath`]: SQLite
//!   reads them as a temporary database, one in-memory database per connection, or a URI
//!   with parameters. [`SqliteStore::open_in_memory`] is the in-memory store;
//! - a file that is not a SQLite database with [`Error::NotADatabase`];
//! - a file this process cannot write (permissions, a read-only directory or mount) with
//!   [`Error::ReadOnly`], rather than failing at the first append.
//!
//! Several processes may open, and create, the same file at the same time: each waits for
//! the others (up to 10 s).
//!
//! ## Appends and the global log
//!
//! An append is one `BEGIN IMMEDIATE` transaction: it takes the database's write lock, checks
//! the expected version, inserts every event and commits. As SQLite has one writer at a time,
//! global positions are assigned and committed in the same order, so a reader of the global
//! log ([`read_all`](es_core::EventStore::read_all)) never skips an event that commits
//! later. Another process appending to the same file waits for the lock (up to 10 s, then
//! the append fails with [`StoreError::Backend`](es_core::StoreError::Backend)).
//!
//! ## Durability: `journal_mode = WAL`, `synchronous = FULL`
//!
//! File stores run in WAL mode: readers do not block the writer nor the writer the readers.
//!
//! In WAL mode `synchronous = NORMAL` already keeps every acknowledged append across a crash
//! or `SIGKILL` of the process: the commit is in the WAL file (in the operating system's
//! cache) before `append` returns, and the next open recovers it. What NORMAL gives up is
//! power loss and operating-system crashes: the WAL is only synced at checkpoints, so the
//! last transactions acknowledged before the machine went down can disappear (the database
//! stays consistent, it just rolls back to an earlier commit).
//!
//! This crate uses **`synchronous = FULL`**: the WAL is synced to disk at every commit, so
//! an append that returned `Ok` survives power loss too. An event store is the system of
//! record; once an append is acknowledged the caller acts on it (answers a client, emits
//! side effects, advances other aggregates), and losing it afterwards would leave the world
//! and the log disagreeing. The price is one `fsync` per append, which bounds single-writer
//! throughput by the disk's sync latency; batching several events into one append amortises
//! it.
//!
//! ## Bad data
//!
//! Rows are checked as they are read: a payload or metadata that is not valid JSON, a bad
//! event id or an out-of-range number yields [`StoreError::Corrupt`](es_core::StoreError)
//! naming the stream, version and event type, and the store stays usable.
#![warn(missing_docs)]

#[cfg(feature = "async")]
mod asynchronous;
mod checkpoint;
mod error;
mod exactly_once;
mod row;
mod schema;
mod store;

#[cfg(feature = "async")]
pub use asynchronous::AsyncSqliteStore;
pub use error::Error;
pub use exactly_once::{ExactlyOnce, SqliteReadModel};
pub use store::SqliteStore;

/// The `rusqlite` this crate is built with, for opening the same file for your own tables
/// (or inspecting the event tables) without a version mismatch.
pub use rusqlite;
