//! Support for generated code. Not public API: no stability promise.

pub use core;
pub use serde_json::Value;

pub use crate::codec::{DecodeError, UpcastError, decode_event};

/// The signature every `upcast(with = ...)` function must have.
pub type UpcastFn = fn(Value) -> Result<Value, UpcastError>;

/// Runs one typed upcast step: decode the payload as `Old`, convert it to `New` with
/// `From`, and encode it again for the next step.
pub fn upcast_via<Old, New>(payload: Value) -> Result<Value, UpcastError>
where
    Old: serde::de::DeserializeOwned,
    New: From<Old> + serde::Serialize,
{
    let old = Old::deserialize(&payload)?;
    Ok(serde_json::to_value(New::from(old))?)
}

/// `a == b` for string slices, in const context.
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether two events share a stored name (their event type or any alias), in const
/// context; `#[applies]` asserts this is false for every pair of its events.
pub const fn names_overlap(
    a_type: &str,
    a_aliases: &[&str],
    b_type: &str,
    b_aliases: &[&str],
) -> bool {
    if str_eq(a_type, b_type) || contains(b_aliases, a_type) || contains(a_aliases, b_type) {
        return true;
    }
    let mut i = 0;
    while i < a_aliases.len() {
        if contains(b_aliases, a_aliases[i]) {
            return true;
        }
        i += 1;
    }
    false
}

const fn contains(names: &[&str], name: &str) -> bool {
    let mut i = 0;
    while i < names.len() {
        if str_eq(names[i], name) {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether `name` is `event_type` or one of `aliases`; used by generated decoders.
#[inline]
pub fn is_named(name: &str, event_type: &str, aliases: &[&str]) -> bool {
    name == event_type || aliases.contains(&name)
}

pub use serde_json::{Error as JsonError, to_value};
pub use std::borrow::ToOwned;
pub use std::vec::Vec;

/// The event enum of an aggregate whose `#[applies]` block failed to compile; keeps the
/// one real error from being followed by "has no event handlers".
#[derive(Debug, Clone, Copy)]
pub enum NoEvents {}

impl crate::EventEnum for NoEvents {
    const EVENT_TYPES: &'static [&'static str] = &[];
    fn event_type(&self) -> &'static str {
        match *self {}
    }
    fn event_version(&self) -> u32 {
        match *self {}
    }
    fn to_payload(&self) -> Result<Value, serde_json::Error> {
        match *self {}
    }
    fn from_stored(event_type: &str, _: u32, _: &Value) -> Result<Self, DecodeError> {
        Err(DecodeError::UnknownEventType {
            event_type: event_type.to_owned(),
            known: &[],
        })
    }
}
