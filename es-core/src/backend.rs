//! Helpers for implementing [`EventStore`](crate::EventStore) over a database: refusing at
//! append what could not be read back, and turning the columns of a stored row into an
//! [`EventRecord`] without trusting them.
//!
//! A row another program damaged must come back as [`StoreError::Corrupt`] naming the
//! stream, version, event type and global position, never as a panic. Read the identifying
//! columns first into a [`RawRowIdentity`], [`check`](RawRowIdentity::check) it, then read
//! every other column through the resulting [`RowIdentity`], which reports problems against
//! it. The columns are borrowed from the row: nothing is copied.
//!
//! ```
//! use es_core::backend::RawRowIdentity;
//!
//! let raw = RawRowIdentity::<String> {
//!     global_position: Ok(7),
//!     aggregate_type: Ok("Account"),
//!     stream_id: Ok("a-1"),
//!     stream_version: Ok(2),
//!     event_type: Ok("Deposited"),
//! };
//! let row = raw.check()?;
//! let error = row.json("payload", b"\xff").unwrap_err();
//! assert!(error.to_string().contains("version 2 of stream `Account/a-1`"));
//! assert!(error.to_string().contains("global position 7"));
//! # Ok::<(), es_core::StoreError>(())
//! ```

use std::fmt::Display;
use std::time::SystemTime;

use serde_json::Value;
use uuid::Uuid;

use crate::envelope::{EventRecord, MetadataRef, NewEvent, StreamKey, StreamRef};
/// How a [`CheckpointStore`](crate::CheckpointStore) decides a lease request.
pub use crate::projection::decide_lease;
use crate::store::{AppendOptions, AppendOutcome, MAX_IDEMPOTENCY_KEY_LEN, Snapshot, StoreError};

/// The deepest nesting of arrays and objects a stored payload may have: serde_json refuses
/// to parse anything deeper (its recursion limit), so such an event could never be read.
pub const MAX_JSON_DEPTH: usize = 127;

/// Checks, before anything is written, that every event of a batch can be read back by
/// every store, and that the stream and options can be stored: refuses (as
/// [`StoreError::Invalid`], naming the stream and the event) a schema version of 0, an
/// empty event type, a NUL character in a name or key, JSON nested deeper than
/// [`MAX_JSON_DEPTH`], and an idempotency key that is empty or too long.
///
/// Every store calls it first in its append, so a batch is refused whole.
///
/// ```
/// use es_core::backend::validate_batch;
/// use es_core::{AppendOptions, Metadata, NewEvent, StreamRef};
///
/// let stream = StreamRef::new("Account", "a-1");
/// let deep = serde_json::from_str(&format!("{}{}", "[".repeat(100), "]".repeat(100)))?;
/// let mut events = vec![NewEvent::new("Deposited", 1, deep, Metadata::new())];
/// assert!(validate_batch(stream, &events, AppendOptions::new()).is_ok());
/// events[0].schema_version = 0;
/// let error = validate_batch(stream, &events, AppendOptions::new()).unwrap_err();
/// assert!(error.to_string().contains("schema version 0"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn validate_batch(
    stream: StreamRef<'_>,
    events: &[NewEvent],
    options: AppendOptions<'_>,
) -> Result<(), StoreError> {
    let invalid = |reason: String| StoreError::Invalid {
        stream: stream.to_key(),
        reason,
    };
    for (what, text) in [
        ("aggregate type", stream.aggregate_type),
        ("stream id", stream.id),
    ] {
        if text.is_empty() {
            return Err(invalid(format!("the {what} is empty")));
        }
        if text.contains('\0') {
            return Err(invalid(format!(
                "the {what} contains a NUL character, which not every store can hold; remove it"
            )));
        }
    }
    if let Some(key) = options.idempotency_key {
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN || key.contains('\0') {
            return Err(invalid(format!(
                "the idempotency key {key:?} must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} bytes without NUL characters"
            )));
        }
    }
    for (index, event) in events.iter().enumerate() {
        let problem = if event.schema_version == 0 {
            Some("it has schema version 0; schema versions start at 1".to_owned())
        } else if event.event_type.is_empty() {
            Some("its event type is empty".to_owned())
        } else if event.event_type.contains('\0') {
            Some("its event type contains a NUL character; remove it".to_owned())
        } else if has_nul_escape(event.payload.get()) {
            Some("its payload holds a NUL character (`\\u0000`), which PostgreSQL's jsonb cannot store; remove it or encode the data (e.g. base64)".to_owned())
        } else if json_depth_exceeds(event.payload.get(), MAX_JSON_DEPTH) {
            Some(format!(
                "its payload nests arrays and objects deeper than {MAX_JSON_DEPTH} levels, which JSON parsers refuse to read back; flatten it"
            ))
        } else if metadata_unstorable(&event.metadata) {
            Some(format!(
                "its metadata nests deeper than {MAX_JSON_DEPTH} levels or holds a NUL character; flatten it or remove the NUL"
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(invalid(format!(
                "event {} of the batch (`{}`, id {}) cannot be stored: {problem}; nothing of the batch was written",
                index + 1,
                event.event_type,
                event.event_id
            )));
        }
    }
    Ok(())
}

/// Whether JSON `text` holds the escape `\u0000` (a NUL character in a string): a
/// backslash-u-0000 preceded by an even number of further backslashes (`\\u0000` is an
/// escaped backslash followed by the letters `u0000`).
fn has_nul_escape(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(found) = text[from..].find("\\u0000") {
        let at = from + found;
        let preceding = bytes[..at]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if preceding % 2 == 0 {
            return true;
        }
        from = at + 1;
    }
    false
}

/// Whether JSON `text` nests arrays and objects deeper than `limit`. Scans bytes once,
/// skipping string contents.
fn json_depth_exceeds(text: &str, limit: usize) -> bool {
    // Nesting deeper than `limit` takes `limit + 1` opening and as many closing brackets:
    // shorter text (most payloads) cannot, and is not scanned.
    if text.len() < 2 * (limit + 1) {
        return false;
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in text.as_bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Whether metadata could not be read back by every store: it serializes deeper than
/// [`MAX_JSON_DEPTH`] (its own object and the `extra` object are two levels), or holds a
/// NUL character, which PostgreSQL's jsonb cannot store.
fn metadata_unstorable(metadata: &crate::Metadata) -> bool {
    fn has_nul(value: &Value) -> bool {
        match value {
            Value::String(text) => text.contains('\0'),
            Value::Array(items) => items.iter().any(has_nul),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    fn depth(value: &Value) -> usize {
        match value {
            Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
            Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    let texts = [&metadata.correlation_id, &metadata.causation_id];
    texts
        .iter()
        .any(|t| t.as_deref().is_some_and(|t| t.contains('\0')))
        || metadata.extra.iter().any(|(key, value)| {
            key.contains('\0') || has_nul(value) || depth(value) + 2 > MAX_JSON_DEPTH
        })
}

/// The outcome of a committed append, from the numbers a store keeps for its idempotency
/// key (the stream's version after it, its first global position, its event count), or
/// [`StoreError::CorruptStream`] if they cannot describe an append.
///
/// ```
/// use es_core::StreamRef;
/// use es_core::backend::stored_idempotent_outcome;
///
/// let stream = StreamRef::new("Account", "a-1");
/// let outcome = stored_idempotent_outcome(stream, "req-1", 5, 10, 2)?;
/// assert_eq!((outcome.stream_versions(), outcome.global_positions), (4..=5, 10..12));
/// assert!(outcome.duplicate);
/// assert!(stored_idempotent_outcome(stream, "req-1", 1, 10, 2).is_err());
/// # Ok::<(), es_core::StoreError>(())
/// ```
pub fn stored_idempotent_outcome(
    stream: StreamRef<'_>,
    key: &str,
    stream_version: i64,
    first_position: i64,
    event_count: i64,
) -> Result<AppendOutcome, StoreError> {
    match (
        u64::try_from(stream_version),
        u64::try_from(first_position),
        u64::try_from(event_count),
    ) {
        (Ok(version), Ok(first), Ok(count))
            if first > 0 && count > 0 && version >= count && first.checked_add(count).is_some() =>
        {
            Ok(AppendOutcome {
                stream_version: version,
                global_positions: first..first + count,
                duplicate: true,
            })
        }
        _ => Err(StoreError::CorruptStream {
            stream: stream.to_key(),
            reason: format!(
                "the stored record of idempotency key {key:?} holds version {stream_version}, first position {first_position} and {event_count} events, which cannot be an append"
            ),
        }),
    }
}

/// The identifying columns of a stored row as the backend read them, borrowed; each may
/// have failed.
#[derive(Debug)]
pub struct RawRowIdentity<'a, E> {
    /// The global position column (must be positive).
    pub global_position: Result<i64, E>,
    /// The aggregate type column.
    pub aggregate_type: Result<&'a str, E>,
    /// The stream id column.
    pub stream_id: Result<&'a str, E>,
    /// The stream version column (must be positive).
    pub stream_version: Result<i64, E>,
    /// The event type column.
    pub event_type: Result<&'a str, E>,
}

impl<'a, E: Display> RawRowIdentity<'a, E> {
    /// The checked identity, or [`StoreError::Corrupt`] naming whatever could be read and
    /// listing what could not.
    pub fn check(self) -> Result<RowIdentity<'a>, StoreError> {
        match self {
            Self {
                global_position: Ok(position),
                aggregate_type: Ok(aggregate_type),
                stream_id: Ok(stream_id),
                stream_version: Ok(version),
                event_type: Ok(event_type),
            } if version > 0 && position > 0 => Ok(RowIdentity {
                stream: StreamRef::new(aggregate_type, stream_id),
                stream_version: version.unsigned_abs(),
                global_position: position.unsigned_abs(),
                event_type,
            }),
            Self {
                global_position,
                aggregate_type,
                stream_id,
                stream_version,
                event_type,
            } => {
                let mut problems = Vec::new();
                let mut readable = |column: &str, value: Result<&str, E>| {
                    value.map(str::to_owned).unwrap_or_else(|reason| {
                        problems.push(format!("{column}: {reason}"));
                        format!("<unreadable {column}>")
                    })
                };
                let aggregate_type = readable("aggregate type", aggregate_type);
                let id = readable("stream id", stream_id);
                let event_type = readable("event type", event_type);
                let mut positive = |column: &str, value: Result<i64, E>| match value {
                    Ok(v) if v > 0 => v.unsigned_abs(),
                    Ok(v) => {
                        problems.push(format!("{column} {v} is not positive"));
                        0
                    }
                    Err(reason) => {
                        problems.push(format!("{column}: {reason}"));
                        0
                    }
                };
                let version = positive("stream version", stream_version);
                let global_position = positive("global position", global_position);
                Err(StoreError::Corrupt {
                    stream: StreamKey { aggregate_type, id },
                    version,
                    global_position,
                    event_type,
                    reason: problems.join("; "),
                })
            }
        }
    }
}

/// The checked identity of a stored row: every later problem with the row is reported
/// against its stream, version, event type and global position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowIdentity<'a> {
    /// The stream.
    pub stream: StreamRef<'a>,
    /// The stream version (at least 1).
    pub stream_version: u64,
    /// The global position (at least 1).
    pub global_position: u64,
    /// The stored event type.
    pub event_type: &'a str,
}

impl<'a> RowIdentity<'a> {
    /// [`StoreError::Corrupt`] for this row: `column` could not be used because of `reason`.
    pub fn corrupt(&self, column: &str, reason: impl Display) -> StoreError {
        StoreError::Corrupt {
            stream: self.stream.to_key(),
            version: self.stream_version,
            global_position: self.global_position,
            event_type: self.event_type.to_owned(),
            reason: format!("{column}: {reason}"),
        }
    }

    /// A column value, or the corrupt-row error if it could not be read.
    pub fn column<T, E: Display>(
        &self,
        column: &str,
        value: Result<T, E>,
    ) -> Result<T, StoreError> {
        value.map_err(|reason| self.corrupt(column, reason))
    }

    /// A schema version (positive, fits in `u32`).
    pub fn schema_version<E: Display>(&self, value: Result<i64, E>) -> Result<u32, StoreError> {
        let version = self.column("schema version", value)?;
        u32::try_from(version)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| self.corrupt("schema version", format!("{version} is out of range")))
    }

    /// An event id stored as text.
    pub fn event_id_text<E: Display>(&self, value: Result<&str, E>) -> Result<Uuid, StoreError> {
        let text = self.column("event id", value)?;
        Uuid::parse_str(text).map_err(|e| self.corrupt("event id", format!("`{text}`: {e}")))
    }

    /// A JSON column as text, checked to be UTF-8 (its JSON is parsed by whoever uses it).
    pub fn json(&self, column: &str, bytes: &'a [u8]) -> Result<&'a str, StoreError> {
        std::str::from_utf8(bytes).map_err(|e| self.corrupt(column, format!("not UTF-8: {e}")))
    }

    /// Assembles the borrowed record from this identity and the other checked columns.
    pub fn into_record(
        self,
        event_id: Uuid,
        schema_version: u32,
        recorded_at: SystemTime,
        payload: &'a str,
        metadata: &'a str,
    ) -> EventRecord<'a> {
        EventRecord {
            event_id,
            stream: self.stream,
            stream_version: self.stream_version,
            global_position: self.global_position,
            event_type: self.event_type,
            schema_version,
            recorded_at,
            payload,
            metadata: MetadataRef::Json(metadata),
        }
    }
}

/// Refuses a snapshot that cannot describe `stream` at version `current` (0: no stream),
/// with [`StoreError::Invalid`]: at stream version 0 or past the stream's end, of snapshot
/// version 0, or with a state no store can keep (NUL characters, nesting deeper than
/// [`MAX_JSON_DEPTH`]). Every store calls it before saving, so all refuse alike.
pub fn check_snapshot(
    stream: StreamRef<'_>,
    snapshot: &Snapshot,
    current: u64,
) -> Result<(), StoreError> {
    if snapshot.stream_version == 0 || snapshot.stream_version > current {
        return Err(snapshot_past_end(stream, snapshot, current));
    }
    let state = snapshot.state.get();
    if has_nul_escape(state) || json_depth_exceeds(state, MAX_JSON_DEPTH) {
        return Err(StoreError::Invalid {
            stream: stream.to_key(),
            reason: format!(
                "the snapshot at version {} has a state that could not be read back (a NUL character, or JSON nested deeper than {MAX_JSON_DEPTH} levels)",
                snapshot.stream_version
            ),
        });
    }
    if snapshot.snapshot_version == 0 {
        return Err(StoreError::Invalid {
            stream: stream.to_key(),
            reason: "a snapshot's version must be at least 1".to_owned(),
        });
    }
    Ok(())
}

/// The error for a snapshot past the end of `stream` (at version `current`).
pub fn snapshot_past_end(stream: StreamRef<'_>, snapshot: &Snapshot, current: u64) -> StoreError {
    StoreError::Invalid {
        stream: stream.to_key(),
        reason: format!(
            "a snapshot at stream version {} cannot be kept: the stream is at version {current}; a snapshot must cover events that exist (versions 1 to the current one)",
            snapshot.stream_version
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Metadata;

    fn identity(
        version: Result<i64, String>,
        event_type: Result<&str, String>,
    ) -> RawRowIdentity<'_, String> {
        RawRowIdentity {
            global_position: Ok(9),
            aggregate_type: Ok("Account"),
            stream_id: Ok("a-1"),
            stream_version: version,
            event_type,
        }
    }

    #[test]
    fn an_unreadable_identity_names_what_it_can() {
        let error = identity(Ok(3), Err("not text".into())).check().unwrap_err();
        let StoreError::Corrupt {
            stream,
            version,
            global_position,
            event_type,
            reason,
        } = error
        else {
            panic!("{error:?}")
        };
        assert_eq!(
            (
                stream.id.as_str(),
                version,
                global_position,
                event_type.as_str()
            ),
            ("a-1", 3, 9, "<unreadable event type>")
        );
        assert_eq!(reason, "event type: not text");
        for bad in [0, -3] {
            let error = identity(Ok(bad), Ok("X")).check().unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains(&format!("stream version {bad} is not positive")),
                "{error}"
            );
        }
    }

    #[test]
    fn later_columns_are_reported_against_the_identity() {
        let row = identity(Ok(2), Ok("Deposited")).check().unwrap();
        for error in [
            row.schema_version(Ok::<_, String>(0)).unwrap_err(),
            row.event_id_text(Ok::<_, String>("nope")).unwrap_err(),
            row.json("payload", b"\xff\xfe").unwrap_err(),
        ] {
            let message = error.to_string();
            assert!(
                message.contains("version 2 of stream `Account/a-1`"),
                "{message}"
            );
            assert!(message.contains("`Deposited`"), "{message}");
            assert!(message.contains("global position 9"), "{message}");
            assert_eq!(error.corrupt_position(), Some(9));
        }
    }

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn nul_escapes_are_found_and_escaped_backslashes_are_not() {
        assert!(has_nul_escape(r#"{"a":"x\u0000y"}"#));
        assert!(
            has_nul_escape(r#"["\\\u0000"]"#),
            "an escaped backslash, then the escape"
        );
        assert!(
            !has_nul_escape(r#"{"a":"\\u0000"}"#),
            "a backslash and the letters u0000"
        );
        assert!(!has_nul_escape(r#"{"a":"\u0001"}"#));
        let payload = serde_json::to_string(&"nul\0here").unwrap();
        assert!(has_nul_escape(&payload), "{payload}");
    }

    #[test]
    fn the_depth_limit_is_exactly_what_serde_json_reads_back() {
        let readable = nested(MAX_JSON_DEPTH);
        assert!(serde_json::from_str::<Value>(&readable).is_ok());
        assert!(!json_depth_exceeds(&readable, MAX_JSON_DEPTH));
        let unreadable = nested(MAX_JSON_DEPTH + 1);
        assert!(serde_json::from_str::<Value>(&unreadable).is_err());
        assert!(json_depth_exceeds(&unreadable, MAX_JSON_DEPTH));
        // Brackets inside strings, escaped quotes included, do not count.
        let text = format!("{{\"a\": \"{}\\\"{}\"}}", "[".repeat(500), "{".repeat(500));
        assert!(!json_depth_exceeds(&text, 2));
    }

    #[test]
    fn a_batch_with_one_unreadable_event_is_refused_naming_it() {
        let stream = StreamRef::new("Account", "a-1");
        let ok = NewEvent::new(
            "Deposited",
            1,
            serde_json::json!({"amount": 1}),
            Metadata::new(),
        );
        let deep: Value = serde_json::from_str(&nested(MAX_JSON_DEPTH)).unwrap();
        let mut too_deep = NewEvent::new("Deep", 1, Value::Null, Metadata::new());
        too_deep.payload = serde_json::value::to_raw_value(&vec![deep.clone()]).unwrap();
        let error = validate_batch(stream, &[ok.clone(), too_deep], AppendOptions::new())
            .unwrap_err()
            .to_string();
        assert!(error.contains("event 2 of the batch (`Deep`"), "{error}");
        assert!(error.contains("Account/a-1"), "{error}");
        let deep_meta = NewEvent::new(
            "Deposited",
            1,
            Value::Null,
            Metadata::new().with_entry("x", deep),
        );
        assert!(validate_batch(stream, &[deep_meta], AppendOptions::new()).is_err());
        for key in ["", "a\0b", &"k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1)] {
            let options = AppendOptions::new().idempotency_key(key);
            assert!(
                validate_batch(stream, std::slice::from_ref(&ok), options).is_err(),
                "{key:?}"
            );
        }
        let nul = StreamRef::new("Account", "a\0");
        assert!(validate_batch(nul, std::slice::from_ref(&ok), AppendOptions::new()).is_err());
        assert!(validate_batch(stream, &[ok], AppendOptions::new().idempotency_key("k")).is_ok());
    }
}
