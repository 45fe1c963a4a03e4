// The bank-account domain of es-core's crate docs, run end to end over the in-memory store.
use es_core::{Aggregate, Event, InMemoryStore, Repository, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct AccountOpened {
    owner: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct MoneyDeposited {
    amount: u64,
}

#[derive(Debug, Default, Aggregate)]
struct BankAccount {
    owner: String,
    balance: u64,
    open: bool,
}

#[applies]
impl BankAccount {
    fn opened(&mut self, e: &AccountOpened) {
        self.owner = e.owner.clone();
        self.open = true;
    }
    fn deposited(&mut self, e: &MoneyDeposited) {
        self.balance += e.amount;
    }
}

#[derive(Debug)]
struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the account is closed")
    }
}

impl std::error::Error for Closed {}

impl BankAccount {
    fn open(&self, owner: &str) -> Result<AccountOpened, Closed> {
        Ok(AccountOpened {
            owner: owner.into(),
        })
    }
    fn deposit(&self, amount: u64) -> Result<MoneyDeposited, Closed> {
        if !self.open {
            return Err(Closed);
        }
        Ok(MoneyDeposited { amount })
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repo = Repository::<BankAccount, _>::new(InMemoryStore::new());
    assert!(
        repo.execute("acc-1", |acc| acc.deposit(5))
            .unwrap_err()
            .rejection()
            .is_some()
    );
    repo.execute("acc-1", |acc| acc.open("Alice"))?;
    let executed = repo.execute("acc-1", |acc| acc.deposit(50))?;
    assert_eq!((executed.version, executed.attempts), (2, 1));
    assert!(matches!(
        executed.events.as_slice(),
        [BankAccountEvent::MoneyDeposited(MoneyDeposited {
            amount: 50
        })]
    ));
    let acc = repo.load("acc-1")?.expect("the stream exists");
    assert_eq!(
        (acc.state.owner.as_str(), acc.state.balance, acc.version),
        ("Alice", 50, 2)
    );
    assert!(repo.load("acc-2")?.is_none());

    // What the macros generated.
    assert_eq!(<BankAccount as Aggregate>::AGGREGATE_TYPE, "BankAccount");
    assert_eq!(<AccountOpened as Event>::EVENT_TYPE, "AccountOpened");
    assert_eq!(<MoneyDeposited as Event>::VERSION, 1);
    assert_eq!(
        <BankAccountEvent as es_core::EventEnum>::EVENT_TYPES,
        ["AccountOpened", "MoneyDeposited"]
    );
    let history = repo.history("acc-1")?;
    assert_eq!(history.len(), 2);
    assert!(matches!(
        &history[1].event,
        BankAccountEvent::MoneyDeposited(MoneyDeposited { amount: 50 })
    ));
    Ok(())
}
