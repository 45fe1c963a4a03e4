//! Profiling aid: W1 on SQLite (not part of the report).
use es_bench::bank::es::*;
use es_core::Repository;
fn main() {
    let dir = std::env::temp_dir().join(format!("prof-sqlite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = es_sqlite::SqliteStore::open(dir.join("e.db")).unwrap();
    seed(&store, "acc-1", 9_999);
    let repo = Repository::<BankAccount, _>::new(store);
    repo.load("acc-1").unwrap();
    let t = std::time::Instant::now();
    for _ in 0..50 {
        std::hint::black_box(repo.load("acc-1").unwrap());
    }
    eprintln!("{:?} per load", t.elapsed() / 50);
    std::fs::remove_dir_all(&dir).unwrap();
}
