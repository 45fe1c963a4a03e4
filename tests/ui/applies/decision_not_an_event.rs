use es_core::{Aggregate, Event, InMemoryStore, Repository, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Opened {
    owner: String,
}

#[derive(Default, Aggregate)]
struct Account {
    owner: String,
}

#[applies]
impl Account {
    fn opened(&mut self, e: &Opened) {
        self.owner.clone_from(&e.owner);
    }
}

struct Closed;

fn main() {
    let repo = Repository::<Account, _>::new(InMemoryStore::new());
    let _ = repo.execute("acc-1", |_| Ok::<_, std::fmt::Error>(Closed));
}
