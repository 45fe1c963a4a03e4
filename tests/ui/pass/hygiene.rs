// Generated code names everything by absolute path and prefixes its locals: shadowing the
// prelude, the runtime's names and the generated code's old local names next to the derived
// types changes nothing.
#![allow(
    dead_code,
    non_camel_case_types,
    non_upper_case_globals,
    unused_imports
)]
#![no_implicit_prelude]

// Prelude types, traits and variants.
struct Result;
struct Ok;
struct Err;
type Option = ();
struct Vec;
struct Some;
struct None;
struct String;
struct Box;
struct From;
struct Into;
struct Default;
struct Clone;
struct Debug;
struct Send;
struct Sync;
struct Sized;
struct ToOwned;
// Names from es_core and serde_json.
struct Value;
struct Event;
struct Aggregate;
struct EventEnum;
struct EventHandlers;
struct IntoEvents;
struct UpcastError;
struct DecodeError;
struct UpcastFn;
fn decode_event() {}
fn to_value() {}
fn is_named() {}
fn name_clash() {}
fn check_stored_names() {}
struct NamedEvent;
const __ES_EVENTS: () = ();
// Crate-like module names.
mod core {}
mod std {}
mod serde_json {}
mod es_core {}
mod __private {}
// Lower-case constants would turn a generated binding of that name into a pattern.
const event: () = ();
const out: () = ();
const payload: () = ();
const version: () = ();
const event_type: () = ();
const from: () = ();

fn up(
    mut v: ::serde_json::Value,
) -> ::core::result::Result<::serde_json::Value, ::es_core::UpcastError> {
    if let ::core::option::Option::Some(obj) = v.as_object_mut() {
        obj.insert(
            ::std::borrow::ToOwned::to_owned("note"),
            ::serde_json::Value::String(::std::borrow::ToOwned::to_owned("migrated")),
        );
    }
    ::core::result::Result::Ok(v)
}

#[derive(::serde::Deserialize)]
struct DepositedV2 {
    amount: u64,
    note: ::std::string::String,
}

#[derive(
    ::core::fmt::Debug,
    ::core::clone::Clone,
    ::serde::Serialize,
    ::serde::Deserialize,
    ::es_core::Event,
)]
#[event(
    name = "Deposited",
    version = 3,
    upcast(from = 1, with = up),
    upcast(from = 2, via = DepositedV2),
    aliases("FundsAdded")
)]
struct Deposited {
    cents: u64,
    note: ::std::string::String,
}

impl ::core::convert::From<DepositedV2> for Deposited {
    fn from(v2: DepositedV2) -> Self {
        Self {
            cents: v2.amount * 100,
            note: v2.note,
        }
    }
}

#[derive(
    ::core::fmt::Debug,
    ::core::clone::Clone,
    ::serde::Serialize,
    ::serde::Deserialize,
    ::es_core::Event,
)]
struct Withdrawn {
    cents: u64,
}

#[derive(::core::default::Default, ::es_core::Aggregate)]
struct Account {
    cents: u64,
    notes: ::std::vec::Vec<::std::string::String>,
}

#[::es_core::applies]
impl Account {
    fn deposited(&mut self, e: &Deposited) {
        self.cents += e.cents;
        self.notes.push(::core::clone::Clone::clone(&e.note));
    }
    fn withdrawn(&mut self, e: &Withdrawn) {
        self.cents -= e.cents;
    }
}

fn main() {
    use ::es_core::EventStore as _;

    let store = ::es_core::InMemoryStore::new();
    let stream = ::es_core::StreamRef::new("Account", "a-1");
    let old = ::es_core::NewEvent::new(
        "FundsAdded",
        1,
        ::serde_json::from_str(r#"{ "amount": 2 }"#).unwrap(),
        <::es_core::Metadata as ::core::default::Default>::default(),
    );
    store
        .append(stream, ::es_core::ExpectedVersion::NoStream, &[old])
        .unwrap();
    let repo = ::es_core::Repository::<Account, _>::new(store);
    let executed = repo
        .execute("a-1", |a| {
            ::core::result::Result::Ok::<_, ::std::io::Error>((
                Withdrawn { cents: a.cents / 2 },
                ::core::option::Option::<Deposited>::None,
            ))
        })
        .unwrap();
    ::std::assert_eq!(executed.state.cents, 100);
    ::std::assert_eq!(executed.state.notes, ["migrated"]);
    ::std::assert_eq!(executed.version, 2);
}
