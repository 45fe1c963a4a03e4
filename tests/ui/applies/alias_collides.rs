use es_core::{Aggregate, Event, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "MoneyDeposited", aliases("FundsAdded"))]
struct Deposited {
    amount: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "FundsAdded")]
struct Bonus {
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
    fn bonus(&mut self, e: &Bonus) {
        self.balance += e.amount;
    }
}

fn main() {}
