//! Support for generated code. Not public API: no stability promise.

pub use core;
pub use serde_json::Value;

pub use crate::codec::{DecodeError, UpcastError, decode_event};

/// What `Aggregate::to_snapshot` returns.
pub type SnapshotJson = Result<Box<serde_json::value::RawValue>, serde_json::Error>;
/// What `Aggregate::from_snapshot` returns.
pub type SnapshotRestore<T> = Result<T, serde_json::Error>;

/// The state of an aggregate that declares snapshots: it is stored as JSON. A trait (not
/// a function bound) so that a state without serde gets this message, on the attribute.
#[diagnostic::on_unimplemented(
    message = "`{Self}` declares snapshots, so its state must be `Serialize` and `Deserialize`",
    label = "snapshots store the state as JSON",
    note = "add `#[derive(Serialize, Deserialize)]` to `{Self}` (fields that must not be stored can be `#[serde(skip)]` if `Default` restores them), or remove `snapshot_every`"
)]
pub trait SnapshotState: Sized {
    /// The state as JSON.
    fn to_snapshot_json(&self) -> Result<Box<serde_json::value::RawValue>, serde_json::Error>;
    /// The state from JSON.
    fn from_snapshot_json(state: &str) -> Result<Self, serde_json::Error>;
}

#[diagnostic::do_not_recommend]
impl<T: serde::Serialize + serde::de::DeserializeOwned> SnapshotState for T {
    #[inline]
    fn to_snapshot_json(&self) -> Result<Box<serde_json::value::RawValue>, serde_json::Error> {
        serde_json::value::to_raw_value(self)
    }
    #[inline]
    fn from_snapshot_json(state: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(state)
    }
}

/// The signature every `upcast(with = ...)` function must have.
pub type UpcastFn = fn(Value) -> Result<Value, UpcastError>;

/// The older type named by `upcast(via = Old)`: a typed step decodes the stored payload as
/// it. A trait (not a function bound) so that a type without `Deserialize` gets this message,
/// spanned on the `via` type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a `via` upcast type: it does not implement `Deserialize`",
    label = "`via` types are decoded from the stored payload",
    note = "add `#[derive(Deserialize)]` to `{Self}`"
)]
pub trait ViaSource: Sized {
    /// Decodes a stored payload as this older type.
    fn decode_via(payload: Value) -> Result<Self, UpcastError>;
}

#[diagnostic::do_not_recommend]
impl<T: serde::de::DeserializeOwned> ViaSource for T {
    #[inline]
    fn decode_via(payload: Value) -> Result<Self, UpcastError> {
        Ok(T::deserialize(payload)?)
    }
}

/// The conversion of a typed `upcast(via = Old)` step into the next version's type.
#[diagnostic::on_unimplemented(
    message = "`upcast(via = {Old})` needs `impl From<{Old}> for {Self}`",
    label = "no `From<{Old}>` for `{Self}`",
    note = "a `via` step decodes the stored payload as `{Old}` and converts it with `From` into the next version's type, `{Self}`"
)]
pub trait UpcastFrom<Old>: Sized {
    /// Converts the older shape into this one.
    fn upcast_from(old: Old) -> Self;
}

#[diagnostic::do_not_recommend]
impl<Old, New: From<Old>> UpcastFrom<Old> for New {
    #[inline]
    fn upcast_from(old: Old) -> Self {
        New::from(old)
    }
}

/// The `via` type of a middle step (`upcast(from = 2, via = V2)` when 2 is not the last
/// version before the current one): step 1 converts into it and encodes it again.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is converted into and encoded again by the step before it, so it needs `Serialize`",
    label = "the previous `via` step converts into `{Self}` and encodes it",
    note = "add `#[derive(Serialize, Deserialize)]` to `{Self}`"
)]
pub trait ViaEncode {
    /// Encodes this intermediate shape for the next step.
    fn encode_via(&self) -> Result<Value, UpcastError>;
}

#[diagnostic::do_not_recommend]
impl<T: serde::Serialize> ViaEncode for T {
    #[inline]
    fn encode_via(&self) -> Result<Value, UpcastError> {
        Ok(serde_json::to_value(self)?)
    }
}

/// Encodes the result of a last `via` step: the event itself.
#[inline]
pub fn encode_event<E: crate::Event>(event: &E) -> Result<Value, UpcastError> {
    Ok(serde_json::to_value(event)?)
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

/// `name_clash`: the two events' stored names are distinct.
pub const NO_CLASH: u8 = 0;
/// `name_clash`: both events have the same event type.
pub const SAME_NAME: u8 = 1;
/// `name_clash`: an alias of the first event is the event type of the second.
pub const FIRST_ALIAS_IS_SECOND_NAME: u8 = 2;
/// `name_clash`: an alias of the second event is the event type of the first.
pub const SECOND_ALIAS_IS_FIRST_NAME: u8 = 3;
/// `name_clash`: the events share an alias.
pub const SHARED_ALIAS: u8 = 4;

/// How two events' stored names (event type and aliases) clash, in const context: one of
/// the codes above. [`check_stored_names`] turns every code but [`NO_CLASH`] into a compile
/// error naming both events.
pub const fn name_clash(a_type: &str, a_aliases: &[&str], b_type: &str, b_aliases: &[&str]) -> u8 {
    if str_eq(a_type, b_type) {
        return SAME_NAME;
    }
    if contains(a_aliases, b_type) {
        return FIRST_ALIAS_IS_SECOND_NAME;
    }
    if contains(b_aliases, a_type) {
        return SECOND_ALIAS_IS_FIRST_NAME;
    }
    let mut i = 0;
    while i < a_aliases.len() {
        if contains(b_aliases, a_aliases[i]) {
            return SHARED_ALIAS;
        }
        i += 1;
    }
    NO_CLASH
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

/// One event of an aggregate as [`check_stored_names`] sees it: the Rust type as written in
/// the handler, its event type and its aliases.
pub type NamedEvent = (&'static str, &'static str, &'static [&'static str]);

/// Fails the evaluation of the `const` it is called in if the event written `rust` in
/// `events` (the events of `aggregate`'s `#[applies]` block, in handler order) shares a
/// stored name or an alias with an event listed before it. `#[applies]` calls it once per
/// handler but the first, spanned on the handler's event type: `#[track_caller]` makes rustc
/// report the failed evaluation there, with a message naming both events.
#[track_caller]
pub const fn check_stored_names(aggregate: &str, events: &[NamedEvent], rust: &str) {
    let mut later = 0;
    while later < events.len() && !str_eq(events[later].0, rust) {
        later += 1;
    }
    let mut earlier = 0;
    while earlier < later {
        let (a, b) = (events[earlier], events[later]);
        let code = name_clash(a.1, a.2, b.1, b.2);
        if code != NO_CLASH {
            let message = clash_message(code, aggregate, a, b);
            panic!(
                "{}",
                message.as_str_or("two events of this aggregate share a stored name or alias")
            );
        }
        earlier += 1;
    }
}

/// The message for a clash `code` between the events `a` (handled first) and `b`.
const fn clash_message(code: u8, aggregate: &str, a: NamedEvent, b: NamedEvent) -> Message {
    let m = Message::new();
    match code {
        SAME_NAME => m
            .push("events `")
            .push(a.0)
            .push("` and `")
            .push(b.0)
            .push("` of aggregate `")
            .push(aggregate)
            .push("` have the same stored name, `")
            .push(a.1)
            .push("`, so their stored events could not be told apart; give one of them a distinct `#[event(name = \"...\")]`"),
        FIRST_ALIAS_IS_SECOND_NAME | SECOND_ALIAS_IS_FIRST_NAME => {
            let (aliased, named) = if code == FIRST_ALIAS_IS_SECOND_NAME {
                (a, b)
            } else {
                (b, a)
            };
            m.push("an alias of event `")
                .push(aliased.0)
                .push("`, `")
                .push(named.1)
                .push("`, is the stored name of event `")
                .push(named.0)
                .push("`, both handled by aggregate `")
                .push(aggregate)
                .push("`; remove the alias from `")
                .push(aliased.0)
                .push("` or rename `")
                .push(named.0)
                .push("` with `#[event(name = \"...\")]`")
        }
        _ => m
            .push("events `")
            .push(a.0)
            .push("` and `")
            .push(b.0)
            .push("` of aggregate `")
            .push(aggregate)
            .push("` share an alias, so their stored events could not be told apart; remove it from one of them"),
    }
}

/// A message built in const context, for `panic!("{}", ...)`: pieces that do not fit are
/// left out whole, so it stays valid UTF-8. Used by the compile-time checks of
/// `#[applies]` and `#[read_model]`.
pub(crate) struct Message {
    bytes: [u8; Message::CAPACITY],
    len: usize,
}

impl Message {
    const CAPACITY: usize = 1024;

    pub(crate) const fn new() -> Self {
        Message {
            bytes: [0; Message::CAPACITY],
            len: 0,
        }
    }

    pub(crate) const fn push(mut self, piece: &str) -> Self {
        let piece = piece.as_bytes();
        if piece.len() > Message::CAPACITY - self.len {
            return self;
        }
        let mut i = 0;
        while i < piece.len() {
            self.bytes[self.len + i] = piece[i];
            i += 1;
        }
        self.len += piece.len();
        self
    }

    /// The message, or `fallback` if it is not valid UTF-8 (it always is: pieces are
    /// pushed whole).
    pub(crate) const fn as_str_or<'a>(&'a self, fallback: &'a str) -> &'a str {
        match core::str::from_utf8(self.bytes.split_at(self.len).0) {
            Ok(message) => message,
            Err(_) => fallback,
        }
    }
}

/// Whether `name` is `event_type` or one of `aliases`; used by generated decoders.
#[inline]
pub fn is_named(name: &str, event_type: &str, aliases: &[&str]) -> bool {
    name == event_type || aliases.contains(&name)
}

pub use serde_json::value::{RawValue, to_raw_value};
pub use serde_json::{Error as JsonError, to_value};
pub use std::borrow::ToOwned;
pub use std::boxed::Box;
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
    fn to_payload(&self) -> Result<Box<RawValue>, serde_json::Error> {
        match *self {}
    }
    fn from_stored(event_type: &str, _: u32, _: &str) -> Result<Self, DecodeError> {
        Err(DecodeError::UnknownEventType {
            event_type: event_type.to_owned(),
            known: &[],
        })
    }
}

/// Support for the code `#[read_model]` generates.
pub use crate::projection::private::*;
