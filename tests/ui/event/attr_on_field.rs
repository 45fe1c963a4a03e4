// `#[event(...)]` is read on the type only: on a field it would be silently ignored.
use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Deposited {
    #[event(version = 2)]
    amount: u64,
}

fn main() {}
