// `#[aggregate(...)]` is read on the type only: on a variant it would be silently ignored.
use es_core::{Aggregate, Event, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Opened;

#[derive(Default, Aggregate)]
enum Door {
    #[default]
    #[aggregate(name = "ClosedDoor")]
    Closed,
    Open,
}

#[applies]
impl Door {
    fn opened(&mut self, _: &Opened) {
        *self = Door::Open;
    }
}

fn main() {}
