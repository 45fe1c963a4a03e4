use es_core::{Aggregate, Event, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
pub struct Opened {
    pub owner: String,
}

#[derive(Default, Aggregate)]
pub struct Account {
    pub owner: String,
}

#[applies(vis = "pub(crate)")]
impl Account {
    fn opened(&mut self, e: &Opened) {
        self.owner.clone_from(&e.owner);
    }
}

fn main() {}
