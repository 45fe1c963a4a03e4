use es_core::{Aggregate, Event};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Opened {
    owner: String,
}

#[derive(Default, Aggregate)]
struct Account<T> {
    owner: T,
}

fn main() {}
