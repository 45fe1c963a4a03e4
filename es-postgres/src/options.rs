//! [`Options`]: how a [`PostgresStore`](crate::PostgresStore) manages its connections.

use std::time::Duration;

/// How a [`PostgresStore`] manages its connections; pass it to
/// [`PostgresStore::connect_with_options`].
///
/// ```
/// use std::time::Duration;
/// let options = es_postgres::Options::new()
///     .max_connections(4)
///     .acquire_timeout(Duration::from_secs(5))
///     .check_idle_after(Duration::from_secs(10));
/// assert_eq!(options.get_max_connections(), 4);
/// assert_eq!(options.get_acquire_timeout(), Duration::from_secs(5));
/// ```
///
/// [`PostgresStore`]: crate::PostgresStore
/// [`PostgresStore::connect_with_options`]: crate::PostgresStore::connect_with_options
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    pub(crate) max_connections: usize,
    pub(crate) acquire_timeout: Duration,
    pub(crate) check_idle_after: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_connections: Options::DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: Options::DEFAULT_ACQUIRE_TIMEOUT,
            check_idle_after: Options::DEFAULT_CHECK_IDLE_AFTER,
        }
    }
}

impl Options {
    /// The default for [`max_connections`](Options::max_connections): 16.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 16;
    /// The default for [`acquire_timeout`](Options::acquire_timeout): 30 seconds.
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
    /// The default for [`check_idle_after`](Options::check_idle_after): 5 seconds.
    pub const DEFAULT_CHECK_IDLE_AFTER: Duration = Duration::from_secs(5);

    /// The defaults: at most 16 connections, a call waits at most 30 seconds for one, and
    /// a connection idle for 5 seconds is checked before use.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `max` connections open at once (0 counts as 1), shared by all clones of
    /// the store. A call that finds them all busy waits until one is given back (for at
    /// most [`acquire_timeout`](Options::acquire_timeout)), so size this to the threads
    /// that use the store and to the server's `max_connections`.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long a call waits for a connection when all
    /// [`max_connections`](Options::max_connections) are busy, before it fails with a
    /// [`StoreError::Backend`] holding an [`AcquireTimeout`](crate::AcquireTimeout). The
    /// wait does not count opening or checking the connection it gets.
    ///
    /// A timeout means the pool is too small for the load, or something holds connections
    /// for long: a long-running read (a [`Visitor`] keeps its connection until the read
    /// ends), many threads, or a slow server. 30 seconds by default; `Duration::ZERO`
    /// fails at once when no connection is free.
    ///
    /// [`StoreError::Backend`]: es_core::StoreError::Backend
    /// [`Visitor`]: es_core::Visitor
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// A connection that sat idle in the pool for longer than `after` is checked with a
    /// round trip to the server before it is used, and replaced if the server dropped it
    /// (a restart, `idle_session_timeout`, a proxy or firewall closing quiet sessions).
    /// `Duration::ZERO` checks every connection on every call.
    ///
    /// Whatever this is, a connection whose closing the server already announced (it sends
    /// an error, then closes the socket) is replaced before use at no cost, and a read, or
    /// an append that had not begun its transaction, that fails on a broken connection runs
    /// again on a new one.
    pub fn check_idle_after(mut self, after: Duration) -> Self {
        self.check_idle_after = after;
        self
    }

    /// The maximum number of open connections.
    pub fn get_max_connections(&self) -> usize {
        self.max_connections
    }

    /// How long a call waits for a busy pool to give back a connection.
    pub fn get_acquire_timeout(&self) -> Duration {
        self.acquire_timeout
    }

    /// How long a connection may sit idle before it is checked.
    pub fn get_check_idle_after(&self) -> Duration {
        self.check_idle_after
    }
}
