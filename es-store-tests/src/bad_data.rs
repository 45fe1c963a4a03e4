//! Stored data the code cannot use: unknown event types, damaged rows, duplicate ids.

use std::borrow::Borrow;

use es_core::{
    DecodeError, Error, EventStore, ExpectedVersion, Metadata, NewEvent, Repository, StoreError,
    StreamRef,
};
use serde_json::json;

use super::{Account, event, events, read_everything};

/// An event type the aggregate does not know is reported by the repository as
/// [`Error::Decode`] naming the stream, version and event type; the store keeps serving the
/// stream's raw events and every other stream.
pub fn unknown_event_type_is_reported<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let repo = Repository::<Account, _>::new(&store);
    repo.execute("bad", |a| a.open("Mallory")).unwrap();
    repo.execute("good", |a| a.open("Alice")).unwrap();
    // Written by some other (newer) program: a type this code has never heard of.
    let stream = StreamRef::new("Account", "bad");
    store
        .append(
            stream,
            ExpectedVersion::Exact(1),
            &[NewEvent::new(
                "AccountFrozen",
                1,
                json!({ "reason": "audit" }),
                Metadata::new(),
            )],
        )
        .unwrap();

    let error = repo.load("bad").unwrap_err();
    let message = error.to_string();
    match &error {
        Error::Decode {
            stream: found,
            version,
            cause: source,
        } => {
            assert_eq!(*found, stream.to_key());
            assert_eq!(*version, 2);
            // `Borrow` accepts the source whether or not es-core boxes it.
            let source: &DecodeError = Borrow::<DecodeError>::borrow(source);
            assert_eq!(source.event_type(), "AccountFrozen");
            assert!(
                matches!(source, DecodeError::UnknownEventType { .. }),
                "{source:?}"
            );
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    for needle in ["Account/bad", "version 2", "AccountFrozen"] {
        assert!(message.contains(needle), "`{message}` names {needle}");
    }
    let deposit = repo.execute("bad", |a| a.deposit(1));
    assert!(
        matches!(deposit, Err(Error::Decode { version: 2, .. })),
        "{deposit:?}"
    );

    // The raw events are still there, and the rest of the store works.
    let raw = store.read_stream(stream, 1).unwrap();
    assert_eq!(raw[1].event_type, "AccountFrozen");
    assert_eq!(read_everything(&store).len(), 3);
    repo.execute("good", |a| a.deposit(5)).unwrap();
    assert_eq!(repo.load("good").unwrap().unwrap().state.balance, 5);
    store
        .append(stream, ExpectedVersion::Exact(2), &[event("Other", 1)])
        .expect("the stream itself still takes appends");
}

/// A row whose stored payload cannot be read (the hook `corrupt(store, stream, version)`
/// damages it behind the store's back) fails reads that reach it with
/// [`StoreError::Corrupt`] naming the stream, version and event type; reads that do not
/// reach it, other streams and appends keep working.
pub fn corrupt_row_is_reported<S: EventStore>(
    make: &dyn Fn() -> S,
    corrupt: &dyn Fn(&S, StreamRef<'_>, u64),
) {
    let store = make();
    let repo = Repository::<Account, _>::new(&store);
    let stream = StreamRef::new("Account", "damaged");
    repo.execute("damaged", |a| a.open("Mallory")).unwrap();
    repo.execute("damaged", |a| a.deposit(1)).unwrap();
    repo.execute("damaged", |a| a.deposit(2)).unwrap();
    repo.execute("healthy", |a| a.open("Alice")).unwrap();
    let before = read_everything(&store);

    corrupt(&store, stream, 2);

    let damaged_position = before[1].global_position;
    let assert_corrupt = |result: Result<Vec<es_core::RecordedEvent>, StoreError>| {
        let error = result.expect_err("reading the damaged row fails");
        let message = error.to_string();
        match &error {
            StoreError::Corrupt {
                stream: found,
                version,
                global_position,
                event_type,
                reason,
            } => {
                assert_eq!(*found, stream.to_key());
                assert_eq!(*version, 2);
                assert_eq!(*global_position, damaged_position);
                assert_eq!(event_type, "Deposited");
                assert!(!reason.is_empty());
            }
            other => panic!("expected StoreError::Corrupt, got {other:?}"),
        }
        assert_eq!(error.corrupt_position(), Some(damaged_position));
        for needle in [
            "Account/damaged",
            "version 2",
            "Deposited",
            &format!("global position {damaged_position}"),
        ] {
            assert!(message.contains(needle), "`{message}` names {needle}");
        }
    };
    assert_corrupt(store.read_stream(stream, 1));
    assert_corrupt(store.read_stream(stream, 2));
    assert_corrupt(store.read_all(0, 100));
    // Loading decodes the payload straight from the stored text and needs no metadata: it
    // fails naming version 2 if the damage is in what it reads, and otherwise returns the
    // state of all three events. Never a wrong state.
    match repo.load("damaged") {
        Ok(loaded) => {
            let loaded = loaded.expect("the stream exists");
            assert_eq!((loaded.version, loaded.state.balance), (3, 3));
        }
        Err(Error::Store {
            stream: found,
            cause: source,
        }) => {
            assert_eq!(found, stream.to_key());
            assert!(
                matches!(
                    Borrow::<StoreError>::borrow(&source),
                    StoreError::Corrupt { version: 2, .. }
                ),
                "{source:?}"
            );
        }
        Err(Error::Decode {
            stream: found,
            version,
            ..
        }) => {
            assert_eq!((found, version), (stream.to_key(), 2));
        }
        Err(other) => panic!("expected a store or decode error at version 2, got {other:?}"),
    }

    // The global log can be read on past the damaged event, by an explicit call from the
    // position after it, and the events before it were delivered.
    let mut delivered = Vec::new();
    let error = store
        .visit_all(0, 100, &mut |record| {
            delivered.push(record.global_position);
            std::ops::ControlFlow::Continue(())
        })
        .err();
    let skipped = match error {
        // A store that checks every column while reading stops at the damaged event...
        Some(error) => error
            .corrupt_position()
            .expect("the error names the position"),
        // ...one that leaves the damaged column to the reader delivers it.
        None => damaged_position,
    };
    assert_eq!(skipped, damaged_position);
    assert!(delivered.starts_with(&[before[0].global_position]));
    assert_eq!(store.read_all(skipped + 1, 100).unwrap(), before[2..]);

    // Everything that does not touch the damaged row still works.
    assert_eq!(store.read_stream(stream, 3).unwrap(), before[2..3]);
    assert_eq!(store.stream_version(stream).unwrap(), 3);
    assert_eq!(store.read_all(0, 1).unwrap(), before[..1]);
    assert_eq!(
        store.read_all(damaged_position + 1, 100).unwrap(),
        before[2..]
    );
    repo.execute("healthy", |a| a.deposit(7)).unwrap();
    assert_eq!(repo.load("healthy").unwrap().unwrap().state.balance, 7);
    repo.execute("new", |a| a.open("Bob")).unwrap();
    store
        .append(stream, ExpectedVersion::Exact(3), &[event("Deposited", 4)])
        .expect("the damaged stream still takes appends");
    assert_eq!(store.stream_version(stream).unwrap(), 4);
}

/// An append whose event id is already stored (or repeated within the batch) is refused
/// and stores none of its events.
pub fn event_ids_are_unique<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let stream = StreamRef::new("Counter", "ids");
    let first = events(1, 2);
    store
        .append(stream, ExpectedVersion::NoStream, &first)
        .unwrap();

    let mut reused = events(3, 3);
    reused[1].event_id = first[0].event_id;
    let result = store.append(stream, ExpectedVersion::Exact(2), &reused);
    assert!(
        matches!(result, Err(StoreError::Invalid { ref stream, .. }) if stream.id == "ids"),
        "a reused event id is refused as invalid, naming the stream: {result:?}"
    );
    let other = StreamRef::new("Counter", "ids-elsewhere");
    let result = store.append(other, ExpectedVersion::Any, &[first[1].clone()]);
    assert!(result.is_err(), "ids are unique store-wide: {result:?}");

    let mut twice = events(3, 2);
    twice[1].event_id = twice[0].event_id;
    let result = store.append(stream, ExpectedVersion::Exact(2), &twice);
    assert!(
        result.is_err(),
        "an id repeated within a batch is refused: {result:?}"
    );

    assert_eq!(
        read_everything(&store).len(),
        2,
        "the refused batches stored nothing"
    );
    assert_eq!(store.stream_version(stream).unwrap(), 2);
    assert_eq!(store.stream_version(other).unwrap(), 0);
    store
        .append(stream, ExpectedVersion::Exact(2), &events(3, 1))
        .expect("the store stays usable");
}
