//! [`AggregateFixture`]: given events, when a decision, then the events, the error or the
//! state, with no store.
//!
//! The fixture is stricter than a plain unit test of the decision: every event (given or
//! decided) goes through the aggregate's stored form (JSON, with its event-type name, schema
//! version and upcasters) and back, and after the decision the fixture rebuilds the
//! aggregate from nothing but the round-tripped events and checks it equals the state the
//! handlers produced. That catches an event that does not survive storage (a field that
//! does not serialize, a rename without an alias) and a handler that depends on anything
//! but its events. The aggregate must therefore be `PartialEq + Debug` (derive them).
//! Events are compared by what a store keeps of them (event type, schema version and JSON
//! payload), so they need no `PartialEq`.
//!
//! ```
//! use es_core::testing::AggregateFixture;
//! use es_core::{Aggregate, Event, applies};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! struct Deposited { amount: u64 }
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! struct Withdrawn { amount: u64 }
//!
//! #[derive(Debug, Default, PartialEq, Aggregate)]
//! struct Account { balance: u64 }
//!
//! #[applies]
//! impl Account {
//!     fn deposited(&mut self, e: &Deposited) { self.balance += e.amount; }
//!     fn withdrawn(&mut self, e: &Withdrawn) { self.balance -= e.amount; }
//! }
//!
//! #[derive(Debug, PartialEq)]
//! enum AccountError { InsufficientFunds { balance: u64 } }
//!
//! impl Account {
//!     fn withdraw(&self, amount: u64) -> Result<Withdrawn, AccountError> {
//!         if amount > self.balance {
//!             return Err(AccountError::InsufficientFunds { balance: self.balance });
//!         }
//!         Ok(Withdrawn { amount })
//!     }
//! }
//!
//! AggregateFixture::<Account>::given([Deposited { amount: 100 }])
//!     .when(|acc| acc.withdraw(150))
//!     .then_error(AccountError::InsufficientFunds { balance: 100 });
//!
//! AggregateFixture::<Account>::given([Deposited { amount: 100 }])
//!     .when(|acc| acc.withdraw(30))
//!     .then_events([Withdrawn { amount: 30 }])
//!     .then_state(|acc| assert_eq!(acc.balance, 70));
//! ```

use std::fmt::{self, Debug, Write as _};

use serde_json::Value;

use crate::aggregate::Aggregate;
use crate::event::{EventEnum, IntoEvents};

/// The events an aggregate was given, before a decision runs; see the
/// [module docs](self).
#[derive(Debug)]
pub struct AggregateFixture<A: Aggregate> {
    given: Vec<A::Event>,
}

/// What a decision did, to check with the `then_*` methods; see the [module docs](self).
#[derive(Debug)]
pub struct Outcome<A: Aggregate, E> {
    /// The state the handlers produced: the given events, then the new ones.
    state: A,
    result: Result<Vec<A::Event>, E>,
}

impl<A> AggregateFixture<A>
where
    A: Aggregate + PartialEq + Debug,
    A::Event: Debug,
{
    /// An aggregate that has seen `events` (each converts into the aggregate's event enum:
    /// pass the event structs themselves, or enum values).
    #[track_caller]
    pub fn given<T: Into<A::Event>>(events: impl IntoIterator<Item = T>) -> Self {
        Self {
            given: events.into_iter().map(Into::into).collect(),
        }
    }

    /// An aggregate with no events yet.
    pub fn given_no_events() -> Self {
        Self { given: Vec::new() }
    }

    /// Adds an event in its stored form: its event type, the schema version it was stored
    /// with and its JSON payload, decoded (and upcast) exactly as a store's would be. For
    /// testing that events written by an older release still lead to the right decisions.
    ///
    /// # Panics
    /// If the stored form does not decode, with the decoder's error.
    #[track_caller]
    pub fn and_stored(mut self, event_type: &str, schema_version: u32, payload: Value) -> Self {
        let text = payload.to_string();
        match A::Event::from_stored(event_type, schema_version, &text) {
            Ok(event) => self.given.push(event),
            Err(error) => panic!(
                "the given stored event `{event_type}` v{schema_version} {text} does not decode: {error}"
            ),
        }
        self
    }

    /// Runs `decide` on the state the given events lead to.
    ///
    /// # Panics
    /// If an event does not survive its stored form, or if rebuilding the aggregate from the
    /// stored form of every event does not give the state the handlers produced.
    #[track_caller]
    #[must_use = "check the outcome with a `then_*` method"]
    pub fn when<R, E>(self, decide: impl FnOnce(&A) -> Result<R, E>) -> Outcome<A, E>
    where
        R: IntoEvents<A::Event>,
    {
        let mut state = A::default();
        for event in &self.given {
            state.apply(event);
        }
        let result = decide(&state).map(IntoEvents::into_events);
        let new_events: &[A::Event] = result.as_deref().unwrap_or(&[]);
        for event in new_events {
            state.apply(event);
        }
        // Rebuild from the stored form of every event alone.
        let mut rebuilt = A::default();
        for event in self.given.iter().chain(new_events) {
            rebuilt.apply(&round_trip(event));
        }
        assert!(
            rebuilt == state,
            "rebuilding `{}` from its stored events gives another state than its handlers \
             produced: a handler depends on something but its events, or an event loses \
             data in storage\n  handlers: {state:?}\n  rebuilt:  {rebuilt:?}",
            std::any::type_name::<A>(),
        );
        Outcome { state, result }
    }

    /// Runs a decision that cannot fail (it returns the events themselves).
    #[track_caller]
    #[must_use = "check the outcome with a `then_*` method"]
    pub fn when_infallible<R>(
        self,
        decide: impl FnOnce(&A) -> R,
    ) -> Outcome<A, std::convert::Infallible>
    where
        R: IntoEvents<A::Event>,
    {
        self.when(|state| Ok(decide(state)))
    }
}

/// What a store keeps of an event: its type, schema version and payload.
#[derive(PartialEq)]
struct Stored {
    event_type: &'static str,
    version: u32,
    payload: Value,
}

/// The stored form of `event`.
#[track_caller]
fn stored<Ev: EventEnum + Debug>(event: &Ev) -> Stored {
    let payload = match event
        .to_payload()
        .and_then(|raw| serde_json::from_str(raw.get()))
    {
        Ok(payload) => payload,
        Err(error) => panic!("event {event:?} does not serialize: {error}"),
    };
    Stored {
        event_type: event.event_type(),
        version: event.event_version(),
        payload,
    }
}

/// `event` after a trip through its stored form, which must not change it.
#[track_caller]
fn round_trip<Ev: EventEnum + Debug>(event: &Ev) -> Ev {
    let before = stored(event);
    let text = before.payload.to_string();
    let decoded = match Ev::from_stored(before.event_type, before.version, &text) {
        Ok(decoded) => decoded,
        Err(error) => panic!(
            "event {event:?}, stored as `{}` v{} {text}, does not decode: {error}",
            before.event_type, before.version
        ),
    };
    let after = stored(&decoded);
    assert!(
        after == before,
        "event `{}` changes in storage:\n  before: {event:?}\n  after:  {decoded:?}\n  stored: {text}",
        before.event_type,
    );
    decoded
}

/// Whether two lists of events store the same.
fn same_events<Ev: EventEnum + Debug>(expected: &[Ev], actual: &[Ev]) -> bool {
    expected.len() == actual.len()
        && expected
            .iter()
            .zip(actual)
            .all(|(e, a)| stored(e) == stored(a))
}

impl<A, E> Outcome<A, E>
where
    A: Aggregate + Debug,
    A::Event: Debug,
    E: Debug,
{
    /// Checks the decision returned exactly `expected`, in order.
    #[track_caller]
    pub fn then_events<T: Into<A::Event>>(self, expected: impl IntoIterator<Item = T>) -> Self {
        let expected: Vec<A::Event> = expected.into_iter().map(Into::into).collect();
        match &self.result {
            Ok(actual) if same_events(&expected, actual) => {}
            Ok(actual) => panic!(
                "the decision returned other events:\n{}",
                diff(&expected, actual)
            ),
            Err(error) => panic!(
                "the decision was rejected with {error:?}, expected events:\n{}",
                diff(&expected, &[])
            ),
        }
        self
    }

    /// Checks the decision returned no event (and was not rejected).
    #[track_caller]
    pub fn then_no_events(self) -> Self {
        let none: [A::Event; 0] = [];
        self.then_events(none)
    }

    /// Checks the decision was rejected with `expected`.
    #[track_caller]
    pub fn then_error(self, expected: E)
    where
        E: PartialEq,
    {
        match &self.result {
            Err(actual) if *actual == expected => {}
            Err(actual) => panic!(
                "the decision was rejected with another error\n  expected: {expected:?}\n  actual:   {actual:?}"
            ),
            Ok(events) => panic!(
                "the decision was expected to fail with {expected:?}, but returned events:\n{}",
                diff(&[], events)
            ),
        }
    }

    /// Checks the decision was rejected with an error for which `check` holds (for error
    /// types that are not `PartialEq`).
    #[track_caller]
    pub fn then_error_matches(self, check: impl FnOnce(&E) -> bool) {
        match &self.result {
            Err(actual) if check(actual) => {}
            Err(actual) => panic!("the decision was rejected with an unexpected error: {actual:?}"),
            Ok(events) => panic!(
                "the decision was expected to fail, but returned events:\n{}",
                diff(&[], events)
            ),
        }
    }

    /// Runs `check` on the state after the given and the new events.
    #[track_caller]
    pub fn then_state(self, check: impl FnOnce(&A)) -> Self {
        check(&self.state);
        self
    }

    /// The events the decision returned, or its error.
    pub fn result(&self) -> &Result<Vec<A::Event>, E> {
        &self.result
    }

    /// The state after the given and the new events.
    pub fn state(&self) -> &A {
        &self.state
    }
}

/// A line per event: `  ` where expected and actual agree, `-` expected, `+` actual.
fn diff<Ev: EventEnum + Debug>(expected: &[Ev], actual: &[Ev]) -> String {
    let mut out = String::new();
    for i in 0..expected.len().max(actual.len()) {
        match (expected.get(i), actual.get(i)) {
            (Some(e), Some(a)) if stored(e) == stored(a) => line(&mut out, ' ', i, e),
            (e, a) => {
                if let Some(e) = e {
                    line(&mut out, '-', i, e);
                }
                if let Some(a) = a {
                    line(&mut out, '+', i, a);
                }
            }
        }
    }
    if out.is_empty() {
        out.push_str("  (no events)\n");
    }
    out.push_str("  (- expected, + actual)");
    out
}

fn line(out: &mut String, mark: char, index: usize, event: &dyn Debug) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{mark} [{index}] {event:?}");
}

impl<A: Aggregate> fmt::Display for AggregateFixture<A>
where
    A::Event: Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "given {:?}", self.given)
    }
}
