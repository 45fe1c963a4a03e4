//! Profiling aid: W3 commands on the in-memory store (not part of the report).
use es_bench::bank::es::*;
use es_core::{InMemoryStore, Repository};
fn main() {
    let ids: Vec<String> = (0..10_000).map(|i| format!("acc-{i}")).collect();
    let t = std::time::Instant::now();
    for _ in 0..std::env::var("REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
    {
        let repo = Repository::<BankAccount, _>::new(InMemoryStore::new());
        for id in &ids {
            repo.execute(id, |a| a.open("Alice")).unwrap();
        }
        for _ in 1..10 {
            for id in &ids {
                repo.execute(id, |a| a.deposit(1)).unwrap();
            }
        }
    }
    eprintln!("{:?} per command", t.elapsed() / 500_000);
}
