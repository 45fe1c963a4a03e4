use es_core::{Aggregate, Event, applies, read_model};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct ItemAdded {
    item: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Opened {
    owner: String,
}

#[derive(Debug, Default, Aggregate)]
struct Inventory {
    items: u32,
}

#[applies]
impl Inventory {
    fn added(&mut self, _: &ItemAdded) {
        self.items += 1;
    }
}

#[derive(Debug, Default, Aggregate)]
struct Account {
    owner: String,
}

#[applies]
impl Account {
    fn opened(&mut self, e: &Opened) {
        self.owner.clone_from(&e.owner);
    }
}

#[derive(Default)]
struct Items(u32);

#[read_model]
impl Items {
    #[from(Inventory)]
    #[from(Inventory)]
    fn added(&mut self, _: &ItemAdded) {
        self.0 += 1;
    }
}

fn main() {}
