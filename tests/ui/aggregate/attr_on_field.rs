// `#[aggregate(...)]` is read on the type only: on a field it would be silently ignored.
use es_core::{Aggregate, Event, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Opened {
    owner: String,
}

#[derive(Default, Aggregate)]
struct Account {
    #[aggregate(name = "Owner")]
    owner: String,
}

#[applies]
impl Account {
    fn opened(&mut self, e: &Opened) {
        self.owner.clone_from(&e.owner);
    }
}

fn main() {}

