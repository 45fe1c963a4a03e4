// Only the bad handler is reported: the other handlers are still generated, so the
// decision returning `Opened` compiles.
use es_core::{Aggregate, Event, InMemoryStore, Repository, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Opened {
    owner: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Deposited {
    amount: u64,
}

#[derive(Default, Aggregate)]
struct Account {
    owner: String,
    balance: u64,
}

#[applies]
impl Account {
    fn opened(&mut self, e: &Opened) {
        self.owner.clone_from(&e.owner);
    }
    fn deposited(&self, e: &Deposited) {
        let _ = (self.balance, e.amount);
    }
}

fn main() {
    let repo = Repository::<Account, _>::new(InMemoryStore::new());
    let _ = repo.execute("acc-1", |_| {
        Ok::<_, std::fmt::Error>(Opened {
            owner: "Alice".into(),
        })
    });
}
