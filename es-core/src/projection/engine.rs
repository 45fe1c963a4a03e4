//! The I/O-free steps that [`Projector`](crate::Projector) and the async projector share:
//! which events a read model reads, what one batch did, when the checkpoint is committed,
//! when the lease is renewed and how a run paces its polls. Each projector only adds its
//! store calls, blocking or awaited.

use std::ops::ControlFlow;
use std::time::{Duration, SystemTime};

use crate::envelope::{EventRecord, StreamKey};
use crate::projection::checkpoint::Lease;
use crate::projection::error::{ProjectionError, store_error};
use crate::projection::projector::{CaughtUp, Progress, RunOptions};
use crate::projection::read_model::{ApplyError, ReadModel};
use crate::store::{StoreError, Visit};

/// Which events the read model handles, grouped by aggregate type.
#[derive(Debug)]
pub(super) struct Filter {
    /// (aggregate type, stored names incl. aliases).
    groups: Vec<(&'static str, Vec<&'static str>)>,
}

impl Filter {
    pub(super) fn of<R: ReadModel>() -> Self {
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

    /// The one aggregate type (and its event types) the read model handles, if it handles
    /// only one: the store can then read by type.
    pub(super) fn single_type(&self) -> Option<(&'static str, &[&'static str])> {
        match self.groups.as_slice() {
            [(aggregate, names)] => Some((aggregate, names)),
            _ => None,
        }
    }

    fn handles(&self, record: &EventRecord<'_>) -> bool {
        self.groups.iter().any(|(aggregate, names)| {
            *aggregate == record.stream.aggregate_type && names.contains(&record.event_type)
        })
    }
}

/// What reading and applying one batch after a position did.
pub(super) struct Batch {
    /// The position of the last event read (and applied, if handled).
    pub(super) last: u64,
    read: usize,
    pub(super) applied: u64,
    limit: usize,
    failure: Option<Failure>,
}

impl Batch {
    /// A batch of up to `limit` events after `position`.
    pub(super) fn new(position: u64, limit: usize) -> Self {
        Self {
            last: position,
            read: 0,
            applied: 0,
            limit,
            failure: None,
        }
    }

    /// The visitor's step for one event: applies it if `read_model` handles it (decoding
    /// nothing otherwise); stops the batch at a failure.
    pub(super) fn visit<R: ReadModel>(
        &mut self,
        filter: &Filter,
        read_model: &mut R,
        record: &EventRecord<'_>,
    ) -> Visit {
        if filter.handles(record) {
            if let Err(error) = read_model.apply(record) {
                self.failure = Some(Failure::Apply(failed_on(record, error)));
                return ControlFlow::Break(());
            }
            self.applied += 1;
        }
        self.read += 1;
        self.last = record.global_position;
        ControlFlow::Continue(())
    }

    /// The outcome of the store's read: a read error counts unless an event failed first.
    pub(super) fn read(mut self, result: Result<(), StoreError>) -> Self {
        if let Err(error) = result {
            if self.failure.is_none() {
                self.failure = Some(Failure::Store(error));
            }
        }
        self
    }

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
                ApplyError::Decode(cause) => ProjectionError::Decode {
                    read_model: R::NAME,
                    event_type,
                    stream,
                    version,
                    global_position,
                    cause: Box::new(cause),
                },
                ApplyError::Handler(cause) => ProjectionError::Handler {
                    read_model: R::NAME,
                    event_type,
                    stream,
                    version,
                    global_position,
                    cause,
                },
            },
        }
    }
}

/// One catch-up: batch after batch from `start` until the end of the log or a failure.
pub(super) struct CatchUp {
    start: u64,
    total: u64,
    position: u64,
    applied: u64,
}

impl CatchUp {
    /// A catch-up from the committed `start`, with `head` (the log's last position) when
    /// progress is reported.
    pub(super) fn new(start: u64, head: Option<u64>) -> Self {
        Self {
            start,
            total: head.map_or(0, |head| head.saturating_sub(start)),
            position: start,
            applied: 0,
        }
    }

    /// The committed position: the next batch reads after it.
    pub(super) fn position(&self) -> u64 {
        self.position
    }

    /// The position to commit after `batch`, if it read anything.
    pub(super) fn commit_due(&self, batch: &Batch) -> Option<u64> {
        (batch.last > self.position).then_some(batch.last)
    }

    /// Records that `batch` is committed (or read nothing to commit).
    pub(super) fn committed(&mut self, batch: &Batch) {
        self.position = self.position.max(batch.last);
        self.applied += batch.applied;
    }

    /// The progress after `batch` was committed.
    pub(super) fn progress(&self, batch: &Batch) -> Progress {
        let done = self.position.saturating_sub(self.start).min(self.total);
        Progress {
            done: if batch.done() {
                self.total.max(done)
            } else {
                done
            },
            total: self.total,
            position: self.position,
        }
    }

    /// `Break` with the catch-up's result once `batch` (committed) was its last.
    pub(super) fn after<R: ReadModel>(
        &mut self,
        batch: Batch,
    ) -> ControlFlow<Result<CaughtUp, ProjectionError>> {
        if let Some(failure) = batch.failure {
            return ControlFlow::Break(Err(failure.into_error::<R>(self.position)));
        }
        if batch.read < batch.limit {
            return ControlFlow::Break(Ok(CaughtUp {
                applied: self.applied,
                position: self.position,
            }));
        }
        ControlFlow::Continue(())
    }
}

/// The lease one projector instance takes, renews and gives up.
#[derive(Debug)]
pub(super) struct LeaseKeeper {
    /// This instance's lease owner id.
    pub(super) owner: String,
    pub(super) ttl: Duration,
    /// When the lease this instance holds expires, if it holds one.
    until: Option<SystemTime>,
}

/// Another instance's lease: its owner and expiry.
pub(super) type HeldBy = (String, SystemTime);

impl LeaseKeeper {
    pub(super) fn new() -> Self {
        Self {
            owner: format!("projector-{}", crate::id::new_event_id()),
            ttl: Duration::from_secs(30),
            until: None,
        }
    }

    /// Whether this instance holds the lease (as far as it knows).
    pub(super) fn held(&self) -> bool {
        self.until.is_some()
    }

    /// Whether the lease must be taken or renewed now: it is not held, or less than half
    /// of it is left.
    pub(super) fn renewal_due(&self) -> bool {
        self.until
            .is_none_or(|until| until <= SystemTime::now() + self.ttl / 2)
    }

    /// Records what the checkpoint store answered: `Ok(Err(..))` when another instance
    /// holds the lease.
    pub(super) fn record<R: ReadModel>(
        &mut self,
        answer: Result<Lease, StoreError>,
        position: u64,
    ) -> Result<Result<(), HeldBy>, ProjectionError> {
        match answer {
            Ok(Lease::Acquired { until }) => {
                self.until = Some(until);
                Ok(Ok(()))
            }
            Ok(Lease::HeldBy { owner, until }) => {
                self.until = None;
                Ok(Err((owner, until)))
            }
            Err(error) => Err(store_error::<R>(position, error)),
        }
    }

    /// Forgets the lease; whether it was held (and must be released in the store).
    pub(super) fn take(&mut self) -> bool {
        self.until.take().is_some()
    }
}

/// The error of a one-off call (`catch_up`, `rebuild`) that found the lease held.
pub(super) fn locked<R: ReadModel>((owner, until): HeldBy) -> ProjectionError {
    ProjectionError::Locked {
        read_model: R::NAME,
        owner,
        until,
    }
}

/// The pacing of a run: how long to pause after each poll, and when to give up.
pub(super) struct Follow {
    options: RunOptions,
    applied: u64,
    delay: Duration,
    store_failures: u32,
}

impl Follow {
    pub(super) fn new(options: RunOptions) -> Self {
        Self {
            options,
            applied: 0,
            delay: options.min_delay,
            store_failures: 0,
        }
    }

    /// The events applied so far.
    pub(super) fn applied(&self) -> u64 {
        self.applied
    }

    /// After one poll (`None`: another instance holds the lease): `Continue` with the
    /// pause before the next, or `Break` with the run's result.
    pub(super) fn after(
        &mut self,
        poll: Result<Option<CaughtUp>, ProjectionError>,
    ) -> ControlFlow<Result<u64, ProjectionError>, Duration> {
        let options = self.options;
        match poll {
            Ok(Some(done)) => {
                self.store_failures = 0;
                self.applied += done.applied;
                self.delay = if done.applied > 0 {
                    options.min_delay
                } else {
                    (self.delay * 2).clamp(options.min_delay, options.max_delay)
                };
            }
            // Another instance runs it: wait for its lease to be released or expire.
            Ok(None) => {
                self.store_failures = 0;
                self.delay = options.max_delay;
            }
            Err(ProjectionError::Store { .. })
                if self.store_failures < options.max_store_failures =>
            {
                self.store_failures += 1;
                self.delay = options.max_delay;
            }
            Err(error) => return ControlFlow::Break(Err(error)),
        }
        ControlFlow::Continue(self.delay)
    }

    /// After a wake-up (new events were announced): poll again soon.
    pub(super) fn woken(&mut self) {
        self.delay = self.options.min_delay;
    }
}
