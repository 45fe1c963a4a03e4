//! Generated `apply` dispatch vs a hand-written `match`, folding 10,000 events.
//!
//! `cargo bench --bench apply`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use es_core::{Aggregate, Event, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Opened {
    owner: String,
}
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Deposited {
    amount: u64,
}
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Withdrawn {
    amount: u64,
}
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Frozen;

#[derive(Debug, Default, Aggregate)]
struct Account {
    owner_len: usize,
    balance: u64,
    frozen: bool,
}

#[applies]
impl Account {
    fn opened(&mut self, e: &Opened) {
        self.owner_len = e.owner.len();
    }
    fn deposited(&mut self, e: &Deposited) {
        self.balance = self.balance.wrapping_add(e.amount);
    }
    fn withdrawn(&mut self, e: &Withdrawn) {
        self.balance = self.balance.wrapping_sub(e.amount);
    }
    fn frozen(&mut self, _: &Frozen) {
        self.frozen = true;
    }
}

/// The same aggregate written by hand, as users do without the macros.
#[derive(Debug, Default)]
struct HandAccount {
    owner_len: usize,
    balance: u64,
    frozen: bool,
}

enum HandEvent {
    Opened(Opened),
    Deposited(Deposited),
    Withdrawn(Withdrawn),
    Frozen(Frozen),
}

impl HandAccount {
    fn apply(&mut self, event: &HandEvent) {
        match event {
            HandEvent::Opened(e) => self.owner_len = e.owner.len(),
            HandEvent::Deposited(e) => self.balance = self.balance.wrapping_add(e.amount),
            HandEvent::Withdrawn(e) => self.balance = self.balance.wrapping_sub(e.amount),
            HandEvent::Frozen(_) => self.frozen = true,
        }
    }
}

const EVENTS: usize = 10_000;

fn events() -> (Vec<AccountEvent>, Vec<HandEvent>) {
    let mut generated = Vec::with_capacity(EVENTS);
    let mut hand = Vec::with_capacity(EVENTS);
    generated.push(AccountEvent::from(Opened {
        owner: "Alice".into(),
    }));
    hand.push(HandEvent::Opened(Opened {
        owner: "Alice".into(),
    }));
    for i in 1..EVENTS as u64 {
        // A mix that defeats a branch predictor keyed on a fixed pattern.
        match (i * 7919) % 10 {
            0..=5 => {
                generated.push(Deposited { amount: i }.into());
                hand.push(HandEvent::Deposited(Deposited { amount: i }));
            }
            6..=8 => {
                generated.push(Withdrawn { amount: i / 2 }.into());
                hand.push(HandEvent::Withdrawn(Withdrawn { amount: i / 2 }));
            }
            _ => {
                generated.push(Frozen.into());
                hand.push(HandEvent::Frozen(Frozen));
            }
        }
    }
    (generated, hand)
}

fn bench_apply(c: &mut Criterion) {
    let (generated, hand) = events();
    let mut group = c.benchmark_group("apply_10k");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function(BenchmarkId::new("generated", EVENTS), |b| {
        b.iter(|| {
            let mut account = Account::default();
            for event in black_box(&generated) {
                account.apply(event);
            }
            black_box(account)
        });
    });
    group.bench_function(BenchmarkId::new("hand_written", EVENTS), |b| {
        b.iter(|| {
            let mut account = HandAccount::default();
            for event in black_box(&hand) {
                account.apply(event);
            }
            black_box(account)
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = bench_apply
}
criterion_main!(benches);
