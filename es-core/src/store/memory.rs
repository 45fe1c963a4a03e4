//! [`InMemoryStore`]: a thread-safe store that keeps every promise a durable one does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::{Range, RangeInclusive};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use uuid::Uuid;

use super::fast_hash::FastState;
use super::{
    AppendOptions, AppendOutcome, EventStore, ExpectedVersion, Snapshot, StoreError, Visitor,
};
use crate::backend::{check_snapshot, snapshot_past_end, validate_batch};
use crate::clock::{self, Clock, SharedClock};
use crate::envelope::{EventRecord, Metadata, MetadataRef, NewEvent, StreamRef};

/// An event store in memory, for tests, prototypes and examples.
///
/// It enforces expected versions, unique event ids and idempotency keys, and assigns
/// global positions exactly as the durable stores do, so code tested against it behaves the
/// same in production. Cloning is cheap and clones share the same events; one instance can
/// serve repositories of many aggregate types.
///
/// Each stream's events are kept together, and the global log is an index into the streams,
/// so reading a stream touches only its own events, and nothing is copied when it is read.
/// Its maps use a fast hash without a random seed: fine for the keys of the program that
/// embeds it, not for stream ids chosen by untrusted clients of a long-running service
/// (which should use a durable store anyway). Idempotency keys are kept for the life of
/// the store.
///
/// ```
/// use es_core::{EventStore, ExpectedVersion, InMemoryStore, Metadata, NewEvent, StreamRef};
///
/// let store = InMemoryStore::new();
/// let stream = StreamRef::new("Counter", "c-1");
/// let event = NewEvent::new("Incremented", 1, serde_json::json!({}), Metadata::new());
/// store.append(stream, ExpectedVersion::NoStream, &[event.clone()])?;
/// // A second writer that also thought the stream was new is rejected.
/// let again = NewEvent::new("Incremented", 1, serde_json::json!({}), Metadata::new());
/// assert!(store.append(stream, ExpectedVersion::NoStream, &[again]).unwrap_err().is_conflict());
/// # Ok::<(), es_core::StoreError>(())
/// ```
#[derive(Debug, Clone)]
pub struct InMemoryStore {
    log: Arc<RwLock<Log>>,
    /// Stamps each append's events.
    clock: SharedClock,
    /// Read-model checkpoints and leases (see [`CheckpointStore`](crate::CheckpointStore)).
    pub(crate) checkpoints: crate::projection::MemoryCheckpoints,
}

impl Default for InMemoryStore {
    fn default() -> Self {
        Self {
            log: Arc::default(),
            clock: clock::system(),
            checkpoints: Arc::default(),
        }
    }
}

#[derive(Debug, Default)]
struct Log {
    /// Every stream, in order of creation.
    streams: Vec<Stream>,
    /// aggregate type -> stream id -> index into `streams`.
    index: HashMap<String, HashMap<String, usize, FastState>, FastState>,
    /// The global log: `global[p - 1]` is the (stream index, offset in that stream) of the
    /// event at global position `p`.
    global: Vec<(u32, u32)>,
    /// Every stored event id: ids are unique store-wide, as in the durable stores.
    event_ids: HashSet<Uuid, FastState>,
}

#[derive(Debug)]
struct Stream {
    aggregate_type: String,
    id: String,
    /// The stream's events, in version order: the event at version `v` is `events[v - 1]`.
    events: Vec<StoredEvent>,
    /// The payloads of `events`, back to back: a stream is read front to back, so keeping
    /// its payloads together (rather than one allocation each, scattered over the heap by
    /// appends to other streams) saves a cache miss per event and an allocation per append.
    payloads: String,
    /// Idempotency key -> the outcome of the append that carried it.
    commands: HashMap<String, AppendOutcome, FastState>,
    /// Stream version -> the snapshot taken there.
    snapshots: BTreeMap<u64, Snapshot>,
}

#[derive(Debug)]
struct StoredEvent {
    event_id: Uuid,
    global_position: u64,
    event_type: std::borrow::Cow<'static, str>,
    schema_version: u32,
    recorded_at: SystemTime,
    /// Where the payload's JSON text lies in the stream's `payloads`.
    payload: Range<usize>,
    /// `None` for empty metadata, the common case: keeps the record small, so a stream
    /// read front to back touches half the memory.
    metadata: Option<Box<Metadata>>,
}

/// What an event without metadata refers to.
static NO_METADATA: Metadata = Metadata {
    correlation_id: None,
    causation_id: None,
    extra: std::collections::BTreeMap::new(),
};

impl Stream {
    fn record<'a>(&'a self, version: u64, event: &'a StoredEvent) -> EventRecord<'a> {
        EventRecord {
            event_id: event.event_id,
            stream: StreamRef::new(&self.aggregate_type, &self.id),
            stream_version: version,
            global_position: event.global_position,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            recorded_at: event.recorded_at,
            // Ranges are only ever taken from text pushed whole onto `payloads`, and a
            // payload is JSON text whose boundaries are character boundaries: `get` finds it.
            payload: self.payloads.get(event.payload.clone()).unwrap_or("null"),
            metadata: MetadataRef::Parsed(event.metadata.as_deref().unwrap_or(&NO_METADATA)),
        }
    }
}

impl Log {
    fn stream_index(&self, stream: StreamRef<'_>) -> Option<usize> {
        self.index
            .get(stream.aggregate_type)?
            .get(stream.id)
            .copied()
    }

    fn stream(&self, stream: StreamRef<'_>) -> Option<&Stream> {
        self.stream_index(stream).map(|i| &self.streams[i])
    }

    fn version(&self, stream: StreamRef<'_>) -> u64 {
        self.stream(stream).map_or(0, |s| s.events.len() as u64)
    }
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that stamps events with the time `clock` gives (a
    /// [`ManualClock`](crate::ManualClock) in tests of temporal queries).
    pub fn with_clock(clock: impl Clock + 'static) -> Self {
        Self {
            log: Arc::default(),
            clock: Arc::new(clock),
            checkpoints: Arc::default(),
        }
    }

    /// The number of events in the global log.
    pub fn len(&self) -> usize {
        self.read().global.len()
    }

    /// True when no event has been appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // A panic while the lock is held cannot leave the log half-written: `append` checks
    // everything before it pushes, and pushing only fails by aborting on allocation failure.
    // A visitor that panics only held the read lock. So a poisoned lock still guards
    // consistent data and we keep using it.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Log> {
        self.log.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Log> {
        self.log.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Visits up to `limit` events of the global log from `from_position` for which
    /// `matches` holds, in order.
    ///
    /// Unlike a stream read, which borrows each event under the store's lock, a read of the
    /// global log copies the events out a page ([`GLOBAL_PAGE`]) at a time and visits them
    /// with the lock released: its readers are projectors, and a process manager's handler
    /// appends to this same store while it is visited (under the lock it would wait for
    /// itself forever).
    fn visit_global(
        &self,
        from_position: u64,
        limit: usize,
        matches: &dyn Fn(&Stream, &StoredEvent) -> bool,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        let mut next = usize::try_from(from_position.saturating_sub(1)).unwrap_or(usize::MAX);
        let mut remaining = limit;
        while remaining > 0 {
            let mut page = Vec::new();
            let mut end = true;
            {
                let log = self.read();
                while let Some(&(stream_index, offset)) = log.global.get(next) {
                    if page.len() == GLOBAL_PAGE.min(remaining) {
                        end = false;
                        break;
                    }
                    next += 1;
                    // The global index only ever points at events already pushed: in bounds.
                    let stream = &log.streams[stream_index as usize];
                    let event = &stream.events[offset as usize];
                    if matches(stream, event) {
                        page.push(stream.record(u64::from(offset) + 1, event).to_recorded()?);
                    }
                }
            }
            remaining -= page.len();
            for event in &page {
                if visitor(&event.as_record()).is_break() {
                    return Ok(());
                }
            }
            if end {
                break;
            }
        }
        Ok(())
    }
}

/// How many events a read of the global log copies out per page.
const GLOBAL_PAGE: usize = 256;

/// Stream offsets and indexes are kept as `u32` in the global index; a store in memory
/// cannot hold 2^32 events anyway, but say so rather than wrap.
fn too_large(stream: StreamRef<'_>) -> StoreError {
    StoreError::Invalid {
        stream: stream.to_key(),
        reason: "the in-memory store holds at most 2^32 streams and 2^32 events per stream"
            .to_owned(),
    }
}

impl EventStore for InMemoryStore {
    fn append_with(
        &self,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: &[NewEvent],
        options: AppendOptions<'_>,
    ) -> Result<AppendOutcome, StoreError> {
        validate_batch(stream, events, options)?;
        let mut guard = self.write();
        let log = &mut *guard;
        let existing = log.stream_index(stream);
        if let (Some(key), Some(index)) = (options.idempotency_key, existing) {
            if let Some(outcome) = log.streams[index].commands.get(key) {
                return Ok(AppendOutcome {
                    duplicate: true,
                    ..outcome.clone()
                });
            }
        }
        let current = existing.map_or(0, |i| log.streams[i].events.len() as u64);
        if !expected.is_satisfied_by(current) {
            return Err(StoreError::conflict(stream, expected, current));
        }
        let first_position = log.global.len() as u64 + 1;
        if events.is_empty() {
            return Ok(AppendOutcome {
                stream_version: current,
                global_positions: first_position..first_position,
                duplicate: false,
            });
        }
        // Small batches (the usual case) compare ids pairwise; large ones use a set.
        let mut batch_ids = HashSet::with_hasher(FastState::default());
        for (i, event) in events.iter().enumerate() {
            let repeated = if events.len() <= 16 {
                events[..i].iter().any(|e| e.event_id == event.event_id)
            } else {
                !batch_ids.insert(event.event_id)
            };
            if repeated || log.event_ids.contains(&event.event_id) {
                return Err(StoreError::Invalid {
                    stream: stream.to_key(),
                    reason: format!(
                        "event {} of the batch (`{}`) has id {}, which is already stored (or repeated in this batch); give every new event a fresh id",
                        i + 1,
                        event.event_type,
                        event.event_id
                    ),
                });
            }
        }
        let end = current + events.len() as u64;
        u32::try_from(end).map_err(|_| too_large(stream))?;
        let index = match existing {
            Some(index) => index,
            None => {
                let index = log.streams.len();
                u32::try_from(index).map_err(|_| too_large(stream))?;
                log.streams.push(Stream {
                    aggregate_type: stream.aggregate_type.to_owned(),
                    id: stream.id.to_owned(),
                    events: Vec::new(),
                    payloads: String::new(),
                    commands: HashMap::default(),
                    snapshots: BTreeMap::new(),
                });
                log.index
                    .entry(stream.aggregate_type.to_owned())
                    .or_default()
                    .insert(stream.id.to_owned(), index);
                index
            }
        };
        let stream_index = u32::try_from(index).map_err(|_| too_large(stream))?;
        let recorded_at = self.clock.now();
        log.event_ids.extend(events.iter().map(|e| e.event_id));
        let target = &mut log.streams[index];
        target.events.reserve(events.len());
        for (i, event) in events.iter().enumerate() {
            let offset = current as u32 + i as u32;
            log.global.push((stream_index, offset));
            let start = target.payloads.len();
            target.payloads.push_str(event.payload.get());
            target.events.push(StoredEvent {
                event_id: event.event_id,
                global_position: first_position + i as u64,
                event_type: event.event_type.clone(),
                schema_version: event.schema_version,
                recorded_at,
                payload: start..target.payloads.len(),
                metadata: (!event.metadata.is_empty()).then(|| Box::new(event.metadata.clone())),
            });
        }
        let outcome = AppendOutcome {
            stream_version: end,
            global_positions: first_position..first_position + events.len() as u64,
            duplicate: false,
        };
        if let Some(key) = options.idempotency_key {
            target.commands.insert(key.to_owned(), outcome.clone());
        }
        Ok(outcome)
    }

    fn find_idempotency_key(
        &self,
        stream: StreamRef<'_>,
        idempotency_key: &str,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        Ok(self.read().stream(stream).and_then(|s| {
            s.commands
                .get(idempotency_key)
                .map(|outcome| AppendOutcome {
                    duplicate: true,
                    ..outcome.clone()
                })
        }))
    }

    fn visit_stream(
        &self,
        stream: StreamRef<'_>,
        versions: RangeInclusive<u64>,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        let log = self.read();
        let Some(found) = log.stream(stream) else {
            return Ok(());
        };
        let first = (*versions.start()).max(1);
        let last = (*versions.end()).min(found.events.len() as u64);
        if first > last {
            return Ok(());
        }
        // In bounds: 1 <= first <= last <= len.
        let slice = &found.events[(first - 1) as usize..last as usize];
        for (version, event) in (first..).zip(slice) {
            if visitor(&found.record(version, event)).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Reads the global log a page at a time, copying each page out before the visitor
    /// sees it (see `visit_global`), so the visitor may write to this store.
    fn visit_all(
        &self,
        from_position: u64,
        limit: usize,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        self.visit_global(from_position, limit, &|_, _| true, visitor)
    }

    fn stream_version(&self, stream: StreamRef<'_>) -> Result<u64, StoreError> {
        Ok(self.read().version(stream))
    }

    /// Walks the global index from `from_position`, skipping other events without reading
    /// them: in memory that costs a comparison per event.
    /// Walks the global index from `from_position`, skipping other events without reading
    /// them, and copies matching ones out a page at a time, as [`visit_all`] does.
    ///
    /// [`visit_all`]: EventStore::visit_all
    fn visit_by_type(
        &self,
        aggregate_type: &str,
        event_types: &[&str],
        from_position: u64,
        limit: usize,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        let matches = |stream: &Stream, event: &StoredEvent| {
            stream.aggregate_type == aggregate_type
                && event_types.contains(&event.event_type.as_ref())
        };
        self.visit_global(from_position, limit, &matches, visitor)
    }

    fn save_snapshot(&self, stream: StreamRef<'_>, snapshot: &Snapshot) -> Result<(), StoreError> {
        let taken_at = self.clock.now();
        let mut log = self.write();
        let current = log.version(stream);
        check_snapshot(stream, snapshot, current)?;
        let Some(index) = log.stream_index(stream) else {
            return Err(snapshot_past_end(stream, snapshot, current));
        };
        let mut kept = snapshot.clone();
        kept.taken_at = taken_at;
        log.streams[index]
            .snapshots
            .insert(snapshot.stream_version, kept);
        Ok(())
    }

    fn load_snapshot(
        &self,
        stream: StreamRef<'_>,
        snapshot_version: u32,
        at_most: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        let log = self.read();
        let Some(found) = log.stream(stream) else {
            return Ok(None);
        };
        Ok(found
            .snapshots
            .range(..=at_most)
            .rev()
            .map(|(_, snapshot)| snapshot)
            .find(|snapshot| snapshot.snapshot_version == snapshot_version)
            .cloned())
    }

    fn prune_snapshots(&self, stream: StreamRef<'_>, keep: usize) -> Result<u64, StoreError> {
        let mut log = self.write();
        let Some(index) = log.stream_index(stream) else {
            return Ok(0);
        };
        let snapshots = &mut log.streams[index].snapshots;
        let excess = snapshots.len().saturating_sub(keep);
        let doomed: Vec<u64> = snapshots.keys().take(excess).copied().collect();
        for version in &doomed {
            snapshots.remove(version);
        }
        Ok(doomed.len() as u64)
    }
}
