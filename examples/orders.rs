//! An order's lifecycle with invariants enforced by its decisions.
//!
//! Run with `cargo run --example orders`.

use std::collections::BTreeMap;

use es_core::{Aggregate, Event, InMemoryStore, Repository, applies};
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repo = Repository::<Order, _>::new(InMemoryStore::new());

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
    Ok(())
}

fn report<T>(result: Result<T, es_core::Error<OrderError>>) {
    match result {
        Ok(_) => println!("accepted"),
        Err(error) => println!("rejected: {error}"),
    }
}
