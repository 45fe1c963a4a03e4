//! Expected-version checks and the atomicity of a rejected batch.

use es_core::{EventStore, ExpectedVersion, StreamRef};

use super::{assert_conflict, events, read_everything};

/// `Any` appends to a new and to an existing stream.
pub fn expected_any<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let stream = StreamRef::new("Counter", "any");
    let first = store
        .append(stream, ExpectedVersion::Any, &events(1, 2))
        .expect("Any on a new stream");
    assert_eq!(first.stream_version, 2);
    let second = store
        .append(stream, ExpectedVersion::Any, &events(3, 1))
        .expect("Any on an existing stream");
    assert_eq!(second.stream_version, 3);
    assert_eq!(store.stream_version(stream).unwrap(), 3);
}

/// `NoStream` appends to a new stream and conflicts on an existing one.
pub fn expected_no_stream<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let stream = StreamRef::new("Counter", "no-stream");
    let outcome = store
        .append(stream, ExpectedVersion::NoStream, &events(1, 2))
        .expect("NoStream on a new stream");
    assert_eq!(outcome.stream_version, 2);
    assert_conflict(
        store.append(stream, ExpectedVersion::NoStream, &events(3, 1)),
        stream,
        ExpectedVersion::NoStream,
        2,
    );
    assert_eq!(store.stream_version(stream).unwrap(), 2);
}

/// `StreamExists` conflicts on a new stream and appends to an existing one.
pub fn expected_stream_exists<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let stream = StreamRef::new("Counter", "exists");
    assert_conflict(
        store.append(stream, ExpectedVersion::StreamExists, &events(1, 1)),
        stream,
        ExpectedVersion::StreamExists,
        0,
    );
    assert_eq!(store.stream_version(stream).unwrap(), 0);
    assert!(store.read_all(0, 10).unwrap().is_empty());
    store
        .append(stream, ExpectedVersion::NoStream, &events(1, 1))
        .unwrap();
    let outcome = store
        .append(stream, ExpectedVersion::StreamExists, &events(2, 2))
        .expect("StreamExists on an existing stream");
    assert_eq!(outcome.stream_version, 3);
}

/// `Exact(n)` appends only at version `n`; `Exact(0)` means "no stream".
pub fn expected_exact<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let stream = StreamRef::new("Counter", "exact");
    assert_conflict(
        store.append(stream, ExpectedVersion::Exact(1), &events(1, 1)),
        stream,
        ExpectedVersion::Exact(1),
        0,
    );
    let outcome = store
        .append(stream, ExpectedVersion::Exact(0), &events(1, 2))
        .expect("Exact(0) on a new stream");
    assert_eq!(outcome.stream_version, 2);
    for wrong in [0, 1, 3, u64::MAX] {
        assert_conflict(
            store.append(stream, ExpectedVersion::Exact(wrong), &events(3, 1)),
            stream,
            ExpectedVersion::Exact(wrong),
            2,
        );
    }
    let outcome = store
        .append(stream, ExpectedVersion::Exact(2), &events(3, 1))
        .expect("Exact(current)");
    assert_eq!(outcome.stream_version, 3);
    // The version the repository computes round-trips through `from_version`.
    let outcome = store
        .append(stream, ExpectedVersion::from_version(3), &events(4, 1))
        .expect("from_version(current)");
    assert_eq!(outcome.stream_version, 4);
}

/// A batch whose expected version does not hold stores none of its events, uses up no
/// global position, and leaves the stream appendable.
pub fn conflicting_batch_stores_nothing<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let stream = StreamRef::new("Counter", "atomic");
    let other = StreamRef::new("Counter", "bystander");
    store
        .append(stream, ExpectedVersion::NoStream, &events(1, 2))
        .unwrap();
    let before = read_everything(&store);

    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(1),
        ExpectedVersion::Exact(5),
    ] {
        assert_conflict(
            store.append(stream, expected, &events(10, 5)),
            stream,
            expected,
            2,
        );
    }
    assert_eq!(
        read_everything(&store),
        before,
        "a rejected batch wrote nothing"
    );
    assert_eq!(store.read_stream(stream, 1).unwrap(), before);
    assert_eq!(store.stream_version(stream).unwrap(), 2);

    // The next appends continue where the log left off: the rejected batches took no
    // positions and no versions.
    let last = before.last().unwrap().global_position;
    let outcome = store
        .append(other, ExpectedVersion::NoStream, &events(20, 1))
        .unwrap();
    assert_eq!(outcome.global_positions, last + 1..last + 2);
    let outcome = store
        .append(stream, ExpectedVersion::Exact(2), &events(3, 3))
        .unwrap();
    assert_eq!(outcome.stream_version, 5);
    assert_eq!(outcome.global_positions, last + 2..last + 5);
}
