// A mistyped key gets the nearest valid one suggested.
use es_core::{Aggregate, Event, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Opened {
    owner: String,
}

#[derive(Default, Aggregate)]
#[aggregate(nmae = "Account")]
struct Account {
    owner: String,
}

#[applies]
impl Account {
    fn opened(&mut self, e: &Opened) {
        self.owner.clone_from(&e.owner);
    }
}

fn main() {}

