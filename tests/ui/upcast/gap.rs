use es_core::{Event, UpcastError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn same(payload: Value) -> Result<Value, UpcastError> {
    Ok(payload)
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(version = 4, upcast(from = 1, with = same), upcast(from = 3, with = same))]
struct Deposited {
    amount: u64,
}

fn main() {}
