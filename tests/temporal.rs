//! Temporal queries: the state at a version (`load_at`), as of a time (`load_as_of`, with
//! a store clock so no test sleeps), and bounded history (`history_range`), on every store.

use std::time::{Duration, SystemTime};

use es_core::{
    Aggregate, AsyncRepository, Event, EventStore, InMemoryStore, ManualClock, Repository, applies,
};
use es_sqlite::SqliteStore;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Opened {
    initial: u64,
}
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Deposited {
    amount: u64,
}
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Withdrawn {
    amount: u64,
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(name = "TemporalAccount")]
struct Account {
    balance: u64,
}

#[applies]
impl Account {
    fn opened(&mut self, e: &Opened) {
        self.balance = e.initial;
    }
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }
    fn withdrawn(&mut self, e: &Withdrawn) {
        self.balance -= e.amount;
    }
}

fn start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Open with 1000, deposit 500, withdraw 200, deposit 100, one minute apart (the clock
/// stands at `start + (version - 1) minutes` for each event).
fn record_history<S: EventStore>(repo: &Repository<Account, S>, clock: &ManualClock) {
    repo.execute_infallible("acc", |_| Opened { initial: 1000 })
        .unwrap();
    clock.advance(Duration::from_secs(60));
    repo.execute_infallible("acc", |_| Deposited { amount: 500 })
        .unwrap();
    clock.advance(Duration::from_secs(60));
    repo.execute_infallible("acc", |_| Withdrawn { amount: 200 })
        .unwrap();
    clock.advance(Duration::from_secs(60));
    repo.execute_infallible("acc", |_| Deposited { amount: 100 })
        .unwrap();
}

fn check_temporal_queries<S: EventStore>(repo: &Repository<Account, S>) {
    let now = repo.load("acc").unwrap().unwrap();
    assert_eq!((now.state.balance, now.version), (1400, 4));

    let at_3 = repo.load_at("acc", 3).unwrap().unwrap();
    assert_eq!((at_3.state.balance, at_3.version), (1300, 3));
    let at_1 = repo.load_at("acc", 1).unwrap().unwrap();
    assert_eq!(at_1.state.balance, 1000);
    let beyond = repo.load_at("acc", 99).unwrap().unwrap();
    assert_eq!(
        beyond.version, 4,
        "a version past the end gives the current state"
    );
    assert!(repo.load_at("acc", 0).unwrap().is_none());
    assert!(repo.load_at("nobody", 3).unwrap().is_none());

    // Between the withdrawal (start + 2 min) and the last deposit (start + 3 min).
    let between = start() + Duration::from_secs(150);
    let as_of = repo.load_as_of("acc", between).unwrap().unwrap();
    assert_eq!((as_of.state.balance, as_of.version), (1300, 3));
    // Exactly at an event's time includes it.
    let exactly = repo
        .load_as_of("acc", start() + Duration::from_secs(60))
        .unwrap()
        .unwrap();
    assert_eq!((exactly.state.balance, exactly.version), (1500, 2));
    assert!(
        repo.load_as_of("acc", start() - Duration::from_secs(1))
            .unwrap()
            .is_none(),
        "nothing was recorded before the account was opened"
    );

    let middle = repo.history_range("acc", 2..=3).unwrap();
    let versions: Vec<u64> = middle.iter().map(|e| e.record.stream_version).collect();
    assert_eq!(versions, [2, 3]);
    assert!(matches!(
        middle[1].event,
        AccountEvent::Withdrawn(Withdrawn { amount: 200 })
    ));
    assert_eq!(
        middle[1].record.recorded_at,
        start() + Duration::from_secs(120)
    );
    assert_eq!(repo.history_range("acc", 3..).unwrap().len(), 2);
    assert_eq!(repo.history_range("acc", ..2).unwrap().len(), 1);
    assert_eq!(repo.history_range("acc", ..).unwrap().len(), 4);
    assert!(repo.history_range("acc", 5..).unwrap().is_empty());
    assert!(repo.history_range("acc", 0..=0).unwrap().is_empty());
}

#[test]
fn in_memory() {
    let clock = ManualClock::new(start());
    let repo = Repository::<Account, _>::new(InMemoryStore::with_clock(clock.clone()));
    record_history(&repo, &clock);
    check_temporal_queries(&repo);
}

#[test]
fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start());
    let store = SqliteStore::open(dir.path().join("events.db"))
        .unwrap()
        .with_clock(clock.clone());
    let repo = Repository::<Account, _>::new(store);
    record_history(&repo, &clock);
    check_temporal_queries(&repo);
}

#[test]
fn async_repository() {
    let clock = ManualClock::new(start());
    let store = InMemoryStore::with_clock(clock.clone());
    record_history(&Repository::<Account, _>::new(store.clone()), &clock);
    let repo = AsyncRepository::<Account, _>::new(store);
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async {
            let at_3 = repo.load_at("acc", 3).await.unwrap().unwrap();
            assert_eq!((at_3.state.balance, at_3.version), (1300, 3));
            let between = start() + Duration::from_secs(150);
            let as_of = repo.load_as_of("acc", between).await.unwrap().unwrap();
            assert_eq!(as_of.state.balance, 1300);
            assert_eq!(repo.history_range("acc", 2..=3).await.unwrap().len(), 2);
        });
}

/// The same account type with snapshots every 2 events.
#[derive(Debug, Default, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "TemporalAccount", snapshot_every = 2)]
struct SnappedAccount {
    balance: u64,
}

#[applies(event_enum = SnappedEvent)]
impl SnappedAccount {
    fn opened(&mut self, e: &Opened) {
        self.balance = e.initial;
    }
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }
    fn withdrawn(&mut self, e: &Withdrawn) {
        self.balance -= e.amount;
    }
}

#[test]
fn as_of_queries_with_snapshots_use_only_snapshots_taken_by_then() {
    let clock = ManualClock::new(start());
    let store = InMemoryStore::with_clock(clock.clone());
    let repo = Repository::<SnappedAccount, _>::new(store.clone());
    repo.execute_infallible("acc", |_| Opened { initial: 1000 })
        .unwrap();
    clock.advance(Duration::from_secs(60));
    repo.execute_infallible("acc", |_| Deposited { amount: 500 })
        .unwrap();
    clock.advance(Duration::from_secs(60));
    repo.execute_infallible("acc", |_| Withdrawn { amount: 200 })
        .unwrap();
    clock.advance(Duration::from_secs(60));
    repo.execute_infallible("acc", |_| Deposited { amount: 100 })
        .unwrap();
    let snapshot = es_core::EventStore::load_snapshot(
        &store,
        es_core::StreamRef::new("TemporalAccount", "acc"),
        1,
        u64::MAX,
    )
    .unwrap()
    .unwrap();
    assert_eq!(snapshot.stream_version, 4, "snapshots at 2 and 4");
    for (seconds, balance, version) in [(0, 1000, 1), (90, 1500, 2), (150, 1300, 3), (999, 1400, 4)]
    {
        let at = start() + Duration::from_secs(seconds);
        let loaded = repo.load_as_of("acc", at).unwrap().unwrap();
        assert_eq!(
            (loaded.state.balance, loaded.version),
            (balance, version),
            "as of {seconds} s"
        );
    }
}

#[path = "support/postgres.rs"]
mod support;

#[test]
fn postgres() {
    let Some(url) = support::url() else { return };
    let schema = support::Schema::new(&url, "es_temporal");
    let clock = ManualClock::new(start());
    let store = es_postgres::PostgresStore::connect_with_schema(&url, &schema.name)
        .unwrap()
        .with_clock(clock.clone());
    let repo = Repository::<Account, _>::new(store);
    record_history(&repo, &clock);
    check_temporal_queries(&repo);
}

#[test]
fn async_postgres() {
    let Some(url) = support::url() else { return };
    let schema = support::Schema::new(&url, "es_temporal");
    let clock = ManualClock::new(start());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = es_postgres::AsyncPostgresStore::connect_with_schema(&url, &schema.name)
            .await
            .unwrap()
            .with_clock(clock.clone());
        let repo = AsyncRepository::<Account, _>::new(store);
        for (event, advance) in [(0u64, 60u64), (1, 60), (2, 60), (3, 0)] {
            let done = match event {
                0 => {
                    repo.execute_infallible("acc", |_| AccountEvent::from(Opened { initial: 1000 }))
                        .await
                }
                1 => {
                    repo.execute_infallible("acc", |_| {
                        AccountEvent::from(Deposited { amount: 500 })
                    })
                    .await
                }
                2 => {
                    repo.execute_infallible("acc", |_| {
                        AccountEvent::from(Withdrawn { amount: 200 })
                    })
                    .await
                }
                _ => {
                    repo.execute_infallible("acc", |_| {
                        AccountEvent::from(Deposited { amount: 100 })
                    })
                    .await
                }
            };
            done.unwrap();
            clock.advance(Duration::from_secs(advance));
        }
        let at_3 = repo.load_at("acc", 3).await.unwrap().unwrap();
        assert_eq!((at_3.state.balance, at_3.version), (1300, 3));
        let between = start() + Duration::from_secs(150);
        let as_of = repo.load_as_of("acc", between).await.unwrap().unwrap();
        assert_eq!((as_of.state.balance, as_of.version), (1300, 3));
        let history = repo.history_range("acc", 2..=3).await.unwrap();
        assert_eq!(
            history[1].record.recorded_at,
            start() + Duration::from_secs(120)
        );
    });
}
