//! What a store refuses at append because it could never be read back.

use es_core::backend::MAX_JSON_DEPTH;
use es_core::{
    AppendOptions, EventStore, ExpectedVersion, Metadata, NewEvent, StoreError, StreamRef,
};
use serde_json::value::RawValue;

use super::{events, read_everything};

fn nested(depth: usize) -> Box<RawValue> {
    RawValue::from_string(format!("{}{}", "[".repeat(depth), "]".repeat(depth))).unwrap()
}

#[track_caller]
fn assert_refused(
    result: Result<es_core::AppendOutcome, StoreError>,
    stream: StreamRef<'_>,
    needle: &str,
) {
    match result {
        Err(StoreError::Invalid {
            stream: found,
            reason,
        }) => {
            assert_eq!(found, stream.to_key(), "the error names the stream");
            assert!(reason.contains(needle), "`{reason}` says {needle}");
        }
        other => panic!("expected StoreError::Invalid ({needle}), got {other:?}"),
    }
}

/// A batch holding one event that could not be read back (JSON nested deeper than a
/// parser reads, schema version 0, an empty or NUL-bearing event type) is refused whole,
/// naming the stream and the event, and nothing of it is written; JSON exactly at the
/// depth limit is stored and reads back.
pub fn events_that_cannot_be_read_back_are_refused<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let stream = StreamRef::new("Counter", "validated");
    store
        .append(stream, ExpectedVersion::NoStream, &events(1, 1))
        .unwrap();

    let mut deep = events(2, 3);
    deep[1].payload = nested(MAX_JSON_DEPTH + 1);
    deep[1].event_type = "TooDeep".into();
    assert_refused(
        store.append(stream, ExpectedVersion::Exact(1), &deep),
        stream,
        "event 2 of the batch (`TooDeep`",
    );
    let mut version_zero = events(2, 1);
    version_zero[0].schema_version = 0;
    assert_refused(
        store.append(stream, ExpectedVersion::Exact(1), &version_zero),
        stream,
        "schema version 0",
    );
    for bad_type in ["", "Bad\0Type"] {
        let mut bad = events(2, 1);
        bad[0].event_type = bad_type.to_owned().into();
        assert_refused(
            store.append(stream, ExpectedVersion::Exact(1), &bad),
            stream,
            "event type",
        );
    }
    let deep_metadata = NewEvent::new(
        "Numbered",
        1,
        serde_json::json!({}),
        Metadata::new().with_entry(
            "nested",
            serde_json::from_str::<serde_json::Value>(nested(MAX_JSON_DEPTH).get()).unwrap(),
        ),
    );
    assert_refused(
        store.append(stream, ExpectedVersion::Exact(1), &[deep_metadata]),
        stream,
        "metadata",
    );
    assert_eq!(
        store.stream_version(stream).unwrap(),
        1,
        "nothing was written"
    );
    assert_eq!(read_everything(&store).len(), 1);

    // At the limit, it is stored and reads back.
    let mut at_limit = events(2, 1);
    at_limit[0].payload = nested(MAX_JSON_DEPTH);
    store
        .append(stream, ExpectedVersion::Exact(1), &at_limit)
        .unwrap();
    let read = store.read_stream(stream, 2).unwrap();
    assert_eq!(
        read[0].payload_value().unwrap(),
        serde_json::from_str::<serde_json::Value>(nested(MAX_JSON_DEPTH).get()).unwrap()
    );
}

/// Stream names with NUL characters and unusable idempotency keys are refused before
/// anything is written.
pub fn invalid_options_are_refused<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let stream = StreamRef::new("Counter", "options");
    for key in [
        String::new(),
        "a\0b".to_owned(),
        "k".repeat(es_core::MAX_IDEMPOTENCY_KEY_LEN + 1),
    ] {
        let options = AppendOptions::new().idempotency_key(&key);
        assert_refused(
            store.append_with(stream, ExpectedVersion::Any, &events(1, 1), options),
            stream,
            "idempotency key",
        );
    }
    let longest = "k".repeat(es_core::MAX_IDEMPOTENCY_KEY_LEN);
    store
        .append_with(
            stream,
            ExpectedVersion::NoStream,
            &events(1, 1),
            AppendOptions::new().idempotency_key(&longest),
        )
        .expect("a key of the maximum length is stored");
    let nul = StreamRef::new("Counter", "nul\0id");
    assert_refused(
        store.append(nul, ExpectedVersion::Any, &events(1, 1)),
        nul,
        "NUL",
    );
    assert_eq!(read_everything(&store).len(), 1);
}
