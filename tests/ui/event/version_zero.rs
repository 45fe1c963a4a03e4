use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(version = 0)]
struct Deposited {
    amount: u64,
}

fn main() {}
