//! Stock counts per item, with one inventory stream per warehouse sharing one store, and
//! two read models built from the global log over every inventory: the most collected
//! items, and where each item was collected.
//!
//! Run with `cargo run --example inventory`.

use std::collections::{BTreeMap, BTreeSet};

use es_core::{
    Aggregate, Event, EventRecord, EventStore, InMemoryStore, Projector, Repository, applies,
    read_model,
};
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

/// How often each item was added, over every inventory.
#[derive(Debug, Default)]
struct MostCollected {
    additions: BTreeMap<String, u32>,
}

#[read_model(name = "most-collected", from = Inventory)]
impl MostCollected {
    fn added(&mut self, e: &ItemsAdded) {
        *self.additions.entry(e.item.clone()).or_default() += 1;
    }
}

impl MostCollected {
    /// The `n` items added most often, most first (ties by name).
    fn top(&self, n: usize) -> Vec<(&str, u32)> {
        let mut items: Vec<(&str, u32)> = self
            .additions
            .iter()
            .map(|(item, count)| (item.as_str(), *count))
            .collect();
        items.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        items.truncate(n);
        items
    }
}

/// Where each item was ever added: item -> the inventories (places) it was added to.
#[derive(Debug, Default)]
struct ItemOrigins {
    places: BTreeMap<String, BTreeSet<String>>,
}

#[read_model(name = "item-origins", from = Inventory)]
impl ItemOrigins {
    fn added(&mut self, e: &ItemsAdded, record: &EventRecord<'_>) {
        self.places
            .entry(e.item.clone())
            .or_default()
            .insert(record.stream.id.to_owned());
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

    // Read models over the same log. The store keeps their checkpoints too.
    let mut most_collected =
        Projector::new(store.clone(), MostCollected::default(), store.clone()).with_batch_size(4);
    let mut origins = Projector::new(store.clone(), ItemOrigins::default(), store.clone());
    most_collected.catch_up()?;
    origins.catch_up()?;

    // More inventories; the projectors apply only what is new.
    repo.execute("cave", |inv| inv.restock(&[("sword", 1), ("potion", 2)]))?;
    repo.execute("tower", |inv| inv.add("sword", 1))?;
    repo.execute("market", |inv| inv.restock(&[("potion", 5), ("sword", 2)]))?;
    repo.execute("tower", |inv| inv.remove("sword", 1))?;
    let applied = most_collected.catch_up()?.applied;
    origins.catch_up()?;
    println!("\nread models ({applied} new additions applied):");
    println!("  most collected: {:?}", most_collected.read_model().top(2));
    println!("  item origins:");
    for (item, places) in &origins.read_model().places {
        println!("    {item:>6}: {places:?}");
    }

    // A rebuild (after the read model's code changed, say) replays the whole log.
    let rebuilt = most_collected.rebuild(|progress| {
        println!(
            "  rebuilding most-collected: {}/{} events",
            progress.done, progress.total
        );
    })?;
    println!(
        "  rebuilt from {} additions: {:?}",
        rebuilt.applied,
        most_collected.read_model().top(3)
    );
    Ok(())
}
