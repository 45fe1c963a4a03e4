//! Queries by event type across streams: `Repository::events_of::<T>` (aliases included)
//! and `events_by_type`, in global order, paged, on every store, sync and async.

use es_core::{
    Aggregate, AsyncRepository, Event, EventStore, ExpectedVersion, InMemoryStore, Metadata,
    NewEvent, Repository, StreamRef, applies,
};
use es_sqlite::SqliteStore;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct Deposited {
    amount: u64,
}

/// Once stored as `Debited` by an older release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(aliases("Debited"))]
struct Withdrawn {
    amount: u64,
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(name = "QueryAccount")]
struct Account {
    balance: u64,
}

#[applies]
impl Account {
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }
    fn withdrawn(&mut self, e: &Withdrawn) {
        self.balance -= e.amount;
    }
}

/// Another aggregate type with an event of the same name: never part of the answers.
#[derive(Debug, Default, Aggregate)]
#[aggregate(name = "QueryLedger")]
struct Ledger {
    total: u64,
}

#[applies(event_enum = LedgerEvent)]
impl Ledger {
    fn withdrawn(&mut self, e: &Withdrawn) {
        self.total += e.amount;
    }
}

fn record<S: EventStore + Clone>(store: &S) {
    let accounts = Repository::<Account, _>::new(store.clone());
    let ledgers = Repository::<Ledger, _>::new(store.clone());
    accounts
        .execute_infallible("a", |_| Deposited { amount: 100 })
        .unwrap();
    accounts
        .execute_infallible("a", |_| Withdrawn { amount: 10 })
        .unwrap();
    ledgers
        .execute_infallible("l", |_| Withdrawn { amount: 999 })
        .unwrap();
    accounts
        .execute_infallible("b", |_| Deposited { amount: 50 })
        .unwrap();
    // An old release's name for a withdrawal.
    store
        .append(
            StreamRef::new("QueryAccount", "b"),
            ExpectedVersion::Exact(1),
            &[NewEvent::new(
                "Debited",
                1,
                json!({ "amount": 20 }),
                Metadata::new(),
            )],
        )
        .unwrap();
    accounts
        .execute_infallible("a", |_| Withdrawn { amount: 30 })
        .unwrap();
}

fn check<S: EventStore>(accounts: &Repository<Account, S>) {
    let withdrawals = accounts.events_of::<Withdrawn>(0, 100).unwrap();
    let seen: Vec<(&str, u64, u64)> = withdrawals
        .iter()
        .map(|e| {
            (
                e.record.stream_id.as_str(),
                e.record.global_position,
                e.event.amount,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [("a", 2, 10), ("b", 5, 20), ("a", 6, 30)],
        "every withdrawal of the account type, aliases included, in global order"
    );
    assert_eq!(withdrawals[1].record.event_type, "Debited");

    // Paged: two, then from after the last one.
    let first = accounts.events_of::<Withdrawn>(0, 2).unwrap();
    assert_eq!(first.len(), 2);
    let next = first.last().unwrap().record.global_position + 1;
    let rest = accounts.events_of::<Withdrawn>(next, 2).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].event.amount, 30);

    let money = accounts
        .events_by_type(&[Deposited::EVENT_TYPE, Withdrawn::EVENT_TYPE], 0, 100)
        .unwrap();
    let kinds: Vec<String> = money
        .iter()
        .map(|e| match &e.event {
            AccountEvent::Deposited(d) => format!("+{}", d.amount),
            AccountEvent::Withdrawn(w) => format!("-{}", w.amount),
        })
        .collect();
    assert_eq!(
        kinds,
        ["+100", "-10", "+50", "-30"],
        "the alias is not asked for here"
    );
    assert!(accounts.events_of::<Withdrawn>(7, 100).unwrap().is_empty());
}

#[test]
fn in_memory() {
    let store = InMemoryStore::new();
    record(&store);
    check(&Repository::<Account, _>::new(store));
}

#[test]
fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("events.db")).unwrap();
    record(&store);
    check(&Repository::<Account, _>::new(store));
}

#[test]
fn async_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("events.db")).unwrap();
    record(&store);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let accounts =
            AsyncRepository::<Account, _>::new(es_sqlite::AsyncSqliteStore::from_sync(store));
        let withdrawals = accounts.events_of::<Withdrawn>(0, 100).await.unwrap();
        let amounts: Vec<u64> = withdrawals.iter().map(|e| e.event.amount).collect();
        assert_eq!(amounts, [10, 20, 30]);
        let page = accounts
            .events_by_type(&[Deposited::EVENT_TYPE], 0, 1)
            .await
            .unwrap();
        assert_eq!(page.len(), 1);
    });
}
