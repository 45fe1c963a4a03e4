use es_core::{Event, UpcastError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn same(payload: Value) -> Result<Value, UpcastError> {
    Ok(payload)
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(version = 3, upcast(from = 1, with = same), upcast(from = 2, with = same), upcast(from = 1, with = same))]
struct Deposited {
    amount: u64,
}

fn main() {}
