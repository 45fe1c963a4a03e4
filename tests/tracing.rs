//! The repositories' `tracing` output (es-core feature `tracing`): a span per command and
//! per load, with an event for each append, conflict, retry and duplicate, carrying the
//! aggregate type, stream id, versions and attempt number.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use es_core::{Aggregate, Event, ExecuteOptions, InMemoryStore, Repository, applies};
use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Metadata, Subscriber};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Deposited {
    amount: u64,
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(name = "TracedAccount")]
struct TracedAccount {
    balance: u64,
}

#[applies]
impl TracedAccount {
    fn deposited(&mut self, event: &Deposited) {
        self.balance += event.amount;
    }
}

/// What the subscriber saw: each event's fields, with the name and fields of the span it
/// happened in.
#[derive(Debug, Clone)]
struct Seen {
    fields: BTreeMap<String, String>,
    span: Option<SpanSeen>,
}

/// A span's name and fields.
type SpanSeen = (String, BTreeMap<String, String>);

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
}

/// A minimal subscriber that records every event and the span it is in.
#[derive(Default)]
struct Recorder {
    next_id: AtomicU64,
    spans: Mutex<BTreeMap<u64, SpanSeen>>,
    stack: Mutex<Vec<u64>>,
    events: Arc<Mutex<Vec<Seen>>>,
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let mut fields = Fields::default();
        span.record(&mut fields);
        self.spans
            .lock()
            .unwrap()
            .insert(id, (span.metadata().name().to_owned(), fields.0));
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let span = self
            .stack
            .lock()
            .unwrap()
            .last()
            .and_then(|id| self.spans.lock().unwrap().get(id).cloned());
        self.events.lock().unwrap().push(Seen {
            fields: fields.0,
            span,
        });
    }
    fn enter(&self, span: &Id) {
        self.stack.lock().unwrap().push(span.into_u64());
    }
    fn exit(&self, _: &Id) {
        self.stack.lock().unwrap().pop();
    }
}

fn message(seen: &Seen) -> &str {
    seen.fields.get("message").map_or("", String::as_str)
}

#[test]
fn a_conflict_and_its_retry_are_traced_with_stream_versions_and_attempts() {
    let recorder = Recorder::default();
    let events = Arc::clone(&recorder.events);
    tracing::subscriber::with_default(recorder, || {
        let store = InMemoryStore::new();
        let repo = Repository::<TracedAccount, _>::new(store.clone());
        let other = Repository::<TracedAccount, _>::new(store);
        repo.execute_infallible("t-1", |_| Deposited { amount: 1 })
            .unwrap();
        // The first decision lets another writer in first: its append conflicts once.
        let mut first = true;
        let done = repo
            .execute_infallible("t-1", |_| {
                if std::mem::take(&mut first) {
                    other
                        .execute_infallible("t-1", |_| Deposited { amount: 10 })
                        .unwrap();
                }
                Deposited { amount: 100 }
            })
            .unwrap();
        assert_eq!(
            (done.attempts, done.version, done.state.balance),
            (2, 3, 111)
        );
        let options = ExecuteOptions::new().idempotency_key("k-1");
        repo.execute_with_options("t-1", options, |_| {
            Ok::<_, std::convert::Infallible>(Deposited { amount: 1 })
        })
        .unwrap();
        let again = repo
            .execute_with_options("t-1", options, |_| {
                Ok::<_, std::convert::Infallible>(Deposited { amount: 1 })
            })
            .unwrap();
        assert!(again.duplicate);
        repo.load("t-1").unwrap();
    });
    let events = events.lock().unwrap().clone();

    let conflict = events
        .iter()
        .find(|e| message(e).contains("conflict, retrying"))
        .unwrap_or_else(|| panic!("a conflict event: {events:#?}"));
    assert_eq!(conflict.fields["aggregate_type"], "TracedAccount");
    assert_eq!(conflict.fields["stream_id"], "t-1");
    assert_eq!(conflict.fields["expected_version"], "1");
    assert_eq!(conflict.fields["actual_version"], "2");
    assert_eq!(conflict.fields["attempt"], "1");
    assert!(conflict.fields.contains_key("pause_us"));
    let (span, span_fields) = conflict.span.clone().expect("inside the command's span");
    assert_eq!(span, "es.execute");
    assert_eq!(span_fields["aggregate_type"], "TracedAccount");
    assert_eq!(span_fields["stream_id"], "t-1");

    let appended: Vec<&Seen> = events
        .iter()
        .filter(|e| message(e) == "es: appended")
        .collect();
    // The first deposit, the other writer's, the retried one, the keyed one.
    assert_eq!(appended.len(), 4, "{appended:#?}");
    let retried = appended
        .iter()
        .find(|e| e.fields["version"] == "3")
        .expect("the retried append");
    assert_eq!(retried.fields["attempt"], "2");
    assert_eq!(retried.fields["events"], "1");

    let duplicate = events
        .iter()
        .find(|e| message(e).contains("duplicate command"))
        .expect("the duplicate is traced");
    assert_eq!(duplicate.fields["version"], "4");

    let load = events
        .iter()
        .rev()
        .find(|e| message(e) == "es: loaded")
        .expect("the load is traced");
    assert_eq!(load.fields["version"], "4");
    assert_eq!(load.fields["events"], "4");
    assert_eq!(load.span.as_ref().map(|s| s.0.as_str()), Some("es.load"));
}

#[test]
fn a_command_that_gives_up_is_traced_as_a_warning() {
    let recorder = Recorder::default();
    let events = Arc::clone(&recorder.events);
    tracing::subscriber::with_default(recorder, || {
        let store = InMemoryStore::new();
        let repo = Repository::<TracedAccount, _>::new(store.clone())
            .with_retry(es_core::RetryPolicy::no_retry());
        let other = Repository::<TracedAccount, _>::new(store);
        let error = repo
            .execute_infallible("t-2", |_| {
                other
                    .execute_infallible("t-2", |_| Deposited { amount: 1 })
                    .unwrap();
                Deposited { amount: 2 }
            })
            .unwrap_err();
        assert!(matches!(error, es_core::Error::Conflict { .. }), "{error}");
    });
    let events = events.lock().unwrap();
    let gave_up = events
        .iter()
        .find(|e| message(e).contains("giving up"))
        .expect("the exhausted retry is traced");
    assert_eq!(gave_up.fields["attempt"], "1");
    assert_eq!(gave_up.fields["expected_version"], "0");
    assert_eq!(gave_up.fields["actual_version"], "1");
}

#[test]
fn the_async_repository_traces_inside_its_spans() {
    let recorder = Recorder::default();
    let events = Arc::clone(&recorder.events);
    tracing::subscriber::with_default(recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let repo = es_core::AsyncRepository::<TracedAccount, _>::new(InMemoryStore::new());
            repo.execute_infallible("t-3", |_| Deposited { amount: 1 })
                .await
                .unwrap();
            repo.load("t-3").await.unwrap();
        });
    });
    let events = events.lock().unwrap();
    let appended = events
        .iter()
        .find(|e| message(e) == "es: appended")
        .expect("the append is traced");
    let (span, fields) = appended.span.clone().expect("inside the command's span");
    assert_eq!(
        (span.as_str(), fields["stream_id"].as_str()),
        ("es.execute", "t-3")
    );
    let loaded = events
        .iter()
        .rev()
        .find(|e| message(e) == "es: loaded")
        .expect("the load is traced");
    assert_eq!(loaded.span.as_ref().map(|s| s.0.as_str()), Some("es.load"));
    assert_eq!(loaded.fields["version"], "1");
}
