// An enum without variants has no value: it could never be recorded.
use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
enum Nothing {}

fn main() {}
