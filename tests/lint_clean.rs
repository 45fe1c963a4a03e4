//! Generated code is lint-clean: this domain compiles under `warnings`, `missing_docs`,
//! `unused_qualifications` and clippy's pedantic group, all denied. `cargo clippy
//! --all-targets -- -D warnings` checks it with clippy; `tests/ui/pass/lint_clean.rs`
//! compiles the same file as a binary under rustc's lints.
#![deny(warnings, missing_docs, unused_qualifications, clippy::pedantic)]

use std::fmt;

use es_core::{Aggregate, Event, EventEnum, InMemoryStore, Repository, UpcastError, applies};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A cart was created; stored as `BasketCreated` by the first release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "CartCreated", aliases("BasketCreated"))]
pub struct CartCreated {
    /// Who owns the cart.
    pub owner: String,
}

/// An item was added. Version 1 stored `{"sku"}`, version 2 added `qty`, version 3 renamed
/// it to `quantity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(
    version = 3,
    upcast(from = 1, with = add_quantity),
    upcast(from = 2, via = ItemAddedV2)
)]
pub struct ItemAdded {
    /// The article.
    pub sku: String,
    /// How many.
    pub quantity: u32,
}

/// `ItemAdded` as version 2 stored it.
#[derive(Deserialize)]
struct ItemAddedV2 {
    sku: String,
    qty: u32,
}

impl From<ItemAddedV2> for ItemAdded {
    fn from(v2: ItemAddedV2) -> Self {
        Self {
            sku: v2.sku,
            quantity: v2.qty,
        }
    }
}

fn add_quantity(mut payload: Value) -> Result<Value, UpcastError> {
    payload
        .as_object_mut()
        .ok_or_else(|| UpcastError::new("not an object"))?
        .insert("qty".into(), 1.into());
    Ok(payload)
}

/// An item was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
pub struct ItemRemoved {
    /// The article.
    pub sku: String,
}

/// A shopping cart.
#[derive(Debug, Default, Aggregate)]
#[aggregate(name = "Cart")]
pub struct Cart {
    owner: Option<String>,
    items: Vec<(String, u32)>,
}

#[applies(derive(Debug, Clone, PartialEq))]
impl Cart {
    fn created(&mut self, e: &CartCreated) {
        self.owner = Some(e.owner.clone());
    }

    fn added(&mut self, e: &ItemAdded) {
        self.items.push((e.sku.clone(), e.quantity));
    }

    fn removed(&mut self, e: &ItemRemoved) {
        self.items.retain(|(sku, _)| *sku != e.sku);
    }
}

/// Why a cart command was rejected.
#[derive(Debug, PartialEq, Eq)]
pub enum CartError {
    /// The cart does not exist yet.
    NoCart,
    /// A cart needs an owner.
    NoOwner,
}

impl fmt::Display for CartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoCart => "the cart does not exist",
            Self::NoOwner => "a cart needs an owner",
        })
    }
}

impl std::error::Error for CartError {}

impl Cart {
    fn create(&self, owner: &str) -> Result<Option<CartCreated>, CartError> {
        if owner.is_empty() {
            return Err(CartError::NoOwner);
        }
        Ok(self.owner.is_none().then(|| CartCreated {
            owner: owner.to_owned(),
        }))
    }

    fn replace(&self, old: &str, new: &str) -> Result<(ItemRemoved, ItemAdded), CartError> {
        if self.owner.is_none() {
            return Err(CartError::NoCart);
        }
        Ok((
            ItemRemoved {
                sku: old.to_owned(),
            },
            ItemAdded {
                sku: new.to_owned(),
                quantity: 1,
            },
        ))
    }
}

/// The same, through a renamed runtime (`crate = "rt"`) whose items are also imported: the
/// generated paths must not trip `unused_qualifications`.
pub mod renamed {
    use es_core as rt;
    use rt::{Aggregate, Event, applies};
    use serde::{Deserialize, Serialize};

    /// A light was switched.
    #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    #[event(crate = "rt", version = 2, upcast(from = 1, via = SwitchedV1))]
    pub struct Switched {
        /// On or off.
        pub on: bool,
    }

    /// `Switched` as version 1 stored it.
    #[derive(Deserialize)]
    pub struct SwitchedV1 {
        state: String,
    }

    impl From<SwitchedV1> for Switched {
        fn from(v1: SwitchedV1) -> Self {
            Self {
                on: v1.state == "on",
            }
        }
    }

    /// A light.
    #[derive(Debug, Default, Aggregate)]
    #[aggregate(crate = "rt")]
    pub struct Light {
        /// Whether it is on.
        pub on: bool,
    }

    /// The bulb burnt out.
    #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    #[event(crate = "rt")]
    pub struct BurntOut {}

    #[applies(crate = "rt")]
    impl Light {
        fn switched(&mut self, e: &Switched) {
            self.on = e.on;
        }

        fn burnt_out(&mut self, _: &BurntOut) {
            self.on = false;
        }
    }

    pub(crate) fn demo() {
        let repo = rt::Repository::<Light, _>::new(rt::InMemoryStore::new());
        let executed = repo
            .execute("l-1", |light| {
                Ok::<_, std::io::Error>(Switched { on: !light.on })
            })
            .unwrap();
        assert!(executed.state.on);
        let executed = repo
            .execute("l-1", |_| Ok::<_, std::io::Error>(BurntOut {}))
            .unwrap();
        assert!(!executed.state.on);
        let old: Switched = rt::decode_event("Switched", 1, r#"{"state": "on"}"#).unwrap();
        assert!(old.on);
    }
}

/// Event types named alike, as domains often have them: the generated variants mirror the
/// names, so clippy's `enum_variant_names` must not fire on the enum.
pub mod stock {
    use es_core::{Aggregate, Event, applies};
    use serde::{Deserialize, Serialize};

    /// Stock was received.
    #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    pub struct StockReceivedEvent {
        /// How many.
        pub count: u32,
    }

    /// Stock was shipped.
    #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    pub struct StockShippedEvent {
        /// How many.
        pub count: u32,
    }

    /// Stock was counted.
    #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    pub struct StockCountedEvent {
        /// How many were found.
        pub count: u32,
    }

    /// A stock level.
    #[derive(Debug, Default, Aggregate)]
    pub struct Stock {
        /// Units in stock.
        pub level: u32,
    }

    #[applies(event_enum = StockEvent)]
    impl Stock {
        fn received(&mut self, e: &StockReceivedEvent) {
            self.level += e.count;
        }

        fn shipped(&mut self, e: &StockShippedEvent) {
            self.level -= e.count;
        }

        fn counted(&mut self, e: &StockCountedEvent) {
            self.level = e.count;
        }
    }

    pub(crate) fn demo() {
        let mut stock = Stock::default();
        for event in [
            StockEvent::from(StockReceivedEvent { count: 5 }),
            StockShippedEvent { count: 2 }.into(),
            StockCountedEvent { count: 4 }.into(),
        ] {
            stock.apply(&event);
        }
        assert_eq!(stock.level, 4);
    }
}

/// A read model over the carts: `#[read_model]` output under the same lints.
pub mod popular {
    use std::collections::BTreeMap;

    use es_core::{EventRecord, Projector, ReadModel, Repository, read_model};

    use super::{Cart, ItemAdded, ItemRemoved};

    /// Quantities added per article, over every cart.
    #[derive(Debug, Default)]
    pub struct Popular {
        /// Article -> quantity added.
        pub added: BTreeMap<String, u64>,
        /// The global position of the last event applied.
        pub last: u64,
    }

    /// The handler refused an event.
    #[derive(Debug)]
    pub struct Refused;

    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("refused")
        }
    }

    impl std::error::Error for Refused {}

    #[read_model(name = "popular", from = Cart)]
    impl Popular {
        fn added(&mut self, e: &ItemAdded, record: &EventRecord<'_>) {
            *self.added.entry(e.sku.clone()).or_default() += u64::from(e.quantity);
            self.last = record.global_position;
        }

        fn removed(&mut self, e: &ItemRemoved) -> Result<(), Refused> {
            if e.sku.is_empty() {
                return Err(Refused);
            }
            self.added.remove(&e.sku);
            Ok(())
        }
    }

    /// Projects a cart's events.
    ///
    /// # Panics
    ///
    /// If the generated code misbehaves.
    pub fn demo() {
        let store = es_core::InMemoryStore::new();
        let repo = Repository::<Cart, _>::new(store.clone());
        repo.execute("c", |cart| cart.create("Eve")).unwrap();
        let mut projector = Projector::new(store.clone(), Popular::default(), store);
        projector.catch_up().unwrap();
        assert_eq!(Popular::NAME, "popular");
        assert_eq!(Popular::HANDLES.len(), 2);
    }
}

/// Runs the domain: decisions, the repository, and upcasting stored payloads.
///
/// # Panics
///
/// If the generated code misbehaves.
pub fn demo() {
    let repo = Repository::<Cart, _>::new(InMemoryStore::new());
    let rejected = repo.execute("c-1", |cart| cart.replace("a", "b"));
    assert_eq!(rejected.unwrap_err().rejection(), Some(&CartError::NoCart));
    let no_owner = repo.execute("c-1", |cart| cart.create(""));
    assert_eq!(no_owner.unwrap_err().rejection(), Some(&CartError::NoOwner));
    repo.execute("c-1", |cart| cart.create("Alice")).unwrap();
    let again = repo.execute("c-1", |cart| cart.create("Bob")).unwrap();
    assert!(again.events.is_empty());
    repo.execute("c-1", |_| {
        Ok::<_, CartError>(vec![
            ItemAdded {
                sku: "a".into(),
                quantity: 2,
            },
            ItemAdded {
                sku: "c".into(),
                quantity: 1,
            },
        ])
    })
    .unwrap();
    let executed = repo.execute("c-1", |cart| cart.replace("a", "b")).unwrap();
    assert_eq!(
        executed.events,
        [
            CartEvent::ItemRemoved(ItemRemoved { sku: "a".into() }),
            CartEvent::ItemAdded(ItemAdded {
                sku: "b".into(),
                quantity: 1,
            }),
        ]
    );
    assert_eq!(executed.state.owner.as_deref(), Some("Alice"));
    assert_eq!(
        executed.state.items,
        [("c".to_owned(), 1), ("b".to_owned(), 1)]
    );

    assert_eq!(Cart::AGGREGATE_TYPE, "Cart");
    assert_eq!(
        CartEvent::EVENT_TYPES,
        ["CartCreated", "ItemAdded", "ItemRemoved"]
    );
    let created =
        CartEvent::from_stored("BasketCreated", 1, &json!({"owner": "Eve"}).to_string()).unwrap();
    assert_eq!(
        created,
        CartEvent::CartCreated(CartCreated {
            owner: "Eve".into()
        })
    );
    let v1: ItemAdded =
        es_core::decode_event("ItemAdded", 1, &json!({"sku": "x"}).to_string()).unwrap();
    assert_eq!((v1.sku.as_str(), v1.quantity), ("x", 1));
    let v2: ItemAdded =
        es_core::decode_event("ItemAdded", 2, &json!({"sku": "y", "qty": 4}).to_string()).unwrap();
    assert_eq!((v2.sku.as_str(), v2.quantity), ("y", 4));
    assert_eq!(ItemAdded::VERSION, 3);
    renamed::demo();
    stock::demo();
    popular::demo();
}

#[test]
fn generated_code_is_lint_clean_and_works() {
    demo();
}
