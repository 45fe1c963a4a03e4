use es_core::{Event, UpcastError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Deserialize)]
struct DepositedV1 {
    amount: u64,
}

fn v2_to_v3(payload: Value) -> Result<Value, UpcastError> {
    Ok(payload)
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(version = 3, upcast(from = 1, via = DepositedV1), upcast(from = 2, with = v2_to_v3))]
struct Deposited {
    cents: u64,
}

fn main() {}
