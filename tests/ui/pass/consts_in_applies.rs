// An associated const in an `#[applies]` block is kept as written and usable by the
// handlers; only the methods are event handlers. (An inherent associated `type` is passed
// through too, but is unstable Rust, so it cannot be shown here; a module-level alias is.)
use es_core::{Aggregate, Event, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Deposited {
    amount: u64,
}

type Amount = u64;

#[derive(Debug, Default, Aggregate)]
struct Account {
    balance: u64,
}

#[applies]
impl Account {
    const LIMIT: u64 = 100;

    fn deposited(&mut self, e: &Deposited) {
        let amount: Amount = e.amount.min(Self::LIMIT);
        self.balance += amount;
    }
}

fn main() {
    let mut account = Account::default();
    account.apply(&AccountEvent::from(Deposited { amount: 250 }));
    assert_eq!(account.balance, Account::LIMIT);
}
