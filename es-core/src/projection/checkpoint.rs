//! Checkpoints: how far each read model has read the global log, and which projector
//! instance runs it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::projection::read_model::ReadModel;
use crate::store::{InMemoryStore, StoreError};

/// What [`CheckpointStore::acquire_lease`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// The caller holds the lease until `until` (it was free, expired, or already the
    /// caller's and is now renewed).
    Acquired {
        /// When the lease expires unless renewed.
        until: SystemTime,
    },
    /// Another instance holds it.
    HeldBy {
        /// The other instance's owner id.
        owner: String,
        /// When its lease expires unless it renews it.
        until: SystemTime,
    },
}

/// Keeps, per read-model name, the global position of the last event the read model
/// applied, and a lease naming the one projector instance that runs it.
///
/// [`InMemoryStore`], `es_sqlite::SqliteStore` and `es_postgres::PostgresStore` implement
/// it, next to their events; the `es-store-tests` suite (`checkpoint_tests!`) specifies
/// its behaviour.
pub trait CheckpointStore: Send + Sync {
    /// The position stored for `read_model` (0: none, read from the start).
    fn load_checkpoint(&self, read_model: &str) -> Result<u64, StoreError>;

    /// Stores `position` for `read_model`, replacing the previous one.
    fn save_checkpoint(&self, read_model: &str, position: u64) -> Result<(), StoreError>;

    /// Forgets the checkpoint of `read_model` (it then loads as 0); the lease is kept.
    fn delete_checkpoint(&self, read_model: &str) -> Result<(), StoreError>;

    /// Takes (or renews) the lease of `read_model` for `owner` for `ttl`, unless another
    /// owner holds an unexpired one. Atomic across the store's clients.
    fn acquire_lease(
        &self,
        read_model: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError>;

    /// Gives the lease up, if `owner` holds it.
    fn release_lease(&self, read_model: &str, owner: &str) -> Result<(), StoreError>;
}

/// How a [`Projector`](crate::Projector) keeps the progress of read model `R`.
///
/// Every [`CheckpointStore`] is one: it saves the position after the events were applied
/// (at-least-once: a crash in between applies them again). `es_sqlite::ExactlyOnce` and
/// `es_postgres::ExactlyOnce` are others, which commit the read model's own writes with the
/// checkpoint in one transaction, fenced by the lease.
pub trait Checkpointer<R: ReadModel> {
    /// The position to resume after (0: from the start).
    fn load(&mut self, read_model: &mut R) -> Result<u64, StoreError>;

    /// Records that every event up to `position` is applied to `read_model`.
    fn commit(&mut self, read_model: &mut R, position: u64) -> Result<(), StoreError>;

    /// Called after [`commit`](Checkpointer::commit) failed, with the position last
    /// committed and the one the read model has applied up to; returns the position to go
    /// on after. The default keeps what was applied (it is committed with the next batch);
    /// a checkpointer whose commit also writes the read model resets what was not written
    /// and goes back to `committed`.
    fn after_failed_commit(&mut self, read_model: &mut R, committed: u64, applied: u64) -> u64 {
        let _ = (read_model, committed);
        applied
    }

    /// Resets `read_model` ([`ReadModel::reset`]) and its checkpoint, for a rebuild.
    fn reset(&mut self, read_model: &mut R) -> Result<(), StoreError>;

    /// See [`CheckpointStore::acquire_lease`].
    fn acquire_lease(
        &mut self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError>;

    /// See [`CheckpointStore::release_lease`].
    fn release_lease(&mut self, name: &str, owner: &str) -> Result<(), StoreError>;
}

impl<R: ReadModel, C: CheckpointStore> Checkpointer<R> for C {
    fn load(&mut self, _: &mut R) -> Result<u64, StoreError> {
        self.load_checkpoint(R::NAME)
    }

    fn commit(&mut self, _: &mut R, position: u64) -> Result<(), StoreError> {
        self.save_checkpoint(R::NAME, position)
    }

    fn reset(&mut self, read_model: &mut R) -> Result<(), StoreError> {
        // The checkpoint first: a crash after it leaves a read model that is rebuilt again.
        self.delete_checkpoint(R::NAME)?;
        read_model.reset();
        Ok(())
    }

    fn acquire_lease(
        &mut self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        CheckpointStore::acquire_lease(self, name, owner, ttl)
    }

    fn release_lease(&mut self, name: &str, owner: &str) -> Result<(), StoreError> {
        CheckpointStore::release_lease(self, name, owner)
    }
}

macro_rules! forward_checkpoint_store {
    ($($pointer:ty),+) => {$(
        impl<S: CheckpointStore + ?Sized> CheckpointStore for $pointer {
            fn load_checkpoint(&self, read_model: &str) -> Result<u64, StoreError> {
                (**self).load_checkpoint(read_model)
            }
            fn save_checkpoint(&self, read_model: &str, position: u64) -> Result<(), StoreError> {
                (**self).save_checkpoint(read_model, position)
            }
            fn delete_checkpoint(&self, read_model: &str) -> Result<(), StoreError> {
                (**self).delete_checkpoint(read_model)
            }
            fn acquire_lease(
                &self,
                read_model: &str,
                owner: &str,
                ttl: Duration,
            ) -> Result<Lease, StoreError> {
                (**self).acquire_lease(read_model, owner, ttl)
            }
            fn release_lease(&self, read_model: &str, owner: &str) -> Result<(), StoreError> {
                (**self).release_lease(read_model, owner)
            }
        }
    )+};
}

forward_checkpoint_store!(&S, Arc<S>, Box<S>);

/// The checkpoints of an [`InMemoryStore`], shared by its clones.
pub(crate) type MemoryCheckpoints = Arc<Mutex<HashMap<String, Entry>>>;

#[derive(Debug, Default)]
pub(crate) struct Entry {
    position: u64,
    lease: Option<(String, SystemTime)>,
}

/// Decides a lease request against the current holder, the same way in every store:
/// free, expired or the caller's own is taken; another's is reported.
pub fn decide_lease(
    current: Option<(&str, SystemTime)>,
    owner: &str,
    now: SystemTime,
    ttl: Duration,
) -> Lease {
    match current {
        Some((holder, until)) if holder != owner && until > now => Lease::HeldBy {
            owner: holder.to_owned(),
            until,
        },
        _ => Lease::Acquired {
            until: now.checked_add(ttl).unwrap_or(now),
        },
    }
}

impl InMemoryStore {
    fn with_checkpoints<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> T) -> T {
        // Nothing panics while the lock is held: a poisoned lock guards consistent data.
        let mut guard = self
            .checkpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }
}

impl CheckpointStore for InMemoryStore {
    fn load_checkpoint(&self, read_model: &str) -> Result<u64, StoreError> {
        Ok(self.with_checkpoints(|all| all.get(read_model).map_or(0, |e| e.position)))
    }

    fn save_checkpoint(&self, read_model: &str, position: u64) -> Result<(), StoreError> {
        self.with_checkpoints(|all| {
            all.entry(read_model.to_owned()).or_default().position = position
        });
        Ok(())
    }

    fn delete_checkpoint(&self, read_model: &str) -> Result<(), StoreError> {
        self.with_checkpoints(|all| {
            if let Some(entry) = all.get_mut(read_model) {
                entry.position = 0;
            }
        });
        Ok(())
    }

    fn acquire_lease(
        &self,
        read_model: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let now = SystemTime::now();
        Ok(self.with_checkpoints(|all| {
            let entry = all.entry(read_model.to_owned()).or_default();
            let current = entry.lease.as_ref().map(|(o, until)| (o.as_str(), *until));
            let lease = decide_lease(current, owner, now, ttl);
            if let Lease::Acquired { until } = lease {
                entry.lease = Some((owner.to_owned(), until));
            }
            lease
        }))
    }

    fn release_lease(&self, read_model: &str, owner: &str) -> Result<(), StoreError> {
        self.with_checkpoints(|all| {
            if let Some(entry) = all.get_mut(read_model) {
                if entry.lease.as_ref().is_some_and(|(o, _)| o == owner) {
                    entry.lease = None;
                }
            }
        });
        Ok(())
    }
}
