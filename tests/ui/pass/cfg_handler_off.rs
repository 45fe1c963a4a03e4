// A handler under a `#[cfg]` that is off: the method is gone, and so is everything
// `#[applies]` generates for it (variant, conversions, match arms, `EVENT_TYPES` entry,
// name checks). `Closed` even shares `Opened`'s stored name: no clash, it is not there.
use es_core::{Aggregate, Event, EventEnum, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Opened;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "Opened")]
struct Closed;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Audited;

#[derive(Debug, Default, Aggregate)]
struct Account {
    open: bool,
}

#[applies]
impl Account {
    fn opened(&mut self, _: &Opened) {
        self.open = true;
    }

    #[cfg(any())]
    fn closed(&mut self, _: &Closed) {
        self.open = false;
    }

    #[cfg_attr(all(), cfg(any()))]
    fn audited(&mut self, _: &Audited) {}
}

// Every handler off: an enum without variants, still a valid aggregate.
#[derive(Debug, Default, Aggregate)]
struct Ledger;

#[applies]
impl Ledger {
    #[cfg(any())]
    fn opened(&mut self, _: &Opened) {}
}

fn main() {
    assert!(LedgerEvent::EVENT_TYPES.is_empty());
    assert!(LedgerEvent::from_stored("Opened", 1, "null").is_err());
    let _: Option<&dyn Fn(&mut Ledger, &LedgerEvent)> = Some(&Ledger::apply);

    assert_eq!(AccountEvent::EVENT_TYPES, ["Opened"]);
    let mut account = Account::default();
    account.apply(&AccountEvent::from(Opened));
    assert!(account.open);
    assert!(AccountEvent::from_stored("Audited", 1, "null").is_err());
}
