//! [`StateCache`]: recent aggregate states kept in memory, so a hot aggregate is not
//! replayed for every command.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::decision::Versioned;

/// A bounded, in-process cache of recent aggregate states (least recently used out), for
/// [`Repository::with_cache`](super::Repository::with_cache) and its async twin.
///
/// A cached state is only ever a starting point: every load and command still reads the
/// events appended after it (usually none, at the cost of one indexed lookup), so a state
/// another process moved on is caught up, and a command decided on a stale state is
/// caught by the expected version at append and retried. The cache never serves a state
/// older than the store holds. Clones of a repository share its cache.
pub struct StateCache<A> {
    inner: Mutex<Lru<A>>,
}

struct Lru<A> {
    capacity: usize,
    /// id -> (state, the tick of its last use).
    entries: HashMap<String, (Versioned<A>, u64)>,
    /// tick -> id, oldest first.
    order: BTreeMap<u64, String>,
    tick: u64,
}

impl<A> fmt::Debug for StateCache<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lru = self.lock();
        f.debug_struct("StateCache")
            .field("capacity", &lru.capacity)
            .field("len", &lru.entries.len())
            .finish()
    }
}

impl<A: Clone> StateCache<A> {
    /// A cache of at most `capacity` states (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Lru {
                capacity: capacity.max(1),
                entries: HashMap::new(),
                order: BTreeMap::new(),
                tick: 0,
            }),
        }
    }
}

impl<A> StateCache<A> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Lru<A>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many states the cache holds.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the cache holds no state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every state.
    pub fn clear(&self) {
        let mut lru = self.lock();
        lru.entries.clear();
        lru.order.clear();
    }
}

/// What the repositories need of a cache, without a `Clone` bound on their aggregate:
/// only [`StateCache::new`] (which needs `A: Clone`) makes one.
pub(crate) trait Cache<A>: Send + Sync + fmt::Debug {
    /// A copy of the cached state of `id`.
    fn get(&self, id: &str) -> Option<Versioned<A>>;
    /// Caches a copy of `state` at `version` for `id`, unless a newer one is cached.
    fn put(&self, id: &str, state: &A, version: u64);
}

impl<A: Clone + Send> Cache<A> for StateCache<A> {
    fn get(&self, id: &str) -> Option<Versioned<A>> {
        let mut lru = self.lock();
        lru.tick += 1;
        let tick = lru.tick;
        let (state, used) = lru.entries.get_mut(id)?;
        let old = std::mem::replace(used, tick);
        let copy = state.clone();
        lru.order.remove(&old);
        lru.order.insert(tick, id.to_owned());
        Some(copy)
    }

    fn put(&self, id: &str, state: &A, version: u64) {
        let state = Versioned {
            state: state.clone(),
            version,
        };
        let mut lru = self.lock();
        lru.tick += 1;
        let tick = lru.tick;
        if let Some((cached, used)) = lru.entries.get_mut(id) {
            if cached.version > state.version {
                return;
            }
            *cached = state;
            let old = std::mem::replace(used, tick);
            lru.order.remove(&old);
            lru.order.insert(tick, id.to_owned());
            return;
        }
        if lru.entries.len() >= lru.capacity {
            if let Some((_, oldest)) = lru.order.pop_first() {
                lru.entries.remove(&oldest);
            }
        }
        lru.entries.insert(id.to_owned(), (state, tick));
        lru.order.insert(tick, id.to_owned());
    }
}

/// A repository's handle on its cache.
pub(crate) type SharedCache<A> = Option<Arc<dyn Cache<A>>>;
