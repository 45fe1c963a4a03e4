use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "")]
struct Deposited {
    amount: u64,
}

fn main() {}
