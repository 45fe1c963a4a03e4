// The unknown key is the only error: `Account` still implements `Aggregate`, so the
// repository using it compiles.
use es_core::{Aggregate, Event, InMemoryStore, Repository, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Opened {
    owner: String,
}

#[derive(Default, Aggregate)]
#[aggregate(name = "Account", table = "accounts")]
struct Account {
    owner: String,
}

#[applies]
impl Account {
    fn opened(&mut self, e: &Opened) {
        self.owner.clone_from(&e.owner);
    }
}

fn main() {
    let repo = Repository::<Account, _>::new(InMemoryStore::new());
    let _ = repo.load("acc-1");
}
