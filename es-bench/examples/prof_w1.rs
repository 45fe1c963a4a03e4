//! Profiling aid: W1 on the in-memory store against the baseline (not part of the report).
use es_bench::bank::es::*;
use es_core::{InMemoryStore, Repository};
fn main() {
    baseline();
    floor();
    let store = InMemoryStore::new();
    seed(&store, "acc-1", 9_999);
    let repo = Repository::<BankAccount, _>::new(store);
    for _ in 0..3 {
        let t = std::time::Instant::now();
        for _ in 0..200 {
            std::hint::black_box(repo.load("acc-1").unwrap());
        }
        eprintln!("es {:?} per load", t.elapsed() / 200);
    }
}

#[allow(dead_code)]
fn baseline() {
    use es_bench::bank::baseline::{AccountEvent, Store};
    let mut store = Store::new();
    store
        .push(
            "acc-1",
            &AccountEvent::Opened {
                owner: "Alice".into(),
            },
        )
        .unwrap();
    for _ in 0..9_999 {
        store
            .push("acc-1", &AccountEvent::Deposited { amount: 1 })
            .unwrap();
    }
    for _ in 0..3 {
        let t = std::time::Instant::now();
        for _ in 0..200 {
            std::hint::black_box(store.load("acc-1").unwrap());
        }
        eprintln!("baseline {:?} per load", t.elapsed() / 200);
    }
}

#[allow(dead_code)]
fn floor() {
    use es_core::{EventEnum, EventHandlers};
    let payloads: Vec<String> = (0..10_000).map(|_| r#"{"amount":1}"#.to_owned()).collect();
    for _ in 0..3 {
        let t = std::time::Instant::now();
        for _ in 0..200 {
            let mut acc = BankAccount::default();
            for p in &payloads {
                let e =
                    BankAccountEvent::from_stored("Deposited", 1, std::hint::black_box(p)).unwrap();
                acc.apply_event(&e);
            }
            std::hint::black_box(acc);
        }
        eprintln!("floor {:?} per load", t.elapsed() / 200);
    }
}
