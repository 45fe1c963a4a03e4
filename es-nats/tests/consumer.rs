//! The JetStream consumer against a real `nats-server -js`: events published from an
//! in-memory log reach read models exactly once, in per-stream order, across redeliveries,
//! consumer groups, handler failures and corrupt messages.

mod accounts;
mod support {
    pub mod server;
}

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use es_core::{
    Aggregate, AsyncCheckpointStore, Event, EventRecord, InMemoryStore, Lease, Repository,
    StoreError, applies, read_model,
};
use es_nats::PartitionCheckpoints;
use es_nats::wire::partition_of;
use es_nats::{
    ConsumeError, ConsumerOptions, JetStreamProjector, Publisher, PublisherOptions, StopHandle,
};
use es_sqlite::rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use support::server::{NatsServer, nats_server_or_skip};

// ---- the domain: accounts and wallets, each with an event stored as `Deposited` ----------

use accounts::{Account, Deposited, Opened, Withdrawn};

/// Stored under the same name as the account's deposit.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "Deposited")]
struct WalletDeposited {
    amount: u64,
}

#[derive(Debug, Default, Aggregate)]
struct Wallet {
    balance: u64,
}

#[applies]
impl Wallet {
    fn deposited(&mut self, e: &WalletDeposited) {
        self.balance += e.amount;
    }
}

// ---- read models --------------------------------------------------------------------------

/// One applied event: (stream id, stream version, global position).
type Entry = (String, u64, u64);

/// Every account event it is fed, in order; fails on a deposit of 13 while `picky`.
#[derive(Debug, Default)]
struct AccountLog {
    entries: Vec<Entry>,
    balances: BTreeMap<String, i64>,
    picky: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("deposits of 13 are refused")]
struct Unlucky;

#[read_model(name = "account-log", from = Account)]
impl AccountLog {
    fn opened(&mut self, _: &Opened, r: &EventRecord<'_>) {
        self.note(r, 0);
    }
    fn deposited(&mut self, e: &Deposited, r: &EventRecord<'_>) -> Result<(), Unlucky> {
        if self.picky && e.amount == 13 {
            return Err(Unlucky);
        }
        self.note(r, e.amount as i64);
        Ok(())
    }
    fn withdrawn(&mut self, e: &Withdrawn, r: &EventRecord<'_>) {
        self.note(r, -(e.amount as i64));
    }
}

impl AccountLog {
    fn note(&mut self, r: &EventRecord<'_>, amount: i64) {
        self.entries
            .push((r.stream.id.to_owned(), r.stream_version, r.global_position));
        *self.balances.entry(r.stream.id.to_owned()).or_default() += amount;
    }
}

/// Deposits of both aggregates, kept apart.
#[derive(Debug, Default)]
struct Deposits {
    accounts: u64,
    wallets: u64,
    count: u64,
}

#[read_model(name = "deposits")]
impl Deposits {
    #[from(Account)]
    fn account(&mut self, e: &Deposited) {
        self.accounts += e.amount;
        self.count += 1;
    }
    #[from(Wallet)]
    fn wallet(&mut self, e: &WalletDeposited) {
        self.wallets += e.amount;
        self.count += 1;
    }
}

// ---- helpers ------------------------------------------------------------------------------

struct World {
    store: InMemoryStore,
    jetstream: jetstream::Context,
    /// Dropped last (fields drop in order): kills the server.
    server: NatsServer,
}

async fn world() -> Option<World> {
    let server = nats_server_or_skip()?;
    let client = async_nats::connect(server.url()).await.expect("connect");
    Some(World {
        server,
        store: InMemoryStore::new(),
        jetstream: jetstream::new(client),
    })
}

impl World {
    /// Publishes everything appended so far.
    async fn publish(&self) {
        self.publisher(PublisherOptions::default())
            .catch_up()
            .await
            .expect("publish");
    }

    fn publisher(&self, options: PublisherOptions) -> Publisher<InMemoryStore, InMemoryStore> {
        Publisher::new(
            self.jetstream.clone(),
            self.store.clone(),
            self.store.clone(),
            options,
        )
        .expect("publisher options")
    }

    fn projector<R: es_core::ReadModel + Send>(
        &self,
        read_model: R,
        checkpoints: InMemoryStore,
        options: ConsumerOptions,
    ) -> JetStreamProjector<R, InMemoryStore> {
        JetStreamProjector::new(self.jetstream.clone(), read_model, checkpoints, options)
    }

    /// Appends, for each of `accounts` accounts, an opening, `deposits` deposits and a
    /// withdrawal, interleaved across the accounts; and a wallet deposit per account.
    /// Returns the account ids.
    fn history(&self, accounts: usize, deposits: u64, tag: &str) -> Vec<String> {
        let repo = Repository::<Account, _>::new(self.store.clone());
        let wallets = Repository::<Wallet, _>::new(self.store.clone());
        let ids: Vec<String> = (0..accounts).map(|i| format!("{tag}-{i}")).collect();
        for id in &ids {
            repo.execute_infallible(id, |_: &Account| Opened { owner: id.clone() })
                .expect("open");
        }
        for amount in 1..=deposits {
            for id in &ids {
                repo.execute_infallible(id, |_: &Account| Deposited { amount })
                    .expect("deposit");
            }
        }
        for id in &ids {
            repo.execute_infallible(id, |_: &Account| Withdrawn { amount: 1 })
                .expect("withdraw");
            wallets
                .execute_infallible(id, |_: &Wallet| WalletDeposited { amount: 1000 })
                .expect("wallet deposit");
        }
        ids
    }
}

/// Checks that `entries` hold each stream's versions 1..=n exactly once and in order, and
/// that within each partition the global positions increase. Returns the entry count.
fn assert_ordered_once(entries: &[Entry], partitions: u32) -> usize {
    let mut versions: BTreeMap<&str, u64> = BTreeMap::new();
    let mut positions: BTreeMap<u32, u64> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (stream, version, position) in entries {
        assert!(seen.insert(*position), "position {position} applied twice");
        let last = versions.entry(stream).or_default();
        assert_eq!(
            *version,
            *last + 1,
            "{stream}: version {version} after {last}"
        );
        *last = *version;
        let partition = partition_of("Account", stream, partitions);
        let last = positions.entry(partition).or_default();
        assert!(
            *position > *last,
            "partition {partition}: {position} after {last}"
        );
        *last = *position;
    }
    entries.len()
}

fn expected_balances(ids: &[String], deposits: u64) -> BTreeMap<String, i64> {
    let total = (deposits * (deposits + 1) / 2) as i64 - 1;
    ids.iter().map(|id| (id.clone(), total)).collect()
}

// ---- tests --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_handled_event_arrives_once_in_order() {
    let Some(world) = world().await else { return };
    let ids = world.history(6, 8, "acc");
    world.publish().await;

    let checkpoints = InMemoryStore::new();
    let mut projector = world.projector(
        AccountLog::default(),
        checkpoints.clone(),
        ConsumerOptions::new(),
    );
    assert_eq!(projector.partitions(), (0..16).collect::<Vec<_>>());
    assert_eq!(projector.lag().await.expect("lag").total(), 60);
    let done = projector.catch_up().await.expect("catch up");
    // 6 accounts x (open + 8 deposits + withdrawal); the wallets' `Deposited` events are
    // not delivered at all: the consumers filter on the one aggregate the model handles.
    assert_eq!(done.applied, 6 * 10);
    assert_eq!(done.read, 6 * 10);
    assert_eq!(done.duplicates, 0);
    let log = projector.read_model();
    assert_eq!(assert_ordered_once(&log.entries, 16), 60);
    assert_eq!(log.balances, expected_balances(&ids, 8));

    let stream = world
        .jetstream
        .get_stream("ES_EVENTS")
        .await
        .expect("stream");
    let info = stream
        .consumer_info("account-log-p3")
        .await
        .expect("consumer");
    assert_eq!(info.config.filter_subject, "es.3.Account.>");

    // Nothing left: a second catch-up reads nothing, and the lag is zero.
    assert_eq!(projector.catch_up().await.expect("again").read, 0);
    assert_eq!(projector.lag().await.expect("lag").total(), 0);

    // The checkpoints are per partition, at the partition's last event.
    for (partition, position) in projector.positions().await.expect("positions") {
        let last = log_last_in(&projector.read_model().entries, partition);
        assert_eq!(position, last, "partition {partition}");
        let key = format!("account-log@ES_EVENTS/account-log#p{partition}/16");
        assert_eq!(checkpoints.load_checkpoint(&key).await.expect("load"), last);
    }

    // New events are picked up by the next catch-up.
    world.history(2, 2, "late");
    world.publish().await;
    let done = projector.catch_up().await.expect("late events");
    assert_eq!(done.applied, 2 * 4);
    assert_eq!(assert_ordered_once(&projector.read_model().entries, 16), 68);

    // A rebuild resets the read model, its checkpoints and its consumers, and reads all
    // again: the same state.
    let before = projector.read_model().balances.clone();
    let done = projector.rebuild().await.expect("rebuild");
    assert_eq!((done.applied, done.duplicates), (68, 0));
    assert_eq!(assert_ordered_once(&projector.read_model().entries, 16), 68);
    assert_eq!(projector.read_model().balances, before);
}

fn log_last_in(entries: &[Entry], partition: u32) -> u64 {
    entries
        .iter()
        .filter(|(stream, _, _)| partition_of("Account", stream, 16) == partition)
        .map(|(_, _, position)| *position)
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_the_same_name_in_two_aggregates_are_not_confused() {
    let Some(world) = world().await else { return };
    world.history(3, 4, "acc");
    world.publish().await;

    let mut projector = world.projector(
        Deposits::default(),
        InMemoryStore::new(),
        ConsumerOptions::new(),
    );
    let done = projector.catch_up().await.expect("catch up");
    let deposits = projector.read_model();
    assert_eq!(deposits.accounts, 3 * (1 + 2 + 3 + 4));
    assert_eq!(deposits.wallets, 3 * 1000);
    assert_eq!(deposits.count, 3 * 4 + 3);
    // Two aggregate types: the consumers take whole partitions, and the openings and
    // withdrawals are read but not handled.
    assert_eq!(done.applied, 15);
    assert_eq!(done.read, 3 * 6 + 3);
    let stream = world
        .jetstream
        .get_stream("ES_EVENTS")
        .await
        .expect("stream");
    let info = stream.consumer_info("deposits-p0").await.expect("consumer");
    assert_eq!(info.config.filter_subject, "es.0.>");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_messages_are_not_applied_twice() {
    let Some(world) = world().await else { return };
    let ids = world.history(4, 5, "acc");
    world.publish().await;
    let checkpoints = InMemoryStore::new();

    // 1. Consumers deleted after everything was applied: all is delivered again, and skipped.
    let mut projector = world.projector(
        AccountLog::default(),
        checkpoints.clone(),
        ConsumerOptions::new(),
    );
    assert_eq!(projector.catch_up().await.expect("first").applied, 4 * 7);
    let names = projector.consumer_names();
    let log = projector.into_read_model();
    let stream = world
        .jetstream
        .get_stream("ES_EVENTS")
        .await
        .expect("stream");
    for name in &names {
        stream.delete_consumer(name).await.expect("delete consumer");
    }
    let mut projector = world.projector(log, checkpoints.clone(), ConsumerOptions::new());
    let done = projector.catch_up().await.expect("after the reset");
    assert_eq!((done.applied, done.duplicates), (0, 4 * 7));
    assert_eq!(assert_ordered_once(&projector.read_model().entries, 16), 28);
    let log = projector.into_read_model();

    // 2. A crashed instance received messages and never acknowledged them: the next
    //    session still applies every event once, in order (none is passed over).
    let more = world.history(4, 3, "more");
    world.publish().await;
    for name in &names {
        let consumer: jetstream::consumer::PullConsumer =
            stream.get_consumer(name).await.expect("consumer");
        let batch = consumer
            .fetch()
            .max_messages(2)
            .messages()
            .await
            .expect("fetch");
        use futures_util::StreamExt;
        let taken: Vec<_> = batch.collect().await;
        drop(taken); // never acknowledged
    }
    let mut projector = world.projector(log, checkpoints.clone(), ConsumerOptions::new());
    let done = projector.catch_up().await.expect("after the crash");
    assert_eq!(done.applied, 4 * 5);
    let log = projector.read_model();
    assert_eq!(assert_ordered_once(&log.entries, 16), 28 + 20);
    let mut expected = expected_balances(&ids, 5);
    expected.extend(expected_balances(&more, 3));
    assert_eq!(log.balances, expected);
    let log = projector.into_read_model();

    // 3. The checkpoint was committed but the instance died before acknowledging: the
    //    redelivered messages are skipped by their checkpoint.
    world.history(2, 2, "last");
    world.publish().await;
    let crashing = CrashAfterCommit {
        inner: checkpoints.clone(),
    };
    let mut projector = JetStreamProjector::new(
        world.jetstream.clone(),
        log,
        crashing,
        ConsumerOptions::new(),
    );
    let error = projector
        .catch_up()
        .await
        .expect_err("the commit 'crashes'");
    assert!(matches!(error, ConsumeError::Checkpoint { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("nothing of this batch was acknowledged"),
        "{error}"
    );
    // Restarted with the state as committed (the events of the committed batch are in).
    let log = projector.into_read_model();
    let applied_before = log.entries.len();
    let mut projector = world.projector(log, checkpoints.clone(), ConsumerOptions::new());
    let done = projector.catch_up().await.expect("after the restart");
    assert!(done.duplicates >= 1, "{done:?}");
    let log = projector.read_model();
    assert_eq!(assert_ordered_once(&log.entries, 16), 48 + 2 * 4);
    assert_eq!(log.entries.len() - applied_before, done.applied as usize);
}

/// Saves the checkpoints, then reports a failure: as if the process died between the
/// commit and the acknowledgements.
struct CrashAfterCommit {
    inner: InMemoryStore,
}

impl AsyncCheckpointStore for CrashAfterCommit {
    async fn load_checkpoint(&self, read_model: &str) -> Result<u64, StoreError> {
        self.inner.load_checkpoint(read_model).await
    }
    async fn save_checkpoint(&self, read_model: &str, position: u64) -> Result<(), StoreError> {
        self.inner.save_checkpoint(read_model, position).await?;
        Err(StoreError::backend("the process died after the commit"))
    }
    async fn delete_checkpoint(&self, read_model: &str) -> Result<(), StoreError> {
        self.inner.delete_checkpoint(read_model).await
    }
    async fn acquire_lease(
        &self,
        read_model: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        AsyncCheckpointStore::acquire_lease(&self.inner, read_model, owner, ttl).await
    }
    async fn release_lease(&self, read_model: &str, owner: &str) -> Result<(), StoreError> {
        AsyncCheckpointStore::release_lease(&self.inner, read_model, owner).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_of_a_group_share_the_partitions() {
    let Some(world) = world().await else { return };
    let ids = world.history(12, 4, "acc");
    world.publish().await;

    let member = |index| {
        world.projector(
            AccountLog::default(),
            InMemoryStore::new(),
            ConsumerOptions::new().group("shared").member(index, 2),
        )
    };
    let (mut first, mut second) = (member(0), member(1));
    assert_eq!(first.partitions(), (0..16).step_by(2).collect::<Vec<_>>());
    assert_eq!(second.partitions(), (1..16).step_by(2).collect::<Vec<_>>());
    let (a, b) = tokio::join!(first.catch_up(), second.catch_up());
    let (a, b) = (a.expect("member 0"), b.expect("member 1"));
    assert_eq!(a.applied + b.applied, 12 * 6);

    let mut all = Vec::new();
    for (index, member) in [&first, &second].into_iter().enumerate() {
        let entries = &member.read_model().entries;
        for (stream, _, _) in entries {
            assert_eq!(
                partition_of("Account", stream, 16) % 2,
                index as u32,
                "{stream}"
            );
        }
        assert_ordered_once(entries, 16);
        all.extend(entries.iter().cloned());
    }
    all.sort_by_key(|(_, _, position)| *position);
    assert_eq!(assert_ordered_once(&all, 16), 72);
    let mut balances = first.read_model().balances.clone();
    balances.extend(second.read_model().balances.clone());
    assert_eq!(balances, expected_balances(&ids, 4));
    assert!(
        a.applied > 0 && b.applied > 0,
        "both members took work: {a:?} {b:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_error_stops_at_the_event_and_resuming_continues_there() {
    let Some(world) = world().await else { return };
    // One partition, so that the order of all events is the log's.
    let options = ConsumerOptions::new().partitions(1).batch_size(4);
    let mut publisher = world.publisher(PublisherOptions {
        partitions: 1,
        ..PublisherOptions::default()
    });
    let repo = Repository::<Account, _>::new(world.store.clone());
    for amount in [5, 7, 13, 2] {
        repo.execute_infallible("acc-1", |_: &Account| Deposited { amount })
            .expect("deposit");
    }
    publisher.catch_up().await.expect("publish");

    let log = AccountLog {
        picky: true,
        ..AccountLog::default()
    };
    let checkpoints = InMemoryStore::new();
    let mut projector = world.projector(log, checkpoints.clone(), options.clone());
    let error = projector.catch_up().await.expect_err("13 is refused");
    let text = error.to_string();
    assert!(
        matches!(
            error,
            ConsumeError::Handler {
                global_position: 3,
                ..
            }
        ),
        "{text}"
    );
    for part in [
        "account-log",
        "`Deposited`",
        "global position 3",
        "acc-1",
        "deposits of 13 are refused",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
    // The events before it are applied and committed; it is not acknowledged.
    assert_eq!(projector.read_model().balances["acc-1"], 12);
    assert_eq!(
        checkpoints
            .load_checkpoint("account-log@ES_EVENTS/account-log#p0/1")
            .await
            .expect("load"),
        2
    );
    assert_eq!(projector.lag().await.expect("lag").total(), 2);
    // Failing again at the same event.
    assert!(projector.catch_up().await.is_err());

    // Fixed: it resumes at the event.
    projector.read_model_mut().picky = false;
    let done = projector.catch_up().await.expect("resumed");
    assert_eq!(done.applied, 2);
    assert_eq!(projector.read_model().balances["acc-1"], 27);
    assert_eq!(assert_ordered_once(&projector.read_model().entries, 1), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_is_not_an_event_stops_the_consumer_and_names_it() {
    let Some(world) = world().await else { return };
    world.history(1, 1, "acc");
    world.publish().await;
    let partition = partition_of("Account", "intruder", 16);
    let subject = format!("es.{partition}.Account.Deposited");
    let ack = world
        .jetstream
        .publish(subject.clone(), "{\"amount\": 1}".into())
        .await
        .expect("publish")
        .await
        .expect("stored");

    let mut projector = world.projector(
        AccountLog::default(),
        InMemoryStore::new(),
        ConsumerOptions::new(),
    );
    let error = projector.catch_up().await.expect_err("corrupt");
    let text = error.to_string();
    assert!(matches!(error, ConsumeError::Corrupt { .. }), "{text}");
    assert!(text.contains(&subject), "{text}");
    assert!(
        text.contains(&format!("message {}", ack.sequence)),
        "{text}"
    );
    assert!(text.contains("no headers"), "{text}");
    assert_eq!(
        text.matches(&subject).count(),
        1,
        "the subject once: {text}"
    );
    assert!(!text.contains("skip it"), "{text}");
    // Not acknowledged: the next run stops at it again.
    let again = projector
        .catch_up()
        .await
        .expect_err("still corrupt")
        .to_string();
    assert!(again.contains(&subject), "{again}");
}

#[test]
fn options_that_cannot_work_are_refused_by_the_first_call() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // No server is needed: the options are refused before anything is sent. A client
        // that connects lazily to nowhere stands in.
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("nats://127.0.0.1:1")
            .await
            .expect("lazy client");
        let jetstream = jetstream::new(client);
        for (options, part) in [
            (ConsumerOptions::new().member(2, 2), "`member` is 2"),
            (ConsumerOptions::new().partitions(0), "`partitions` is 0"),
            (
                ConsumerOptions::new().partitions(2).member(0, 3),
                "3 members but only 2",
            ),
            (ConsumerOptions::new().group("a.b"), "group `a.b`"),
            (ConsumerOptions::new().prefix("es.*"), "prefix"),
        ] {
            let mut projector = JetStreamProjector::new(
                jetstream.clone(),
                AccountLog::default(),
                InMemoryStore::new(),
                options,
            );
            let error = projector.catch_up().await.expect_err(part).to_string();
            assert!(
                error.contains(part) && error.contains("account-log"),
                "{error}"
            );
        }
    });
}

/// The latencies the run test measured, appended by the read model.
type Seen = Arc<Mutex<Vec<(u64, Instant)>>>;

#[derive(Debug, Default)]
struct Watch {
    seen: Seen,
}

#[read_model(name = "watch", from = Account)]
impl Watch {
    fn deposited(&mut self, _: &Deposited, r: &EventRecord<'_>) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.push((r.global_position, Instant::now()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_applies_new_events_within_milliseconds() {
    let Some(world) = world().await else { return };
    let seen = Seen::default();
    let mut projector = world.projector(
        Watch { seen: seen.clone() },
        InMemoryStore::new(),
        ConsumerOptions::new(),
    );
    let mut publisher = world.publisher(PublisherOptions::default());
    let stop = StopHandle::new();
    let consumer = tokio::spawn({
        let stop = stop.clone();
        async move { Box::pin(projector.run(&stop)).await }
    });
    let publisher = tokio::spawn({
        let stop = stop.clone();
        async move { Box::pin(publisher.run(&stop)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let repo = Repository::<Account, _>::new(world.store.clone());
    let mut appended = Vec::new();
    for i in 0..40u64 {
        let id = format!("acc-{}", i % 7);
        let done = repo
            .execute_infallible(&id, |_: &Account| Deposited { amount: i })
            .expect("deposit");
        appended.push((done.global_positions.start, Instant::now()));
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().map_or(0, |s| s.len()) < appended.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.stop();
    let done = consumer.await.expect("consumer task").expect("run");
    publisher
        .await
        .expect("publisher task")
        .expect("publisher run");
    assert_eq!(done.applied, 40);

    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let at: BTreeMap<u64, Instant> = seen.into_iter().collect();
    let mut delays: Vec<Duration> = appended
        .iter()
        .map(|(position, appended)| at[position].duration_since(*appended))
        .collect();
    delays.sort();
    let median = delays[delays.len() / 2];
    println!(
        "append -> read model update: median {median:?}, max {:?}",
        delays[delays.len() - 1]
    );
    // The target: a median below 50 ms from the append to the read model's update (the
    // publisher's polling included).
    assert!(median < Duration::from_millis(50), "median {median:?}");
}

// ---- exactly once: the read model's rows and the checkpoints in one SQLite transaction ----

/// Balance changes gathered from the events of one batch, written by [`SqliteBalances`].
#[derive(Debug, Default)]
struct PendingBalances {
    changes: Vec<(String, i64)>,
}

#[read_model(name = "sqlite-balances", from = Account)]
impl PendingBalances {
    fn deposited(&mut self, e: &Deposited, r: &EventRecord<'_>) {
        self.changes.push((r.stream.id.to_owned(), e.amount as i64));
    }
    fn withdrawn(&mut self, e: &Withdrawn, r: &EventRecord<'_>) {
        self.changes
            .push((r.stream.id.to_owned(), -(e.amount as i64)));
    }
}

/// The read model's table and its partition checkpoints, in one file of the read-model
/// machine: each commit writes both in one transaction.
struct SqliteBalances {
    conn: Connection,
    /// Commits, then reports a failure: as if the process died before acknowledging.
    die_after_commit: bool,
    /// Fails before committing: the transaction rolls back.
    fail_commit: bool,
}

impl SqliteBalances {
    fn open(path: &std::path::Path) -> Self {
        let conn = Connection::open(path).expect("open");
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS balances (account TEXT PRIMARY KEY, balance INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS checkpoints (key TEXT PRIMARY KEY, position INTEGER NOT NULL);",
        )
        .expect("schema");
        Self {
            conn,
            die_after_commit: false,
            fail_commit: false,
        }
    }

    fn balances(&self) -> BTreeMap<String, i64> {
        let mut stmt = self
            .conn
            .prepare("SELECT account, balance FROM balances")
            .expect("prepare");
        let rows = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("query");
        rows.map(|row| row.expect("row")).collect()
    }
}

fn sql(error: es_sqlite::rusqlite::Error) -> StoreError {
    StoreError::backend(error.to_string())
}

impl PartitionCheckpoints<PendingBalances> for SqliteBalances {
    async fn load(
        &mut self,
        read_model: &mut PendingBalances,
        key: &str,
    ) -> Result<u64, StoreError> {
        read_model.changes.clear();
        let position: Option<i64> = self
            .conn
            .query_row(
                "SELECT position FROM checkpoints WHERE key = ?1",
                [key],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql)?;
        Ok(position.map_or(0, |p| p as u64))
    }

    async fn commit(
        &mut self,
        read_model: &mut PendingBalances,
        positions: &[(&str, u64)],
    ) -> Result<(), StoreError> {
        if self.fail_commit {
            return Err(StoreError::backend("the disk is full"));
        }
        let tx = self.conn.transaction().map_err(sql)?;
        for (account, amount) in read_model.changes.drain(..) {
            tx.execute(
                "INSERT INTO balances (account, balance) VALUES (?1, ?2) \
                 ON CONFLICT (account) DO UPDATE SET balance = balance + excluded.balance",
                params![account, amount],
            )
            .map_err(sql)?;
        }
        for (key, position) in positions {
            tx.execute(
                "INSERT INTO checkpoints (key, position) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET position = excluded.position",
                params![key, *position as i64],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        if self.die_after_commit {
            return Err(StoreError::backend("the process died after the commit"));
        }
        Ok(())
    }

    fn after_failed_commit(&mut self, read_model: &mut PendingBalances) -> bool {
        // The transaction rolled back: what was gathered is applied again.
        read_model.changes.clear();
        true
    }

    async fn reset(
        &mut self,
        read_model: &mut PendingBalances,
        keys: &[&str],
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(sql)?;
        tx.execute("DELETE FROM balances", []).map_err(sql)?;
        for key in keys {
            tx.execute("DELETE FROM checkpoints WHERE key = ?1", [key])
                .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        read_model.changes.clear();
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exactly_once_read_model_survives_failed_commits_and_a_crash_before_the_acks() {
    let Some(world) = world().await else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("remote.db");
    let ids = world.history(5, 4, "acc");
    world.publish().await;
    let expected: BTreeMap<String, i64> = ids.iter().map(|id| (id.clone(), 9)).collect();
    let projector = |checkpoints| {
        JetStreamProjector::new(
            world.jetstream.clone(),
            PendingBalances::default(),
            checkpoints,
            ConsumerOptions::new().batch_size(3),
        )
    };

    // A commit that rolls back: nothing is acknowledged, and the same instance applies the
    // batch again once the store works.
    let mut failing = SqliteBalances::open(&path);
    failing.fail_commit = true;
    let mut first = projector(failing);
    let error = first.catch_up().await.expect_err("the disk is full");
    assert!(error.to_string().contains("the disk is full"), "{error}");
    assert!(first.checkpoints().balances().is_empty());
    first.checkpoints_mut().fail_commit = false;
    first.catch_up().await.expect("the disk has room again");
    assert_eq!(first.checkpoints().balances(), expected);
    drop(first);

    // New events; committed, then the process died before the acknowledgements.
    let more = world.history(5, 2, "more");
    world.publish().await;
    let mut expected = expected;
    expected.extend(more.iter().map(|id| (id.clone(), 2)));
    let mut dying = SqliteBalances::open(&path);
    dying.die_after_commit = true;
    let mut second = projector(dying);
    assert!(second.catch_up().await.is_err());
    assert!(
        second.checkpoints().balances().len() > 5,
        "a batch was committed"
    );
    drop(second);

    // Restarted: the redelivered messages of the committed batch are skipped.
    let mut third = projector(SqliteBalances::open(&path));
    let done = third.catch_up().await.expect("after the crash");
    assert!(done.duplicates >= 1, "{done:?}");
    assert_eq!(third.checkpoints().balances(), expected);
    assert_eq!(third.catch_up().await.expect("nothing left").read, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_consumer_rides_out_a_server_outage() {
    let Some(mut world) = world().await else {
        return;
    };
    let ids = world.history(4, 3, "acc");
    world.publish().await;
    let stop = StopHandle::new();
    let mut projector = world.projector(
        AccountLog::default(),
        InMemoryStore::new(),
        ConsumerOptions::new(),
    );
    let consumer = tokio::spawn({
        let stop = stop.clone();
        async move {
            let done = Box::pin(projector.run(&stop)).await;
            (projector, done)
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Down for a few seconds: the run waits for it.
    world.server.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    world.server.start_again();
    let more = world.history(4, 2, "more");
    // The client reconnects by itself; publish once it has.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let result = world
            .publisher(PublisherOptions::default())
            .catch_up()
            .await;
        match result {
            Ok(_) => break,
            Err(error) if Instant::now() < deadline => {
                eprintln!("publishing after the restart: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("publish after the restart: {error}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stream = world.jetstream.get_stream("ES_EVENTS").await;
        let pending = match stream {
            Ok(stream) => {
                let mut total = 0;
                for k in 0..16 {
                    match stream.consumer_info(format!("account-log-p{k}")).await {
                        Ok(info) => total += info.num_pending + info.num_ack_pending as u64,
                        Err(_) => total += 1,
                    }
                }
                total
            }
            Err(_) => 1,
        };
        if pending == 0 || Instant::now() > deadline {
            break;
        }
    }
    stop.stop();
    let (projector, done) = consumer.await.expect("consumer task");
    done.expect("the run rides out the restart");
    let log = projector.read_model();
    assert_eq!(assert_ordered_once(&log.entries, 16), 4 * 5 + 4 * 4);
    let mut expected = expected_balances(&ids, 3);
    expected.extend(expected_balances(&more, 2));
    assert_eq!(log.balances, expected);
}

/// Sleeps in its first handler call, past the consumers' ack wait.
#[derive(Debug, Default)]
struct Slow {
    log: AccountLog,
    slept: bool,
}

#[read_model(name = "slow", from = Account)]
impl Slow {
    fn opened(&mut self, _: &Opened, r: &EventRecord<'_>) {
        self.log.note(r, 0);
    }
    fn withdrawn(&mut self, e: &Withdrawn, r: &EventRecord<'_>) {
        self.log.note(r, -(e.amount as i64));
    }
    fn deposited(&mut self, e: &Deposited, r: &EventRecord<'_>) {
        if !self.slept {
            self.slept = true;
            std::thread::sleep(Duration::from_millis(2500));
        }
        self.log.note(r, e.amount as i64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_redelivered_after_the_ack_wait_are_not_applied_twice() {
    let Some(world) = world().await else { return };
    let ids = world.history(3, 6, "acc");
    let options = ConsumerOptions::new()
        .partitions(1)
        .batch_size(2)
        .ack_wait(Duration::from_secs(1));
    world
        .publisher(PublisherOptions {
            partitions: 1,
            name: "one".into(),
            stream_name: "ONE".into(),
            prefix: "one".into(),
            ..PublisherOptions::default()
        })
        .catch_up()
        .await
        .expect("publish on one partition");
    let options = options.stream("ONE").prefix("one");
    let stop = StopHandle::new();
    let mut projector = world.projector(Slow::default(), InMemoryStore::new(), options);
    let consumer = tokio::spawn({
        let stop = stop.clone();
        async move {
            let done = Box::pin(projector.run(&stop)).await;
            (projector, done)
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let stream = world.jetstream.get_stream("ONE").await.expect("stream");
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let info = stream.consumer_info("slow-p0").await;
        let idle = info.is_ok_and(|i| i.num_pending == 0 && i.num_ack_pending == 0);
        if idle || Instant::now() > deadline {
            break;
        }
    }
    stop.stop();
    let (projector, done) = consumer.await.expect("consumer task");
    let done = done.expect("run");
    let info = stream.consumer_info("slow-p0").await.expect("consumer");
    println!(
        "{done:?}, redelivered by the server: {}",
        info.num_redelivered
    );
    let log = &projector.read_model().log;
    assert_eq!(assert_ordered_once(&log.entries, 1), 3 * 8);
    assert_eq!(log.balances, expected_balances(&ids, 6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_taken_by_an_intruder_on_the_same_consumer_are_still_applied_in_order() {
    let Some(world) = world().await else { return };
    world.history(1, 1, "acc");
    world.publish().await;
    let options = ConsumerOptions::new().batch_size(4);
    let stop = StopHandle::new();
    let mut projector = world.projector(AccountLog::default(), InMemoryStore::new(), options);
    let consumer = tokio::spawn({
        let stop = stop.clone();
        async move {
            let done = Box::pin(projector.run(&stop)).await;
            (projector, done)
        }
    });
    let mut publisher = world.publisher(PublisherOptions::default());
    let publishing = tokio::spawn({
        let stop = stop.clone();
        async move { Box::pin(publisher.run(&stop)).await }
    });

    // A second instance wrongly reads the same durable consumers, and never acknowledges:
    // the run sees the gaps it leaves, starts those partitions again, and misses nothing.
    let repo = Repository::<Account, _>::new(world.store.clone());
    let stream = world
        .jetstream
        .get_stream("ES_EVENTS")
        .await
        .expect("stream");
    let ids: Vec<String> = (0..5).map(|i| format!("busy-{i}")).collect();
    let mut taken = 0;
    for round in 1..=12u64 {
        for id in &ids {
            repo.execute_infallible(id, |_: &Account| Deposited { amount: round })
                .expect("deposit");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        for id in &ids {
            let name = format!("account-log-p{}", partition_of("Account", id, 16));
            if let Ok(intruder) = stream
                .get_consumer::<jetstream::consumer::pull::Config>(&name)
                .await
            {
                // Bounded: a fetch whose consumer the run re-creates meanwhile gets no
                // answer, and would wait for ever.
                let fetch = async {
                    match intruder.fetch().max_messages(1).messages().await {
                        Ok(batch) => {
                            use futures_util::StreamExt;
                            batch
                                .filter(|m| std::future::ready(m.is_ok()))
                                .count()
                                .await
                        }
                        Err(_) => 0,
                    }
                };
                taken += tokio::time::timeout(Duration::from_secs(2), fetch)
                    .await
                    .unwrap_or(0);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut pending = 0;
        for k in 0..16 {
            if let Ok(info) = stream.consumer_info(format!("account-log-p{k}")).await {
                pending += info.num_pending + info.num_ack_pending as u64;
            }
        }
        if pending == 0 || Instant::now() > deadline {
            break;
        }
    }
    stop.stop();
    let (projector, done) = tokio::time::timeout(Duration::from_secs(20), consumer)
        .await
        .expect("the consumer's run stops when asked")
        .expect("consumer task");
    done.expect("run");
    tokio::time::timeout(Duration::from_secs(20), publishing)
        .await
        .expect("the publisher's run stops when asked")
        .expect("publisher task")
        .expect("publisher run");
    println!("the intruder took {taken} messages");
    let log = projector.read_model();
    assert_eq!(assert_ordered_once(&log.entries, 16), 3 + 5 * 12);
    for id in &ids {
        assert_eq!(log.balances[id], (1..=12).sum::<i64>(), "{id}");
    }
}

// ---- review fixes: deleted consumers, rebuild failures, groups, redeliveries, options ----

/// Every account event it is fed, in order, kept where the test can see it while the
/// projector runs elsewhere.
#[derive(Debug, Default)]
struct SharedLog {
    entries: Arc<Mutex<Vec<Entry>>>,
}

#[read_model(name = "shared-log", from = Account)]
impl SharedLog {
    fn opened(&mut self, _: &Opened, r: &EventRecord<'_>) {
        self.note(r);
    }
    fn deposited(&mut self, _: &Deposited, r: &EventRecord<'_>) {
        self.note(r);
    }
    fn withdrawn(&mut self, _: &Withdrawn, r: &EventRecord<'_>) {
        self.note(r);
    }
}

impl SharedLog {
    fn note(&mut self, r: &EventRecord<'_>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.push((r.stream.id.to_owned(), r.stream_version, r.global_position));
    }
}

type RunResult<R, C> = (
    JetStreamProjector<R, C>,
    Result<es_nats::Consumed, ConsumeError>,
);

/// Runs `projector.run(&stop)` on a runtime of its own thread: a run that spins without
/// ever yielding then fails the test by a timeout instead of hanging the test's runtime.
fn run_on_own_thread<R, C>(
    mut projector: JetStreamProjector<R, C>,
    stop: StopHandle,
) -> tokio::sync::oneshot::Receiver<RunResult<R, C>>
where
    R: es_core::ReadModel + Send + 'static,
    C: PartitionCheckpoints<R> + 'static,
{
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let done = runtime.block_on(async { Box::pin(projector.run(&stop)).await });
        let _ = sender.send((projector, done));
    });
    receiver
}

/// Waits until `entries` holds `count` entries (or 20 s passed); returns how many it holds.
async fn wait_for(entries: &Arc<Mutex<Vec<Entry>>>, count: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let len = entries.lock().map_or(0, |e| e.len());
        if len >= count || Instant::now() > deadline {
            return len;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_recreates_a_consumer_deleted_under_it_and_still_stops_promptly() {
    let Some(world) = world().await else { return };
    world.history(3, 2, "acc");
    world.publish().await;
    let entries = Arc::new(Mutex::new(Vec::new()));
    let projector = world.projector(
        SharedLog {
            entries: entries.clone(),
        },
        InMemoryStore::new(),
        ConsumerOptions::new(),
    );
    let stop = StopHandle::new();
    let finished = run_on_own_thread(projector, stop.clone());
    assert_eq!(wait_for(&entries, 3 * 4).await, 3 * 4, "the first events");

    // The consumer of acc-0's partition is deleted under the run: its message stream ends.
    let stream = world
        .jetstream
        .get_stream("ES_EVENTS")
        .await
        .expect("stream");
    let name = format!("shared-log-p{}", partition_of("Account", "acc-0", 16));
    stream
        .delete_consumer(&name)
        .await
        .expect("delete consumer");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // New events, on that partition among others, are still applied: the run recreated it.
    let repo = Repository::<Account, _>::new(world.store.clone());
    for amount in 1..=3 {
        for id in ["acc-0", "acc-1", "acc-2"] {
            repo.execute_infallible(id, |_: &Account| Deposited { amount })
                .expect("deposit");
        }
    }
    world.publish().await;
    let applied = wait_for(&entries, 3 * 4 + 9).await;
    assert_eq!(
        applied,
        3 * 4 + 9,
        "the run applies events after the delete"
    );
    stream
        .consumer_info(&name)
        .await
        .expect("the run recreated the deleted consumer");

    // And it stops promptly.
    stop.stop();
    let (_, done) = tokio::time::timeout(Duration::from_secs(5), finished)
        .await
        .expect("run stops within 5 s of `stop`")
        .expect("run thread");
    let done = done.expect("run");
    assert_eq!(done.applied, 3 * 4 + 9);
    let entries = entries.lock().map(|e| e.clone()).unwrap_or_default();
    assert_eq!(assert_ordered_once(&entries, 16), 3 * 4 + 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_that_cannot_delete_its_consumers_resets_nothing() {
    let Some(mut world) = world().await else {
        return;
    };
    world.history(4, 2, "acc");
    world.publish().await;
    // Requests time out after 1 s while the server is down.
    let client = async_nats::connect(world.server.url())
        .await
        .expect("connect");
    let jetstream = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(1))
        .build(client);
    let checkpoints = InMemoryStore::new();
    let mut projector = JetStreamProjector::new(
        jetstream,
        AccountLog::default(),
        checkpoints.clone(),
        ConsumerOptions::new(),
    );
    assert_eq!(projector.catch_up().await.expect("catch up").applied, 4 * 4);
    let keys = projector.checkpoint_keys();
    let mut before = Vec::new();
    for key in &keys {
        before.push(checkpoints.load_checkpoint(key).await.expect("load"));
    }
    assert!(before.iter().any(|&p| p > 0));

    world.server.stop();
    let error = projector.rebuild().await.expect_err("NATS is down");
    let text = error.to_string();
    // Neither the checkpoints nor the read model were reset: the consumers still hold
    // their acknowledgement floors, which a reset would have contradicted.
    let mut after = Vec::new();
    for key in &keys {
        after.push(checkpoints.load_checkpoint(key).await.expect("load"));
    }
    assert_eq!(
        after, before,
        "checkpoints after the failed rebuild: {text}"
    );
    assert_eq!(projector.read_model().entries.len(), 4 * 4);
    assert!(matches!(error, ConsumeError::Nats { .. }), "{text}");
    assert!(text.contains("deleting durable consumer"), "{text}");
    assert!(text.contains("nothing was reset"), "{text}");

    // Once the server is back, the rebuild reads everything again.
    world.server.start_again();
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        match projector.rebuild().await {
            Ok(done) => break done,
            Err(error) if Instant::now() < deadline => {
                eprintln!("rebuild after the restart: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("rebuild after the restart: {error}"),
        }
    };
    assert_eq!(done.applied, 4 * 4);
    assert_eq!(assert_ordered_once(&projector.read_model().entries, 16), 16);

    // A consumer that is already gone does not stop a rebuild.
    let client = async_nats::connect(world.server.url())
        .await
        .expect("connect again");
    let stream = jetstream::new(client)
        .get_stream("ES_EVENTS")
        .await
        .expect("stream");
    stream
        .delete_consumer(&projector.consumer_names()[0])
        .await
        .expect("delete consumer");
    let done = projector
        .rebuild()
        .await
        .expect("rebuild without a consumer");
    assert_eq!(done.applied, 4 * 4);
    assert_eq!(assert_ordered_once(&projector.read_model().entries, 16), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_of_one_read_model_sharing_a_checkpoint_store_each_see_every_event() {
    let Some(world) = world().await else { return };
    let ids = world.history(6, 3, "acc");
    world.publish().await;
    let shared = InMemoryStore::new();
    let mut blue = world.projector(
        AccountLog::default(),
        shared.clone(),
        ConsumerOptions::new(),
    );
    let mut green = world.projector(
        AccountLog::default(),
        shared.clone(),
        ConsumerOptions::new().group("v2"),
    );
    assert_eq!(blue.catch_up().await.expect("blue").applied, 6 * 5);
    assert_eq!(green.catch_up().await.expect("green").applied, 6 * 5);
    let more = world.history(3, 2, "more");
    world.publish().await;
    assert_eq!(green.catch_up().await.expect("green again").applied, 3 * 4);
    assert_eq!(blue.catch_up().await.expect("blue again").applied, 3 * 4);

    let mut expected = expected_balances(&ids, 3);
    expected.extend(expected_balances(&more, 2));
    for projector in [&blue, &green] {
        let log = projector.read_model();
        assert_eq!(assert_ordered_once(&log.entries, 16), 6 * 5 + 3 * 4);
        assert_eq!(log.balances, expected);
    }
    // Each group's checkpoints are its own, in the one store.
    assert_eq!(
        blue.checkpoint_keys()[3],
        "account-log@ES_EVENTS/account-log#p3/16"
    );
    assert_eq!(green.checkpoint_keys()[3], "account-log@ES_EVENTS/v2#p3/16");
    for (projector, other) in [(&mut blue, "v2"), (&mut green, "account-log")] {
        for ((partition, position), key) in projector
            .positions()
            .await
            .expect("positions")
            .into_iter()
            .zip(projector.checkpoint_keys())
        {
            assert_eq!(shared.load_checkpoint(&key).await.expect("load"), position);
            let other_key = format!("account-log@ES_EVENTS/{other}#p{partition}/16");
            assert_eq!(
                shared.load_checkpoint(&other_key).await.expect("load"),
                position
            );
        }
    }
}

/// Commits into `inner`; after each of the first `intrusions` commits an intruder takes
/// (and never acknowledges) the next message of the consumer, so the next fetch of the
/// catch-up sees a gap and starts the partition's session again.
struct IntrudedCommits {
    inner: InMemoryStore,
    stream: jetstream::stream::Stream,
    consumer: String,
    intrusions: u32,
}

impl PartitionCheckpoints<AccountLog> for IntrudedCommits {
    async fn load(&mut self, read_model: &mut AccountLog, key: &str) -> Result<u64, StoreError> {
        PartitionCheckpoints::load(&mut self.inner, read_model, key).await
    }

    async fn commit(
        &mut self,
        read_model: &mut AccountLog,
        positions: &[(&str, u64)],
    ) -> Result<(), StoreError> {
        PartitionCheckpoints::commit(&mut self.inner, read_model, positions).await?;
        if self.intrusions > 0 {
            self.intrusions -= 1;
            let intruder: jetstream::consumer::PullConsumer = self
                .stream
                .get_consumer(&self.consumer)
                .await
                .map_err(|e| StoreError::backend(e.to_string()))?;
            let batch = intruder
                .fetch()
                .max_messages(1)
                .messages()
                .await
                .map_err(|e| StoreError::backend(e.to_string()))?;
            use futures_util::StreamExt;
            let taken: Vec<_> = batch.collect().await;
            drop(taken); // never acknowledged
        }
        Ok(())
    }

    async fn reset(
        &mut self,
        read_model: &mut AccountLog,
        keys: &[&str],
    ) -> Result<(), StoreError> {
        PartitionCheckpoints::reset(&mut self.inner, read_model, keys).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_that_each_make_progress_do_not_end_a_long_catch_up() {
    let Some(world) = world().await else { return };
    let mut publisher = world.publisher(PublisherOptions {
        partitions: 1,
        ..PublisherOptions::default()
    });
    world.history(1, 40, "acc");
    publisher.catch_up().await.expect("publish");
    let stream = world
        .jetstream
        .get_stream("ES_EVENTS")
        .await
        .expect("stream");
    // 15 gaps, more than the 10 restarts in a row allowed, each followed by progress.
    let checkpoints = IntrudedCommits {
        inner: InMemoryStore::new(),
        stream,
        consumer: "account-log-p0".to_owned(),
        intrusions: 15,
    };
    let mut projector = JetStreamProjector::new(
        world.jetstream.clone(),
        AccountLog::default(),
        checkpoints,
        ConsumerOptions::new().partitions(1).batch_size(2),
    );
    let done = projector
        .catch_up()
        .await
        .expect("a catch-up that keeps making progress goes on");
    assert_eq!(done.applied, 42);
    assert_eq!(assert_ordered_once(&projector.read_model().entries, 1), 42);
    assert_eq!(
        projector.checkpoints().intrusions,
        0,
        "every intrusion happened"
    );
}

/// Commits into `inner`; the first commit takes `first_delay`, past the consumer's ack
/// wait, so JetStream redelivers that batch while it is being committed.
struct SlowFirstCommit {
    inner: InMemoryStore,
    first_delay: Option<Duration>,
}

impl PartitionCheckpoints<SharedLog> for SlowFirstCommit {
    async fn load(&mut self, read_model: &mut SharedLog, key: &str) -> Result<u64, StoreError> {
        PartitionCheckpoints::load(&mut self.inner, read_model, key).await
    }

    async fn commit(
        &mut self,
        read_model: &mut SharedLog,
        positions: &[(&str, u64)],
    ) -> Result<(), StoreError> {
        if let Some(delay) = self.first_delay.take() {
            tokio::time::sleep(delay).await;
        }
        PartitionCheckpoints::commit(&mut self.inner, read_model, positions).await
    }

    async fn reset(&mut self, read_model: &mut SharedLog, keys: &[&str]) -> Result<(), StoreError> {
        PartitionCheckpoints::reset(&mut self.inner, read_model, keys).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_duplicate_does_not_make_the_next_message_look_out_of_order() {
    let Some(world) = world().await else { return };
    let mut publisher = world.publisher(PublisherOptions {
        partitions: 1,
        ..PublisherOptions::default()
    });
    let repo = Repository::<Account, _>::new(world.store.clone());
    for amount in [1, 2] {
        repo.execute_infallible("acc-1", |_: &Account| Deposited { amount })
            .expect("deposit");
    }
    publisher.catch_up().await.expect("publish");
    let entries = Arc::new(Mutex::new(Vec::new()));
    let projector = JetStreamProjector::new(
        world.jetstream.clone(),
        SharedLog {
            entries: entries.clone(),
        },
        SlowFirstCommit {
            inner: InMemoryStore::new(),
            first_delay: Some(Duration::from_millis(2500)),
        },
        ConsumerOptions::new()
            .partitions(1)
            .batch_size(2)
            .ack_wait(Duration::from_secs(1)),
    );
    let stop = StopHandle::new();
    let finished = run_on_own_thread(projector, stop.clone());
    let stream = world
        .jetstream
        .get_stream("ES_EVENTS")
        .await
        .expect("stream");
    let created = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match stream.consumer_info("shared-log-p0").await {
                Ok(info) => break info.created,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("consumer: {error}"),
            }
        }
    };
    // The first batch is redelivered during its slow commit, and skipped as duplicates.
    assert_eq!(wait_for(&entries, 2).await, 2);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    // A new event after those redeliveries is next in delivery order: applied in the same
    // session, without recreating the consumer.
    repo.execute_infallible("acc-1", |_: &Account| Deposited { amount: 3 })
        .expect("deposit");
    publisher.catch_up().await.expect("publish");
    assert_eq!(wait_for(&entries, 3).await, 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.stop();
    let (_, done) = tokio::time::timeout(Duration::from_secs(10), finished)
        .await
        .expect("run stops")
        .expect("run thread");
    let done = done.expect("run");
    let info = stream
        .consumer_info("shared-log-p0")
        .await
        .expect("consumer");
    println!("{done:?}, consumer: {:?}", info.delivered);
    assert!(done.duplicates >= 1, "the batch was redelivered: {done:?}");
    assert_eq!(
        info.created, created,
        "the session was not started again (the consumer was not recreated)"
    );
    let entries = entries.lock().map(|e| e.clone()).unwrap_or_default();
    assert_eq!(assert_ordered_once(&entries, 1), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_consumer_takes_the_ack_wait_and_limit_of_new_options() {
    let Some(world) = world().await else { return };
    world.history(2, 2, "acc");
    world.publish().await;
    let checkpoints = InMemoryStore::new();
    let mut projector = world.projector(
        AccountLog::default(),
        checkpoints.clone(),
        ConsumerOptions::new(),
    );
    assert_eq!(projector.catch_up().await.expect("first").applied, 2 * 4);
    let stream = world
        .jetstream
        .get_stream("ES_EVENTS")
        .await
        .expect("stream");
    let name = format!("account-log-p{}", partition_of("Account", "acc-0", 16));
    let info = stream.consumer_info(&name).await.expect("consumer");
    assert_eq!(info.config.ack_wait, Duration::from_secs(30));
    let created = info.created;

    // Other options: the same consumers, updated (not recreated: nothing is read again).
    let log = projector.into_read_model();
    let mut projector = world.projector(
        log,
        checkpoints,
        ConsumerOptions::new()
            .ack_wait(Duration::from_secs(7))
            .batch_size(3),
    );
    world.history(2, 1, "more");
    world.publish().await;
    let done = projector.catch_up().await.expect("with new options");
    assert_eq!((done.applied, done.duplicates), (2 * 3, 0));
    let info = stream.consumer_info(&name).await.expect("consumer");
    assert_eq!(info.config.ack_wait, Duration::from_secs(7));
    assert_eq!(info.config.max_ack_pending, 12);
    assert_eq!(info.created, created);
    assert_eq!(assert_ordered_once(&projector.read_model().entries, 16), 14);
}

/// A checkpoint store whose loads or deletes fail.
struct BrokenStore {
    inner: InMemoryStore,
    fail_load: bool,
    fail_delete: bool,
}

impl AsyncCheckpointStore for BrokenStore {
    async fn load_checkpoint(&self, read_model: &str) -> Result<u64, StoreError> {
        if self.fail_load {
            return Err(StoreError::backend("the store is unreachable"));
        }
        self.inner.load_checkpoint(read_model).await
    }
    async fn save_checkpoint(&self, read_model: &str, position: u64) -> Result<(), StoreError> {
        self.inner.save_checkpoint(read_model, position).await
    }
    async fn delete_checkpoint(&self, read_model: &str) -> Result<(), StoreError> {
        if self.fail_delete {
            return Err(StoreError::backend("the store is read-only"));
        }
        self.inner.delete_checkpoint(read_model).await
    }
    async fn acquire_lease(
        &self,
        read_model: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        AsyncCheckpointStore::acquire_lease(&self.inner, read_model, owner, ttl).await
    }
    async fn release_lease(&self, read_model: &str, owner: &str) -> Result<(), StoreError> {
        AsyncCheckpointStore::release_lease(&self.inner, read_model, owner).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_store_failures_say_what_they_left_behind() {
    let Some(world) = world().await else { return };
    world.history(1, 1, "acc");
    world.publish().await;
    let store = |fail_load, fail_delete| BrokenStore {
        inner: InMemoryStore::new(),
        fail_load,
        fail_delete,
    };
    let mut loading = JetStreamProjector::new(
        world.jetstream.clone(),
        AccountLog::default(),
        store(true, false),
        ConsumerOptions::new(),
    );
    let text = loading
        .catch_up()
        .await
        .expect_err("load fails")
        .to_string();
    assert!(text.contains("loading checkpoint `"), "{text}");
    assert!(text.contains("the store is unreachable"), "{text}");
    assert!(!text.contains("batch"), "{text}");

    let mut resetting = JetStreamProjector::new(
        world.jetstream.clone(),
        AccountLog::default(),
        store(false, true),
        ConsumerOptions::new(),
    );
    resetting.catch_up().await.expect("catch up");
    let text = resetting
        .rebuild()
        .await
        .expect_err("reset fails")
        .to_string();
    assert!(text.contains("the store is read-only"), "{text}");
    assert!(text.contains("run the rebuild again"), "{text}");
    assert!(!text.contains("batch"), "{text}");
}
