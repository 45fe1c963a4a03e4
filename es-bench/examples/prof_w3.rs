//! Profiling aid: W3 loads on the in-memory store (not part of the report).
use es_bench::bank::es::*;
use es_core::{InMemoryStore, Repository};
use std::hint::black_box;
fn main() {
    let repo = Repository::<BankAccount, _>::new(InMemoryStore::new());
    let ids: Vec<String> = (0..10_000).map(|i| format!("acc-{i}")).collect();
    for id in &ids {
        repo.execute(id, |a| a.open("Alice")).unwrap();
    }
    for _ in 1..10 {
        for id in &ids {
            repo.execute(id, |a| a.deposit(1)).unwrap();
        }
    }
    let t = std::time::Instant::now();
    for _ in 0..30 {
        for id in &ids {
            black_box(repo.load(black_box(id)).unwrap());
        }
    }
    eprintln!("{:?} per load", t.elapsed() / 300_000);
}
