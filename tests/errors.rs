//! Every es error prints its cause once: the cause's text is in the message, and
//! `source()` is `None`, so a report that walks the chain (as `anyhow` does) does not print
//! it a second time. Checked for the repository's errors (rejection, decoding, store),
//! upcasts, projections, and the SQLite and PostgreSQL stores' own errors.

use std::error::Error as StdError;

use es_core::{
    Aggregate, CheckpointStore, Error, Event, EventStore, ExpectedVersion, InMemoryStore, Metadata,
    NewEvent, Projector, Repository, StoreError, StreamRef, UpcastError, applies, read_model,
};
use serde::{Deserialize, Serialize};

#[path = "support/postgres.rs"]
mod support;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Deposited {
    amount: u64,
}

#[derive(Debug, Default, Aggregate)]
struct Account {
    balance: u64,
}

#[applies]
impl Account {
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the account is frozen")]
struct Frozen;

#[derive(Debug, Default)]
struct Refusing;

#[read_model(from = Account, name = "refusing")]
impl Refusing {
    fn deposited(&mut self, _: &Deposited) -> Result<(), String> {
        Err("the ledger is closed".into())
    }
}

/// The report `anyhow` would print: the error and each source after it.
fn report(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// `error`'s message holds `cause` exactly once, and so does its whole report.
fn cause_once(error: &dyn StdError, cause: &str) {
    let message = error.to_string();
    assert_eq!(message.matches(cause).count(), 1, "{message}");
    assert_eq!(report(error).matches(cause).count(), 1, "{}", report(error));
    assert!(error.source().is_none(), "{:?}", error.source());
}

#[test]
fn repository_errors_hold_their_cause_once() {
    let store = InMemoryStore::new();
    let repo = Repository::<Account, _>::new(store.clone());

    let rejected = repo
        .execute("a", |_: &Account| Err::<Deposited, _>(Frozen))
        .unwrap_err();
    cause_once(&rejected, "the account is frozen");
    assert!(matches!(rejected, Error::Rejected { cause: Frozen, .. }));

    let stream = StreamRef::new("Account", "bad");
    let unknown = NewEvent::new("Frozen", 1, serde_json::json!({}), Metadata::new());
    store
        .append(stream, ExpectedVersion::NoStream, &[unknown])
        .unwrap();
    let decode = repo.load("bad").unwrap_err();
    cause_once(&decode, "unknown event type `Frozen`");

    let upcast = UpcastError::with_source(
        "the amount is not a number",
        serde_json::from_str::<u64>("\"x\"").unwrap_err(),
    );
    cause_once(&upcast, "invalid type: string");
    assert!(upcast.cause().is_some(), "the cause stays reachable");

    let backend = StoreError::backend("disk full");
    cause_once(&backend, "disk full");
}

#[test]
fn projection_errors_hold_their_cause_once() {
    let store = InMemoryStore::new();
    Repository::<Account, _>::new(store.clone())
        .execute_infallible("a", |_: &Account| Deposited { amount: 1 })
        .unwrap();
    let mut projector = Projector::new(store.clone(), Refusing, store.clone());
    let error = projector.catch_up().unwrap_err();
    cause_once(&error, "the ledger is closed");
    assert_eq!(store.load_checkpoint("refusing").unwrap(), 0);
}

#[test]
fn sqlite_errors_hold_their_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(
        &path,
        "these are not the tables you are looking for, at all, no",
    )
    .unwrap();
    let error = es_sqlite::SqliteStore::open(&path).unwrap_err();
    cause_once(&error, "file is not a database");
}

#[test]
fn postgres_errors_hold_their_cause_once() {
    // Nothing listens on port 9 of this host: the connection is refused, server or not.
    let error =
        es_postgres::PostgresStore::connect("postgres://es:es@127.0.0.1:9/es?sslmode=disable")
            .unwrap_err();
    assert!(
        matches!(error, es_postgres::Error::Connect { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("cannot connect to PostgreSQL"),
        "{message}"
    );
    assert!(error.source().is_none(), "{:?}", error.source());
    assert_eq!(report(&error), message);

    // A server error: its SQLSTATE, message and hint are in the message, once.
    let Some(url) = support::url() else { return };
    let schema = support::Schema::new(&url, "errors");
    let store = es_postgres::PostgresStore::connect_with_schema(&url, &schema.name).unwrap();
    let mut client = es_postgres::connect_client(&url).unwrap();
    client
        .batch_execute(&format!("DROP TABLE \"{}\".es_events CASCADE", schema.name))
        .unwrap();
    let error = store.read_all(1, 10).expect_err("the events table is gone");
    cause_once(&error, "42P01");
}
