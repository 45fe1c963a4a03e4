// `#[applies(event_enum = ..., vis = ..., derive(...))]`: the enum has the given name,
// visibility and derives (here `PartialEq`, which the default `Debug, Clone` lacks).
use es_core::{Aggregate, Event, EventEnum, InMemoryStore, Repository, applies};
use serde::{Deserialize, Serialize};

mod domain {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
    pub struct Opened {
        pub owner: String,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
    #[event(name = "Deposited.v1")]
    pub struct Deposited {
        pub amount: u64,
    }

    // `vis = "pub(crate)"` needs an aggregate no more visible than that.
    #[derive(Debug, Default, Aggregate)]
    #[aggregate(name = "bank:Account")]
    pub(crate) struct Account {
        pub owner: String,
        pub balance: u64,
    }

    #[applies(event_enum = AccountEvent, vis = "pub(crate)", derive(Debug, Clone, PartialEq))]
    impl Account {
        fn opened(&mut self, e: &Opened) {
            self.owner.clone_from(&e.owner);
        }
        fn deposited(&mut self, e: &Deposited) {
            self.balance += e.amount;
        }
    }

    // No derives at all.
    #[derive(Default, Aggregate)]
    pub struct Bare {
        pub count: u64,
    }

    #[applies(derive(), event_enum = BareChange)]
    impl Bare {
        fn counted(&mut self, _: &Deposited) {
            self.count += 1;
        }
    }
}

use domain::{Account, AccountEvent, Bare, BareChange, Deposited, Opened};

fn main() {
    let repo = Repository::<Account, _>::new(InMemoryStore::new());
    let executed = repo
        .execute("a-1", |_| {
            Ok::<_, std::io::Error>((
                Opened {
                    owner: "Ann".into(),
                },
                Deposited { amount: 7 },
            ))
        })
        .unwrap();
    // PartialEq, Clone and Debug on the renamed enum.
    assert_eq!(
        executed.events,
        vec![
            AccountEvent::Opened(Opened {
                owner: "Ann".into()
            }),
            AccountEvent::Deposited(Deposited { amount: 7 }),
        ]
    );
    assert_eq!(
        executed.events[1].clone(),
        AccountEvent::from(Deposited { amount: 7 })
    );
    assert_eq!(executed.events[1].event_type(), "Deposited.v1");
    assert_eq!(<Account as Aggregate>::AGGREGATE_TYPE, "bank:Account");
    assert_eq!(executed.state.balance, 7);

    let bare = Repository::<Bare, _>::new(InMemoryStore::new());
    let executed = bare
        .execute("b-1", |_| {
            Ok::<_, std::io::Error>([Deposited { amount: 1 }, Deposited { amount: 2 }])
        })
        .unwrap();
    assert_eq!(executed.state.count, 2);
    assert!(matches!(
        executed.events[0],
        BareChange::Deposited(Deposited { amount: 1 })
    ));
}
