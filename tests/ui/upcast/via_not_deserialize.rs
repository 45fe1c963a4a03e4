use es_core::Event;
use serde::{Deserialize, Serialize};

struct DepositedV1 {
    amount: u64,
}

impl From<DepositedV1> for Deposited {
    fn from(old: DepositedV1) -> Self {
        Self {
            amount: old.amount,
            currency: "EUR".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(version = 2, upcast(from = 1, via = DepositedV1))]
struct Deposited {
    amount: u64,
    currency: String,
}

fn main() {}
