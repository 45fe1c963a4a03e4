// The generated enum is named `{Aggregate}Event`; a type of that name already in scope
// needs `#[applies(event_enum = OtherName)]`.
use es_core::{Aggregate, Event, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Opened {
    owner: String,
}

#[derive(Default, Aggregate)]
struct Account {
    owner: String,
}

/// The user's own type, say an integration event sent to other services.
#[derive(Debug, Clone)]
pub struct AccountEvent {
    pub account: String,
}

#[applies]
impl Account {
    fn opened(&mut self, e: &Opened) {
        self.owner.clone_from(&e.owner);
    }
}

fn main() {
    let _ = AccountEvent {
        account: "acc-1".to_owned(),
    };
}
