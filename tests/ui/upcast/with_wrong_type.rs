use es_core::Event;
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn add_currency(payload: &mut Value) {
    payload["currency"] = "EUR".into();
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(version = 2, upcast(from = 1, with = add_currency))]
struct Deposited {
    amount: u64,
    currency: String,
}

fn main() {}
