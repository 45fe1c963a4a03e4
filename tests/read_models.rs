//! Read models declared with `#[read_model]`, fed by a `Projector`: filtering by aggregate
//! type, upcasting, the envelope, checkpoints in batches, handler errors and retries,
//! rebuilds with progress, leases, and `run` with a stop handle; on the in-memory store, on
//! SQLite, and on PostgreSQL when `ES_POSTGRES_URL` is set (see also
//! `tests/projection_postgres.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use es_core::{
    Aggregate, CheckpointStore, Event, EventRecord, EventStore, ExpectedVersion, InMemoryStore,
    Metadata, NewEvent, ProjectionError, Projector, ReadModel, Repository, RunOptions, StopHandle,
    StreamRef, UpcastError, applies, read_model,
};
use es_sqlite::SqliteStore;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[path = "support/postgres.rs"]
mod support;

/// A PostgreSQL store in a fresh schema and the schema's guard (dropped after the store),
/// or `None` (with a message) without a server.
fn postgres() -> Option<(es_postgres::PostgresStore, support::Schema)> {
    let url = support::url()?;
    let name = support::fresh_schema();
    let store = es_postgres::PostgresStore::connect_with_schema(&url, &name)
        .expect("connect to PostgreSQL");
    Some((store, support::Schema { url, name }))
}

mod shop {
    use super::*;

    /// Both aggregates have an event stored as `Created`.
    #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    #[event(name = "Created")]
    pub struct ShopCreated {
        pub city: String,
    }

    /// v1 stored `{"item": ..}` without a count; v2 added `count`.
    #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    #[event(version = 2, upcast(from = 1, with = added_v1_to_v2), aliases("ItemPut"))]
    pub struct ItemAdded {
        pub item: String,
        pub count: u32,
    }

    fn added_v1_to_v2(mut payload: Value) -> Result<Value, UpcastError> {
        payload
            .as_object_mut()
            .ok_or_else(|| UpcastError::new("not an object"))?
            .insert("count".into(), json!(1));
        Ok(payload)
    }

    #[derive(Debug, Default, Aggregate)]
    pub struct Shop {
        pub items: u32,
    }

    #[applies]
    impl Shop {
        fn created(&mut self, _: &ShopCreated) {}
        fn added(&mut self, e: &ItemAdded) {
            self.items += e.count;
        }
    }
}

mod user {
    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    #[event(name = "Created")]
    pub struct UserCreated {
        pub name: String,
    }

    #[derive(Debug, Default, Aggregate)]
    pub struct User {
        pub name: String,
    }

    #[applies]
    impl User {
        fn created(&mut self, e: &UserCreated) {
            self.name.clone_from(&e.name);
        }
    }
}

use shop::{ItemAdded, Shop, ShopCreated};
use user::{User, UserCreated};

/// Shops by city, and items added: one aggregate, so the projector reads by type.
#[derive(Debug, Default)]
struct Catalog {
    cities: BTreeMap<String, String>,
    items: BTreeMap<String, u32>,
    positions: Vec<u64>,
}

#[read_model(from = Shop)]
impl Catalog {
    fn created(&mut self, e: &ShopCreated, record: &EventRecord<'_>) {
        self.cities
            .insert(record.stream.id.to_owned(), e.city.clone());
        self.positions.push(record.global_position);
    }
    fn added(&mut self, e: &ItemAdded, record: &EventRecord<'_>) {
        *self.items.entry(e.item.clone()).or_default() += e.count;
        self.positions.push(record.global_position);
    }
}

/// Events of two aggregates with the same stored name; the handler fails on a poisoned
/// name until told otherwise.
#[derive(Debug, Default)]
struct Directory {
    shops: Vec<String>,
    users: Vec<String>,
    refuse: Option<String>,
    correlations: Vec<Option<String>>,
}

#[derive(Debug, thiserror::Error)]
#[error("user name `{0}` is refused")]
struct Refused(String);

#[read_model(name = "directory")]
impl Directory {
    #[from(Shop)]
    fn shop(&mut self, e: &ShopCreated) {
        self.shops.push(e.city.clone());
    }
    #[from(User)]
    fn user(&mut self, e: &UserCreated, record: &EventRecord<'_>) -> Result<(), Refused> {
        if self.refuse.as_deref() == Some(e.name.as_str()) {
            return Err(Refused(e.name.clone()));
        }
        let metadata = record.metadata.to_metadata().unwrap_or_default();
        self.correlations.push(metadata.correlation_id);
        self.users.push(e.name.clone());
        Ok(())
    }
}

fn fill<S: EventStore + Clone>(store: &S) {
    let shops = Repository::<Shop, _>::new(store.clone());
    let users = Repository::<User, _>::new(store.clone());
    shops
        .execute_infallible("s1", |_: &Shop| ShopCreated {
            city: "Oslo".into(),
        })
        .unwrap();
    users
        .execute_infallible("u1", |_: &User| UserCreated { name: "ada".into() })
        .unwrap();
    shops
        .execute_infallible("s1", |_: &Shop| ItemAdded {
            item: "sword".into(),
            count: 2,
        })
        .unwrap();
    // Stored by an older release: version 1, under the old name.
    store
        .append(
            StreamRef::new("Shop", "s1"),
            ExpectedVersion::Exact(2),
            &[NewEvent::new(
                "ItemPut",
                1,
                json!({ "item": "potion" }),
                Metadata::new(),
            )],
        )
        .unwrap();
    users
        .execute_infallible("u2", |_: &User| UserCreated { name: "bob".into() })
        .unwrap();
    shops
        .execute_infallible("s2", |_: &Shop| ShopCreated {
            city: "Rome".into(),
        })
        .unwrap();
}

#[test]
fn the_macro_lists_what_it_handles() {
    assert_eq!(Catalog::NAME, "Catalog");
    assert_eq!(Directory::NAME, "directory");
    let handled: Vec<(&str, &str, &[&str])> = Catalog::HANDLES
        .iter()
        .map(|h| (h.aggregate_type, h.event_type, h.aliases))
        .collect();
    assert_eq!(
        handled,
        [
            ("Shop", "Created", &[][..]),
            ("Shop", "ItemAdded", &["ItemPut"][..])
        ]
    );
    assert_eq!(Directory::HANDLES[1].aggregate_type, "User");
}

fn catalog_case<S: EventStore + CheckpointStore + Clone>(store: S) {
    fill(&store);
    let mut projector =
        Projector::new(store.clone(), Catalog::default(), store.clone()).with_batch_size(2);
    let done = projector.catch_up().unwrap();
    let catalog = projector.read_model();
    assert_eq!(done.applied, 4, "the user events are not read");
    assert_eq!(
        catalog.cities,
        BTreeMap::from([("s1".into(), "Oslo".into()), ("s2".into(), "Rome".into())]),
        "only shops' `Created` events"
    );
    assert_eq!(
        catalog.items,
        BTreeMap::from([("potion".into(), 1), ("sword".into(), 2)]),
        "the v1 `ItemPut` was upcast"
    );
    assert_eq!(catalog.positions, [1, 3, 4, 6], "in global order");
    assert_eq!(store.load_checkpoint("Catalog").unwrap(), 6);

    // Nothing new: nothing applied. New events: only those.
    assert_eq!(projector.catch_up().unwrap().applied, 0);
    Repository::<Shop, _>::new(store.clone())
        .execute_infallible("s2", |_: &Shop| ItemAdded {
            item: "sword".into(),
            count: 1,
        })
        .unwrap();
    assert_eq!(projector.catch_up().unwrap().applied, 1);
    assert_eq!(projector.read_model().items["sword"], 3);

    // A new projector resumes from the checkpoint, so a fresh model sees only what follows.
    let mut resumed = Projector::new(store.clone(), Catalog::default(), store.clone());
    assert_eq!(resumed.catch_up().unwrap().applied, 0);

    // A rebuild replays everything, reporting progress up to the whole log.
    let mut reports = Vec::new();
    let rebuilt = resumed
        .rebuild(|p| reports.push((p.done, p.total)))
        .unwrap();
    assert_eq!(rebuilt.applied, 5);
    assert_eq!(resumed.read_model().items["sword"], 3);
    assert_eq!(reports.last(), Some(&(7, 7)), "{reports:?}");
    assert!(reports.windows(2).all(|w| w[0].0 <= w[1].0), "{reports:?}");
}

fn directory_case<S: EventStore + CheckpointStore + Clone>(store: S) {
    fill(&store);
    let refusing = Directory {
        refuse: Some("bob".into()),
        ..Directory::default()
    };
    let mut projector = Projector::new(store.clone(), refusing, store.clone()).with_batch_size(3);
    let error = projector.catch_up().unwrap_err();
    match &error {
        ProjectionError::Handler {
            read_model,
            event_type,
            global_position,
            stream,
            ..
        } => {
            assert_eq!(*read_model, "directory");
            assert_eq!(event_type, "Created");
            assert_eq!(*global_position, 5);
            assert_eq!(stream.id, "u2");
        }
        other => panic!("expected a handler error, got {other:?}"),
    }
    let message = error.to_string();
    for part in [
        "`directory`",
        "`Created`",
        "global position 5",
        "user name `bob`",
    ] {
        assert!(message.contains(part), "{part} in {message}");
    }
    assert_eq!(
        store.load_checkpoint("directory").unwrap(),
        4,
        "the events before the failure are committed"
    );
    assert_eq!(projector.read_model().users, ["ada"]);
    // Retrying fails at the same event: nothing is skipped.
    assert!(matches!(
        projector.catch_up(),
        Err(ProjectionError::Handler {
            global_position: 5,
            ..
        })
    ));
    // Fixed, it resumes there.
    projector.read_model_mut().refuse = None;
    let done = projector.catch_up().unwrap();
    assert_eq!(done.applied, 2);
    let directory = projector.read_model();
    assert_eq!(directory.users, ["ada", "bob"], "each user once");
    assert_eq!(directory.shops, ["Oslo", "Rome"], "each shop once");

    // Handlers see the envelope's metadata.
    store
        .append(
            StreamRef::new("User", "u9"),
            ExpectedVersion::NoStream,
            &[NewEvent::new(
                "Created",
                1,
                json!({ "name": "eve" }),
                Metadata::new().with_correlation_id("req-9"),
            )],
        )
        .unwrap();
    projector.catch_up().unwrap();
    assert_eq!(
        projector.read_model().correlations,
        [None, None, Some("req-9".to_owned())]
    );
}

#[test]
fn catalog_in_memory() {
    catalog_case(InMemoryStore::new());
}

#[test]
fn catalog_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    catalog_case(SqliteStore::open(dir.path().join("events.db")).unwrap());
}

#[test]
fn catalog_on_postgres() {
    let Some((store, _schema)) = postgres() else {
        return;
    };
    catalog_case(store);
}

#[test]
fn directory_on_postgres() {
    let Some((store, _schema)) = postgres() else {
        return;
    };
    directory_case(store);
}

#[test]
fn directory_in_memory() {
    directory_case(InMemoryStore::new());
}

#[test]
fn directory_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    directory_case(SqliteStore::open(dir.path().join("events.db")).unwrap());
}

#[test]
fn a_checkpoint_survives_reopening_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        fill(&store);
        let mut projector = Projector::new(store.clone(), Directory::default(), store.clone());
        projector.catch_up().unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.load_checkpoint("directory").unwrap(), 6);
}

#[test]
fn a_second_instance_is_locked_out_while_the_first_runs() {
    let store = InMemoryStore::new();
    fill(&store);
    let mut first =
        Projector::new(store.clone(), Directory::default(), store.clone()).with_owner("first");
    let stop = StopHandle::new();
    let runner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let applied = first.run(&stop, RunOptions::default());
            (applied, first.into_read_model())
        })
    };
    // Wait until the first instance holds the lease and has caught up.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.load_checkpoint("directory").unwrap() < 6 {
        assert!(Instant::now() < deadline, "the runner catches up");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut second =
        Projector::new(store.clone(), Directory::default(), store.clone()).with_owner("second");
    match second.catch_up() {
        Err(ProjectionError::Locked { owner, .. }) => assert_eq!(owner, "first"),
        other => panic!("expected Locked, got {other:?}"),
    }
    // New events reach the running instance.
    Repository::<User, _>::new(store.clone())
        .execute_infallible("u3", |_: &User| UserCreated { name: "cy".into() })
        .unwrap();
    while store.load_checkpoint("directory").unwrap() < 7 {
        assert!(Instant::now() < deadline, "the runner follows new events");
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.stop();
    let (applied, directory) = runner.join().unwrap();
    assert_eq!(applied.unwrap(), 5);
    assert_eq!(directory.users, ["ada", "bob", "cy"]);
    // Stopped, it released the lease.
    assert_eq!(second.catch_up().unwrap().applied, 0);
}

/// A read model whose state is shared with the test, to watch a running projector.
#[derive(Debug, Default)]
struct Watched {
    seen: Arc<Mutex<Vec<u64>>>,
}

#[read_model(from = Shop, reset = Self::clear)]
impl Watched {
    fn added(&mut self, _: &ItemAdded, record: &EventRecord<'_>) {
        self.seen.lock().unwrap().push(record.global_position);
    }
}

impl Watched {
    fn clear(&mut self) {
        self.seen.lock().unwrap().clear();
    }
}

#[test]
fn run_follows_new_events_within_the_bounded_delay_and_stops_on_request() {
    let store = SqliteStore::open_in_memory().unwrap();
    let watched = Watched::default();
    let seen = watched.seen.clone();
    let stop = StopHandle::new();
    let runner = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let options = RunOptions {
                min_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(50),
                ..RunOptions::default()
            };
            Projector::new(store.clone(), watched, store).run(&stop, options)
        })
    };
    let shops = Repository::<Shop, _>::new(store.clone());
    for n in 0..5u32 {
        // Let the runner go idle, so its pause has grown to the maximum.
        std::thread::sleep(Duration::from_millis(120));
        let appended = Instant::now();
        let outcome = shops
            .execute_infallible("s", |_: &Shop| ItemAdded {
                item: format!("i{n}"),
                count: 1,
            })
            .unwrap();
        let position = outcome.global_positions.start;
        while !seen.lock().unwrap().contains(&position) {
            assert!(
                appended.elapsed() < Duration::from_secs(2),
                "event {position} applied"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let delay = appended.elapsed();
        assert!(
            delay < Duration::from_millis(500),
            "applied after {delay:?}"
        );
    }
    let stopping = Instant::now();
    stop.stop();
    assert_eq!(runner.join().unwrap().unwrap(), 5);
    assert!(
        stopping.elapsed() < Duration::from_millis(500),
        "stops promptly"
    );
    assert_eq!(seen.lock().unwrap().len(), 5);
}

#[test]
fn a_waiting_instance_takes_over_when_the_first_stops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    // Two "processes": two stores on one file, each with its own projector.
    let (one, two) = (
        SqliteStore::open(&path).unwrap(),
        SqliteStore::open(&path).unwrap(),
    );
    fill(&one);
    let options = RunOptions {
        max_delay: Duration::from_millis(20),
        ..RunOptions::default()
    };
    let (stop_one, stop_two) = (StopHandle::new(), StopHandle::new());
    let first = {
        let (store, stop) = (one.clone(), stop_one.clone());
        std::thread::spawn(move || {
            let mut projector = Projector::new(store.clone(), Directory::default(), store);
            let applied = projector.run(&stop, options).unwrap();
            (applied, projector.into_read_model().users)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while one.load_checkpoint("directory").unwrap() < 6 {
        assert!(Instant::now() < deadline, "the first instance catches up");
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = {
        let (store, stop) = (two.clone(), stop_two.clone());
        std::thread::spawn(move || {
            // Resumes from the first one's checkpoint once it may.
            let mut projector = Projector::new(store.clone(), Directory::default(), store);
            let applied = projector.run(&stop, options).unwrap();
            (applied, projector.into_read_model().users)
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    Repository::<User, _>::new(two.clone())
        .execute_infallible("u3", |_: &User| UserCreated { name: "cy".into() })
        .unwrap();
    while one.load_checkpoint("directory").unwrap() < 7 {
        assert!(Instant::now() < deadline, "the first instance follows");
        std::thread::sleep(Duration::from_millis(5));
    }
    stop_one.stop();
    let (applied_one, users_one) = first.join().unwrap();
    assert_eq!((applied_one, users_one.len()), (5, 3), "{users_one:?}");
    Repository::<User, _>::new(two.clone())
        .execute_infallible("u4", |_: &User| UserCreated { name: "dee".into() })
        .unwrap();
    while two.load_checkpoint("directory").unwrap() < 8 {
        assert!(Instant::now() < deadline, "the second instance takes over");
        std::thread::sleep(Duration::from_millis(5));
    }
    stop_two.stop();
    let (applied_two, users_two) = second.join().unwrap();
    assert_eq!(
        users_two,
        ["dee"],
        "only what followed the first instance's checkpoint"
    );
    assert_eq!(applied_two, 1);
}
