//! An order's lifecycle with invariants enforced by its decisions, and a process manager
//! that reserves stock for submitted orders (cancelling an order whose stock is short),
//! safe to run again over the same events.
//!
//! Run with `cargo run --example orders`.

use std::collections::BTreeMap;

use es_core::{
    Aggregate, CheckpointStore, Event, EventRecord, InMemoryStore, Projector, Reaction, Repository,
    applies, read_model,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct OrderCreated {
    customer: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct ItemAdded {
    sku: String,
    quantity: u32,
    unit_price_cents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct ItemRemoved {
    sku: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct OrderSubmitted {
    total_cents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct OrderCompleted;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct OrderCancelled {
    reason: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Status {
    #[default]
    New,
    Open,
    Submitted,
    Completed,
    Cancelled,
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(name = "Order")]
struct Order {
    status: Status,
    customer: String,
    /// sku -> (quantity, unit price)
    lines: BTreeMap<String, (u32, u64)>,
}

#[applies]
impl Order {
    fn created(&mut self, e: &OrderCreated) {
        self.status = Status::Open;
        self.customer.clone_from(&e.customer);
    }
    fn item_added(&mut self, e: &ItemAdded) {
        let line = self
            .lines
            .entry(e.sku.clone())
            .or_insert((0, e.unit_price_cents));
        line.0 += e.quantity;
    }
    fn item_removed(&mut self, e: &ItemRemoved) {
        self.lines.remove(&e.sku);
    }
    fn submitted(&mut self, _: &OrderSubmitted) {
        self.status = Status::Submitted;
    }
    fn completed(&mut self, _: &OrderCompleted) {
        self.status = Status::Completed;
    }
    fn cancelled(&mut self, _: &OrderCancelled) {
        self.status = Status::Cancelled;
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
enum OrderError {
    #[error("the order already exists")]
    AlreadyCreated,
    #[error("the order is {0:?}; only an open order can change")]
    NotOpen(Status),
    #[error("quantity must be at least 1")]
    ZeroQuantity,
    #[error("the order has no item `{0}`")]
    NoSuchItem(String),
    #[error("an empty order cannot be submitted")]
    Empty,
    #[error("only a submitted order can be completed (it is {0:?})")]
    NotSubmitted(Status),
    #[error("a {0:?} order cannot be cancelled")]
    CannotCancel(Status),
}

impl Order {
    fn create(&self, customer: &str) -> Result<OrderCreated, OrderError> {
        if self.status != Status::New {
            return Err(OrderError::AlreadyCreated);
        }
        Ok(OrderCreated {
            customer: customer.into(),
        })
    }

    fn ensure_open(&self) -> Result<(), OrderError> {
        match self.status {
            Status::Open => Ok(()),
            other => Err(OrderError::NotOpen(other)),
        }
    }

    fn add_item(
        &self,
        sku: &str,
        quantity: u32,
        unit_price_cents: u64,
    ) -> Result<ItemAdded, OrderError> {
        self.ensure_open()?;
        if quantity == 0 {
            return Err(OrderError::ZeroQuantity);
        }
        Ok(ItemAdded {
            sku: sku.into(),
            quantity,
            unit_price_cents,
        })
    }

    fn remove_item(&self, sku: &str) -> Result<ItemRemoved, OrderError> {
        self.ensure_open()?;
        if !self.lines.contains_key(sku) {
            return Err(OrderError::NoSuchItem(sku.into()));
        }
        Ok(ItemRemoved { sku: sku.into() })
    }

    fn total_cents(&self) -> u64 {
        self.lines
            .values()
            .map(|&(quantity, price)| u64::from(quantity) * price)
            .sum()
    }

    fn submit(&self) -> Result<OrderSubmitted, OrderError> {
        self.ensure_open()?;
        if self.lines.is_empty() {
            return Err(OrderError::Empty);
        }
        Ok(OrderSubmitted {
            total_cents: self.total_cents(),
        })
    }

    fn complete(&self) -> Result<OrderCompleted, OrderError> {
        match self.status {
            Status::Submitted => Ok(OrderCompleted),
            other => Err(OrderError::NotSubmitted(other)),
        }
    }

    fn cancel(&self, reason: &str) -> Result<Option<OrderCancelled>, OrderError> {
        match self.status {
            // Cancelling twice is a no-op: the decision returns no event.
            Status::Cancelled => Ok(None),
            Status::Open | Status::Submitted => Ok(Some(OrderCancelled {
                reason: reason.into(),
            })),
            other => Err(OrderError::CannotCancel(other)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct Restocked {
    quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct StockReserved {
    order: String,
    quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct StockReleased {
    order: String,
    quantity: u32,
}

/// One product's stock.
#[derive(Debug, Default, Aggregate)]
#[aggregate(name = "Stock")]
struct Stock {
    available: u32,
}

#[applies]
impl Stock {
    fn restocked(&mut self, e: &Restocked) {
        self.available += e.quantity;
    }
    fn reserved(&mut self, e: &StockReserved) {
        self.available = self.available.saturating_sub(e.quantity);
    }
    fn released(&mut self, e: &StockReleased) {
        self.available += e.quantity;
    }
}

#[derive(Debug, thiserror::Error)]
#[error("only {available} left, {requested} wanted")]
struct Short {
    available: u32,
    requested: u32,
}

impl Stock {
    fn reserve(&self, order: &str, quantity: u32) -> Result<StockReserved, Short> {
        if quantity > self.available {
            return Err(Short {
                available: self.available,
                requested: quantity,
            });
        }
        Ok(StockReserved {
            order: order.to_owned(),
            quantity,
        })
    }
}

/// The process manager: when an order is submitted, reserve its stock line by line; when
/// a line is short, give back what was reserved and cancel the order. Every command runs
/// with a `Reaction` idempotency key, so delivering the same events again changes nothing:
/// a reservation already made is a duplicate, and an order this reaction already cancelled
/// is recognised first (a decision that records nothing, under the cancel key, comes back
/// as a duplicate when that key was committed).
struct ReserveStock {
    orders: Repository<Order, InMemoryStore>,
    stock: Repository<Stock, InMemoryStore>,
}

#[read_model(name = "reserve-stock", reset = Self::keep)]
impl ReserveStock {
    #[from(Order)]
    fn submitted(
        &mut self,
        _: &OrderSubmitted,
        record: &EventRecord<'_>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let id = record.stream.id;
        let reaction = Reaction::to(record, "reserve-stock");
        let cancel = reaction.step("cancel");
        let already = self
            .orders
            .execute_with_options(id, cancel.options(), |_| Ok::<_, OrderError>(()))?;
        if already.duplicate {
            return Ok(());
        }
        // The order as it was when submitted.
        let order = self
            .orders
            .load_at(id, record.stream_version)?
            .ok_or("a submitted order exists")?;
        let mut reserved = Vec::new();
        for (sku, &(quantity, _)) in &order.state.lines {
            let step = reaction.step(&format!("reserve:{sku}"));
            match self
                .stock
                .execute_with_options(sku, step.options(), |s| s.reserve(id, quantity))
            {
                Ok(_) => reserved.push((sku, quantity)),
                Err(error) => {
                    let short = error.into_rejection()?;
                    for (sku, quantity) in reserved {
                        let step = reaction.step(&format!("release:{sku}"));
                        self.stock.execute_with_options(sku, step.options(), |_| {
                            Ok::<_, Short>(StockReleased {
                                order: id.to_owned(),
                                quantity,
                            })
                        })?;
                    }
                    let reason = format!("{sku}: {short}");
                    self.orders
                        .execute_with_options(id, cancel.options(), |o| o.cancel(&reason))?;
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

impl ReserveStock {
    /// A process manager keeps no state of its own.
    fn keep(&mut self) {}
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = InMemoryStore::new();
    let repo = Repository::<Order, _>::new(store.clone());

    repo.execute("order-1", |o| o.create("Alice"))?;
    // One decision may record several events, applied in order and appended atomically.
    repo.execute("order-1", |o| {
        Ok::<_, OrderError>((o.add_item("apple", 3, 50)?, o.add_item("pear", 1, 80)?))
    })?;
    repo.execute("order-1", |o| o.remove_item("pear"))?;
    report(repo.execute("order-1", |o| o.remove_item("kiwi")));
    report(repo.execute("order-1", |o| o.add_item("fig", 0, 10)));
    let submitted = repo.execute("order-1", Order::submit)?;
    println!(
        "order-1 submitted at version {} for {} cents",
        submitted.version,
        submitted.state.total_cents()
    );
    report(repo.execute("order-1", |o| o.add_item("plum", 1, 30)));
    repo.execute("order-1", Order::complete)?;
    report(repo.execute("order-1", |o| o.cancel("changed my mind")));

    repo.execute("order-2", |o| o.create("Bob"))?;
    report(repo.execute("order-2", Order::submit));
    repo.execute("order-2", |o| o.cancel("out of stock"))?;
    let again = repo.execute("order-2", |o| o.cancel("again"))?;
    println!(
        "cancelling order-2 again recorded {} events",
        again.events.len()
    );

    for id in ["order-1", "order-2"] {
        println!("\nhistory of {id}:");
        for entry in repo.history(id)? {
            println!("  v{} {:?}", entry.record.stream_version, entry.event);
        }
        let order = repo.load(id)?.ok_or("the order exists")?;
        println!("  => {:?}, version {}", order.state.status, order.version);
    }

    // The process manager over the same log.
    let stock = Repository::<Stock, _>::new(store.clone());
    stock.execute_infallible("apple", |_| Restocked { quantity: 5 })?;
    for (id, customer, apples) in [("order-3", "Carol", 2), ("order-4", "Dan", 10)] {
        repo.execute(id, |o| o.create(customer))?;
        repo.execute(id, |o| o.add_item("apple", apples, 50))?;
        repo.execute(id, Order::submit)?;
    }
    let manager = || ReserveStock {
        orders: Repository::new(store.clone()),
        stock: Repository::new(store.clone()),
    };
    Projector::new(store.clone(), manager(), store.clone()).catch_up()?;
    let apples = |stock: &Repository<Stock, _>| -> Result<u32, es_core::Error> {
        Ok(stock.load("apple")?.map_or(0, |s| s.state.available))
    };
    println!("\nprocess manager: stock reserved for submitted orders");
    println!("  apples left: {}", apples(&stock)?);
    for id in ["order-3", "order-4"] {
        let order = repo.load(id)?.ok_or("the order exists")?;
        println!("  {id}: {:?}", order.state.status);
    }
    // Delivered again (say the checkpoint was lost in a crash): nothing changes.
    store.delete_checkpoint("reserve-stock")?;
    let again = Projector::new(store.clone(), manager(), store.clone()).catch_up()?;
    println!(
        "  delivered {} events again: apples left {}, order-4 {:?}",
        again.applied,
        apples(&stock)?,
        repo.load("order-4")?.ok_or("exists")?.state.status
    );
    Ok(())
}

fn report<T>(result: Result<T, es_core::Error<OrderError>>) {
    match result {
        Ok(_) => println!("accepted"),
        Err(error) => println!("rejected: {error}"),
    }
}
