//! Idempotency keys: an append (or a command) carrying a key already committed on its
//! stream writes nothing and returns the original outcome.

use es_core::{AppendOptions, EventStore, ExecuteOptions, ExpectedVersion, Repository, StreamRef};

use super::{Account, events, read_everything};

/// A second append with a committed key writes nothing and returns the first append's
/// outcome, even with a stale expected version or other events; the key is found by
/// [`EventStore::find_idempotency_key`]; an empty batch records no key.
pub fn idempotency_key_appends_once<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let stream = StreamRef::new("Counter", "keyed");
    store
        .append(stream, ExpectedVersion::NoStream, &events(1, 1))
        .unwrap();
    let keyed = AppendOptions::new().idempotency_key("cmd-1");
    assert_eq!(store.find_idempotency_key(stream, "cmd-1").unwrap(), None);
    let first = store
        .append_with(stream, ExpectedVersion::Exact(1), &events(2, 2), keyed)
        .unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.stream_version, 3);
    assert_eq!(first.stream_versions(), 2..=3);

    // The retry carries the version its first attempt expected: no conflict, no append.
    let again = store
        .append_with(stream, ExpectedVersion::Exact(1), &events(2, 2), keyed)
        .unwrap();
    assert!(again.duplicate, "the retry is reported as a duplicate");
    assert_eq!(again.stream_version, first.stream_version);
    assert_eq!(again.global_positions, first.global_positions);
    // Even other events under the same key are not appended: the key names the command.
    let other = store
        .append_with(stream, ExpectedVersion::Any, &events(9, 5), keyed)
        .unwrap();
    assert!(other.duplicate);
    assert_eq!(other.global_positions, first.global_positions);
    assert_eq!(store.stream_version(stream).unwrap(), 3);
    assert_eq!(
        read_everything(&store).len(),
        3,
        "nothing was appended twice"
    );

    let found = store
        .find_idempotency_key(stream, "cmd-1")
        .unwrap()
        .unwrap();
    assert!(found.duplicate);
    assert_eq!(found.global_positions, first.global_positions);
    assert_eq!(found.stream_version, 3);

    // An empty batch records nothing; a later append may still use the key.
    let empty = AppendOptions::new().idempotency_key("cmd-empty");
    store
        .append_with(stream, ExpectedVersion::Exact(3), &[], empty)
        .unwrap();
    assert_eq!(
        store.find_idempotency_key(stream, "cmd-empty").unwrap(),
        None
    );
    let later = store
        .append_with(stream, ExpectedVersion::Exact(3), &events(4, 1), empty)
        .unwrap();
    assert!(!later.duplicate);
    assert_eq!(later.stream_version, 4);
    // A conflicting append with a new key records no key either.
    let conflicting = AppendOptions::new().idempotency_key("cmd-conflict");
    assert!(
        store
            .append_with(
                stream,
                ExpectedVersion::Exact(1),
                &events(5, 1),
                conflicting
            )
            .unwrap_err()
            .is_conflict()
    );
    assert_eq!(
        store.find_idempotency_key(stream, "cmd-conflict").unwrap(),
        None
    );
    // The next position after a duplicate is not skipped: positions have no gaps.
    let next = store
        .append(stream, ExpectedVersion::Exact(4), &events(5, 1))
        .unwrap();
    assert_eq!(next.global_positions.start, later.global_positions.end);
}

/// Keys are scoped to their stream: the same key on two streams (or two aggregate types)
/// names two commands.
pub fn idempotency_keys_are_per_stream<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let keyed = AppendOptions::new().idempotency_key("request-7");
    for stream in [
        StreamRef::new("Counter", "a"),
        StreamRef::new("Counter", "b"),
        StreamRef::new("Other", "a"),
    ] {
        let outcome = store
            .append_with(stream, ExpectedVersion::NoStream, &events(1, 1), keyed)
            .unwrap();
        assert!(
            !outcome.duplicate,
            "{stream}: a key of another stream is not a duplicate"
        );
        assert_eq!(outcome.stream_version, 1);
    }
    assert_eq!(read_everything(&store).len(), 3);
}

/// Through the repository: a command run twice with one key appends once, and the second
/// run (whose decision would now be rejected or decide other events) returns the first
/// run's outcome with `duplicate` set and the events it stored.
pub fn repository_commands_with_a_key_run_once<S: EventStore>(make: &dyn Fn() -> S) {
    let store = make();
    let repo = Repository::<Account, _>::new(&store);
    let open = ExecuteOptions::new().idempotency_key("open-1");
    let first = repo
        .execute_with_options("acc", open, |a| a.open("Alice"))
        .unwrap();
    assert!(!first.duplicate);
    // Opening again would be rejected (already open); with the key it is the same command.
    let again = repo
        .execute_with_options("acc", open, |a| a.open("Alice"))
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.version, 1);
    assert_eq!(again.global_positions, first.global_positions);
    assert_eq!(again.events.len(), 1);
    assert_eq!(again.state.owner, "Alice");
    // Without the key the same command is rejected, as before.
    assert!(
        repo.execute("acc", |a| a.open("Alice"))
            .unwrap_err()
            .rejection()
            .is_some()
    );

    let deposit = ExecuteOptions::new().idempotency_key("deposit-1");
    let first = repo
        .execute_with_options("acc", deposit, |a| a.deposit(10))
        .unwrap();
    repo.execute("acc", |a| a.deposit(1)).unwrap();
    let again = repo
        .execute_with_options("acc", deposit, |a| a.deposit(10))
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.version, first.version);
    assert_eq!(
        again.state.balance, 10,
        "the state as of the original append"
    );
    assert_eq!(
        repo.load("acc").unwrap().unwrap().state.balance,
        11,
        "the deposit was credited once"
    );
}
