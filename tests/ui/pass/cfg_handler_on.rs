// A handler under a `#[cfg]` that is on is an ordinary handler.
use es_core::{Aggregate, Event, EventEnum, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Opened;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Closed;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Audited;

#[derive(Debug, Default, Aggregate)]
struct Account {
    open: bool,
    audits: u32,
}

#[applies]
impl Account {
    fn opened(&mut self, _: &Opened) {
        self.open = true;
    }

    #[cfg(all())]
    fn closed(&mut self, _: &Closed) {
        self.open = false;
    }

    #[cfg_attr(any(), cfg(any()))]
    fn audited(&mut self, _: &Audited) {
        self.audits += 1;
    }
}

fn main() {
    assert_eq!(AccountEvent::EVENT_TYPES, ["Opened", "Closed", "Audited"]);
    let mut account = Account::default();
    account.apply(&AccountEvent::from(Opened));
    account.apply(&AccountEvent::from(Closed));
    account.apply(&AccountEvent::from_stored("Audited", 1, "null").unwrap());
    assert!(!account.open);
    assert_eq!(account.audits, 1);
    assert_eq!(AccountEvent::from(Closed).event_type(), "Closed");
}
