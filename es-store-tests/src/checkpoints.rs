//! Read-model checkpoints and leases ([`CheckpointStore`]), and a projector over the store
//! resuming from them.

use std::thread;
use std::time::{Duration, SystemTime};

use es_core::{
    CheckpointStore, EventRecord, EventStore, ExpectedVersion, Lease, Projector, Repository,
    StreamRef, read_model,
};

use crate::account::{Account, Deposited};

/// A missing checkpoint reads as 0; a saved one reads back, per read model, and is
/// replaced by the next save, also with a lower position.
pub fn checkpoints_are_kept_per_read_model<S: CheckpointStore>(make: &dyn Fn() -> S) {
    let store = make();
    assert_eq!(store.load_checkpoint("balances").unwrap(), 0, "none yet");
    store.save_checkpoint("balances", 7).unwrap();
    store.save_checkpoint("leaderboard", 3).unwrap();
    assert_eq!(store.load_checkpoint("balances").unwrap(), 7);
    assert_eq!(store.load_checkpoint("leaderboard").unwrap(), 3);
    store.save_checkpoint("balances", 12).unwrap();
    assert_eq!(store.load_checkpoint("balances").unwrap(), 12);
    store.save_checkpoint("balances", 5).unwrap();
    assert_eq!(
        store.load_checkpoint("balances").unwrap(),
        5,
        "a save replaces"
    );
    store.save_checkpoint("huge", u64::MAX >> 1).unwrap();
    assert_eq!(store.load_checkpoint("huge").unwrap(), u64::MAX >> 1);
}

/// Deleting a checkpoint makes it read as 0 and leaves the others (and its lease) alone.
pub fn deleted_checkpoints_read_as_zero<S: CheckpointStore>(make: &dyn Fn() -> S) {
    let store = make();
    store.save_checkpoint("a", 4).unwrap();
    store.save_checkpoint("b", 9).unwrap();
    let ttl = Duration::from_secs(60);
    assert!(matches!(
        store.acquire_lease("a", "one", ttl).unwrap(),
        Lease::Acquired { .. }
    ));
    store.delete_checkpoint("a").unwrap();
    store.delete_checkpoint("never-saved").unwrap();
    assert_eq!(store.load_checkpoint("a").unwrap(), 0);
    assert_eq!(store.load_checkpoint("b").unwrap(), 9);
    assert_eq!(store.load_checkpoint("never-saved").unwrap(), 0);
    assert!(
        matches!(store.acquire_lease("a", "two", ttl).unwrap(), Lease::HeldBy { owner, .. } if owner == "one"),
        "the lease survives the delete"
    );
    store.save_checkpoint("a", 1).unwrap();
    assert_eq!(store.load_checkpoint("a").unwrap(), 1);
}

/// A lease is held by one owner at a time, per read model: the holder renews it, another
/// owner is told who holds it and until when, and gets it once it is released or expired.
/// Taking a lease does not change the checkpoint.
pub fn leases_are_exclusive<S: CheckpointStore>(make: &dyn Fn() -> S) {
    let store = make();
    store.save_checkpoint("m", 42).unwrap();
    let long = Duration::from_secs(60);
    let before = SystemTime::now();
    let Lease::Acquired { until } = store.acquire_lease("m", "one", long).unwrap() else {
        panic!("a free lease is acquired");
    };
    assert!(until >= before + long - Duration::from_secs(1), "{until:?}");
    match store.acquire_lease("m", "two", long).unwrap() {
        Lease::HeldBy { owner, until: held } => {
            assert_eq!(owner, "one");
            assert!(held > SystemTime::now());
        }
        other => panic!("another owner must not get a held lease: {other:?}"),
    }
    assert!(
        matches!(
            store.acquire_lease("other-model", "two", long).unwrap(),
            Lease::Acquired { .. }
        ),
        "leases are per read model"
    );
    assert!(
        matches!(
            store.acquire_lease("m", "one", long).unwrap(),
            Lease::Acquired { .. }
        ),
        "the holder renews"
    );
    store.release_lease("m", "two").unwrap();
    assert!(
        matches!(
            store.acquire_lease("m", "two", long).unwrap(),
            Lease::HeldBy { .. }
        ),
        "only the holder releases"
    );
    store.release_lease("m", "one").unwrap();
    assert!(matches!(
        store.acquire_lease("m", "two", long).unwrap(),
        Lease::Acquired { .. }
    ));
    store.release_lease("m", "two").unwrap();

    // An expired lease is free for anyone.
    let short = Duration::from_millis(30);
    assert!(matches!(
        store.acquire_lease("m", "one", short).unwrap(),
        Lease::Acquired { .. }
    ));
    thread::sleep(Duration::from_millis(80));
    assert!(matches!(
        store.acquire_lease("m", "two", long).unwrap(),
        Lease::Acquired { .. }
    ));
    assert_eq!(
        store.load_checkpoint("m").unwrap(),
        42,
        "leases leave the checkpoint alone"
    );
}

/// Deposits per account, from the suite's [`Account`].
#[derive(Debug, Default)]
pub(crate) struct Deposits {
    pub(crate) seen: Vec<(String, u64, u64)>,
}

#[read_model(name = "es-store-tests.deposits")]
impl Deposits {
    #[from(Account)]
    fn deposited(&mut self, e: &Deposited, record: &EventRecord<'_>) {
        self.seen.push((
            record.stream.id.to_owned(),
            e.amount,
            record.global_position,
        ));
    }
}

/// A projector over the store applies each handled event once, in global order, stores
/// its checkpoint in the store, and a new projector resumes after it.
pub fn a_projector_resumes_from_its_checkpoint<S: EventStore + CheckpointStore>(
    make: &dyn Fn() -> S,
) {
    let store = make();
    let store = &store;
    let repo = Repository::<Account, _>::new(store);
    repo.execute("a", |acc| acc.open("ann")).unwrap();
    repo.execute("b", |acc| acc.open("bob")).unwrap();
    // The opened events are not handled: skipped.
    for (id, amount) in [("a", 10), ("b", 20), ("a", 30)] {
        repo.execute(id, |acc| acc.deposit(amount)).unwrap();
    }
    // An event of another aggregate type with the same event type is not applied.
    store
        .append(
            StreamRef::new("Ledger", "a"),
            ExpectedVersion::NoStream,
            &[es_core::NewEvent::new(
                "Deposited",
                1,
                serde_json::json!({ "amount": 999 }),
                es_core::Metadata::new(),
            )],
        )
        .unwrap();
    let mut projector = Projector::new(store, Deposits::default(), store).with_batch_size(2);
    let done = projector.catch_up().unwrap();
    let amounts: Vec<u64> = projector.read_model().seen.iter().map(|s| s.1).collect();
    assert_eq!(amounts, [10, 20, 30], "each deposit once, in global order");
    assert_eq!(done.applied, 3);
    let last = projector.read_model().seen[2].2;
    assert_eq!(
        store.load_checkpoint("es-store-tests.deposits").unwrap(),
        last
    );

    repo.execute("b", |acc| acc.deposit(40)).unwrap();
    let mut resumed = Projector::new(store, Deposits::default(), store);
    resumed.catch_up().unwrap();
    let seen = &resumed.read_model().seen;
    assert_eq!(seen.len(), 1, "only what followed the checkpoint: {seen:?}");
    assert_eq!((seen[0].0.as_str(), seen[0].1), ("b", 40));
}
