//! Which es stores to run, and fresh SQLite files and PostgreSQL schemas that are removed
//! when the benchmark is done with them: as sync stores ([`StoreSource`]) and as async ones
//! ([`AsyncStoreSource`]).

use std::fmt;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use es_postgres::PostgresStore;
use es_sqlite::{AsyncSqliteStore, SqliteStore};
use tokio::runtime::Runtime;

/// The environment variable holding the PostgreSQL URL.
pub const POSTGRES_URL_VAR: &str = "ES_POSTGRES_URL";

/// An es store the benchmarks can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// `es_core::InMemoryStore`.
    Mem,
    /// `es_sqlite::SqliteStore` over a temporary file.
    Sqlite,
    /// `es_postgres::PostgresStore` in a fresh schema of `ES_POSTGRES_URL`.
    Postgres,
}

impl StoreKind {
    /// The name used by `--stores`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mem => "mem",
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    /// The name used in report tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::Mem => "es in-memory",
            Self::Sqlite => "es SQLite",
            Self::Postgres => "es PostgreSQL",
        }
    }

    /// True for the stores that commit to disk (one fsync per append).
    pub fn is_durable(self) -> bool {
        self != Self::Mem
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses a `--stores` list such as `mem,sqlite,postgres`.
pub fn parse_stores(list: &str) -> Result<Vec<StoreKind>, String> {
    let mut stores = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let kind = match name {
            "mem" | "memory" => StoreKind::Mem,
            "sqlite" => StoreKind::Sqlite,
            "postgres" | "pg" => StoreKind::Postgres,
            other => {
                return Err(format!(
                    "unknown store `{other}` in --stores; use mem, sqlite, postgres"
                ));
            }
        };
        if !stores.contains(&kind) {
            stores.push(kind);
        }
    }
    if stores.is_empty() {
        return Err("--stores needs at least one of mem, sqlite, postgres".to_owned());
    }
    Ok(stores)
}

/// The stores to run: `list` if given (failing if it names postgres without a URL), else
/// mem and sqlite, plus postgres when `ES_POSTGRES_URL` is set.
pub fn select_stores(list: Option<&str>) -> Result<Vec<StoreKind>, String> {
    let url = postgres_url();
    match list {
        Some(list) => {
            let stores = parse_stores(list)?;
            if stores.contains(&StoreKind::Postgres) && url.is_none() {
                return Err(format!(
                    "--stores names postgres but {POSTGRES_URL_VAR} is not set"
                ));
            }
            Ok(stores)
        }
        None => {
            let mut stores = vec![StoreKind::Mem, StoreKind::Sqlite];
            if url.is_some() {
                stores.push(StoreKind::Postgres);
            }
            Ok(stores)
        }
    }
}

/// `ES_POSTGRES_URL`, if set and not empty.
pub fn postgres_url() -> Option<String> {
    std::env::var(POSTGRES_URL_VAR)
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// Where a benchmark gets fresh, empty es stores of one kind.
pub trait StoreSource {
    /// The store type.
    type Store: es_core::EventStore;

    /// A new, empty store.
    fn fresh(&mut self) -> Self::Store;

    /// Frees what the stores handed out so far left behind (files, schemas); call it only
    /// once they are all dropped.
    fn cleanup(&mut self) {}
}

/// Where a benchmark gets fresh, empty async es stores of one kind.
///
/// A store is opened on `rt`, the runtime the benchmark then uses it on (the async
/// PostgreSQL store's connections are tasks of the runtime that opened it).
pub trait AsyncStoreSource {
    /// The store type: cheap to clone, so every task gets its own handle.
    type Store: es_core::AsyncEventStore + Clone + Send + Sync + 'static;

    /// A new, empty store, opened on `rt` (not from inside it).
    fn fresh_async(&mut self, rt: &Runtime) -> Self::Store;

    /// Frees what the stores handed out so far left behind; call it only once they are all
    /// dropped.
    fn cleanup_async(&mut self) {}
}

/// Fresh `InMemoryStore`s (sync and async: the same type implements both traits).
#[derive(Debug, Default)]
pub struct MemStores;

impl AsyncStoreSource for MemStores {
    type Store = es_core::InMemoryStore;

    fn fresh_async(&mut self, _rt: &Runtime) -> Self::Store {
        es_core::InMemoryStore::new()
    }
}

/// `AsyncSqliteStore`s, each opened with `AsyncSqliteStore::open` in its own new file.
impl AsyncStoreSource for SqliteFiles {
    type Store = AsyncSqliteStore;

    fn fresh_async(&mut self, rt: &Runtime) -> Self::Store {
        let path = self.next_path();
        rt.block_on(AsyncSqliteStore::open(&path))
            .expect("open an async SQLite store in the temp dir")
    }

    fn cleanup_async(&mut self) {
        self.remove_files();
    }
}

impl StoreSource for MemStores {
    type Store = es_core::InMemoryStore;

    fn fresh(&mut self) -> Self::Store {
        es_core::InMemoryStore::new()
    }
}

impl StoreSource for SqliteFiles {
    type Store = SqliteStore;

    fn fresh(&mut self) -> Self::Store {
        SqliteFiles::fresh(self)
    }

    fn cleanup(&mut self) {
        self.remove_files();
    }
}

impl StoreSource for PostgresSchemas {
    type Store = PostgresStore;

    fn fresh(&mut self) -> Self::Store {
        PostgresSchemas::fresh(self)
    }

    fn cleanup(&mut self) {
        self.drop_schemas();
    }
}

/// `AsyncPostgresStore`s, each in its own new schema, opened on the benchmark's runtime.
#[cfg(feature = "postgres-async")]
impl AsyncStoreSource for PostgresSchemas {
    type Store = es_postgres::AsyncPostgresStore;

    fn fresh_async(&mut self, rt: &Runtime) -> Self::Store {
        let schema = self.next_schema();
        let store = rt
            .block_on(es_postgres::AsyncPostgresStore::connect_with_schema(
                &self.url, &schema,
            ))
            .expect("connect to PostgreSQL (ES_POSTGRES_URL)");
        self.created.push(schema);
        store
    }

    fn cleanup_async(&mut self) {
        self.drop_schemas();
    }
}

/// A name unique to this process and moment, for temp dirs and schemas.
fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}_{nanos}", std::process::id())
}

/// A directory under `std::env::temp_dir()`, removed with everything in it on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `$TMPDIR/{prefix}-{pid}_{nanos}`.
    pub fn new(prefix: &str) -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", unique_suffix()));
        std::fs::create_dir_all(&path)?;
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            eprintln!("could not remove {}: {error}", self.path.display());
        }
    }
}

/// Hands out fresh SQLite stores, each in its own file of one temp dir.
#[derive(Debug)]
pub struct SqliteFiles {
    dir: TempDir,
    next: u32,
}

impl SqliteFiles {
    /// A new temp dir for the files.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            dir: TempDir::new("es-bench")?,
            next: 0,
        })
    }

    /// A store in a new, empty file.
    pub fn fresh(&mut self) -> SqliteStore {
        let path = self.next_path();
        SqliteStore::open(&path).expect("open a SQLite store in the temp dir")
    }

    /// The path of a new file in the temp dir.
    fn next_path(&mut self) -> PathBuf {
        self.next += 1;
        self.dir.path().join(format!("store-{}.db", self.next))
    }

    /// Removes the files of every store handed out so far (they must all be dropped), to
    /// keep the temp dir small during long runs.
    pub fn remove_files(&self) {
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Hands out fresh PostgreSQL stores, each in its own new schema, and drops every schema
/// it created when dropped.
#[derive(Debug)]
pub struct PostgresSchemas {
    url: String,
    prefix: String,
    created: Vec<String>,
}

impl PostgresSchemas {
    /// Schemas named `es_bench_{pid}_{nanos}_{n}` in the database at `url`.
    pub fn new(url: String) -> Self {
        Self {
            url,
            prefix: format!("es_bench_{}", unique_suffix()),
            created: Vec::new(),
        }
    }

    /// A store in a new, empty schema.
    pub fn fresh(&mut self) -> PostgresStore {
        let schema = self.next_schema();
        let store = PostgresStore::connect_with_schema(&self.url, &schema)
            .expect("connect to PostgreSQL (ES_POSTGRES_URL)");
        self.created.push(schema);
        store
    }

    /// The name of the next schema to create.
    fn next_schema(&self) -> String {
        format!("{}_{}", self.prefix, self.created.len() + 1)
    }

    /// Drops the schemas created so far (their stores should be dropped first).
    pub fn drop_schemas(&mut self) {
        if self.created.is_empty() {
            return;
        }
        // The `postgres` driver's own parser knows neither `sslrootcert` nor the
        // `verify-*` modes es-postgres adds, and this cleanup needs no TLS: it connects
        // without (which the server must allow, as the CI's does).
        let dropped = es_postgres::postgres::Client::connect(
            &without_tls_params(&self.url),
            es_postgres::postgres::NoTls,
        )
        .and_then(|mut client| {
            for schema in &self.created {
                // Schema names are ours: ASCII letters, digits and underscores.
                client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))?;
            }
            Ok(())
        });
        match dropped {
            Ok(()) => self.created.clear(),
            Err(error) => eprintln!(
                "could not drop the benchmark schemas {:?}: {error}",
                self.created
            ),
        }
    }
}

/// `url` without its `sslmode` and `sslrootcert` parameters (URL or `key=value` form).
fn without_tls_params(url: &str) -> String {
    let is_tls = |param: &str| {
        let key = param.split('=').next().unwrap_or("").trim();
        key == "sslmode" || key == "sslrootcert"
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<&str> = query.split('&').filter(|p| !is_tls(p)).collect();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => url.to_owned(),
        }
    } else {
        url.split_whitespace()
            .filter(|p| !is_tls(p))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Drop for PostgresSchemas {
    fn drop(&mut self) {
        self.drop_schemas();
    }
}

#[cfg(test)]
mod tests {
    use super::without_tls_params;

    #[test]
    fn tls_params_are_removed() {
        assert_eq!(
            without_tls_params("postgres://es:es@127.0.0.1:5432/es?sslrootcert=/ca.crt"),
            "postgres://es:es@127.0.0.1:5432/es"
        );
        assert_eq!(
            without_tls_params("postgres://h/db?sslmode=verify-full&application_name=x"),
            "postgres://h/db?application_name=x"
        );
        assert_eq!(
            without_tls_params("host=h sslmode=require dbname=es"),
            "host=h dbname=es"
        );
    }
}
