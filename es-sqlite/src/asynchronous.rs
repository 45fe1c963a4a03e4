//! [`AsyncSqliteStore`]: the SQLite store for async code (feature `async`).

use std::ops::{ControlFlow, RangeInclusive};
use std::path::Path;
use std::time::Duration;

use es_core::{
    AppendOptions, AppendOutcome, AsyncCheckpointStore, AsyncEventStore, AsyncVisitor,
    CheckpointStore, EventStore, ExpectedVersion, Lease, NewEvent, RecordedEvent, Snapshot,
    StoreError, StreamKey, StreamRef,
};

use crate::{Error, SqliteStore};

/// How many events one trip to a blocking thread reads: large enough that the trips cost
/// little next to the reads, small enough that a long stream is never held in memory.
const CHUNK: usize = 256;

/// A [`SqliteStore`] for async code: the same file, schema and guarantees, with every
/// SQLite call run on tokio's blocking threads ([`tokio::task::spawn_blocking`]), so no
/// runtime worker ever waits for the disk.
///
/// Reads fetch a stream (or the global log) in chunks of 256 events, each chunk on a
/// blocking thread, and hand every event to the visitor on the calling task: a long stream
/// is never held in memory whole, and a visitor that stops early ends the read. Appends
/// copy the batch to the blocking thread. Its checkpoints and leases
/// ([`AsyncCheckpointStore`]) are the sync store's, each call on a blocking thread.
///
/// Must be used from inside a tokio runtime. It wraps a `SqliteStore` (see
/// [`from_sync`](AsyncSqliteStore::from_sync) and [`sync`](AsyncSqliteStore::sync)), so
/// sync and async code can share one open database. Cheap to clone.
///
/// ```
/// use es_core::{AsyncEventStore, ExpectedVersion, Metadata, NewEvent, StreamRef};
/// use es_sqlite::AsyncSqliteStore;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = AsyncSqliteStore::open_in_memory().await?;
/// let stream = StreamRef::new("Counter", "c-1");
/// let event = NewEvent::new("Incremented", 1, serde_json::json!({}), Metadata::new());
/// store.append(stream, ExpectedVersion::NoStream, &[event]).await?;
/// assert_eq!(store.stream_version(stream).await?, 1);
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(run()).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct AsyncSqliteStore {
    store: SqliteStore,
}

impl AsyncSqliteStore {
    /// Opens (or creates) the store in the file at `path`, on a blocking thread; see
    /// [`SqliteStore::open`] for the errors.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_owned();
        match tokio::task::spawn_blocking(move || SqliteStore::open(path)).await {
            Ok(opened) => opened.map(Self::from_sync),
            Err(join) => Err(Error::Blocking(join.to_string())),
        }
    }

    /// Opens a fresh, empty store that lives in memory; see
    /// [`SqliteStore::open_in_memory`].
    pub async fn open_in_memory() -> Result<Self, Error> {
        match tokio::task::spawn_blocking(SqliteStore::open_in_memory).await {
            Ok(opened) => opened.map(Self::from_sync),
            Err(join) => Err(Error::Blocking(join.to_string())),
        }
    }

    /// The async face of an open sync store (they share the database and its connections).
    pub fn from_sync(store: SqliteStore) -> Self {
        Self { store }
    }

    /// The sync store underneath, for sync code (or `spawn_blocking`) sharing the database.
    pub fn sync(&self) -> &SqliteStore {
        &self.store
    }

    /// Runs `f` with the sync store on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SqliteStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(result) => result,
            Err(join) => Err(StoreError::backend(Error::Blocking(join.to_string()))),
        }
    }
}

impl AsyncSqliteStore {
    /// Reads the global log from `from_position`, up to `limit` events, one chunk of at
    /// most [`CHUNK`] per trip to a blocking thread (`read(store, from, max, visitor)`
    /// reads a chunk), handing each event to `visitor` on the calling task.
    async fn visit_log<R>(
        &self,
        from_position: u64,
        limit: usize,
        visitor: &mut AsyncVisitor<'_>,
        read: R,
    ) -> Result<(), StoreError>
    where
        R: Fn(&SqliteStore, u64, usize, &mut es_core::Visitor<'_>) -> Result<(), StoreError>
            + Clone
            + Send
            + 'static,
    {
        let (mut next, mut remaining) = (from_position, limit);
        while remaining > 0 {
            let max = remaining.min(CHUNK);
            let read = read.clone();
            let chunk = self
                .blocking(move |store| {
                    Ok(Chunk::read(max, |visitor| read(store, next, max, visitor)))
                })
                .await?;
            if chunk.deliver(visitor).is_break() {
                return Ok(());
            }
            if let Some(error) = chunk.error {
                return Err(error);
            }
            match chunk.events.last() {
                Some(last) if chunk.events.len() == max => {
                    remaining -= max;
                    match last.global_position.checked_add(1) {
                        Some(after) => next = after,
                        None => return Ok(()),
                    }
                }
                _ => return Ok(()),
            }
        }
        Ok(())
    }
}

/// One chunk of a read, done on a blocking thread: the events, the error that ended it
/// (after those events), and whether the chunk is full (more may follow).
struct Chunk {
    events: Vec<RecordedEvent>,
    error: Option<StoreError>,
}

impl Chunk {
    /// Reads with `read`, which visits, into a chunk of at most `max` events.
    fn read(
        max: usize,
        read: impl FnOnce(&mut es_core::Visitor<'_>) -> Result<(), StoreError>,
    ) -> Self {
        let mut events = Vec::with_capacity(max.min(CHUNK));
        let mut error = None;
        let result = read(&mut |record| match record.to_recorded() {
            Ok(event) => {
                events.push(event);
                if events.len() >= max {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            }
            Err(failure) => {
                error = Some(failure);
                ControlFlow::Break(())
            }
        });
        Self {
            events,
            error: error.or(result.err()),
        }
    }

    /// Hands the chunk to `visitor`; `Break` if the visitor stopped, or the error.
    fn deliver(&self, visitor: &mut AsyncVisitor<'_>) -> ControlFlow<()> {
        for event in &self.events {
            visitor(&event.as_record())?;
        }
        ControlFlow::Continue(())
    }
}

impl AsyncEventStore for AsyncSqliteStore {
    async fn append_with(
        &self,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: &[NewEvent],
        options: AppendOptions<'_>,
    ) -> Result<AppendOutcome, StoreError> {
        let stream = stream.to_key();
        let events = events.to_vec();
        let key = options.idempotency_key.map(str::to_owned);
        self.blocking(move |store| {
            let mut options = AppendOptions::new();
            options.idempotency_key = key.as_deref();
            store.append_with(stream.as_ref(), expected, &events, options)
        })
        .await
    }

    async fn find_idempotency_key(
        &self,
        stream: StreamRef<'_>,
        idempotency_key: &str,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        let stream = stream.to_key();
        let key = idempotency_key.to_owned();
        self.blocking(move |store| store.find_idempotency_key(stream.as_ref(), &key))
            .await
    }

    async fn visit_stream(
        &self,
        stream: StreamRef<'_>,
        versions: RangeInclusive<u64>,
        visitor: &mut AsyncVisitor<'_>,
    ) -> Result<(), StoreError> {
        let (mut next, end) = (*versions.start(), *versions.end());
        let key: StreamKey = stream.to_key();
        while next <= end && !versions.is_empty() {
            let stream = key.clone();
            let chunk = self
                .blocking(move |store| {
                    Ok(Chunk::read(CHUNK, |visitor| {
                        store.visit_stream(stream.as_ref(), next..=end, visitor)
                    }))
                })
                .await?;
            if chunk.deliver(visitor).is_break() {
                return Ok(());
            }
            if let Some(error) = chunk.error {
                return Err(error);
            }
            match chunk.events.last() {
                Some(last) if chunk.events.len() == CHUNK => {
                    match last.stream_version.checked_add(1) {
                        Some(after) => next = after,
                        None => return Ok(()),
                    }
                }
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    async fn visit_all(
        &self,
        from_position: u64,
        limit: usize,
        visitor: &mut AsyncVisitor<'_>,
    ) -> Result<(), StoreError> {
        self.visit_log(
            from_position,
            limit,
            visitor,
            |store, from, max, visitor| store.visit_all(from, max, visitor),
        )
        .await
    }

    async fn stream_version(&self, stream: StreamRef<'_>) -> Result<u64, StoreError> {
        let stream = stream.to_key();
        self.blocking(move |store| store.stream_version(stream.as_ref()))
            .await
    }

    async fn visit_by_type(
        &self,
        aggregate_type: &str,
        event_types: &[&str],
        from_position: u64,
        limit: usize,
        visitor: &mut AsyncVisitor<'_>,
    ) -> Result<(), StoreError> {
        let aggregate_type = aggregate_type.to_owned();
        let types: Vec<String> = event_types.iter().map(|&t| t.to_owned()).collect();
        self.visit_log(
            from_position,
            limit,
            visitor,
            move |store, from, max, visitor| {
                let types: Vec<&str> = types.iter().map(String::as_str).collect();
                store.visit_by_type(&aggregate_type, &types, from, max, visitor)
            },
        )
        .await
    }

    async fn save_snapshot(
        &self,
        stream: StreamRef<'_>,
        snapshot: &Snapshot,
    ) -> Result<(), StoreError> {
        let stream = stream.to_key();
        let snapshot = snapshot.clone();
        self.blocking(move |store| store.save_snapshot(stream.as_ref(), &snapshot))
            .await
    }

    async fn load_snapshot(
        &self,
        stream: StreamRef<'_>,
        snapshot_version: u32,
        at_most: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        let stream = stream.to_key();
        self.blocking(move |store| store.load_snapshot(stream.as_ref(), snapshot_version, at_most))
            .await
    }

    async fn prune_snapshots(&self, stream: StreamRef<'_>, keep: usize) -> Result<u64, StoreError> {
        let stream = stream.to_key();
        self.blocking(move |store| store.prune_snapshots(stream.as_ref(), keep))
            .await
    }
}

/// The sync store's checkpoints and leases (the table `es_checkpoints`, leases taken in a
/// `BEGIN IMMEDIATE` transaction; see [`SqliteStore`]'s [`CheckpointStore`]), each call run
/// on a blocking thread.
impl AsyncCheckpointStore for AsyncSqliteStore {
    async fn load_checkpoint(&self, read_model: &str) -> Result<u64, StoreError> {
        let name = read_model.to_owned();
        self.blocking(move |store| CheckpointStore::load_checkpoint(store, &name))
            .await
    }

    async fn save_checkpoint(&self, read_model: &str, position: u64) -> Result<(), StoreError> {
        let name = read_model.to_owned();
        self.blocking(move |store| CheckpointStore::save_checkpoint(store, &name, position))
            .await
    }

    async fn delete_checkpoint(&self, read_model: &str) -> Result<(), StoreError> {
        let name = read_model.to_owned();
        self.blocking(move |store| CheckpointStore::delete_checkpoint(store, &name))
            .await
    }

    async fn acquire_lease(
        &self,
        read_model: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let (name, owner) = (read_model.to_owned(), owner.to_owned());
        self.blocking(move |store| CheckpointStore::acquire_lease(store, &name, &owner, ttl))
            .await
    }

    async fn release_lease(&self, read_model: &str, owner: &str) -> Result<(), StoreError> {
        let (name, owner) = (read_model.to_owned(), owner.to_owned());
        self.blocking(move |store| CheckpointStore::release_lease(store, &name, &owner))
            .await
    }
}
