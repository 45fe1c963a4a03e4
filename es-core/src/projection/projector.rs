//! [`Projector`]: feeds a read model the global log from its checkpoint.

use std::ops::ControlFlow;
use std::time::Duration;

use crate::projection::checkpoint::Checkpointer;
use crate::projection::engine::{Batch, CatchUp, Filter, Follow, HeldBy, LeaseKeeper, locked};
use crate::projection::error::{ProjectionError, store_error};
use crate::projection::read_model::ReadModel;
use crate::projection::stop::{StopHandle, Waited};
use crate::store::EventStore;

/// How many events a projector reads per batch by default; it commits its checkpoint
/// after each batch.
pub const DEFAULT_BATCH_SIZE: usize = 512;

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
    lease: LeaseKeeper,
    filter: Filter,
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
            lease: LeaseKeeper::new(),
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
        self.lease.ttl = ttl;
        self
    }

    /// The id this instance takes leases under (default: `projector-` and a random UUID).
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.lease.owner = owner.into();
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
    /// [`RunOptions::max_delay`]; [`StopHandle::wake`] cuts a pause short. Returns the
    /// number of events applied.
    ///
    /// While another instance holds the lease, waits (polling as slowly as `max_delay`)
    /// until it is free. A handler or decoding error stops the run with the error (the
    /// checkpoint is just before the failing event); store failures are retried as
    /// [`RunOptions::max_store_failures`] says. Stopped, it commits what it applied and
    /// gives up the lease.
    pub fn run(&mut self, stop: &StopHandle, options: RunOptions) -> Result<u64, ProjectionError> {
        let mut follow = Follow::new(options);
        let result = loop {
            if stop.is_stopped() {
                break Ok(follow.applied());
            }
            let poll = self.ensure_lease().and_then(|lease| match lease {
                Ok(()) => self.catch_up_inner(None).map(Some),
                Err(_) => Ok(None),
            });
            let delay = match follow.after(poll) {
                ControlFlow::Continue(delay) => delay,
                ControlFlow::Break(result) => break result,
            };
            match stop.wait(delay) {
                Waited::Stopped => break Ok(follow.applied()),
                Waited::Woken => follow.woken(),
                Waited::TimedOut => {}
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
        let held = self.lease.held();
        self.ensure_lease()?.map_err(locked::<R>)?;
        let result = f(self);
        if !held {
            self.release();
        }
        result
    }

    /// Takes or renews the lease when less than half of it is left; `Err` with the holder
    /// if another instance holds it.
    fn ensure_lease(&mut self) -> Result<Result<(), HeldBy>, ProjectionError> {
        if !self.lease.renewal_due() {
            return Ok(Ok(()));
        }
        let answer = self
            .checkpoints
            .acquire_lease(R::NAME, &self.lease.owner, self.lease.ttl);
        self.lease.record::<R>(answer, self.position.unwrap_or(0))
    }

    /// Gives up the lease, if held. A failure only delays other instances until it
    /// expires, so it is not reported.
    fn release(&mut self) {
        if self.lease.take() {
            let _ = self.checkpoints.release_lease(R::NAME, &self.lease.owner);
        }
    }

    fn catch_up_inner(
        &mut self,
        mut progress: Option<&mut dyn FnMut(Progress)>,
    ) -> Result<CaughtUp, ProjectionError> {
        let start = self.position()?;
        let head = match progress {
            Some(_) => Some(
                self.store
                    .head_position()
                    .map_err(|e| store_error::<R>(start, e))?,
            ),
            None => None,
        };
        let mut run = CatchUp::new(start, head);
        loop {
            let batch = self.batch(run.position());
            if let Some(last) = run.commit_due(&batch) {
                if let Err(error) = self.checkpoints.commit(&mut self.read_model, last) {
                    let committed = run.position();
                    let resume =
                        self.checkpoints
                            .after_failed_commit(&mut self.read_model, committed, last);
                    self.position = Some(resume);
                    return Err(store_error::<R>(committed, error));
                }
            }
            run.committed(&batch);
            self.position = Some(run.position());
            if let Some(report) = progress.as_deref_mut() {
                report(run.progress(&batch));
            }
            if let ControlFlow::Break(result) = run.after::<R>(batch) {
                return result;
            }
        }
    }

    /// Reads and applies one batch after `position`.
    fn batch(&mut self, position: u64) -> Batch {
        let mut batch = Batch::new(position, self.batch_size);
        let (filter, read_model) = (&self.filter, &mut self.read_model);
        let mut visitor = |record: &crate::EventRecord<'_>| batch.visit(filter, read_model, record);
        let from = position.saturating_add(1);
        let read = match filter.single_type() {
            Some((aggregate, names)) => {
                self.store
                    .visit_by_type(aggregate, names, from, self.batch_size, &mut visitor)
            }
            None => self.store.visit_all(from, self.batch_size, &mut visitor),
        };
        batch.read(read)
    }
}
