use es_core::{Aggregate, Event, applies};
use serde::{Deserialize, Serialize};

mod v1 {
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, es_core::Event)]
    #[event(name = "DepositedV1")]
    pub struct Deposited {
        pub amount: u64,
    }
}

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
    fn deposited_v1(&mut self, e: &v1::Deposited) {
        self.balance += e.amount;
    }
}

fn main() {}
