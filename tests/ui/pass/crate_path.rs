// `crate = "..."`: the runtime under another name. Generated code names it only through the
// given path.
use es_core as renamed;

mod inner {
    pub use es_core as runtime;
}

mod domain {
    use crate::inner::runtime::{Aggregate, Event, applies};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    #[event(crate = "crate::inner::runtime", version = 2, upcast(from = 1, via = OpenedV1))]
    pub struct Opened {
        pub owner: String,
    }

    #[derive(Deserialize)]
    pub struct OpenedV1 {
        pub name: String,
    }

    impl From<OpenedV1> for Opened {
        fn from(v1: OpenedV1) -> Self {
            Self { owner: v1.name }
        }
    }

    #[derive(Debug, Default, Aggregate)]
    #[aggregate(crate = "crate::inner::runtime")]
    pub struct Account {
        pub owner: String,
    }

    #[applies(crate = "crate::inner::runtime")]
    impl Account {
        fn opened(&mut self, e: &Opened) {
            self.owner.clone_from(&e.owner);
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, renamed::Event)]
#[event(crate = "renamed")]
struct Closed {}

#[derive(Debug, Default, renamed::Aggregate)]
#[aggregate(crate = "renamed")]
struct Door {
    closed: bool,
}

#[renamed::applies(crate = "renamed")]
impl Door {
    fn closed(&mut self, _: &Closed) {
        self.closed = true;
    }
}

fn main() {
    let opened: domain::Opened =
        renamed::decode_event("Opened", 1, &serde_json::json!({ "name": "Ann" }).to_string()).unwrap();
    assert_eq!(opened.owner, "Ann");

    let repo = renamed::Repository::<domain::Account, _>::new(renamed::InMemoryStore::new());
    let executed = repo
        .execute("a-1", |_| Ok::<_, std::io::Error>(opened.clone()))
        .unwrap();
    assert_eq!(executed.state.owner, "Ann");

    let doors = renamed::Repository::<Door, _>::new(renamed::InMemoryStore::new());
    let executed = doors
        .execute("d-1", |_| Ok::<_, std::io::Error>(Closed {}))
        .unwrap();
    assert!(executed.state.closed);
}
