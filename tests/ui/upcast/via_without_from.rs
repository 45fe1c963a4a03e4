use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct DepositedV1 {
    amount: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(version = 2, upcast(from = 1, via = DepositedV1))]
struct Deposited {
    amount: u64,
    currency: String,
}

fn main() {}
