//! The conformance suite and the catch-up tests against PostgreSQL.
//!
//! Needs a server: set `ES_POSTGRES_URL` (e.g. `eval "$(bash .ci/postgres.sh)"`). Without
//! it the tests are skipped with a message, except under CI (`CI` set), where they fail.
//! Every test works in a fresh schema, dropped afterwards, so tests never see each other's
//! events.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use es_core::{EventStore, ExpectedVersion, StreamRef};
use es_postgres::postgres::Client;
use es_postgres::{Options, PostgresStore};
use es_store_tests::{Fixture, events, read_everything};
type Store = Fixture<PostgresStore, Schema>;

#[path = "support/postgres.rs"]
mod support;
use support::{Schema, fresh_schema, url, with_param};

fn make() -> Store {
    let url = url().expect("the caller checked that the server is configured");
    let name = fresh_schema();
    let store = PostgresStore::connect_with_schema(&url, &name).expect("connect to PostgreSQL");
    Fixture::new(store, Schema { url, name })
}

fn client(store: &Store) -> Client {
    es_postgres::connect_client(&store.guard().url).expect("connect a second client")
}

/// `jsonb` cannot hold invalid JSON, so the damage is metadata of the wrong shape.
fn corrupt(store: &Store, stream: StreamRef<'_>, version: u64) {
    let changed = client(store)
        .execute(
            &format!(
                "UPDATE \"{}\".es_events SET metadata = '{{\"correlation_id\": 42}}' \
                 WHERE aggregate_type = $1 AND stream_id = $2 AND stream_version = $3",
                store.guard().name
            ),
            &[&stream.aggregate_type, &stream.id, &(version as i64)],
        )
        .unwrap();
    assert_eq!(changed, 1, "the row to corrupt exists");
}

es_store_tests::store_tests! {
    make: make,
    enabled: url().is_some(),
    durable: { corrupt: corrupt },
}

/// Read-model checkpoints and leases in `es_checkpoints`.
mod checkpoints {
    use std::sync::Barrier;
    use std::thread;
    use std::time::Duration;

    use es_core::{CheckpointStore, Lease};
    use es_postgres::PostgresStore;

    use super::{make, url};

    es_store_tests::checkpoint_tests! {
        make: make,
        enabled: url().is_some(),
    }

    /// Stores with pools of their own on one schema stand for processes: of many asking
    /// for a lease at the same moment, exactly one gets it, and the others are told who.
    #[test]
    fn a_lease_is_exclusive_across_stores() {
        if url().is_none() {
            return;
        }
        const STORES: usize = 8;
        let fixture = make();
        let (url, name) = (&fixture.guard().url, &fixture.guard().name);
        let stores: Vec<PostgresStore> = (0..STORES)
            .map(|_| PostgresStore::connect_with_schema(url, name).unwrap())
            .collect();
        let ttl = Duration::from_secs(60);
        for round in 0..5 {
            let model = format!("model-{round}");
            let barrier = Barrier::new(STORES);
            let leases: Vec<(String, Lease)> = thread::scope(|scope| {
                let handles: Vec<_> = stores
                    .iter()
                    .enumerate()
                    .map(|(i, store)| {
                        let (barrier, model) = (&barrier, &model);
                        scope.spawn(move || {
                            let owner = format!("owner-{i}");
                            barrier.wait();
                            let lease = store.acquire_lease(model, &owner, ttl).unwrap();
                            (owner, lease)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let winners: Vec<&String> = leases
                .iter()
                .filter(|(_, lease)| matches!(lease, Lease::Acquired { .. }))
                .map(|(owner, _)| owner)
                .collect();
            assert_eq!(winners.len(), 1, "round {round}: {leases:?}");
            let winner = winners[0];
            for (owner, lease) in &leases {
                if owner != winner {
                    assert!(
                        matches!(lease, Lease::HeldBy { owner: holder, .. } if holder == winner),
                        "round {round}: {owner} got {lease:?}, the lease is {winner}'s"
                    );
                }
            }
            // Released, it is free for another store; the checkpoint was never touched.
            stores[0].release_lease(&model, winner).unwrap();
            assert!(matches!(
                stores[1].acquire_lease(&model, "late", ttl).unwrap(),
                Lease::Acquired { .. }
            ));
            assert_eq!(stores[2].load_checkpoint(&model).unwrap(), 0);
        }
    }

    /// A name PostgreSQL text cannot hold is refused before it reaches the server.
    #[test]
    fn nul_characters_in_read_model_names_are_refused() {
        if url().is_none() {
            return;
        }
        let store = make();
        for error in [
            store.save_checkpoint("bad\0name", 1).unwrap_err(),
            store.load_checkpoint("bad\0name").unwrap_err(),
            store
                .acquire_lease("ok", "bad\0owner", Duration::from_secs(1))
                .unwrap_err(),
        ] {
            assert!(error.to_string().contains("NUL character"), "{error}");
        }
        store.save_checkpoint("ok", 3).unwrap();
        assert_eq!(store.load_checkpoint("ok").unwrap(), 3);
    }
}

/// Holds one append's transaction open, starts a second append, then ends the first with
/// `finish` (commit or roll back). Returns what a global-log reader saw while the first was
/// open, and the store.
fn late_commit(commit: bool) -> Option<(Store, Vec<es_core::RecordedEvent>)> {
    url()?;
    let store = make();
    let first = StreamRef::new("Late", "first");
    let second = StreamRef::new("Late", "second");
    let mut other = client(&store);
    let mut tx = other.transaction().unwrap();
    let held = es_postgres::append_in_transaction(
        &mut tx,
        store.store().schema(),
        first,
        ExpectedVersion::NoStream,
        &events(1, 2),
    )
    .unwrap();
    assert_eq!(held.global_positions, 1..3);

    let second_done = AtomicBool::new(false);
    let seen_while_open = thread::scope(|scope| {
        let appender = scope.spawn(|| {
            let outcome = store
                .append(second, ExpectedVersion::NoStream, &events(10, 1))
                .unwrap();
            second_done.store(true, Ordering::SeqCst);
            outcome
        });
        // The second append needs the counter row the first one holds: it cannot finish
        // while the first transaction is open, so this is never a false failure.
        thread::sleep(Duration::from_millis(300));
        assert!(
            !second_done.load(Ordering::SeqCst),
            "the second append finished while the first held the position counter"
        );
        let seen = store.read_all(0, 100).unwrap();
        assert!(
            seen.is_empty(),
            "uncommitted events are invisible: {seen:?}"
        );

        if commit {
            tx.commit().unwrap();
        } else {
            tx.rollback().unwrap();
        }
        let outcome = appender.join().unwrap();
        let expected_position = if commit { 3 } else { 1 };
        assert_eq!(
            outcome.global_positions,
            expected_position..expected_position + 1
        );
        seen
    });
    Some((store, seen_while_open))
}

#[test]
fn a_late_commit_is_not_skipped_by_a_reader() {
    let Some((store, seen_while_open)) = late_commit(true) else {
        return;
    };
    // The reader carries on from where it was (nothing seen: position 1).
    let from = seen_while_open.last().map_or(1, |e| e.global_position + 1);
    let seen: Vec<(u64, &str, u64)> = store
        .read_all(from, 100)
        .unwrap()
        .iter()
        .map(|e| (e.global_position, e.stream_id.as_str(), e.stream_version))
        .map(|(p, s, v)| (p, if s == "first" { "first" } else { "second" }, v))
        .collect();
    assert_eq!(
        seen,
        [(1, "first", 1), (2, "first", 2), (3, "second", 1)],
        "both appends, in commit order, none skipped"
    );
}

#[test]
fn a_rolled_back_append_leaves_no_gap() {
    let Some((store, seen_while_open)) = late_commit(false) else {
        return;
    };
    assert!(seen_while_open.is_empty());
    let seen = read_everything(&store);
    assert_eq!(seen.len(), 1, "only the second append: {seen:?}");
    assert_eq!(seen[0].stream_id, "second");
    assert_eq!(seen[0].global_position, 1, "its position was given back");
    // The next append continues contiguously.
    let outcome = store
        .append(
            StreamRef::new("Late", "first"),
            ExpectedVersion::NoStream,
            &events(1, 1),
        )
        .unwrap();
    assert_eq!(outcome.global_positions, 2..3);
}

#[test]
fn appends_in_a_caller_transaction_commit_with_it() {
    if url().is_none() {
        return;
    }
    let store = make();
    let stream = StreamRef::new("Account", "tx");
    let mut other = client(&store);
    let schema = store.store().schema().to_owned();
    other
        .batch_execute(&format!(
            "CREATE TABLE \"{schema}\".balances (id text PRIMARY KEY, total bigint NOT NULL)"
        ))
        .unwrap();

    let mut tx = other.transaction().unwrap();
    tx.execute(
        &format!("INSERT INTO \"{schema}\".balances VALUES ('tx', 5)"),
        &[],
    )
    .unwrap();
    store
        .store()
        .append_in_transaction(&mut tx, stream, ExpectedVersion::NoStream, &events(1, 1))
        .unwrap();
    // A conflict inside the caller's transaction leaves it usable.
    let conflict = store.store().append_in_transaction(
        &mut tx,
        stream,
        ExpectedVersion::NoStream,
        &events(2, 1),
    );
    assert!(conflict.unwrap_err().is_conflict());
    tx.commit().unwrap();
    assert_eq!(store.stream_version(stream).unwrap(), 1);
    assert_eq!(read_everything(&store)[0].global_position, 1);
    let total: i64 = other
        .query_one(&format!("SELECT total FROM \"{schema}\".balances"), &[])
        .unwrap()
        .get(0);
    assert_eq!(total, 5);

    // Rolled back: neither the row nor the event.
    let mut tx = other.transaction().unwrap();
    tx.execute(&format!("UPDATE \"{schema}\".balances SET total = 99"), &[])
        .unwrap();
    store
        .store()
        .append_in_transaction(&mut tx, stream, ExpectedVersion::Exact(1), &events(2, 1))
        .unwrap();
    tx.rollback().unwrap();
    assert_eq!(store.stream_version(stream).unwrap(), 1);
    let outcome = store
        .append(stream, ExpectedVersion::Exact(1), &events(2, 1))
        .unwrap();
    assert_eq!(outcome.global_positions, 2..3, "no gap after the rollback");

    let error = es_postgres::append_in_transaction(
        &mut other.transaction().unwrap(),
        "bad-schema",
        stream,
        ExpectedVersion::Any,
        &events(3, 1),
    )
    .unwrap_err();
    assert!(error.to_string().contains("bad-schema"), "{error}");
}

#[test]
fn stores_opening_a_new_schema_at_once_all_succeed() {
    let Some(url) = url() else { return };
    let name = fresh_schema();
    let _drop = Schema {
        url: url.clone(),
        name: name.clone(),
    };
    let stores: Vec<PostgresStore> = thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| PostgresStore::connect_with_schema(&url, &name)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().expect("concurrent first-time creation"))
            .collect()
    });
    let stream = StreamRef::new("Counter", "shared");
    stores[0]
        .append(stream, ExpectedVersion::NoStream, &events(1, 1))
        .unwrap();
    assert_eq!(stores[3].stream_version(stream).unwrap(), 1);
}

#[test]
fn schemas_are_separate_stores() {
    if url().is_none() {
        return;
    }
    let a = make();
    let b = make();
    let stream = StreamRef::new("Counter", "same");
    a.append(stream, ExpectedVersion::NoStream, &events(1, 2))
        .unwrap();
    b.append(stream, ExpectedVersion::NoStream, &events(1, 1))
        .expect("the other schema has its own streams");
    assert_eq!(read_everything(&a).len(), 2);
    assert_eq!(read_everything(&b).len(), 1);
    assert_eq!(read_everything(&b)[0].global_position, 1);
}

#[test]
fn invalid_schema_names_and_urls_are_errors() {
    let url = url().unwrap_or_else(|| "postgres://nobody@127.0.0.1:1/none".to_owned());
    for bad in ["", "has-dash", "x\"; DROP TABLE y; --", &"a".repeat(64)] {
        let error = PostgresStore::connect_with_schema(&url, bad).unwrap_err();
        assert!(
            matches!(error, es_postgres::Error::InvalidSchema { .. }),
            "{bad}: {error:?}"
        );
    }
    let error = PostgresStore::connect("postgres://a:b@host:notaport/db").unwrap_err();
    assert!(
        matches!(error, es_postgres::Error::InvalidUrl { .. }),
        "{error:?}"
    );
    assert!(
        !error.to_string().contains(":b@"),
        "no password in messages: {error}"
    );
}

#[test]
fn a_newer_schema_is_refused_with_an_error() {
    if url().is_none() {
        return;
    }
    let store = make();
    let (url, name) = (store.guard().url.clone(), store.guard().name.clone());
    client(&store)
        .batch_execute(&format!(
            "INSERT INTO \"{name}\".es_schema_version (version) VALUES (5)"
        ))
        .unwrap();
    let error = PostgresStore::connect_with_schema(&url, &name).unwrap_err();
    assert!(
        matches!(
            error,
            es_postgres::Error::SchemaTooNew {
                found: 5,
                supported: 4,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("upgrade es-postgres"), "{error}");
}

#[test]
fn appends_and_migrations_ignore_a_serializable_default() {
    let Some(url) = url() else { return };
    let url = with_param(
        &url,
        "options",
        "-c default_transaction_isolation=serializable",
    );
    let name = fresh_schema();
    let _drop = Schema {
        url: url.clone(),
        name: name.clone(),
    };
    // Sessions really default to SERIALIZABLE.
    let level: String = es_postgres::connect_client(&url)
        .unwrap()
        .query_one("SHOW default_transaction_isolation", &[])
        .unwrap()
        .get(0);
    assert_eq!(level, "serializable");

    let stream = StreamRef::new("Counter", "contended");
    thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|t| {
                let (url, name) = (&url, &name);
                scope.spawn(move || {
                    // Concurrent first-time creation, then concurrent appends.
                    let store = PostgresStore::connect_with_schema(url, name)
                        .expect("migration under a serializable default");
                    for i in 0..10 {
                        store
                            .append(stream, ExpectedVersion::Any, &events(t * 100 + i, 1))
                            .expect("append under a serializable default");
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    });
    let store = PostgresStore::connect_with_schema(&url, &name).unwrap();
    assert_eq!(store.stream_version(stream).unwrap(), 60);
    let positions: Vec<u64> = store
        .read_all(1, 100)
        .unwrap()
        .iter()
        .map(|e| e.global_position)
        .collect();
    assert_eq!(positions, (1..=60).collect::<Vec<_>>());
}

/// A store in a fresh schema whose connections carry a unique `application_name`, so
/// `pg_stat_activity` shows exactly this store's sessions. Returns the name too.
fn make_named(options: Options) -> Option<(Store, String)> {
    let url = url()?;
    let name = fresh_schema();
    let app = format!("{name}_app");
    let store = PostgresStore::connect_with_options(
        &with_param(&url, "application_name", &app),
        &name,
        options,
    )
    .expect("connect to PostgreSQL");
    Some((Fixture::new(store, Schema { url, name }), app))
}

fn sessions_of(monitor: &mut Client, app: &str) -> i64 {
    monitor
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .unwrap()
        .get(0)
}

#[test]
fn the_pool_never_opens_more_than_max_connections() {
    let Some((store, app)) = make_named(Options::new().max_connections(2)) else {
        return;
    };
    let mut monitor = client(&store);
    let done = AtomicBool::new(false);
    let most = thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut most = 0;
            while !done.load(Ordering::SeqCst) {
                most = most.max(sessions_of(&mut monitor, &app));
                thread::sleep(Duration::from_millis(2));
            }
            most
        });
        let appenders: Vec<_> = (0..8)
            .map(|t| {
                let store = &store;
                scope.spawn(move || {
                    let id = format!("s{t}");
                    let stream = StreamRef::new("Counter", &id);
                    for i in 0..15 {
                        store
                            .append(stream, ExpectedVersion::Exact(i), &events(i + 1, 1))
                            .expect("append through a bounded pool");
                        assert_eq!(store.read_stream(stream, 1).unwrap().len() as u64, i + 1);
                    }
                })
            })
            .collect();
        for appender in appenders {
            appender.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        watcher.join().unwrap()
    });
    assert!(most >= 1, "the watcher saw the store's sessions");
    assert!(
        most <= 2,
        "{most} sessions open, more than max_connections = 2"
    );
    assert_eq!(read_everything(&store).len(), 8 * 15);
    assert!(sessions_of(&mut client(&store), &app) <= 2);
}

/// Kills every session of `app` server-side and waits until they are gone.
fn kill_sessions(monitor: &mut Client, app: &str) {
    monitor
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .unwrap();
    for _ in 0..200 {
        if sessions_of(monitor, app) == 0 {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("the sessions of {app} were not terminated");
}

#[test]
fn idle_connections_the_server_dropped_are_replaced() {
    let options = Options::new()
        .max_connections(3)
        .check_idle_after(Duration::from_millis(100));
    let Some((store, app)) = make_named(options) else {
        return;
    };
    let stream = StreamRef::new("Counter", "revived");
    // Put several connections in the pool.
    thread::scope(|scope| {
        for t in 0..3 {
            let store = &store;
            scope.spawn(move || {
                let id = format!("warm{t}");
                store
                    .append(
                        StreamRef::new("Counter", &id),
                        ExpectedVersion::Any,
                        &events(t + 1, 1),
                    )
                    .unwrap();
            });
        }
    });
    let mut monitor = client(&store);
    assert!(sessions_of(&mut monitor, &app) >= 1);
    kill_sessions(&mut monitor, &app);
    thread::sleep(Duration::from_millis(200));

    // Every pooled connection is dead; the store notices and reconnects.
    store
        .append(stream, ExpectedVersion::NoStream, &events(10, 1))
        .expect("append after the server dropped the idle connections");
    assert_eq!(store.stream_version(stream).unwrap(), 1);
    assert_eq!(store.read_stream(stream, 1).unwrap().len(), 1);
}

#[test]
fn a_failed_connection_frees_its_pool_slot() {
    // One slot and no idle check: the dead connection is only found by using it.
    let options = Options::new()
        .max_connections(1)
        .check_idle_after(Duration::from_secs(3600));
    let Some((store, app)) = make_named(options) else {
        return;
    };
    let stream = StreamRef::new("Counter", "slot");
    store
        .append(stream, ExpectedVersion::NoStream, &events(1, 1))
        .unwrap();
    kill_sessions(&mut client(&store), &app);
    // The dead connection is found before anything ran on it, so the append runs again
    // on a fresh connection in the freed slot: it neither fails nor waits forever.
    store
        .append(stream, ExpectedVersion::Exact(1), &events(2, 1))
        .expect("recovered on a fresh connection in the freed slot");
    assert_eq!(store.stream_version(stream).unwrap(), 2);
}

#[test]
fn a_damaged_position_counter_is_reported_with_its_repair() {
    if url().is_none() {
        return;
    }
    let store = make();
    let schema = store.guard().name.clone();
    let stream = StreamRef::new("Counter", "damaged");
    store
        .append(stream, ExpectedVersion::NoStream, &events(1, 2))
        .unwrap();
    let mut other = client(&store);
    let repair = format!(
        "UPDATE \"{schema}\".es_position SET last = \
         (SELECT coalesce(max(global_position), 0) FROM \"{schema}\".es_events)"
    );

    // Sets the counter to `last`, appends, and returns the Backend error's message.
    let mut append_with_counter = |last: i64| {
        other
            .batch_execute(&format!(
                "UPDATE \"{schema}\".es_position SET last = {last}"
            ))
            .unwrap();
        let error = store
            .append(stream, ExpectedVersion::Exact(2), &events(3, 1))
            .unwrap_err();
        assert!(
            matches!(error, es_core::StoreError::Backend(_)),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains(&repair), "{message}");
        message
    };

    // Negative: the positions would start below 1.
    let message = append_with_counter(-5);
    assert!(message.contains("negative"), "{message}");
    assert!(message.contains(&schema), "{message}");

    // Behind: the positions are already taken.
    let message = append_with_counter(1);
    assert!(message.contains("is behind the stored events"), "{message}");
    assert!(message.contains("global position 2"), "{message}");

    // The repair the messages give works.
    other.batch_execute(&repair).unwrap();
    let outcome = store
        .append(stream, ExpectedVersion::Exact(2), &events(3, 1))
        .unwrap();
    assert_eq!(outcome.global_positions, 3..4);
}

/// Runs `append` (which must append version 1 of `Bypass/x`) while another session, not
/// taking the counter lock, has inserted that same version uncommitted, then commits it.
/// The append blocks on the unique key and fails once the other session commits.
fn append_against_a_bypass<T: Send>(store: &Store, append: impl FnOnce() -> T + Send) -> T {
    let schema = store.guard().name.clone();
    let mut bypass = client(store);
    let mut tx = bypass.transaction().unwrap();
    tx.execute(
        &format!(
            "INSERT INTO \"{schema}\".es_events VALUES (1000, gen_random_uuid(), 'Bypass', 'x', \
             1, 'Sneaky', 1, now(), '{{}}', '{{}}')"
        ),
        &[],
    )
    .unwrap();
    thread::scope(|scope| {
        let appender = scope.spawn(append);
        thread::sleep(Duration::from_millis(300));
        tx.commit().unwrap();
        appender.join().unwrap()
    })
}

#[test]
fn a_duplicate_version_in_a_caller_transaction_is_not_a_usable_conflict() {
    if url().is_none() {
        return;
    }
    let store = make();
    let stream = StreamRef::new("Bypass", "x");
    let mut other = client(&store);
    let error = append_against_a_bypass(&store, || {
        let mut tx = other.transaction().unwrap();
        let result = store.store().append_in_transaction(
            &mut tx,
            stream,
            ExpectedVersion::NoStream,
            &events(1, 1),
        );
        // The database aborted the transaction: nothing more runs in it.
        assert!(tx.execute("SELECT 1", &[]).is_err());
        result
    })
    .unwrap_err();
    assert!(
        !error.is_conflict(),
        "the transaction is aborted: {error:?}"
    );
    assert!(
        matches!(error, es_core::StoreError::Backend(_)),
        "{error:?}"
    );
    assert!(error.to_string().contains("roll it back"), "{error}");

    // The store's own append rolls back itself, so there it is a plain conflict.
    let store_stream = StreamRef::new("Bypass", "x");
    let store2 = make();
    let error = append_against_a_bypass(&store2, || {
        store2.append(store_stream, ExpectedVersion::NoStream, &events(1, 1))
    })
    .unwrap_err();
    assert!(error.is_conflict(), "{error:?}");
}

#[test]
fn nul_characters_in_names_are_invalid_requests() {
    let Some((store, app)) = make_named(Options::new()) else {
        return;
    };
    let mut monitor = client(&store);
    let before = sessions_of(&mut monitor, &app);
    for stream in [
        StreamRef::new("Counter", "a\0b"),
        StreamRef::new("Coun\0ter", "ab"),
    ] {
        let errors = [
            store
                .append(stream, ExpectedVersion::Any, &events(1, 1))
                .unwrap_err(),
            store.read_stream(stream, 1).unwrap_err(),
            store.stream_version(stream).unwrap_err(),
        ];
        for error in errors {
            assert!(
                matches!(error, es_core::StoreError::Invalid { .. }),
                "{error:?}"
            );
            assert!(error.to_string().contains("NUL character"), "{error}");
        }
    }
    let mut event = events(1, 1);
    event[0].event_type = "Bad\0Type".into();
    let error = store
        .append(
            StreamRef::new("Counter", "ok"),
            ExpectedVersion::Any,
            &event,
        )
        .unwrap_err();
    assert!(
        matches!(error, es_core::StoreError::Invalid { .. }),
        "{error:?}"
    );
    // Nothing reached the server, so no connection was lost or added.
    assert_eq!(sessions_of(&mut monitor, &app), before);
    assert_eq!(read_everything(&store).len(), 0);
}

/// An idempotency key inside the caller's transaction: a duplicate writes nothing, leaves
/// the transaction usable and gives the positions it took back, so the caller's commit
/// leaves no gap in the log.
#[test]
fn a_duplicate_key_in_a_caller_transaction_gives_its_positions_back() {
    if url().is_none() {
        return;
    }
    let store = make();
    let stream = StreamRef::new("Account", "tx-key");
    let keyed = es_core::AppendOptions::new().idempotency_key("req-1");
    let first = store
        .append_with(stream, ExpectedVersion::NoStream, &events(1, 2), keyed)
        .unwrap();
    let mut other = client(&store);
    let mut tx = other.transaction().unwrap();
    let again = store
        .store()
        .append_in_transaction_with(
            &mut tx,
            stream,
            ExpectedVersion::NoStream,
            &events(3, 2),
            keyed,
        )
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.global_positions, first.global_positions);
    // The transaction is still usable: a plain append in it commits with it.
    let next = store
        .store()
        .append_in_transaction(&mut tx, stream, ExpectedVersion::Exact(2), &events(5, 1))
        .unwrap();
    assert_eq!(
        next.global_positions,
        3..4,
        "the duplicate's positions were given back"
    );
    tx.commit().unwrap();
    let positions: Vec<u64> = read_everything(&store)
        .iter()
        .map(|e| e.global_position)
        .collect();
    assert_eq!(positions, vec![1, 2, 3], "no gap, nothing doubled");
}

/// A read whose visitor stops early (or that meets a damaged row) does not give back a
/// connection the server is still streaming the rest of the query to: that session would
/// hold its snapshot and a lock on `es_events` until the connection's next use.
#[test]
fn a_read_stopped_early_leaves_no_query_running() {
    let Some((store, app)) = make_named(Options::new().max_connections(1)) else {
        return;
    };
    // More than the socket buffers hold (about 40 MB), so the server is still sending when
    // the visitor stops.
    let stream = StreamRef::new("Counter", "long");
    let pad = "x".repeat(2_000);
    for batch in 0..20u64 {
        let batch_events: Vec<_> = (0..1_000)
            .map(|n| {
                es_core::NewEvent::new(
                    "Numbered",
                    1,
                    serde_json::json!({ "n": batch * 1_000 + n, "pad": pad }),
                    es_core::Metadata::new(),
                )
            })
            .collect();
        store
            .append(
                stream,
                ExpectedVersion::from_version(batch * 1_000),
                &batch_events,
            )
            .unwrap();
    }
    let mut seen = 0;
    store
        .visit_stream(stream, 1..=u64::MAX, &mut |_| {
            seen += 1;
            std::ops::ControlFlow::Break(())
        })
        .unwrap();
    assert_eq!(seen, 1);
    let mut monitor = client(&store);
    let active: i64 = monitor
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state <> 'idle'",
            &[&app],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        active, 0,
        "no session of the store is still running the read"
    );
    // The store works on (a fresh connection in the freed slot).
    assert_eq!(store.stream_version(stream).unwrap(), 20_000);
    assert_eq!(store.read_stream(stream, 19_999).unwrap().len(), 2);
}
