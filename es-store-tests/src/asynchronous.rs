//! The suite for [`AsyncEventStore`]s (feature `async`): every case of the sync suite, run
//! through [`Blocking`], plus cases only async code can state (many tasks on a
//! multi-threaded runtime, visitors that stop early, futures that are `Send`).

use std::collections::HashSet;
use std::future::Future;
use std::ops::{ControlFlow, RangeInclusive};
use std::sync::Arc;
use std::time::Duration;

use es_core::{
    AppendOptions, AppendOutcome, AsyncCheckpointStore, AsyncCheckpointer, AsyncEventStore,
    AsyncRepository, AsyncVisitor, CheckpointStore, EventRecord, EventStore, ExecuteOptions,
    ExpectedVersion, Lease, NewEvent, RecordedEvent, Snapshot, StoreError, StreamRef, Visit,
    Visitor,
};

use super::checkpoints::Deposits;
use super::{Account, Fixture, events};

/// An [`AsyncEventStore`] driven through the sync [`EventStore`] trait, each call run to
/// completion on a multi-threaded runtime the adapter owns, so that every case of the sync
/// suite runs unchanged against an async store.
///
/// A read collects the visited events on the runtime, then hands them to the sync visitor
/// (a sync visitor need not be `Send`, which an async store's visitors must be): the events
/// before an error are visited, then the error is returned, as the contract says. The
/// async-only cases check that an async store's own visitors can stop early.
pub struct Blocking<S> {
    // Declared first, so dropped before the runtime its connections may run on.
    store: Arc<S>,
    runtime: tokio::runtime::Runtime,
}

impl<S> std::fmt::Debug for Blocking<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blocking").finish_non_exhaustive()
    }
}

impl<S: AsyncEventStore> Blocking<S> {
    /// Makes a store with `make` on a new multi-threaded runtime (4 workers).
    pub fn new<F: Future<Output = S>>(make: impl FnOnce() -> F) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("build a tokio runtime for the async store");
        let store = Arc::new(runtime.block_on(make()));
        Self { store, runtime }
    }

    /// The async store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The runtime the store runs on.
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }
}

/// What an async read handed to [`Blocking`]'s collecting visitor.
#[derive(Default)]
struct Collected {
    events: Vec<RecordedEvent>,
    failure: Option<StoreError>,
}

impl Collected {
    fn push(&mut self, record: &EventRecord<'_>) -> Visit {
        match record.to_recorded() {
            Ok(event) => {
                self.events.push(event);
                ControlFlow::Continue(())
            }
            Err(error) => {
                self.failure = Some(error);
                ControlFlow::Break(())
            }
        }
    }

    fn replay(
        self,
        read: Result<(), StoreError>,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        for event in &self.events {
            if visitor(&event.as_record()).is_break() {
                return Ok(());
            }
        }
        match self.failure {
            Some(error) => Err(error),
            None => read,
        }
    }
}

impl<S: AsyncEventStore> EventStore for Blocking<S> {
    fn append_with(
        &self,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: &[NewEvent],
        options: AppendOptions<'_>,
    ) -> Result<AppendOutcome, StoreError> {
        self.runtime
            .block_on(self.store.append_with(stream, expected, events, options))
    }

    fn find_idempotency_key(
        &self,
        stream: StreamRef<'_>,
        idempotency_key: &str,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        self.runtime
            .block_on(self.store.find_idempotency_key(stream, idempotency_key))
    }

    fn visit_stream(
        &self,
        stream: StreamRef<'_>,
        versions: RangeInclusive<u64>,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        let mut collected = Collected::default();
        let read = self.runtime.block_on(self.store.visit_stream(
            stream,
            versions,
            &mut |record| collected.push(record),
        ));
        collected.replay(read, visitor)
    }

    fn visit_all(
        &self,
        from_position: u64,
        limit: usize,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        let mut collected = Collected::default();
        let read = self.runtime.block_on(self.store.visit_all(
            from_position,
            limit,
            &mut |record| collected.push(record),
        ));
        collected.replay(read, visitor)
    }

    fn stream_version(&self, stream: StreamRef<'_>) -> Result<u64, StoreError> {
        self.runtime.block_on(self.store.stream_version(stream))
    }

    fn visit_by_type(
        &self,
        aggregate_type: &str,
        event_types: &[&str],
        from_position: u64,
        limit: usize,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        let mut collected = Collected::default();
        let read = self.runtime.block_on(self.store.visit_by_type(
            aggregate_type,
            event_types,
            from_position,
            limit,
            &mut |record| collected.push(record),
        ));
        collected.replay(read, visitor)
    }

    fn save_snapshot(&self, stream: StreamRef<'_>, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.runtime
            .block_on(self.store.save_snapshot(stream, snapshot))
    }

    fn load_snapshot(
        &self,
        stream: StreamRef<'_>,
        snapshot_version: u32,
        at_most: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        self.runtime
            .block_on(self.store.load_snapshot(stream, snapshot_version, at_most))
    }

    fn prune_snapshots(&self, stream: StreamRef<'_>, keep: usize) -> Result<u64, StoreError> {
        self.runtime
            .block_on(self.store.prune_snapshots(stream, keep))
    }
}

impl<S: AsyncEventStore, G: Send + Sync> AsyncEventStore for Fixture<S, G> {
    fn append_with(
        &self,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: &[NewEvent],
        options: AppendOptions<'_>,
    ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send {
        self.store().append_with(stream, expected, events, options)
    }

    fn find_idempotency_key(
        &self,
        stream: StreamRef<'_>,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<Option<AppendOutcome>, StoreError>> + Send {
        self.store().find_idempotency_key(stream, idempotency_key)
    }

    fn visit_stream(
        &self,
        stream: StreamRef<'_>,
        versions: RangeInclusive<u64>,
        visitor: &mut AsyncVisitor<'_>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store().visit_stream(stream, versions, visitor)
    }

    fn visit_all(
        &self,
        from_position: u64,
        limit: usize,
        visitor: &mut AsyncVisitor<'_>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store().visit_all(from_position, limit, visitor)
    }

    fn stream_version(
        &self,
        stream: StreamRef<'_>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.store().stream_version(stream)
    }

    fn visit_by_type(
        &self,
        aggregate_type: &str,
        event_types: &[&str],
        from_position: u64,
        limit: usize,
        visitor: &mut AsyncVisitor<'_>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store()
            .visit_by_type(aggregate_type, event_types, from_position, limit, visitor)
    }

    fn save_snapshot(
        &self,
        stream: StreamRef<'_>,
        snapshot: &Snapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store().save_snapshot(stream, snapshot)
    }

    fn load_snapshot(
        &self,
        stream: StreamRef<'_>,
        snapshot_version: u32,
        at_most: u64,
    ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send {
        self.store()
            .load_snapshot(stream, snapshot_version, at_most)
    }

    fn prune_snapshots(
        &self,
        stream: StreamRef<'_>,
        keep: usize,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.store().prune_snapshots(stream, keep)
    }
}

/// An [`AsyncCheckpointStore`] driven through the sync [`CheckpointStore`] trait, so that
/// every case of [`checkpoint_tests!`](crate::checkpoint_tests) runs unchanged against it.
impl<S: AsyncCheckpointStore> CheckpointStore for Blocking<S> {
    fn load_checkpoint(&self, read_model: &str) -> Result<u64, StoreError> {
        self.runtime
            .block_on(self.store.load_checkpoint(read_model))
    }

    fn save_checkpoint(&self, read_model: &str, position: u64) -> Result<(), StoreError> {
        self.runtime
            .block_on(self.store.save_checkpoint(read_model, position))
    }

    fn delete_checkpoint(&self, read_model: &str) -> Result<(), StoreError> {
        self.runtime
            .block_on(self.store.delete_checkpoint(read_model))
    }

    fn acquire_lease(
        &self,
        read_model: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        self.runtime
            .block_on(self.store.acquire_lease(read_model, owner, ttl))
    }

    fn release_lease(&self, read_model: &str, owner: &str) -> Result<(), StoreError> {
        self.runtime
            .block_on(self.store.release_lease(read_model, owner))
    }
}

impl<S: AsyncCheckpointStore, G: Send + Sync> AsyncCheckpointStore for Fixture<S, G> {
    fn load_checkpoint(
        &self,
        read_model: &str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.store().load_checkpoint(read_model)
    }

    fn save_checkpoint(
        &self,
        read_model: &str,
        position: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store().save_checkpoint(read_model, position)
    }

    fn delete_checkpoint(
        &self,
        read_model: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store().delete_checkpoint(read_model)
    }

    fn acquire_lease(
        &self,
        read_model: &str,
        owner: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Lease, StoreError>> + Send {
        self.store().acquire_lease(read_model, owner, ttl)
    }

    fn release_lease(
        &self,
        read_model: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store().release_lease(read_model, owner)
    }
}

/// Tasks in the async concurrency cases.
const TASKS: u64 = 8;
/// Appends (or commands) each task makes.
const PER_TASK: u64 = 40;

/// 8 tasks on a multi-threaded runtime append to one stream, each append expecting the
/// version it last read and re-reading after a conflict: every append lands exactly once,
/// with contiguous versions.
pub fn async_contended_appends_lose_nothing<S: AsyncEventStore + 'static>(blocking: &Blocking<S>) {
    let stream_id = "contended";
    blocking.runtime().block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let store = Arc::clone(blocking.store());
                tokio::spawn(async move {
                    let stream = StreamRef::new("Counter", stream_id);
                    let mut conflicts = 0u64;
                    for i in 0..PER_TASK {
                        let event = events(task * 1_000 + i, 1);
                        loop {
                            let version = store.stream_version(stream).await.expect("version");
                            let expected = ExpectedVersion::from_version(version);
                            match store.append(stream, expected, &event).await {
                                Ok(_) => break,
                                Err(error) if error.is_conflict() => conflicts += 1,
                                Err(error) => panic!("append failed: {error}"),
                            }
                            tokio::task::yield_now().await;
                        }
                    }
                    conflicts
                })
            })
            .collect();
        let mut conflicts = 0;
        for task in tasks {
            conflicts += task.await.expect("task finished");
        }
        eprintln!("async_contended_appends_lose_nothing: {conflicts} conflicts retried");
    });
    let stream = StreamRef::new("Counter", stream_id);
    let history = blocking.read_stream(stream, 1).expect("read the stream");
    assert_eq!(history.len() as u64, TASKS * PER_TASK, "no append lost");
    let versions: Vec<u64> = history.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (1..=TASKS * PER_TASK).collect::<Vec<_>>());
    let payloads: HashSet<u64> = history
        .iter()
        .map(|e| {
            e.payload_value().expect("payload")["n"]
                .as_u64()
                .expect("n")
        })
        .collect();
    assert_eq!(payloads.len() as u64, TASKS * PER_TASK, "none doubled");
}

/// 8 tasks run `deposit(1)` commands on one account through [`AsyncRepository`], spawned
/// on a multi-threaded runtime; optimistic concurrency with retries loses none.
pub fn async_repository_loses_no_update<S: AsyncEventStore + 'static>(blocking: &Blocking<S>) {
    let repo =
        AsyncRepository::<Account, _>::new(Arc::clone(blocking.store())).with_max_retries(100_000);
    let balance = blocking.runtime().block_on(async {
        repo.execute("acc-1", |a| a.open("Alice"))
            .await
            .expect("open");
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let repo = repo.clone();
                tokio::spawn(async move {
                    for _ in 0..PER_TASK {
                        repo.execute("acc-1", |a| a.deposit(1))
                            .await
                            .expect("deposit");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task finished");
        }
        let loaded = repo.load("acc-1").await.expect("load").expect("exists");
        assert_eq!(
            loaded.version,
            TASKS * PER_TASK + 1,
            "open + one per deposit"
        );
        loaded.state.balance
    });
    assert_eq!(balance, TASKS * PER_TASK, "no deposit was lost");
}

/// A command run twice through [`AsyncRepository`] with one idempotency key appends once;
/// the second run returns the first one's outcome, whether the decision would now be
/// rejected or would append again.
pub fn async_repository_commands_with_a_key_run_once<S: AsyncEventStore>(blocking: &Blocking<S>) {
    let repo = AsyncRepository::<Account, _>::new(Arc::clone(blocking.store()));
    blocking.runtime().block_on(async {
        let open = ExecuteOptions::new().idempotency_key("open-1");
        let first = repo
            .execute_with_options("acc", open, |a| a.open("Alice"))
            .await
            .expect("open");
        // Opening again would be rejected (already open); with the key it is the same
        // command.
        let again = repo
            .execute_with_options("acc", open, |a| a.open("Alice"))
            .await
            .expect("the same command again");
        assert!(again.duplicate && !first.duplicate);
        assert_eq!(
            (again.version, again.global_positions),
            (1, first.global_positions)
        );
        assert_eq!(again.state.owner, "Alice");

        let deposit = ExecuteOptions::new().idempotency_key("deposit-1");
        let first = repo
            .execute_with_options("acc", deposit, |a| a.deposit(10))
            .await
            .expect("deposit");
        repo.execute("acc", |a| a.deposit(1))
            .await
            .expect("another deposit");
        let again = repo
            .execute_with_options("acc", deposit, |a| a.deposit(10))
            .await
            .expect("the deposit again");
        assert!(again.duplicate);
        assert_eq!(again.version, first.version);
        assert_eq!(
            again.state.balance, 10,
            "the state as of the original append"
        );
        let loaded = repo.load("acc").await.expect("load").expect("exists");
        assert_eq!(loaded.state.balance, 11, "the deposit was credited once");
    });
}

/// An async store's visitor that stops early sees no more events, and the store works on.
pub fn async_visitors_can_stop_early<S: AsyncEventStore>(blocking: &Blocking<S>) {
    let stream = StreamRef::new("Counter", "early");
    blocking.runtime().block_on(async {
        let store = blocking.store();
        store
            .append(stream, ExpectedVersion::NoStream, &events(1, 10))
            .await
            .expect("append");
        let mut seen = Vec::new();
        store
            .visit_stream(stream, 1..=u64::MAX, &mut |record| {
                seen.push(record.stream_version);
                if seen.len() == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .await
            .expect("visit");
        assert_eq!(seen, [1, 2, 3]);
        let mut positions = Vec::new();
        store
            .visit_all(0, 100, &mut |record| {
                positions.push(record.global_position);
                ControlFlow::Break(())
            })
            .await
            .expect("visit_all");
        assert_eq!(positions.len(), 1);
        // The store is not left busy with the abandoned reads.
        store
            .append(stream, ExpectedVersion::Exact(10), &events(11, 1))
            .await
            .expect("append after the abandoned reads");
        assert_eq!(store.read_stream(stream, 10).await.expect("read").len(), 2);
    });
}

/// Every future of the store is `Send` (checked at compile time), so handlers that await
/// them run in `tokio::spawn`; the futures also run there.
pub fn async_futures_are_send<S: AsyncEventStore + 'static>(blocking: &Blocking<S>) {
    fn assert_send<T: Send>(value: T) -> T {
        value
    }
    let store = Arc::clone(blocking.store());
    let outcome = blocking.runtime().block_on(async move {
        tokio::spawn(async move {
            let stream = StreamRef::new("Counter", "send");
            let appended = assert_send(store.append(stream, ExpectedVersion::Any, &events(1, 2)))
                .await
                .expect("append");
            let mut count = 0;
            assert_send(store.visit_stream(stream, 1..=2, &mut |_| {
                count += 1;
                ControlFlow::Continue(())
            }))
            .await
            .expect("visit");
            assert_eq!(count, 2);
            assert_send(store.read_all(0, 10)).await.expect("read_all");
            appended
        })
        .await
        .expect("the spawned task finished")
    });
    assert_eq!(outcome.stream_version, 2);
}

/// Rounds of the lease race.
const RACES: usize = 10;

/// 8 tasks on a multi-threaded runtime, released at once by a barrier, ask for one read
/// model's lease, each as an owner of its own: exactly one gets it, and every other one is
/// told that this one holds it. Then the winner gives it up and they race again, 10
/// rounds, alternating between a fresh read model and the same one.
pub fn async_leases_race_one_winner<S>(blocking: &Blocking<S>)
where
    S: AsyncEventStore + AsyncCheckpointStore + 'static,
{
    let ttl = Duration::from_secs(60);
    blocking.runtime().block_on(async {
        for round in 0..RACES {
            let name = format!("race-{}", round / 2);
            let barrier = Arc::new(tokio::sync::Barrier::new(TASKS as usize));
            let tasks: Vec<_> = (0..TASKS)
                .map(|task| {
                    let (store, barrier, name) = (
                        Arc::clone(blocking.store()),
                        Arc::clone(&barrier),
                        name.clone(),
                    );
                    tokio::spawn(async move {
                        let owner = format!("owner-{task}");
                        barrier.wait().await;
                        let lease = store.acquire_lease(&name, &owner, ttl).await;
                        (owner, lease.expect("acquire_lease"))
                    })
                })
                .collect();
            let mut answers = Vec::new();
            for task in tasks {
                answers.push(task.await.expect("task finished"));
            }
            let winners: Vec<&String> = answers
                .iter()
                .filter(|(_, lease)| matches!(lease, Lease::Acquired { .. }))
                .map(|(owner, _)| owner)
                .collect();
            assert_eq!(winners.len(), 1, "round {round}: one winner: {answers:?}");
            let winner = winners[0].clone();
            for (owner, lease) in &answers {
                if let Lease::HeldBy { owner: holder, .. } = lease {
                    assert_eq!(holder, &winner, "round {round}: {owner} is told the winner");
                }
            }
            blocking
                .store()
                .release_lease(&name, &winner)
                .await
                .expect("release_lease");
        }
    });
}

/// A store is an [`AsyncCheckpointer`] for any read model, in a spawned task (its futures
/// are `Send`): it loads what it committed, a reset forgets the checkpoint and resets the
/// read model, and its leases are the store's.
pub fn async_checkpointer_commits_and_resets<S>(blocking: &Blocking<S>)
where
    S: AsyncEventStore + AsyncCheckpointStore + 'static,
{
    let store = Arc::clone(blocking.store());
    blocking.runtime().block_on(async move {
        tokio::spawn(async move {
            let mut model = Deposits::default();
            let mut checkpoints = Arc::clone(&store);
            let name = "es-store-tests.deposits";
            let loaded = AsyncCheckpointer::load(&mut checkpoints, &mut model).await;
            assert_eq!(loaded.expect("load"), 0, "nothing committed yet");
            let lease = AsyncCheckpointer::<Deposits>::acquire_lease(
                &mut checkpoints,
                name,
                "one",
                Duration::from_secs(60),
            )
            .await
            .expect("acquire_lease");
            assert!(matches!(lease, Lease::Acquired { .. }), "{lease:?}");
            model.seen.push(("a".to_owned(), 10, 3));
            AsyncCheckpointer::commit(&mut checkpoints, &mut model, 3)
                .await
                .expect("commit");
            assert_eq!(store.load_checkpoint(name).await.expect("load"), 3);
            let loaded = AsyncCheckpointer::load(&mut checkpoints, &mut model).await;
            assert_eq!(loaded.expect("load"), 3);
            AsyncCheckpointer::reset(&mut checkpoints, &mut model)
                .await
                .expect("reset");
            assert!(model.seen.is_empty(), "the read model is reset");
            assert_eq!(store.load_checkpoint(name).await.expect("load"), 0);
            let other = store
                .acquire_lease(name, "two", Duration::from_secs(60))
                .await
                .expect("acquire_lease");
            assert!(
                matches!(&other, Lease::HeldBy { owner, .. } if owner == "one"),
                "the reset keeps the lease: {other:?}"
            );
            AsyncCheckpointer::<Deposits>::release_lease(&mut checkpoints, name, "one")
                .await
                .expect("release_lease");
            let taken = store
                .acquire_lease(name, "two", Duration::from_secs(60))
                .await
                .expect("acquire_lease");
            assert!(matches!(taken, Lease::Acquired { .. }), "{taken:?}");
        })
        .await
        .expect("the spawned task finished");
    });
}

/// Expands to one `#[test]` per conformance case for the async store the factory makes:
/// every case of [`store_tests!`](crate::store_tests) through [`Blocking`], and the
/// async-only cases.
///
/// ```ignore
/// async fn make() -> MyAsyncStore { ... }
///
/// es_store_tests::async_store_tests! {
///     make: make,                        // required: fn() -> impl Future<Output = S>
///     enabled: server_available(),       // optional: a bool expression; false skips each case
///     durable: { corrupt: corrupt_row }, // optional: fn(&S, StreamRef<'_>, version)
/// }
/// ```
#[macro_export]
macro_rules! async_store_tests {
    (
        make: $make:expr,
        enabled: $enabled:expr
        $(, durable: { corrupt: $corrupt:expr $(,)? })?
        $(,)?
    ) => {
        mod sync_cases_through_blocking {
            #[allow(unused_imports)]
            use super::*;
            $crate::store_tests! {
                make: || $crate::Blocking::new($make),
                enabled: $enabled
                $(, durable: {
                    corrupt: |blocking: &$crate::Blocking<_>, stream, version| {
                        ($corrupt)(&**blocking.store(), stream, version)
                    }
                })?
            }
        }
        $crate::async_store_tests!(@cases ($make) ($enabled);
            async_contended_appends_lose_nothing,
            async_repository_loses_no_update,
            async_repository_commands_with_a_key_run_once,
            async_visitors_can_stop_early,
            async_futures_are_send,
        );
    };
    (
        make: $make:expr
        $(, durable: { corrupt: $corrupt:expr $(,)? })?
        $(,)?
    ) => {
        $crate::async_store_tests! {
            make: $make,
            enabled: true
            $(, durable: { corrupt: $corrupt })?
        }
    };
    (@cases ($make:expr) ($enabled:expr); $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                if $enabled {
                    $crate::$case(&$crate::Blocking::new($make));
                }
            }
        )*
    };
    ($make:expr $(,)?) => {
        $crate::async_store_tests! { make: $make }
    };
}

/// Expands to one `#[test]` per conformance case of read-model checkpoints and leases for
/// the async store ([`AsyncCheckpointStore`]) the factory makes: every case of
/// [`checkpoint_tests!`](crate::checkpoint_tests) through [`Blocking`], and the async-only
/// cases (a lease raced for by many tasks, the store as an [`AsyncCheckpointer`]).
///
/// ```ignore
/// async fn make() -> MyAsyncStore { ... }
///
/// es_store_tests::async_checkpoint_tests! {
///     make: make,                  // required: fn() -> impl Future<Output = S>,
///                                  // S: AsyncEventStore + AsyncCheckpointStore
///     enabled: server_available(), // optional: a bool expression; false skips each case
/// }
/// ```
#[macro_export]
macro_rules! async_checkpoint_tests {
    (make: $make:expr, enabled: $enabled:expr $(,)?) => {
        mod checkpoint_cases_through_blocking {
            #[allow(unused_imports)]
            use super::*;
            $crate::checkpoint_tests! {
                make: || $crate::Blocking::new($make),
                enabled: $enabled,
            }
        }
        $crate::async_store_tests!(@cases ($make) ($enabled);
            async_leases_race_one_winner,
            async_checkpointer_commits_and_resets,
        );
    };
    (make: $make:expr $(,)?) => {
        $crate::async_checkpoint_tests! { make: $make, enabled: true }
    };
    ($make:expr $(,)?) => {
        $crate::async_checkpoint_tests! { make: $make }
    };
}
