//! The read side: read models declared with `#[read_model]`, fed the global log by a
//! [`Projector`] that keeps their checkpoints.

mod checkpoint;
#[cfg(feature = "async")]
mod checkpoint_async;
mod engine;
mod error;
mod projector;
#[cfg(feature = "async")]
mod projector_async;
mod reaction;
mod read_model;
mod stop;

#[doc(hidden)]
pub mod private;

pub(crate) use checkpoint::MemoryCheckpoints;
pub use checkpoint::{CheckpointStore, Checkpointer, Lease, decide_lease};
#[cfg(feature = "async")]
pub use checkpoint_async::{AsyncCheckpointStore, AsyncCheckpointer};
pub use error::ProjectionError;
pub use projector::{CaughtUp, DEFAULT_BATCH_SIZE, Progress, Projector, RunOptions};
#[cfg(feature = "async")]
pub use projector_async::AsyncProjector;
pub use reaction::Reaction;
pub use read_model::{ApplyError, Handled, ReadModel};
pub use stop::{StopHandle, Waited};
