// A macro call could expand to methods the block's checks and dispatch never see.
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

macro_rules! deposit_handler {
    () => {
        fn deposited(&mut self, e: &Deposited) {
            self.balance += e.amount;
        }
    };
}

#[applies]
impl Account {
    fn opened(&mut self, e: &Opened) {
        self.owner.clone_from(&e.owner);
    }
    deposit_handler!();
}

fn main() {}
