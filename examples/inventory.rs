//! Stock counts per item, with one inventory stream per warehouse sharing one store.
//!
//! Run with `cargo run --example inventory`.

use std::collections::BTreeMap;

use es_core::{Aggregate, Event, EventStore, InMemoryStore, Repository, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct ItemsAdded {
    item: String,
    count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct ItemsRemoved {
    item: String,
    count: u32,
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(name = "Inventory")]
struct Inventory {
    counts: BTreeMap<String, u32>,
}

#[applies]
impl Inventory {
    fn added(&mut self, e: &ItemsAdded) {
        *self.counts.entry(e.item.clone()).or_default() += e.count;
    }
    fn removed(&mut self, e: &ItemsRemoved) {
        if let Some(count) = self.counts.get_mut(&e.item) {
            *count -= e.count;
            if *count == 0 {
                self.counts.remove(&e.item);
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum InventoryError {
    #[error("count must be at least 1")]
    Zero,
    #[error("only {available} of `{item}` in stock, cannot remove {requested}")]
    Insufficient {
        item: String,
        available: u32,
        requested: u32,
    },
}

impl Inventory {
    fn count(&self, item: &str) -> u32 {
        self.counts.get(item).copied().unwrap_or(0)
    }

    fn add(&self, item: &str, count: u32) -> Result<ItemsAdded, InventoryError> {
        if count == 0 {
            return Err(InventoryError::Zero);
        }
        Ok(ItemsAdded {
            item: item.into(),
            count,
        })
    }

    fn remove(&self, item: &str, count: u32) -> Result<ItemsRemoved, InventoryError> {
        if count == 0 {
            return Err(InventoryError::Zero);
        }
        let available = self.count(item);
        if available < count {
            return Err(InventoryError::Insufficient {
                item: item.into(),
                available,
                requested: count,
            });
        }
        Ok(ItemsRemoved {
            item: item.into(),
            count,
        })
    }

    /// Moves stock in bulk: several events from one decision.
    fn restock(&self, items: &[(&str, u32)]) -> Result<Vec<ItemsAdded>, InventoryError> {
        items
            .iter()
            .map(|&(item, count)| self.add(item, count))
            .collect()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = InMemoryStore::new();
    let repo = Repository::<Inventory, _>::new(store.clone());

    repo.execute("north", |inv| {
        inv.restock(&[("bolt", 100), ("nut", 250), ("gear", 4)])
    })?;
    repo.execute("south", |inv| inv.add("bolt", 20))?;
    repo.execute("north", |inv| inv.remove("gear", 3))?;
    repo.execute("north", |inv| inv.remove("gear", 1))?;
    if let Err(error) = repo.execute("south", |inv| inv.remove("bolt", 50)) {
        println!("rejected: {error}");
    }
    if let Err(error) = repo.execute("south", |inv| inv.add("nut", 0)) {
        println!("rejected: {error}");
    }

    for warehouse in ["north", "south"] {
        let inv = repo.load(warehouse)?.ok_or("the warehouse exists")?;
        println!("{warehouse} (version {}):", inv.version);
        for (item, count) in &inv.state.counts {
            println!("  {item:>5}: {count}");
        }
    }

    println!("\nthe global log, as a read model would see it:");
    for event in store.read_all(1, usize::MAX)? {
        println!(
            "  #{} {}/{} v{} {} {}",
            event.global_position,
            event.aggregate_type,
            event.stream_id,
            event.stream_version,
            event.event_type,
            event.payload
        );
    }
    Ok(())
}
