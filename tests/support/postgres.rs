//! What the PostgreSQL test files share: the server URL (or a printed reason to skip, or a
//! failure under CI), names no other test uses, a schema dropped when its test ends, and
//! connection parameters added to a URL.
//!
//! Included by each of them with `#[path = "support/postgres.rs"] mod support;`; not every
//! file uses every item.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

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
        // On a thread of its own: the driver's client must not be dropped inside an async
        // test's runtime, where this guard may be dropped (also while unwinding).
        let (url, name) = (self.url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            es_postgres::connect_client(&url).map(|mut client| {
                client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
            })
        })
        .join()
        .expect("the thread dropping a test schema does not panic");
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("could not drop test schema {}: {error}", self.name),
            Err(error) => eprintln!("could not drop test schema {}: {error}", self.name),
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

/// `url` without its `sslmode` and `sslrootcert` parameters, for code that hands it to the
/// `postgres` driver's own parser, which knows neither `sslrootcert` nor every `sslmode`.
/// (The `key=value` form is split at spaces: enough for the URLs these tests are given.)
pub fn without_tls_params(url: &str) -> String {
    let is_tls = |pair: &str| pair.starts_with("sslmode=") || pair.starts_with("sslrootcert=");
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return url.to_owned();
        };
        let kept: Vec<&str> = query.split('&').filter(|pair| !is_tls(pair)).collect();
        if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else {
        url.split_whitespace()
            .filter(|pair| !is_tls(pair))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The test CA that signed the server's certificate (`ES_POSTGRES_TLS_CA`, set by
/// `.ci/postgres.sh`), or `None` (with a message) when the TLS tests should be skipped;
/// under CI a missing one fails.
pub fn tls_ca() -> Option<String> {
    match std::env::var("ES_POSTGRES_TLS_CA") {
        Ok(path) if !path.is_empty() => Some(path),
        _ if std::env::var_os("CI").is_some() => panic!(
            "ES_POSTGRES_TLS_CA is not set, but the PostgreSQL TLS tests are required in CI: \
             run `eval \"$(bash .ci/postgres.sh)\"`, which enables TLS on the server and exports it"
        ),
        _ => {
            eprintln!(
                "skipping: ES_POSTGRES_TLS_CA is not set (run `eval \"$(bash .ci/postgres.sh)\"` \
                 to enable TLS on the local PostgreSQL and set it)"
            );
            None
        }
    }
}
