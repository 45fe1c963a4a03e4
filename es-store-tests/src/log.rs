//! Stream versions, global positions, reads, empty batches and the envelope round trip.

use std::time::{Duration, SystemTime};

use es_core::{EventStore, ExpectedVersion, Metadata, NewEvent, StreamRef, Uuid};
use serde_json::json;
use serde_json::value::to_raw_value;

use super::{event, events, read_everything};

/// Versions within a stream run 1, 2, 3, ... across batches, and each outcome reports the
/// stream's new version.
pub fn stream_versions_contiguous_from_one<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let stream = StreamRef::new("Counter", "contiguous");
    let mut expected_version = 0;
    for size in [1, 3, 2, 1] {
        let outcome = store
            .append(
                stream,
                ExpectedVersion::Exact(expected_version),
                &events(expected_version + 1, size),
            )
            .unwrap();
        expected_version += size;
        assert_eq!(outcome.stream_version, expected_version);
    }
    let read = store.read_stream(stream, 0).unwrap();
    let versions: Vec<u64> = read.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (1..=expected_version).collect::<Vec<_>>());
    let payloads: Vec<u64> = read
        .iter()
        .map(|e| e.payload_value().unwrap()["n"].as_u64().unwrap())
        .collect();
    assert_eq!(payloads, versions, "events keep their order");
    assert_eq!(store.stream_version(stream).unwrap(), expected_version);
}

/// Global positions strictly increase across streams in append order, each outcome
/// reports exactly the positions its events got, and `head_position` is the last one.
pub fn global_positions_strictly_increase<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    assert_eq!(store.head_position().unwrap(), 0, "an empty log ends at 0");
    let streams = ["a", "b", "c"].map(|id| StreamRef::new("Counter", id));
    let mut reported = Vec::new();
    for round in 0..4u64 {
        for (i, stream) in streams.iter().enumerate() {
            let size = 1 + (round + i as u64) % 3;
            let outcome = store
                .append(*stream, ExpectedVersion::Any, &events(round * 10, size))
                .unwrap();
            assert_eq!(
                outcome.global_positions.end - outcome.global_positions.start,
                size,
                "one position per event"
            );
            reported.extend(outcome.global_positions.clone());
        }
    }
    let all = read_everything(&store);
    let positions: Vec<u64> = all.iter().map(|e| e.global_position).collect();
    assert_eq!(
        positions, reported,
        "reads see the positions appends reported"
    );
    assert!(positions[0] > 0, "positions start above 0");
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions strictly increase: {positions:?}"
    );
    assert_eq!(
        store.head_position().unwrap(),
        *positions.last().unwrap(),
        "the log ends at the last position"
    );
    for stream in streams {
        let in_stream: Vec<u64> = store
            .read_stream(stream, 1)
            .unwrap()
            .iter()
            .map(|e| e.global_position)
            .collect();
        assert!(in_stream.windows(2).all(|w| w[0] < w[1]));
    }
}

/// `read_stream` starts at the requested version; a missing stream reads as empty.
pub fn read_stream_from_version<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let stream = StreamRef::new("Counter", "from");
    store
        .append(stream, ExpectedVersion::NoStream, &events(1, 5))
        .unwrap();
    store
        .append(
            StreamRef::new("Counter", "other"),
            ExpectedVersion::Any,
            &events(1, 2),
        )
        .unwrap();
    let versions = |from| -> Vec<u64> {
        store
            .read_stream(stream, from)
            .unwrap()
            .iter()
            .map(|e| e.stream_version)
            .collect()
    };
    assert_eq!(versions(0), [1, 2, 3, 4, 5]);
    assert_eq!(versions(1), [1, 2, 3, 4, 5]);
    assert_eq!(versions(3), [3, 4, 5]);
    assert_eq!(versions(5), [5]);
    assert!(versions(6).is_empty());
    assert!(versions(u64::MAX).is_empty());
    assert!(
        store
            .read_stream(StreamRef::new("Counter", "missing"), 1)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .stream_version(StreamRef::new("Counter", "missing"))
            .unwrap(),
        0
    );
}

/// `read_all` starts at the requested position and returns at most `limit` events; paging
/// through it visits every event once.
pub fn read_all_from_position_with_limit<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    assert!(
        store.read_all(0, 10).unwrap().is_empty(),
        "a new store is empty"
    );
    for (i, id) in ["x", "y", "x", "z", "y"].into_iter().enumerate() {
        store
            .append(
                StreamRef::new("Counter", id),
                ExpectedVersion::Any,
                &events(i as u64 * 10, 2),
            )
            .unwrap();
    }
    let all = store.read_all(0, usize::MAX).unwrap();
    assert_eq!(all.len(), 10);
    assert_eq!(
        store.read_all(1, 100).unwrap(),
        store.read_all(0, 100).unwrap()
    );

    let third = all[2].global_position;
    let page = store.read_all(third, 3).unwrap();
    assert_eq!(
        page,
        all[2..5],
        "starts at the position, stops at the limit"
    );
    assert!(store.read_all(third, 0).unwrap().is_empty(), "limit 0");
    let last = all[9].global_position;
    assert_eq!(store.read_all(last, 5).unwrap(), all[9..]);
    assert!(store.read_all(last + 1, 5).unwrap().is_empty());
    assert!(store.read_all(u64::MAX, 5).unwrap().is_empty());

    for limit in [1, 2, 3, 7] {
        let mut paged = Vec::new();
        let mut from = 0;
        loop {
            let page = store.read_all(from, limit).unwrap();
            assert!(page.len() <= limit);
            let Some(tail) = page.last() else { break };
            from = tail.global_position + 1;
            paged.extend(page);
        }
        assert_eq!(paged, all, "paging with limit {limit}");
    }
}

/// An empty batch writes nothing but still checks the expected version; it reports the
/// current stream version and an empty range at the next global position.
pub fn empty_batch<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let stream = StreamRef::new("Counter", "empty");

    let outcome = store
        .append(stream, ExpectedVersion::NoStream, &[])
        .expect("empty batch on a new stream");
    assert_eq!(outcome.stream_version, 0);
    assert!(outcome.global_positions.is_empty());
    assert_eq!(
        store.stream_version(stream).unwrap(),
        0,
        "it did not create the stream"
    );
    assert!(store.read_all(0, 10).unwrap().is_empty());
    super::assert_conflict(
        store.append(stream, ExpectedVersion::StreamExists, &[]),
        stream,
        ExpectedVersion::StreamExists,
        0,
    );

    let appended = store
        .append(stream, ExpectedVersion::NoStream, &events(1, 2))
        .unwrap();
    let outcome = store
        .append(stream, ExpectedVersion::Exact(2), &[])
        .expect("empty batch at the current version");
    assert_eq!(outcome.stream_version, 2);
    let next = appended.global_positions.end;
    assert_eq!(
        outcome.global_positions,
        next..next,
        "empty range at the next position"
    );
    super::assert_conflict(
        store.append(stream, ExpectedVersion::Exact(1), &[]),
        stream,
        ExpectedVersion::Exact(1),
        2,
    );
    super::assert_conflict(
        store.append(stream, ExpectedVersion::NoStream, &[]),
        stream,
        ExpectedVersion::NoStream,
        2,
    );
    assert_eq!(read_everything(&store).len(), 2);
    let after = store
        .append(stream, ExpectedVersion::Exact(2), &events(3, 1))
        .unwrap();
    assert_eq!(
        after.global_positions,
        next..next + 1,
        "no position was used up"
    );
}

/// Everything an append is given comes back exactly: event ids, event types, schema
/// versions, payloads and metadata (correlation id, causation id, extra entries); ids with
/// quotes and non-ASCII text are just data; `recorded_at` is the append time.
pub fn envelope_round_trips<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let stream = StreamRef::new("Tëst'Type\"", "id with spaces, 'quotes'; -- and ünïcödé 🦀");
    let metadata = Metadata::new()
        .with_correlation_id("req-42")
        .with_causation_id("cmd-7")
        .with_entry("user", "alice")
        .with_entry("attempt", 3)
        .with_entry(
            "nested",
            json!({ "list": [1, 2.5, null, true], "empty": {} }),
        );
    let payload = json!({
        "text": "line\nbreak \"quoted\" \\ tab\t ünïcödé 🦀",
        "int": -42,
        "big": u64::MAX,
        "small": i64::MIN,
        "float": 1.5,
        "list": [1, "two", [3], { "four": 4 }],
        "nothing": null,
        "yes": false,
        "empty_object": {},
        "empty_list": [],
    });
    let batch = vec![
        NewEvent {
            event_id: Uuid::new_v4(),
            event_type: "Everything.Happened-v2:x".into(),
            schema_version: 7,
            payload: to_raw_value(&payload).unwrap(),
            metadata: metadata.clone(),
        },
        NewEvent {
            event_id: Uuid::nil(),
            event_type: "Ünïcödé".into(),
            schema_version: u32::MAX,
            payload: to_raw_value(&json!("a bare string")).unwrap(),
            metadata: Metadata::new(),
        },
        NewEvent {
            event_id: Uuid::max(),
            event_type: "Minimal".into(),
            schema_version: 1,
            payload: to_raw_value(&json!([])).unwrap(),
            metadata: Metadata::new().with_correlation_id("only-correlation"),
        },
        NewEvent::new(
            "Numbers",
            1,
            json!(12345),
            Metadata::new().with_causation_id("c"),
        ),
    ];

    // Stores may keep microseconds only.
    let before = SystemTime::now() - Duration::from_micros(1);
    let outcome = store
        .append(stream, ExpectedVersion::NoStream, &batch)
        .unwrap();
    let after = SystemTime::now() + Duration::from_micros(1);

    let read = store.read_stream(stream, 1).unwrap();
    assert_eq!(read.len(), batch.len());
    for ((recorded, new), (version, position)) in read
        .iter()
        .zip(&batch)
        .zip((1u64..).zip(outcome.global_positions.clone()))
    {
        assert_eq!(recorded.event_id, new.event_id);
        assert_eq!(recorded.event_type, new.event_type);
        assert_eq!(recorded.schema_version, new.schema_version);
        // Stores may normalize the text (PostgreSQL's jsonb orders keys): compare values.
        assert_eq!(
            recorded.payload_value().unwrap(),
            new.payload_value().unwrap(),
            "payload of {}",
            new.event_type
        );
        assert_eq!(
            recorded.metadata, new.metadata,
            "metadata of {}",
            new.event_type
        );
        assert_eq!(recorded.aggregate_type, stream.aggregate_type);
        assert_eq!(recorded.stream_id, stream.id);
        assert_eq!(recorded.stream(), stream);
        assert_eq!(recorded.stream_version, version);
        assert_eq!(recorded.global_position, position);
        assert!(
            before <= recorded.recorded_at && recorded.recorded_at <= after,
            "recorded_at {:?} is the append time (between {before:?} and {after:?})",
            recorded.recorded_at
        );
    }
    assert_eq!(read[0].metadata.correlation_id.as_deref(), Some("req-42"));
    assert_eq!(read[0].metadata.causation_id.as_deref(), Some("cmd-7"));
    assert_eq!(read[0].metadata.extra["attempt"], 3);
    assert_eq!(
        read[0].payload_value().unwrap()["big"].as_u64(),
        Some(u64::MAX)
    );
    assert_eq!(
        read[0].payload_value().unwrap()["small"].as_i64(),
        Some(i64::MIN)
    );

    // The global log and a second read return the very same envelopes (recorded_at too).
    assert_eq!(store.read_all(0, 100).unwrap(), read);
    assert_eq!(store.read_stream(stream, 1).unwrap(), read);
    // Versions are per stream; the stream key is not mangled by odd characters.
    assert_eq!(store.stream_version(stream).unwrap(), 4);
    assert_eq!(
        store
            .stream_version(StreamRef::new("Tëst'Type\"", "id with spaces"))
            .unwrap(),
        0
    );
}

/// The same stream id under two aggregate types names two independent streams.
pub fn same_id_two_aggregate_types<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let order = StreamRef::new("Order", "42");
    let invoice = StreamRef::new("Invoice", "42");
    store
        .append(order, ExpectedVersion::NoStream, &[event("Placed", 1)])
        .unwrap();
    store
        .append(invoice, ExpectedVersion::NoStream, &[event("Issued", 1)])
        .expect("the invoice stream is new although an order 42 exists");
    store
        .append(order, ExpectedVersion::Exact(1), &[event("Shipped", 2)])
        .unwrap();

    assert_eq!(store.stream_version(order).unwrap(), 2);
    assert_eq!(store.stream_version(invoice).unwrap(), 1);
    let orders = store.read_stream(order, 1).unwrap();
    let invoices = store.read_stream(invoice, 1).unwrap();
    assert_eq!(
        orders
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        ["Placed", "Shipped"]
    );
    assert_eq!(
        invoices
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        ["Issued"]
    );
    assert!(orders.iter().all(|e| e.aggregate_type == "Order"));
    assert!(invoices.iter().all(|e| e.aggregate_type == "Invoice"));
    super::assert_conflict(
        store.append(invoice, ExpectedVersion::Exact(2), &[event("Paid", 2)]),
        invoice,
        ExpectedVersion::Exact(2),
        1,
    );
    // Neither a prefix nor a concatenation collides: ("Order", "42") vs ("Order4", "2").
    assert_eq!(
        store.stream_version(StreamRef::new("Order4", "2")).unwrap(),
        0
    );
}

/// [`EventStore::visit_stream`] visits exactly the versions of its range, in order.
pub fn visit_stream_reads_a_version_range<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let stream = StreamRef::new("Counter", "ranges");
    store
        .append(stream, ExpectedVersion::NoStream, &events(1, 10))
        .unwrap();
    let visited = |range: std::ops::RangeInclusive<u64>| {
        let mut versions = Vec::new();
        store
            .visit_stream(stream, range, &mut |record| {
                assert_eq!(record.stream, stream);
                versions.push(record.stream_version);
                std::ops::ControlFlow::Continue(())
            })
            .unwrap();
        versions
    };
    assert_eq!(visited(1..=10), (1..=10).collect::<Vec<_>>());
    assert_eq!(visited(0..=u64::MAX), (1..=10).collect::<Vec<_>>());
    assert_eq!(visited(3..=5), vec![3, 4, 5]);
    assert_eq!(visited(10..=20), vec![10]);
    assert_eq!(visited(11..=20), Vec::<u64>::new());
    #[allow(clippy::reversed_empty_ranges)]
    let empty = visited(5..=4);
    assert_eq!(empty, Vec::<u64>::new());
}

/// A visitor that returns `Break` gets no more events, from either read.
pub fn visitors_can_stop_early<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let stream = StreamRef::new("Counter", "stop");
    store
        .append(stream, ExpectedVersion::NoStream, &events(1, 50))
        .unwrap();
    let mut seen = 0;
    store
        .visit_stream(stream, 1..=u64::MAX, &mut |_| {
            seen += 1;
            if seen == 3 {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(seen, 3);
    let mut positions = Vec::new();
    store
        .visit_all(0, 100, &mut |record| {
            positions.push(record.global_position);
            if positions.len() == 7 {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(positions.len(), 7);
    // The store is still usable after an early stop (no statement or lock left behind).
    store
        .append(stream, ExpectedVersion::Exact(50), &events(51, 1))
        .unwrap();
    assert_eq!(store.read_stream(stream, 1).unwrap().len(), 51);
}
