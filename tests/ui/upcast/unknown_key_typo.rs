use es_core::{Event, UpcastError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn same(v: Value) -> Result<Value, UpcastError> {
    Ok(v)
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(version = 2, upcast(form = 1, with = same))]
struct Deposited {
    amount: u64,
}

fn main() {}
