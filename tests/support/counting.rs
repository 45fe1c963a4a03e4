//! A store wrapper for tests: it counts the events its readers visit, and can be told to
//! fail snapshot saves. Included with `#[path = "support/counting.rs"] mod counting;`.
#![allow(dead_code)]

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use es_core::{
    AppendOptions, AppendOutcome, EventStore, ExpectedVersion, NewEvent, Snapshot, StoreError,
    StreamRef, Visitor,
};

/// A store that counts the events its readers visit, and can fail snapshot saves.
#[derive(Default)]
pub struct Counting<S> {
    pub store: S,
    pub visited: AtomicU64,
    pub fail_snapshot_saves: AtomicBool,
}

impl<S: EventStore> Counting<S> {
    pub fn new(store: S) -> Self {
        Self {
            store,
            visited: AtomicU64::new(0),
            fail_snapshot_saves: AtomicBool::new(false),
        }
    }
    /// The events visited since the last call.
    pub fn take_visited(&self) -> u64 {
        self.visited.swap(0, Ordering::SeqCst)
    }
}

impl<S: EventStore> EventStore for Counting<S> {
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
        key: &str,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        self.store.find_idempotency_key(stream, key)
    }
    fn visit_stream(
        &self,
        stream: StreamRef<'_>,
        versions: RangeInclusive<u64>,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        self.store.visit_stream(stream, versions, &mut |record| {
            self.visited.fetch_add(1, Ordering::SeqCst);
            visitor(record)
        })
    }
    fn visit_all(
        &self,
        from: u64,
        limit: usize,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        self.store.visit_all(from, limit, visitor)
    }
    fn stream_version(&self, stream: StreamRef<'_>) -> Result<u64, StoreError> {
        self.store.stream_version(stream)
    }
    fn save_snapshot(&self, stream: StreamRef<'_>, snapshot: &Snapshot) -> Result<(), StoreError> {
        if self.fail_snapshot_saves.load(Ordering::SeqCst) {
            return Err(StoreError::backend("the snapshot table is unavailable"));
        }
        self.store.save_snapshot(stream, snapshot)
    }
    fn load_snapshot(
        &self,
        stream: StreamRef<'_>,
        version: u32,
        at_most: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        self.store.load_snapshot(stream, version, at_most)
    }
    fn prune_snapshots(&self, stream: StreamRef<'_>, keep: usize) -> Result<u64, StoreError> {
        self.store.prune_snapshots(stream, keep)
    }
}

/// The async face of a counting sync store: every call runs inline (fine for the
/// in-memory store it wraps in tests).
impl<S: EventStore> es_core::AsyncEventStore for Counting<S> {
    async fn append_with(
        &self,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: &[NewEvent],
        options: AppendOptions<'_>,
    ) -> Result<AppendOutcome, StoreError> {
        EventStore::append_with(self, stream, expected, events, options)
    }
    async fn find_idempotency_key(
        &self,
        stream: StreamRef<'_>,
        key: &str,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        EventStore::find_idempotency_key(self, stream, key)
    }
    async fn visit_stream(
        &self,
        stream: StreamRef<'_>,
        versions: RangeInclusive<u64>,
        visitor: &mut es_core::AsyncVisitor<'_>,
    ) -> Result<(), StoreError> {
        EventStore::visit_stream(self, stream, versions, visitor)
    }
    async fn visit_all(
        &self,
        from: u64,
        limit: usize,
        visitor: &mut es_core::AsyncVisitor<'_>,
    ) -> Result<(), StoreError> {
        EventStore::visit_all(self, from, limit, visitor)
    }
    async fn stream_version(&self, stream: StreamRef<'_>) -> Result<u64, StoreError> {
        EventStore::stream_version(self, stream)
    }
}
