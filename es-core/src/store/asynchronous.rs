//! [`AsyncEventStore`]: the event store trait of async services (feature `async`).

use std::future::Future;
use std::ops::{ControlFlow, RangeInclusive};

use super::{
    AppendOptions, AppendOutcome, EventStore, ExpectedVersion, HeadSearch, InMemoryStore, Snapshot,
    StoreError, Visit, collect,
};
use crate::envelope::{EventRecord, NewEvent, RecordedEvent, StreamRef};

/// The visitor an [`AsyncEventStore`] calls with each stored event, in order: a
/// [`Visitor`](super::Visitor) that can be held across an `.await` on a multi-threaded
/// runtime. It borrows the event from the store and must not call back into the store.
pub type AsyncVisitor<'v> = dyn FnMut(&EventRecord<'_>) -> Visit + Send + 'v;

/// The async twin of [`EventStore`]: the same operations with the same guarantees (the
/// `es-store-tests` conformance suite runs against both), for stores used from async code
/// (axum, tonic, any tokio service).
///
/// Every future it returns is `Send`, so a handler that awaits one can run on a
/// multi-threaded runtime and in `tokio::spawn`. A store never blocks a runtime worker:
/// PostgreSQL talks to the server asynchronously, SQLite does its work on blocking threads,
/// and the in-memory store only takes short locks.
///
/// Stores implement the five required methods; `append`, `read_stream` and `read_all` are
/// provided, as in [`EventStore`], whose documentation states the contract of each.
pub trait AsyncEventStore: Send + Sync {
    /// Appends `events` to `stream` if `expected` holds, atomically, with `options`; see
    /// [`EventStore::append_with`].
    fn append_with(
        &self,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: &[NewEvent],
        options: AppendOptions<'_>,
    ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send;

    /// The outcome of the append to `stream` that carried `idempotency_key`, if one was
    /// committed; see [`EventStore::find_idempotency_key`].
    fn find_idempotency_key(
        &self,
        stream: StreamRef<'_>,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<Option<AppendOutcome>, StoreError>> + Send;

    /// Calls `visitor` with each event of `stream` whose stream version is in `versions`,
    /// in order, until it returns [`Break`](std::ops::ControlFlow::Break); see
    /// [`EventStore::visit_stream`].
    fn visit_stream(
        &self,
        stream: StreamRef<'_>,
        versions: RangeInclusive<u64>,
        visitor: &mut AsyncVisitor<'_>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Calls `visitor` with up to `limit` events of the global log with a position
    /// `>= from_position`, in order; see [`EventStore::visit_all`].
    fn visit_all(
        &self,
        from_position: u64,
        limit: usize,
        visitor: &mut AsyncVisitor<'_>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The current version of `stream` (0: it does not exist).
    fn stream_version(
        &self,
        stream: StreamRef<'_>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Appends `events` to `stream` if `expected` holds, atomically, without options.
    fn append(
        &self,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send {
        self.append_with(stream, expected, events, AppendOptions::default())
    }

    /// The events of `stream` with a stream version `>= from_version`, in order, owned.
    fn read_stream(
        &self,
        stream: StreamRef<'_>,
        from_version: u64,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
        async move {
            let mut events = Vec::new();
            let mut failure = None;
            self.visit_stream(stream, from_version..=u64::MAX, &mut |record| {
                collect(record, &mut events, &mut failure)
            })
            .await?;
            failure.map_or(Ok(events), Err)
        }
    }

    /// Up to `limit` events of the global log with a position `>= from_position`, in
    /// order, owned.
    fn read_all(
        &self,
        from_position: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
        async move {
            let mut events = Vec::new();
            let mut failure = None;
            self.visit_all(from_position, limit, &mut |record| {
                collect(record, &mut events, &mut failure)
            })
            .await?;
            failure.map_or(Ok(events), Err)
        }
    }

    /// Calls `visitor` with up to `limit` events of `aggregate_type` whose event type is one
    /// of `event_types`, from `from_position` on, in global order; see
    /// [`EventStore::visit_by_type`]. This provided version pages through
    /// [`visit_all`](AsyncEventStore::visit_all) and filters; es's stores filter in the
    /// store.
    fn visit_by_type(
        &self,
        aggregate_type: &str,
        event_types: &[&str],
        from_position: u64,
        limit: usize,
        visitor: &mut AsyncVisitor<'_>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            let mut next = from_position;
            let mut remaining = limit;
            while remaining > 0 {
                let (mut read, mut stopped) = (0usize, false);
                self.visit_all(next, BY_TYPE_PAGE, &mut |record| {
                    read += 1;
                    next = record.global_position.saturating_add(1);
                    if record.stream.aggregate_type == aggregate_type
                        && event_types.contains(&record.event_type)
                    {
                        remaining -= 1;
                        if visitor(record).is_break() || remaining == 0 {
                            stopped = true;
                            return ControlFlow::Break(());
                        }
                    }
                    ControlFlow::Continue(())
                })
                .await?;
                if stopped || read < BY_TYPE_PAGE {
                    break;
                }
            }
            Ok(())
        }
    }

    /// The global position of the last event of the log (0: it is empty); see
    /// [`EventStore::head_position`]. This provided version finds it with O(log n)
    /// one-event reads.
    fn head_position(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move {
            let mut search = HeadSearch::default();
            while let Some(from) = search.next_probe() {
                let mut found = None;
                self.visit_all(from, 1, &mut |record| {
                    found = Some(record.global_position);
                    ControlFlow::Break(())
                })
                .await?;
                search.found(found);
            }
            Ok(search.head())
        }
    }

    /// Keeps `snapshot` of `stream`; see [`EventStore::save_snapshot`]. This provided
    /// version keeps nothing.
    fn save_snapshot(
        &self,
        stream: StreamRef<'_>,
        snapshot: &Snapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = (stream, snapshot);
        std::future::ready(Ok(()))
    }

    /// The latest snapshot of `stream` with `snapshot_version` at or before `at_most`; see
    /// [`EventStore::load_snapshot`]. This provided version has none.
    fn load_snapshot(
        &self,
        stream: StreamRef<'_>,
        snapshot_version: u32,
        at_most: u64,
    ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send {
        let _ = (stream, snapshot_version, at_most);
        std::future::ready(Ok(None))
    }

    /// Deletes the snapshots of `stream` but the `keep` latest; see
    /// [`EventStore::prune_snapshots`]. This provided version has none to delete.
    fn prune_snapshots(
        &self,
        stream: StreamRef<'_>,
        keep: usize,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let _ = (stream, keep);
        std::future::ready(Ok(0))
    }
}

/// How many events the provided [`AsyncEventStore::visit_by_type`] reads per page.
const BY_TYPE_PAGE: usize = 512;

/// The in-memory store is async too: every call finishes at once (it takes a lock for as
/// long as the operation, never across an `.await`), so it runs inline on the caller's task.
impl AsyncEventStore for InMemoryStore {
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
        idempotency_key: &str,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        EventStore::find_idempotency_key(self, stream, idempotency_key)
    }

    async fn visit_stream(
        &self,
        stream: StreamRef<'_>,
        versions: RangeInclusive<u64>,
        visitor: &mut AsyncVisitor<'_>,
    ) -> Result<(), StoreError> {
        EventStore::visit_stream(self, stream, versions, visitor)
    }

    async fn visit_all(
        &self,
        from_position: u64,
        limit: usize,
        visitor: &mut AsyncVisitor<'_>,
    ) -> Result<(), StoreError> {
        EventStore::visit_all(self, from_position, limit, visitor)
    }

    async fn stream_version(&self, stream: StreamRef<'_>) -> Result<u64, StoreError> {
        EventStore::stream_version(self, stream)
    }

    async fn visit_by_type(
        &self,
        aggregate_type: &str,
        event_types: &[&str],
        from_position: u64,
        limit: usize,
        visitor: &mut AsyncVisitor<'_>,
    ) -> Result<(), StoreError> {
        EventStore::visit_by_type(
            self,
            aggregate_type,
            event_types,
            from_position,
            limit,
            visitor,
        )
    }

    async fn save_snapshot(
        &self,
        stream: StreamRef<'_>,
        snapshot: &Snapshot,
    ) -> Result<(), StoreError> {
        EventStore::save_snapshot(self, stream, snapshot)
    }

    async fn load_snapshot(
        &self,
        stream: StreamRef<'_>,
        snapshot_version: u32,
        at_most: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        EventStore::load_snapshot(self, stream, snapshot_version, at_most)
    }

    async fn prune_snapshots(&self, stream: StreamRef<'_>, keep: usize) -> Result<u64, StoreError> {
        EventStore::prune_snapshots(self, stream, keep)
    }
}

/// Implements [`AsyncEventStore`] for a pointer to a store by forwarding every call.
macro_rules! forward_async_event_store {
    ($($pointer:ty),+) => {$(
        impl<S: AsyncEventStore + ?Sized> AsyncEventStore for $pointer {
            fn append_with(
                &self,
                stream: StreamRef<'_>,
                expected: ExpectedVersion,
                events: &[NewEvent],
                options: AppendOptions<'_>,
            ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send {
                (**self).append_with(stream, expected, events, options)
            }
            fn find_idempotency_key(
                &self,
                stream: StreamRef<'_>,
                idempotency_key: &str,
            ) -> impl Future<Output = Result<Option<AppendOutcome>, StoreError>> + Send {
                (**self).find_idempotency_key(stream, idempotency_key)
            }
            fn visit_stream(
                &self,
                stream: StreamRef<'_>,
                versions: RangeInclusive<u64>,
                visitor: &mut AsyncVisitor<'_>,
            ) -> impl Future<Output = Result<(), StoreError>> + Send {
                (**self).visit_stream(stream, versions, visitor)
            }
            fn visit_all(
                &self,
                from_position: u64,
                limit: usize,
                visitor: &mut AsyncVisitor<'_>,
            ) -> impl Future<Output = Result<(), StoreError>> + Send {
                (**self).visit_all(from_position, limit, visitor)
            }
            fn stream_version(
                &self,
                stream: StreamRef<'_>,
            ) -> impl Future<Output = Result<u64, StoreError>> + Send {
                (**self).stream_version(stream)
            }
            fn visit_by_type(
                &self,
                aggregate_type: &str,
                event_types: &[&str],
                from_position: u64,
                limit: usize,
                visitor: &mut AsyncVisitor<'_>,
            ) -> impl Future<Output = Result<(), StoreError>> + Send {
                (**self).visit_by_type(aggregate_type, event_types, from_position, limit, visitor)
            }
            fn head_position(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
                (**self).head_position()
            }
            fn save_snapshot(
                &self,
                stream: StreamRef<'_>,
                snapshot: &Snapshot,
            ) -> impl Future<Output = Result<(), StoreError>> + Send {
                (**self).save_snapshot(stream, snapshot)
            }
            fn load_snapshot(
                &self,
                stream: StreamRef<'_>,
                snapshot_version: u32,
                at_most: u64,
            ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send {
                (**self).load_snapshot(stream, snapshot_version, at_most)
            }
            fn prune_snapshots(
                &self,
                stream: StreamRef<'_>,
                keep: usize,
            ) -> impl Future<Output = Result<u64, StoreError>> + Send {
                (**self).prune_snapshots(stream, keep)
            }
        }
    )+};
}

forward_async_event_store!(&S, std::sync::Arc<S>, Box<S>);
