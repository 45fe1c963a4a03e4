//! `es_core::testing::AggregateFixture`: given/when/then without a store, checking that
//! events survive storage and that the aggregate rebuilds from its events alone.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};

use es_core::serde_json::{Value, json};
use es_core::testing::AggregateFixture;
use es_core::{Aggregate, Event, UpcastError, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Opened {
    owner: String,
}

/// Version 1 had no currency.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(version = 2, upcast(from = 1, with = deposit_v1_to_v2))]
struct Deposited {
    amount: u64,
    currency: String,
}

fn deposit_v1_to_v2(mut payload: Value) -> Result<Value, UpcastError> {
    payload["currency"] = json!("EUR");
    Ok(payload)
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Withdrawn {
    amount: u64,
}

#[derive(Debug, Default, PartialEq, Aggregate)]
#[aggregate(name = "FixtureAccount")]
struct Account {
    owner: String,
    balance: u64,
}

#[applies]
impl Account {
    fn opened(&mut self, e: &Opened) {
        self.owner.clone_from(&e.owner);
    }
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }
    fn withdrawn(&mut self, e: &Withdrawn) {
        self.balance -= e.amount;
    }
}

#[derive(Debug, PartialEq)]
enum BankError {
    InsufficientFunds { balance: u64, requested: u64 },
}

impl Account {
    fn withdraw(&self, amount: u64) -> Result<Withdrawn, BankError> {
        if amount > self.balance {
            return Err(BankError::InsufficientFunds {
                balance: self.balance,
                requested: amount,
            });
        }
        Ok(Withdrawn { amount })
    }
}

fn opened() -> Opened {
    Opened {
        owner: "Alice".into(),
    }
}

fn deposit(amount: u64) -> Deposited {
    Deposited {
        amount,
        currency: "EUR".into(),
    }
}

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("the check must fail");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[test]
fn given_when_then_events_error_and_state() {
    AggregateFixture::<Account>::given([AccountEvent::from(opened()), deposit(100).into()])
        .when(|acc| acc.withdraw(150))
        .then_error(BankError::InsufficientFunds {
            balance: 100,
            requested: 150,
        });
    AggregateFixture::<Account>::given([AccountEvent::from(opened()), deposit(100).into()])
        .when(|acc| acc.withdraw(30))
        .then_events([Withdrawn { amount: 30 }])
        .then_state(|acc| assert_eq!((acc.owner.as_str(), acc.balance), ("Alice", 70)));
    AggregateFixture::<Account>::given_no_events()
        .when_infallible(|acc| (acc.balance > 0).then_some(Withdrawn { amount: 1 }))
        .then_no_events();
    AggregateFixture::<Account>::given([opened()])
        .when(|acc| acc.withdraw(1))
        .then_error_matches(|e| matches!(e, BankError::InsufficientFunds { balance: 0, .. }));
}

#[test]
fn old_stored_events_are_upcast_before_the_decision() {
    AggregateFixture::<Account>::given([opened()])
        .and_stored("Deposited", 1, json!({ "amount": 40 }))
        .when(|acc| acc.withdraw(40))
        .then_events([Withdrawn { amount: 40 }])
        .then_state(|acc| assert_eq!(acc.balance, 0));
}

#[test]
fn other_events_are_shown_as_a_diff() {
    let message = panic_message(|| {
        let _ = AggregateFixture::<Account>::given([deposit(100)])
            .when(|acc| acc.withdraw(30))
            .then_events([Withdrawn { amount: 31 }]);
    });
    assert!(message.contains("returned other events"), "{message}");
    assert!(
        message.contains("- [0] Withdrawn(Withdrawn { amount: 31 })"),
        "{message}"
    );
    assert!(
        message.contains("+ [0] Withdrawn(Withdrawn { amount: 30 })"),
        "{message}"
    );

    let message = panic_message(|| {
        AggregateFixture::<Account>::given([deposit(100)])
            .when(|acc| acc.withdraw(30))
            .then_error(BankError::InsufficientFunds {
                balance: 100,
                requested: 30,
            });
    });
    assert!(message.contains("expected to fail"), "{message}");
    assert!(message.contains("+ [0] Withdrawn"), "{message}");
}

/// An event whose field is skipped by serde loses it in storage.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Noted {
    text: String,
    #[serde(skip)]
    priority: u8,
}

#[derive(Debug, Default, PartialEq, Aggregate)]
#[aggregate(name = "FixtureNotes")]
struct Notes {
    high: u64,
}

/// Counts every handler run in the process: a handler must not depend on this.
static RUNS: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Ticked;

#[applies]
impl Notes {
    fn noted(&mut self, e: &Noted) {
        if e.priority > 0 {
            self.high += 1;
        }
    }
    fn ticked(&mut self, _: &Ticked) {
        self.high = RUNS.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn an_event_that_loses_data_in_storage_is_caught() {
    let message = panic_message(|| {
        let _ = AggregateFixture::<Notes>::given_no_events().when_infallible(|_| Noted {
            text: "call back".into(),
            priority: 3,
        });
    });
    assert!(
        message.contains("from its stored events gives another state"),
        "{message}"
    );
    assert!(message.contains("handlers: Notes { high: 1 }"), "{message}");
    assert!(message.contains("rebuilt:  Notes { high: 0 }"), "{message}");
}

#[test]
fn a_handler_that_depends_on_more_than_its_events_is_caught() {
    let message = panic_message(|| {
        let _ = AggregateFixture::<Notes>::given([Ticked]).when_infallible(|_| Ticked);
    });
    assert!(
        message.contains("a handler depends on something but its events"),
        "{message}"
    );
}
