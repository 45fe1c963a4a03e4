// A mistyped key gets the nearest valid one suggested.
use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(nmae = "Deposited")]
struct Deposited {
    amount: u64,
}

fn main() {}
