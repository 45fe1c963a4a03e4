// A typo in `version` must give a short, quick error, not a compiler hang listing billions
// of missing steps.
use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(version = 4000000000)]
struct Deposited {
    amount: u64,
}

fn main() {}
