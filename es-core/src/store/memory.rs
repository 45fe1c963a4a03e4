//! [`InMemoryStore`]: a thread-safe store that keeps every promise a durable one does.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use uuid::Uuid;

use super::{AppendOutcome, EventStore, ExpectedVersion, StoreError};
use crate::envelope::{NewEvent, RecordedEvent, StreamRef};

/// An event store in memory, for tests, prototypes and examples.
///
/// It enforces expected versions and assigns global positions exactly as the durable stores
/// do, so code tested against it behaves the same in production. Cloning is cheap and clones
/// share the same events; one instance can serve repositories of many aggregate types.
///
/// ```
/// use es_core::{EventStore, ExpectedVersion, InMemoryStore, Metadata, NewEvent, StreamRef};
///
/// let store = InMemoryStore::new();
/// let stream = StreamRef::new("Counter", "c-1");
/// let event = NewEvent::new("Incremented", 1, serde_json::json!({}), Metadata::new());
/// store.append(stream, ExpectedVersion::NoStream, &[event.clone()])?;
/// // A second writer that also thought the stream was new is rejected.
/// assert!(store.append(stream, ExpectedVersion::NoStream, &[event]).unwrap_err().is_conflict());
/// # Ok::<(), es_core::StoreError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct InMemoryStore {
    log: Arc<RwLock<Log>>,
}

#[derive(Debug, Default)]
struct Log {
    /// The global log; an event's global position is its index + 1.
    events: Vec<RecordedEvent>,
    /// aggregate type -> stream id -> indexes into `events`, in stream order.
    streams: HashMap<String, HashMap<String, Vec<usize>>>,
    /// Every stored event id: ids are unique store-wide, as in the durable stores.
    event_ids: HashSet<Uuid>,
}

impl Log {
    fn stream(&self, stream: StreamRef<'_>) -> &[usize] {
        self.streams
            .get(stream.aggregate_type)
            .and_then(|ids| ids.get(stream.id))
            .map_or(&[], Vec::as_slice)
    }
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of events in the global log.
    pub fn len(&self) -> usize {
        self.read().events.len()
    }

    /// True when no event has been appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // A panic while the lock is held cannot leave the log half-written: `append` checks
    // everything before it pushes, and pushing only fails by aborting on allocation failure.
    // So a poisoned lock still guards consistent data and we keep using it.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Log> {
        self.log.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Log> {
        self.log.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl EventStore for InMemoryStore {
    fn append(
        &self,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendOutcome, StoreError> {
        let mut log = self.write();
        let current = log.stream(stream).len() as u64;
        if !expected.is_satisfied_by(current) {
            return Err(StoreError::conflict(stream, expected, current));
        }
        let first_position = log.events.len() as u64 + 1;
        if events.is_empty() {
            return Ok(AppendOutcome {
                stream_version: current,
                global_positions: first_position..first_position,
            });
        }
        let mut batch_ids = HashSet::with_capacity(events.len());
        for event in events {
            if log.event_ids.contains(&event.event_id) || !batch_ids.insert(event.event_id) {
                return Err(StoreError::Invalid {
                    stream: stream.to_key(),
                    reason: format!(
                        "event id {} is already stored (or repeated in this batch); give every new event a fresh id",
                        event.event_id
                    ),
                });
            }
        }
        log.event_ids.extend(batch_ids);
        let recorded_at = SystemTime::now();
        let first_index = log.events.len();
        log.events
            .extend(events.iter().enumerate().map(|(i, event)| RecordedEvent {
                event_id: event.event_id,
                aggregate_type: stream.aggregate_type.to_owned(),
                stream_id: stream.id.to_owned(),
                stream_version: current + 1 + i as u64,
                global_position: first_position + i as u64,
                event_type: event.event_type.clone().into_owned(),
                schema_version: event.schema_version,
                recorded_at,
                payload: event.payload.clone(),
                metadata: event.metadata.clone(),
            }));
        let last_index = log.events.len();
        log.streams
            .entry(stream.aggregate_type.to_owned())
            .or_default()
            .entry(stream.id.to_owned())
            .or_default()
            .extend(first_index..last_index);
        Ok(AppendOutcome {
            stream_version: current + events.len() as u64,
            global_positions: first_position..first_position + events.len() as u64,
        })
    }

    fn read_stream(
        &self,
        stream: StreamRef<'_>,
        from_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let log = self.read();
        let indexes = log.stream(stream);
        let skip = usize::try_from(from_version.saturating_sub(1)).unwrap_or(usize::MAX);
        Ok(indexes
            .iter()
            .skip(skip)
            // Indexes are only ever pushed for events already in `events`: always in bounds.
            .map(|&i| log.events[i].clone())
            .collect())
    }

    fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let log = self.read();
        let start = usize::try_from(from_position.saturating_sub(1)).unwrap_or(usize::MAX);
        Ok(log.events.iter().skip(start).take(limit).cloned().collect())
    }

    fn stream_version(&self, stream: StreamRef<'_>) -> Result<u64, StoreError> {
        Ok(self.read().stream(stream).len() as u64)
    }
}
