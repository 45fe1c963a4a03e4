//! The repository's load -> decide -> append cycle over the in-memory store.

use std::cell::Cell;
use std::ops::RangeInclusive;
use std::sync::Arc;

use es_core::{
    Aggregate, AppendOptions, AppendOutcome, Error, Event, EventStore, ExpectedVersion,
    InMemoryStore, Metadata, NewEvent, RecordedEvent, Repository, StoreError, StreamRef, Visitor,
    applies,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct Opened {
    owner: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct Deposited {
    amount: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct Withdrawn {
    amount: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Aggregate)]
#[aggregate(name = "Account")]
struct Account {
    owner: String,
    balance: u64,
    open: bool,
}

#[applies(derive(Debug, Clone, PartialEq))]
impl Account {
    fn opened(&mut self, e: &Opened) {
        self.owner.clone_from(&e.owner);
        self.open = true;
    }
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }
    fn withdrawn(&mut self, e: &Withdrawn) {
        self.balance -= e.amount;
    }
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum AccountError {
    #[error("the account is not open")]
    NotOpen,
    #[error("insufficient funds: {balance} < {requested}")]
    Insufficient { balance: u64, requested: u64 },
}

impl Account {
    fn open(&self, owner: &str) -> Result<Opened, AccountError> {
        Ok(Opened {
            owner: owner.into(),
        })
    }
    fn deposit(&self, amount: u64) -> Result<Deposited, AccountError> {
        if !self.open {
            return Err(AccountError::NotOpen);
        }
        Ok(Deposited { amount })
    }
    fn withdraw(&self, amount: u64) -> Result<Withdrawn, AccountError> {
        if amount > self.balance {
            return Err(AccountError::Insufficient {
                balance: self.balance,
                requested: amount,
            });
        }
        Ok(Withdrawn { amount })
    }
}

/// A second aggregate type sharing the store and the stream ids.
#[derive(Debug, Default, Aggregate)]
struct Ledger {
    entries: u32,
}

#[applies]
impl Ledger {
    fn deposited(&mut self, _: &Deposited) {
        self.entries += 1;
    }
}

fn repo() -> Repository<Account, InMemoryStore> {
    Repository::new(InMemoryStore::new())
}

#[test]
fn a_missing_stream_is_none_not_a_default_state() {
    let repo = repo();
    assert!(repo.load("nope").unwrap().is_none());
    repo.execute("acc", |a| a.open("Ann")).unwrap();
    let loaded = repo.load("acc").unwrap().expect("exists");
    assert_eq!(loaded.version, 1);
    assert_eq!(loaded.state.owner, "Ann");
}

#[test]
fn a_decision_may_return_none_one_or_several_events() {
    let repo = repo();
    let none = repo.execute("acc", |_| Ok::<_, AccountError>(())).unwrap();
    assert_eq!((none.version, none.events.len()), (0, 0));
    assert!(repo.load("acc").unwrap().is_none(), "no events, no stream");

    let one = repo.execute("acc", |a| a.open("Ann")).unwrap();
    assert_eq!(one.version, 1);

    let several = repo
        .execute("acc", |a| {
            Ok::<_, AccountError>((
                a.deposit(10)?,
                vec![Deposited { amount: 5 }],
                Some(Withdrawn { amount: 3 }),
            ))
        })
        .unwrap();
    assert_eq!(several.version, 4);
    assert_eq!(several.global_positions, 2..5);
    assert_eq!(several.state.balance, 12);
    assert_eq!(
        several.events,
        vec![
            AccountEvent::from(Deposited { amount: 10 }),
            Deposited { amount: 5 }.into(),
            Withdrawn { amount: 3 }.into()
        ]
    );
    let empty_option = repo
        .execute("acc", |_| Ok::<_, AccountError>(Option::<Deposited>::None))
        .unwrap();
    assert_eq!(empty_option.version, 4);
    let array = repo
        .execute("acc", |_| {
            Ok::<_, AccountError>([Deposited { amount: 1 }, Deposited { amount: 2 }])
        })
        .unwrap();
    assert_eq!((array.version, array.state.balance), (6, 15));
}

#[test]
fn a_rejected_command_appends_nothing_and_names_the_stream() {
    let repo = repo();
    let error = repo.execute("acc", |a| a.deposit(1)).unwrap_err();
    assert_eq!(error.rejection(), Some(&AccountError::NotOpen));
    assert_eq!(
        error.to_string(),
        "command rejected by stream `Account/acc` at version 0: the account is not open"
    );
    repo.execute("acc", |a| a.open("Ann")).unwrap();
    let error = repo.execute("acc", |a| a.withdraw(5)).unwrap_err();
    assert!(matches!(
        error.into_rejection(),
        Ok(AccountError::Insufficient {
            balance: 0,
            requested: 5
        })
    ));
    assert_eq!(repo.store().len(), 1);
}

#[test]
fn metadata_is_recorded_with_every_new_event() {
    let repo = repo();
    let meta = Metadata::new()
        .with_correlation_id("req-1")
        .with_causation_id("cmd-1")
        .with_entry("user", "ann");
    repo.execute_with("acc", &meta, |a| {
        Ok::<_, AccountError>((a.open("Ann")?, Deposited { amount: 1 }))
    })
    .unwrap();
    let history = repo.history("acc").unwrap();
    assert_eq!(history.len(), 2);
    for entry in &history {
        assert_eq!(entry.record.metadata, meta);
    }
    assert_ne!(history[0].record.event_id, history[1].record.event_id);
    assert_eq!(
        history[1].record.payload_value().unwrap(),
        json!({"amount": 1})
    );
}

#[test]
fn a_conflict_reloads_and_decides_again_on_fresh_state() {
    let repo = repo();
    repo.execute("acc", |a| {
        Ok::<_, AccountError>((a.open("Ann")?, Deposited { amount: 100 }))
    })
    .unwrap();
    let seen = std::cell::RefCell::new(Vec::new());
    let done = repo
        .execute("acc", |a| {
            seen.borrow_mut().push(a.balance);
            if seen.borrow().len() == 1 {
                // Another writer appends between our load and our append.
                repo.execute("acc", |b| b.deposit(100)).unwrap();
            }
            a.withdraw(60)
        })
        .unwrap();
    assert_eq!(
        *seen.borrow(),
        vec![100, 200],
        "the retry decided on the reloaded state"
    );
    assert_eq!(done.attempts, 2);
    assert_eq!((done.version, done.state.balance), (4, 140));

    // The retry may also reject: the fresh state no longer allows the command.
    let calls = Cell::new(0);
    let error = repo
        .execute("acc", |a| {
            calls.set(calls.get() + 1);
            if calls.get() == 1 {
                repo.execute("acc", |b| b.withdraw(100)).unwrap();
            }
            a.withdraw(100)
        })
        .unwrap_err();
    assert_eq!(calls.get(), 2);
    assert_eq!(
        error.rejection(),
        Some(&AccountError::Insufficient {
            balance: 40,
            requested: 100
        })
    );
    assert_eq!(repo.load("acc").unwrap().unwrap().version, 5);
}

#[test]
fn retries_are_limited_and_the_conflict_is_reported() {
    let repo = repo().with_max_retries(2);
    repo.execute("acc", |a| a.open("Ann")).unwrap();
    let calls = Cell::new(0);
    let error = repo
        .execute("acc", |a| {
            calls.set(calls.get() + 1);
            repo.execute("acc", |b| b.deposit(1)).unwrap();
            a.deposit(1)
        })
        .unwrap_err();
    assert!(error.is_conflict());
    assert_eq!(calls.get(), 3, "the first attempt plus two retries");
    let Error::Conflict {
        attempts,
        expected,
        actual,
        stream,
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!((*attempts, *expected, *actual), (3, 3, 4));
    assert_eq!(stream.id, "acc");
    assert!(
        error.to_string().contains("gave up after 3 attempts"),
        "{error}"
    );

    let no_retry = repo.clone().with_max_retries(0);
    let error = no_retry
        .execute("acc", |a| {
            repo.execute("acc", |b| b.deposit(1)).unwrap();
            a.deposit(1)
        })
        .unwrap_err();
    assert!(matches!(error, Error::Conflict { attempts: 1, .. }));
}

#[test]
fn one_store_serves_several_aggregate_types_without_collisions() {
    let store = InMemoryStore::new();
    let accounts = Repository::<Account, _>::new(store.clone());
    let ledgers = Repository::<Ledger, _>::new(store.clone());
    accounts.execute("x", |a| a.open("Ann")).unwrap();
    ledgers
        .execute("x", |_| Ok::<_, AccountError>(Deposited { amount: 1 }))
        .unwrap();
    assert_eq!(accounts.load("x").unwrap().unwrap().version, 1);
    assert_eq!(ledgers.load("x").unwrap().unwrap().state.entries, 1);
    // Ledger's stream holds a Deposited only; Account's holds an Opened.
    assert_eq!(
        store.read_stream(StreamRef::new("Ledger", "x"), 1).unwrap()[0].event_type,
        "Deposited"
    );
    assert_eq!(
        store
            .read_stream(StreamRef::new("Account", "x"), 1)
            .unwrap()[0]
            .event_type,
        "Opened"
    );
}

#[test]
fn stores_and_repositories_are_send_sync_and_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<InMemoryStore>();
    assert_send_sync::<Repository<Account, InMemoryStore>>();
    assert_send_sync::<Repository<Account, Arc<InMemoryStore>>>();

    let repo = repo().with_max_retries(1_000);
    repo.execute("acc", |a| a.open("Ann")).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let repo = repo.clone();
            s.spawn(move || {
                for _ in 0..50 {
                    repo.execute("acc", |a| a.deposit(1)).unwrap();
                }
            });
        }
    });
    let acc = repo.load("acc").unwrap().unwrap();
    assert_eq!((acc.state.balance, acc.version), (200, 201));
}

/// A store that damages what it reads, to prove the repository reports it.
struct Faulty<F: Fn(&mut Vec<RecordedEvent>) + Send + Sync> {
    inner: InMemoryStore,
    damage: F,
}

impl<F: Fn(&mut Vec<RecordedEvent>) + Send + Sync> EventStore for Faulty<F> {
    fn append_with(
        &self,
        s: StreamRef<'_>,
        e: ExpectedVersion,
        ev: &[NewEvent],
        options: AppendOptions<'_>,
    ) -> Result<AppendOutcome, StoreError> {
        self.inner.append_with(s, e, ev, options)
    }
    fn find_idempotency_key(
        &self,
        s: StreamRef<'_>,
        key: &str,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        self.inner.find_idempotency_key(s, key)
    }
    fn visit_stream(
        &self,
        s: StreamRef<'_>,
        versions: RangeInclusive<u64>,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        let mut events = self.inner.read_stream(s, *versions.start())?;
        events.retain(|e| versions.contains(&e.stream_version));
        (self.damage)(&mut events);
        for event in &events {
            if visitor(&event.as_record()).is_break() {
                break;
            }
        }
        Ok(())
    }
    fn visit_all(
        &self,
        from: u64,
        limit: usize,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        self.inner.visit_all(from, limit, visitor)
    }
    fn stream_version(&self, s: StreamRef<'_>) -> Result<u64, StoreError> {
        self.inner.stream_version(s)
    }
}

fn seeded<F: Fn(&mut Vec<RecordedEvent>) + Send + Sync>(
    damage: F,
) -> Repository<Account, Faulty<F>> {
    let inner = InMemoryStore::new();
    let plain = Repository::<Account, _>::new(inner.clone());
    plain.execute("acc", |a| a.open("Ann")).unwrap();
    plain.execute("acc", |a| a.deposit(5)).unwrap();
    plain.execute("acc", |a| a.deposit(6)).unwrap();
    Repository::new(Faulty { inner, damage })
}

#[test]
fn a_version_gap_is_an_error_naming_stream_version_and_type() {
    let repo = seeded(|events| {
        events.remove(1);
    });
    let error = repo.load("acc").unwrap_err();
    assert!(
        matches!(&error, Error::VersionGap { expected: 2, found: 3, event_type, .. } if event_type == "Deposited"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "stream `Account/acc` is not contiguous: expected version 2, read version 3 (event type `Deposited`); the store is damaged"
    );
}

#[test]
fn a_payload_that_does_not_fit_is_a_decode_error_not_a_panic() {
    let repo = seeded(|events| {
        events[2].payload = serde_json::value::to_raw_value(&json!({"amount": "six"})).unwrap();
    });
    let error = repo.load("acc").unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, Error::Decode { version: 3, .. }),
        "{error:?}"
    );
    assert!(message.contains("stream `Account/acc`"), "{message}");
    assert!(message.contains("`Deposited`"), "{message}");
    // Commands against the damaged stream fail the same way instead of appending.
    let error = repo.execute("acc", |a| a.deposit(1)).unwrap_err();
    assert!(
        matches!(error, Error::Decode { version: 3, .. }),
        "{error:?}"
    );
}

#[test]
fn load_errors_widen_into_a_domain_error_for_question_mark() {
    fn top_up(
        repo: &Repository<Account, InMemoryStore>,
        id: &str,
    ) -> Result<es_core::Versioned<Account>, Error<AccountError>> {
        repo.execute(id, |a| a.deposit(1))?;
        let loaded = repo.load(id).map_err(Error::widen)?;
        Ok(loaded.expect("the stream exists"))
    }
    let repo = repo();
    assert_eq!(
        top_up(&repo, "acc").unwrap_err().rejection(),
        Some(&AccountError::NotOpen)
    );
    repo.execute_infallible("acc", |_| Opened {
        owner: "Ann".into(),
    })
    .unwrap();
    let loaded = top_up(&repo, "acc").unwrap();
    assert_eq!((loaded.version, loaded.state.balance), (2, 1));

    // A damaged stream stays a decode error, with its details, once widened.
    let damaged = seeded(|events| {
        events[2].payload = serde_json::value::to_raw_value(&json!({"amount": "six"})).unwrap();
    });
    let error: Result<_, Error<AccountError>> = damaged.load("acc").map_err(Error::widen);
    assert!(
        matches!(error, Err(Error::Decode { version: 3, .. })),
        "{error:?}"
    );
}

#[test]
fn an_infallible_decision_returns_events_directly() {
    let repo = repo();
    let none = repo.execute_infallible("acc", |_| ()).unwrap();
    assert_eq!((none.version, none.attempts), (0, 1));
    let two = repo
        .execute_infallible("acc", |_| {
            (
                Opened {
                    owner: "Ann".into(),
                },
                Deposited { amount: 4 },
            )
        })
        .unwrap();
    assert_eq!((two.version, two.state.balance), (2, 4));
    assert_eq!(two.global_positions, 1..3);
}

#[test]
fn serde_json_is_re_exported_for_upcasters() {
    fn upcast(
        mut payload: es_core::serde_json::Value,
    ) -> Result<es_core::serde_json::Value, es_core::UpcastError> {
        payload["currency"] = es_core::serde_json::json!("EUR");
        Ok(payload)
    }
    assert_eq!(
        upcast(json!({"amount": 1})).unwrap(),
        json!({"amount": 1, "currency": "EUR"})
    );
}
