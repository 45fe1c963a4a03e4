//! Two Rust types stored under one aggregate type would share streams: loading one would
//! return the other's state. The repository refuses that at first use unless both types
//! name the aggregate type explicitly.

use es_core::{Aggregate, Error, Event, InMemoryStore, Repository, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Opened {
    owner: String,
}

mod retail {
    use super::*;

    #[derive(Debug, Default, Aggregate)]
    pub struct Account {
        pub owner: String,
    }

    #[applies]
    impl Account {
        fn opened(&mut self, e: &Opened) {
            self.owner.clone_from(&e.owner);
        }
    }
}

mod corporate {
    use super::*;

    #[derive(Debug, Default, Aggregate)]
    pub struct Account {
        pub company: String,
    }

    #[applies]
    impl Account {
        fn opened(&mut self, e: &Opened) {
            self.company.clone_from(&e.owner);
        }
    }
}

#[test]
fn two_structs_named_alike_cannot_share_streams_by_accident() {
    assert_eq!(retail::Account::AGGREGATE_TYPE, "Account");
    assert_eq!(corporate::Account::AGGREGATE_TYPE, "Account");
    let store = InMemoryStore::new();
    let retail = Repository::<retail::Account, _>::new(&store);
    // The same type again (a second repository, a clone) is fine.
    let again = Repository::<retail::Account, _>::new(&store);
    retail
        .execute_infallible("acc-1", |_| Opened {
            owner: "Ann".into(),
        })
        .unwrap();
    assert_eq!(again.load("acc-1").unwrap().unwrap().state.owner, "Ann");

    let corporate = Repository::<corporate::Account, _>::new(&store);
    let error = corporate.load("acc-1").unwrap_err();
    match &error {
        Error::AggregateTypeClash {
            aggregate_type,
            this,
            other,
        } => {
            assert_eq!(*aggregate_type, "Account");
            assert!(this.ends_with("corporate::Account"), "{this}");
            assert!(other.ends_with("retail::Account"), "{other}");
        }
        other => panic!("expected AggregateTypeClash, got {other:?}"),
    }
    assert!(error.to_string().contains("#[aggregate(name"), "{error}");
    let command = corporate.execute_infallible("acc-2", |_| Opened {
        owner: "Corp".into(),
    });
    assert!(
        matches!(command, Err(Error::AggregateTypeClash { .. })),
        "{command:?}"
    );
    assert_eq!(store.len(), 1, "the clashing repository wrote nothing");
    // The first type keeps working.
    assert!(retail.load("acc-1").unwrap().is_some());
}

mod ledger_v1 {
    use super::*;

    #[derive(Debug, Default, Aggregate)]
    #[aggregate(name = "Ledger")]
    pub struct Ledger {
        pub owner: String,
    }

    #[applies]
    impl Ledger {
        fn opened(&mut self, e: &Opened) {
            self.owner.clone_from(&e.owner);
        }
    }
}

mod ledger_view {
    use super::*;

    /// A second view of the same streams, on purpose: both name the aggregate type.
    #[derive(Debug, Default, Aggregate)]
    #[aggregate(name = "Ledger")]
    pub struct Ledger {
        pub opened: bool,
    }

    #[applies]
    impl Ledger {
        fn opened(&mut self, _: &Opened) {
            self.opened = true;
        }
    }
}

#[test]
fn types_that_both_name_the_aggregate_type_may_share_its_streams() {
    let store = InMemoryStore::new();
    let writer = Repository::<ledger_v1::Ledger, _>::new(&store);
    writer
        .execute_infallible("l-1", |_| Opened {
            owner: "Ann".into(),
        })
        .unwrap();
    let view = Repository::<ledger_view::Ledger, _>::new(&store);
    assert!(view.load("l-1").unwrap().unwrap().state.opened);
}
