use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(version = 2, upcast(from = 1, with = migrations::add_currency))]
struct Deposited {
    amount: u64,
    currency: String,
}

mod migrations {}

fn main() {}
