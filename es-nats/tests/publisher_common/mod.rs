//! What the publisher tests share: events with odd names to append, the JetStream stream
//! read back message by message, and the exactly-once check of a stream against its log.
//!
//! Included by each publisher test file with `mod publisher_common;`; not every file uses
//! every item.
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use es_core::{AsyncEventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StreamRef};
use es_nats::WireEvent;
use es_nats::wire;
use serde_json::json;

/// Streams the tests append to: odd aggregate types and ids, to exercise the escaping.
pub const STREAMS: &[(&str, &str)] = &[
    ("BankAccount", "acc-1"),
    ("BankAccount", "acc 2"),
    ("Bank.Account", "acc.3"),
    ("Order*Line", "o>1"),
    ("Zähler ✓", "id\nwith newline"),
    ("100%", "%"),
];

/// Event types, cycled through.
pub const TYPES: &[&str] = &["Opened", "Money.Deposited", "Withdrawn>", "Noted %"];

/// A JetStream context on `url`, connected with retries (the server may be restarting).
pub async fn connect(url: &str) -> jetstream::Context {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .expect("connect to nats-server");
    jetstream::new(client)
}

/// Appends `count` events (numbered from `first`), one per append, round-robin over
/// [`STREAMS`]; every third has metadata with a correlation id.
pub async fn append<S: AsyncEventStore>(store: &S, first: u64, count: u64) {
    for n in first..first + count {
        let (aggregate_type, id) = STREAMS[(n as usize) % STREAMS.len()];
        let metadata = if n % 3 == 0 {
            Metadata::new()
                .with_correlation_id(format!("corr-{n}"))
                .with_causation_id(format!("cause\n{n}"))
                .with_entry("user", "ålice")
        } else {
            Metadata::new()
        };
        let event = NewEvent::new(
            TYPES[(n as usize) % TYPES.len()],
            1 + (n % 2) as u32,
            json!({ "n": n, "text": format!("event {n}: ünïcode, \"quotes\", new\nline") }),
            metadata,
        );
        store
            .append(
                StreamRef::new(aggregate_type, id),
                ExpectedVersion::Any,
                &[event],
            )
            .await
            .expect("append");
    }
}

/// Appends `count` events (numbered from `first`) in appends of up to 10 events to one
/// stream each, round-robin over [`STREAMS`]: a backlog, quickly.
pub async fn append_backlog<S: AsyncEventStore>(store: &S, first: u64, count: u64) {
    let mut n = first;
    while n < first + count {
        let chunk = (first + count - n).min(10);
        let (aggregate_type, id) = STREAMS[(n as usize / 10) % STREAMS.len()];
        let events: Vec<NewEvent> = (n..n + chunk)
            .map(|i| {
                NewEvent::new(
                    TYPES[(i as usize) % TYPES.len()],
                    1,
                    json!({ "n": i }),
                    Metadata::new().with_correlation_id(format!("corr-{i}")),
                )
            })
            .collect();
        store
            .append(
                StreamRef::new(aggregate_type, id),
                ExpectedVersion::Any,
                &events,
            )
            .await
            .expect("append");
        n += chunk;
    }
}

/// Every event of `store`'s log, in order.
pub async fn log<S: AsyncEventStore>(store: &S) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    let mut from = 0;
    loop {
        let page = store.read_all(from, 500).await.expect("read_all");
        let Some(last) = page.last() else {
            return all;
        };
        from = last.global_position + 1;
        all.extend(page);
    }
}

/// One message of the stream: its subject and decoded event.
#[derive(Debug)]
pub struct StreamMessage {
    pub sequence: u64,
    pub subject: String,
    pub event: WireEvent,
    pub headers: async_nats::HeaderMap,
}

/// Every message of stream `name`, in stream order (empty if the stream does not exist).
pub async fn messages(js: &jetstream::Context, name: &str) -> Vec<StreamMessage> {
    let Ok(mut stream) = js.get_stream(name).await else {
        return Vec::new();
    };
    let state = stream.info().await.expect("stream info").state.clone();
    let mut all = Vec::new();
    if state.messages == 0 {
        return all;
    }
    for sequence in state.first_sequence..=state.last_sequence {
        let message = stream
            .get_raw_message(sequence)
            .await
            .unwrap_or_else(|e| panic!("get message {sequence} of {name}: {e}"));
        let event = WireEvent::from_message(&message.headers, &message.payload)
            .unwrap_or_else(|e| panic!("message {sequence} decodes: {e}"));
        all.push(StreamMessage {
            sequence,
            subject: message.subject.to_string(),
            event,
            headers: message.headers,
        });
    }
    all
}

/// Microseconds since 1970: the wire keeps that much of `recorded_at`.
pub fn micros(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_micros()
}

/// Asserts that stream `name` holds every event of `store`'s log exactly once, in global
/// order, in the wire format (subjects, ids, payloads, metadata). Returns the event count.
pub async fn assert_exactly_once<S: AsyncEventStore>(
    js: &jetstream::Context,
    store: &S,
    name: &str,
) -> usize {
    let log = log(store).await;
    let messages = messages(js, name).await;
    let positions: Vec<u64> = messages.iter().map(|m| m.event.global_position).collect();
    let expected: Vec<u64> = log.iter().map(|e| e.global_position).collect();
    if positions != expected {
        let mut seen = std::collections::BTreeMap::new();
        for p in &positions {
            *seen.entry(*p).or_insert(0) += 1;
        }
        let doubled: Vec<_> = seen
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(p, _)| *p)
            .collect();
        let missing: Vec<_> = expected.iter().filter(|p| !seen.contains_key(p)).collect();
        panic!(
            "stream `{name}` holds {} messages for a log of {} events; doubled positions {doubled:?}, missing {missing:?}",
            positions.len(),
            expected.len()
        );
    }
    for (message, stored) in messages.iter().zip(&log) {
        let event = &message.event;
        assert_eq!(event.event_id, stored.event_id);
        assert_eq!(event.aggregate_type, stored.aggregate_type);
        assert_eq!(event.stream_id, stored.stream_id);
        assert_eq!(event.stream_version, stored.stream_version);
        assert_eq!(event.event_type, stored.event_type);
        assert_eq!(event.schema_version, stored.schema_version);
        assert_eq!(micros(event.recorded_at), micros(stored.recorded_at));
        let payload: serde_json::Value =
            serde_json::from_str(&event.payload).expect("payload is JSON");
        assert_eq!(
            payload,
            stored.payload_value().expect("stored payload is JSON")
        );
        let metadata = event
            .record()
            .metadata
            .to_metadata()
            .expect("metadata is JSON");
        assert_eq!(metadata, stored.metadata);
        assert_eq!(
            message.subject,
            wire::subject(
                wire::DEFAULT_PREFIX,
                wire::DEFAULT_PARTITIONS,
                &stored.as_record()
            )
        );
        assert_eq!(
            message
                .headers
                .get(wire::NATS_MSG_ID)
                .map(|v| v.as_str().to_owned()),
            Some(stored.event_id.to_string())
        );
    }
    log.len()
}
