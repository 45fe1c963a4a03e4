//! Event ids: es's time-ordered v7 ids against random v4 UUIDs.
//!
//! `cargo bench --bench ids`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use es_core::Uuid;

fn bench_ids(c: &mut Criterion) {
    let mut group = c.benchmark_group("event_id");
    group.bench_function("es_core::new_event_id (v7)", |b| {
        b.iter(|| black_box(es_core::new_event_id()));
    });
    group.bench_function("Uuid::new_v4", |b| b.iter(|| black_box(Uuid::new_v4())));
    group.finish();
}

criterion_group!(benches, bench_ids);
criterion_main!(benches);
