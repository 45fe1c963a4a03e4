//! [`Snapshot`]: an aggregate's state at a stream version, as a store keeps it.

use std::time::SystemTime;

use serde_json::value::RawValue;

/// An aggregate's state after the events up to [`stream_version`](Snapshot::stream_version),
/// serialized, so that a load can start from it and read only the events after it.
///
/// A store keeps any number per stream, one per stream version; the repository takes and
/// reads them for aggregates declared with `#[aggregate(snapshot_every = N)]`. A snapshot
/// is only ever a shortcut: the events stay the truth, so a snapshot that is missing, of
/// another [`snapshot_version`](Snapshot::snapshot_version) or unreadable makes the
/// repository rebuild the state from the events.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The stream version the state reflects (its last applied event).
    pub stream_version: u64,
    /// The shape of the serialized state: snapshots of another version are not read.
    pub snapshot_version: u32,
    /// The state, as JSON.
    pub state: Box<RawValue>,
    /// When the snapshot was taken (set by the store when it saves it; ignored on save).
    pub taken_at: SystemTime,
}

impl Snapshot {
    /// A snapshot of a state at `stream_version` (the store sets
    /// [`taken_at`](Snapshot::taken_at) when it saves it).
    pub fn new(stream_version: u64, snapshot_version: u32, state: Box<RawValue>) -> Self {
        Self {
            stream_version,
            snapshot_version,
            state,
            taken_at: SystemTime::UNIX_EPOCH,
        }
    }
}

/// Equal when the versions are and the states are the same JSON (a store may re-format
/// the text, as PostgreSQL's `jsonb` does); the time taken is not compared.
impl PartialEq for Snapshot {
    fn eq(&self, other: &Self) -> bool {
        self.stream_version == other.stream_version
            && self.snapshot_version == other.snapshot_version
            && (self.state.get() == other.state.get()
                || matches!(
                    (
                        serde_json::from_str::<serde_json::Value>(self.state.get()),
                        serde_json::from_str::<serde_json::Value>(other.state.get()),
                    ),
                    (Ok(a), Ok(b)) if a == b
                ))
    }
}
