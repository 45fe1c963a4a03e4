//! TLS to PostgreSQL: `sslmode` and `sslrootcert` as es-postgres reads them.
//!
//! Needs a server with TLS on and the CA that signed its certificate: `eval "$(bash
//! .ci/postgres.sh)"` sets both `ES_POSTGRES_URL` and `ES_POSTGRES_TLS_CA` (a test CA, and
//! a server certificate for 127.0.0.1 and localhost). Without them the tests are skipped
//! with a message, except under CI (`CI` set), where they fail.

use std::path::Path;
use std::process::Command;

use es_core::{EventStore, ExpectedVersion, StreamRef};
use es_postgres::postgres::Config;
use es_postgres::{Error, PostgresStore};
use es_store_tests::events;

#[path = "support/postgres.rs"]
mod support;
use support::{Schema, tls_ca, unique, url, with_param, without_tls_params};

/// What the tests connect with.
struct Server {
    /// `ES_POSTGRES_URL` as given, for the tests' own connections.
    admin: String,
    /// `ES_POSTGRES_URL` without its TLS parameters.
    base: String,
    /// The test CA's PEM file.
    ca: String,
}

/// The server, or `None` when the tests are skipped.
fn setup() -> Option<Server> {
    let admin = url()?;
    let ca = tls_ca()?;
    let base = without_tls_params(&admin);
    Some(Server { admin, base, ca })
}

/// `base` with `sslmode` and, if given, `sslrootcert` set.
fn tls_url(base: &str, sslmode: &str, ca: Option<&str>) -> String {
    let url = with_param(base, "sslmode", sslmode);
    match ca {
        Some(ca) => with_param(&url, "sslrootcert", ca),
        None => url,
    }
}

/// A `key=value` connection string to the server of `base` (a URL), at `host` (a name
/// the TLS certificate is checked against) and the IP address `hostaddr`.
fn key_value(base: &str, host: &str, hostaddr: &str, extra: &str) -> String {
    let config: Config = base.parse().expect("ES_POSTGRES_URL parses");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().expect("ES_POSTGRES_URL names a user");
    let password = config
        .get_password()
        .map(|p| String::from_utf8(p.to_vec()).expect("a UTF-8 password"))
        .unwrap_or_default();
    let dbname = config.get_dbname().unwrap_or(user);
    format!(
        "host={host} hostaddr={hostaddr} port={port} user={user} password='{password}' dbname={dbname} {extra}"
    )
}

/// Whether the server sees this client's session as encrypted.
fn session_uses_tls(url: &str) -> bool {
    let mut client = es_postgres::connect_client(url).expect("connect");
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .expect("query pg_stat_ssl")
        .get(0)
}

/// A store in a fresh schema, and the guard that drops the schema.
fn store(url: &str, admin_url: &str) -> Result<(PostgresStore, Schema), Error> {
    let schema = Schema::new(admin_url, "es_tls");
    let store = PostgresStore::connect_with_schema(url, &schema.name)?;
    Ok((store, schema))
}

/// The failure to connect with `url`, which must fail.
fn refused(url: &str, admin_url: &str) -> Error {
    match store(url, admin_url) {
        Ok(_) => panic!("the connection should have been refused"),
        Err(error) => error,
    }
}

/// A CA the server's certificate is not signed by, made with the openssl CLI.
fn other_ca(dir: &Path) -> String {
    let ca = dir.join("other-ca.crt");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=not the es test CA",
        ])
        .arg("-keyout")
        .arg(dir.join("other-ca.key"))
        .arg("-out")
        .arg(&ca)
        .output()
        .expect("run openssl (install it: apt-get install openssl)");
    assert!(
        status.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    ca.to_str().expect("a UTF-8 temporary path").to_owned()
}

#[test]
fn verify_full_with_the_test_ca_connects_over_tls() {
    let Some(Server { admin, base, ca }) = setup() else {
        return;
    };
    let app = unique("es_tls_app");
    let url = with_param(
        &tls_url(&base, "verify-full", Some(&ca)),
        "application_name",
        &app,
    );
    let (store, _schema) = store(&url, &admin).expect("verify-full with the test CA connects");
    let stream = StreamRef::new("Tls", "one");
    store
        .append(stream, ExpectedVersion::NoStream, &events(1, 2))
        .expect("append over TLS");
    assert_eq!(
        store.read_stream(stream, 1).expect("read over TLS").len(),
        2
    );

    // Every connection of the store's pool is encrypted, as the server sees it.
    let mut monitor = es_postgres::connect_client(&admin).expect("monitor");
    let row = monitor
        .query_one(
            "SELECT count(*), coalesce(bool_and(s.ssl), false) \
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name = $1",
            &[&app],
        )
        .expect("query pg_stat_ssl");
    let (sessions, all_tls): (i64, bool) = (row.get(0), row.get(1));
    assert!(sessions >= 1, "the store's sessions are visible");
    assert!(all_tls, "every session of the store uses TLS");

    // The server confirms TLS for the client helper too, by IP and by host name: the
    // certificate is for both.
    assert!(session_uses_tls(&tls_url(&base, "verify-full", Some(&ca))));
    let localhost = key_value(&base, "localhost", "127.0.0.1", "sslmode=verify-full");
    assert!(session_uses_tls(&format!("{localhost} sslrootcert='{ca}'")));
}

#[test]
fn the_default_sslmode_uses_tls_and_verifies_the_certificate() {
    let Some(Server { admin, base, ca }) = setup() else {
        return;
    };
    // No sslmode: `prefer`. The server offers TLS, so it is used, against the given CA.
    assert!(session_uses_tls(&with_param(&base, "sslrootcert", &ca)));
    // `require` verifies too: with the test CA it connects.
    assert!(session_uses_tls(&tls_url(&base, "require", Some(&ca))));

    // Without `sslrootcert` the system's trust store decides, and it does not know the test
    // CA: `prefer` does not fall back to plaintext, it refuses the certificate.
    let error = refused(&base, &admin);
    assert!(matches!(error, Error::TlsHandshake { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("sslrootcert") && text.contains("sslmode=disable"),
        "the error says how to fix it: {text}"
    );
    // `sslrootcert=system` says the same explicitly.
    let error = refused(&tls_url(&base, "verify-full", Some("system")), &admin);
    assert!(matches!(error, Error::TlsHandshake { .. }), "{error:?}");
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let Some(Server { admin, base, .. }) = setup() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let other = other_ca(dir.path());
    for mode in ["prefer", "require", "verify-ca", "verify-full"] {
        let error = refused(&tls_url(&base, mode, Some(&other)), &admin);
        assert!(
            matches!(error, Error::TlsHandshake { .. }),
            "sslmode={mode}: {error:?}"
        );
        let text = error.to_string();
        assert!(
            text.contains("UnknownIssuer") || text.contains("unknown issuer"),
            "sslmode={mode}: the error says the issuer is unknown: {text}"
        );
        assert!(text.contains("sslrootcert"), "sslmode={mode}: {text}");
    }
}

#[test]
fn a_host_name_the_certificate_is_not_for_is_refused_unless_verify_ca() {
    let Some(Server { admin, base, ca }) = setup() else {
        return;
    };
    // Connect to 127.0.0.1, but as a name the certificate (127.0.0.1 and localhost) does
    // not cover: the name is what TLS checks.
    let wrong = key_value(&base, "es-wrong-name.invalid", "127.0.0.1", "");
    for mode in ["prefer", "require", "verify-full"] {
        let url = format!("{wrong} sslmode={mode} sslrootcert='{ca}'");
        let error = refused(&url, &admin);
        assert!(
            matches!(error, Error::TlsHandshake { .. }),
            "sslmode={mode}: {error:?}"
        );
        let text = error.to_string();
        assert!(
            text.contains("NotValidForName") || text.contains("not valid for name"),
            "sslmode={mode}: the error says the name does not match: {text}"
        );
        assert!(text.contains("verify-ca"), "sslmode={mode}: {text}");
    }
    // verify-ca checks the chain only: the same connection is accepted, encrypted.
    let url = format!("{wrong} sslmode=verify-ca sslrootcert='{ca}'");
    assert!(session_uses_tls(&url));
    let (store, _schema) = store(&url, &admin).expect("verify-ca accepts the name");
    assert_eq!(
        store
            .stream_version(StreamRef::new("Tls", "none"))
            .expect("read"),
        0
    );
}

#[test]
fn sslmode_disable_connects_in_plaintext() {
    let Some(Server { admin, base, .. }) = setup() else {
        return;
    };
    let url = tls_url(&base, "disable", None);
    assert!(!session_uses_tls(&url));
    let (store, _schema) = store(&url, &admin).expect("sslmode=disable connects");
    let stream = StreamRef::new("Plain", "one");
    store
        .append(stream, ExpectedVersion::NoStream, &events(1, 1))
        .expect("append in plaintext");
    // A CA that does not exist does not matter when TLS is off: it is not even read.
    let url = tls_url(&base, "disable", Some("/nonexistent/ca.crt"));
    assert!(!session_uses_tls(&url));
}

#[test]
fn bad_tls_parameters_are_clear_errors() {
    // None of these reaches a server.
    let base = "postgres://es:es@127.0.0.1:1/es";
    let error = PostgresStore::connect(&format!("{base}?sslmode=verify")).unwrap_err();
    assert!(matches!(error, Error::InvalidParameter { .. }), "{error:?}");
    let text = error.to_string();
    for allowed in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
        assert!(text.contains(allowed), "names `{allowed}`: {text}");
    }
    assert!(
        text.contains("`sslmode`") && text.contains("`verify`"),
        "{text}"
    );

    let error = PostgresStore::connect("host=127.0.0.1 port=1 sslmode=Require").unwrap_err();
    assert!(
        error.to_string().contains("`sslmode`"),
        "key=value form: {error}"
    );

    let error = PostgresStore::connect(&format!(
        "{base}?sslmode=verify-full&sslrootcert=/nonexistent/ca.crt"
    ))
    .unwrap_err();
    assert!(matches!(error, Error::RootCert { .. }), "{error:?}");
    assert!(
        error.to_string().contains("/nonexistent/ca.crt"),
        "names the file: {error}"
    );

    let dir = tempfile::tempdir().expect("a temporary directory");
    let not_pem = dir.path().join("ca.crt");
    std::fs::write(&not_pem, "not a certificate\n").expect("write");
    let error =
        PostgresStore::connect(&format!("{base}?sslrootcert={}", not_pem.display())).unwrap_err();
    assert!(matches!(error, Error::RootCert { .. }), "{error:?}");
    assert!(
        error.to_string().contains("BEGIN CERTIFICATE"),
        "says what the file lacks: {error}"
    );

    let error = PostgresStore::connect(&format!("{base}?sslcert=/client.crt")).unwrap_err();
    assert!(matches!(error, Error::InvalidParameter { .. }), "{error:?}");
    assert!(error.to_string().contains("client certificates"), "{error}");
    // Not a TLS parameter at all: the driver's own error, still named.
    let error = PostgresStore::connect(&format!("{base}?sslmodes=disable")).unwrap_err();
    assert!(matches!(error, Error::InvalidUrl { .. }), "{error:?}");
    assert!(error.to_string().contains("sslmodes"), "{error}");
}
