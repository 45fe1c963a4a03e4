// What a decision may return: one event, a tuple, a `Vec`, an `Option`, an array, `()` or
// the event enum itself.
use es_core::{Aggregate, Event, InMemoryStore, Repository, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Added {
    n: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Doubled {}

#[derive(Debug, Default, Aggregate)]
struct Counter {
    value: u64,
}

#[applies]
impl Counter {
    fn added(&mut self, e: &Added) {
        self.value += e.n;
    }
    fn doubled(&mut self, _: &Doubled) {
        self.value *= 2;
    }
}

type Rejected = std::io::Error;

fn main() {
    let repo = Repository::<Counter, _>::new(InMemoryStore::new());
    let run =
        |expected_events: usize, expected_value: u64, executed: es_core::Executed<Counter>| {
            assert_eq!(executed.events.len(), expected_events);
            assert_eq!(executed.state.value, expected_value);
        };

    // One event.
    run(
        1,
        1,
        repo.execute("c", |_| Ok::<_, Rejected>(Added { n: 1 }))
            .unwrap(),
    );
    // A tuple of two events, applied in order.
    run(
        2,
        6,
        repo.execute("c", |_| Ok::<_, Rejected>((Added { n: 2 }, Doubled {})))
            .unwrap(),
    );
    // A Vec.
    run(
        3,
        9,
        repo.execute("c", |_| {
            Ok::<_, Rejected>(vec![Added { n: 1 }, Added { n: 1 }, Added { n: 1 }])
        })
        .unwrap(),
    );
    // An Option: `None` appends nothing, `Some` one event.
    run(
        0,
        9,
        repo.execute("c", |_| Ok::<_, Rejected>(None::<Added>))
            .unwrap(),
    );
    run(
        1,
        18,
        repo.execute("c", |c| {
            Ok::<_, Rejected>((c.value < 10).then_some(Doubled {}))
        })
        .unwrap(),
    );
    // `()`: nothing to do.
    run(0, 18, repo.execute("c", |_| Ok::<_, Rejected>(())).unwrap());
    // An array, and the generated enum.
    run(
        2,
        20,
        repo.execute("c", |_| Ok::<_, Rejected>([Added { n: 1 }, Added { n: 1 }]))
            .unwrap(),
    );
    run(
        1,
        40,
        repo.execute("c", |_| {
            Ok::<_, Rejected>(CounterEvent::Doubled(Doubled {}))
        })
        .unwrap(),
    );
    // Nested: a tuple of a Vec and an Option.
    run(
        2,
        82,
        repo.execute("c", |_| {
            Ok::<_, Rejected>((vec![Added { n: 1 }], Some(Doubled {})))
        })
        .unwrap(),
    );
    assert_eq!(repo.load("c").unwrap().unwrap().version, 12);
}
