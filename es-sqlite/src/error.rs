//! [`Error`]: why a SQLite event store could not be opened.

use std::path::PathBuf;

use rusqlite::ErrorCode;

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
        "cannot open the SQLite event store `{}`: {cause}; check that the directory exists and is writable and that the file is a SQLite database",
        .path.display()
    )]
    Open {
        /// The database file (`:memory:` for an in-memory database).
        path: PathBuf,
        /// SQLite's error.
        cause: rusqlite::Error,
    },
    /// A connection setting (WAL mode, `synchronous`, busy timeout) could not be applied.
    #[error(
        "cannot configure the SQLite event store `{}` ({setting}): {cause}; check that the file is a SQLite database on a local, writable file system and that no other program holds it locked",
        .path.display()
    )]
    Configure {
        /// The database file.
        path: PathBuf,
        /// The setting that failed, e.g. `journal_mode=WAL`.
        setting: &'static str,
        /// SQLite's error.
        cause: rusqlite::Error,
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
        "cannot create or migrate the event store schema in `{}`: {cause}; check that the file is writable and that its `es_events` table was created by es-sqlite",
        .path.display()
    )]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        cause: rusqlite::Error,
    },
    /// The path cannot name an event store file: it is empty, names SQLite's in-memory
    /// database (`:memory:`) or is a SQLite URI (`file:...`).
    #[error(
        "cannot open the SQLite event store `{}`: {reason}; pass the path of a database file, or use `SqliteStore::open_in_memory` for a store that lives in memory",
        .path.display()
    )]
    InvalidPath {
        /// The path as given.
        path: PathBuf,
        /// Why the path is refused.
        reason: &'static str,
    },
    /// The file exists but is not a SQLite database (or its header is damaged).
    #[error(
        "`{}` is not a SQLite database ({cause}); pass the path of an es-sqlite event store, of a SQLite database to add the event tables to, or of a file that does not exist yet (es-sqlite never overwrites other files)",
        .path.display()
    )]
    NotADatabase {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        cause: rusqlite::Error,
    },
    /// The database can only be read: the file, its directory or its file system is
    /// read-only for this process.
    #[error(
        "the SQLite event store `{}` is read-only for this process; an event store needs write access to the file and to its directory (SQLite creates the `-wal` and `-shm` files next to it): check the permissions of both, that the file system is not mounted read-only, and that the file belongs to the user running this program",
        .path.display()
    )]
    ReadOnly {
        /// The database file.
        path: PathBuf,
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
    /// A blocking task of `AsyncSqliteStore` (feature `async`) did not finish: it
    /// panicked, or the tokio runtime is shutting down.
    #[error(
        "the SQLite call on a blocking thread did not finish ({0}); if the runtime is shutting down, this is expected, otherwise please report it as a bug"
    )]
    Blocking(String),
}

impl Error {
    /// Replaces a SQLite failure whose code says what is wrong with the file (it is not a
    /// database, or it cannot be written) by the variant that says so.
    pub(crate) fn refine(self) -> Self {
        let code = match &self {
            Self::Open { cause, .. }
            | Self::Configure { cause, .. }
            | Self::Migrate { cause, .. } => cause.sqlite_error_code(),
            _ => None,
        };
        match (code, self) {
            (
                Some(ErrorCode::NotADatabase),
                Self::Open { path, cause }
                | Self::Configure { path, cause, .. }
                | Self::Migrate { path, cause },
            ) => Self::NotADatabase { path, cause },
            // Every `SQLITE_READONLY_*`: the file, its directory (no `-wal` or `-shm` file
            // can be created there) or its file system cannot be written.
            (
                Some(ErrorCode::ReadOnly),
                Self::Open { path, .. } | Self::Configure { path, .. } | Self::Migrate { path, .. },
            ) => Self::ReadOnly { path },
            (_, other) => other,
        }
    }
}
