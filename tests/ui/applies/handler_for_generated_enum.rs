// The enum is generated from the handlers; it cannot be a catch-all handler's event too.
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
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }
    fn any(&mut self, e: &AccountEvent) {
        let _ = e;
    }
}

fn main() {}
