//! The read side: read models declared with `#[read_model]`, fed the global log by a
//! [`Projector`] that keeps their checkpoints.

mod checkpoint;
#[cfg(feature = "async")]
mod checkpoint_async;
mod projector;
mod reaction;
mod read_model;

#[doc(hidden)]
pub mod private;

pub(crate) use checkpoint::MemoryCheckpoints;
pub use checkpoint::{CheckpointStore, Checkpointer, Lease, decide_lease};
#[cfg(feature = "async")]
pub use checkpoint_async::{AsyncCheckpointStore, AsyncCheckpointer};
pub use projector::{
    CaughtUp, DEFAULT_BATCH_SIZE, Progress, ProjectionError, Projector, RunOptions, StopHandle,
};
pub use reaction::Reaction;
pub use read_model::{ApplyError, Handled, ReadModel};
