//! [`Error`]: why a SQLite event store could not be opened.

use std::path::PathBuf;

/// A SQLite event store could not be opened, configured or migrated.
///
/// Errors while appending or reading are [`es_core::StoreError`]s; this type only covers
/// [`SqliteStore::open`](crate::SqliteStore::open) and
/// [`SqliteStore::open_in_memory`](crate::SqliteStore::open_in_memory).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// SQLite could not open (or create) the database file.
    #[error(
        "cannot open the SQLite event store `{}`: {source}; check that the directory exists and is writable and that the file is a SQLite database",
        .path.display()
    )]
    Open {
        /// The database file (`:memory:` for an in-memory database).
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A connection setting (WAL mode, `synchronous`, busy timeout) could not be applied.
    #[error(
        "cannot configure the SQLite event store `{}` ({setting}): {source}; check that the file is a SQLite database on a local, writable file system and that no other program holds it locked",
        .path.display()
    )]
    Configure {
        /// The database file.
        path: PathBuf,
        /// The setting that failed, e.g. `journal_mode=WAL`.
        setting: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file does not support WAL mode (SQLite kept another journal mode).
    #[error(
        "the SQLite event store `{}` stays in journal mode `{mode}` instead of WAL; put the file on a local file system (WAL needs shared memory, which network file systems lack)",
        .path.display()
    )]
    NoWal {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite reported.
        mode: String,
    },
    /// Creating or migrating the event tables failed.
    #[error(
        "cannot create or migrate the event store schema in `{}`: {source}; check that the file is writable and that its `es_events` table was created by es-sqlite",
        .path.display()
    )]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer release of es-sqlite.
    #[error(
        "the event store `{}` has schema version {found}, newer than version {supported} that this es-sqlite supports; upgrade es-sqlite to the release that wrote it",
        .path.display()
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The schema version stored in the file.
        found: i64,
        /// The newest schema version this code knows.
        supported: i64,
    },
}
