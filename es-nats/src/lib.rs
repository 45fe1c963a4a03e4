//! es-nats: publishes the es event log to NATS JetStream, and reads it back.
//!
//! * [`wire`]: the wire format, one NATS message per event (subject, headers, payload).
//! * [`Publisher`]: follows an [`AsyncEventStore`](es_core::AsyncEventStore)'s global log
//!   and publishes every event to a JetStream stream exactly once, in global order.
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
