//! The connection pool of a [`PostgresStore`]: checking connections out and back in,
//! checking idle ones, and running a call again on a new connection when the first one
//! broke before anything could have taken effect.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use es_core::StoreError;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Statement};

use crate::error::{AcquireTimeout, backend};
use crate::statements::Statements;
use crate::store::{Inner, PostgresStore};

/// How long [`is_valid`](Client::is_valid) may take before an idle connection counts as dead.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(1);

/// The connections: `open` counts idle ones and those in use (or being opened).
pub(crate) struct Pool {
    pub(crate) idle: Vec<Idle>,
    pub(crate) open: usize,
}

impl Drop for Pool {
    /// The last clone of the store is gone: its idle connections close, off the tokio
    /// runtime if it was dropped inside one (where dropping a driver client panics).
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.idle);
        if !idle.is_empty() {
            crate::offload::drop_off_runtime(idle);
        }
    }
}

pub(crate) struct Idle {
    pub(crate) conn: Conn,
    pub(crate) since: Instant,
}

/// A pooled connection with the store's statements prepared on it.
pub(crate) struct Conn {
    pub(crate) client: Client,
    pub(crate) prepared: Statements<Statement>,
}

impl Conn {
    /// Whether the connection is closed, after taking in, without waiting, what the server
    /// sent since it was last used: a server that ended the session while it sat idle (a
    /// restart, `pg_terminate_backend`, `idle_session_timeout`) sends an error and closes
    /// the socket, which the driver only notices when it reads.
    fn is_closed(&mut self) -> bool {
        if !self.client.is_closed() {
            // One nonblocking poll of the connection; what it yields (a notification, or
            // the error the server sent before closing) does not matter, only whether the
            // connection ended.
            let _ = self.client.notifications().iter().next();
        }
        self.client.is_closed()
    }

    /// Whether the connection is unusable, after a call on it failed: closed, or not
    /// answering a round trip (a live connection that reported a server error answers).
    fn is_broken(&mut self) -> bool {
        self.is_closed() || self.client.is_valid(VALIDATION_TIMEOUT).is_err()
    }
}

/// What a call run by [`PostgresStore::with_conn`] did on its connection, which decides
/// whether it may run again on a new connection after the first one broke.
#[derive(Debug, Default)]
pub(crate) struct Attempt {
    /// Set once running the call again could repeat something: an append's transaction
    /// began (it may have committed), or a read handed rows to its visitor.
    irrevocable: bool,
    /// Set when a read stopped before its last row (its visitor said stop, or a row was
    /// damaged): the server is still sending the rest, and the synchronous client would
    /// only read it on the connection's next use, while the server holds the query's
    /// snapshot and locks. Such a connection is closed instead of going back to the pool.
    pub(crate) abandoned: bool,
}

impl Attempt {
    /// From here on the call must not run again.
    pub(crate) fn irrevocable(&mut self) {
        self.irrevocable = true;
    }

    /// Whether the call may no longer run again (the async store's pool asks).
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn is_irrevocable(&self) -> bool {
        self.irrevocable
    }
}

impl PostgresStore {
    /// Runs `f` on a pooled connection, waiting for one if all are busy (for at most
    /// [`Options::acquire_timeout`]). A connection on which `f` failed with a backend
    /// error is closed, not given back.
    ///
    /// If `f` failed with a backend error because its connection was broken (the server
    /// closed it while it sat in the pool, or it died as it was used) and `f` had not yet
    /// marked its [`Attempt`] irrevocable, `f` runs once more on a newly opened
    /// connection: nothing it did can have taken effect.
    ///
    /// [`Options::acquire_timeout`]: crate::Options::acquire_timeout
    ///
    /// Inside a tokio runtime this runs on a thread of its own (see [`crate::offload`]).
    pub(crate) fn with_conn<T: Send>(
        &self,
        f: impl FnMut(&mut Conn, &mut Attempt) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        crate::offload::blocking_store(|| self.with_conn_here(f))
    }

    /// [`with_conn`](PostgresStore::with_conn) on the current thread, which must be one
    /// the driver may run on.
    pub(crate) fn with_conn_here<T>(
        &self,
        mut f: impl FnMut(&mut Conn, &mut Attempt) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut checkout = self.checkout()?;
        let mut retried = false;
        loop {
            let Some(conn) = checkout.conn.as_mut() else {
                return Err(StoreError::backend(
                    "internal error: a checked-out pool slot holds no connection",
                ));
            };
            let mut attempt = Attempt::default();
            let result = f(conn, &mut attempt);
            if !matches!(result, Err(StoreError::Backend(_))) {
                if attempt.abandoned {
                    // Dropping the client closes the socket; the server ends the query.
                    checkout.conn = None;
                }
                return result;
            }
            let retry = !retried && !attempt.irrevocable && conn.is_broken();
            // It may have broken the connection (or left it mid-transaction): close it.
            // Dropping `checkout` without a connection then frees its slot.
            checkout.conn = None;
            if !retry {
                return result;
            }
            // The slot is still ours: fill it with a new connection, and run `f` again.
            retried = true;
            checkout.conn = Some(self.inner.open()?);
        }
    }

    /// Takes a connection slot and fills it with a live connection, waiting for a slot at
    /// most [`Options::acquire_timeout`].
    ///
    /// [`Options::acquire_timeout`]: crate::Options::acquire_timeout
    fn checkout(&self) -> Result<Checkout<'_>, StoreError> {
        let inner = &*self.inner;
        let timeout = inner.options.acquire_timeout;
        // `None` if the timeout is too large to represent: wait as long as it takes.
        let deadline = Instant::now().checked_add(timeout);
        let mut pool = lock(&inner.pool);
        loop {
            if let Some(idle) = pool.idle.pop() {
                drop(pool);
                // The slot is ours from here: `checkout` frees it if anything fails.
                let mut checkout = Checkout { inner, conn: None };
                let Idle { mut conn, since } = idle;
                let alive = !conn.is_closed()
                    && (since.elapsed() < inner.options.check_idle_after
                        || conn.client.is_valid(VALIDATION_TIMEOUT).is_ok());
                checkout.conn = Some(if alive {
                    conn
                } else {
                    drop(conn);
                    inner.open()?
                });
                return Ok(checkout);
            }
            if pool.open < inner.options.max_connections {
                pool.open += 1;
                drop(pool);
                let mut checkout = Checkout { inner, conn: None };
                checkout.conn = Some(inner.open()?);
                return Ok(checkout);
            }
            let Some(deadline) = deadline else {
                pool = inner
                    .available
                    .wait(pool)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(StoreError::backend(AcquireTimeout {
                    max_connections: inner.options.max_connections,
                    timeout,
                }));
            }
            // A wake-up (given back, freed, or spurious) goes round the loop again, which
            // rechecks the pool and the deadline.
            (pool, _) = inner
                .available
                .wait_timeout(pool, remaining)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Inner {
    /// Opens a connection outside the pool (for an exactly-once checkpointer), as the pool
    /// opens its own: the store's URL, TLS and statements. The errors say which step failed.
    pub(crate) fn open_dedicated(&self) -> Result<Conn, crate::Error> {
        let mut client = self
            .config
            .connect(self.tls.clone())
            .map_err(crate::store::connect_error)?;
        let prepared = self
            .sql
            .prepare(&mut client)
            .map_err(|source| crate::Error::Migrate {
                schema: self.schema.clone(),
                cause: source,
            })?;
        Ok(Conn { client, prepared })
    }

    /// Opens a connection and prepares the statements on it.
    pub(crate) fn open(&self) -> Result<Conn, StoreError> {
        let mut client = self.config.connect(self.tls.clone()).map_err(backend)?;
        let prepared = self.sql.prepare(&mut client).map_err(backend)?;
        Ok(Conn { client, prepared })
    }
}

/// One slot of the pool, taken. Dropping it gives the connection back, or, if there is
/// none (it failed or was never opened), if it is closed or if the thread is panicking,
/// frees the slot: a slot is never leaked.
struct Checkout<'a> {
    inner: &'a Inner,
    conn: Option<Conn>,
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        let conn = self
            .conn
            .take()
            .filter(|conn| !conn.client.is_closed() && !std::thread::panicking());
        let mut pool = lock(&self.inner.pool);
        match conn {
            Some(conn) => pool.idle.push(Idle {
                conn,
                since: Instant::now(),
            }),
            None => pool.open = pool.open.saturating_sub(1),
        }
        drop(pool);
        self.inner.available.notify_one();
    }
}

/// Locks the pool. Its updates cannot be interrupted half-way, so a poisoned lock is still
/// usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
