//! Queries by event type, and snapshots: kept per stream and version, found by snapshot
//! version and stream version, pruned.

use std::ops::ControlFlow;

use es_core::{
    EventStore, ExpectedVersion, Metadata, NewEvent, RawValue, Snapshot, StoreError, StreamRef,
};
use serde_json::json;

fn typed(event_type: &'static str, n: u64) -> NewEvent {
    NewEvent::new(event_type, 1, json!({ "n": n }), Metadata::new())
}

/// The events of one aggregate type and some event types, across streams, in global
/// order, from a position, paged by a limit; other aggregate types with the same event
/// type names are not included.
pub fn events_by_type_across_streams<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let a = StreamRef::new("Account", "a");
    let b = StreamRef::new("Account", "b");
    let other = StreamRef::new("Ledger", "a");
    store
        .append(
            a,
            ExpectedVersion::NoStream,
            &[typed("Opened", 1), typed("Withdrawn", 2)],
        )
        .unwrap();
    store
        .append(other, ExpectedVersion::NoStream, &[typed("Withdrawn", 3)])
        .unwrap();
    store
        .append(
            b,
            ExpectedVersion::NoStream,
            &[typed("Opened", 4), typed("Deposited", 5)],
        )
        .unwrap();
    store
        .append(
            a,
            ExpectedVersion::Exact(2),
            &[typed("Withdrawn", 6), typed("Deposited", 7)],
        )
        .unwrap();

    let query = |types: &[&str], from: u64, limit: usize| {
        let mut seen = Vec::new();
        store
            .visit_by_type("Account", types, from, limit, &mut |record| {
                assert_eq!(record.stream.aggregate_type, "Account");
                let n = serde_json::from_str::<serde_json::Value>(record.payload).unwrap()["n"]
                    .as_u64()
                    .unwrap();
                seen.push((record.global_position, record.event_type.to_owned(), n));
                ControlFlow::Continue(())
            })
            .expect("visit_by_type");
        seen
    };
    let withdrawals = query(&["Withdrawn"], 0, 100);
    assert_eq!(
        withdrawals,
        [
            (2, "Withdrawn".to_owned(), 2),
            (6, "Withdrawn".to_owned(), 6)
        ],
        "only the Account's withdrawals, in global order"
    );
    let money: Vec<u64> = query(&["Withdrawn", "Deposited"], 0, 100)
        .iter()
        .map(|e| e.2)
        .collect();
    assert_eq!(money, [2, 5, 6, 7], "several types, merged in global order");
    let page: Vec<u64> = query(&["Withdrawn", "Deposited"], 3, 2)
        .iter()
        .map(|e| e.2)
        .collect();
    assert_eq!(page, [5, 6], "from a position, up to a limit");
    assert!(query(&["Closed"], 0, 100).is_empty());
    assert!(query(&[], 0, 100).is_empty());
    assert!(query(&["Withdrawn"], 0, 0).is_empty());

    // A visitor that stops early sees no more.
    let mut count = 0;
    store
        .visit_by_type(
            "Account",
            &["Opened", "Withdrawn", "Deposited"],
            0,
            100,
            &mut |_| {
                count += 1;
                ControlFlow::Break(())
            },
        )
        .unwrap();
    assert_eq!(count, 1);
}

fn snapshot(version: u64, snapshot_version: u32, balance: u64) -> Snapshot {
    let state = RawValue::from_string(json!({ "balance": balance }).to_string()).unwrap();
    Snapshot::new(version, snapshot_version, state)
}

/// Snapshots are kept per stream; a load finds the latest one of a snapshot version at or
/// before a stream version; saving at the same stream version replaces; pruning keeps the
/// latest; a snapshot past the stream's end is refused.
pub fn snapshots_are_kept_found_and_pruned<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let stream = StreamRef::new("Account", "snap");
    let other = StreamRef::new("Account", "other");
    assert_eq!(store.load_snapshot(stream, 1, u64::MAX).unwrap(), None);
    store
        .append(stream, ExpectedVersion::NoStream, &crate::events(1, 30))
        .unwrap();
    store
        .append(other, ExpectedVersion::NoStream, &crate::events(1, 30))
        .unwrap();

    store.save_snapshot(stream, &snapshot(10, 1, 10)).unwrap();
    store.save_snapshot(stream, &snapshot(20, 1, 20)).unwrap();
    store.save_snapshot(stream, &snapshot(25, 2, 25)).unwrap();
    let latest = store.load_snapshot(stream, 1, u64::MAX).unwrap().unwrap();
    assert_eq!(
        latest,
        snapshot(20, 1, 20),
        "the latest of snapshot version 1"
    );
    assert!(
        latest.taken_at > std::time::SystemTime::UNIX_EPOCH,
        "the store stamps it"
    );
    assert_eq!(
        store.load_snapshot(stream, 1, 19).unwrap(),
        Some(snapshot(10, 1, 10)),
        "at or before the version asked for"
    );
    assert_eq!(store.load_snapshot(stream, 1, 9).unwrap(), None);
    assert_eq!(
        store.load_snapshot(stream, 2, u64::MAX).unwrap(),
        Some(snapshot(25, 2, 25))
    );
    assert_eq!(store.load_snapshot(stream, 3, u64::MAX).unwrap(), None);
    assert_eq!(
        store.load_snapshot(other, 1, u64::MAX).unwrap(),
        None,
        "snapshots are per stream"
    );

    // The same stream version again replaces.
    store.save_snapshot(stream, &snapshot(20, 1, 99)).unwrap();
    assert_eq!(
        store.load_snapshot(stream, 1, u64::MAX).unwrap(),
        Some(snapshot(20, 1, 99))
    );

    // Past the end, at version 0, or of snapshot version 0: refused, nothing kept.
    for bad in [snapshot(31, 1, 0), snapshot(0, 1, 0), snapshot(5, 0, 0)] {
        let error = store.save_snapshot(stream, &bad).unwrap_err();
        assert!(matches!(error, StoreError::Invalid { .. }), "{error:?}");
    }
    let error = store
        .save_snapshot(StreamRef::new("Account", "none"), &snapshot(1, 1, 0))
        .unwrap_err();
    assert!(matches!(error, StoreError::Invalid { .. }), "{error:?}");
    assert_eq!(
        store.load_snapshot(stream, 1, 31).unwrap(),
        Some(snapshot(20, 1, 99))
    );

    // Pruning keeps the latest (of any snapshot version).
    assert_eq!(store.prune_snapshots(stream, 2).unwrap(), 1);
    assert_eq!(
        store.load_snapshot(stream, 1, 19).unwrap(),
        None,
        "version 10 is gone"
    );
    assert_eq!(
        store.load_snapshot(stream, 1, u64::MAX).unwrap(),
        Some(snapshot(20, 1, 99))
    );
    assert_eq!(
        store.load_snapshot(stream, 2, u64::MAX).unwrap(),
        Some(snapshot(25, 2, 25))
    );
    assert_eq!(store.prune_snapshots(stream, 0).unwrap(), 2);
    assert_eq!(store.load_snapshot(stream, 2, u64::MAX).unwrap(), None);
    assert_eq!(
        store
            .prune_snapshots(StreamRef::new("Account", "none"), 0)
            .unwrap(),
        0
    );
    // Snapshots never touch the events.
    assert_eq!(store.read_stream(stream, 1).unwrap().len(), 30);
}
