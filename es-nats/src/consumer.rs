//! [`JetStreamProjector`]: runs a read model on another machine, fed by JetStream durable
//! pull consumers over the events a [`Publisher`](crate::Publisher) published.
//!
//! See [`JetStreamProjector`] for partitions, groups, order, redelivery and failures.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, FromConsumer, PullConsumer, pull};
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::ConsumerErrorKind;
use async_nats::jetstream::{self, ErrorCode, Message};
use es_core::{
    ApplyError, AsyncCheckpointStore, DecodeError, ReadModel, StopHandle, StoreError, StreamKey,
};
use futures_util::{FutureExt, StreamExt};

use crate::error::WireError;
use crate::wire::{self, WireEvent};

/// How many messages a projector applies (and commits) at a time by default.
pub const DEFAULT_CONSUMER_BATCH: usize = 256;

/// How many times in a row one call starts a partition's session again after messages out
/// of order before it gives up.
const MAX_RESTARTS: u32 = 10;

/// The pause before a [`run`](JetStreamProjector::run) reopens a consumer after a NATS
/// failure, or looks again for a stream that does not exist yet.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The longest such pause: consecutive failures double it up to this.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(2);

/// How long each pull request of a [`run`](JetStreamProjector::run)'s message stream waits
/// for messages before the client sends the next one.
const PULL_EXPIRY: Duration = Duration::from_secs(30);

/// How often the server sends an idle heartbeat on a pull request that has no messages for
/// it: two missed heartbeats (10 s) end the message stream, and the partition's session
/// starts again. Below half of [`PULL_EXPIRY`], as the server requires.
const IDLE_HEARTBEAT: Duration = Duration::from_secs(5);

/// Where a [`JetStreamProjector`] reads and which share of the work it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerOptions {
    /// The JetStream stream the publisher writes to (default [`wire::DEFAULT_STREAM`], `ES_EVENTS`).
    pub stream: String,
    /// The subject prefix the publisher uses (default [`wire::DEFAULT_PREFIX`], `es`).
    pub prefix: String,
    /// The publisher's partition count (default [`wire::DEFAULT_PARTITIONS`], 16); it must
    /// be the publisher's.
    pub partitions: u32,
    /// The group's name, which names its durable consumers `{group}-p{k}` and is part of
    /// its checkpoint keys, `{read model}@{stream}/{group}#p{k}/{partitions}` (default: the
    /// read model's name). Letters, digits, `-` and `_` only. Two groups of one read model
    /// type (a blue/green rebuild under a new group name, say) each read every event, and
    /// can share one checkpoint store.
    pub group: Option<String>,
    /// How many instances share the partitions (default 1).
    pub members: u32,
    /// Which of them this one is, from 0 (default 0): it takes the partitions `k` with
    /// `k % members == member`.
    pub member: u32,
    /// How many messages are applied before a commit and their acknowledgement (default
    /// [`DEFAULT_CONSUMER_BATCH`]); also the most messages of one partition in flight.
    pub batch_size: usize,
    /// How long JetStream waits for an acknowledgement before it redelivers a message
    /// (default 30 s): keep it well above the time a batch takes to apply and commit.
    ///
    /// It and the most unacknowledged messages (4 batches) are set on the group's durable
    /// consumers when they are created, and updated on existing ones whose settings differ
    /// when a session starts.
    pub ack_wait: Duration,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            stream: wire::DEFAULT_STREAM.to_owned(),
            prefix: wire::DEFAULT_PREFIX.to_owned(),
            partitions: wire::DEFAULT_PARTITIONS,
            group: None,
            members: 1,
            member: 0,
            batch_size: DEFAULT_CONSUMER_BATCH,
            ack_wait: Duration::from_secs(30),
        }
    }
}

impl ConsumerOptions {
    /// The default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the JetStream stream `stream`.
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = stream.into();
        self
    }

    /// Reads the subjects under `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The publisher's partition count.
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions;
        self
    }

    /// Names the group (and so its consumers).
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Makes this instance member `member` of `members`.
    pub fn member(mut self, member: u32, members: u32) -> Self {
        self.member = member;
        self.members = members;
        self
    }

    /// Applies (and commits) up to `batch_size` messages at a time (at least 1).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// How long JetStream waits for an acknowledgement before redelivering.
    pub fn ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }
}

/// How a [`JetStreamProjector`] keeps the checkpoint of each partition of read model `R`:
/// the global position of the last event of that partition applied, under a key per
/// partition.
///
/// The key is `{read model}@{stream}/{group}#p{k}/{partitions}`: the read model's
/// [`NAME`](ReadModel::NAME), the JetStream stream, the group (by default the read model's
/// name, see [`ConsumerOptions::group`]), the partition `k` and the partition count; e.g.
/// `balances@ES_EVENTS/balances#p3/16`. Projectors of other groups or streams therefore
/// never share a checkpoint, even in one store.
///
/// Every [`AsyncCheckpointStore`] is one (at least once: the checkpoints are stored after
/// the read model applied the events, apart from it; keep both durable, or neither).
/// Implement it for a read model kept in a database to commit its rows and the checkpoints
/// in one transaction (exactly once). With feature `sqlite`, `sqlite::ExactlyOncePartitions`
/// is one for a read model kept in SQLite: it commits an `es_sqlite::ExactlyOnce`'s
/// read-model tables and checkpoints in one transaction.
pub trait PartitionCheckpoints<R: ReadModel>: Send {
    /// The checkpoint stored under `key` (0: none, read the partition from its start).
    fn load(
        &mut self,
        read_model: &mut R,
        key: &str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Records that `read_model` applied every event up to each position, for each
    /// `(key, position)`: one batch, which an exactly-once implementation commits in one
    /// transaction with the read model's changes.
    fn commit(
        &mut self,
        read_model: &mut R,
        positions: &[(&str, u64)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Called after [`commit`](PartitionCheckpoints::commit) failed. Returns whether the
    /// read model dropped what it applied since the last commit (an exactly-once read model
    /// whose transaction rolled back): then those events are applied again. The default,
    /// `false`, keeps them applied, to be committed with the next batch.
    fn after_failed_commit(&mut self, read_model: &mut R) -> bool {
        let _ = read_model;
        false
    }

    /// Forgets the checkpoints under `keys` and resets `read_model`
    /// ([`ReadModel::reset`]), for a rebuild.
    fn reset(
        &mut self,
        read_model: &mut R,
        keys: &[&str],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl<R: ReadModel + Send, S: AsyncCheckpointStore> PartitionCheckpoints<R> for S {
    async fn load(&mut self, _: &mut R, key: &str) -> Result<u64, StoreError> {
        self.load_checkpoint(key).await
    }

    async fn commit(&mut self, _: &mut R, positions: &[(&str, u64)]) -> Result<(), StoreError> {
        for (key, position) in positions {
            self.save_checkpoint(key, *position).await?;
        }
        Ok(())
    }

    async fn reset(&mut self, read_model: &mut R, keys: &[&str]) -> Result<(), StoreError> {
        // The checkpoints first: a crash after them leaves a read model that is rebuilt again.
        for key in keys {
            self.delete_checkpoint(key).await?;
        }
        read_model.reset();
        Ok(())
    }
}

/// What a [`catch_up`](JetStreamProjector::catch_up) or [`run`](JetStreamProjector::run)
/// did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Consumed {
    /// Messages read (and acknowledged).
    pub read: u64,
    /// Events applied to the read model (messages of events it handles).
    pub applied: u64,
    /// Messages skipped because their event was already applied (redeliveries).
    pub duplicates: u64,
}

impl Consumed {
    fn add(&mut self, other: Consumed) {
        self.read += other.read;
        self.applied += other.applied;
        self.duplicates += other.duplicates;
    }
}

/// The backlog of a projector's consumers, from JetStream's consumer info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lag {
    /// Messages not yet delivered to this instance.
    pub pending: u64,
    /// Messages delivered and not yet acknowledged.
    pub unacknowledged: u64,
}

impl Lag {
    /// Every message not yet acknowledged: `pending + unacknowledged`.
    pub fn total(&self) -> u64 {
        self.pending + self.unacknowledged
    }
}

/// Why a [`JetStreamProjector`] stopped or a call to it failed.
///
/// Each message names the read model, what went wrong and what to do; the cause's text is in
/// the message (and not chained again as a `source`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumeError {
    /// The options cannot work.
    #[error("es-nats consumer options for read model `{read_model}`: {problem}")]
    Options {
        /// The read model.
        read_model: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// NATS could not be reached, did not answer, or refused a request (transient).
    #[error(
        "read model `{read_model}`: NATS failed while {during}: {cause}; check that nats-server runs with JetStream (`-js`) and is reachable, and that stream `{stream}` is the publisher's; run the consumer again, it resumes after its checkpoints"
    )]
    Nats {
        /// The read model.
        read_model: &'static str,
        /// The JetStream stream.
        stream: String,
        /// What the projector was doing.
        during: String,
        /// The client's or the server's error.
        cause: String,
    },
    /// The JetStream stream does not exist: nothing was published yet.
    /// [`run`](JetStreamProjector::run) waits for it; the other calls report it.
    #[error(
        "read model `{read_model}`: JetStream stream `{stream}` does not exist: nothing was published yet; start the publisher (it creates the stream), or check the stream name and the server"
    )]
    StreamMissing {
        /// The read model.
        read_model: &'static str,
        /// The JetStream stream.
        stream: String,
    },
    /// A durable consumer of the group exists with another filter subject (another prefix,
    /// partition count or read model).
    #[error(
        "read model `{read_model}`: durable consumer `{consumer}` of stream `{stream}` filters `{found}`, not `{expected}`: the prefix, the partition count or the group's read model changed; give the group another name, or delete the consumer (`nats consumer rm {stream} {consumer}`) and rebuild the read model"
    )]
    ConsumerMismatch {
        /// The read model.
        read_model: &'static str,
        /// The JetStream stream.
        stream: String,
        /// The consumer's name.
        consumer: String,
        /// Its filter subject.
        found: String,
        /// The filter subject this projector needs.
        expected: String,
    },
    /// A message is not an es event: it stays unacknowledged.
    #[error(
        "read model `{read_model}`: message {stream_sequence} of JetStream stream `{stream}` (subject `{subject}`, consumer `{consumer}`) is not an es event: {cause}; it is damaged or was not published by es-nats. It was not acknowledged, and the consumer stops at it until it is gone: remove it (`nats stream rmm {stream} {stream_sequence}`), stop whatever else publishes to the stream's es subjects, then run the consumer again"
    )]
    Corrupt {
        /// The read model.
        read_model: &'static str,
        /// The JetStream stream.
        stream: String,
        /// The consumer that received it.
        consumer: String,
        /// The message's subject.
        subject: String,
        /// Its sequence in the JetStream stream (0 if unknown).
        stream_sequence: u64,
        /// What is wrong with it.
        cause: String,
    },
    /// A handler returned an error; the event is not acknowledged.
    #[error(
        "read model `{read_model}` failed on event `{event_type}` at global position {global_position} (version {version} of {stream}, partition {partition}): {cause}; the message was not acknowledged: fix the handler (or the data) and run the consumer again: it resumes at this event"
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
        /// The event's partition.
        partition: u32,
        /// What the handler returned.
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A handled event could not be decoded; it is not acknowledged.
    #[error(
        "read model `{read_model}` cannot decode event `{event_type}` at global position {global_position} (version {version} of {stream}, partition {partition}): {cause}; the message was not acknowledged: add an upcaster or fix the event type, then run the consumer again: it resumes at this event"
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
        /// The event's partition.
        partition: u32,
        /// Why it does not decode.
        cause: Box<DecodeError>,
    },
    /// Loading, committing or resetting checkpoints failed. A batch whose commit failed
    /// was not acknowledged.
    #[error(
        "read model `{read_model}`: the checkpoint store failed while {during}: {cause}; {}",
        checkpoint_consequence(during)
    )]
    Checkpoint {
        /// The read model.
        read_model: &'static str,
        /// What the projector was doing.
        during: String,
        /// The store's error.
        cause: Box<StoreError>,
    },
    /// A partition kept receiving messages out of order, even from freshly recreated
    /// consumers.
    #[error(
        "read model `{read_model}`: partition {partition} (consumer `{consumer}`) received messages out of order {restarts} times in a row ({problem}); check that only one instance runs member {member} of group `{group}`, then run the consumer again"
    )]
    OutOfOrder {
        /// The read model.
        read_model: &'static str,
        /// The partition.
        partition: u32,
        /// Its consumer.
        consumer: String,
        /// The group.
        group: String,
        /// This instance's member index.
        member: u32,
        /// How many sessions were started.
        restarts: u32,
        /// What was seen last.
        problem: String,
    },
}

/// [`ConsumeError::Checkpoint`]'s `during` when a batch's commit failed.
const DURING_COMMIT: &str = "committing a batch";
/// The start of its `during` when loading a checkpoint failed (the key follows).
const DURING_LOAD: &str = "loading checkpoint";
/// Its `during` when a rebuild's reset failed.
const DURING_RESET: &str = "resetting the read model and its checkpoints for a rebuild";

/// What a checkpoint store failure while `during` left behind, and what to do.
fn checkpoint_consequence(during: &str) -> &'static str {
    if during.starts_with(DURING_LOAD) {
        "nothing of that partition was read or acknowledged yet: run the consumer again once the store works"
    } else if during == DURING_RESET {
        "the rebuild's consumers were deleted, but the read model and its checkpoints may be partly reset: run the rebuild again once the store works"
    } else {
        "nothing of this batch was acknowledged, so JetStream delivers it again: run the consumer again once the store works"
    }
}

impl ConsumeError {
    /// Whether trying again later may help without anyone acting: a NATS failure (a lost
    /// connection, a timeout) or a checkpoint store failure. Handler, decoding, corrupt
    /// message and configuration errors need someone to act.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Nats { .. } | Self::Checkpoint { .. })
    }
}

/// One partition this instance takes.
struct Partition {
    index: u32,
    consumer_name: String,
    checkpoint_key: String,
    filter: String,
    /// The consumer, once opened in this session.
    consumer: Option<PullConsumer>,
    /// The position applied to the read model (committed, or kept after a failed commit).
    applied: u64,
    /// The position last committed.
    committed: u64,
    /// Whether the checkpoint was loaded.
    loaded: bool,
    /// The consumer sequence of the last delivery in this session (first deliveries and
    /// redeliveries alike: JetStream numbers both): the next one must follow it.
    last_delivery: Option<u64>,
    /// Set when a message arrived out of order: the session must start again.
    restart: Option<String>,
}

/// Where a delivered message stands, by [`Partition::check_order`].
#[derive(Debug, PartialEq, Eq)]
enum Order {
    /// A new event, in order: apply it.
    Next,
    /// An event already applied (a redelivery), in delivery order: acknowledge and skip it.
    Duplicate,
    /// Deliveries are missing since `last`: another reader took them, or they were lost.
    Gap {
        /// The delivery before.
        last: u64,
    },
    /// A redelivery of an event never applied: newer events may have been passed over.
    RedeliveredUnapplied,
}

impl Partition {
    /// Checks a message (its consumer sequence `delivery`, its delivery count `delivered`,
    /// its event's global position) against the session's order, and records its delivery.
    ///
    /// JetStream's consumer sequence counts every delivery, redeliveries included: each
    /// delivery must follow the last one, or some went elsewhere (a gap), and a redelivered
    /// duplicate moves the sequence on like any other.
    fn check_order(&mut self, delivery: u64, delivered: i64, global_position: u64) -> Order {
        if let Some(last) = self.last_delivery {
            if delivery != last.saturating_add(1) {
                return Order::Gap { last };
            }
        }
        self.last_delivery = Some(delivery);
        if global_position <= self.applied {
            Order::Duplicate
        } else if delivered != 1 {
            Order::RedeliveredUnapplied
        } else {
            Order::Next
        }
    }
}

/// Feeds a [`ReadModel`] the events a [`Publisher`](crate::Publisher) published to
/// JetStream, through one durable pull consumer per partition it takes, with explicit
/// acknowledgements after each committed batch.
///
/// * [`catch_up`](JetStreamProjector::catch_up) applies every message pending for its
///   consumers and returns.
/// * [`run`](JetStreamProjector::run) follows new messages as they arrive, until stopped.
/// * [`lag`](JetStreamProjector::lag) reports the messages not yet acknowledged.
/// * [`rebuild`](JetStreamProjector::rebuild) resets the read model, its checkpoints and its
///   consumers, and reads everything again.
///
/// # Partitions, groups and order
///
/// The publisher puts every event of one stream in one of `partitions` partitions
/// ([`partition_of`](crate::wire::partition_of)). A projector instance is member `member` of
/// a group of `members` instances: it takes the partitions `k` with `k % members == member`,
/// each through a durable pull consumer named `{group}-p{k}` whose filter is that
/// partition's subjects (narrowed to the read model's aggregate type when it handles only
/// one). Each partition is applied strictly in order, one message after the other, so the
/// events of a stream reach the read model in their stream order; the instances of a group
/// share the partitions without ever applying one partition twice or in parallel. With one
/// member, one instance takes every partition.
///
/// The partition count must be the publisher's. Changing it moves streams to other
/// partitions, whose checkpoints know nothing of them: [`rebuild`](JetStreamProjector::rebuild)
/// every member after such a change.
///
/// # Progress and redelivery
///
/// Each partition has a checkpoint, the global position of the last event of that partition
/// applied, kept by a [`PartitionCheckpoints`] (every
/// [`AsyncCheckpointStore`](es_core::AsyncCheckpointStore) is one, under the key
/// `{read model}@{stream}/{group}#p{k}/{partitions}`, so that other groups of the same read
/// model type keep their own). A batch of messages is applied, then the read model's changes
/// and the checkpoints are committed, and only then are the messages acknowledged.
/// A message delivered again (an acknowledgement lost, a consumer recreated, a crash between
/// the commit and the acknowledgement) carries a global position at or below its partition's
/// checkpoint: it is acknowledged and skipped, never applied twice.
///
/// When a session starts and a consumer still has messages that an earlier session received
/// but never acknowledged (it stopped, failed or crashed with messages in hand), JetStream
/// would deliver newer messages before redelivering those. The projector then recreates that
/// durable consumer from its acknowledgement floor, so that the partition is read again in
/// order from the first unacknowledged message (the ones already applied are skipped by
/// their checkpoint). For the same reason, during a session a message that arrives out of
/// delivery order (a gap in the consumer's delivery sequence, or a redelivery of a message
/// never applied) is not applied: the partition's session starts again the same way. Run at
/// most one instance per member index at a time: a second one would recreate the consumers
/// under the first.
///
/// # Failures
///
/// A handler or decoding error stops at that event: the events before it are committed and
/// acknowledged, the failing one is not, so after fixing the handler (or the data) the next
/// run applies it first. A message that is not an es event (missing or damaged headers) stops
/// the projector the same way, naming its subject and stream sequence: it is not acknowledged
/// (nor silently skipped), so that nothing is lost unnoticed; remove it from the JetStream
/// stream (`nats stream rmm ES_EVENTS <sequence>`), stop whatever else publishes to the es
/// subjects, and run again.
///
/// ```no_run
/// # use es_core::{InMemoryStore, ReadModel};
/// # use es_nats::{ConsumerOptions, JetStreamProjector, StopHandle};
/// # async fn demo<R: ReadModel + Default + Send>(stop: StopHandle) -> Result<(), Box<dyn std::error::Error>> {
/// let client = async_nats::connect("nats://127.0.0.1:4222").await?;
/// let jetstream = async_nats::jetstream::new(client);
/// // This instance is member 0 of 2: it takes the even partitions.
/// let options = ConsumerOptions::new().member(0, 2);
/// let mut projector =
///     JetStreamProjector::new(jetstream, R::default(), InMemoryStore::new(), options);
/// projector.catch_up().await?;
/// projector.run(&stop).await?; // until `stop.stop()` is called from another task
/// # Ok(())
/// # }
/// ```
pub struct JetStreamProjector<R, C> {
    jetstream: jetstream::Context,
    read_model: R,
    checkpoints: C,
    options: ConsumerOptions,
    group: String,
    partitions: Vec<Partition>,
    stream: Option<jetstream::stream::Stream>,
    invalid: Option<String>,
}

impl<R, C> fmt::Debug for JetStreamProjector<R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamProjector")
            .field("options", &self.options)
            .field("group", &self.group)
            .field(
                "partitions",
                &self.partitions.iter().map(|p| p.index).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl<R: ReadModel + Send, C: PartitionCheckpoints<R>> JetStreamProjector<R, C> {
    /// A projector of `read_model` over the JetStream stream of `options`, keeping its
    /// checkpoints in `checkpoints`. Nothing is read until the first call; invalid options
    /// are reported by it.
    pub fn new(
        jetstream: jetstream::Context,
        read_model: R,
        checkpoints: C,
        options: ConsumerOptions,
    ) -> Self {
        let group = options.group.clone().unwrap_or_else(|| R::NAME.to_owned());
        let invalid = validate::<R>(&options, &group).err();
        let partitions = if invalid.is_some() {
            Vec::new()
        } else {
            partitions_of::<R>(&options, &group)
        };
        Self {
            jetstream,
            read_model,
            checkpoints,
            options,
            group,
            partitions,
            stream: None,
            invalid,
        }
    }

    /// The read model.
    pub fn read_model(&self) -> &R {
        &self.read_model
    }

    /// The read model, mutably. Changing what it holds desynchronises it from its
    /// checkpoints.
    pub fn read_model_mut(&mut self) -> &mut R {
        &mut self.read_model
    }

    /// The checkpoints.
    pub fn checkpoints(&self) -> &C {
        &self.checkpoints
    }

    /// The checkpoints, mutably (to query a read model kept with them, say).
    pub fn checkpoints_mut(&mut self) -> &mut C {
        &mut self.checkpoints
    }

    /// The read model, giving the projector up.
    pub fn into_read_model(self) -> R {
        self.read_model
    }

    /// The partitions this instance takes, in order.
    pub fn partitions(&self) -> Vec<u32> {
        self.partitions.iter().map(|p| p.index).collect()
    }

    /// The durable consumer names this instance reads through, in partition order.
    pub fn consumer_names(&self) -> Vec<String> {
        self.partitions
            .iter()
            .map(|p| p.consumer_name.clone())
            .collect()
    }

    /// The checkpoint keys of this instance's partitions, in partition order:
    /// `{read model}@{stream}/{group}#p{k}/{partitions}` (see [`PartitionCheckpoints`]).
    pub fn checkpoint_keys(&self) -> Vec<String> {
        self.partitions
            .iter()
            .map(|p| p.checkpoint_key.clone())
            .collect()
    }

    /// The checkpoint of each partition this instance takes, `(partition, position)`,
    /// loading them if needed.
    pub async fn positions(&mut self) -> Result<Vec<(u32, u64)>, ConsumeError> {
        self.check()?;
        for slot in 0..self.partitions.len() {
            self.load(slot).await?;
        }
        Ok(self
            .partitions
            .iter()
            .map(|p| (p.index, p.applied))
            .collect())
    }

    /// Applies every message pending for this instance's consumers, partition after
    /// partition, in batches (apply, commit, acknowledge), and returns what it did.
    ///
    /// A handler or decoding error, or a message that is not an es event, stops at that
    /// message with the messages before it committed and acknowledged; calling again
    /// resumes at it. Before anything was published the stream does not exist:
    /// [`ConsumeError::StreamMissing`].
    pub async fn catch_up(&mut self) -> Result<Consumed, ConsumeError> {
        self.check()?;
        self.end_sessions();
        let mut done = Consumed::default();
        for slot in 0..self.partitions.len() {
            // Sessions started again in a row without progress.
            let mut restarts = 0;
            self.open(slot).await?;
            loop {
                let (messages, more) = self.fetch(slot).await?;
                let empty = messages.is_empty();
                let batch = messages.into_iter().map(|m| (slot, m)).collect();
                let before = self.partitions[slot].applied;
                done.add(self.process(batch).await?);
                if self.partitions[slot].applied > before {
                    restarts = 0;
                }
                if let Some(problem) = self.partitions[slot].restart.take() {
                    restarts += 1;
                    if restarts > MAX_RESTARTS {
                        return Err(self.out_of_order(slot, restarts, problem));
                    }
                    self.partitions[slot].consumer = None;
                    self.open(slot).await?;
                    continue;
                }
                if empty || !more {
                    break;
                }
            }
        }
        Ok(done)
    }

    /// Follows the consumers until `stop` is stopped: applies messages as they arrive, in
    /// batches of what is at hand (apply, commit, acknowledge), so an event is applied a
    /// few milliseconds after the publisher published it. Returns what it did.
    ///
    /// While the JetStream stream does not exist (nothing was published yet) it waits for
    /// it. NATS failures (a lost connection, missed heartbeats) are ridden out: the
    /// partition's session starts again after a pause (doubling from 100 ms up to 2 s while
    /// they last). Handler, decoding and corrupt message errors end the run at once, as in
    /// [`catch_up`](JetStreamProjector::catch_up); so do messages still out of order after
    /// 10 fresh sessions of a partition in a row.
    /// Once stopped, the batch in hand is finished and the run returns.
    pub async fn run(&mut self, stop: &StopHandle) -> Result<Consumed, ConsumeError> {
        self.check()?;
        self.end_sessions();
        let mut stop = pin!(stop.stopped());
        let count = self.partitions.len();
        let mut done = Consumed::default();
        let mut streams: Vec<Option<pull::Stream>> = (0..count).map(|_| None).collect();
        // Consecutive sessions of a partition that saw messages out of order.
        let mut disorders = vec![0u32; count];
        // Consecutive NATS failures: each pauses twice as long, up to `MAX_RETRY_PAUSE`.
        let mut failures = 0u32;
        let mut pause = false;
        let mut start = 0;
        loop {
            if pause {
                let delay = RETRY_PAUSE
                    .saturating_mul(1 << failures.min(5))
                    .min(MAX_RETRY_PAUSE);
                tokio::select! {
                    biased;
                    () = &mut stop => return Ok(done),
                    () = tokio::time::sleep(delay) => {}
                }
                pause = false;
            }
            // (Re)open every partition that has no message stream.
            for (slot, open) in streams.iter_mut().enumerate() {
                if open.is_some() {
                    continue;
                }
                match self.subscribe(slot).await {
                    Ok(stream) => *open = Some(stream),
                    // Nothing was published yet (the publisher creates the stream), or NATS
                    // is unreachable: wait, and try again.
                    Err(error)
                        if matches!(error, ConsumeError::StreamMissing { .. })
                            || error.is_transient() =>
                    {
                        failures = failures.saturating_add(1);
                        pause = true;
                        break;
                    }
                    Err(error) => return Err(error),
                }
            }
            if pause {
                continue;
            }
            let first = tokio::select! {
                biased;
                () = &mut stop => return Ok(done),
                first = next_message(&mut streams, start) => first,
            };
            start = (start + 1) % count.max(1);
            let mut batch = Vec::new();
            let mut broken = vec![false; count];
            let mut next = Some(first);
            while let Some((slot, item)) = next.take() {
                match item {
                    Some(Ok(message)) => batch.push((slot, message)),
                    // A failed or ended message stream (missed heartbeats, a lost
                    // connection, its consumer deleted) is dropped at once: an ended stream
                    // answers every poll with `None`, so polling it again in this batch
                    // would spin. It is opened again after the batch, after a pause.
                    Some(Err(_)) | None => {
                        broken[slot] = true;
                        streams[slot] = None;
                    }
                }
                if batch.len() < self.options.batch_size {
                    next = next_message(&mut streams, start).now_or_never();
                }
            }
            if !batch.is_empty() {
                failures = 0;
            }
            let mut received = vec![false; count];
            for (slot, _) in &batch {
                received[*slot] = true;
            }
            let before: Vec<u64> = self.partitions.iter().map(|p| p.applied).collect();
            done.add(self.process(batch).await?);
            for slot in 0..count {
                let disorder = self.partitions[slot].restart.take();
                // Progress (or a batch in order) ends a run of disorders.
                let advanced = self.partitions[slot].applied > before[slot];
                if advanced || (disorder.is_none() && received[slot]) {
                    disorders[slot] = 0;
                }
                if disorder.is_none() && !broken[slot] {
                    continue;
                }
                streams[slot] = None;
                self.partitions[slot].consumer = None;
                if broken[slot] {
                    failures = failures.saturating_add(1);
                    pause = true;
                }
                if let Some(problem) = disorder {
                    disorders[slot] += 1;
                    if disorders[slot] > MAX_RESTARTS {
                        return Err(self.out_of_order(slot, disorders[slot], problem));
                    }
                }
            }
        }
    }

    /// The messages of this instance's consumers not yet acknowledged (JetStream's
    /// `num_pending` and `num_ack_pending`), creating the consumers if needed.
    pub async fn lag(&mut self) -> Result<Lag, ConsumeError> {
        self.check()?;
        let mut lag = Lag::default();
        for slot in 0..self.partitions.len() {
            let stream = self.stream().await?;
            let name = self.partitions[slot].consumer_name.clone();
            let info = match stream.consumer_info(&name).await {
                Ok(info) => info,
                Err(_) => {
                    self.ensure_consumer(slot).await?;
                    let stream = self.stream().await?;
                    stream.consumer_info(&name).await.map_err(|e| {
                        self.nats_error(format!("reading consumer `{name}`"), e.to_string())
                    })?
                }
            };
            lag.pending += info.num_pending;
            lag.unacknowledged += info.num_ack_pending as u64;
        }
        Ok(lag)
    }

    /// Deletes the consumers of this instance's partitions, resets the read model and
    /// their checkpoints, and catches up from the first event. Every member of a group must
    /// rebuild (each resets its own partitions); a read model shared by several members
    /// is reset by each.
    ///
    /// If a consumer cannot be deleted (NATS is unreachable, say), nothing is reset and
    /// the [`ConsumeError::Nats`] is returned: a consumer left in place would resume after
    /// its acknowledgement floor, and the rebuilt read model would miss the events before.
    pub async fn rebuild(&mut self) -> Result<Consumed, ConsumeError> {
        self.check()?;
        let stream = self.stream().await?;
        // Every consumer is deleted before anything is reset: a consumer left in place
        // would resume after its acknowledgement floor, and the events before it would be
        // missing from the rebuilt read model.
        for slot in 0..self.partitions.len() {
            self.partitions[slot].consumer = None;
            let name = self.partitions[slot].consumer_name.clone();
            match stream.delete_consumer(&name).await {
                Ok(_) => {}
                // A consumer that is not there needs no deleting.
                Err(error)
                    if matches!(
                        error.kind(),
                        ConsumerErrorKind::JetStream(ref error)
                            if error.error_code() == ErrorCode::CONSUMER_NOT_FOUND
                    ) => {}
                Err(error) => {
                    return Err(self.nats_error(
                        format!(
                            "deleting durable consumer `{name}` for a rebuild (nothing was reset)"
                        ),
                        error.to_string(),
                    ));
                }
            }
        }
        let keys: Vec<String> = self
            .partitions
            .iter()
            .map(|p| p.checkpoint_key.clone())
            .collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.checkpoints
            .reset(&mut self.read_model, &keys)
            .await
            .map_err(|cause| ConsumeError::Checkpoint {
                read_model: R::NAME,
                during: DURING_RESET.to_owned(),
                cause: Box::new(cause),
            })?;
        for partition in &mut self.partitions {
            partition.applied = 0;
            partition.committed = 0;
            partition.loaded = true;
            partition.last_delivery = None;
        }
        self.catch_up().await
    }

    /// Forgets the consumers opened by an earlier call, so that each call starts its
    /// sessions afresh (and recreates a consumer left with unacknowledged messages).
    fn end_sessions(&mut self) {
        for partition in &mut self.partitions {
            partition.consumer = None;
        }
    }

    fn check(&self) -> Result<(), ConsumeError> {
        match &self.invalid {
            Some(problem) => Err(ConsumeError::Options {
                read_model: R::NAME,
                problem: problem.clone(),
            }),
            None => Ok(()),
        }
    }

    fn nats_error(&self, during: String, cause: String) -> ConsumeError {
        ConsumeError::Nats {
            read_model: R::NAME,
            stream: self.options.stream.clone(),
            during,
            cause,
        }
    }

    fn out_of_order(&self, slot: usize, restarts: u32, problem: String) -> ConsumeError {
        ConsumeError::OutOfOrder {
            read_model: R::NAME,
            partition: self.partitions[slot].index,
            consumer: self.partitions[slot].consumer_name.clone(),
            group: self.group.clone(),
            member: self.options.member,
            restarts,
            problem,
        }
    }

    async fn stream(&mut self) -> Result<jetstream::stream::Stream, ConsumeError> {
        if let Some(stream) = &self.stream {
            return Ok(stream.clone());
        }
        let name = self.options.stream.clone();
        let stream = self
            .jetstream
            .get_stream(&name)
            .await
            .map_err(|e| match e.kind() {
                GetStreamErrorKind::JetStream(error)
                    if error.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    ConsumeError::StreamMissing {
                        read_model: R::NAME,
                        stream: name.clone(),
                    }
                }
                _ => self.nats_error(
                    format!("looking up JetStream stream `{name}`"),
                    e.to_string(),
                ),
            })?;
        self.stream = Some(stream.clone());
        Ok(stream)
    }

    async fn load(&mut self, slot: usize) -> Result<(), ConsumeError> {
        if self.partitions[slot].loaded {
            return Ok(());
        }
        let key = self.partitions[slot].checkpoint_key.clone();
        let position = self
            .checkpoints
            .load(&mut self.read_model, &key)
            .await
            .map_err(|cause| ConsumeError::Checkpoint {
                read_model: R::NAME,
                during: format!("{DURING_LOAD} `{key}`"),
                cause: Box::new(cause),
            })?;
        let partition = &mut self.partitions[slot];
        partition.applied = position;
        partition.committed = position;
        partition.loaded = true;
        Ok(())
    }

    fn consumer_config(&self, slot: usize, deliver_policy: DeliverPolicy) -> pull::Config {
        let partition = &self.partitions[slot];
        pull::Config {
            durable_name: Some(partition.consumer_name.clone()),
            description: Some(format!(
                "es read model `{}`, partition {} of {}",
                R::NAME,
                partition.index,
                self.options.partitions
            )),
            deliver_policy,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.options.ack_wait,
            filter_subject: partition.filter.clone(),
            max_ack_pending: i64::try_from(self.options.batch_size.saturating_mul(4))
                .unwrap_or(i64::MAX),
            ..Default::default()
        }
    }

    /// Gets (or creates) the partition's durable consumer and checks its filter; updates an
    /// existing consumer whose acknowledgement wait, acknowledgement limit or description
    /// differ from the options (created with other options, or by an older version).
    async fn ensure_consumer(&mut self, slot: usize) -> Result<PullConsumer, ConsumeError> {
        let stream = self.stream().await?;
        let name = self.partitions[slot].consumer_name.clone();
        let wanted = self.consumer_config(slot, DeliverPolicy::All);
        let mut consumer = stream
            .get_or_create_consumer(&name, wanted.clone())
            .await
            .map_err(|e| {
                self.nats_error(format!("creating durable consumer `{name}`"), e.to_string())
            })?;
        let found = &consumer.cached_info().config.filter_subject;
        let expected = &self.partitions[slot].filter;
        if found != expected {
            return Err(ConsumeError::ConsumerMismatch {
                read_model: R::NAME,
                stream: self.options.stream.clone(),
                consumer: name,
                found: found.clone(),
                expected: expected.clone(),
            });
        }
        let existing = &consumer.cached_info().config;
        if existing.ack_wait != wanted.ack_wait
            || existing.max_ack_pending != wanted.max_ack_pending
            || existing.description != wanted.description
        {
            // The existing configuration with the settings the options decide: the rest
            // (its deliver policy, say) cannot be changed on a durable consumer.
            let during = || format!("updating durable consumer `{name}` to the options");
            let mut config = pull::Config::try_from_consumer_config(existing.clone())
                .map_err(|e| self.nats_error(during(), e.to_string()))?;
            config.ack_wait = wanted.ack_wait;
            config.max_ack_pending = wanted.max_ack_pending;
            config.description = wanted.description;
            consumer = stream
                .create_consumer(config)
                .await
                .map_err(|e| self.nats_error(during(), e.to_string()))?;
        }
        Ok(consumer)
    }

    /// Starts a session on the partition: loads its checkpoint, gets its consumer, and
    /// recreates the consumer from its acknowledgement floor if messages delivered before
    /// are still unacknowledged (so nothing newer is delivered before them).
    async fn open(&mut self, slot: usize) -> Result<(), ConsumeError> {
        self.load(slot).await?;
        if self.partitions[slot].consumer.is_some() {
            return Ok(());
        }
        let mut consumer = self.ensure_consumer(slot).await?;
        let info = consumer.cached_info().clone();
        if info.num_ack_pending > 0 {
            let stream = self.stream().await?;
            let name = self.partitions[slot].consumer_name.clone();
            stream.delete_consumer(&name).await.map_err(|e| {
                self.nats_error(
                    format!("recreating durable consumer `{name}` (deleting it)"),
                    e.to_string(),
                )
            })?;
            let config = self.consumer_config(
                slot,
                DeliverPolicy::ByStartSequence {
                    start_sequence: info.ack_floor.stream_sequence + 1,
                },
            );
            consumer = stream.create_consumer(config).await.map_err(|e| {
                self.nats_error(
                    format!("recreating durable consumer `{name}`"),
                    e.to_string(),
                )
            })?;
        }
        let partition = &mut self.partitions[slot];
        partition.last_delivery = Some(consumer.cached_info().delivered.consumer_sequence);
        partition.restart = None;
        partition.consumer = Some(consumer);
        Ok(())
    }

    /// Fetches the messages available now (at most a batch); also returns whether more
    /// were pending after them.
    async fn fetch(&mut self, slot: usize) -> Result<(Vec<Message>, bool), ConsumeError> {
        let partition = &self.partitions[slot];
        let Some(consumer) = &partition.consumer else {
            return Ok((Vec::new(), false));
        };
        let during = || format!("fetching from consumer `{}`", partition.consumer_name);
        let mut batch = consumer
            .fetch()
            .max_messages(self.options.batch_size)
            .messages()
            .await
            .map_err(|e| self.nats_error(during(), e.to_string()))?;
        let mut messages = Vec::new();
        while let Some(message) = batch.next().await {
            messages.push(message.map_err(|e| self.nats_error(during(), e.to_string()))?);
        }
        let more = messages
            .last()
            .and_then(|m| m.info().ok())
            .is_some_and(|info| info.pending > 0);
        Ok((messages, more))
    }

    /// Opens the partition's session and its continuous message stream.
    async fn subscribe(&mut self, slot: usize) -> Result<pull::Stream, ConsumeError> {
        self.open(slot).await?;
        let partition = &self.partitions[slot];
        let Some(consumer) = &partition.consumer else {
            return Err(self.nats_error(
                format!("opening consumer `{}`", partition.consumer_name),
                "the consumer was not opened".to_owned(),
            ));
        };
        // Idle heartbeats, so that a dead connection or consumer is noticed (after two
        // missed heartbeats) rather than waited on; the server requires the heartbeat below
        // half of the pull requests' expiry.
        consumer
            .stream()
            .max_messages_per_batch(self.options.batch_size)
            .expires(PULL_EXPIRY)
            .heartbeat(IDLE_HEARTBEAT)
            .messages()
            .await
            .map_err(|e| {
                self.nats_error(
                    format!("reading consumer `{}`", partition.consumer_name),
                    e.to_string(),
                )
            })
    }

    /// Applies a batch in order, commits the checkpoints of the partitions it advanced,
    /// then acknowledges its messages. Messages of a partition that must restart are left
    /// unacknowledged (its next session reads them again).
    async fn process(&mut self, batch: Vec<(usize, Message)>) -> Result<Consumed, ConsumeError> {
        let mut done = Consumed::default();
        let mut acks = Vec::with_capacity(batch.len());
        let mut touched = vec![false; self.partitions.len()];
        let mut failure = None;
        for (slot, message) in batch {
            if self.partitions[slot].restart.is_some() {
                continue;
            }
            match self.apply(slot, &message) {
                Ok(Step::Applied { handled }) => {
                    touched[slot] = true;
                    done.read += 1;
                    done.applied += u64::from(handled);
                    acks.push((slot, message));
                }
                Ok(Step::Duplicate) => {
                    done.read += 1;
                    done.duplicates += 1;
                    acks.push((slot, message));
                }
                Ok(Step::OutOfOrder(problem)) => self.partitions[slot].restart = Some(problem),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        let positions: Vec<(String, u64)> = self
            .partitions
            .iter()
            .zip(&touched)
            .filter(|(p, touched)| **touched && p.applied > p.committed)
            .map(|(p, _)| (p.checkpoint_key.clone(), p.applied))
            .collect();
        if !positions.is_empty() {
            let keys: Vec<(&str, u64)> = positions.iter().map(|(k, p)| (k.as_str(), *p)).collect();
            if let Err(cause) = self.checkpoints.commit(&mut self.read_model, &keys).await {
                if self.checkpoints.after_failed_commit(&mut self.read_model) {
                    for partition in &mut self.partitions {
                        partition.applied = partition.committed;
                    }
                }
                return Err(ConsumeError::Checkpoint {
                    read_model: R::NAME,
                    during: DURING_COMMIT.to_owned(),
                    cause: Box::new(cause),
                });
            }
            for (partition, touched) in self.partitions.iter_mut().zip(&touched) {
                if *touched {
                    partition.committed = partition.applied;
                }
            }
        }
        // A lost acknowledgement only makes JetStream deliver the message again, and the
        // checkpoint skips it then: failures here are not errors. The last message of each
        // partition is acknowledged with the server's confirmation, which comes after the
        // acknowledgements sent before it on the same connection have been processed.
        let mut last = vec![None; self.partitions.len()];
        for (index, (slot, _)) in acks.iter().enumerate() {
            last[*slot] = Some(index);
        }
        for (index, (slot, message)) in acks.iter().enumerate() {
            if last[*slot] != Some(index) {
                let _ = message.ack().await;
            }
        }
        let confirmed = last
            .iter()
            .flatten()
            .map(|&index| acks[index].1.double_ack());
        futures_util::future::join_all(confirmed).await;
        match failure {
            Some(error) => Err(error),
            None => Ok(done),
        }
    }

    /// Applies one message to the read model if it is new and in order.
    fn apply(&mut self, slot: usize, message: &Message) -> Result<Step, ConsumeError> {
        let info = message.info().map_err(|e| {
            let cause = format!("its JetStream reply subject does not parse ({e})");
            self.corrupt(slot, message, 0, cause)
        })?;
        let (delivered, stream_sequence, delivery) =
            (info.delivered, info.stream_sequence, info.consumer_sequence);
        let event = WireEvent::from_nats_message(message)
            .map_err(|e| self.corrupt(slot, message, stream_sequence, wire_problem(e)))?;
        let partition = &mut self.partitions[slot];
        match partition.check_order(delivery, delivered, event.global_position) {
            Order::Next => {}
            Order::Duplicate => return Ok(Step::Duplicate),
            Order::Gap { last } => {
                return Ok(Step::OutOfOrder(format!(
                    "delivery {delivery} followed delivery {last}"
                )));
            }
            Order::RedeliveredUnapplied => {
                return Ok(Step::OutOfOrder(format!(
                    "stream message {stream_sequence} (global position {}) was delivered again before it was applied",
                    event.global_position
                )));
            }
        }
        let record = event.record();
        let handled = R::HANDLES.iter().any(|h| h.matches(&record));
        if handled {
            let index = partition.index;
            self.read_model
                .apply(&record)
                .map_err(|error| failed::<R>(&event, index, error))?;
        }
        self.partitions[slot].applied = event.global_position;
        Ok(Step::Applied { handled })
    }

    fn corrupt(
        &self,
        slot: usize,
        message: &Message,
        stream_sequence: u64,
        cause: String,
    ) -> ConsumeError {
        ConsumeError::Corrupt {
            read_model: R::NAME,
            stream: self.options.stream.clone(),
            consumer: self.partitions[slot].consumer_name.clone(),
            subject: message.subject.to_string(),
            stream_sequence,
            cause,
        }
    }
}

/// What is wrong with a message that does not decode, for [`ConsumeError::Corrupt`]: the
/// decoder's finding without its context (the error names the subject already) and without
/// its advice (the consumer's comes after it).
fn wire_problem(error: WireError) -> String {
    let (problem, at) = match error {
        WireError::NoHeaders { at } => ("it has no headers".to_owned(), at),
        WireError::MissingHeader { header, at } => (format!("it has no `{header}` header"), at),
        WireError::BadHeader {
            header,
            value,
            problem,
            at,
        } => (
            format!("its header `{header}` is `{value}`, which is {problem}"),
            at,
        ),
        WireError::PayloadNotUtf8 { at, problem } => (
            format!("its payload is not UTF-8 JSON text ({problem})"),
            at,
        ),
        other => return other.to_string(),
    };
    match at.event_id {
        Some(id) => format!("{problem} (event {id})"),
        None => problem,
    }
}

enum Step {
    Applied { handled: bool },
    Duplicate,
    OutOfOrder(String),
}

fn failed<R: ReadModel>(event: &WireEvent, partition: u32, error: ApplyError) -> ConsumeError {
    let stream = StreamKey {
        aggregate_type: event.aggregate_type.clone(),
        id: event.stream_id.clone(),
    };
    let (event_type, version, global_position) = (
        event.event_type.clone(),
        event.stream_version,
        event.global_position,
    );
    match error {
        ApplyError::Decode(cause) => ConsumeError::Decode {
            read_model: R::NAME,
            event_type,
            stream,
            version,
            global_position,
            partition,
            cause: Box::new(cause),
        },
        ApplyError::Handler(cause) => ConsumeError::Handler {
            read_model: R::NAME,
            event_type,
            stream,
            version,
            global_position,
            partition,
            cause,
        },
        // `ApplyError` is non-exhaustive: a future kind is reported as a handler failure.
        other => ConsumeError::Handler {
            read_model: R::NAME,
            event_type,
            stream,
            version,
            global_position,
            partition,
            cause: other.to_string().into(),
        },
    }
}

/// The next item of any of `streams` (scanning from `start`, for fairness), with its slot.
async fn next_message(
    streams: &mut [Option<pull::Stream>],
    start: usize,
) -> (
    usize,
    Option<Result<Message, async_nats::jetstream::consumer::pull::MessagesError>>,
) {
    let count = streams.len();
    poll_fn(|cx| {
        for offset in 0..count {
            let slot = (start + offset) % count;
            if let Some(stream) = streams[slot].as_mut() {
                if let Poll::Ready(item) = stream.poll_next_unpin(cx) {
                    return Poll::Ready((slot, item));
                }
            }
        }
        Poll::Pending
    })
    .await
}

fn validate<R: ReadModel>(options: &ConsumerOptions, group: &str) -> Result<(), String> {
    wire::validate_prefix(&options.prefix).map_err(|e| e.to_string())?;
    if options.partitions == 0 {
        return Err("`partitions` is 0; use the publisher's partition count (default 16)".into());
    }
    if options.members == 0 {
        return Err("`members` is 0; a group has at least one member".into());
    }
    if options.member >= options.members {
        return Err(format!(
            "`member` is {} but the group has {} members: use 0 to {}",
            options.member,
            options.members,
            options.members - 1
        ));
    }
    if options.members > options.partitions {
        return Err(format!(
            "the group has {} members but only {} partitions: members {}.. would take none; use at most {} members, or more partitions (in the publisher too)",
            options.members, options.partitions, options.partitions, options.partitions
        ));
    }
    let name_ok = |name: &str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !name_ok(group) {
        return Err(format!(
            "group `{group}` cannot name a JetStream consumer: use letters, digits, `-` and `_` only (set `group`)"
        ));
    }
    if !name_ok(&options.stream) {
        return Err(format!(
            "stream `{}` is not a JetStream stream name: use letters, digits, `-` and `_` only",
            options.stream
        ));
    }
    if R::HANDLES.is_empty() {
        return Err("the read model handles no event".into());
    }
    Ok(())
}

/// The key of a partition's checkpoint: `{read model}@{stream}/{group}#p{k}/{partitions}`.
///
/// It names everything the position belongs to: the group's durable consumer
/// (`{group}-p{k}` of `stream`) and the partitioning, so that projectors of one read model
/// type in other groups (a blue/green rebuild under another group) or on other streams can
/// share one checkpoint store without overwriting each other's checkpoints.
fn checkpoint_key(
    read_model: &str,
    stream: &str,
    group: &str,
    partition: u32,
    partitions: u32,
) -> String {
    format!("{read_model}@{stream}/{group}#p{partition}/{partitions}")
}

fn partitions_of<R: ReadModel>(options: &ConsumerOptions, group: &str) -> Vec<Partition> {
    let mut aggregates: Vec<&str> = R::HANDLES.iter().map(|h| h.aggregate_type).collect();
    aggregates.sort_unstable();
    aggregates.dedup();
    (0..options.partitions)
        .filter(|k| k % options.members == options.member)
        .map(|index| Partition {
            index,
            consumer_name: format!("{group}-p{index}"),
            checkpoint_key: checkpoint_key(
                R::NAME,
                &options.stream,
                group,
                index,
                options.partitions,
            ),
            filter: match aggregates.as_slice() {
                [aggregate] => format!(
                    "{}.{index}.{}.>",
                    options.prefix,
                    wire::escape_token(aggregate)
                ),
                _ => wire::partition_filter(&options.prefix, index),
            },
            consumer: None,
            applied: 0,
            committed: 0,
            loaded: false,
            last_delivery: None,
            restart: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(applied: u64, last_delivery: Option<u64>) -> Partition {
        Partition {
            index: 0,
            consumer_name: "g-p0".to_owned(),
            checkpoint_key: checkpoint_key("rm", "S", "g", 0, 1),
            filter: "es.0.>".to_owned(),
            consumer: None,
            applied,
            committed: applied,
            loaded: true,
            last_delivery,
            restart: None,
        }
    }

    #[test]
    fn a_redelivered_duplicate_moves_the_delivery_sequence_on() {
        // Deliveries 1..=10 seen, events up to position 5 applied.
        let mut p = partition(5, Some(10));
        // Delivery 11 redelivers (2nd delivery) an applied event: skipped, and counted.
        assert_eq!(p.check_order(11, 2, 5), Order::Duplicate);
        // So delivery 12, a new event, follows it: no gap.
        assert_eq!(p.check_order(12, 1, 6), Order::Next);
        assert_eq!(p.last_delivery, Some(12));
        // A first delivery of an applied event (a recreated consumer) likewise.
        assert_eq!(p.check_order(13, 1, 4), Order::Duplicate);
        assert_eq!(p.check_order(14, 1, 7), Order::Next);
    }

    #[test]
    fn gaps_and_redeliveries_of_unapplied_events_are_out_of_order() {
        let mut p = partition(5, Some(10));
        assert_eq!(p.check_order(12, 1, 6), Order::Gap { last: 10 });
        // A duplicate after a gap is a gap too: what was missed may be newer.
        assert_eq!(p.check_order(12, 2, 3), Order::Gap { last: 10 });
        assert_eq!(p.check_order(11, 2, 6), Order::RedeliveredUnapplied);
        // A fresh session (no delivery seen yet) takes any first sequence.
        let mut fresh = partition(5, None);
        assert_eq!(fresh.check_order(40, 1, 6), Order::Next);
    }

    #[test]
    fn checkpoint_keys_name_the_read_model_stream_group_and_partitioning() {
        assert_eq!(
            checkpoint_key("balances", "ES_EVENTS", "balances", 3, 16),
            "balances@ES_EVENTS/balances#p3/16"
        );
        assert_ne!(
            checkpoint_key("balances", "ES_EVENTS", "balances", 3, 16),
            checkpoint_key("balances", "ES_EVENTS", "v2", 3, 16)
        );
    }

    #[test]
    fn checkpoint_errors_say_what_the_failure_left_behind() {
        let error = |during: String| ConsumeError::Checkpoint {
            read_model: "rm",
            during,
            cause: Box::new(StoreError::backend("down")),
        };
        let commit = error(DURING_COMMIT.to_owned()).to_string();
        assert!(
            commit.contains("nothing of this batch was acknowledged"),
            "{commit}"
        );
        let load = error(format!("{DURING_LOAD} `k`")).to_string();
        assert!(load.contains("loading checkpoint `k`: "), "{load}");
        assert!(!load.contains("batch"), "{load}");
        let reset = error(DURING_RESET.to_owned()).to_string();
        assert!(reset.contains("run the rebuild again"), "{reset}");
        assert!(!reset.contains("batch"), "{reset}");
    }

    #[test]
    fn corrupt_messages_name_the_problem_once() {
        let at = crate::error::MessageContext {
            subject: Some("es.1.A.E".to_owned()),
            event_id: Some("id-1".to_owned()),
        };
        let problem = wire_problem(WireError::BadHeader {
            header: wire::GLOBAL_POSITION,
            value: "x".to_owned(),
            problem: "not an unsigned integer".to_owned(),
            at: at.clone(),
        });
        assert_eq!(
            problem,
            "its header `Es-Global-Position` is `x`, which is not an unsigned integer (event id-1)"
        );
        let problem = wire_problem(WireError::NoHeaders {
            at: crate::error::MessageContext {
                event_id: None,
                ..at
            },
        });
        assert_eq!(problem, "it has no headers");
    }
}
