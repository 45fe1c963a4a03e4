//! [`AsyncProjector`]: the [`Projector`](crate::Projector) of async services (feature
//! `async`).

use std::ops::ControlFlow;
use std::time::Duration;

use crate::envelope::EventRecord;
use crate::projection::checkpoint_async::AsyncCheckpointer;
use crate::projection::engine::{Batch, CatchUp, Filter, Follow, HeldBy, LeaseKeeper, locked};
use crate::projection::error::{ProjectionError, store_error};
use crate::projection::projector::{CaughtUp, DEFAULT_BATCH_SIZE, Progress, RunOptions};
use crate::projection::read_model::ReadModel;
use crate::projection::stop::{StopHandle, Waited};
use crate::store::AsyncEventStore;

/// Feeds a [`ReadModel`] the global log of an [`AsyncEventStore`], from its checkpoint in
/// an [`AsyncCheckpointer`] (any [`AsyncCheckpointStore`](crate::AsyncCheckpointStore)):
/// the async twin of [`Projector`](crate::Projector), with the same batches, checkpoints,
/// leases, errors and pacing (the steps between the store calls are shared), whose futures
/// are `Send`, so that it runs in `tokio::spawn`.
///
/// It never blocks a runtime thread: PostgreSQL is read asynchronously, SQLite on
/// blocking threads. [`run`](AsyncProjector::run) pauses with the tokio timer and stops (or
/// wakes) through a [`StopHandle`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use es_core::{Aggregate, AsyncProjector, AsyncRepository, Event, InMemoryStore, applies, read_model};
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
/// #[derive(Debug, Default)]
/// struct TotalDeposits { total: u64 }
///
/// #[read_model]
/// impl TotalDeposits {
///     #[from(Account)]
///     fn deposited(&mut self, e: &Deposited) { self.total += e.amount; }
/// }
///
/// let store = InMemoryStore::new();
/// let repo = AsyncRepository::<Account, _>::new(store.clone());
/// repo.execute_infallible("a", |_: &Account| Deposited { amount: 5 }).await?;
/// repo.execute_infallible("b", |_: &Account| Deposited { amount: 7 }).await?;
///
/// let mut projector = AsyncProjector::new(store.clone(), TotalDeposits::default(), store.clone());
/// let caught_up = projector.catch_up().await?;
/// assert_eq!((caught_up.applied, projector.read_model().total), (2, 12));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncProjector<S, R, C> {
    store: S,
    read_model: R,
    checkpoints: C,
    batch_size: usize,
    /// The committed position, once loaded.
    position: Option<u64>,
    lease: LeaseKeeper,
    filter: Filter,
}

impl<S, R, C> AsyncProjector<S, R, C>
where
    S: AsyncEventStore,
    R: ReadModel + Send,
    C: AsyncCheckpointer<R>,
{
    /// A projector of `read_model` over `store`'s global log, keeping its progress in
    /// `checkpoints`. Nothing is read until the first call.
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

    /// See [`Projector::with_batch_size`](crate::Projector::with_batch_size).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// See [`Projector::with_lease_ttl`](crate::Projector::with_lease_ttl).
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease.ttl = ttl;
        self
    }

    /// See [`Projector::with_owner`](crate::Projector::with_owner).
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.lease.owner = owner.into();
        self
    }

    /// The read model.
    pub fn read_model(&self) -> &R {
        &self.read_model
    }

    /// The read model, mutably. Changing what it holds desynchronises it from its
    /// checkpoint.
    pub fn read_model_mut(&mut self) -> &mut R {
        &mut self.read_model
    }

    /// The checkpointer.
    pub fn checkpoints(&self) -> &C {
        &self.checkpoints
    }

    /// The read model, giving up the lease if this instance holds one.
    pub async fn into_read_model(mut self) -> R {
        self.release().await;
        self.read_model
    }

    /// The committed position, loading the checkpoint on the first call.
    pub async fn position(&mut self) -> Result<u64, ProjectionError> {
        if let Some(position) = self.position {
            return Ok(position);
        }
        let position = self
            .checkpoints
            .load(&mut self.read_model)
            .await
            .map_err(|e| store_error::<R>(0, e))?;
        self.position = Some(position);
        Ok(position)
    }

    /// See [`Projector::catch_up`](crate::Projector::catch_up).
    pub async fn catch_up(&mut self) -> Result<CaughtUp, ProjectionError> {
        let held = self.take_lease_or_fail().await?;
        let result = self.catch_up_inner(None).await;
        self.release_unless(held).await;
        result
    }

    /// [`catch_up`](AsyncProjector::catch_up), calling `progress` after every batch.
    pub async fn catch_up_with_progress(
        &mut self,
        mut progress: impl FnMut(Progress) + Send,
    ) -> Result<CaughtUp, ProjectionError> {
        let held = self.take_lease_or_fail().await?;
        let result = self.catch_up_inner(Some(&mut progress)).await;
        self.release_unless(held).await;
        result
    }

    /// See [`Projector::rebuild`](crate::Projector::rebuild).
    pub async fn rebuild(
        &mut self,
        mut progress: impl FnMut(Progress) + Send,
    ) -> Result<CaughtUp, ProjectionError> {
        let held = self.take_lease_or_fail().await?;
        let result = match self.checkpoints.reset(&mut self.read_model).await {
            Ok(()) => {
                self.position = Some(0);
                self.catch_up_inner(Some(&mut progress)).await
            }
            Err(error) => Err(store_error::<R>(0, error)),
        };
        self.release_unless(held).await;
        result
    }

    /// See [`Projector::run`](crate::Projector::run): follows the log until `stop` is
    /// stopped, pausing with the tokio timer; [`StopHandle::wake`] cuts a pause short.
    pub async fn run(
        &mut self,
        stop: &StopHandle,
        options: RunOptions,
    ) -> Result<u64, ProjectionError> {
        let mut follow = Follow::new(options);
        let result = loop {
            if stop.is_stopped() {
                break Ok(follow.applied());
            }
            let poll = match self.ensure_lease().await {
                Ok(Ok(())) => self.catch_up_inner(None).await.map(Some),
                Ok(Err(_)) => Ok(None),
                Err(error) => Err(error),
            };
            let delay = match follow.after(poll) {
                ControlFlow::Continue(delay) => delay,
                ControlFlow::Break(result) => break result,
            };
            match stop.wait_async(delay).await {
                Waited::Stopped => break Ok(follow.applied()),
                Waited::Woken => follow.woken(),
                Waited::TimedOut => {}
            }
        };
        self.release().await;
        result
    }

    /// Takes the lease unless held; whether it was held already.
    async fn take_lease_or_fail(&mut self) -> Result<bool, ProjectionError> {
        let held = self.lease.held();
        self.ensure_lease().await?.map_err(locked::<R>)?;
        Ok(held)
    }

    async fn release_unless(&mut self, held: bool) {
        if !held {
            self.release().await;
        }
    }

    async fn ensure_lease(&mut self) -> Result<Result<(), HeldBy>, ProjectionError> {
        if !self.lease.renewal_due() {
            return Ok(Ok(()));
        }
        let answer = self
            .checkpoints
            .acquire_lease(R::NAME, &self.lease.owner, self.lease.ttl)
            .await;
        self.lease.record::<R>(answer, self.position.unwrap_or(0))
    }

    /// Gives up the lease, if held; a failure only delays other instances until it
    /// expires, so it is not reported.
    async fn release(&mut self) {
        if self.lease.take() {
            let _ = self
                .checkpoints
                .release_lease(R::NAME, &self.lease.owner)
                .await;
        }
    }

    async fn catch_up_inner(
        &mut self,
        mut progress: Option<&mut (dyn FnMut(Progress) + Send)>,
    ) -> Result<CaughtUp, ProjectionError> {
        let start = self.position().await?;
        let head = match progress {
            Some(_) => Some(
                self.store
                    .head_position()
                    .await
                    .map_err(|e| store_error::<R>(start, e))?,
            ),
            None => None,
        };
        let mut run = CatchUp::new(start, head);
        loop {
            let batch = self.batch(run.position()).await;
            if let Some(last) = run.commit_due(&batch) {
                if let Err(error) = self.checkpoints.commit(&mut self.read_model, last).await {
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

    async fn batch(&mut self, position: u64) -> Batch {
        let mut batch = Batch::new(position, self.batch_size);
        let (filter, read_model) = (&self.filter, &mut self.read_model);
        let mut visitor = |record: &EventRecord<'_>| batch.visit(filter, read_model, record);
        let from = position.saturating_add(1);
        let read = match filter.single_type() {
            Some((aggregate, names)) => {
                self.store
                    .visit_by_type(aggregate, names, from, self.batch_size, &mut visitor)
                    .await
            }
            None => {
                self.store
                    .visit_all(from, self.batch_size, &mut visitor)
                    .await
            }
        };
        batch.read(read)
    }
}
