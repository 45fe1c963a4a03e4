//! `Repository::with_cache`: a hot aggregate is not replayed for every command, and the
//! cache stays correct when another writer (another process, or a repository without the
//! cache) appends to the same stream.

use es_core::{Aggregate, AsyncRepository, Event, InMemoryStore, Repository, StateCache, applies};
use serde::{Deserialize, Serialize};

#[path = "support/counting.rs"]
mod counting;
use counting::Counting;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Deposited {
    amount: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Aggregate)]
#[aggregate(name = "CachedAccount")]
struct Account {
    balance: u64,
}

#[applies]
impl Account {
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }
}

#[test]
fn a_hot_aggregate_is_not_replayed_for_every_command() {
    let store = Counting::new(InMemoryStore::new());
    let repo = Repository::<Account, _>::new(&store).with_cache(100);
    for _ in 0..200 {
        repo.execute_infallible("hot", |_| Deposited { amount: 1 })
            .unwrap();
    }
    assert_eq!(
        store.take_visited(),
        0,
        "every command started from the cached state, and no other writer appended"
    );
    let loaded = repo.load("hot").unwrap().unwrap();
    assert_eq!((loaded.version, loaded.state.balance), (200, 200));

    // Without the cache every command replays the stream so far: 0 + 1 + ... + 199.
    let uncached = Repository::<Account, _>::new(&store);
    store.take_visited();
    for _ in 0..10 {
        uncached
            .execute_infallible("cold", |_| Deposited { amount: 1 })
            .unwrap();
    }
    assert_eq!(store.take_visited(), 45);
}

#[test]
fn another_writer_is_caught_up_and_no_update_is_lost() {
    let store = Counting::new(InMemoryStore::new());
    let cached = Repository::<Account, _>::new(&store).with_cache(10);
    let other = Repository::<Account, _>::new(&store);
    cached
        .execute_infallible("acc", |_| Deposited { amount: 1 })
        .unwrap();
    // Another writer appends two events the cache has not seen.
    other
        .execute_infallible("acc", |_| Deposited { amount: 10 })
        .unwrap();
    other
        .execute_infallible("acc", |_| Deposited { amount: 100 })
        .unwrap();
    store.take_visited();
    let done = cached
        .execute_infallible("acc", |acc| {
            assert_eq!(
                acc.balance, 111,
                "the decision sees the other writer's events"
            );
            Deposited { amount: 1000 }
        })
        .unwrap();
    assert_eq!(
        store.take_visited(),
        2,
        "only the two events the cache missed are read"
    );
    assert_eq!((done.version, done.state.balance), (4, 1111));
    assert_eq!(done.attempts, 1);

    // A writer that appends between the cached load and the append: a conflict, caught
    // up and retried, still nothing lost.
    let mut interfered = false;
    let done = cached
        .execute_infallible("acc", |_| {
            if !std::mem::replace(&mut interfered, true) {
                other
                    .execute_infallible("acc", |_| Deposited { amount: 5 })
                    .unwrap();
            }
            Deposited { amount: 1 }
        })
        .unwrap();
    assert_eq!(done.attempts, 2);
    assert_eq!(done.state.balance, 1117);
    assert_eq!(other.load("acc").unwrap().unwrap().state.balance, 1117);
    assert_eq!(cached.load("acc").unwrap().unwrap().state.balance, 1117);
}

#[test]
fn the_cache_keeps_the_most_recently_used_states() {
    let cache = StateCache::<Account>::new(2);
    assert!(cache.is_empty());
    let store = Counting::new(InMemoryStore::new());
    let repo = Repository::<Account, _>::new(&store).with_cache(2);
    for id in ["a", "b", "c"] {
        repo.execute_infallible(id, |_| Deposited { amount: 1 })
            .unwrap();
    }
    store.take_visited();
    // "a" was evicted when "c" came in: loading it reads its event; "c" is cached.
    repo.load("c").unwrap();
    assert_eq!(store.take_visited(), 0);
    repo.load("a").unwrap();
    assert_eq!(store.take_visited(), 1);
    // Now "b" is the least recently used, and is evicted by "a"'s return.
    repo.load("b").unwrap();
    assert_eq!(store.take_visited(), 1);
}

#[test]
fn the_async_repository_uses_the_cache_too() {
    let store = std::sync::Arc::new(Counting::new(InMemoryStore::new()));
    let repo = AsyncRepository::<Account, _>::new(std::sync::Arc::clone(&store)).with_cache(10);
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async {
            for _ in 0..50 {
                repo.execute_infallible("hot", |_| Deposited { amount: 2 })
                    .await
                    .unwrap();
            }
            let loaded = repo.load("hot").await.unwrap().unwrap();
            assert_eq!((loaded.version, loaded.state.balance), (50, 100));
        });
    assert_eq!(
        store.take_visited(),
        0,
        "every command started from the cache"
    );
}
