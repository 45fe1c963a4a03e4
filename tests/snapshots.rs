//! Snapshots declared with `#[aggregate(snapshot_every = N, snapshot_version = V)]`: taken
//! after appends that cross the threshold, used by loads (which then read only the tail),
//! ignored when of another version or unreadable, never failing a command; and, for random
//! histories, snapshot + tail equals a full replay.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;

use es_core::{
    Aggregate, Event, EventStore, InMemoryStore, RawValue, Repository, Snapshot, StreamRef, applies,
};
use es_sqlite::SqliteStore;
use serde::{Deserialize, Serialize};

#[path = "support/counting.rs"]
mod counting;
use counting::Counting;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Deposited {
    amount: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Withdrawn {
    amount: u64,
}

/// Snapshots every 10 events, shape 1.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "SnapAccount", snapshot_every = 10)]
struct Account {
    balance: u64,
    operations: u64,
}

#[applies]
impl Account {
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
        self.operations += 1;
    }
    fn withdrawn(&mut self, e: &Withdrawn) {
        self.balance -= e.amount;
        self.operations += 1;
    }
}

/// The same stored aggregate with a new snapshot shape (version 2): it must not read the
/// version-1 snapshots.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "SnapAccount", snapshot_every = 10, snapshot_version = 2)]
struct AccountV2 {
    balance: u64,
    operations: u64,
}

#[applies(event_enum = AccountV2Event)]
impl AccountV2 {
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
        self.operations += 1;
    }
    fn withdrawn(&mut self, e: &Withdrawn) {
        self.balance -= e.amount;
        self.operations += 1;
    }
}

const STREAM: StreamRef<'static> = StreamRef {
    aggregate_type: "SnapAccount",
    id: "acc",
};

fn deposit_25<S: EventStore>(repo: &Repository<Account, &Counting<S>>) {
    for amount in 1..=25 {
        repo.execute_infallible("acc", |_| Deposited { amount })
            .unwrap();
    }
}

fn snapshots_cut_loads_to_the_tail<S: EventStore>(store: S) {
    let store = Counting::new(store);
    let repo = Repository::<Account, _>::new(&store);
    deposit_25(&repo);
    let snapshot = store
        .load_snapshot(STREAM, 1, u64::MAX)
        .unwrap()
        .expect("a snapshot was taken");
    assert_eq!(snapshot.stream_version, 20, "taken at 10 and 20");
    assert!(store.load_snapshot(STREAM, 1, 19).unwrap().is_some());

    store.take_visited();
    let loaded = repo.load("acc").unwrap().unwrap();
    assert_eq!(
        store.take_visited(),
        5,
        "only the events after the snapshot are read"
    );
    assert_eq!(loaded.version, 25);
    assert_eq!(loaded.state.balance, (1..=25).sum::<u64>());
    assert_eq!(loaded.state.operations, 25);

    // load_at starts from the snapshot at or before the version.
    let at_15 = repo.load_at("acc", 15).unwrap().unwrap();
    assert_eq!(store.take_visited(), 5, "snapshot 10, then 11..=15");
    assert_eq!(at_15.state.balance, (1..=15).sum::<u64>());

    // Another snapshot shape: version-1 snapshots are not read, the state is rebuilt.
    let v2 = Repository::<AccountV2, _>::new(&store);
    let rebuilt = v2.load("acc").unwrap().unwrap();
    assert_eq!(store.take_visited(), 25, "every event is replayed");
    assert_eq!(rebuilt.state.balance, loaded.state.balance);
    v2.execute_infallible("acc", |_| Deposited { amount: 1 })
        .unwrap();
    store.take_visited();
    v2.execute_infallible("acc", |_| Deposited { amount: 1 })
        .unwrap();
    assert_eq!(
        store.take_visited(),
        26,
        "the command loads all 26 events: v2 has no snapshot until its 30th"
    );

    // Pruning keeps the latest.
    assert_eq!(repo.prune_snapshots("acc", 1).unwrap(), 1);
    assert!(store.load_snapshot(STREAM, 1, 19).unwrap().is_none());
    assert_eq!(
        store
            .load_snapshot(STREAM, 1, u64::MAX)
            .unwrap()
            .unwrap()
            .stream_version,
        20
    );
}

#[test]
fn in_memory_snapshots_cut_loads_to_the_tail() {
    snapshots_cut_loads_to_the_tail(InMemoryStore::new());
}

#[test]
fn sqlite_snapshots_cut_loads_to_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    snapshots_cut_loads_to_the_tail(SqliteStore::open(dir.path().join("events.db")).unwrap());
}

#[test]
fn an_unreadable_snapshot_is_ignored_and_the_state_rebuilt() {
    let store = Counting::new(InMemoryStore::new());
    let repo = Repository::<Account, _>::new(&store);
    deposit_25(&repo);
    // A snapshot of the right version whose state does not decode.
    let garbage = RawValue::from_string(r#"{"balance": "lots"}"#.to_owned()).unwrap();
    store
        .save_snapshot(STREAM, &Snapshot::new(24, 1, garbage))
        .unwrap();
    store.take_visited();
    let loaded = repo.load("acc").unwrap().unwrap();
    assert_eq!(store.take_visited(), 25, "rebuilt from every event");
    assert_eq!(loaded.state.balance, (1..=25).sum::<u64>());
}

#[test]
fn a_failed_snapshot_save_does_not_fail_the_command() {
    let store = Counting::new(InMemoryStore::new());
    store.fail_snapshot_saves.store(true, Ordering::SeqCst);
    let repo = Repository::<Account, _>::new(&store);
    deposit_25(&repo);
    assert!(store.load_snapshot(STREAM, 1, u64::MAX).unwrap().is_none());
    assert_eq!(repo.load("acc").unwrap().unwrap().version, 25);
}

#[test]
fn a_batch_crossing_the_threshold_takes_one_snapshot() {
    let store = Counting::new(InMemoryStore::new());
    let repo = Repository::<Account, _>::new(&store);
    for _ in 0..3 {
        // 4 events per command: versions 4, 8, 12 (crosses 10), ...
        repo.execute_infallible("acc", |_| {
            (0..4).map(|_| Deposited { amount: 1 }).collect::<Vec<_>>()
        })
        .unwrap();
    }
    let snapshot = store.load_snapshot(STREAM, 1, u64::MAX).unwrap().unwrap();
    assert_eq!(snapshot.stream_version, 12);
    assert!(store.load_snapshot(STREAM, 1, 11).unwrap().is_none());
}

/// A tiny deterministic generator, so a failure names the seed that reproduces it.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// For random histories (random commands of 1 to 4 events, deposits and withdrawals),
/// the state loaded through snapshots equals the state replayed from every event, now and
/// at random earlier versions.
#[test]
fn snapshot_plus_tail_equals_full_replay_for_random_histories() {
    for seed in 1..=60u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let store = InMemoryStore::new();
        let repo = Repository::<Account, _>::new(&store);
        let commands = 1 + rng.next(40);
        for _ in 0..commands {
            let count = 1 + rng.next(4);
            let amounts: Vec<u64> = (0..count).map(|_| 1 + rng.next(100)).collect();
            repo.execute_infallible("acc", |acc: &Account| {
                let mut balance = acc.balance;
                let mut events = Vec::new();
                for &amount in &amounts {
                    if amount % 3 == 0 && balance >= amount {
                        balance -= amount;
                        events.push(AccountEvent::from(Withdrawn { amount }));
                    } else {
                        balance += amount;
                        events.push(AccountEvent::from(Deposited { amount }));
                    }
                }
                events
            })
            .unwrap();
        }
        // The full replay, without snapshots: fold the decoded history.
        let history = repo.history("acc").unwrap();
        let replay_to = |version: u64| {
            let mut state = Account::default();
            for entry in history.iter().take(version as usize) {
                state.apply(&entry.event);
            }
            state
        };
        let length = history.len() as u64;
        let loaded = repo.load("acc").unwrap().unwrap();
        assert_eq!(loaded.version, length, "seed {seed}");
        assert_eq!(loaded.state, replay_to(length), "seed {seed}: now");
        for _ in 0..5 {
            let version = 1 + rng.next(length);
            let at = repo.load_at("acc", version).unwrap().unwrap();
            assert_eq!(at.version, version, "seed {seed}");
            assert_eq!(
                at.state,
                replay_to(version),
                "seed {seed}: at version {version}"
            );
        }
        let mut seen = 0;
        store
            .visit_stream(STREAM, 1..=u64::MAX, &mut |_| {
                seen += 1;
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(seen, length);
    }
}
