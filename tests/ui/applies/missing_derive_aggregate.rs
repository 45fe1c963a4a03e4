// `#[applies]` without `#[derive(Aggregate)]`: the handlers exist, but the struct is not an
// aggregate, so it cannot be loaded.
use es_core::{Event, InMemoryStore, Repository, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Deposited {
    amount: u64,
}

#[derive(Debug, Default)]
struct Account {
    balance: u64,
}

#[applies]
impl Account {
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }
}

fn main() {
    let _ = Repository::<Account, _>::new(InMemoryStore::new()).load("a");
}
