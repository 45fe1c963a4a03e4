//! [`Error`]: why a PostgreSQL event store could not be opened.

/// A PostgreSQL event store could not connect, or could not create or migrate its tables.
///
/// Errors while appending or reading are [`es_core::StoreError`]s; this type only covers
/// [`PostgresStore::connect`](crate::PostgresStore::connect),
/// [`PostgresStore::connect_with_schema`](crate::PostgresStore::connect_with_schema) and
/// [`PostgresStore::connect_with_options`](crate::PostgresStore::connect_with_options)
/// (and the same three functions of the async store, `AsyncPostgresStore`, feature
/// `async`). Messages never repeat the connection URL, which may hold a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection string could not be parsed.
    #[error(
        "cannot parse the PostgreSQL connection string: {}; use `postgres://user:password@host:port/database` or the `host=... user=... dbname=...` form",
        describe(.cause)
    )]
    InvalidUrl {
        /// The parser's error.
        cause: postgres::Error,
    },
    /// A connection parameter (`sslmode`, `sslrootcert`, or another TLS parameter) has a
    /// value es-postgres does not accept, or is one it does not support.
    #[error("invalid connection parameter `{parameter}`: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        parameter: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The CA file named by `sslrootcert` cannot be used.
    #[error(
        "cannot use `sslrootcert={}` as the CA: {reason}; give the path of a PEM file holding the certificate of the CA that signed the server's certificate, or `sslrootcert=system` for the system's trust store",
        path.display()
    )]
    RootCert {
        /// The path given.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS library could not be set up.
    #[error("cannot set up TLS for PostgreSQL: {reason}")]
    Tls {
        /// What failed.
        reason: String,
    },
    /// The server was reached, but the TLS handshake failed: most often its certificate
    /// is not signed by a trusted CA or is not for the host name connected to.
    #[error(
        "cannot connect to PostgreSQL over TLS: {}; es verifies the server's certificate whenever TLS is used (with sslmode prefer, require, verify-ca and verify-full): set `sslrootcert=/path/to/ca.crt` to the CA that signed it, connect to a host name the certificate is for (or use sslmode=verify-ca, which does not check the name), or use sslmode=disable for an unencrypted connection",
        describe(.cause)
    )]
    TlsHandshake {
        /// The driver's error.
        cause: postgres::Error,
    },
    /// No thread could be started to run the driver outside the calling tokio runtime.
    #[error(
        "cannot start a thread to run the PostgreSQL driver outside the tokio runtime that called `connect`: {cause}; call it from `tokio::task::spawn_blocking`, or use the async store in async code"
    )]
    Thread {
        /// The operating system's error.
        cause: std::io::Error,
    },
    /// The schema name is not a plain identifier.
    #[error(
        "invalid schema name `{schema}`: {reason}; use 1 to 63 ASCII letters, digits and underscores"
    )]
    InvalidSchema {
        /// The rejected name.
        schema: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The server could not be reached or refused the login.
    #[error(
        "cannot connect to PostgreSQL: {}; check that the server is running and that the URL's host, port, user, password and database are right",
        describe(.cause)
    )]
    Connect {
        /// The driver's error.
        cause: postgres::Error,
    },
    /// Creating or migrating the event tables failed.
    #[error(
        "cannot create or migrate the event store tables in schema `{schema}`: {}; check that the user may create schemas and tables in this database",
        describe(.cause)
    )]
    Migrate {
        /// The schema.
        schema: String,
        /// The driver's error.
        cause: postgres::Error,
    },
    /// The schema was written by a newer release of es-postgres.
    #[error(
        "the event store in schema `{schema}` has schema version {found}, newer than version {supported} that this es-postgres supports; upgrade es-postgres to the release that wrote it"
    )]
    SchemaTooNew {
        /// The schema.
        schema: String,
        /// The version stored in the database.
        found: i32,
        /// The newest version this code knows.
        supported: i32,
    },
    /// The async store (`AsyncPostgresStore`, feature `async`) was opened outside a Tokio
    /// runtime: its connections run as tasks of the runtime it is opened on.
    #[error(
        "the async PostgreSQL event store must be opened inside a Tokio runtime (its connections are tasks of that runtime); open it from `#[tokio::main]`, a `tokio::spawn`ed task or `Runtime::block_on`, on a runtime with its I/O and time drivers enabled"
    )]
    NoRuntime,
}

/// No pooled connection became free within
/// [`Options::acquire_timeout`](crate::Options::acquire_timeout): every one of the
/// store's [`Options::max_connections`](crate::Options::max_connections) connections was
/// in use the whole time. Reported inside [`es_core::StoreError::Backend`]; find it with
/// `downcast_ref::<AcquireTimeout>()` on the boxed error.
///
/// Nothing was sent to the server, so the call can simply be tried again later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "all {max_connections} connections of the PostgreSQL event store's pool were busy for {timeout:?}, so this call got none; raise `Options::max_connections` (within the server's `max_connections`), shorten the transactions and reads that hold connections (a read holds its connection until its visitor returns), or raise `Options::acquire_timeout`"
)]
#[non_exhaustive]
pub struct AcquireTimeout {
    /// The pool's size, [`Options::max_connections`](crate::Options::max_connections).
    pub max_connections: usize,
    /// How long the call waited, [`Options::acquire_timeout`](crate::Options::acquire_timeout).
    pub timeout: std::time::Duration,
}

/// The `es_position` counter disagrees with the stored events, or was bypassed, so an
/// append cannot go ahead. Reported inside [`es_core::StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum CounterError {
    /// The counter is below zero.
    #[error(
        "the es_position counter of schema `{schema}` is negative ({before}), so it cannot hand out global positions (they start at 1); something other than es-postgres changed it: repair it with `{repair}` while no store is appending",
        repair = repair(schema)
    )]
    Negative {
        /// The schema.
        schema: String,
        /// The counter's value before this append.
        before: i64,
    },
    /// The counter handed out a position that is already stored.
    #[error(
        "the es_position counter of schema `{schema}` is behind the stored events: it handed out global position {first}, which is already taken ({}); something other than es-postgres changed it or wrote events: repair it with `{repair}` while no store is appending",
        describe(.cause),
        repair = repair(schema)
    )]
    Behind {
        /// The schema.
        schema: String,
        /// The first position this append took.
        first: i64,
        /// The unique violation on `es_events_pkey`.
        cause: postgres::Error,
    },
    /// Another session stored the stream version this append wanted without taking the
    /// counter lock, so the database's unique constraint caught it.
    #[error(
        "{stream} in schema `{schema}` gained the version this append wanted from a session that did not take the es_position counter lock (or from a transaction that is not READ COMMITTED) ({}); the transaction is aborted: roll it back, then reload the stream and retry",
        describe(.cause)
    )]
    Bypassed {
        /// The schema.
        schema: String,
        /// The stream.
        stream: String,
        /// The unique violation on `es_events_stream_key`.
        cause: postgres::Error,
    },
}

/// The SQL that sets the counter of `schema` back in line with its events.
fn repair(schema: &str) -> String {
    format!(
        "UPDATE \"{schema}\".es_position SET last = (SELECT coalesce(max(global_position), 0) FROM \"{schema}\".es_events)"
    )
}

/// A driver error, displayed with what the server said: `postgres::Error` displays a server
/// error as just "db error", leaving its message, code, detail and hint to be dug out.
#[derive(Debug)]
pub(crate) struct DriverError(pub(crate) postgres::Error);

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&describe(&self.0))
    }
}

/// `source()` is `None`: the message already holds the driver error and its causes.
impl std::error::Error for DriverError {}

/// A driver error in words: the server's severity, SQLSTATE code, message, detail and hint
/// for a server error; the driver's message and its cause otherwise.
pub(crate) fn describe(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = format!(
            "PostgreSQL {} {}: {}",
            db.severity(),
            db.code().code(),
            db.message()
        );
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" (detail: {detail})"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!(" (hint: {hint})"));
        }
        return text;
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// A driver error as a store error.
pub(crate) fn backend(error: postgres::Error) -> es_core::StoreError {
    es_core::StoreError::backend(DriverError(error))
}
