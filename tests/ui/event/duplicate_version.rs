use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(version = 1)]
#[event(version = 2, upcast(from = 1, with = v1_to_v2))]
struct Deposited {
    amount: u64,
}

fn v1_to_v2(payload: serde_json::Value) -> Result<serde_json::Value, es_core::UpcastError> {
    Ok(payload)
}

fn main() {}
