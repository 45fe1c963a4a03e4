//! A process manager: a read model whose handlers run commands on other aggregates. An
//! order submitted reserves its stock, item by item; when an item is short, the
//! reservations already made are released and the order is cancelled (compensation). The
//! commands carry the order's correlation id and the triggering event as causation, and
//! run with `Reaction` idempotency keys, so redelivering the events (a crash between the
//! reaction and the checkpoint) changes nothing.

use std::collections::BTreeMap;

use es_core::{
    Aggregate, CheckpointStore, Event, EventRecord, EventStore, ExecuteOptions, InMemoryStore,
    Metadata, Projector, Reaction, Repository, StreamRef, applies, read_model,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Submitted {
    items: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Cancelled {
    reason: String,
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(name = "PmOrder")]
struct Order {
    submitted: bool,
    cancelled: Option<String>,
}

#[applies]
impl Order {
    fn submitted(&mut self, _: &Submitted) {
        self.submitted = true;
    }
    fn cancelled(&mut self, e: &Cancelled) {
        self.cancelled = Some(e.reason.clone());
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Restocked {
    quantity: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Reserved {
    order: String,
    quantity: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Released {
    order: String,
    quantity: u32,
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(name = "PmStock")]
struct Stock {
    available: u32,
}

#[applies]
impl Stock {
    fn restocked(&mut self, e: &Restocked) {
        self.available += e.quantity;
    }
    fn reserved(&mut self, e: &Reserved) {
        self.available -= e.quantity;
    }
    fn released(&mut self, e: &Released) {
        self.available += e.quantity;
    }
}

#[derive(Debug, thiserror::Error)]
#[error("only {available} left, {requested} requested")]
struct Short {
    available: u32,
    requested: u32,
}

impl Stock {
    fn reserve(&self, order: &str, quantity: u32) -> Result<Reserved, Short> {
        if quantity > self.available {
            return Err(Short {
                available: self.available,
                requested: quantity,
            });
        }
        Ok(Reserved {
            order: order.to_owned(),
            quantity,
        })
    }
}

/// Reserves an order's stock when it is submitted; releases and cancels when an item is
/// short.
struct ReserveStock {
    stock: Repository<Stock, InMemoryStore>,
    orders: Repository<Order, InMemoryStore>,
}

type ReactionError = Box<dyn std::error::Error + Send + Sync>;

#[read_model(name = "reserve-stock", reset = Self::keep)]
impl ReserveStock {
    #[from(Order)]
    fn submitted(&mut self, e: &Submitted, record: &EventRecord<'_>) -> Result<(), ReactionError> {
        let order = record.stream.id;
        let reaction = Reaction::to(record, "reserve-stock");
        // Already cancelled by this reaction (a redelivery)? A decision that records
        // nothing, under the cancel key, comes back as a duplicate then.
        let already =
            self.orders
                .execute_with_options(order, reaction.step("cancel").options(), |_| {
                    Ok::<_, std::convert::Infallible>(())
                })?;
        if already.duplicate {
            return Ok(());
        }
        let mut reserved = Vec::new();
        for (sku, &quantity) in &e.items {
            let step = reaction.step(&format!("reserve:{sku}"));
            match self
                .stock
                .execute_with_options(sku, step.options(), |s| s.reserve(order, quantity))
            {
                Ok(_) => reserved.push((sku, quantity)),
                Err(error) => {
                    let short = error.into_rejection()?;
                    // Compensate: give back what this order took, then cancel it.
                    for (sku, quantity) in reserved {
                        let step = reaction.step(&format!("release:{sku}"));
                        self.stock.execute_with_options(sku, step.options(), |_| {
                            Ok::<_, std::convert::Infallible>(Released {
                                order: order.to_owned(),
                                quantity,
                            })
                        })?;
                    }
                    let step = reaction.step("cancel");
                    self.orders
                        .execute_with_options(order, step.options(), |_| {
                            Ok::<_, std::convert::Infallible>(Cancelled {
                                reason: format!("{sku}: {short}"),
                            })
                        })?;
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

impl ReserveStock {
    /// A process manager keeps no state of its own to reset.
    fn keep(&mut self) {}
}

fn available(store: &InMemoryStore, sku: &str) -> u32 {
    Repository::<Stock, _>::new(store.clone())
        .load(sku)
        .unwrap()
        .map_or(0, |s| s.state.available)
}

#[test]
fn orders_reserve_stock_compensate_when_short_and_survive_redelivery() {
    let store = InMemoryStore::new();
    let stock = Repository::<Stock, _>::new(store.clone());
    let orders = Repository::<Order, _>::new(store.clone());
    for (sku, quantity) in [("armor", 5), ("shield", 1)] {
        stock
            .execute_infallible(sku, |_| Restocked { quantity })
            .unwrap();
    }
    let flow = Metadata::new().with_correlation_id("checkout-1");
    orders
        .execute_with_options("o-1", ExecuteOptions::new().metadata(&flow), |_| {
            Ok::<_, std::convert::Infallible>(Submitted {
                items: BTreeMap::from([("armor".into(), 2), ("shield".into(), 1)]),
            })
        })
        .unwrap();
    // Wants more shields than are left: its armor reservation is released, it is cancelled.
    orders
        .execute_infallible("o-2", |_| Submitted {
            items: BTreeMap::from([("armor".into(), 1), ("shield".into(), 1)]),
        })
        .unwrap();

    let manager = || ReserveStock {
        stock: Repository::new(store.clone()),
        orders: Repository::new(store.clone()),
    };
    let mut projector = Projector::new(store.clone(), manager(), store.clone());
    projector.catch_up().unwrap();

    let check = |when: &str| {
        assert_eq!(
            available(&store, "armor"),
            3,
            "{when}: o-1 holds 2, o-2 gave its 1 back"
        );
        assert_eq!(
            available(&store, "shield"),
            0,
            "{when}: o-1 holds the only shield"
        );
        let o1 = orders.load("o-1").unwrap().unwrap();
        assert_eq!(o1.state.cancelled, None, "{when}");
        let o2 = orders.load("o-2").unwrap().unwrap();
        assert_eq!(
            o2.state.cancelled.as_deref(),
            Some("shield: only 0 left, 1 requested"),
            "{when}"
        );
        // Restocked, o-1's armor, o-2's armor, o-2's release: nothing doubled.
        let armors = store
            .read_stream(StreamRef::new("PmStock", "armor"), 1)
            .unwrap();
        assert_eq!(armors.len(), 4, "{when}: {armors:#?}");
    };
    check("first delivery");

    // The commands carry the flow's correlation id and their cause.
    let armors = store
        .read_stream(StreamRef::new("PmStock", "armor"), 1)
        .unwrap();
    let submitted = store
        .read_stream(StreamRef::new("PmOrder", "o-1"), 1)
        .unwrap();
    let reservation = &armors[1].metadata;
    assert_eq!(reservation.correlation_id.as_deref(), Some("checkout-1"));
    assert_eq!(
        reservation.causation_id.as_deref(),
        Some(submitted[0].event_id.to_string().as_str())
    );
    let o2_submitted = store
        .read_stream(StreamRef::new("PmOrder", "o-2"), 1)
        .unwrap();
    let release = &armors[3].metadata;
    assert_eq!(
        release.correlation_id.as_deref(),
        Some(o2_submitted[0].event_id.to_string().as_str()),
        "an event without a correlation id starts the flow"
    );

    // Redelivery: the checkpoint is lost (a crash between the reactions and the
    // checkpoint), and a new projector delivers every event again.
    store.delete_checkpoint("reserve-stock").unwrap();
    let mut again = Projector::new(store.clone(), manager(), store.clone());
    let caught_up = again.catch_up().unwrap();
    assert!(caught_up.applied >= 2, "the orders were delivered again");
    check("after redelivery");
}
