//! The repository's conflict retry policy: the default survives ordinary contention on a
//! durable store, and the attempt and time bounds stop a hopeless retry loop.

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use es_core::{
    AppendOptions, AppendOutcome, Error, EventStore, ExpectedVersion, InMemoryStore, NewEvent,
    Repository, RetryPolicy, StoreError, StreamRef, Visitor,
};
use es_sqlite::SqliteStore;
use es_store_tests::{Account, Deposited};

const THREADS: u64 = 4;
const DEPOSITS_PER_THREAD: u64 = 100;

#[test]
fn the_default_policy_survives_four_writers_on_one_sqlite_stream() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let store = SqliteStore::open(dir.path().join("events.db")).expect("open the SQLite store");
    let repo = Repository::<Account, _>::new(&store);
    assert_eq!(repo.retry_policy(), RetryPolicy::default());
    repo.execute("acc", |a| a.open("Ann")).unwrap();

    let attempts = AtomicU32::new(0);
    let failures = AtomicU32::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                for _ in 0..DEPOSITS_PER_THREAD {
                    match repo.execute("acc", |a| a.deposit(1)) {
                        Ok(done) => {
                            attempts.fetch_add(done.attempts, Ordering::Relaxed);
                        }
                        Err(error) => {
                            eprintln!("{error}");
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    let commands = THREADS * DEPOSITS_PER_THREAD;
    eprintln!(
        "{commands} commands in {:?}, {} attempts",
        started.elapsed(),
        attempts.load(Ordering::Relaxed)
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "every command succeeds"
    );
    let account = repo.load("acc").unwrap().expect("the account exists");
    assert_eq!(account.state.balance, commands);
    assert_eq!(account.version, commands + 1);
}

/// A store whose every append conflicts, as if another writer always got there first.
#[derive(Default)]
struct AlwaysConflicts {
    inner: InMemoryStore,
    appends: AtomicU32,
}

impl EventStore for AlwaysConflicts {
    fn append_with(
        &self,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        _: &[NewEvent],
        _: AppendOptions<'_>,
    ) -> Result<AppendOutcome, StoreError> {
        self.appends.fetch_add(1, Ordering::Relaxed);
        let actual = self.inner.stream_version(stream)? + 1;
        Err(StoreError::conflict(stream, expected, actual))
    }
    fn find_idempotency_key(
        &self,
        stream: StreamRef<'_>,
        key: &str,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        self.inner.find_idempotency_key(stream, key)
    }
    fn visit_stream(
        &self,
        stream: StreamRef<'_>,
        versions: RangeInclusive<u64>,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        self.inner.visit_stream(stream, versions, visitor)
    }
    fn visit_all(
        &self,
        from: u64,
        limit: usize,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        self.inner.visit_all(from, limit, visitor)
    }
    fn stream_version(&self, stream: StreamRef<'_>) -> Result<u64, StoreError> {
        self.inner.stream_version(stream)
    }
}

fn deposit(_: &Account) -> Result<Deposited, std::convert::Infallible> {
    Ok(Deposited { amount: 1 })
}

#[test]
fn a_policy_of_one_attempt_reports_the_conflict_at_once() {
    let repo = Repository::<Account, _>::new(InMemoryStore::new());
    repo.execute("acc", |a| a.open("Ann")).unwrap();
    let strict = repo.clone().with_retry(RetryPolicy::no_retry());
    let calls = AtomicU32::new(0);
    let error = strict
        .execute("acc", |a| {
            calls.fetch_add(1, Ordering::Relaxed);
            // Another writer appends between our load and our append.
            repo.execute("acc", |b| b.deposit(1)).unwrap();
            a.deposit(1)
        })
        .unwrap_err();
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert!(
        matches!(
            error,
            Error::Conflict {
                attempts: 1,
                expected: 1,
                actual: 2,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("gave up after 1 attempts"),
        "{error}"
    );
}

#[test]
fn the_attempt_bound_counts_the_first_attempt() {
    let repo = Repository::<Account, _>::new(AlwaysConflicts::default()).with_retry(
        RetryPolicy::default()
            .max_attempts(4)
            .backoff(Duration::ZERO, Duration::ZERO),
    );
    let error = repo.execute("acc", deposit).unwrap_err();
    assert!(
        matches!(error, Error::Conflict { attempts: 4, .. }),
        "{error:?}"
    );
    assert_eq!(repo.store().appends.load(Ordering::Relaxed), 4);
}

#[test]
fn the_time_bound_stops_retrying() {
    let bound = Duration::from_millis(200);
    let policy = RetryPolicy::default()
        .max_attempts(u32::MAX)
        .max_elapsed(bound)
        .backoff(Duration::from_millis(1), Duration::from_millis(5));
    let repo = Repository::<Account, _>::new(AlwaysConflicts::default()).with_retry(policy);
    let started = Instant::now();
    let error = repo.execute("acc", deposit).unwrap_err();
    let elapsed = started.elapsed();
    let Error::Conflict { attempts, .. } = error else {
        panic!("{error:?}")
    };
    assert!(attempts > 1, "it retried before the bound: {attempts}");
    assert_eq!(repo.store().appends.load(Ordering::Relaxed), attempts);
    // The bound counts from the first conflict, which comes after `started`.
    assert!(elapsed >= bound, "gave up early: {elapsed:?}");
    assert!(
        elapsed < bound + Duration::from_secs(5),
        "gave up late: {elapsed:?}"
    );
}

#[test]
fn the_first_retry_goes_at_once_and_later_ones_pause() {
    // A cap far longer than the test: were the first retry to pause, it would hang.
    let long = Duration::from_secs(600);
    let repo = Repository::<Account, _>::new(AlwaysConflicts::default())
        .with_retry(RetryPolicy::default().max_attempts(2).backoff(long, long));
    let started = Instant::now();
    let error = repo.execute("acc", deposit).unwrap_err();
    assert!(matches!(error, Error::Conflict { attempts: 2, .. }));
    assert!(started.elapsed() < Duration::from_secs(60));

    // Without jitter each pause is its whole cap: 0, then 10 ms, then 20 ms.
    let repo = Repository::<Account, _>::new(AlwaysConflicts::default()).with_retry(
        RetryPolicy::default()
            .max_attempts(4)
            .jitter(false)
            .backoff(Duration::from_millis(10), Duration::from_millis(20)),
    );
    let started = Instant::now();
    let error = repo.execute("acc", deposit).unwrap_err();
    assert!(matches!(error, Error::Conflict { attempts: 4, .. }));
    assert!(
        started.elapsed() >= Duration::from_millis(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn with_max_retries_is_a_shortcut_for_the_attempt_count() {
    let repo = Repository::<Account, _>::new(AlwaysConflicts::default()).with_max_retries(5);
    let policy = repo.retry_policy();
    assert_eq!((policy.max_attempts, policy.max_elapsed), (6, None));
    assert_eq!(policy.initial_backoff, RetryPolicy::DEFAULT_INITIAL_BACKOFF);
    let error = repo.execute("acc", deposit).unwrap_err();
    assert!(matches!(error, Error::Conflict { attempts: 6, .. }));

    let never = repo.with_max_retries(0);
    assert_eq!(never.retry_policy().max_attempts, 1);
    // An attempt count of 0 still makes one attempt.
    let zero = never.with_retry(RetryPolicy::default().max_attempts(0));
    let error = zero.execute("acc", deposit).unwrap_err();
    assert!(matches!(error, Error::Conflict { attempts: 1, .. }));
}

#[test]
fn an_infallible_decision_is_retried_on_fresh_state() {
    let repo = Repository::<Account, _>::new(InMemoryStore::new());
    repo.execute("acc", |a| a.open("Ann")).unwrap();
    let seen = std::cell::RefCell::new(Vec::new());
    let done = repo
        .execute_infallible("acc", |a| {
            seen.borrow_mut().push(a.balance);
            if seen.borrow().len() == 1 {
                repo.execute_infallible("acc", |_| Deposited { amount: 10 })
                    .unwrap();
            }
            Deposited { amount: a.balance }
        })
        .unwrap();
    assert_eq!(*seen.borrow(), vec![0, 10]);
    assert_eq!(
        (done.attempts, done.version, done.state.balance),
        (2, 3, 20)
    );
}
