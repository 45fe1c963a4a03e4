//! Profiling aid: W3 on the in-memory store, sync and async alternating round by round, so
//! that the machine's drift hits both alike (not part of the report). Prints each round and
//! the medians of the per-round async/sync ratios.
//!
//! `ROUNDS=9 MODE=all cargo run --release --example prof_async_mem`; `MODE=sync` or
//! `MODE=async` runs only one side (for `perf record`).
use std::time::Instant;

use es_bench::bank::es::BankAccount;
use es_bench::measure::median;
use es_core::{AsyncRepository, InMemoryStore, Repository};

const AGGREGATES: usize = 10_000;
const PER_AGGREGATE: usize = 10;

fn ids() -> Vec<String> {
    (0..AGGREGATES).map(|i| format!("acc-{i}")).collect()
}

/// Seconds for W3's commands, then for loading each aggregate once.
fn sync_round(ids: &[String]) -> (f64, f64) {
    let repo = Repository::<BankAccount, _>::new(InMemoryStore::new());
    let t = Instant::now();
    for id in ids {
        repo.execute(id, |a| a.open("Alice")).unwrap();
    }
    for _ in 1..PER_AGGREGATE {
        for id in ids {
            repo.execute(id, |a| a.deposit(1)).unwrap();
        }
    }
    let commands = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for id in ids {
        std::hint::black_box(repo.load(id).unwrap());
    }
    (commands, t.elapsed().as_secs_f64())
}

async fn async_round(ids: std::sync::Arc<Vec<String>>) -> (f64, f64) {
    let repo = AsyncRepository::<BankAccount, _>::new(InMemoryStore::new());
    let t = Instant::now();
    for id in ids.iter() {
        repo.execute(id, |a| a.open("Alice")).await.unwrap();
    }
    for _ in 1..PER_AGGREGATE {
        for id in ids.iter() {
            repo.execute(id, |a| a.deposit(1)).await.unwrap();
        }
    }
    let commands = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for id in ids.iter() {
        std::hint::black_box(repo.load(id).await.unwrap());
    }
    (commands, t.elapsed().as_secs_f64())
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);
    let mode = std::env::var("MODE").unwrap_or_else(|_| "all".to_owned());
    let ids = std::sync::Arc::new(ids());
    let mt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let ct = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut cmd_mt, mut cmd_ct, mut load_mt) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let sync = (mode != "async").then(|| sync_round(&ids));
        let on_mt = (mode != "sync").then(|| {
            let ids = ids.clone();
            mt.block_on(mt.spawn(async_round(ids))).unwrap()
        });
        let on_ct = (mode == "all").then(|| ct.block_on(async_round(ids.clone())));
        if let (Some(s), Some(m), Some(c)) = (sync, on_mt, on_ct) {
            eprintln!(
                "round {round}: commands sync {:.0} ms, async multi-thread {:.0} ms ({:.2}×), current-thread {:.0} ms ({:.2}×); loads sync {:.1} ms, async {:.1} ms ({:.2}×)",
                s.0 * 1e3,
                m.0 * 1e3,
                m.0 / s.0,
                c.0 * 1e3,
                c.0 / s.0,
                s.1 * 1e3,
                m.1 * 1e3,
                m.1 / s.1
            );
            cmd_mt.push(m.0 / s.0);
            cmd_ct.push(c.0 / s.0);
            load_mt.push(m.1 / s.1);
        }
    }
    if !cmd_mt.is_empty() {
        eprintln!(
            "median of the per-round ratios: commands multi-thread {:.2}×, current-thread {:.2}×; loads multi-thread {:.2}×",
            median(cmd_mt),
            median(cmd_ct),
            median(load_mt)
        );
    }
}
