// Read models: handlers with and without the envelope, returning `()` or a `Result`, events
// of two aggregates with the same stored name, a block-wide `from`, a custom name and reset;
// generated code stays warning-free and names everything by absolute path.
#![deny(warnings, unused_qualifications)]

use es_core::{Aggregate, Event, EventRecord, ReadModel, applies, read_model};
use serde::{Deserialize, Serialize};

mod shop {
    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    #[event(name = "Created")]
    pub struct ShopCreated {
        pub city: String,
    }

    #[derive(Debug, Default, Aggregate)]
    pub struct Shop {
        pub city: String,
    }

    #[applies]
    impl Shop {
        fn created(&mut self, e: &ShopCreated) {
            self.city.clone_from(&e.city);
        }
    }
}

mod user {
    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    #[event(name = "Created")]
    pub struct UserCreated {
        pub name: String,
    }

    #[derive(Debug, Default, Aggregate)]
    pub struct User {
        pub name: String,
    }

    #[applies]
    impl User {
        fn created(&mut self, e: &UserCreated) {
            self.name.clone_from(&e.name);
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no name")]
struct NoName;

#[derive(Debug, Default)]
struct Directory {
    cities: Vec<String>,
    names: Vec<(String, u64)>,
}

#[read_model(name = "directory")]
impl Directory {
    #[from(shop::Shop)]
    fn shop(&mut self, e: &shop::ShopCreated) {
        self.cities.push(e.city.clone());
    }

    #[from(user::User)]
    fn user(&mut self, e: &user::UserCreated, record: &EventRecord<'_>) -> Result<(), NoName> {
        if e.name.is_empty() {
            return Err(NoName);
        }
        self.names.push((e.name.clone(), record.global_position));
        Ok(())
    }
}

/// No `Default`: a reset function instead.
struct Cities(Vec<String>);

#[read_model(from = shop::Shop, reset = Self::clear)]
impl Cities {
    fn created(&mut self, e: &shop::ShopCreated) -> Result<(), String> {
        self.0.push(e.city.clone());
        Ok(())
    }
}

impl Cities {
    fn clear(&mut self) {
        self.0.clear();
    }
}

/// A handler compiled out takes its entry and its dispatch with it.
#[derive(Default)]
struct CfgOff(u32);

#[read_model(from = shop::Shop)]
impl CfgOff {
    fn created(&mut self, _: &shop::ShopCreated) {
        self.0 += 1;
    }
    #[cfg(any())]
    #[from(user::User)]
    fn user(&mut self, _: &user::UserCreated) {
        self.0 += 100;
    }
}

// Shadowing what generated code might name unqualified changes nothing.
#[allow(dead_code)]
mod shadowed {
    use super::*;

    struct Result;
    struct Ok;
    struct Handled;
    struct ApplyError;
    type Option = ();

    #[derive(Default)]
    pub struct Count(pub u32);

    #[read_model(from = shop::Shop)]
    impl Count {
        fn created(&mut self, _: &shop::ShopCreated, _: &EventRecord<'_>) {
            self.0 += 1;
        }
    }
}

fn main() {
    assert_eq!(Directory::NAME, "directory");
    assert_eq!(Directory::HANDLES.len(), 2);
    assert_eq!(Directory::HANDLES[0].event_type, Directory::HANDLES[1].event_type);
    assert_ne!(Directory::HANDLES[0].aggregate_type, Directory::HANDLES[1].aggregate_type);
    assert_eq!(Cities::NAME, "Cities");
    assert_eq!(CfgOff::HANDLES.len(), 1);
    assert_eq!(CfgOff::default().0, 0);
    let mut cities = Cities(vec!["Oslo".into()]);
    cities.reset();
    assert!(cities.0.is_empty());
    let mut count = shadowed::Count(3);
    count.reset();
    assert_eq!(count.0, 0);
    let directory = Directory::default();
    assert!(directory.cities.is_empty() && directory.names.is_empty());
}
