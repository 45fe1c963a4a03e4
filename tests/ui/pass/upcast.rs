// Upcaster chains: JSON `with` steps, typed `via` steps (V1 -> V2 -> current), a mix of
// both, and aliases. Old payloads are decoded directly and through a repository.
use es_core::{
    Aggregate, Event, EventStore, ExpectedVersion, InMemoryStore, Metadata, NewEvent, Repository,
    StreamRef, UpcastError, applies,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

// ---- JSON steps: v1 {"amount"}, v2 adds "currency", v3 renames "amount" to "cents". ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(
    name = "MoneyDeposited",
    version = 3,
    upcast(from = 1, with = migrations::add_currency),
    upcast(from = 2, with = migrations::amount_to_cents),
    aliases("FundsAdded", "Deposit")
)]
struct MoneyDeposited {
    cents: u64,
    currency: String,
}

mod migrations {
    use super::*;

    pub fn add_currency(mut v: Value) -> Result<Value, UpcastError> {
        v.as_object_mut()
            .ok_or_else(|| UpcastError::new("not an object"))?
            .insert("currency".into(), "EUR".into());
        Ok(v)
    }

    pub fn amount_to_cents(mut v: Value) -> Result<Value, UpcastError> {
        let obj = v
            .as_object_mut()
            .ok_or_else(|| UpcastError::new("not an object"))?;
        let amount = obj
            .remove("amount")
            .ok_or_else(|| UpcastError::missing_field("amount"))?;
        obj.insert("cents".into(), amount);
        Ok(v)
    }
}

// ---- Typed steps: v1 {"name"}, v2 {"first", "last"}, v3 {"owner", "tier"}. ----

#[derive(Deserialize)]
struct OpenedV1 {
    name: String,
}

#[derive(Serialize, Deserialize)]
struct OpenedV2 {
    first: String,
    last: String,
}

impl From<OpenedV1> for OpenedV2 {
    fn from(v1: OpenedV1) -> Self {
        let (first, last) = v1.name.split_once(' ').unwrap_or((&v1.name, ""));
        Self {
            first: first.into(),
            last: last.into(),
        }
    }
}

impl From<OpenedV2> for AccountOpened {
    fn from(v2: OpenedV2) -> Self {
        Self {
            owner: format!("{} {}", v2.first, v2.last).trim().into(),
            tier: "standard".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(version = 3, upcast(from = 1, via = OpenedV1), upcast(from = 2, via = OpenedV2))]
struct AccountOpened {
    owner: String,
    tier: String,
}

// ---- Mixed: a JSON step, then a typed one. v1 {"cents"} -> v2 {"cents", "reason"} -> v3. ----

fn add_reason(mut v: Value) -> Result<Value, UpcastError> {
    v["reason"] = "unknown".into();
    Ok(v)
}

#[derive(Deserialize)]
struct WithdrawnV2 {
    cents: u64,
    reason: String,
}

impl From<WithdrawnV2> for MoneyWithdrawn {
    fn from(v2: WithdrawnV2) -> Self {
        Self {
            cents: v2.cents,
            reasons: vec![v2.reason],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(
    version = 3,
    upcast(from = 2, via = WithdrawnV2),
    upcast(from = 1, with = add_reason)
)]
struct MoneyWithdrawn {
    cents: u64,
    reasons: Vec<String>,
}

#[derive(Debug, Default, Aggregate)]
struct Account {
    owner: String,
    tier: String,
    cents: i64,
    reasons: Vec<String>,
}

#[applies]
impl Account {
    fn opened(&mut self, e: &AccountOpened) {
        self.owner.clone_from(&e.owner);
        self.tier.clone_from(&e.tier);
    }
    fn deposited(&mut self, e: &MoneyDeposited) {
        self.cents += i64::try_from(e.cents).unwrap();
    }
    fn withdrawn(&mut self, e: &MoneyWithdrawn) {
        self.cents -= i64::try_from(e.cents).unwrap();
        self.reasons.extend(e.reasons.iter().cloned());
    }
}

fn main() {
    // Directly, under the current name and under aliases.
    let v1: MoneyDeposited =
        es_core::decode_event("FundsAdded", 1, &json!({"amount": 10}).to_string()).unwrap();
    assert_eq!(
        v1,
        MoneyDeposited {
            cents: 10,
            currency: "EUR".into()
        }
    );
    let v2: MoneyDeposited =
        es_core::decode_event("Deposit", 2, &json!({"amount": 5, "currency": "USD"}).to_string()).unwrap();
    assert_eq!(
        v2,
        MoneyDeposited {
            cents: 5,
            currency: "USD".into()
        }
    );
    let v3: MoneyDeposited =
        es_core::decode_event("MoneyDeposited", 3, &json!({"cents": 1, "currency": "CHF"}).to_string())
            .unwrap();
    assert_eq!(v3.cents, 1);
    assert_eq!(MoneyDeposited::ALIASES, ["FundsAdded", "Deposit"]);

    let opened: AccountOpened =
        es_core::decode_event("AccountOpened", 1, &json!({"name": "Ada Lovelace"}).to_string()).unwrap();
    assert_eq!(
        opened,
        AccountOpened {
            owner: "Ada Lovelace".into(),
            tier: "standard".into()
        }
    );
    let opened: AccountOpened =
        es_core::decode_event("AccountOpened", 2, &json!({"first": "Ada", "last": ""}).to_string()).unwrap();
    assert_eq!(opened.owner, "Ada");

    // A payload that does not fit a typed step is an error, not a panic.
    assert!(
        es_core::decode_event::<AccountOpened>("AccountOpened", 1, &json!({"nom": "x"}).to_string()).is_err()
    );
    // A step function's error surfaces too.
    assert!(
        es_core::decode_event::<MoneyDeposited>("MoneyDeposited", 2, &json!({"currency": "EUR"}).to_string())
            .is_err()
    );

    // Through a repository: a stream written by three releases.
    let store = InMemoryStore::new();
    let stream = StreamRef::new("Account", "acc-1");
    let stored = [
        ("AccountOpened", 1, json!({"name": "Ada Lovelace"})),
        ("FundsAdded", 1, json!({"amount": 100})),
        ("MoneyWithdrawn", 1, json!({"cents": 30})),
        ("MoneyDeposited", 2, json!({"amount": 5, "currency": "EUR"})),
        ("MoneyWithdrawn", 2, json!({"cents": 5, "reason": "fee"})),
        (
            "MoneyWithdrawn",
            3,
            json!({"cents": 1, "reasons": ["rounding"]}),
        ),
    ];
    let events: Vec<NewEvent> = stored
        .into_iter()
        .map(|(name, version, payload)| NewEvent::new(name, version, payload, Metadata::default()))
        .collect();
    store
        .append(stream, ExpectedVersion::NoStream, &events)
        .unwrap();

    let repo = Repository::<Account, _>::new(store);
    let account = repo.load("acc-1").unwrap().unwrap();
    assert_eq!(account.version, 6);
    assert_eq!(account.state.owner, "Ada Lovelace");
    assert_eq!(account.state.tier, "standard");
    assert_eq!(account.state.cents, 100 - 30 + 5 - 5 - 1);
    assert_eq!(account.state.reasons, ["unknown", "fee", "rounding"]);

    // New events are written at the current version and name.
    let executed = repo
        .execute("acc-1", |_| {
            Ok::<_, std::io::Error>(MoneyDeposited {
                cents: 1,
                currency: "EUR".into(),
            })
        })
        .unwrap();
    assert_eq!(executed.version, 7);
    let history = repo.history("acc-1").unwrap();
    let last = &history.last().unwrap().record;
    assert_eq!(
        (last.event_type.as_str(), last.schema_version),
        ("MoneyDeposited", 3)
    );
}
