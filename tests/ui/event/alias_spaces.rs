use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "MoneyDeposited", aliases("Funds Added"))]
struct Deposited {
    amount: u64,
}

fn main() {}
