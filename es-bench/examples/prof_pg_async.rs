//! Profiling aid: W3-style commands on PostgreSQL, sync against async, one task against
//! several, multi-thread against current-thread runtime (not part of the report).
//!
//! `ES_POSTGRES_URL=... AGGREGATES=200 cargo run --release --example prof_pg_async`
use std::time::Instant;

use es_bench::bank::es::BankAccount;
use es_bench::stores::{AsyncStoreSource, PostgresSchemas, postgres_url};
use es_core::{AsyncEventStore, AsyncRepository, Repository};

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("acc-{i}")).collect()
}

/// W3's commands on `ids` (open each, then 9 deposits round-robin) through the async repository.
async fn commands<S: AsyncEventStore>(repo: AsyncRepository<BankAccount, S>, ids: Vec<String>) {
    for id in &ids {
        repo.execute(id, |a| a.open("Alice")).await.unwrap();
    }
    for _ in 1..10 {
        for id in &ids {
            repo.execute(id, |a| a.deposit(1)).await.unwrap();
        }
    }
}

fn main() {
    let url = postgres_url().expect("ES_POSTGRES_URL");
    let n: usize = std::env::var("AGGREGATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let total = (n * 10) as f64;
    let mut schemas = PostgresSchemas::new(url);

    // Sync, one thread; loads alone afterwards.
    let repo = Repository::<BankAccount, _>::new(schemas.fresh());
    let t = Instant::now();
    for id in &ids(n) {
        repo.execute(id, |a| a.open("Alice")).unwrap();
    }
    for _ in 1..10 {
        for id in &ids(n) {
            repo.execute(id, |a| a.deposit(1)).unwrap();
        }
    }
    let cmd = t.elapsed().as_secs_f64() / total;
    let t = Instant::now();
    for id in &ids(n) {
        repo.load(id).unwrap();
    }
    let load = t.elapsed().as_secs_f64() / n as f64;
    eprintln!(
        "sync 1 thread: {:.0} µs/command ({:.0}/s), load {:.0} µs",
        cmd * 1e6,
        1.0 / cmd,
        load * 1e6
    );
    drop(repo);

    for (name, rt) in [
        (
            "current-thread",
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        ),
        (
            "multi-thread",
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap(),
        ),
    ] {
        for tasks in [1usize, 8] {
            let repo = AsyncRepository::<BankAccount, _>::new(schemas.fresh_async(&rt));
            let all = ids(n);
            let t = Instant::now();
            rt.block_on(async {
                let handles: Vec<_> = (0..tasks)
                    .map(|k| {
                        let shard: Vec<String> =
                            all.iter().skip(k).step_by(tasks).cloned().collect();
                        tokio::spawn(commands(repo.clone(), shard))
                    })
                    .collect();
                for h in handles {
                    h.await.unwrap();
                }
            });
            let cmd = t.elapsed().as_secs_f64() / total;
            let r = repo.clone();
            let all2 = all.clone();
            let t = Instant::now();
            rt.block_on(async move {
                tokio::spawn(async move {
                    for id in &all2 {
                        r.load(id).await.unwrap();
                    }
                })
                .await
                .unwrap()
            });
            let load = t.elapsed().as_secs_f64() / n as f64;
            eprintln!(
                "async {name} {tasks} task(s): {:.0} µs/command ({:.0}/s), load {:.0} µs",
                cmd * 1e6,
                1.0 / cmd,
                load * 1e6
            );
        }
    }
    schemas.drop_schemas();
}
