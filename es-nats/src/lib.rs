//! es-nats: publishes the es event log to NATS JetStream, and reads it back.
//!
//! * [`wire`]: the wire format, one NATS message per event (subject, headers, payload).
//! * [`Publisher`]: follows an [`AsyncEventStore`](es_core::AsyncEventStore)'s global log
//!   and publishes every event to a JetStream stream exactly once, in global order.
//! * [`JetStreamProjector`]: feeds an es read model (`#[read_model]`) on another machine
//!   from durable consumers of that stream, one per partition, applying each partition in
//!   order and acknowledging only what its [`PartitionCheckpoints`] committed.
//! * `sqlite` (feature `sqlite`): `ExactlyOncePartitions`, a remote read model's SQLite
//!   tables and checkpoints committed in one transaction.
//!
//! Both run until a [`StopHandle`] (es-core's, the one that stops projectors) is stopped;
//! `es_postgres::AsyncPostgresStore::listen` on the same handle wakes the publisher at
//! each committed append. The tests start private `nats-server -js` instances: install
//! `nats-server` to run them.
#![warn(missing_docs)]

mod consumer;
mod error;
mod publisher;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod wire;

pub use consumer::{
    ConsumeError, Consumed, ConsumerOptions, DEFAULT_CONSUMER_BATCH, JetStreamProjector, Lag,
    PartitionCheckpoints,
};
pub use error::{MessageContext, PublishError, WireError};
/// Stops (or wakes) a [`Publisher::run`] or a [`JetStreamProjector::run`]: es-core's
/// handle, which also stops projectors, so one handle can stop a whole service.
pub use es_core::StopHandle;
pub use publisher::{
    DEFAULT_PUBLISHER_NAME, Published, Publisher, PublisherOptions, PublisherStatus,
};
pub use wire::WireEvent;
