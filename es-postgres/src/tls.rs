//! TLS for the store's connections: the TLS parameters of a connection string (`sslmode`,
//! `sslrootcert`) and the rustls connector they configure.
//!
//! # Connection-string semantics
//!
//! The URL (`postgres://...?sslmode=verify-full&sslrootcert=/path/ca.crt`) and the
//! `key=value` form (`host=db sslmode=verify-full sslrootcert=/path/ca.crt`) take the same
//! parameters:
//!
//! * `sslmode` (libpq's names):
//!   * `disable`: no TLS, the connection is plaintext.
//!   * `prefer` (the default when absent, as in libpq): TLS if the server offers it,
//!     plaintext if it does not. When TLS is used the certificate is verified as for
//!     `verify-full`; a certificate that fails is an error, not a reason to fall back.
//!   * `require`: TLS or no connection; the certificate is verified as for `verify-full`.
//!   * `verify-ca`: TLS or no connection; the certificate must chain to a trusted CA, but
//!     may be for any host name.
//!   * `verify-full`: TLS or no connection; the certificate must chain to a trusted CA
//!     and be for the host name (or IP address) the URL connects to.
//! * `sslrootcert`: the path of a PEM file with the CA certificate(s) to trust, or
//!   `system` for the operating system's trust store. Without it, the system's trust
//!   store is used (libpq would read `~/.postgresql/root.crt`).
//!
//! This is stricter than libpq, whose `prefer` and `require` encrypt without checking the
//! certificate at all (and `require` checks only the chain when a root certificate is
//! present). An unchecked certificate protects against someone who can only listen, not
//! against one who can intercept: whoever sits between the application and the server can
//! present any certificate, read the events and collect the login. libpq keeps those
//! defaults for compatibility; a new library need not, so es verifies whenever it uses
//! TLS. There is deliberately no "encrypted but unverified" mode: trust a self-signed or
//! private CA with `sslrootcert`, use `verify-ca` for a certificate without the right
//! name, or `disable` for plaintext. (`prefer` still falls back to plaintext when the
//! server offers no TLS, which someone on the path can fake: use `require` or
//! `verify-full` where the network is not trusted.)
//!
//! tokio-postgres's parser knows neither `sslrootcert` nor `verify-ca`/`verify-full`, so
//! [`parse_url`] takes the TLS parameters out of the string itself and hands the rest on.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::Error;

/// What `sslmode` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it, verified as `VerifyFull`.
    Prefer,
    /// TLS, verified as `VerifyFull`.
    Require,
    /// TLS, chain verified, host name not checked.
    VerifyCa,
    /// TLS, chain and host name verified.
    VerifyFull,
}

/// The `sslmode` values, for error messages.
const SSLMODES: &str = "disable, prefer (the default), require, verify-ca or verify-full";

impl SslMode {
    fn parse(value: &str) -> Result<Self, Error> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            "allow" => {
                return Err(invalid(
                    "sslmode",
                    format!(
                        "`allow` (plaintext first, TLS only if the server insists) is not supported; use one of {SSLMODES}"
                    ),
                ));
            }
            other => {
                return Err(invalid(
                    "sslmode",
                    format!("unknown value `{other}`; use one of {SSLMODES}"),
                ));
            }
        })
    }

    /// The mode tokio-postgres negotiates with; verification is the connector's business.
    fn driver_mode(self) -> tokio_postgres::config::SslMode {
        match self {
            Self::Disable => tokio_postgres::config::SslMode::Disable,
            Self::Prefer => tokio_postgres::config::SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

fn invalid(parameter: &str, reason: impl Into<String>) -> Error {
    Error::InvalidParameter {
        parameter: parameter.to_owned(),
        reason: reason.into(),
    }
}

/// libpq's TLS parameters that es does not support, with what to do instead.
fn unsupported(key: &str) -> Option<&'static str> {
    Some(match key {
        "sslcert" | "sslkey" | "sslpassword" | "sslcertmode" => {
            "client certificates are not supported; authenticate with a password (scram-sha-256) and remove this parameter"
        }
        "sslcrl" | "sslcrldir" => {
            "certificate revocation lists are not supported; remove this parameter"
        }
        "sslcompression"
        | "sslsni"
        | "ssl_min_protocol_version"
        | "ssl_max_protocol_version"
        | "requiressl" => {
            "this TLS setting is not supported (es always sends SNI for host names and uses TLS 1.2 or 1.3); remove it, and use `sslmode` to choose whether and how TLS is used"
        }
        _ => return None,
    })
}

/// The TLS parameters taken out of a connection string.
#[derive(Debug, Default)]
struct TlsParams {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

impl TlsParams {
    /// Takes `key=value` if it is a TLS parameter; `Ok(false)` if it is for the driver.
    fn take(&mut self, key: &str, value: &str) -> Result<bool, Error> {
        match key {
            "sslmode" => self.sslmode = Some(value.to_owned()),
            "sslrootcert" => self.sslrootcert = Some(value.to_owned()),
            key => match unsupported(key) {
                Some(reason) => return Err(invalid(key, reason)),
                None => return Ok(false),
            },
        }
        Ok(true)
    }
}

/// Parses a connection string (a `postgres://` URL or a `key=value` string) into the
/// driver's configuration and the TLS connector its `sslmode` and `sslrootcert` ask for.
///
/// The configuration's `ssl_mode` is set to match (`verify-ca` and `verify-full` become
/// `Require`); connect with the returned [`Tls`]. Errors name the wrong parameter and what
/// it allows; they never repeat the string, which may hold a password.
pub(crate) fn parse_url(url: &str) -> Result<(tokio_postgres::Config, Tls), Error> {
    let mut params = TlsParams::default();
    let rest = strip_tls_params(url, &mut params)?;
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|source| Error::InvalidUrl { cause: source })?;
    let mode = match &params.sslmode {
        Some(value) => SslMode::parse(value)?,
        None => SslMode::Prefer,
    };
    config.ssl_mode(mode.driver_mode());
    let tls = Tls::new(mode, params.sslrootcert.as_deref())?;
    Ok((config, tls))
}

/// `url` without its TLS parameters (collected into `params`).
fn strip_tls_params(url: &str, params: &mut TlsParams) -> Result<String, Error> {
    for prefix in ["postgres://", "postgresql://"] {
        if let Some(rest) = url.strip_prefix(prefix) {
            return strip_url_params(prefix, rest, params);
        }
    }
    strip_key_value_params(url, params)
}

/// The URL form: parameters follow the first `?` after the credentials (which end at the
/// first `@`, as the driver reads them), `&`-separated and percent-encoded.
fn strip_url_params(prefix: &str, rest: &str, params: &mut TlsParams) -> Result<String, Error> {
    let after_credentials = rest.find('@').map_or(0, |at| at + 1);
    let Some(question) = rest[after_credentials..].find('?') else {
        return Ok(format!("{prefix}{rest}"));
    };
    let (head, query) = rest.split_at(after_credentials + question);
    let query = &query[1..];
    let mut kept = Vec::new();
    for pair in query.split('&') {
        if pair.is_empty() {
            continue;
        }
        // A pair without `=` is the driver's to report.
        let Some((key, value)) = pair.split_once('=') else {
            kept.push(pair);
            continue;
        };
        let key_text = percent_decode(key).map_err(|reason| invalid(key, reason))?;
        let is_tls = matches!(key_text.as_str(), "sslmode" | "sslrootcert")
            || unsupported(&key_text).is_some();
        if !is_tls {
            kept.push(pair);
            continue;
        }
        let value = percent_decode(value).map_err(|reason| invalid(&key_text, reason))?;
        params.take(&key_text, &value)?;
    }
    let mut out = format!("{prefix}{head}");
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    Ok(out)
}

/// Decodes `%XX` escapes (and nothing else: `+` stays `+`, as the driver reads it).
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok());
            if let Some(byte) = hex {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| {
        "the percent-encoded text is not UTF-8; percent-encode the UTF-8 bytes of the value"
            .to_owned()
    })
}

/// The `key=value` form: whitespace-separated pairs, values optionally single-quoted, with
/// `\` escaping the next character (the driver's and libpq's grammar). The pairs that are
/// not TLS parameters are written back, each value quoted.
fn strip_key_value_params(text: &str, params: &mut TlsParams) -> Result<String, Error> {
    let mut chars = text.chars().peekable();
    let mut out = String::new();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        if key.is_empty() {
            if chars.peek().is_some() {
                return Err(invalid(
                    "(connection string)",
                    "a `=` without a parameter name before it; write `key=value` pairs separated by spaces",
                ));
            }
            return Ok(out);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(invalid(
                &key,
                "no `=value` after the parameter name; write `key=value` pairs separated by spaces",
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(invalid(
                            &key,
                            "the quoted value has no closing `'`; end it with `'` (write `\\'` for a quote inside it)",
                        ));
                    }
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        if !params.take(&key, &value)? {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&key);
            out.push_str("='");
            out.push_str(&value.replace('\\', "\\\\").replace('\'', "\\'"));
            out.push('\'');
        }
    }
}

/// The TLS connector of a connection string: rustls (with the `ring` provider) verifying
/// the server as its `sslmode` says, against the CA of its `sslrootcert` or the system's
/// trust store.
///
/// For `sslmode=disable` the configuration returned with it never asks for TLS, and the
/// connector trusts nothing (no trust store is loaded).
#[derive(Clone)]
pub(crate) struct Tls {
    mode: SslMode,
    connector: MakeRustlsConnect,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("mode", &self.mode).finish()
    }
}

impl Tls {
    fn new(mode: SslMode, sslrootcert: Option<&str>) -> Result<Self, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = match (mode, sslrootcert) {
            (SslMode::Disable, _) => Roots::None("TLS is disabled by sslmode=disable"),
            (_, None | Some("system")) => system_roots(),
            (_, Some(path)) => Roots::Some(file_roots(path)?),
        };
        let verifier = Verifier::new(roots, mode != SslMode::VerifyCa, provider.clone())?;
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| Error::Tls {
                reason: format!("the TLS library refused its configuration: {error}"),
            })?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Self {
            mode,
            connector: MakeRustlsConnect::new(config),
        })
    }

    /// The `sslmode` this connector was made for.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn mode(&self) -> SslMode {
        self.mode
    }
}

impl<S> MakeTlsConnect<S> for Tls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = <MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect;
    type Error = <MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        MakeTlsConnect::<S>::make_tls_connect(&mut self.connector, domain)
    }
}

/// The CA certificates to trust, or why there are none.
enum Roots {
    Some(RootCertStore),
    None(&'static str),
}

/// The operating system's trust store (rustls-native-certs: what the system's own tools
/// trust, including CAs an administrator installed, rather than webpki-roots' compiled-in
/// copy of Mozilla's list, which goes stale with the binary and knows no private CA; a
/// database server's certificate is more often from a company CA than a public one).
///
/// Not finding any is not an error here: `prefer` must still reach a server without TLS.
/// A server that does offer TLS is then refused, with a message that says what to do.
fn system_roots() -> Roots {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    // Unparsable certificates in the system store are skipped, as other clients do.
    let _ = roots.add_parsable_certificates(loaded.certs);
    if roots.is_empty() {
        Roots::None(
            "no CA certificates were found in the system trust store; set `sslrootcert` to the PEM file of the CA that signed the server's certificate (or install the system's CA certificates)",
        )
    } else {
        Roots::Some(roots)
    }
}

/// The CA certificates of the PEM file at `path`.
fn file_roots(path: &str) -> Result<RootCertStore, Error> {
    let bad = |reason: String| Error::RootCert {
        path: PathBuf::from(path),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|error| bad(format!("cannot read it: {error}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| bad(format!("it is not valid PEM: {error}")))?;
    if certs.is_empty() {
        return Err(bad(
            "it holds no `-----BEGIN CERTIFICATE-----` block".to_owned()
        ));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|error| {
            bad(format!(
                "a certificate in it is not usable as a CA: {error}"
            ))
        })?;
    }
    Ok(roots)
}

/// rustls's WebPKI verification, with the host name check optional (for `verify-ca`), and
/// a clear refusal when there is nothing to trust.
#[derive(Debug)]
struct Verifier {
    /// `Err` holds why no certificate can be trusted.
    inner: Result<Arc<WebPkiServerVerifier>, &'static str>,
    check_host: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Verifier {
    fn new(roots: Roots, check_host: bool, provider: Arc<CryptoProvider>) -> Result<Self, Error> {
        let algorithms = provider.signature_verification_algorithms;
        let inner = match roots {
            Roots::None(why) => Err(why),
            Roots::Some(roots) => Ok(WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|error| Error::Tls {
                reason: format!("cannot set up certificate verification: {error}"),
            })?),
        };
        Ok(Self {
            inner,
            check_host,
            algorithms,
        })
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let inner = self
            .inner
            .as_ref()
            .map_err(|why| rustls::Error::General((*why).to_owned()))?;
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            // WebPKI checks the name last, after the chain, its validity and usage: with
            // only the name wrong, everything `verify-ca` asks for has passed.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_host => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Opens a [`postgres::Client`] to the database at `url`, with the TLS the store would use:
/// the same `sslmode` and `sslrootcert` semantics (see the
/// [crate documentation](crate#tls)), which `postgres::Client::connect` does not know. Use
/// it for the connection whose transactions you pass to
/// [`append_in_transaction`](crate::append_in_transaction), or for your own queries.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let url = "postgres://es:es@db.internal/es?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.crt";
/// let mut client = es_postgres::connect_client(url)?;
/// let mut tx = client.transaction()?;
/// // ... your writes, then es_postgres::append_in_transaction(&mut tx, "public", ...)
/// tx.commit()?;
/// # Ok(())
/// # }
/// ```
///
/// Unlike the store's calls, the client it returns is the driver's own: like any
/// `postgres::Client`, use (and drop) it outside async code, e.g. in
/// `tokio::task::spawn_blocking`. Connecting works anywhere.
pub fn connect_client(url: &str) -> Result<postgres::Client, Error> {
    crate::offload::blocking(
        || {
            let (config, tls) = parse_url(url)?;
            postgres::Config::from(config)
                .connect(tls)
                .map_err(crate::store::connect_error)
        },
        |source| Err(Error::Thread { cause: source }),
    )
}

/// Whether `error` (a failed connect) failed in the TLS handshake, as opposed to
/// reaching or logging in to the server.
pub(crate) fn is_tls_failure(error: &tokio_postgres::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if cause.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                return true;
            }
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripped(url: &str) -> (String, Option<String>, Option<String>) {
        let mut params = TlsParams::default();
        let rest = strip_tls_params(url, &mut params).expect("strips");
        (rest, params.sslmode, params.sslrootcert)
    }

    #[test]
    fn url_parameters_are_taken_out_and_the_rest_kept() {
        let (rest, mode, root) = stripped(
            "postgres://u:p%3F@h:5432/db?application_name=x&sslmode=verify-full&sslrootcert=%2Ftmp%2Fca%20x.crt&connect_timeout=3",
        );
        assert_eq!(
            rest,
            "postgres://u:p%3F@h:5432/db?application_name=x&connect_timeout=3"
        );
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/tmp/ca x.crt"));

        let (rest, mode, _) = stripped("postgresql://u:a?b@h/db?sslmode=disable");
        assert_eq!(rest, "postgresql://u:a?b@h/db");
        assert_eq!(mode.as_deref(), Some("disable"));

        let (rest, mode, _) = stripped("postgres://h/db");
        assert_eq!(rest, "postgres://h/db");
        assert_eq!(mode, None);
    }

    #[test]
    fn key_value_parameters_are_taken_out_and_the_rest_requoted() {
        let (rest, mode, root) = stripped(
            "host=h  password = 'it\\'s x' sslmode=verify-ca sslrootcert='/a b/ca.crt' dbname=d",
        );
        assert_eq!(rest, "host='h' password='it\\'s x' dbname='d'");
        assert_eq!(mode.as_deref(), Some("verify-ca"));
        assert_eq!(root.as_deref(), Some("/a b/ca.crt"));
        let config: tokio_postgres::Config = rest.parse().expect("the driver parses it");
        assert_eq!(config.get_password(), Some(&b"it's x"[..]));
    }

    #[test]
    fn modes_map_to_the_driver_and_bad_values_are_named() {
        for (text, mode) in [
            ("disable", tokio_postgres::config::SslMode::Disable),
            ("prefer", tokio_postgres::config::SslMode::Prefer),
            ("require", tokio_postgres::config::SslMode::Require),
            ("verify-full", tokio_postgres::config::SslMode::Require),
        ] {
            let url = format!("host=localhost sslmode={text}");
            let (config, tls) = parse_url(&url).expect("parses");
            assert_eq!(config.get_ssl_mode(), mode, "{text}");
            assert_eq!(tls.mode(), SslMode::parse(text).unwrap());
        }
        let (config, _) = parse_url("postgres://localhost/db").expect("parses");
        assert_eq!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Prefer
        );

        let error = parse_url("postgres://localhost/db?sslmode=verify").unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("`sslmode`") && text.contains("verify-full"),
            "{text}"
        );
        let error = parse_url("host=localhost sslcert=/c.pem").unwrap_err();
        assert!(error.to_string().contains("`sslcert`"), "{error}");
        let error = parse_url("host=localhost sslmode=require sslrootcert=/nonexistent/ca.pem")
            .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("/nonexistent/ca.pem") && text.contains("sslrootcert"),
            "{text}"
        );
    }
}
