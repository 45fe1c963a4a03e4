//! What the PostgreSQL test files share: the server URL (or a printed reason to skip, or a
//! failure under CI), names no other test uses, a schema dropped when its test ends, and
//! connection parameters added to a URL.
//!
//! Included by each of them with `#[path = "support/postgres.rs"] mod support;`; not every
//! file uses every item.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use es_postgres::postgres::{Client, NoTls};

/// The server URL, or `None` (with a message) when the tests should be skipped.
pub fn url() -> Option<String> {
    match std::env::var("ES_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "ES_POSTGRES_URL is not set, but the PostgreSQL tests are required in CI: \
             start a server (`eval \"$(bash .ci/postgres.sh)\"`) and export its URL"
        ),
        _ => {
            eprintln!(
                "skipping: ES_POSTGRES_URL is not set (run `eval \"$(bash .ci/postgres.sh)\"` \
                 to start a local PostgreSQL and set it)"
            );
            None
        }
    }
}

/// A name starting with `prefix` that no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A schema name no other test (or test run) uses.
pub fn fresh_schema() -> String {
    unique("es_test")
}

/// Drops its schema when the test ends.
pub struct Schema {
    pub url: String,
    pub name: String,
}

impl Schema {
    /// A fresh schema name (prefix `prefix`) on the server at `url`.
    pub fn new(url: &str, prefix: &str) -> Self {
        Self {
            url: url.to_owned(),
            name: unique(prefix),
        }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let dropped = Client::connect(&self.url, NoTls).and_then(|mut client| {
            client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name))
        });
        if let Err(error) = dropped {
            eprintln!("could not drop test schema {}: {error}", self.name);
        }
    }
}

/// `url` with `key=value` added to the connection parameters, in either URL form.
pub fn with_param(url: &str, key: &str, value: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let separator = if url.contains('?') { '&' } else { '?' };
        let value = value.replace(' ', "%20").replace('=', "%3D");
        format!("{url}{separator}{key}={value}")
    } else {
        format!("{url} {key}='{value}'")
    }
}
