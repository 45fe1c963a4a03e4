//! The conformance suite against SQLite through its async store (checkpoints included), and
//! proof that a long read never holds the runtime's thread.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use es_core::{AsyncEventStore, ExpectedVersion, StreamRef};
use es_sqlite::AsyncSqliteStore;
use es_sqlite::rusqlite::{Connection, params};
use es_store_tests::{Fixture, events};
use tempfile::TempDir;

type Store = Fixture<AsyncSqliteStore, TempDir>;

const FILE: &str = "events.db";

async fn make() -> Store {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let store = AsyncSqliteStore::open(dir.path().join(FILE))
        .await
        .expect("open the SQLite store");
    Fixture::new(store, dir)
}

/// Writes a payload that is not JSON into the row, through a second connection.
fn corrupt(store: &Store, stream: StreamRef<'_>, version: u64) {
    let conn = Connection::open(store.guard().path().join(FILE)).unwrap();
    let changed = conn
        .execute(
            "UPDATE es_events SET payload = '{\"amount\": 1,' \
             WHERE aggregate_type = ?1 AND stream_id = ?2 AND stream_version = ?3",
            params![stream.aggregate_type, stream.id, version as i64],
        )
        .unwrap();
    assert_eq!(changed, 1, "the row to corrupt exists");
}

es_store_tests::async_store_tests! {
    make: make,
    durable: { corrupt: corrupt },
}

es_store_tests::async_checkpoint_tests!(make);

/// On a runtime with a single thread, other tasks keep running while two loads of a
/// 40,000-event stream are under way: the reads wait for blocking threads, they never hold
/// the runtime's own thread. (Were they to block it, the ticker could not run until both
/// loads had finished.)
#[test]
fn long_reads_leave_the_runtime_thread_free() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = make().await;
        let stream = StreamRef::new("Counter", "long");
        for batch in 0..40u64 {
            store
                .append(
                    stream,
                    ExpectedVersion::from_version(batch * 1_000),
                    &events(batch * 1_000 + 1, 1_000),
                )
                .await
                .unwrap();
        }
        let store = Arc::new(store);
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = {
            let ticks = Arc::clone(&ticks);
            tokio::spawn(async move {
                loop {
                    ticks.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            })
        };
        let load = |store: Arc<Store>, ticks: Arc<AtomicU64>| async move {
            let before = ticks.load(Ordering::Relaxed);
            let mut count = 0u64;
            store
                .visit_stream(stream, 1..=u64::MAX, &mut |_| {
                    count += 1;
                    ControlFlow::Continue(())
                })
                .await
                .unwrap();
            (count, ticks.load(Ordering::Relaxed) - before)
        };
        let (a, b) = tokio::join!(
            load(Arc::clone(&store), Arc::clone(&ticks)),
            load(Arc::clone(&store), Arc::clone(&ticks))
        );
        ticker.abort();
        assert_eq!((a.0, b.0), (40_000, 40_000), "both loads read every event");
        // 157 chunks per load, each a wait on a blocking thread during which the ticker runs.
        assert!(
            a.1 >= 100 && b.1 >= 100,
            "the ticker ran during the loads: {a:?} {b:?}"
        );
    });
}

/// The async store and a sync store on the same database see each other's events, and
/// their appends conflict with each other.
#[test]
fn sync_and_async_share_one_database() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = make().await;
        let sync = store.store().sync().clone();
        let stream = StreamRef::new("Counter", "shared");
        store
            .append(stream, ExpectedVersion::NoStream, &events(1, 2))
            .await
            .unwrap();
        let from_sync = tokio::task::spawn_blocking(move || {
            use es_core::EventStore;
            let conflict = sync.append(stream, ExpectedVersion::NoStream, &events(3, 1));
            assert!(conflict.unwrap_err().is_conflict());
            sync.append(stream, ExpectedVersion::Exact(2), &events(3, 1))
                .unwrap()
        })
        .await
        .unwrap();
        assert_eq!(from_sync.stream_version, 3);
        assert_eq!(store.read_stream(stream, 1).await.unwrap().len(), 3);
    });
}
