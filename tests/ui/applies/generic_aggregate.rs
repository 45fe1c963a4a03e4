use es_core::{Event, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Opened {
    owner: String,
}

#[derive(Default)]
struct Account<T> {
    owner: String,
    extra: T,
}

#[applies]
impl<T> Account<T> {
    fn opened(&mut self, e: &Opened) {
        self.owner.clone_from(&e.owner);
    }
}

fn main() {}
