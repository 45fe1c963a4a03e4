// `#[applies]` on the block already makes every method a handler.
use es_core::{Aggregate, Event, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Opened {
    owner: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Deposited {
    amount: u64,
}

#[derive(Default, Aggregate)]
struct Account {
    owner: String,
    balance: u64,
}

#[applies]
impl Account {
    fn opened(&mut self, e: &Opened) {
        self.owner.clone_from(&e.owner);
    }
    #[applies]
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }
}

fn main() {}
