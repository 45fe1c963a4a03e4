//! Concurrent writers: no lost update, and batches that never interleave in the global log.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread;
use std::time::Instant;

use es_core::{
    EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, Repository, StreamRef,
};
use serde_json::json;

use super::Account;

/// Threads in the concurrency cases.
const THREADS: u64 = 8;
/// Deposits each thread makes.
const DEPOSITS_PER_THREAD: u64 = 250;

/// 8 threads each run 250 `deposit(1)` commands on one account through
/// [`Repository::execute`]; optimistic concurrency with retries loses none of them.
pub fn no_lost_update_under_concurrency<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let repo = Repository::<Account, _>::new(&store).with_max_retries(1_000_000);
    repo.execute("acc-1", |a| a.open("Alice")).unwrap();

    let started = Instant::now();
    let attempts = AtomicU32::new(0);
    thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                let repo = repo.clone();
                for _ in 0..DEPOSITS_PER_THREAD {
                    let done = repo.execute("acc-1", |a| a.deposit(1)).unwrap();
                    attempts.fetch_add(done.attempts, Ordering::Relaxed);
                }
            });
        }
    });
    let commands = THREADS * DEPOSITS_PER_THREAD;
    eprintln!(
        "no_lost_update_under_concurrency: {commands} commands in {:?}, {} attempts",
        started.elapsed(),
        attempts.load(Ordering::Relaxed)
    );

    let account = repo.load("acc-1").unwrap().expect("the account exists");
    assert_eq!(account.state.balance, commands, "no deposit was lost");
    assert_eq!(
        account.version,
        commands + 1,
        "open + one event per deposit"
    );
    let history = store
        .read_stream(StreamRef::new("Account", "acc-1"), 1)
        .unwrap();
    assert_eq!(history.len() as u64, commands + 1);
    assert!(
        history
            .iter()
            .zip(1..)
            .all(|(e, version)| e.stream_version == version)
    );
}

/// Batches per writer in [`concurrent_batches_do_not_interleave`].
const BATCHES: u64 = 60;
/// Events per batch in [`concurrent_batches_do_not_interleave`].
const BATCH_SIZE: u64 = 5;

/// Two threads append many batches while a third tails the global log: the reader sees
/// every event exactly once, in position order, nothing that commits later shows up below
/// a position it already passed, and each batch's events sit together.
pub fn concurrent_batches_do_not_interleave<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let writing = AtomicBool::new(true);
    let seen = thread::scope(|scope| {
        let writers: Vec<_> = (0..2u64)
            .map(|writer| {
                let store = &store;
                scope.spawn(move || {
                    let id = format!("writer-{writer}");
                    let stream = StreamRef::new("Batch", &id);
                    for batch in 0..BATCHES {
                        let events: Vec<NewEvent> = (0..BATCH_SIZE)
                            .map(|index| {
                                NewEvent::new(
                                    "Batched",
                                    1,
                                    json!({ "writer": writer, "batch": batch, "index": index }),
                                    Metadata::new(),
                                )
                            })
                            .collect();
                        store
                            .append(stream, ExpectedVersion::Exact(batch * BATCH_SIZE), &events)
                            .unwrap();
                    }
                })
            })
            .collect();
        let reader = scope.spawn(|| {
            let mut seen: Vec<RecordedEvent> = Vec::new();
            let mut from = 0;
            loop {
                // Read the flag before reading the log: once it is false, this read sees all.
                let last_round = !writing.load(Ordering::SeqCst);
                let page = store.read_all(from, 7).unwrap();
                if let Some(tail) = page.last() {
                    from = tail.global_position + 1;
                } else if last_round {
                    return seen;
                } else {
                    thread::yield_now();
                }
                seen.extend(page);
            }
        });
        for writer in writers {
            writer.join().unwrap();
        }
        writing.store(false, Ordering::SeqCst);
        reader.join().unwrap()
    });

    let total = (2 * BATCHES * BATCH_SIZE) as usize;
    assert_eq!(seen.len(), total, "the reader saw every event once");
    let ids: HashSet<_> = seen.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), total, "no event twice");
    assert!(
        seen.windows(2)
            .all(|w| w[0].global_position < w[1].global_position),
        "the reader saw positions in order"
    );
    assert_eq!(
        seen,
        super::read_everything(&store),
        "what the tailing reader saw is the final log: nothing committed below a position it had passed"
    );

    // Each batch occupies consecutive slots of the reader's sequence, in index order, and
    // each writer's batches come in order.
    let mut batches: BTreeMap<(u64, u64), Vec<usize>> = BTreeMap::new();
    for (slot, event) in seen.iter().enumerate() {
        let key = (
            event.payload_value().unwrap()["writer"].as_u64().unwrap(),
            event.payload_value().unwrap()["batch"].as_u64().unwrap(),
        );
        assert_eq!(
            event.payload_value().unwrap()["index"].as_u64().unwrap(),
            batches.get(&key).map_or(0, Vec::len) as u64,
            "events of a batch keep their order"
        );
        batches.entry(key).or_default().push(slot);
    }
    for ((writer, batch), slots) in &batches {
        assert_eq!(slots.len() as u64, BATCH_SIZE);
        assert!(
            slots.windows(2).all(|w| w[1] == w[0] + 1),
            "batch {batch} of writer {writer} is interleaved with other events: slots {slots:?}"
        );
        if *batch > 0 {
            let previous = &batches[&(*writer, batch - 1)];
            assert!(previous[0] < slots[0], "a writer's batches stay in order");
        }
    }
}
