//! # es-store-tests: the conformance suite for es event stores
//!
//! Every [`EventStore`] must behave the same: expected versions, atomic batches, contiguous
//! versions, a global log without gaps that fill in later, unique event ids, idempotency
//! keys, refusal of events that could not be read back, bad stored data reported and read
//! past. This crate specifies all of it once. Each case is a generic function taking a
//! factory that returns a fresh, empty store, and the [`store_tests!`] macro expands to one
//! `#[test]` per case, so a store's test file is a few lines, whether the store is one of
//! es's own (in-memory, SQLite, PostgreSQL) or your own:
//!
//! ```ignore
//! es_store_tests::store_tests!(es_core::InMemoryStore::new);
//! ```
//!
//! The case that needs a durable backend (damaging a stored row) runs only when the
//! invocation provides a `durable` section with a hook that corrupts a stored row:
//!
//! ```ignore
//! es_store_tests::store_tests! {
//!     make: make_store,                 // fn() -> S, S: EventStore
//!     enabled: server_available(),      // optional: a bool; false skips every case
//!     durable: { corrupt: corrupt_row }, // optional: fn(&S, StreamRef<'_>, u64)
//! }
//! ```
//!
//! A factory whose store needs something kept alive (a temporary directory, a database
//! schema to drop afterwards) returns a [`Fixture`], which is itself an [`EventStore`].
//!
//! The list of cases lives in one place, [`store_tests!`]; each case's documentation says
//! what it requires of a store.
#![warn(missing_docs)]

mod account;
#[cfg(feature = "async")]
mod asynchronous;
mod bad_data;
mod checkpoints;
mod concurrency;
pub mod crash;
mod expected_version;
mod idempotency;
mod log;
mod snapshots;
mod validation;

use std::ops::RangeInclusive;

use es_core::{
    AppendOptions, AppendOutcome, CheckpointStore, EventStore, ExpectedVersion, Lease, Metadata,
    NewEvent, RecordedEvent, Snapshot, StoreError, StreamRef, Visitor,
};

pub use account::{Account, AccountError, AccountEvent, Deposited, Opened};
#[cfg(feature = "async")]
pub use asynchronous::{
    Blocking, async_checkpointer_commits_and_resets, async_contended_appends_lose_nothing,
    async_futures_are_send, async_leases_race_one_winner,
    async_repository_commands_with_a_key_run_once, async_repository_loses_no_update,
    async_visitors_can_stop_early,
};
pub use bad_data::{corrupt_row_is_reported, event_ids_are_unique, unknown_event_type_is_reported};
pub use checkpoints::{
    a_projector_resumes_from_its_checkpoint, checkpoints_are_kept_per_read_model,
    deleted_checkpoints_read_as_zero, leases_are_exclusive,
};
pub use concurrency::{concurrent_batches_do_not_interleave, no_lost_update_under_concurrency};
pub use expected_version::{
    conflicting_batch_stores_nothing, expected_any, expected_exact, expected_no_stream,
    expected_stream_exists,
};
pub use idempotency::{
    idempotency_key_appends_once, idempotency_keys_are_per_stream,
    repository_commands_with_a_key_run_once,
};
pub use log::{
    empty_batch, envelope_round_trips, global_positions_strictly_increase,
    read_all_from_position_with_limit, read_stream_from_version, same_id_two_aggregate_types,
    stream_versions_contiguous_from_one, visit_stream_reads_a_version_range,
    visitors_can_stop_early,
};
pub use snapshots::{events_by_type_across_streams, snapshots_are_kept_found_and_pruned};
pub use validation::{events_that_cannot_be_read_back_are_refused, invalid_options_are_refused};

/// A store together with something that must outlive it (a temporary directory, a database
/// schema dropped on drop). The store is dropped first, then the guard.
#[derive(Debug)]
pub struct Fixture<S, G> {
    store: S,
    guard: G,
}

impl<S, G> Fixture<S, G> {
    /// Keeps `guard` alive as long as `store`.
    pub fn new(store: S, guard: G) -> Self {
        Self { store, guard }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The guard.
    pub fn guard(&self) -> &G {
        &self.guard
    }
}

impl<S: EventStore, G: Send + Sync> EventStore for Fixture<S, G> {
    fn append_with(
        &self,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: &[NewEvent],
        options: AppendOptions<'_>,
    ) -> Result<AppendOutcome, StoreError> {
        self.store.append_with(stream, expected, events, options)
    }

    fn find_idempotency_key(
        &self,
        stream: StreamRef<'_>,
        idempotency_key: &str,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        self.store.find_idempotency_key(stream, idempotency_key)
    }

    fn visit_stream(
        &self,
        stream: StreamRef<'_>,
        versions: RangeInclusive<u64>,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        self.store.visit_stream(stream, versions, visitor)
    }

    fn visit_all(
        &self,
        from_position: u64,
        limit: usize,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        self.store.visit_all(from_position, limit, visitor)
    }

    fn stream_version(&self, stream: StreamRef<'_>) -> Result<u64, StoreError> {
        self.store.stream_version(stream)
    }

    fn visit_by_type(
        &self,
        aggregate_type: &str,
        event_types: &[&str],
        from_position: u64,
        limit: usize,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        self.store
            .visit_by_type(aggregate_type, event_types, from_position, limit, visitor)
    }

    fn save_snapshot(&self, stream: StreamRef<'_>, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.store.save_snapshot(stream, snapshot)
    }

    fn load_snapshot(
        &self,
        stream: StreamRef<'_>,
        snapshot_version: u32,
        at_most: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        self.store.load_snapshot(stream, snapshot_version, at_most)
    }

    fn prune_snapshots(&self, stream: StreamRef<'_>, keep: usize) -> Result<u64, StoreError> {
        self.store.prune_snapshots(stream, keep)
    }
}

impl<S: CheckpointStore, G: Send + Sync> CheckpointStore for Fixture<S, G> {
    fn load_checkpoint(&self, read_model: &str) -> Result<u64, StoreError> {
        self.store.load_checkpoint(read_model)
    }

    fn save_checkpoint(&self, read_model: &str, position: u64) -> Result<(), StoreError> {
        self.store.save_checkpoint(read_model, position)
    }

    fn delete_checkpoint(&self, read_model: &str) -> Result<(), StoreError> {
        self.store.delete_checkpoint(read_model)
    }

    fn acquire_lease(
        &self,
        read_model: &str,
        owner: &str,
        ttl: std::time::Duration,
    ) -> Result<Lease, StoreError> {
        self.store.acquire_lease(read_model, owner, ttl)
    }

    fn release_lease(&self, read_model: &str, owner: &str) -> Result<(), StoreError> {
        self.store.release_lease(read_model, owner)
    }
}

/// Expands to one `#[test]` per conformance case for the store the factory makes.
///
/// ```ignore
/// es_store_tests::store_tests!(es_core::InMemoryStore::new); // short form: the factory only
///
/// es_store_tests::store_tests! {
///     make: make_store,                  // required: fn() -> S (or a closure), S: EventStore
///     enabled: server_available(),       // optional: a bool expression; false skips each case
///     durable: { corrupt: corrupt_row }, // optional: fn(&S, StreamRef<'_>, version)
/// }
/// ```
///
/// `corrupt` must make the stored event at `version` of the stream unreadable (for example
/// write a payload that is not JSON).
#[macro_export]
macro_rules! store_tests {
    (
        make: $make:expr,
        enabled: $enabled:expr
        $(, durable: { corrupt: $corrupt:expr $(,)? })?
        $(,)?
    ) => {
        $crate::store_tests!(@cases ($make) ($enabled);
            expected_any,
            expected_no_stream,
            expected_stream_exists,
            expected_exact,
            conflicting_batch_stores_nothing,
            stream_versions_contiguous_from_one,
            global_positions_strictly_increase,
            read_stream_from_version,
            read_all_from_position_with_limit,
            empty_batch,
            envelope_round_trips,
            same_id_two_aggregate_types,
            unknown_event_type_is_reported,
            no_lost_update_under_concurrency,
            concurrent_batches_do_not_interleave,
            event_ids_are_unique,
            visit_stream_reads_a_version_range,
            visitors_can_stop_early,
            idempotency_key_appends_once,
            idempotency_keys_are_per_stream,
            repository_commands_with_a_key_run_once,
            events_that_cannot_be_read_back_are_refused,
            invalid_options_are_refused,
            events_by_type_across_streams,
            snapshots_are_kept_found_and_pruned,
        );
        $(
            #[test]
            fn corrupt_row_is_reported() {
                if $enabled {
                    $crate::corrupt_row_is_reported(&$make, &$corrupt);
                }
            }
        )?
    };
    (
        make: $make:expr
        $(, durable: { corrupt: $corrupt:expr $(,)? })?
        $(,)?
    ) => {
        $crate::store_tests! {
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
                    $crate::$case(&$make);
                }
            }
        )*
    };
    // The short form: just the factory.
    ($make:expr $(,)?) => {
        $crate::store_tests! { make: $make }
    };
}

/// Expands to one `#[test]` per conformance case of read-model checkpoints and leases
/// ([`CheckpointStore`](es_core::CheckpointStore)), and of a projector over the store, for
/// a store the factory makes. Separate from [`store_tests!`], so a store adds checkpoints
/// when it implements them. An async store (`es_core::AsyncCheckpointStore`) runs the same
/// cases, and async-only ones, with `async_checkpoint_tests!` (feature `async`).
///
/// ```ignore
/// es_store_tests::checkpoint_tests!(es_core::InMemoryStore::new);
///
/// es_store_tests::checkpoint_tests! {
///     make: make_store,            // required: fn() -> S, S: EventStore + CheckpointStore + Clone
///     enabled: server_available(), // optional: a bool expression; false skips each case
/// }
/// ```
#[macro_export]
macro_rules! checkpoint_tests {
    (make: $make:expr, enabled: $enabled:expr $(,)?) => {
        $crate::store_tests!(@cases ($make) ($enabled);
            checkpoints_are_kept_per_read_model,
            deleted_checkpoints_read_as_zero,
            leases_are_exclusive,
            a_projector_resumes_from_its_checkpoint,
        );
    };
    (make: $make:expr $(,)?) => {
        $crate::checkpoint_tests! { make: $make, enabled: true }
    };
    ($make:expr $(,)?) => {
        $crate::checkpoint_tests! { make: $make }
    };
}

/// A new event of type `event_type` with payload `{"n": n}` and empty metadata.
pub fn event(event_type: &'static str, n: u64) -> NewEvent {
    NewEvent::new(
        event_type,
        1,
        serde_json::json!({ "n": n }),
        Metadata::new(),
    )
}

/// `count` events of type `"Numbered"` with payloads `{"n": first}`, `{"n": first + 1}`, ...
pub fn events(first: u64, count: u64) -> Vec<NewEvent> {
    (first..first + count)
        .map(|n| event("Numbered", n))
        .collect()
}

/// Every event in the global log, read in pages.
pub fn read_everything<S: EventStore + ?Sized>(store: &S) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    let mut from = 0;
    loop {
        let page = store.read_all(from, 100).expect("read_all");
        let Some(last) = page.last() else {
            return all;
        };
        from = last.global_position + 1;
        all.extend(page);
    }
}

/// Asserts `result` is the conflict a store must report.
#[track_caller]
pub fn assert_conflict<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    stream: StreamRef<'_>,
    expected: ExpectedVersion,
    actual: u64,
) {
    match result {
        Err(StoreError::Conflict {
            stream: found_stream,
            expected: found_expected,
            actual: found_actual,
        }) => {
            assert_eq!(found_stream, stream.to_key(), "conflict names the stream");
            assert_eq!(found_expected, expected, "conflict carries the expectation");
            assert_eq!(found_actual, actual, "conflict carries the actual version");
        }
        other => {
            panic!("expected a conflict on {stream} ({expected}, actual {actual}), got {other:?}")
        }
    }
}
