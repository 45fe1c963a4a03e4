//! The wire format: how one event of the es log travels as one NATS JetStream message.
//!
//! This module is the one definition of the format; the publisher writes it and the
//! consumer reads it.
//!
//! # Subject
//!
//! `{prefix}.{partition}.{aggregate_type}.{event_type}`, e.g. `es.3.BankAccount.MoneyDeposited`:
//!
//! * `prefix`: [`DEFAULT_PREFIX`] (`es`) unless configured; one or more tokens
//!   ([`validate_prefix`]).
//! * `partition`: a stable hash of the stream, [`partition_of`]: FNV-1a 64 over the
//!   aggregate type's bytes, one `0xff` byte and the stream id's bytes, modulo the
//!   partition count ([`DEFAULT_PARTITIONS`], 16). Every event of one stream lands in one
//!   partition, so a consumer of one partition sees each of its streams in order.
//! * `aggregate_type`, `event_type`: each escaped into a single subject token with
//!   [`escape_token`]: bytes outside `[A-Za-z0-9_-]` become `%XX` (uppercase hex of the
//!   byte; `%` itself included), so dots, spaces, `*`, `>` and any unicode are safe. The
//!   empty string is written as a lone `%`. [`unescape_token`] reverses it.
//!
//! Filters: [`all_filter`] (`es.>`), [`partition_filter`] (`es.3.>`), [`aggregate_filter`]
//! (`es.*.BankAccount.>`), [`event_type_filter`] (`es.*.BankAccount.MoneyDeposited`),
//! [`stream_filter`] (`es.3.BankAccount.>`: the partition and type of one stream).
//!
//! # Headers
//!
//! | header | value |
//! | --- | --- |
//! | [`NATS_MSG_ID`] `Nats-Msg-Id` | the event id (hyphenated UUID): JetStream drops a duplicate within its dedupe window |
//! | [`EVENT_ID`] `Es-Event-Id` | the event id (hyphenated UUID) |
//! | [`AGGREGATE_TYPE`] `Es-Aggregate-Type` | the aggregate type |
//! | [`STREAM_ID`] `Es-Stream-Id` | the stream id |
//! | [`STREAM_VERSION`] `Es-Stream-Version` | the version within the stream (decimal, from 1) |
//! | [`GLOBAL_POSITION`] `Es-Global-Position` | the position in the store's global log (decimal) |
//! | [`EVENT_TYPE`] `Es-Event-Type` | the stored event-type name |
//! | [`SCHEMA_VERSION`] `Es-Schema-Version` | the payload's schema version (decimal) |
//! | [`RECORDED_AT`] `Es-Recorded-At` | when the store recorded it: unix time in microseconds (decimal, negative before 1970) |
//! | [`CORRELATION_ID`] `Es-Correlation-Id` | the metadata's correlation id; only when it has one |
//! | [`CAUSATION_ID`] `Es-Causation-Id` | the metadata's causation id; only when it has one |
//! | [`METADATA`] `Es-Metadata` | the stored metadata JSON text; omitted when it is `{}` |
//!
//! Text values (types, ids, metadata) are escaped with [`escape_header_value`]: printable
//! ASCII but `%` is kept as is, a space too unless it is the first or last character (NATS
//! trims values), every other byte (control characters such as CR and LF, `%`, non-ASCII)
//! becomes `%XX`; the empty string is a lone `%`. [`unescape_header_value`] reverses it.
//! The correlation and causation headers are for routing and tracing; a decoder takes the
//! metadata from `Es-Metadata`, which holds them too. Other headers (the publisher's
//! `Nats-Expected-Stream` and `Nats-Expected-Last-Sequence`, anything a newer version
//! adds) are ignored by the decoder.
//!
//! # Payload
//!
//! The stored JSON payload text, byte for byte (UTF-8, not upcast).
//!
//! # Decoding
//!
//! [`WireEvent::from_message`] (or [`WireEvent::from_nats_message`], which can name the
//! subject in its errors) checks and unescapes the headers into an owned event;
//! [`WireEvent::record`] lends it as an [`EventRecord`], as a store would.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::{HeaderMap, HeaderValue};
use es_core::{EventRecord, MetadataRef, StreamRef, Uuid};
use serde::Deserialize;

use crate::error::{MessageContext, WireError};

/// The subject prefix used unless configured: `es`.
pub const DEFAULT_PREFIX: &str = "es";
/// The JetStream stream name used unless configured: `ES_EVENTS`.
pub const DEFAULT_STREAM: &str = "ES_EVENTS";
/// The partition count used unless configured: 16.
pub const DEFAULT_PARTITIONS: u32 = 16;

/// `Nats-Msg-Id`: the event id, for JetStream's duplicate detection.
pub const NATS_MSG_ID: &str = "Nats-Msg-Id";
/// `Es-Event-Id`: the event id (hyphenated UUID).
pub const EVENT_ID: &str = "Es-Event-Id";
/// `Es-Aggregate-Type`: the aggregate type of the event's stream (escaped).
pub const AGGREGATE_TYPE: &str = "Es-Aggregate-Type";
/// `Es-Stream-Id`: the id of the event's stream (escaped).
pub const STREAM_ID: &str = "Es-Stream-Id";
/// `Es-Stream-Version`: the event's version within its stream.
pub const STREAM_VERSION: &str = "Es-Stream-Version";
/// `Es-Global-Position`: the event's position in the store's global log.
pub const GLOBAL_POSITION: &str = "Es-Global-Position";
/// `Es-Event-Type`: the stored event-type name (escaped).
pub const EVENT_TYPE: &str = "Es-Event-Type";
/// `Es-Schema-Version`: the payload's schema version.
pub const SCHEMA_VERSION: &str = "Es-Schema-Version";
/// `Es-Recorded-At`: when the store recorded the event, unix time in microseconds.
pub const RECORDED_AT: &str = "Es-Recorded-At";
/// `Es-Correlation-Id`: the metadata's correlation id (escaped), when it has one.
pub const CORRELATION_ID: &str = "Es-Correlation-Id";
/// `Es-Causation-Id`: the metadata's causation id (escaped), when it has one.
pub const CAUSATION_ID: &str = "Es-Causation-Id";
/// `Es-Metadata`: the stored metadata JSON text (escaped), omitted when it is `{}`.
pub const METADATA: &str = "Es-Metadata";

/// The partition of the stream `aggregate_type`/`stream_id` among `partitions` (0 is
/// taken as 1): FNV-1a 64 over the aggregate type, a `0xff` byte (which UTF-8 text never
/// contains, so `("ab", "c")` and `("a", "bc")` differ) and the stream id, modulo
/// `partitions`. Stable across processes, machines and versions.
pub fn partition_of(aggregate_type: &str, stream_id: &str, partitions: u32) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut hash = OFFSET;
    let bytes = aggregate_type
        .as_bytes()
        .iter()
        .chain(std::iter::once(&0xffu8))
        .chain(stream_id.as_bytes());
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    // The remainder is below `partitions`, a u32, so the conversion is lossless.
    (hash % u64::from(partitions.max(1))) as u32
}

/// The subject `record` is published on: `{prefix}.{partition}.{aggregate_type}.{event_type}`
/// with the types escaped ([`escape_token`]) and the partition from [`partition_of`].
pub fn subject(prefix: &str, partitions: u32, record: &EventRecord<'_>) -> String {
    let partition = partition_of(record.stream.aggregate_type, record.stream.id, partitions);
    format!(
        "{prefix}.{partition}.{}.{}",
        escape_token(record.stream.aggregate_type),
        escape_token(record.event_type)
    )
}

/// The filter of every event under `prefix`: `{prefix}.>` (the stream's subjects).
pub fn all_filter(prefix: &str) -> String {
    format!("{prefix}.>")
}

/// The filter of one partition's events: `{prefix}.{partition}.>`, e.g. `es.3.>`.
pub fn partition_filter(prefix: &str, partition: u32) -> String {
    format!("{prefix}.{partition}.>")
}

/// The filter of every event of one aggregate type: `{prefix}.*.{aggregate_type}.>`, e.g.
/// `es.*.BankAccount.>`.
pub fn aggregate_filter(prefix: &str, aggregate_type: &str) -> String {
    format!("{prefix}.*.{}.>", escape_token(aggregate_type))
}

/// The filter of one event type of one aggregate type:
/// `{prefix}.*.{aggregate_type}.{event_type}`.
pub fn event_type_filter(prefix: &str, aggregate_type: &str, event_type: &str) -> String {
    format!(
        "{prefix}.*.{}.{}",
        escape_token(aggregate_type),
        escape_token(event_type)
    )
}

/// The narrowest filter that holds every event of one stream:
/// `{prefix}.{partition}.{aggregate_type}.>`. The stream id is not in the subject, so other
/// streams of that type in the same partition match too: check
/// [`WireEvent::stream_id`].
pub fn stream_filter(
    prefix: &str,
    partitions: u32,
    aggregate_type: &str,
    stream_id: &str,
) -> String {
    format!(
        "{prefix}.{}.{}.>",
        partition_of(aggregate_type, stream_id, partitions),
        escape_token(aggregate_type)
    )
}

/// Checks that `prefix` can start a subject: one or more non-empty tokens separated by
/// dots, without wildcards (`*`, `>`), whitespace or control characters.
pub fn validate_prefix(prefix: &str) -> Result<(), WireError> {
    let bad = |problem: &str| WireError::BadPrefix {
        prefix: prefix.to_owned(),
        problem: problem.to_owned(),
    };
    if prefix.is_empty() {
        return Err(bad("it is empty"));
    }
    if prefix.split('.').any(str::is_empty) {
        return Err(bad(
            "it has an empty token (a leading, trailing or double dot)",
        ));
    }
    if prefix.contains(['*', '>']) {
        return Err(bad("it contains a wildcard (`*` or `>`)"));
    }
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains whitespace or a control character"));
    }
    Ok(())
}

/// The parts of an event subject, as [`parse_subject`] finds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectParts {
    /// The partition.
    pub partition: u32,
    /// The aggregate type, unescaped.
    pub aggregate_type: String,
    /// The event type, unescaped.
    pub event_type: String,
}

/// Splits `subject` (published under `prefix`) into its partition and types.
pub fn parse_subject(prefix: &str, subject: &str) -> Result<SubjectParts, WireError> {
    let bad = |problem: String| WireError::BadSubject {
        subject: subject.to_owned(),
        problem,
    };
    let rest = subject
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('.'))
        .ok_or_else(|| bad(format!("it does not start with the prefix `{prefix}.`")))?;
    let mut tokens = rest.split('.');
    let (Some(partition), Some(aggregate_type), Some(event_type), None) =
        (tokens.next(), tokens.next(), tokens.next(), tokens.next())
    else {
        return Err(bad(
            "it does not have the three tokens `{partition}.{aggregate_type}.{event_type}` after the prefix".to_owned(),
        ));
    };
    let partition = partition
        .parse()
        .map_err(|_| bad(format!("its partition `{partition}` is not a number")))?;
    let unescape = |token: &str| unescape_token(token).map_err(|e| bad(e.to_string()));
    Ok(SubjectParts {
        partition,
        aggregate_type: unescape(aggregate_type)?,
        event_type: unescape(event_type)?,
    })
}

/// Escapes `text` into one subject token: bytes outside `[A-Za-z0-9_-]` become `%XX`
/// (uppercase hex; `%` itself included); the empty string becomes `%`. Borrows when
/// nothing needs escaping.
pub fn escape_token(text: &str) -> Cow<'_, str> {
    escape(text, |byte, _, _| {
        byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
    })
}

/// Reverses [`escape_token`]: `%XX` becomes the byte `XX`, a lone `%` the empty string.
/// Fails on a `%` not followed by two hex digits, or bytes that are not UTF-8.
pub fn unescape_token(token: &str) -> Result<String, WireError> {
    unescape(token)
}

/// Escapes `text` into a header value: printable ASCII but `%` is kept, a space too unless
/// it is the first or last character (NATS trims values); every other byte becomes `%XX`
/// and the empty string `%`. Borrows when nothing needs escaping.
pub fn escape_header_value(text: &str) -> Cow<'_, str> {
    let last = text.len().saturating_sub(1);
    escape(text, |byte, index, _| match byte {
        b' ' => index != 0 && index != last,
        b'%' => false,
        0x21..=0x7e => true,
        _ => false,
    })
}

/// Reverses [`escape_header_value`].
pub fn unescape_header_value(value: &str) -> Result<String, WireError> {
    unescape(value)
}

/// Escapes every byte of `text` for which `keep(byte, index, len)` is false.
fn escape(text: &str, keep: impl Fn(u8, usize, usize) -> bool) -> Cow<'_, str> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if text.is_empty() {
        return Cow::Borrowed("%");
    }
    let len = text.len();
    let bytes = text.as_bytes();
    let Some(first) = (0..len).find(|&i| !keep(bytes[i], i, len)) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(len + 8);
    out.push_str(&text[..first]);
    for (index, &byte) in bytes.iter().enumerate().skip(first) {
        if keep(byte, index, len) {
            // Kept bytes are ASCII (every `keep` above keeps ASCII only).
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    Cow::Owned(out)
}

fn unescape(text: &str) -> Result<String, WireError> {
    let bad = |problem: &str| WireError::BadEscape {
        text: text.to_owned(),
        problem: problem.to_owned(),
    };
    if text == "%" {
        return Ok(String::new());
    }
    if !text.contains('%') {
        return Ok(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let digit = |at: usize| {
                bytes
                    .get(at)
                    .and_then(|&b| char::from(b).to_digit(16))
                    .ok_or_else(|| bad("a `%` is not followed by two hex digits"))
            };
            let (high, low) = (digit(index + 1)?, digit(index + 2)?);
            // Two hex digits make at most 0xff.
            out.push((high * 16 + low) as u8);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad("the unescaped bytes are not UTF-8"))
}

/// A header value from escaped text or a number: printable ASCII only.
fn value(text: &str) -> HeaderValue {
    // `text` comes from `escape_header_value` (printable ASCII), a number or a UUID: it has
    // no CR or LF, the only characters `HeaderValue` refuses, so the fallback is never taken.
    text.parse().unwrap_or_default()
}

/// The correlation and causation ids of stored metadata JSON, without parsing the rest.
#[derive(Deserialize)]
struct Ids {
    #[serde(default)]
    correlation_id: Option<String>,
    #[serde(default)]
    causation_id: Option<String>,
}

/// The headers `record` is published with (see the [module documentation](self)).
pub fn headers_of(record: &EventRecord<'_>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let event_id = record.event_id.hyphenated().to_string();
    headers.insert(NATS_MSG_ID, value(&event_id));
    headers.insert(EVENT_ID, value(&event_id));
    headers.insert(
        AGGREGATE_TYPE,
        value(&escape_header_value(record.stream.aggregate_type)),
    );
    headers.insert(STREAM_ID, value(&escape_header_value(record.stream.id)));
    headers.insert(STREAM_VERSION, HeaderValue::from(record.stream_version));
    headers.insert(GLOBAL_POSITION, HeaderValue::from(record.global_position));
    headers.insert(EVENT_TYPE, value(&escape_header_value(record.event_type)));
    headers.insert(SCHEMA_VERSION, HeaderValue::from(record.schema_version));
    headers.insert(
        RECORDED_AT,
        HeaderValue::from(unix_micros(record.recorded_at)),
    );
    let (json, ids) = match record.metadata {
        MetadataRef::Parsed(metadata) if metadata.is_empty() => (None, None),
        MetadataRef::Parsed(metadata) => (
            // `Metadata` is strings and a map of JSON values with string keys, which
            // serde_json always serializes; an error would only drop the header.
            serde_json::to_string(metadata).ok().map(Cow::Owned),
            Some((
                metadata.correlation_id.clone(),
                metadata.causation_id.clone(),
            )),
        ),
        MetadataRef::Json(text) if text.trim() == "{}" => (None, None),
        MetadataRef::Json(text) => (
            Some(Cow::Borrowed(text)),
            // Metadata that is not JSON (a damaged row) is passed on as stored; it just
            // carries no id headers.
            serde_json::from_str::<Ids>(text)
                .ok()
                .map(|ids| (ids.correlation_id, ids.causation_id)),
        ),
    };
    if let Some((correlation, causation)) = ids {
        if let Some(id) = correlation {
            headers.insert(CORRELATION_ID, value(&escape_header_value(&id)));
        }
        if let Some(id) = causation {
            headers.insert(CAUSATION_ID, value(&escape_header_value(&id)));
        }
    }
    if let Some(json) = json {
        headers.insert(METADATA, value(&escape_header_value(&json)));
    }
    headers
}

/// Unix time in microseconds, negative before 1970, saturating far out of range.
fn unix_micros(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
    }
}

fn from_unix_micros(micros: i64) -> Option<SystemTime> {
    let magnitude = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

/// One event decoded from a NATS message, owned; [`record`](WireEvent::record) lends it
/// as an [`EventRecord`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireEvent {
    /// The event's unique id.
    pub event_id: Uuid,
    /// The aggregate type of its stream.
    pub aggregate_type: String,
    /// The id of its stream.
    pub stream_id: String,
    /// Its version within its stream.
    pub stream_version: u64,
    /// Its position in the publishing store's global log.
    pub global_position: u64,
    /// The stored event-type name.
    pub event_type: String,
    /// The payload's schema version.
    pub schema_version: u32,
    /// When the store recorded it (to the microsecond).
    pub recorded_at: SystemTime,
    /// The JSON payload text, as stored.
    pub payload: String,
    /// The metadata JSON text, as stored (`{}` when the message has none).
    pub metadata: String,
    /// The `Es-Correlation-Id` header, if any.
    pub correlation_id: Option<String>,
    /// The `Es-Causation-Id` header, if any.
    pub causation_id: Option<String>,
}

impl WireEvent {
    /// Decodes the headers and payload of a message written by [`headers_of`] (see the
    /// [module documentation](self)). The payload is checked to be UTF-8, not parsed.
    pub fn from_message(headers: &HeaderMap, payload: &[u8]) -> Result<Self, WireError> {
        decode(None, Some(headers), payload)
    }

    /// Decodes a NATS message (a JetStream message derefs to one), naming its subject in
    /// errors.
    pub fn from_nats_message(message: &async_nats::Message) -> Result<Self, WireError> {
        decode(
            Some(message.subject.as_str()),
            message.headers.as_ref(),
            &message.payload,
        )
    }

    /// This event as a store would lend it (metadata as [`MetadataRef::Json`]).
    pub fn record(&self) -> EventRecord<'_> {
        EventRecord {
            event_id: self.event_id,
            stream: StreamRef::new(&self.aggregate_type, &self.stream_id),
            stream_version: self.stream_version,
            global_position: self.global_position,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            recorded_at: self.recorded_at,
            payload: &self.payload,
            metadata: MetadataRef::Json(&self.metadata),
        }
    }
}

/// What is wrong with a header value that does not unescape, for [`WireError::BadHeader`]
/// (which names the value itself): the problem, without the value again.
fn escape_problem(error: WireError) -> String {
    match error {
        WireError::BadEscape { problem, .. } => {
            format!("not escaped text of the es wire format ({problem})")
        }
        other => other.to_string(),
    }
}

fn decode(
    subject: Option<&str>,
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<WireEvent, WireError> {
    let mut at = MessageContext {
        subject: subject.map(str::to_owned),
        event_id: None,
    };
    let Some(headers) = headers else {
        return Err(WireError::NoHeaders { at });
    };
    let raw = |name: &'static str| headers.get(name).map(HeaderValue::as_str);
    // The id first, so that later errors can name the event.
    at.event_id = raw(EVENT_ID)
        .or_else(|| raw(NATS_MSG_ID))
        .map(str::to_owned);
    let required = |name: &'static str, at: &MessageContext| {
        raw(name).ok_or_else(|| WireError::MissingHeader {
            header: name,
            at: at.clone(),
        })
    };
    let bad = |name: &'static str, value: &str, problem: String, at: &MessageContext| {
        WireError::BadHeader {
            header: name,
            value: value.to_owned(),
            problem,
            at: at.clone(),
        }
    };
    let number = |name: &'static str, at: &MessageContext| -> Result<u64, WireError> {
        let text = required(name, at)?;
        text.parse()
            .map_err(|_| bad(name, text, "not an unsigned integer".to_owned(), at))
    };
    let text = |name: &'static str, at: &MessageContext| -> Result<String, WireError> {
        let text = required(name, at)?;
        unescape_header_value(text).map_err(|e| bad(name, text, escape_problem(e), at))
    };
    let optional = |name: &'static str, at: &MessageContext| -> Result<Option<String>, WireError> {
        raw(name)
            .map(|text| {
                unescape_header_value(text).map_err(|e| bad(name, text, escape_problem(e), at))
            })
            .transpose()
    };

    let id_text = required(EVENT_ID, &at)?;
    let event_id = Uuid::parse_str(id_text)
        .map_err(|e| bad(EVENT_ID, id_text, format!("not a UUID ({e})"), &at))?;
    let schema_text = required(SCHEMA_VERSION, &at)?;
    let schema_version = schema_text.parse().map_err(|_| {
        bad(
            SCHEMA_VERSION,
            schema_text,
            "not an unsigned 32-bit integer".to_owned(),
            &at,
        )
    })?;
    let recorded_text = required(RECORDED_AT, &at)?;
    let recorded_at = recorded_text
        .parse::<i64>()
        .ok()
        .and_then(from_unix_micros)
        .ok_or_else(|| {
            bad(
                RECORDED_AT,
                recorded_text,
                "not a unix time in microseconds this system can represent".to_owned(),
                &at,
            )
        })?;
    let payload = String::from_utf8(payload.to_vec()).map_err(|e| WireError::PayloadNotUtf8 {
        at: at.clone(),
        problem: e.utf8_error().to_string(),
    })?;
    Ok(WireEvent {
        event_id,
        aggregate_type: text(AGGREGATE_TYPE, &at)?,
        stream_id: text(STREAM_ID, &at)?,
        stream_version: number(STREAM_VERSION, &at)?,
        global_position: number(GLOBAL_POSITION, &at)?,
        event_type: text(EVENT_TYPE, &at)?,
        schema_version,
        recorded_at,
        payload,
        metadata: optional(METADATA, &at)?.unwrap_or_else(|| "{}".to_owned()),
        correlation_id: optional(CORRELATION_ID, &at)?,
        causation_id: optional(CAUSATION_ID, &at)?,
    })
}

impl fmt::Display for SubjectParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "partition {}, aggregate type `{}`, event type `{}`",
            self.partition, self.aggregate_type, self.event_type
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use es_core::{Metadata, RawValue, RecordedEvent};

    const ODD: &[&str] = &[
        "plain",
        "with.dots",
        "with space",
        " leading and trailing ",
        "star*",
        "gt>",
        "100%",
        "%41",
        "ünïcödé ✓ 日本",
        "new\nline\r\n",
        "tab\there",
        "",
        "%",
        "a:b",
        "-_",
    ];

    fn recorded(
        aggregate_type: &str,
        stream_id: &str,
        event_type: &str,
        metadata: Metadata,
    ) -> RecordedEvent {
        RecordedEvent {
            event_id: Uuid::new_v4(),
            aggregate_type: aggregate_type.to_owned(),
            stream_id: stream_id.to_owned(),
            stream_version: 7,
            global_position: 1234,
            event_type: event_type.to_owned(),
            schema_version: 3,
            recorded_at: UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            payload: RawValue::from_string(r#"{"amount":5,"note":"ü\n"}"#.to_owned())
                .expect("valid JSON"),
            metadata,
        }
    }

    #[test]
    fn tokens_round_trip_and_are_single_valid_tokens() {
        for text in ODD {
            let token = escape_token(text);
            assert!(!token.is_empty(), "{text:?}");
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'%'),
                "{text:?} -> {token}"
            );
            assert_eq!(unescape_token(&token).expect("unescapes"), *text);
        }
        assert_eq!(escape_token("Account"), Cow::Borrowed("Account"));
        assert_eq!(escape_token("a.b c%"), "a%2Eb%20c%25");
        assert_eq!(escape_token("é"), "%C3%A9");
    }

    #[test]
    fn header_values_round_trip_without_cr_lf_or_edge_spaces() {
        for text in ODD {
            let escaped = escape_header_value(text);
            assert!(!escaped.contains(['\r', '\n']), "{text:?}");
            assert_eq!(escaped.trim(), escaped, "{text:?}");
            assert!(escaped.bytes().all(|b| (0x20..0x7f).contains(&b)));
            assert_eq!(unescape_header_value(&escaped).expect("unescapes"), *text);
        }
        assert_eq!(escape_header_value("a b:c*>"), "a b:c*>");
        assert_eq!(escape_header_value(" x "), "%20x%20");
    }

    #[test]
    fn bad_escapes_are_errors_not_panics() {
        for bad in ["%", "%4", "%G0", "a%", "%FF%FE"] {
            if bad == "%" {
                assert_eq!(unescape_token(bad).expect("empty"), "");
                continue;
            }
            let error = unescape_token(bad).expect_err(bad);
            assert!(error.to_string().contains(bad), "{error}");
        }
    }

    #[test]
    fn partitions_are_stable_and_in_range() {
        // FNV-1a 64 of "A\xffx" computed independently: a change of hash breaks consumers.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in [b'A', 0xff, b'x'] {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        assert_eq!(u64::from(partition_of("A", "x", 1000)), hash % 1000);
        assert_ne!(
            (partition_of("ab", "c", 1 << 30)),
            partition_of("a", "bc", 1 << 30)
        );
        for i in 0..200 {
            let id = format!("acc-{i}");
            assert!(partition_of("Account", &id, 16) < 16);
            assert_eq!(
                partition_of("Account", &id, 16),
                partition_of("Account", &id, 16)
            );
        }
        assert_eq!(partition_of("Account", "x", 0), 0);
        assert_eq!(partition_of("Account", "x", 1), 0);
    }

    #[test]
    fn subjects_and_filters() {
        let event = recorded("Bank.Account", "acc 1", "Money>Deposited", Metadata::new());
        let subject = subject("es", 16, &event.as_record());
        let partition = partition_of("Bank.Account", "acc 1", 16);
        assert_eq!(
            subject,
            format!("es.{partition}.Bank%2EAccount.Money%3EDeposited")
        );
        let parts = parse_subject("es", &subject).expect("parses");
        assert_eq!(parts.partition, partition);
        assert_eq!(parts.aggregate_type, "Bank.Account");
        assert_eq!(parts.event_type, "Money>Deposited");
        assert_eq!(partition_filter("es", 3), "es.3.>");
        assert_eq!(aggregate_filter("es", "Account"), "es.*.Account.>");
        assert_eq!(event_type_filter("es", "A", "E.x"), "es.*.A.E%2Ex");
        assert_eq!(all_filter("prod.es"), "prod.es.>");
        assert_eq!(
            stream_filter("es", 16, "Bank.Account", "acc 1"),
            format!("es.{partition}.Bank%2EAccount.>")
        );
        assert!(parse_subject("es", "other.1.A.B").is_err());
        assert!(parse_subject("es", "es.1.A").is_err());
        assert!(parse_subject("es", "es.x.A.B").is_err());
        assert!(parse_subject("es", "es.1.A.B.C").is_err());
    }

    #[test]
    fn prefixes_are_validated() {
        for good in ["es", "prod.es", "a-b_c"] {
            validate_prefix(good).expect(good);
        }
        for bad in ["", ".es", "es.", "a..b", "es.*", "es.>", "e s", "e\ns"] {
            let error = validate_prefix(bad).expect_err(bad);
            assert!(error.to_string().contains("prefix"), "{error}");
        }
    }

    #[test]
    fn records_round_trip_with_odd_names() {
        let metadata = Metadata::new()
            .with_correlation_id("corr\n1")
            .with_causation_id(" cause ")
            .with_entry("user", "ålice%");
        for aggregate_type in ODD {
            for (stream_id, event_type) in
                [("new\nline", "E.v1"), ("", "*"), ("%", ">"), ("ü x", "%")]
            {
                let event = recorded(aggregate_type, stream_id, event_type, metadata.clone());
                let record = event.as_record();
                let headers = headers_of(&record);
                for (name, values) in headers.iter() {
                    for value in values {
                        assert!(!value.as_str().contains(['\r', '\n']), "{name}");
                        assert_eq!(value.as_str().trim(), value.as_str(), "{name}");
                    }
                }
                assert_eq!(
                    headers.get(NATS_MSG_ID).map(HeaderValue::as_str),
                    Some(event.event_id.hyphenated().to_string().as_str())
                );
                let decoded =
                    WireEvent::from_message(&headers, record.payload.as_bytes()).expect("decodes");
                assert_eq!(decoded.correlation_id.as_deref(), Some("corr\n1"));
                assert_eq!(decoded.causation_id.as_deref(), Some(" cause "));
                let back = decoded.record().to_recorded().expect("valid JSON");
                assert_eq!(back, event);
                assert_eq!(decoded.payload, event.payload.get());
            }
        }
    }

    #[test]
    fn stored_json_metadata_is_passed_as_is_and_empty_is_omitted() {
        let event = recorded("A", "s", "E", Metadata::new());
        let mut record = event.as_record();
        let headers = headers_of(&record);
        assert!(headers.get(METADATA).is_none());
        assert!(headers.get(CORRELATION_ID).is_none());
        let decoded = WireEvent::from_message(&headers, b"{}").expect("decodes");
        assert_eq!(decoded.metadata, "{}");

        let text = r#"{"correlation_id": "c-1", "extra": {"k": [1, 2]}}"#;
        record.metadata = MetadataRef::Json(text);
        let headers = headers_of(&record);
        assert_eq!(
            headers.get(CORRELATION_ID).map(HeaderValue::as_str),
            Some("c-1")
        );
        assert!(headers.get(CAUSATION_ID).is_none());
        let decoded = WireEvent::from_message(&headers, b"{}").expect("decodes");
        assert_eq!(decoded.metadata, text);

        record.metadata = MetadataRef::Json("{}");
        assert!(headers_of(&record).get(METADATA).is_none());
    }

    #[test]
    fn recorded_at_before_1970_round_trips() {
        let mut event = recorded("A", "s", "E", Metadata::new());
        event.recorded_at = UNIX_EPOCH - Duration::from_micros(5_000_001);
        let headers = headers_of(&event.as_record());
        assert_eq!(
            headers.get(RECORDED_AT).map(HeaderValue::as_str),
            Some("-5000001")
        );
        let decoded = WireEvent::from_message(&headers, b"1").expect("decodes");
        assert_eq!(decoded.recorded_at, event.recorded_at);
    }

    #[test]
    fn decode_errors_name_the_header_and_the_event() {
        let event = recorded("A", "s", "E", Metadata::new());
        let good = headers_of(&event.as_record());
        let id = event.event_id.to_string();

        let mut missing = HeaderMap::new();
        for (name, values) in good.iter() {
            if name.to_string() != STREAM_VERSION {
                for value in values {
                    missing.insert(name.clone(), value.clone());
                }
            }
        }
        let error = WireEvent::from_message(&missing, b"{}").expect_err("missing");
        let text = error.to_string();
        assert!(
            text.contains(STREAM_VERSION) && text.contains(&id),
            "{text}"
        );

        let mut bad = good.clone();
        bad.insert(GLOBAL_POSITION, "twelve");
        let text = WireEvent::from_message(&bad, b"{}")
            .expect_err("bad")
            .to_string();
        assert!(
            text.contains(GLOBAL_POSITION) && text.contains("twelve") && text.contains(&id),
            "{text}"
        );

        let mut bad = good.clone();
        bad.insert(AGGREGATE_TYPE, "%ZZ");
        let text = WireEvent::from_message(&bad, b"{}")
            .expect_err("bad escape")
            .to_string();
        assert!(text.contains(AGGREGATE_TYPE), "{text}");
        // The value once, and the escape problem without it.
        assert_eq!(text.matches("%ZZ").count(), 1, "{text}");
        assert!(
            text.contains(
                "is `%ZZ`, which is not escaped text of the es wire format (a `%` is not followed by two hex digits)"
            ),
            "{text}"
        );

        let text = WireEvent::from_message(&good, &[0xff, 0xfe])
            .expect_err("utf8")
            .to_string();
        assert!(text.contains("UTF-8") && text.contains(&id), "{text}");

        let mut message = async_nats::Message {
            subject: "es.1.A.E".into(),
            reply: None,
            payload: "{}".into(),
            headers: None,
            status: None,
            description: None,
            length: 0,
        };
        let text = WireEvent::from_nats_message(&message)
            .expect_err("no headers")
            .to_string();
        assert!(text.contains("es.1.A.E"), "{text}");
        message.headers = Some(missing);
        let text = WireEvent::from_nats_message(&message)
            .expect_err("missing")
            .to_string();
        assert!(
            text.contains("es.1.A.E") && text.contains(STREAM_VERSION),
            "{text}"
        );
    }
}
