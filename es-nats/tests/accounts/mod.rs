//! The account domain the consumer tests feed read models from: opened, deposits (handled
//! by their read models) and withdrawals (which their read models mostly do not handle, so
//! those messages advance the checkpoints only).
#![allow(dead_code)]

use es_core::{Aggregate, Event, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
pub struct Opened {
    pub owner: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
pub struct Deposited {
    pub amount: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
pub struct Withdrawn {
    pub amount: u64,
}

#[derive(Debug, Default, Aggregate)]
pub struct Account {
    pub balance: u64,
}

#[applies]
impl Account {
    fn opened(&mut self, _: &Opened) {}
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }
    fn withdrawn(&mut self, e: &Withdrawn) {
        self.balance -= e.amount;
    }
}
