// Without `name`, the stored name is the type's name, which must follow the same rule.
use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Überweisung {
    amount: u64,
}

fn main() {}
