// `#[event(...)]` is read on the type only: on a variant it would be silently ignored.
use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "AccountChanged")]
enum AccountChanged {
    #[event(name = "Renamed")]
    Renamed { owner: String },
    Closed,
}

fn main() {}
