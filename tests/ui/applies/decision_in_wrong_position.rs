// `execute` takes the stream id and the decision; an extra argument before the closure.
use es_core::{Aggregate, Event, InMemoryStore, Repository, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Deposited {
    amount: u64,
}

#[derive(Default, Aggregate)]
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
    let repo = Repository::<Account, _>::new(InMemoryStore::new());
    let _ = repo.execute("acc-1", 3, |acc| {
        Ok::<_, std::fmt::Error>(Deposited {
            amount: acc.balance + 1,
        })
    });
}
