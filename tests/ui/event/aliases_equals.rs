// `aliases` is a list, even of one name.
use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "Deposited", aliases = "FundsAdded")]
struct Deposited {
    amount: u64,
}

fn main() {}
