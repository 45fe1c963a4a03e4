//! [`Publisher`]: follows an event store's global log and publishes every event to a
//! JetStream stream, exactly once, in global order.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use async_nats::HeaderMap;
use async_nats::jetstream::context::{
    CreateStreamErrorKind, GetStreamErrorKind, PublishAckFuture, PublishErrorKind,
};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config, RawMessageErrorKind, StorageType, Stream};
use async_nats::jetstream::{self, ErrorCode};
use bytes::Bytes;
use es_core::{AsyncCheckpointStore, AsyncEventStore, Lease, StopHandle, StoreError, Uuid, Waited};
use tokio::sync::watch;

use crate::error::PublishError;
use crate::wire;

/// The default publisher name: its checkpoint and lease key.
pub const DEFAULT_PUBLISHER_NAME: &str = "es-nats-publisher";

/// The most acks in flight the JetStream client allows by default
/// (`ContextBuilder::max_ack_inflight`): a larger ack window would wait for itself.
const CLIENT_MAX_ACK_INFLIGHT: usize = 5_000;
/// How long a stopped [`Publisher::run`] lets the batch in progress finish.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long one send may wait for the client's in-flight permit while this publisher
/// awaits no ack (see `publish_events`).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a send waits for a permit before the publisher settles its oldest ack.
const PERMIT_WAIT: Duration = Duration::from_millis(200);
/// How often [`Publisher::catch_up`] re-reads the stream's end when it moved.
const RESYNC_ATTEMPTS: u32 = 3;

/// How a [`Publisher`] publishes: names, subjects, batching and polling.
///
/// Build it with struct update syntax:
/// `PublisherOptions { stream_name: "EVENTS".into(), ..Default::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherOptions {
    /// The key of the publisher's checkpoint and lease in the checkpoint store (default
    /// `es-nats-publisher`). Publishers of different stores or streams need different names.
    pub name: String,
    /// The id this instance takes the lease under (default `es-nats-publisher-` and a
    /// random UUID). Give an instance that restarts in place a stable owner, and it takes
    /// its lease back at once instead of waiting for it to expire.
    pub owner: String,
    /// The subject prefix (default `es`); see [`wire`].
    pub prefix: String,
    /// The partition count of the subjects (default 16, at least 1); see
    /// [`wire::partition_of`]. Changing it moves streams between partitions.
    pub partitions: u32,
    /// The JetStream stream (default `ES_EVENTS`). It must hold this log's events only:
    /// the publisher resumes after the last message in it.
    pub stream_name: String,
    /// Create the stream (subjects `{prefix}.>`, file storage, `duplicate_window`) when it
    /// does not exist (default true). When false, a missing stream is
    /// [`PublishError::StreamMissing`].
    pub create_stream: bool,
    /// The dedupe window of a stream the publisher creates (default 2 minutes).
    pub duplicate_window: Duration,
    /// Events read from the store per batch; the checkpoint is saved after each (default
    /// 1000).
    pub batch_size: usize,
    /// Publishes sent before their acks are awaited (default 1000, at most 5000: the
    /// client's default `max_ack_inflight`). With a context built with a smaller
    /// `max_ack_inflight`, the publisher notices that its sends wait for permits and keeps
    /// the window to what the context allows (after a pause of 200 ms, once).
    pub ack_window: usize,
    /// How long the lease lasts unless renewed (default 30 s); a crashed instance blocks
    /// others for up to this long, unless it restarts with the same `owner`.
    pub lease_ttl: Duration,
    /// The pause of [`Publisher::run`] after a poll that published events (default 1 ms).
    pub min_delay: Duration,
    /// The longest pause between polls: an idle publisher doubles its pause up to this
    /// (default 250 ms).
    pub max_delay: Duration,
    /// The longest pause of [`Publisher::run`] between retries after a transient failure
    /// (default 2 s); the pause doubles from 50 ms up to this.
    pub max_retry_delay: Duration,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        Self {
            name: DEFAULT_PUBLISHER_NAME.to_owned(),
            owner: format!("es-nats-publisher-{}", Uuid::new_v4()),
            prefix: wire::DEFAULT_PREFIX.to_owned(),
            partitions: wire::DEFAULT_PARTITIONS,
            stream_name: wire::DEFAULT_STREAM.to_owned(),
            create_stream: true,
            duplicate_window: Duration::from_secs(120),
            batch_size: 1000,
            ack_window: 1000,
            lease_ttl: Duration::from_secs(30),
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(250),
            max_retry_delay: Duration::from_secs(2),
        }
    }
}

impl PublisherOptions {
    fn validate(&self) -> Result<(), PublishError> {
        let problem = |problem: String| Err(PublishError::Options { problem });
        if self.name.is_empty() {
            return problem(
                "`name` is empty; give the publisher a name (its checkpoint key)".into(),
            );
        }
        if self.owner.is_empty() {
            return problem("`owner` is empty; leave the default or give a stable id".into());
        }
        if let Err(error) = wire::validate_prefix(&self.prefix) {
            return problem(error.to_string());
        }
        if self.partitions == 0 {
            return problem("`partitions` is 0; use at least 1 (the default is 16)".into());
        }
        if self.stream_name.is_empty()
            || self.stream_name.chars().any(|c| {
                c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\')
            })
        {
            return problem(format!(
                "stream name `{}` is not a JetStream stream name; use letters, digits, `-` and `_`, such as `ES_EVENTS`",
                self.stream_name
            ));
        }
        if self.batch_size == 0 {
            return problem("`batch_size` is 0; use at least 1 (the default is 1000)".into());
        }
        if self.ack_window == 0 || self.ack_window > CLIENT_MAX_ACK_INFLIGHT {
            return problem(format!(
                "`ack_window` is {}; use 1 to {CLIENT_MAX_ACK_INFLIGHT} (the JetStream client's acks in flight; the default is 1000)",
                self.ack_window
            ));
        }
        if self.lease_ttl.is_zero() {
            return problem("`lease_ttl` is zero; use a few times the time one batch takes (the default is 30 s)".into());
        }
        if self.min_delay > self.max_delay {
            return problem(format!(
                "`min_delay` ({:?}) is longer than `max_delay` ({:?})",
                self.min_delay, self.max_delay
            ));
        }
        Ok(())
    }
}

/// What a [`Publisher::catch_up`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Published {
    /// Events published (acked by the stream) in this call.
    pub published: u64,
    /// Of those, how many the stream already held (dropped as duplicates by their
    /// `Nats-Msg-Id`).
    pub duplicates: u64,
    /// The global position of the last event in the stream now (0: none).
    pub position: u64,
}

/// What a [`Publisher`] reports while it runs; see [`Publisher::status`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublisherStatus {
    /// The global position of the last event known to be in the stream.
    pub position: u64,
    /// Events this publisher has published since it was built.
    pub published: u64,
    /// Transient failures [`Publisher::run`] has ridden out since the publisher was built.
    pub failures: u64,
    /// The last transient failure [`Publisher::run`] is riding out; `None` once a poll
    /// succeeds again.
    pub last_error: Option<PublishError>,
}

/// Where the stream ends: the last event in it and its last sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    /// The global position of the last event in the stream (or checkpointed).
    position: u64,
    /// The stream's last sequence (each publish expects it, so none lands out of order).
    last_sequence: u64,
}

/// One event read from the log, ready to send.
struct Outgoing {
    position: u64,
    event_id: Uuid,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
}

/// What the acks of a batch said so far.
struct Acked {
    /// The global position of the last event acked.
    position: u64,
    /// The stream sequence of the last event acked.
    last_sequence: u64,
    published: u64,
    duplicates: u64,
    /// A duplicate was acked: the stream's end must be read again.
    resync: bool,
}

/// Publishes the global log of an [`AsyncEventStore`] to a NATS JetStream stream, one
/// message per event in the [`wire`] format, exactly once and in global order.
///
/// * [`catch_up`](Publisher::catch_up) publishes up to the end of the log and returns.
/// * [`run`](Publisher::run) keeps following the log until stopped, riding out NATS and
///   store failures.
/// * [`lag`](Publisher::lag) tells how far the stream is behind the log.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use es_nats::{Publisher, PublisherOptions, StopHandle};
/// use es_sqlite::AsyncSqliteStore;
///
/// let store = AsyncSqliteStore::open("bank.db").await?;
/// let js = async_nats::jetstream::new(async_nats::connect("nats://127.0.0.1:4222").await?);
/// // The store keeps the events, and the publisher's checkpoint and lease.
/// let mut publisher =
///     Publisher::new(js, store.clone(), store, PublisherOptions::default())?;
/// println!("{} events to publish", publisher.lag().await?);
/// let stop = StopHandle::new(); // `stop.stop()` from another task (a signal handler) ends the run
/// publisher.run(&stop).await?;
/// # Ok(()) }
/// ```
///
/// # Exactly once
///
/// The publisher reads the log in batches of [`batch_size`](PublisherOptions::batch_size)
/// after its resume position, publishes each event with `Nats-Msg-Id` = its event id,
/// keeping at most [`ack_window`](PublisherOptions::ack_window) publishes in flight (the
/// oldest ack is awaited and checked before the next event is sent), and after every ack
/// of a batch saves its checkpoint (the last acked global position) in the checkpoint
/// store. The next batch is read while the acks of the current one come in.
///
/// The stream itself is the source of truth: the resume position, at start and after any
/// failure, is the larger of the checkpoint and the `Es-Global-Position` header of the last
/// message in the stream. A crash between the acks and the checkpoint therefore
/// republishes nothing, however long ago it happened (the dedupe window by `Nats-Msg-Id`
/// only matters when two instances race). Every publish also carries
/// `Nats-Expected-Stream` and `Nats-Expected-Last-Sequence`, so the stream takes an event
/// only right after the one before it: a publish lost in a reconnect cannot leave a gap
/// that a later event papers over (the later ones are refused, and the publisher resumes
/// from where the stream really ends). Hence the stream must hold this log's events only,
/// published by this publisher only.
///
/// It never reads ahead of what [`visit_all`](AsyncEventStore::visit_all) returns: the
/// stores hand out only a safe prefix of the log (PostgreSQL stops below transactions still
/// in flight), so an event committed late is never skipped.
///
/// If the stream's last message was deleted (or is not an es event), the checkpoint alone
/// gives the resume position. Messages the server acked and then lost (its disk, not
/// its process, failed before it synced them) are not published again: the checkpoint
/// is past them.
///
/// # One instance at a time
///
/// The publisher takes a lease named [`name`](PublisherOptions::name) in the checkpoint
/// store, renews it while running and gives it up when done. A second instance's
/// `catch_up` fails with [`PublishError::Locked`]; its `run` waits until the lease is free.
///
/// # Failures
///
/// Transient failures ([`PublishError::is_transient`]: a lost connection, a timeout, a
/// busy store) end a `catch_up` and are retried by `run` with backoff. async-nats
/// reconnects by itself and sends what was published meanwhile once it is back, so a
/// short outage only delays acks; one longer than the JetStream context's timeout (5 s
/// unless set with `ContextBuilder::timeout`) fails them, and the publisher resumes from
/// where the stream ends. Permanent ones (a missing stream it may not create, a stream
/// that does not take the subjects, an event larger than the server accepts) end both,
/// naming what to fix.
pub struct Publisher<S, C> {
    js: jetstream::Context,
    store: S,
    checkpoints: C,
    options: PublisherOptions,
    stream: Option<Stream>,
    cursor: Option<Cursor>,
    lease_until: Option<SystemTime>,
    published: u64,
    status: watch::Sender<PublisherStatus>,
    /// The publishes kept in flight: `ack_window`, or less once the JetStream context
    /// turned out to allow fewer (see `publish_events`).
    window: AtomicUsize,
}

impl<S, C> std::fmt::Debug for Publisher<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("options", &self.options)
            .field("cursor", &self.cursor)
            .field("lease_until", &self.lease_until)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncEventStore, C: AsyncCheckpointStore> Publisher<S, C> {
    /// A publisher of `store`'s log to JetStream (`js`), keeping its checkpoint and lease
    /// in `checkpoints` (often the same store, cloned or behind an `Arc`). Fails with
    /// [`PublishError::Options`] if `options` cannot work; connects to nothing yet.
    pub fn new(
        js: jetstream::Context,
        store: S,
        checkpoints: C,
        options: PublisherOptions,
    ) -> Result<Self, PublishError> {
        options.validate()?;
        let options_window = options.ack_window;
        let (status, _) = watch::channel(PublisherStatus::default());
        Ok(Self {
            js,
            store,
            checkpoints,
            options,
            stream: None,
            cursor: None,
            lease_until: None,
            published: 0,
            status,
            window: AtomicUsize::new(options_window),
        })
    }

    /// The options.
    pub fn options(&self) -> &PublisherOptions {
        &self.options
    }

    /// The event store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Progress reports: the position reached, the events published and the failure
    /// being ridden out, updated after every batch and failure.
    pub fn status(&self) -> watch::Receiver<PublisherStatus> {
        self.status.subscribe()
    }

    /// Publishes every event after the resume position up to the end of the log, then
    /// returns what it did. Takes the lease for the duration ([`PublishError::Locked`] if
    /// another instance holds it). Creates the stream if it is missing and
    /// [`create_stream`](PublisherOptions::create_stream) is on.
    pub async fn catch_up(&mut self) -> Result<Published, PublishError> {
        let held = self.lease_until.is_some();
        if let Err((owner, until)) = self.ensure_lease().await? {
            return Err(PublishError::Locked {
                name: self.options.name.clone(),
                owner,
                until,
            });
        }
        let mut resyncs = 0;
        let result = loop {
            match Box::pin(self.catch_up_inner()).await {
                Err(PublishError::StreamMoved { .. }) if resyncs < RESYNC_ATTEMPTS => {
                    resyncs += 1;
                    self.forget();
                }
                other => break other,
            }
        };
        if result.is_err() {
            self.forget();
        }
        if !held {
            self.release().await;
        }
        result
    }

    /// Keeps publishing new events until `stop` is stopped: catches up, then polls the log,
    /// pausing between polls that found nothing for twice as long each time, from
    /// [`min_delay`](PublisherOptions::min_delay) up to
    /// [`max_delay`](PublisherOptions::max_delay). Returns the number of events published.
    ///
    /// Transient failures are retried (pausing up to
    /// [`max_retry_delay`](PublisherOptions::max_retry_delay)), each time re-deriving the
    /// resume position from the stream, since acks may have been lost; they are reported in
    /// [`status`](Publisher::status). While another instance holds the lease, it waits.
    /// A permanent failure ends the run with the error. Stopped, it gives up the lease.
    pub async fn run(&mut self, stop: &StopHandle) -> Result<u64, PublishError> {
        let mut published = 0;
        let mut delay = self.options.min_delay;
        let mut failures = 0u32;
        let result = loop {
            if stop.is_stopped() {
                break Ok(published);
            }
            let outcome = {
                let step = Box::pin(self.step());
                tokio::pin!(step);
                tokio::select! {
                    biased;
                    outcome = &mut step => Some(outcome),
                    () = stop.stopped() => tokio::time::timeout(STOP_GRACE, &mut step).await.ok(),
                }
            };
            let Some(outcome) = outcome else {
                // Stopped in the middle of a batch that did not finish in time: what was
                // acked is in the stream, and the next start resumes after it.
                self.forget();
                break Ok(published);
            };
            match outcome {
                Ok(Some(done)) => {
                    failures = 0;
                    published += done.published;
                    self.status.send_modify(|status| status.last_error = None);
                    delay = if done.published > 0 {
                        self.options.min_delay
                    } else {
                        delay
                            .saturating_mul(2)
                            .clamp(self.options.min_delay, self.options.max_delay)
                    };
                }
                // Another instance publishes: wait for its lease to be released or expire.
                Ok(None) => delay = self.options.max_delay,
                Err(error) if error.is_transient() => {
                    self.forget();
                    failures = failures.saturating_add(1);
                    delay = retry_delay(failures, self.options.max_retry_delay);
                    self.status.send_modify(|status| {
                        status.failures += 1;
                        status.last_error = Some(error);
                    });
                }
                Err(error) => {
                    self.forget();
                    break Err(error);
                }
            }
            // A wake-up (new events announced, e.g. by `es_postgres`'s listener) ends
            // the pause early.
            if stop.wait_async(delay).await == Waited::Stopped {
                break Ok(published);
            }
        };
        self.release().await;
        result
    }

    /// The global position of the last event in the stream: the resume position (see the
    /// [type documentation](Publisher)), read now from the checkpoint store and the stream
    /// (0 if neither has one). Works from any instance, running or not.
    pub async fn position(&self) -> Result<u64, PublishError> {
        let stream = match &self.stream {
            Some(stream) => Some(stream.clone()),
            None => self.find_stream().await?,
        };
        Ok(self.derive(stream.as_ref()).await?.position)
    }

    /// How many positions of the log the stream is behind: the log's last global position
    /// minus [`position`](Publisher::position) (event counts, unless the store leaves gaps
    /// in its positions, as PostgreSQL's sequences may).
    pub async fn lag(&self) -> Result<u64, PublishError> {
        let position = self.position().await?;
        let head = self
            .store
            .head_position()
            .await
            .map_err(|e| store_error("read the log's end", position, e))?;
        Ok(head.saturating_sub(position))
    }

    /// One poll of `run`: the lease, then a catch-up; `None` when another instance holds
    /// the lease.
    async fn step(&mut self) -> Result<Option<Published>, PublishError> {
        match self.ensure_lease().await? {
            Ok(()) => self.catch_up_inner().await.map(Some),
            Err(_) => Ok(None),
        }
    }

    async fn catch_up_inner(&mut self) -> Result<Published, PublishError> {
        let mut done = Published::default();
        // The batch after the one being published, read while its acks come in.
        let mut ahead: Option<(u64, Vec<Outgoing>)> = None;
        loop {
            if self.stream.is_none() {
                self.stream = Some(self.ensure_stream().await?);
            }
            let cursor = match self.cursor {
                Some(cursor) => cursor,
                None => {
                    let cursor = self.derive(self.stream.as_ref()).await?;
                    self.cursor = Some(cursor);
                    cursor
                }
            };
            done.position = cursor.position;
            let events = match ahead.take() {
                // Read after exactly the position the stream now ends at.
                Some((after, events)) if after == cursor.position => events,
                _ => self.read_batch(cursor.position).await?,
            };
            let read = events.len();
            let full = read >= self.options.batch_size;
            let acked = match events.last() {
                None => None,
                Some(last) if full => {
                    // Never ahead of what the store returned: the next batch starts right
                    // after this batch's last event.
                    let after = last.position;
                    let (acked, next) =
                        tokio::join!(self.publish_events(cursor, events), self.read_batch(after));
                    // A failed read-ahead is read again (and reported) in the next round.
                    ahead = next.ok().map(|events| (after, events));
                    Some(acked?)
                }
                Some(_) => Some(self.publish_events(cursor, events).await?),
            };
            if let Some(acked) = acked {
                done.published += acked.published;
                done.duplicates += acked.duplicates;
                done.position = acked.position;
                self.commit(acked).await?;
            }
            if !full {
                if self.cursor.is_none() {
                    done.position = self.derive(self.stream.as_ref()).await?.position;
                }
                return Ok(done);
            }
            // Long catch-ups keep the lease: renew it when half of it is gone.
            if let Err((owner, until)) = self.ensure_lease().await? {
                return Err(PublishError::Locked {
                    name: self.options.name.clone(),
                    owner,
                    until,
                });
            }
        }
    }

    /// Up to a batch of events after global position `after`, ready to send.
    async fn read_batch(&self, after: u64) -> Result<Vec<Outgoing>, PublishError> {
        let mut events = Vec::with_capacity(self.options.batch_size.min(4096));
        let (prefix, partitions) = (self.options.prefix.as_str(), self.options.partitions);
        self.store
            .visit_all(
                after.saturating_add(1),
                self.options.batch_size,
                &mut |record| {
                    events.push(Outgoing {
                        position: record.global_position,
                        event_id: record.event_id,
                        subject: wire::subject(prefix, partitions, record),
                        headers: wire::headers_of(record),
                        payload: Bytes::copy_from_slice(record.payload.as_bytes()),
                    });
                    ControlFlow::Continue(())
                },
            )
            .await
            .map_err(|e| store_error("read the log", after, e))?;
        Ok(events)
    }

    /// Publishes `events` (which follow `cursor`) and awaits their acks.
    async fn publish_events(
        &self,
        cursor: Cursor,
        events: Vec<Outgoing>,
    ) -> Result<Acked, PublishError> {
        let stream_name = self.options.stream_name.as_str();
        let mut window = self.window.load(Ordering::Relaxed);
        let mut acked = Acked {
            position: cursor.position,
            last_sequence: cursor.last_sequence,
            published: 0,
            duplicates: 0,
            resync: false,
        };
        // A sliding window: at most `ack_window` publishes in flight; the oldest ack is
        // awaited before the next event is sent, so the pipeline never drains.
        let mut pending = VecDeque::with_capacity(window);
        // (`window` may shrink below `ack_window` to what the JetStream context allows.)
        for (offset, event) in events.into_iter().enumerate() {
            if pending.len() >= window {
                if let Some(oldest) = pending.pop_front() {
                    self.settle(oldest, &mut acked).await?;
                }
            }
            let size = event.payload.len();
            let expected_last = cursor.last_sequence.saturating_add(offset as u64);
            let message = || {
                PublishMessage::build()
                    .payload(event.payload.clone())
                    .headers(event.headers.clone())
                    .expected_stream(stream_name)
                    // Each event right after the one before: the stream takes none out of
                    // order.
                    .expected_last_sequence(expected_last)
            };
            // The client waits for one of its in-flight permits before it sends. A context
            // that allows fewer acks in flight than the window would stall here with every
            // permit held by `pending`: after a short wait, settle the oldest ack (which
            // frees its permit) and keep the window to what the context allows. With
            // nothing pending (other publishers hold the permits), give up after
            // `SEND_TIMEOUT` with an error that says so. A send given up is not sent (the
            // client's queue is cancel-safe), so trying again cannot double it.
            let mut waited = Duration::ZERO;
            let sent = loop {
                match tokio::time::timeout(
                    PERMIT_WAIT,
                    self.js.send_publish(event.subject.clone(), message()),
                )
                .await
                {
                    Ok(sent) => break sent,
                    Err(_) => match pending.pop_front() {
                        Some(oldest) => {
                            window = pending.len().max(1);
                            self.window.store(window, Ordering::Relaxed);
                            self.settle(oldest, &mut acked).await?;
                        }
                        None if waited >= SEND_TIMEOUT => {
                            return Err(PublishError::Nats {
                                during: format!(
                                    "sending event {} (global position {})",
                                    event.event_id, event.position
                                ),
                                cause: format!(
                                    "the client gave no send permit for {SEND_TIMEOUT:?} although this publisher awaits no ack: other publishers on the same JetStream context hold its `max_ack_inflight` permits; give this publisher a context of its own"
                                ),
                                position: acked.position,
                            });
                        }
                        None => waited += PERMIT_WAIT,
                    },
                }
            };
            let ack = match sent {
                Ok(ack) => ack,
                Err(error) => {
                    let error =
                        send_error(error, event.event_id, event.position, size, acked.position);
                    if !error.is_transient() {
                        // This event can never be sent: let what went before it land, so
                        // that the stream ends right before it.
                        while let Some(oldest) = pending.pop_front() {
                            if self.settle(oldest, &mut acked).await.is_err() {
                                break;
                            }
                        }
                    }
                    return Err(error);
                }
            };
            pending.push_back((event.position, event.event_id, ack));
        }
        while let Some(oldest) = pending.pop_front() {
            self.settle(oldest, &mut acked).await?;
        }
        Ok(acked)
    }

    /// Records what a batch's acks said: where the stream ends, the status, and the
    /// checkpoint.
    async fn commit(&mut self, acked: Acked) -> Result<(), PublishError> {
        let Acked {
            position,
            last_sequence,
            published,
            resync,
            ..
        } = acked;
        self.cursor = (!resync).then_some(Cursor {
            position,
            last_sequence,
        });
        self.published += published;
        let total = self.published;
        self.status.send_modify(|status| {
            status.position = position;
            status.published = total;
        });
        // Every event of the batch is in the stream: the checkpoint only saves re-reading
        // the stream's last message, so a failure here loses nothing.
        self.checkpoints
            .save_checkpoint(&self.options.name, position)
            .await
            .map_err(|e| store_error("saved its checkpoint", position, e))
    }

    /// Awaits the ack of one publish and checks it.
    async fn settle(
        &self,
        (event_position, event_id, ack): (u64, Uuid, PublishAckFuture),
        acked: &mut Acked,
    ) -> Result<(), PublishError> {
        let stream_name = self.options.stream_name.as_str();
        let ack = ack.await.map_err(|e| {
            self.ack_error(
                e,
                event_id,
                event_position,
                acked.position,
                acked.last_sequence,
            )
        })?;
        if ack.stream != stream_name {
            return Err(PublishError::WrongStream {
                expected: stream_name.to_owned(),
                actual: ack.stream,
                subjects: wire::all_filter(&self.options.prefix),
            });
        }
        if ack.duplicate {
            // Another instance published it (a race after a lease expired): the stream's
            // end is no longer what this instance expects.
            acked.duplicates += 1;
            acked.resync = true;
        } else {
            acked.last_sequence = ack.sequence;
        }
        acked.published += 1;
        acked.position = event_position;
        Ok(())
    }

    /// The resume position and the stream's last sequence, read now: the larger of the
    /// checkpoint and the last message's `Es-Global-Position`.
    async fn derive(&self, stream: Option<&Stream>) -> Result<Cursor, PublishError> {
        let checkpoint = self
            .checkpoints
            .load_checkpoint(&self.options.name)
            .await
            .map_err(|e| store_error("loaded its checkpoint", self.known_position(), e))?;
        let Some(stream) = stream else {
            return Ok(Cursor {
                position: checkpoint,
                last_sequence: 0,
            });
        };
        let nats = |during: &str, cause: String| PublishError::Nats {
            during: format!("{during} of stream `{}`", self.options.stream_name),
            cause,
            position: checkpoint,
        };
        let info = stream
            .get_info()
            .await
            .map_err(|e| nats("reading the state", e.to_string()))?;
        let last_sequence = info.state.last_sequence;
        // A stream that never held a message (sequence numbers survive deletes and
        // purges) cannot be behind a checkpoint unless it was re-created.
        if last_sequence == 0 && checkpoint > 0 {
            return Err(PublishError::StreamReset {
                stream: self.options.stream_name.clone(),
                name: self.options.name.clone(),
                checkpoint,
            });
        }
        let mut in_stream = 0;
        if info.state.messages > 0 && last_sequence > 0 {
            match stream.get_raw_message(last_sequence).await {
                Ok(message) => {
                    in_stream = message
                        .headers
                        .get(wire::GLOBAL_POSITION)
                        .and_then(|value| value.as_str().parse().ok())
                        .unwrap_or(0);
                }
                // The last message was deleted: the checkpoint alone counts.
                Err(error) if is_no_message(error.kind()) => {}
                Err(error) => return Err(nats("reading the last message", error.to_string())),
            }
        }
        Ok(Cursor {
            position: checkpoint.max(in_stream),
            last_sequence,
        })
    }

    /// The last position known to be in the stream (0 before the first batch): what the
    /// messages of errors that happen before the resume position is read name.
    fn known_position(&self) -> u64 {
        self.cursor.map_or(0, |cursor| cursor.position)
    }

    /// The stream, if it exists (no creation): for [`position`](Publisher::position).
    async fn find_stream(&self) -> Result<Option<Stream>, PublishError> {
        match self.js.get_stream(&self.options.stream_name).await {
            Ok(stream) => Ok(Some(stream)),
            Err(error) => match error.kind() {
                GetStreamErrorKind::JetStream(js)
                    if js.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(PublishError::Nats {
                    during: format!("looking up stream `{}`", self.options.stream_name),
                    cause: error.to_string(),
                    position: self.known_position(),
                }),
            },
        }
    }

    /// The stream, created if missing and allowed; checks that it takes the subjects.
    async fn ensure_stream(&self) -> Result<Stream, PublishError> {
        let name = &self.options.stream_name;
        let subjects = wire::all_filter(&self.options.prefix);
        let position = self.cursor.map_or(0, |cursor| cursor.position);
        let stream = match self.find_stream().await? {
            Some(stream) => stream,
            None if !self.options.create_stream => {
                return Err(PublishError::StreamMissing {
                    stream: name.clone(),
                    subjects,
                });
            }
            None => {
                let config = Config {
                    name: name.clone(),
                    subjects: vec![subjects.clone()],
                    storage: StorageType::File,
                    duplicate_window: self.options.duplicate_window,
                    allow_direct: true,
                    ..Default::default()
                };
                match self.js.create_stream(config).await {
                    Ok(stream) => stream,
                    Err(error) => match error.kind() {
                        // Created meanwhile by someone else: use it.
                        CreateStreamErrorKind::JetStream(js)
                            if js.error_code() == ErrorCode::STREAM_NAME_EXIST =>
                        {
                            self.find_stream()
                                .await?
                                .ok_or_else(|| PublishError::Nats {
                                    during: format!("looking up stream `{name}` after creating it"),
                                    cause: "it is gone again".to_owned(),
                                    position,
                                })?
                        }
                        CreateStreamErrorKind::JetStream(_)
                        | CreateStreamErrorKind::EmptyStreamName
                        | CreateStreamErrorKind::InvalidStreamName
                        | CreateStreamErrorKind::DomainAndExternalSet => {
                            return Err(PublishError::StreamCreate {
                                stream: name.clone(),
                                subjects,
                                cause: error.to_string(),
                            });
                        }
                        _ => {
                            return Err(PublishError::Nats {
                                during: format!("creating stream `{name}`"),
                                cause: error.to_string(),
                                position,
                            });
                        }
                    },
                }
            }
        };
        let configured = &stream.cached_info().config.subjects;
        if !configured.iter().any(|pattern| covers(pattern, &subjects)) {
            return Err(PublishError::StreamSubjects {
                stream: name.clone(),
                subjects,
                configured: configured.clone(),
            });
        }
        Ok(stream)
    }

    fn ack_error(
        &self,
        error: async_nats::jetstream::context::PublishError,
        event_id: Uuid,
        event_position: u64,
        position: u64,
        last_sequence: u64,
    ) -> PublishError {
        let stream = self.options.stream_name.clone();
        let js_code = std::error::Error::source(&error)
            .and_then(|source| source.downcast_ref::<jetstream::Error>())
            .map(jetstream::Error::error_code);
        match error.kind() {
            PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId => {
                PublishError::StreamMoved {
                    stream,
                    expected: last_sequence,
                    cause: error.to_string(),
                }
            }
            PublishErrorKind::StreamNotFound => PublishError::Nats {
                during: format!(
                    "publishing event {event_id} (global position {event_position}): no stream took subject `{}.>`",
                    self.options.prefix
                ),
                cause: error.to_string(),
                position,
            },
            PublishErrorKind::MaxPayloadExceeded => PublishError::TooLarge {
                event_id: event_id.to_string(),
                position: event_position,
                cause: error.to_string(),
            },
            // The server is short of something for now (a cluster without quorum, a full
            // disk, a failed write): retried like a lost connection.
            PublishErrorKind::Other
                if js_code.is_some_and(|code| {
                    [
                        ErrorCode::CLUSTER_NOT_AVAILABLE,
                        ErrorCode::INSUFFICIENT_RESOURCES,
                        ErrorCode::STREAM_STORE_FAILED,
                    ]
                    .contains(&code)
                }) =>
            {
                PublishError::Nats {
                    during: format!(
                        "storing event {event_id} (global position {event_position}) in stream `{stream}`"
                    ),
                    cause: error.to_string(),
                    position,
                }
            }
            PublishErrorKind::Other if js_code.is_some() => PublishError::Refused {
                stream,
                event_id: event_id.to_string(),
                position: event_position,
                cause: error.to_string(),
            },
            _ => PublishError::Nats {
                during: format!(
                    "awaiting the ack of event {event_id} (global position {event_position})"
                ),
                cause: error.to_string(),
                position,
            },
        }
    }

    /// Takes or renews the lease when less than half of it is left; `Err` with the holder
    /// if another instance holds it.
    #[allow(clippy::type_complexity)]
    async fn ensure_lease(&mut self) -> Result<Result<(), (String, SystemTime)>, PublishError> {
        let now = SystemTime::now();
        if let Some(until) = self.lease_until {
            // Far from expiry: nothing to do (a TTL too long for the clock renews each time).
            if now
                .checked_add(self.options.lease_ttl / 2)
                .is_some_and(|half| until > half)
            {
                return Ok(Ok(()));
            }
        }
        let lease = self
            .checkpoints
            .acquire_lease(
                &self.options.name,
                &self.options.owner,
                self.options.lease_ttl,
            )
            .await
            .map_err(|e| {
                store_error(
                    "took its lease",
                    self.cursor.map_or(0, |cursor| cursor.position),
                    e,
                )
            })?;
        match lease {
            Lease::Acquired { until } => {
                self.lease_until = Some(until);
                Ok(Ok(()))
            }
            Lease::HeldBy { owner, until } => {
                self.lease_until = None;
                self.forget();
                Ok(Err((owner, until)))
            }
        }
    }

    /// Gives up the lease, if held. A failure only delays other instances until it
    /// expires, so it is not reported.
    async fn release(&mut self) {
        if self.lease_until.take().is_some() {
            let _ = self
                .checkpoints
                .release_lease(&self.options.name, &self.options.owner)
                .await;
        }
    }

    /// Forgets where the stream ends (and the stream handle), so that the next batch reads
    /// both again: after any failure, acks may have been lost.
    fn forget(&mut self) {
        self.cursor = None;
        self.stream = None;
    }
}

/// Whether a stream subject `pattern` matches every subject under `subjects` (`{prefix}.>`).
fn covers(pattern: &str, subjects: &str) -> bool {
    let mut ours = subjects.split('.');
    for token in pattern.split('.') {
        match (token, ours.next()) {
            (">", Some(_)) => return true,
            (_, Some(">")) | (_, None) => return false,
            ("*", Some(_)) => {}
            (token, Some(our)) if token == our => {}
            _ => return false,
        }
    }
    false
}

fn is_no_message(kind: RawMessageErrorKind) -> bool {
    match kind {
        RawMessageErrorKind::NoMessageFound => true,
        RawMessageErrorKind::JetStream(error) => error.error_code() == ErrorCode::NO_MESSAGE_FOUND,
        _ => false,
    }
}

fn send_error(
    error: async_nats::jetstream::context::PublishError,
    event_id: Uuid,
    event_position: u64,
    size: usize,
    position: u64,
) -> PublishError {
    match error.kind() {
        PublishErrorKind::MaxPayloadExceeded => PublishError::TooLarge {
            event_id: event_id.to_string(),
            position: event_position,
            cause: format!("{error} (payload {size} bytes)"),
        },
        _ => PublishError::Nats {
            during: format!("sending event {event_id} (global position {event_position})"),
            cause: error.to_string(),
            position,
        },
    }
}

fn store_error(during: &str, position: u64, error: StoreError) -> PublishError {
    let (during, cause) = (during.to_owned(), error.to_string());
    match error {
        StoreError::Backend(_) => PublishError::Store {
            during,
            cause,
            position,
        },
        _ => PublishError::StoreRefused {
            during,
            cause,
            position,
        },
    }
}

/// 50 ms doubled per failure in a row, up to `max`.
fn retry_delay(failures: u32, max: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    (Duration::from_millis(50) * (1u32 << exponent)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_subjects_cover_the_prefix() {
        assert!(covers("es.>", "es.>"));
        assert!(covers(">", "es.>"));
        assert!(covers("*.>", "prod.es.>"));
        assert!(covers("prod.>", "prod.es.>"));
        assert!(!covers("es.*", "es.>"));
        assert!(!covers("es.1.>", "es.>"));
        assert!(!covers("other.>", "es.>"));
        assert!(!covers("es", "es.>"));
        assert!(!covers("prod.es.x.>", "prod.es.>"));
    }

    #[test]
    fn options_are_validated() {
        PublisherOptions::default()
            .validate()
            .expect("defaults work");
        let bad = [
            PublisherOptions {
                partitions: 0,
                ..Default::default()
            },
            PublisherOptions {
                prefix: "es.*".into(),
                ..Default::default()
            },
            PublisherOptions {
                stream_name: "a.b".into(),
                ..Default::default()
            },
            PublisherOptions {
                batch_size: 0,
                ..Default::default()
            },
            PublisherOptions {
                ack_window: 0,
                ..Default::default()
            },
            PublisherOptions {
                ack_window: 5001,
                ..Default::default()
            },
            PublisherOptions {
                name: String::new(),
                ..Default::default()
            },
            PublisherOptions {
                min_delay: Duration::from_secs(2),
                max_delay: Duration::from_secs(1),
                ..Default::default()
            },
        ];
        for options in bad {
            let error = options.validate().expect_err("invalid");
            assert!(matches!(error, PublishError::Options { .. }), "{error}");
        }
    }

    #[test]
    fn retry_delays_grow_to_the_cap() {
        let max = Duration::from_secs(2);
        assert_eq!(retry_delay(1, max), Duration::from_millis(50));
        assert_eq!(retry_delay(2, max), Duration::from_millis(100));
        assert_eq!(retry_delay(10, max), max);
        assert_eq!(retry_delay(u32::MAX, max), max);
    }
}
