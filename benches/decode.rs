//! Decoding stored payloads: the current-version fast path with and without upcasters
//! registered, and the cost of each upcast step.
//!
//! `cargo bench --bench decode`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use es_core::{Event, UpcastError, decode_event};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An event that never changed: no upcasters.
#[derive(Debug, Serialize, Deserialize, Event)]
#[event(name = "Plain")]
struct Plain {
    cents: u64,
    currency: String,
}

/// The same payload shape at version 3, with a two-step chain registered.
#[derive(Debug, Serialize, Deserialize, Event)]
#[event(name = "Evolved", version = 3,
        upcast(from = 1, with = v1_to_v2),
        upcast(from = 2, with = v2_to_v3))]
struct Evolved {
    cents: u64,
    currency: String,
}

fn v1_to_v2(mut v: Value) -> Result<Value, UpcastError> {
    v.as_object_mut()
        .ok_or_else(|| UpcastError::new("not an object"))?
        .insert("currency".into(), "EUR".into());
    Ok(v)
}

fn v2_to_v3(mut v: Value) -> Result<Value, UpcastError> {
    let object = v
        .as_object_mut()
        .ok_or_else(|| UpcastError::new("not an object"))?;
    let amount = object
        .remove("amount")
        .ok_or_else(|| UpcastError::missing_field("amount"))?;
    object.insert("cents".into(), amount);
    Ok(v)
}

const EVENTS: u64 = 10_000;

/// Payloads as the stores hand them over: JSON text.
fn payloads(make: impl Fn(u64) -> Value) -> Vec<String> {
    (0..EVENTS).map(|i| make(i).to_string()).collect()
}

fn bench_decode(c: &mut Criterion) {
    let current = payloads(|i| json!({"cents": i, "currency": "EUR"}));
    let v2 = payloads(|i| json!({"amount": i, "currency": "EUR"}));
    let v1 = payloads(|i| json!({ "amount": i }));

    let mut group = c.benchmark_group("decode_10k");
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function(BenchmarkId::new("current", "no_upcasters"), |b| {
        b.iter(|| {
            for p in black_box(&current) {
                black_box(decode_event::<Plain>("Plain", 1, p).unwrap());
            }
        });
    });
    group.bench_function(BenchmarkId::new("current", "upcasters_registered"), |b| {
        b.iter(|| {
            for p in black_box(&current) {
                black_box(decode_event::<Evolved>("Evolved", 3, p).unwrap());
            }
        });
    });
    group.bench_function(BenchmarkId::new("upcast", "1_step_v2"), |b| {
        b.iter(|| {
            for p in black_box(&v2) {
                black_box(decode_event::<Evolved>("Evolved", 2, p).unwrap());
            }
        });
    });
    group.bench_function(BenchmarkId::new("upcast", "2_steps_v1"), |b| {
        b.iter(|| {
            for p in black_box(&v1) {
                black_box(decode_event::<Evolved>("Evolved", 1, p).unwrap());
            }
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench_decode
}
criterion_main!(benches);
