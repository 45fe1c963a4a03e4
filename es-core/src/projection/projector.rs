//! [`Projector`]: feeds a read model the global log from its checkpoint.

use std::error::Error as StdError;
use std::ops::ControlFlow;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::envelope::{EventRecord, StreamKey};
use crate::projection::checkpoint::{Checkpointer, Lease};
use crate::projection::read_model::{ApplyError, ReadModel};
use crate::store::{EventStore, StoreError};

/// How many events a projector reads per batch by default; it commits its checkpoint
/// after each batch.
pub const DEFAULT_BATCH_SIZE: usize = 512;

/// A projector stopped.
///
/// Every variant names the read model; a failure on an event names the event's type, its
/// stream and version and its global position. The checkpoint is left just before that
/// event, so running the projector again (after fixing the handler or the data) resumes
/// there: no event is skipped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// A handler returned an error.
    #[error(
        "read model `{read_model}` failed on event `{event_type}` at global position {global_position} (version {version} of {stream}): {source}; fix the handler (or the data) and run the projector again: it resumes at this event"
    )]
    Handler {
        /// The read model.
        read_model: &'static str,
        /// The stored event type.
        event_type: String,
        /// The event's stream.
        stream: StreamKey,
        /// The event's stream version.
        version: u64,
        /// The event's global position.
        global_position: u64,
        /// What the handler returned.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// A handled event could not be decoded.
    #[error(
        "read model `{read_model}` cannot decode event `{event_type}` at global position {global_position} (version {version} of {stream}): {source}; add an upcaster or fix the event type, then run the projector again: it resumes at this event"
    )]
    Decode {
        /// The read model.
        read_model: &'static str,
        /// The stored event type.
        event_type: String,
        /// The event's stream.
        stream: StreamKey,
        /// The event's stream version.
        version: u64,
        /// The event's global position.
        global_position: u64,
        /// Why it does not decode.
        #[source]
        source: Box<crate::DecodeError>,
    },
    /// Reading the log or keeping the checkpoint failed.
    #[error(
        "read model `{read_model}`: the store failed after global position {position}: {source}; the projector can be run again, it resumes after position {position}"
    )]
    Store {
        /// The read model.
        read_model: &'static str,
        /// The last position applied and committed.
        position: u64,
        /// The store's error.
        #[source]
        source: Box<StoreError>,
    },
    /// Another projector instance runs this read model.
    #[error(
        "read model `{read_model}` is being projected by another instance (`{owner}`), whose lease runs until {until:?}; stop that instance, or wait for its lease to expire"
    )]
    Locked {
        /// The read model.
        read_model: &'static str,
        /// The other instance's owner id.
        owner: String,
        /// When its lease expires unless renewed.
        until: SystemTime,
    },
}

/// How far a catch-up or a rebuild got, for progress reports: `done` of `total` positions
/// of the global log (equal to event counts, unless the store has gaps in its positions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Positions read so far in this run.
    pub done: u64,
    /// Positions to read in this run, as of its start.
    pub total: u64,
    /// The global position reached.
    pub position: u64,
}

/// What [`Projector::catch_up`] (or [`rebuild`](Projector::rebuild)) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CaughtUp {
    /// Events applied to the read model.
    pub applied: u64,
    /// The checkpoint now: the position of the last event read.
    pub position: u64,
}

/// Stops a [`Projector::run`] from another thread (or a signal handler's thread).
/// Clones share the request.
#[derive(Debug, Clone, Default)]
pub struct StopHandle {
    inner: Arc<(Mutex<bool>, Condvar)>,
}

impl StopHandle {
    /// A handle that has not been stopped.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the projector to stop: it finishes the batch it is applying, commits it and
    /// returns. Wakes it at once if it is waiting for new events.
    pub fn stop(&self) {
        let (stopped, wake) = &*self.inner;
        *stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
    }

    /// Whether [`stop`](StopHandle::stop) was called.
    pub fn is_stopped(&self) -> bool {
        *self.inner.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits up to `timeout` or until stopped; returns whether it was stopped.
    fn wait(&self, timeout: Duration) -> bool {
        let (stopped, wake) = &*self.inner;
        let guard = stopped.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = wake
            .wait_timeout_while(guard, timeout, |stopped| !*stopped)
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }
}

/// How [`Projector::run`] polls for new events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// The pause after a poll that found new events was applied (default 1 ms).
    pub min_delay: Duration,
    /// The longest pause between polls: an idle projector doubles its pause up to this
    /// (default 250 ms), so a new event is applied at most this long after it commits,
    /// plus the time to apply it.
    pub max_delay: Duration,
    /// How many store failures in a row (a busy database, a lost connection) a run rides
    /// out, pausing `max_delay` after each, before it returns the last one (default 10).
    /// Handler and decoding errors end the run at once.
    pub max_store_failures: u32,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(250),
            max_store_failures: 10,
        }
    }
}

/// Feeds a [`ReadModel`] the events of a store's global log, in order, from its checkpoint.
///
/// * [`catch_up`](Projector::catch_up) reads in batches up to the end of the log, applies
///   the events the read model handles (others are skipped without being decoded) and
///   commits the checkpoint after each batch.
/// * [`rebuild`](Projector::rebuild) resets the read model and its checkpoint and replays
///   the whole log, reporting progress.
/// * [`run`](Projector::run) keeps following new events until stopped.
///
/// Delivery is at least once: a crash after events were applied but before the checkpoint
/// was committed applies them again on restart. With a [`CheckpointStore`](crate::CheckpointStore)
/// the checkpoint is kept apart from the read model, so keep both durable or neither (an
/// in-memory read model with a durable checkpoint would resume with its state lost).
/// `es_sqlite::ExactlyOnce` commits a SQLite read model's writes and its checkpoint in one
/// transaction.
///
/// Only one instance projects a given read model at a time: each takes a lease (by the
/// read model's name, in the checkpoint store) for [`lease_ttl`](Projector::with_lease_ttl),
/// renews it while running, and gives it up when done. A second instance's `catch_up`
/// fails with [`ProjectionError::Locked`]; its `run` waits until the lease is free. The
/// lease is renewed when less than half of it is left, at the start of a poll: an instance
/// stalled for longer than the lease (a long GC-like pause, a suspended VM) may find that
/// another took over; a [`CheckpointStore`](crate::CheckpointStore) does not fence its
/// checkpoint by the lease (`es_sqlite::ExactlyOnce` does: its commit writes nothing once
/// another instance holds the lease), so keep the TTL well above the time one batch takes. Give an instance that restarts in place a
/// stable [`owner`](Projector::with_owner) id, and it takes its own lease back at once
/// instead of waiting for the one its previous run left.
///
/// The projector is synchronous. In a tokio service run it on a blocking thread
/// (`tokio::task::spawn_blocking`) over the sync store (`es_sqlite::AsyncSqliteStore::sync`),
/// stopping it with its [`StopHandle`] on shutdown.
///
/// ```
/// use es_core::{Aggregate, Event, InMemoryStore, Projector, Repository, applies, read_model};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// struct Deposited { amount: u64 }
///
/// #[derive(Debug, Default, Aggregate)]
/// struct Account { balance: u64 }
///
/// #[applies]
/// impl Account {
///     fn deposited(&mut self, e: &Deposited) { self.balance += e.amount; }
/// }
///
/// /// The sum of all deposits, over every account.
/// #[derive(Debug, Default)]
/// struct TotalDeposits { total: u64, last_position: u64 }
///
/// #[read_model]
/// impl TotalDeposits {
///     #[from(Account)]
///     fn deposited(&mut self, e: &Deposited, record: &es_core::EventRecord<'_>) {
///         self.total += e.amount;
///         self.last_position = record.global_position;
///     }
/// }
///
/// let store = InMemoryStore::new();
/// let repo = Repository::<Account, _>::new(store.clone());
/// repo.execute_infallible("a", |_: &Account| Deposited { amount: 5 })?;
/// repo.execute_infallible("b", |_: &Account| Deposited { amount: 7 })?;
///
/// let mut projector = Projector::new(store.clone(), TotalDeposits::default(), store.clone());
/// let caught_up = projector.catch_up()?;
/// assert_eq!((caught_up.applied, projector.read_model().total), (2, 12));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Projector<S, R, C> {
    store: S,
    read_model: R,
    checkpoints: C,
    batch_size: usize,
    /// The committed position, once loaded.
    position: Option<u64>,
    /// This instance's lease owner id.
    owner: String,
    lease_ttl: Duration,
    /// When the lease this instance holds expires, if it holds one.
    lease_until: Option<SystemTime>,
    filter: Filter,
}

/// Which events the read model handles, grouped by aggregate type.
#[derive(Debug)]
struct Filter {
    /// (aggregate type, stored names incl. aliases).
    groups: Vec<(&'static str, Vec<&'static str>)>,
}

impl Filter {
    fn of<R: ReadModel>() -> Self {
        let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for handled in R::HANDLES {
            let index = match groups
                .iter()
                .position(|(a, _)| *a == handled.aggregate_type)
            {
                Some(index) => index,
                None => {
                    groups.push((handled.aggregate_type, Vec::new()));
                    groups.len() - 1
                }
            };
            let names = &mut groups[index].1;
            for name in std::iter::once(&handled.event_type).chain(handled.aliases) {
                if !names.contains(name) {
                    names.push(name);
                }
            }
        }
        Self { groups }
    }
}

impl<S: EventStore, R: ReadModel, C: Checkpointer<R>> Projector<S, R, C> {
    /// A projector of `read_model` over `store`'s global log, keeping its progress in
    /// `checkpoints` (any [`CheckpointStore`](crate::CheckpointStore), such as the store
    /// itself, or an exactly-once checkpointer). Nothing is read until the first call.
    pub fn new(store: S, read_model: R, checkpoints: C) -> Self {
        Self {
            store,
            read_model,
            checkpoints,
            batch_size: DEFAULT_BATCH_SIZE,
            position: None,
            owner: format!("projector-{}", crate::id::new_event_id()),
            lease_ttl: Duration::from_secs(30),
            lease_until: None,
            filter: Filter::of::<R>(),
        }
    }

    /// Reads (and commits) up to `batch_size` events at a time (at least 1; default
    /// [`DEFAULT_BATCH_SIZE`]).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// How long the lease this instance takes lasts unless renewed (default 30 s). A
    /// crashed instance's lease blocks other instances for up to this long.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// The id this instance takes leases under (default: `projector-` and a random UUID).
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// The read model.
    pub fn read_model(&self) -> &R {
        &self.read_model
    }

    /// The read model, mutably (to query a model that caches, say). Changing what it
    /// holds desynchronises it from its checkpoint.
    pub fn read_model_mut(&mut self) -> &mut R {
        &mut self.read_model
    }

    /// The checkpointer.
    pub fn checkpoints(&self) -> &C {
        &self.checkpoints
    }

    /// The read model, giving up the lease if this instance holds one.
    pub fn into_read_model(mut self) -> R {
        self.release();
        self.read_model
    }

    /// The committed position (the global position of the last event read), loading the
    /// checkpoint on the first call.
    pub fn position(&mut self) -> Result<u64, ProjectionError> {
        if let Some(position) = self.position {
            return Ok(position);
        }
        let position = self
            .checkpoints
            .load(&mut self.read_model)
            .map_err(|e| store_error::<R>(0, e))?;
        self.position = Some(position);
        Ok(position)
    }

    /// Reads the global log from the checkpoint to its end, in batches, applying the
    /// events the read model handles and committing the checkpoint after each batch.
    ///
    /// Takes the lease for the duration (fails with [`ProjectionError::Locked`] if another
    /// instance holds it). A handler error stops at that event, with the events before it
    /// committed; calling again resumes at it.
    pub fn catch_up(&mut self) -> Result<CaughtUp, ProjectionError> {
        self.exclusive(|this| this.catch_up_inner(None))
    }

    /// [`catch_up`](Projector::catch_up), calling `progress` after every batch.
    pub fn catch_up_with_progress(
        &mut self,
        mut progress: impl FnMut(Progress),
    ) -> Result<CaughtUp, ProjectionError> {
        self.exclusive(|this| this.catch_up_inner(Some(&mut progress)))
    }

    /// Resets the read model ([`ReadModel::reset`]) and its checkpoint and replays the
    /// global log from position 0, calling `progress` after every batch (events done /
    /// total, as of the start).
    pub fn rebuild(
        &mut self,
        mut progress: impl FnMut(Progress),
    ) -> Result<CaughtUp, ProjectionError> {
        self.exclusive(|this| {
            this.checkpoints
                .reset(&mut this.read_model)
                .map_err(|e| store_error::<R>(0, e))?;
            this.position = Some(0);
            this.catch_up_inner(Some(&mut progress))
        })
    }

    /// Keeps the read model up to date until `stop` is stopped: catches up, then polls for
    /// new events, pausing between polls that found none for twice as long each time, up to
    /// [`RunOptions::max_delay`]. Returns the number of events applied.
    ///
    /// While another instance holds the lease, waits (polling as slowly as `max_delay`)
    /// until it is free. A handler or decoding error stops the run with the error (the
    /// checkpoint is just before the failing event); store failures are retried as
    /// [`RunOptions::max_store_failures`] says. Stopped, it commits what it applied and
    /// gives up the lease.
    pub fn run(&mut self, stop: &StopHandle, options: RunOptions) -> Result<u64, ProjectionError> {
        let mut applied = 0;
        let mut delay = options.min_delay;
        let mut store_failures = 0;
        let result = loop {
            if stop.is_stopped() {
                break Ok(applied);
            }
            let step = self.ensure_lease().and_then(|lease| match lease {
                Ok(()) => self.catch_up_inner(None).map(Some),
                // Another instance runs it: wait for its lease to be released or expire.
                Err(_) => Ok(None),
            });
            match step {
                Ok(Some(done)) => {
                    store_failures = 0;
                    applied += done.applied;
                    delay = if done.applied > 0 {
                        options.min_delay
                    } else {
                        (delay * 2).clamp(options.min_delay, options.max_delay)
                    };
                }
                Ok(None) => {
                    store_failures = 0;
                    delay = options.max_delay;
                }
                Err(ProjectionError::Store { .. })
                    if store_failures < options.max_store_failures =>
                {
                    store_failures += 1;
                    delay = options.max_delay;
                }
                Err(error) => break Err(error),
            }
            if stop.wait(delay) {
                break Ok(applied);
            }
        };
        self.release();
        result
    }

    /// Runs `f` holding the lease, taking it first if needed and giving it up after if
    /// it was taken here.
    fn exclusive<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ProjectionError>,
    ) -> Result<T, ProjectionError> {
        let held = self.lease_until.is_some();
        if let Err((owner, until)) = self.ensure_lease()? {
            return Err(ProjectionError::Locked {
                read_model: R::NAME,
                owner,
                until,
            });
        }
        let result = f(self);
        if !held {
            self.release();
        }
        result
    }

    /// Takes or renews the lease when less than half of it is left; `Err` with the holder
    /// if another instance holds it.
    #[allow(clippy::type_complexity)]
    fn ensure_lease(&mut self) -> Result<Result<(), (String, SystemTime)>, ProjectionError> {
        let now = SystemTime::now();
        if let Some(until) = self.lease_until {
            if until > now + self.lease_ttl / 2 {
                return Ok(Ok(()));
            }
        }
        match self
            .checkpoints
            .acquire_lease(R::NAME, &self.owner, self.lease_ttl)
        {
            Ok(Lease::Acquired { until }) => {
                self.lease_until = Some(until);
                Ok(Ok(()))
            }
            Ok(Lease::HeldBy { owner, until }) => {
                self.lease_until = None;
                Ok(Err((owner, until)))
            }
            Err(error) => Err(store_error::<R>(self.position.unwrap_or(0), error)),
        }
    }

    /// Gives up the lease, if held. A failure only delays other instances until it
    /// expires, so it is not reported.
    fn release(&mut self) {
        if self.lease_until.take().is_some() {
            let _ = self.checkpoints.release_lease(R::NAME, &self.owner);
        }
    }

    fn catch_up_inner(
        &mut self,
        mut progress: Option<&mut dyn FnMut(Progress)>,
    ) -> Result<CaughtUp, ProjectionError> {
        let start = self.position()?;
        let total = match progress {
            Some(_) => head_position(&self.store)
                .map_err(|e| store_error::<R>(start, e))?
                .saturating_sub(start),
            None => 0,
        };
        let mut position = start;
        let mut applied = 0;
        loop {
            let batch = self.batch(position);
            if batch.last > position {
                if let Err(error) = self.checkpoints.commit(&mut self.read_model, batch.last) {
                    let resume = self.checkpoints.after_failed_commit(
                        &mut self.read_model,
                        position,
                        batch.last,
                    );
                    self.position = Some(resume);
                    return Err(store_error::<R>(position, error));
                }
                position = batch.last;
                self.position = Some(position);
            }
            applied += batch.applied;
            if let Some(report) = progress.as_deref_mut() {
                let done = position.saturating_sub(start).min(total);
                report(Progress {
                    done: if batch.done() { total.max(done) } else { done },
                    total,
                    position,
                });
            }
            if let Some(failure) = batch.failure {
                return Err(failure.into_error::<R>(position));
            }
            if batch.done() {
                return Ok(CaughtUp { applied, position });
            }
        }
    }

    /// Reads and applies one batch after `position`.
    fn batch(&mut self, position: u64) -> Batch {
        let mut batch = Batch {
            last: position,
            read: 0,
            applied: 0,
            limit: self.batch_size,
            failure: None,
        };
        let read_model = &mut self.read_model;
        let groups = &self.filter.groups;
        let mut visitor = |record: &EventRecord<'_>| {
            let handled = groups.iter().any(|(aggregate, names)| {
                *aggregate == record.stream.aggregate_type && names.contains(&record.event_type)
            });
            if handled {
                if let Err(error) = read_model.apply(record) {
                    batch.failure = Some(Failure::Apply(failed_on(record, error)));
                    return ControlFlow::Break(());
                }
                batch.applied += 1;
            }
            batch.read += 1;
            batch.last = record.global_position;
            ControlFlow::Continue(())
        };
        let from = position.saturating_add(1);
        let read = match groups.as_slice() {
            [(aggregate, names)] => {
                self.store
                    .visit_by_type(aggregate, names, from, self.batch_size, &mut visitor)
            }
            _ => self.store.visit_all(from, self.batch_size, &mut visitor),
        };
        if let Err(error) = read {
            if batch.failure.is_none() {
                batch.failure = Some(Failure::Store(error));
            }
        }
        batch
    }
}

struct Batch {
    /// The position of the last event read (and applied, if handled).
    last: u64,
    read: usize,
    applied: u64,
    limit: usize,
    failure: Option<Failure>,
}

impl Batch {
    /// Whether the log has no more events after this batch (or it failed).
    fn done(&self) -> bool {
        self.failure.is_some() || self.read < self.limit
    }
}

enum Failure {
    Apply(FailedEvent),
    Store(StoreError),
}

struct FailedEvent {
    event_type: String,
    stream: StreamKey,
    version: u64,
    global_position: u64,
    error: ApplyError,
}

fn failed_on(record: &EventRecord<'_>, error: ApplyError) -> FailedEvent {
    FailedEvent {
        event_type: record.event_type.to_owned(),
        stream: record.stream.to_key(),
        version: record.stream_version,
        global_position: record.global_position,
        error,
    }
}

impl Failure {
    fn into_error<R: ReadModel>(self, position: u64) -> ProjectionError {
        match self {
            Self::Store(error) => store_error::<R>(position, error),
            Self::Apply(FailedEvent {
                event_type,
                stream,
                version,
                global_position,
                error,
            }) => match error {
                ApplyError::Decode(source) => ProjectionError::Decode {
                    read_model: R::NAME,
                    event_type,
                    stream,
                    version,
                    global_position,
                    source: Box::new(source),
                },
                ApplyError::Handler(source) => ProjectionError::Handler {
                    read_model: R::NAME,
                    event_type,
                    stream,
                    version,
                    global_position,
                    source,
                },
            },
        }
    }
}

fn store_error<R: ReadModel>(position: u64, error: StoreError) -> ProjectionError {
    ProjectionError::Store {
        read_model: R::NAME,
        position,
        source: Box::new(error),
    }
}

/// The global position of the last event in `store`'s log (0: empty), found with
/// O(log n) one-event reads: a galloping search for the last position at or after which
/// an event exists.
pub(crate) fn head_position<S: EventStore + ?Sized>(store: &S) -> Result<u64, StoreError> {
    // The first event at or after `from`, if any.
    let first_from = |from: u64| -> Result<Option<u64>, StoreError> {
        let mut found = None;
        store.visit_all(from, 1, &mut |record| {
            found = Some(record.global_position);
            ControlFlow::Break(())
        })?;
        Ok(found)
    };
    let Some(mut last) = first_from(1)? else {
        return Ok(0);
    };
    // Gallop: `last` is a known position; probe further and further after it.
    let mut step = 1u64;
    loop {
        match first_from(last.saturating_add(step))? {
            Some(found) => {
                last = found;
                step = step.saturating_mul(2);
            }
            None if step == 1 => return Ok(last),
            None => step = (step / 2).max(1),
        }
    }
}
