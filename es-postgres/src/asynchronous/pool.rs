//! The connection pool of an [`AsyncPostgresStore`]: deadpool, around a manager whose
//! connections carry the store's prepared statements, with the sync store's rules (see
//! [`crate::pool`]): a connection that sat idle is checked before use, one on which a call
//! failed (or was cancelled, or stopped reading early) is closed instead of being given
//! back, and a call whose connection turned out broken before anything irrevocable
//! happened runs once more on a new connection.

use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult};
use deadpool_postgres::{ClientWrapper, ManagerConfig, RecyclingMethod};
use es_core::StoreError;
use tokio_postgres::Statement;

use super::AsyncPostgresStore;
use crate::error::{AcquireTimeout, backend};
use crate::pool::Attempt;
use crate::statements::Statements;
use crate::tls::Tls;

/// How long the round trip that checks a connection may take before it counts as dead
/// (as in the sync store).
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(1);

/// A pooled connection with the store's statements prepared on it.
pub(crate) struct Conn {
    /// deadpool-postgres's client: dropping it aborts the connection's task, which closes
    /// the socket at once (the server then ends the session and any query it was sending).
    pub(crate) client: ClientWrapper,
    pub(crate) prepared: Statements<Statement>,
    /// When the connection was opened or last given back to the pool.
    idle_since: Instant,
}

impl Conn {
    /// Whether the server answers a round trip in time.
    async fn answers(&self) -> bool {
        matches!(
            tokio::time::timeout(VALIDATION_TIMEOUT, self.client.simple_query("")).await,
            Ok(Ok(_))
        )
    }

    /// Whether the connection is unusable, after a call on it failed: closed, or not
    /// answering a round trip (a live connection that reported a server error answers).
    async fn is_broken(&self) -> bool {
        self.client.is_closed() || !self.answers().await
    }
}

/// Opens, checks and closes the store's connections for deadpool.
pub(crate) struct Manager {
    /// deadpool-postgres's manager opens the connections (with the URL's TLS connector,
    /// spawning each connection's task on the runtime) and recycles them the `Fast` way:
    /// a connection whose task has ended (the server closed it, or I/O failed; tokio-postgres
    /// notices at once, as its task always reads) is not handed out.
    pg: deadpool_postgres::Manager,
    sql: Statements<String>,
    check_idle_after: Duration,
    /// The connection that created or migrated the tables, handed out first.
    seed: Mutex<Option<Conn>>,
}

impl Manager {
    pub(crate) fn new(
        config: tokio_postgres::Config,
        tls: Tls,
        sql: Statements<String>,
        check_idle_after: Duration,
    ) -> Self {
        let recycling = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        Self {
            pg: deadpool_postgres::Manager::from_config(config, tls, recycling),
            sql,
            check_idle_after,
            seed: Mutex::new(None),
        }
    }

    /// Opens a connection, without preparing anything on it.
    pub(crate) async fn connect(&self) -> Result<ClientWrapper, tokio_postgres::Error> {
        managed::Manager::create(&self.pg).await
    }

    /// Prepares the statements on `client`, making it a pooled connection.
    pub(crate) async fn ready(&self, client: ClientWrapper) -> Result<Conn, tokio_postgres::Error> {
        let prepared = self.sql.prepare_async(&client).await?;
        Ok(Conn {
            client,
            prepared,
            idle_since: Instant::now(),
        })
    }

    /// Opens a connection and prepares the statements on it.
    async fn open(&self) -> Result<Conn, tokio_postgres::Error> {
        let client = self.connect().await?;
        self.ready(client).await
    }

    /// Makes `conn` the connection the pool hands out first.
    pub(crate) fn seed(&self, conn: Conn) {
        *lock(&self.seed) = Some(conn);
    }

    /// Whether an idle connection may be handed out: its task still runs, and, if it sat
    /// idle for [`Options::check_idle_after`](crate::Options::check_idle_after) or more,
    /// it answers a round trip.
    async fn usable(&self, conn: &mut Conn, metrics: &Metrics) -> bool {
        managed::Manager::recycle(&self.pg, &mut conn.client, metrics)
            .await
            .is_ok()
            && (conn.idle_since.elapsed() < self.check_idle_after || conn.answers().await)
    }
}

impl managed::Manager for Manager {
    type Type = Conn;
    type Error = tokio_postgres::Error;

    async fn create(&self) -> Result<Conn, tokio_postgres::Error> {
        let seed = lock(&self.seed).take();
        if let Some(mut conn) = seed {
            if self.usable(&mut conn, &Metrics::default()).await {
                return Ok(conn);
            }
            managed::Manager::detach(self, &mut conn);
        }
        self.open().await
    }

    async fn recycle(&self, conn: &mut Conn, metrics: &Metrics) -> RecycleResult<Self::Error> {
        if self.usable(conn, metrics).await {
            Ok(())
        } else {
            Err(RecycleError::message(
                "the connection was closed or does not answer",
            ))
        }
    }

    fn detach(&self, conn: &mut Conn) {
        managed::Manager::detach(&self.pg, &mut conn.client);
    }
}

/// One call of the store, which [`AsyncPostgresStore::with_conn`] runs on a pooled
/// connection, and once more on a new one if the first broke before `run` marked its
/// [`Attempt`] irrevocable.
pub(crate) trait Call: Send {
    /// What the call returns.
    type Output: Send;

    /// Runs the call on `conn`.
    fn run(
        &mut self,
        conn: &mut Conn,
        attempt: &mut Attempt,
    ) -> impl Future<Output = Result<Self::Output, StoreError>> + Send;
}

/// Locks the seed slot; taking or putting a value cannot be interrupted half-way, so a
/// poisoned lock is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A connection taken from the pool for one call. Dropping it gives the connection back
/// only if the call [gave it back](Checkout::give_back) cleanly; otherwise (the call failed,
/// stopped reading early, or its future was dropped half-way, leaving a transaction or a
/// query in flight) the connection is closed and its pool slot freed.
pub(crate) struct Checkout {
    object: Option<Object<Manager>>,
    clean: bool,
}

impl Checkout {
    fn conn(&mut self) -> Result<&mut Conn, StoreError> {
        self.object.as_deref_mut().ok_or_else(|| {
            StoreError::backend("internal error: a checked-out pool slot holds no connection")
        })
    }

    /// The call is done and left the connection ready for the next one.
    fn give_back(&mut self) {
        if let Some(conn) = self.object.as_deref_mut() {
            conn.idle_since = Instant::now();
            self.clean = true;
        }
    }

    /// Puts `fresh` in the slot in place of the connection there, which is closed.
    fn replace(&mut self, fresh: Conn) {
        if let Some(object) = self.object.as_mut() {
            let mut old = std::mem::replace(&mut **object, fresh);
            if let Some(pool) = Object::pool(object) {
                managed::Manager::detach(pool.manager(), &mut old);
            }
        }
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            if !self.clean {
                // Out of the pool for good; dropping the client closes the socket.
                drop(Object::take(object));
            }
        }
    }
}

impl AsyncPostgresStore {
    /// Runs `call` on a pooled connection, waiting for one if all are busy (for at most
    /// [`Options::acquire_timeout`](crate::Options::acquire_timeout)). A connection on
    /// which `call` failed with a backend error, or stopped a read early, is closed, not
    /// given back.
    ///
    /// If `call` failed with a backend error because its connection was broken and had
    /// not yet marked its [`Attempt`] irrevocable, it runs once more on a newly opened
    /// connection in the same pool slot: nothing it did can have taken effect.
    ///
    /// The future is boxed: it holds a pool checkout, the call and its retry, and callers
    /// nest several (a repository command awaits a load, an append, perhaps a snapshot),
    /// which in a debug build would otherwise need a large stack wherever the whole future
    /// is `block_on`ed. One allocation per call, next to a network round trip.
    pub(crate) fn with_conn<'a, C: Call + 'a>(
        &'a self,
        call: C,
    ) -> Pin<Box<dyn Future<Output = Result<C::Output, StoreError>> + Send + 'a>> {
        Box::pin(self.run_call(call))
    }

    async fn run_call<C: Call>(&self, mut call: C) -> Result<C::Output, StoreError> {
        let mut checkout = self.checkout().await?;
        let mut retried = false;
        loop {
            let conn = checkout.conn()?;
            let mut attempt = Attempt::default();
            let result = call.run(conn, &mut attempt).await;
            if !matches!(result, Err(StoreError::Backend(_))) {
                if !attempt.abandoned {
                    checkout.give_back();
                }
                return result;
            }
            if retried || attempt.is_irrevocable() || !conn.is_broken().await {
                return result;
            }
            retried = true;
            let fresh = self.inner.pool.manager().open().await.map_err(backend)?;
            checkout.replace(fresh);
        }
    }

    /// Takes a connection from the pool, waiting at most the acquire timeout for a free
    /// slot (opening or checking the connection does not count).
    async fn checkout(&self) -> Result<Checkout, StoreError> {
        let object = self.inner.pool.get().await.map_err(|error| match error {
            PoolError::Timeout(_) => StoreError::backend(AcquireTimeout {
                max_connections: self.inner.options.max_connections,
                timeout: self.inner.options.acquire_timeout,
            }),
            PoolError::Backend(error) => backend(error),
            other => StoreError::backend(format!("the connection pool failed: {other}")),
        })?;
        Ok(Checkout {
            object: Some(object),
            clean: false,
        })
    }
}
