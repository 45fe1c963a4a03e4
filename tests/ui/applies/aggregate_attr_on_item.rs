// `#[aggregate(...)]` belongs on the aggregate type, not inside its handlers block.
use es_core::{Aggregate, Event, applies};
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
    #[aggregate(name = "Account")]
    const LIMIT: u64 = 100;
    fn opened(&mut self, e: &Opened) {
        self.owner.clone_from(&e.owner);
    }
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount.min(Self::LIMIT);
    }
}

fn main() {}
