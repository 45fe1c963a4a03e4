//! [`Error`]: why a PostgreSQL event store could not be opened.

/// A PostgreSQL event store could not connect, or could not create or migrate its tables.
///
/// Errors while appending or reading are [`es_core::StoreError`]s; this type only covers
/// [`PostgresStore::connect`](crate::PostgresStore::connect),
/// [`PostgresStore::connect_with_schema`](crate::PostgresStore::connect_with_schema) and
/// [`PostgresStore::connect_with_options`](crate::PostgresStore::connect_with_options).
/// Messages never repeat the connection URL, which may hold a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection string could not be parsed.
    #[error(
        "cannot parse the PostgreSQL connection string: {source}; use `postgres://user:password@host:port/database` or the `host=... user=... dbname=...` form"
    )]
    InvalidUrl {
        /// The parser's error.
        #[source]
        source: postgres::Error,
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
        "cannot connect to PostgreSQL: {source}; check that the server is running and that the URL's host, port, user, password and database are right"
    )]
    Connect {
        /// The driver's error.
        #[source]
        source: postgres::Error,
    },
    /// Creating or migrating the event tables failed.
    #[error(
        "cannot create or migrate the event store tables in schema `{schema}`: {source}; check that the user may create schemas and tables in this database"
    )]
    Migrate {
        /// The schema.
        schema: String,
        /// The driver's error.
        #[source]
        source: postgres::Error,
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
}
