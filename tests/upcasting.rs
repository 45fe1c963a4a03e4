//! Schema evolution: events stored by earlier releases (tests/fixtures/*.jsonl) load through
//! today's code, via aliases, JSON upcasters and typed upcast steps.

use std::sync::atomic::{AtomicUsize, Ordering};

use es_core::{
    Aggregate, DecodeError, Error, Event, EventEnum, EventStore, ExpectedVersion, InMemoryStore,
    Metadata, NewEvent, Repository, StreamRef, UpcastError, Uuid, applies,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

// ---- The domain as it is today (release 3); see tests/fixtures/README.md ----

/// `AccountOpened` as releases 1 and 2 stored it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AccountOpenedV1 {
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(version = 2, upcast(from = 1, via = AccountOpenedV1))]
struct AccountOpened {
    owner: String,
    tier: String,
}

impl From<AccountOpenedV1> for AccountOpened {
    fn from(v1: AccountOpenedV1) -> Self {
        Self {
            owner: v1.name,
            tier: "standard".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(
    name = "MoneyDeposited",
    version = 3,
    upcast(from = 1, with = deposited_v1_to_v2),
    upcast(from = 2, with = deposited_v2_to_v3),
    aliases("FundsAdded")
)]
struct MoneyDeposited {
    cents: u64,
    currency: String,
}

/// Release 1 was euro-only: version 2 added the currency.
fn deposited_v1_to_v2(mut payload: Value) -> Result<Value, UpcastError> {
    let object = payload
        .as_object_mut()
        .ok_or_else(|| UpcastError::new("payload is not an object"))?;
    if !object.contains_key("amount") {
        return Err(UpcastError::missing_field("amount"));
    }
    object.insert("currency".into(), "EUR".into());
    Ok(payload)
}

/// Version 3 renamed `amount` to `cents`.
fn deposited_v2_to_v3(mut payload: Value) -> Result<Value, UpcastError> {
    let object = payload
        .as_object_mut()
        .ok_or_else(|| UpcastError::new("payload is not an object"))?;
    let amount = object
        .remove("amount")
        .ok_or_else(|| UpcastError::missing_field("amount"))?;
    object.insert("cents".into(), amount);
    Ok(payload)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct MoneyWithdrawn {
    amount: u64,
}

#[derive(Debug, Default, PartialEq, Aggregate)]
struct Wallet {
    owner: String,
    tier: String,
    balance: i64,
    currencies: Vec<String>,
}

#[applies(derive(Debug, Clone, PartialEq))]
impl Wallet {
    fn opened(&mut self, e: &AccountOpened) {
        self.owner.clone_from(&e.owner);
        self.tier.clone_from(&e.tier);
    }
    fn deposited(&mut self, e: &MoneyDeposited) {
        self.balance += i64::try_from(e.cents).expect("test amounts fit");
        if !self.currencies.contains(&e.currency) {
            self.currencies.push(e.currency.clone());
        }
    }
    fn withdrawn(&mut self, e: &MoneyWithdrawn) {
        self.balance -= i64::try_from(e.amount).expect("test amounts fit");
    }
}

impl Wallet {
    fn deposit(&self, cents: u64) -> Result<MoneyDeposited, std::convert::Infallible> {
        Ok(MoneyDeposited {
            cents,
            currency: "EUR".into(),
        })
    }
}

// ---- Fixture loading ----

#[derive(Deserialize)]
struct StoredLine {
    aggregate_type: String,
    stream_id: String,
    stream_version: u64,
    event_type: String,
    schema_version: u32,
    payload: Value,
    metadata: Metadata,
}

/// Appends each line of a fixture exactly as stored, checking its versions are contiguous.
fn load_fixture(store: &impl EventStore, file: &str) {
    let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for (n, line) in text.lines().enumerate() {
        let line: StoredLine =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{path}:{}: {e}", n + 1));
        let event = NewEvent {
            event_id: Uuid::new_v4(),
            event_type: line.event_type.into(),
            schema_version: line.schema_version,
            payload: serde_json::value::to_raw_value(&line.payload).unwrap(),
            metadata: line.metadata,
        };
        store
            .append(
                StreamRef::new(&line.aggregate_type, &line.stream_id),
                ExpectedVersion::Exact(line.stream_version - 1),
                &[event],
            )
            .unwrap_or_else(|e| panic!("{path}:{}: {e}", n + 1));
    }
}

fn repo_with(files: &[&str]) -> Repository<Wallet, InMemoryStore> {
    let store = InMemoryStore::new();
    for file in files {
        load_fixture(&store, file);
    }
    Repository::new(store)
}

fn deposited(cents: u64, currency: &str) -> WalletEvent {
    MoneyDeposited {
        cents,
        currency: currency.into(),
    }
    .into()
}

fn opened(owner: &str, tier: &str) -> WalletEvent {
    AccountOpened {
        owner: owner.into(),
        tier: tier.into(),
    }
    .into()
}

fn withdrawn(amount: u64) -> WalletEvent {
    MoneyWithdrawn { amount }.into()
}

// ---- Tests ----

#[test]
fn release_1_stream_loads_through_aliases_and_both_kinds_of_upcaster() {
    let repo = repo_with(&["wallet_release1.jsonl"]);
    let wallet = repo.load("w-1").unwrap().expect("w-1 exists");
    assert_eq!(wallet.version, 4);
    assert_eq!(
        wallet.state,
        Wallet {
            owner: "Alice".into(),
            tier: "standard".into(),
            balance: 387,
            currencies: vec!["EUR".into()],
        }
    );

    let history = repo.history("w-1").unwrap();
    let events: Vec<_> = history.iter().map(|h| h.event.clone()).collect();
    assert_eq!(
        events,
        vec![
            opened("Alice", "standard"),
            deposited(500, "EUR"),
            withdrawn(120),
            deposited(7, "EUR"),
        ]
    );
    // The envelope still says what was stored; only the decoded event is in today's shape.
    assert_eq!(history[1].record.event_type, "FundsAdded");
    assert_eq!(history[1].record.schema_version, 1);
    assert_eq!(
        history[1].record.payload_value().unwrap(),
        json!({"amount": 500})
    );
    assert_eq!(
        history[0].record.metadata.correlation_id.as_deref(),
        Some("r1-open")
    );
    assert_eq!(
        history[3].record.metadata.causation_id.as_deref(),
        Some("cmd-9")
    );
}

#[test]
fn release_2_stream_upcasts_from_version_2() {
    let repo = repo_with(&["wallet_release2.jsonl"]);
    let wallet = repo.load("w-2").unwrap().expect("w-2 exists");
    assert_eq!(wallet.version, 3);
    assert_eq!(wallet.state.balance, 999);
    assert_eq!(wallet.state.currencies, vec!["USD".to_owned()]);
    let events: Vec<_> = repo
        .history("w-2")
        .unwrap()
        .into_iter()
        .map(|h| h.event)
        .collect();
    assert_eq!(
        events,
        vec![
            opened("Bob", "standard"),
            deposited(1000, "USD"),
            withdrawn(1)
        ]
    );
}

#[test]
fn mixed_stream_reads_every_version_and_name_as_one_type() {
    let repo = repo_with(&["wallet_mixed.jsonl"]);
    let events: Vec<_> = repo
        .history("w-3")
        .unwrap()
        .into_iter()
        .map(|h| h.event)
        .collect();
    assert_eq!(
        events,
        vec![
            opened("Carol", "standard"),
            deposited(10, "EUR"),
            deposited(20, "EUR"),
            deposited(30, "GBP"),
            withdrawn(5),
        ]
    );
    let w3 = repo.load("w-3").unwrap().expect("w-3 exists").state;
    assert_eq!((w3.balance, w3.currencies.len()), (55, 2));

    // Current-version AccountOpened needs no step; an old deposit after it still does.
    let w4 = repo.load("w-4").unwrap().expect("w-4 exists").state;
    assert_eq!(
        (w4.owner.as_str(), w4.tier.as_str(), w4.balance),
        ("Dave", "gold", 42)
    );
}

#[test]
fn new_events_are_written_under_the_current_name_and_version_only() {
    let repo = repo_with(&["wallet_release1.jsonl"]);
    let done = repo.execute("w-1", |w| w.deposit(13)).unwrap();
    assert_eq!(done.version, 5);
    let stored = repo
        .store()
        .read_stream(StreamRef::new("Wallet", "w-1"), 5)
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].event_type, "MoneyDeposited");
    assert_eq!(stored[0].schema_version, 3);
    assert_eq!(
        stored[0].payload_value().unwrap(),
        json!({"cents": 13, "currency": "EUR"})
    );
    assert_eq!(repo.load("w-1").unwrap().unwrap().state.balance, 400);
}

fn stored_type(repo: &Repository<Wallet, InMemoryStore>, id: &str) -> String {
    let records = repo
        .store()
        .read_stream(StreamRef::new("Wallet", id), 1)
        .unwrap();
    records[0].event_type.clone()
}

/// Loads one stream of the bad fixture and returns its decode error.
fn decode_failure(id: &str) -> (Error, DecodeError) {
    let repo = repo_with(&["wallet_bad.jsonl"]);
    let error = repo.load(id).expect_err("the stream must not decode");
    let Error::Decode {
        stream,
        version,
        cause: source,
    } = &error
    else {
        panic!("expected a decode error, got {error:?}");
    };
    assert_eq!(
        (stream.aggregate_type.as_str(), stream.id.as_str()),
        ("Wallet", id)
    );
    assert_eq!(*version, 1);
    let message = error.to_string();
    assert!(message.contains(&format!("`Wallet/{id}`")), "{message}");
    assert!(message.contains("version 1"), "{message}");
    assert_eq!(source.event_type(), stored_type(&repo, id));
    // DecodeError is not Clone: decode the record again to own the same failure.
    let record = &repo
        .store()
        .read_stream(StreamRef::new("Wallet", id), 1)
        .unwrap()[0];
    let source = WalletEvent::from_stored(
        &record.event_type,
        record.schema_version,
        record.payload.get(),
    )
    .expect_err("same failure");
    (error, source)
}

#[test]
fn a_version_newer_than_the_code_is_an_error_naming_it() {
    let (error, source) = decode_failure("newer");
    assert!(matches!(source, DecodeError::VersionTooNew { .. }));
    let message = error.to_string();
    assert!(message.contains("`MoneyDeposited`"), "{message}");
    assert!(
        message.contains("schema version 4, newer than version 3"),
        "{message}"
    );
}

#[test]
fn a_failing_upcaster_is_an_error_naming_the_step() {
    let (error, source) = decode_failure("upcast-fails");
    let DecodeError::Upcast {
        from,
        to,
        event_type,
        ..
    } = &source
    else {
        panic!("expected an upcast error, got {source:?}");
    };
    assert_eq!((*from, *to, event_type.as_str()), (1, 2, "FundsAdded"));
    let message = error.to_string();
    assert!(message.contains("from version 1 to 2"), "{message}");
    assert!(message.contains("no field `amount`"), "{message}");
}

#[test]
fn a_payload_that_does_not_decode_after_upcasting_is_an_error() {
    let (error, source) = decode_failure("bad-after-upcast");
    assert!(
        matches!(
            source,
            DecodeError::Payload {
                stored_version: 2,
                ..
            }
        ),
        "{source:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("after upcasting to version 3"),
        "{message}"
    );
    assert!(message.contains("`MoneyDeposited`"), "{message}");
}

#[test]
fn an_unknown_event_type_is_an_error_listing_the_known_ones() {
    let (error, source) = decode_failure("unknown");
    assert!(
        matches!(source, DecodeError::UnknownEventType { .. }),
        "{source:?}"
    );
    let message = error.to_string();
    assert!(message.contains("`InterestPaid`"), "{message}");
    assert!(message.contains("MoneyWithdrawn"), "{message}");
}

#[test]
fn the_current_version_runs_no_upcaster() {
    // Other tests in this binary run the wallet's upcasters concurrently, so this event
    // has an upcaster of its own that counts its calls.
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    fn counted(payload: Value) -> Result<Value, UpcastError> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        Ok(payload)
    }
    #[derive(Debug, Serialize, Deserialize, Event)]
    #[event(version = 2, upcast(from = 1, with = counted))]
    struct Counted {
        n: u32,
    }

    let current: Counted =
        es_core::decode_event("Counted", 2, &json!({"n": 1}).to_string()).unwrap();
    assert_eq!((current.n, CALLS.load(Ordering::SeqCst)), (1, 0));
    let old: Counted = es_core::decode_event("Counted", 1, &json!({"n": 2}).to_string()).unwrap();
    assert_eq!((old.n, CALLS.load(Ordering::SeqCst)), (2, 1));
}

/// A small deterministic generator (xorshift64*), so the property runs the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn amount(&mut self) -> u64 {
        match self.next() % 4 {
            0 => 0,
            1 => u64::MAX - self.next() % 3,
            2 => self.next() % 1000,
            _ => self.next(),
        }
    }

    fn text(&mut self) -> String {
        let len = (self.next() % 12) as usize;
        (0..len)
            .map(|_| {
                char::from_u32(0x20 + (self.next() % 0x2000) as u32)
                    .filter(|c| !c.is_control())
                    .unwrap_or('x')
            })
            .collect()
    }
}

#[test]
fn property_upcasting_v1_equals_encoding_the_hand_migrated_value() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..2000 {
        // MoneyDeposited v1 -> v3: {"amount"} -> {"cents", "currency": "EUR"}; extra fields
        // an old writer may have added are carried along and ignored by the decoder.
        let amount = rng.amount();
        let mut v1 = json!({ "amount": amount });
        if rng.next().is_multiple_of(2) {
            v1["note"] = Value::String(rng.text());
        }
        let decoded: MoneyDeposited =
            es_core::decode_event("FundsAdded", 1, &v1.to_string()).unwrap();
        let hand = MoneyDeposited {
            cents: amount,
            currency: "EUR".into(),
        };
        assert_eq!(
            serde_json::to_value(&decoded).unwrap(),
            serde_json::to_value(&hand).unwrap()
        );

        // AccountOpened v1 -> v2 through the typed step.
        let name = rng.text();
        let decoded: AccountOpened =
            es_core::decode_event("AccountOpened", 1, &json!({ "name": name }).to_string())
                .unwrap();
        let hand = AccountOpened {
            owner: name,
            tier: "standard".into(),
        };
        assert_eq!(
            serde_json::to_value(&decoded).unwrap(),
            serde_json::to_value(&hand).unwrap()
        );
    }
}

#[test]
fn the_event_enum_reports_current_names_and_versions() {
    assert_eq!(
        WalletEvent::EVENT_TYPES,
        &["AccountOpened", "MoneyDeposited", "MoneyWithdrawn"]
    );
    let event = deposited(1, "EUR");
    assert_eq!(
        (event.event_type(), event.event_version()),
        ("MoneyDeposited", 3)
    );
    assert_eq!(<MoneyDeposited as Event>::ALIASES, &["FundsAdded"]);
    assert_eq!(Wallet::AGGREGATE_TYPE, "Wallet");
}
