//! Derive macros for [`es-core`](https://docs.rs/es-core). Depend on `es-core`, which
//! re-exports them; this crate is its implementation detail.
//!
//! Every macro follows the same pipeline: parse the input into a small model, validate it
//! (collecting every error, each spanned on the user's tokens), then generate code that
//! names the runtime through absolute paths only.

mod aggregate;
mod applies;
mod attr;
mod ctxt;
mod event;
mod handler;
mod read_model;
#[cfg(test)]
mod snapshots;
mod symbol;
#[cfg(test)]
mod test_helpers;

use proc_macro::TokenStream;

/// The errors plus a stub impl that keeps them from being followed by "not an event" or
/// "not an aggregate" wherever the type is used.
fn with_fallback(
    error: syn::Error,
    fallback: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let error = error.into_compile_error();
    quote::quote!(#fallback #error)
}

/// Makes a struct (or enum) a stored event: a stable event-type name, a schema version,
/// and an upcaster chain that migrates payloads stored at older versions.
///
/// The type must also implement `Serialize` and `Deserialize` (the payload is JSON).
///
#[doc = include_str!("../doc/event_attributes.md")]
///
/// Checked at compile time: every version below `version` has exactly one step (no gap, no
/// duplicate, no step from the current version or later); names and aliases are valid and
/// distinct; `with` functions have the right type; no unions, no generics, no enum without
/// variants; `#[event(...)]` only on the type itself, never on a variant or a field.
///
/// ```
/// use es_core::{Event, UpcastError};
/// use serde::{Deserialize, Serialize};
/// use serde_json::Value;
///
/// // v1 stored {"amount": 10}; v2 added "currency"; v3 renamed "amount" to "cents".
/// #[derive(Debug, Serialize, Deserialize, Event)]
/// #[event(name = "MoneyDeposited", version = 3,
///         upcast(from = 1, with = v1_to_v2),
///         upcast(from = 2, with = v2_to_v3),
///         aliases("FundsAdded"))]
/// struct MoneyDeposited { cents: u64, currency: String }
///
/// fn v1_to_v2(mut v: Value) -> Result<Value, UpcastError> {
///     v.as_object_mut().ok_or_else(|| UpcastError::new("not an object"))?
///         .insert("currency".into(), "EUR".into());
///     Ok(v)
/// }
/// fn v2_to_v3(mut v: Value) -> Result<Value, UpcastError> {
///     let obj = v.as_object_mut().ok_or_else(|| UpcastError::new("not an object"))?;
///     let amount = obj.remove("amount").ok_or_else(|| UpcastError::missing_field("amount"))?;
///     obj.insert("cents".into(), amount);
///     Ok(v)
/// }
///
/// let e: MoneyDeposited = es_core::decode_event("FundsAdded", 1, r#"{"amount": 10}"#)?;
/// assert_eq!((e.cents, e.currency.as_str()), (10, "EUR"));
/// # Ok::<(), es_core::DecodeError>(())
/// ```
///
/// The hand-written equivalent of `#[derive(Event)] #[event(version = 2, upcast(from = 1, with = f))]`
/// (the derive also checks the upcaster chain and the names at compile time):
///
/// ```
/// use es_core::{Event, UpcastError};
/// use serde::{Deserialize, Serialize};
/// use serde_json::Value;
///
/// #[derive(Serialize, Deserialize)]
/// struct MoneyDeposited { cents: u64 }
///
/// impl Event for MoneyDeposited {
///     const EVENT_TYPE: &'static str = "MoneyDeposited";
///     const VERSION: u32 = 2;
///     const ALIASES: &'static [&'static str] = &[];
///     fn upcast_step(from: u32, payload: Value) -> Result<Value, UpcastError> {
///         match from {
///             1 => f(payload),
///             _ => Err(UpcastError::new(format!("no upcaster is registered from version {from}"))),
///         }
///     }
/// }
///
/// // v1 stored {"amount": 10}.
/// fn f(mut v: Value) -> Result<Value, UpcastError> {
///     let obj = v.as_object_mut().ok_or_else(|| UpcastError::new("not an object"))?;
///     let amount = obj.remove("amount").ok_or_else(|| UpcastError::missing_field("amount"))?;
///     obj.insert("cents".into(), amount);
///     Ok(v)
/// }
///
/// let e: MoneyDeposited = es_core::decode_event("MoneyDeposited", 1, r#"{"amount": 10}"#)?;
/// assert_eq!(e.cents, 10);
/// # Ok::<(), es_core::DecodeError>(())
/// ```
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    event::expand(&input)
        .unwrap_or_else(|error| with_fallback(error, event::fallback(&input)))
        .into()
}

/// Makes a struct an aggregate: names its stored aggregate type and links it to the event
/// handlers of its `#[applies]` block.
///
/// The struct must implement `Default` (the state of a new stream) and have an
/// `#[applies] impl` block; without one, compilation fails with "`X` has no event handlers".
/// `#[aggregate(...)]` goes on the type itself, never on a variant or a field.
///
#[doc = include_str!("../doc/aggregate_attributes.md")]
///
/// ```
/// use es_core::{Aggregate, Event, InMemoryStore, Repository, applies};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// struct MoneyDeposited { cents: u64 }
///
/// #[derive(Debug, Default, Aggregate)]
/// #[aggregate(name = "BankAccount")]
/// struct Account { balance: u64 }
///
/// #[applies]
/// impl Account {
///     fn deposited(&mut self, event: &MoneyDeposited) { self.balance += event.cents; }
/// }
///
/// assert_eq!(Account::AGGREGATE_TYPE, "BankAccount");
/// let repo = Repository::<Account, _>::new(InMemoryStore::new());
/// repo.execute_infallible("acc-1", |_: &Account| MoneyDeposited { cents: 250 })?;
/// assert_eq!(repo.load("acc-1")?.map(|a| a.state.balance), Some(250));
/// # Ok::<(), es_core::Error>(())
/// ```
///
/// The hand-written equivalent of the derive, for the same `#[applies]` block:
///
/// ```
/// # use es_core::{Event, applies};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// # struct MoneyDeposited { cents: u64 }
/// # #[applies]
/// # impl Account {
/// #     fn deposited(&mut self, event: &MoneyDeposited) { self.balance += event.cents; }
/// # }
/// #[derive(Debug, Default)]
/// struct Account { balance: u64 }
///
/// impl es_core::Aggregate for Account {
///     const AGGREGATE_TYPE: &'static str = "BankAccount";
///     type Event = <Account as es_core::EventHandlers>::Event; // AccountEvent
///     fn apply(&mut self, event: &Self::Event) {
///         <Account as es_core::EventHandlers>::apply_event(self, event)
///     }
/// }
/// # let mut account = Account::default();
/// # es_core::Aggregate::apply(&mut account, &AccountEvent::from(MoneyDeposited { cents: 5 }));
/// # assert_eq!(account.balance, 5);
/// ```
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    aggregate::expand(&input)
        .unwrap_or_else(|error| with_fallback(error, aggregate::fallback(&input)))
        .into()
}

/// Turns an inherent impl block into the aggregate's event handlers: every method
/// `fn name(&mut self, event: &SomeEvent)` applies one event type.
///
/// Generates, next to the block:
/// * the event enum (default name `{Aggregate}Event`) with one variant per handler, named
///   after the event type, deriving `Debug` and `Clone`;
/// * `From<SomeEvent>` for the enum, and [`IntoEvents`] so decisions can return bare events;
/// * `EventEnum` (stored name and version of each variant, JSON encoding, and decoding from
///   a stored name or alias, running upcasters);
/// * `EventHandlers`, whose `apply_event` is a single `match` calling your methods.
///
#[doc = include_str!("../doc/applies_attributes.md")]
///
/// Checked at compile time: handler signatures (`&mut self`, one `&Event` argument, no return
/// value, not generic/async/const/unsafe/extern); every argument type implements `Event`; no
/// two handlers for one event, nor two event types with the same name (they would be the same
/// variant); no two events of the aggregate share a stored name or alias. With the default
/// derives, the event types must be `Debug` and `Clone` too. The type must implement
/// `Aggregate` (`#[derive(Aggregate)]`), else "`X` is not an aggregate" points at the block. No handler may take the
/// generated enum itself, and no item of the block may carry `#[event]`, `#[aggregate]` or
/// another `#[applies]`.
///
/// An aggregate has exactly one `#[applies]` block: each block generates the enum and the
/// dispatch, so a second block fails with "the name
/// `one_applies_block_per_aggregate__move_these_handlers_into_the_first_block_for_X` is defined
/// multiple times"; move its handlers into the first block. The enum takes its name
/// (`{Aggregate}Event`) in the block's module: if a type of that name is already there, name the
/// enum with `#[applies(event_enum = OtherName)]`.
///
/// Associated consts (and, where the compiler allows them, associated types) are kept as
/// written and may be used by the handlers; a macro call in the block is rejected, since the
/// methods it expands to could not be checked or dispatched.
///
/// A handler under `#[cfg(...)]` (or a `#[cfg_attr(..., cfg(...))]`) takes its variant, its
/// conversions, its match arms and its `EVENT_TYPES` entry with it: when the method is
/// compiled out, the event is not part of the enum.
///
/// ```
/// use es_core::{Aggregate, Event, EventEnum, applies};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// struct AccountOpened { owner: String }
/// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// struct MoneyDeposited { cents: u64 }
///
/// #[derive(Debug, Default, Aggregate)]
/// struct BankAccount { owner: String, balance: u64 }
///
/// #[applies]
/// impl BankAccount {
///     fn opened(&mut self, event: &AccountOpened) { self.owner = event.owner.clone(); }
///     fn deposited(&mut self, event: &MoneyDeposited) { self.balance += event.cents; }
/// }
///
/// let mut account = BankAccount::default();
/// account.apply(&BankAccountEvent::from(AccountOpened { owner: "ada".into() }));
/// account.apply(&BankAccountEvent::from_stored("MoneyDeposited", 1, r#"{"cents": 5}"#)?);
/// assert_eq!((account.owner.as_str(), account.balance), ("ada", 5));
/// assert_eq!(BankAccountEvent::EVENT_TYPES, ["AccountOpened", "MoneyDeposited"]);
/// # Ok::<(), es_core::DecodeError>(())
/// ```
///
/// The generated enum and dispatch, written by hand (the `EventEnum` impl, hidden here,
/// matches on the variants alike):
///
/// ```
/// # use es_core::{Event, EventEnum, RawValue};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// # struct AccountOpened { owner: String }
/// # #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// # struct MoneyDeposited { cents: u64 }
/// # #[derive(Debug, Default)]
/// # struct BankAccount { owner: String, balance: u64 }
/// # impl BankAccount {
/// #     fn opened(&mut self, event: &AccountOpened) { self.owner = event.owner.clone(); }
/// #     fn deposited(&mut self, event: &MoneyDeposited) { self.balance += event.cents; }
/// # }
/// #[derive(Debug, Clone)]
/// pub enum BankAccountEvent { AccountOpened(AccountOpened), MoneyDeposited(MoneyDeposited) }
///
/// impl From<MoneyDeposited> for BankAccountEvent {
///     fn from(event: MoneyDeposited) -> Self { Self::MoneyDeposited(event) }
/// }
///
/// impl es_core::EventHandlers for BankAccount {
///     type Event = BankAccountEvent;
///     fn apply_event(&mut self, event: &BankAccountEvent) {
///         match event {
///             BankAccountEvent::AccountOpened(e) => self.opened(e),
///             BankAccountEvent::MoneyDeposited(e) => self.deposited(e),
///         }
///     }
/// }
/// # impl EventEnum for BankAccountEvent {
/// #     const EVENT_TYPES: &'static [&'static str] =
/// #         &[AccountOpened::EVENT_TYPE, MoneyDeposited::EVENT_TYPE];
/// #     fn event_type(&self) -> &'static str {
/// #         match self {
/// #             Self::AccountOpened(_) => AccountOpened::EVENT_TYPE,
/// #             Self::MoneyDeposited(_) => MoneyDeposited::EVENT_TYPE,
/// #         }
/// #     }
/// #     fn event_version(&self) -> u32 {
/// #         match self {
/// #             Self::AccountOpened(_) => AccountOpened::VERSION,
/// #             Self::MoneyDeposited(_) => MoneyDeposited::VERSION,
/// #         }
/// #     }
/// #     fn to_payload(&self) -> Result<Box<RawValue>, serde_json::Error> {
/// #         match self {
/// #             Self::AccountOpened(e) => serde_json::value::to_raw_value(e),
/// #             Self::MoneyDeposited(e) => serde_json::value::to_raw_value(e),
/// #         }
/// #     }
/// #     fn from_stored(event_type: &str, version: u32, payload: &str) -> Result<Self, es_core::DecodeError> {
/// #         if event_type == MoneyDeposited::EVENT_TYPE {
/// #             return es_core::decode_event(event_type, version, payload).map(Self::MoneyDeposited);
/// #         }
/// #         es_core::decode_event(event_type, version, payload).map(Self::AccountOpened)
/// #     }
/// # }
/// let mut account = BankAccount::default();
/// es_core::EventHandlers::apply_event(&mut account, &MoneyDeposited { cents: 5 }.into());
/// assert_eq!(account.balance, 5);
/// ```
///
/// [`IntoEvents`]: https://docs.rs/es-core/latest/es_core/trait.IntoEvents.html
#[proc_macro_attribute]
pub fn applies(args: TokenStream, item: TokenStream) -> TokenStream {
    applies::expand(args.into(), item.into()).into()
}

/// Turns an inherent impl block into a read model's event handlers: every method handles
/// one event type of one aggregate type, named with `#[from(Aggregate)]`:
/// `fn name(&mut self, event: &SomeEvent)`, or
/// `fn name(&mut self, event: &SomeEvent, record: &es_core::EventRecord<'_>)` to see the
/// stored envelope (stream id, version, global position, time, metadata). A handler
/// returns nothing, or `Result<(), E>` (any error that converts into
/// `Box<dyn Error + Send + Sync>`): a projector stops at the event whose handler failed.
///
/// Generates `es_core::ReadModel` for the type: its stable `NAME`, the `HANDLES` table of
/// (aggregate type, event type, aliases) a projector reads by, an `apply` that decodes (with
/// the event's upcasters) only the events it handles and skips the others without decoding
/// them, and `reset` for rebuilds.
///
/// Events of two aggregates may share a stored name (each aggregate has its `Created`): the
/// handler's `#[from(...)]` says which one it takes, and events of the other aggregate type
/// never reach it.
///
#[doc = include_str!("../doc/read_model_attributes.md")]
///
/// Checked at compile time: every handler names its aggregate (by `#[from(...)]` or the
/// block's `from`), and its event is one that aggregate's `#[applies]` block handles; handler
/// signatures (`&mut self`, `&Event`, optionally `&EventRecord<'_>`, nothing else; not
/// generic/async/const/unsafe/extern); the event implements `Event` and the aggregate
/// `Aggregate`; no two handlers for the same event of the same aggregate; the return type is
/// `()` or `Result<(), E>`; the type implements `Default` (unless `reset` is given).
///
/// A handler under `#[cfg(...)]` (or `#[cfg_attr(..., cfg(...))]`) takes its `HANDLES` entry,
/// its dispatch and its checks with it. Associated consts are kept as written; a macro call
/// in the block is rejected.
///
/// ```
/// use std::collections::BTreeMap;
/// use es_core::{Aggregate, Event, EventRecord, ReadModel, applies, read_model};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// struct ItemsAdded { item: String, count: u32 }
///
/// #[derive(Debug, Default, Aggregate)]
/// struct Inventory { items: u32 }
///
/// #[applies]
/// impl Inventory {
///     fn added(&mut self, e: &ItemsAdded) { self.items += e.count; }
/// }
///
/// /// How many of each item were ever added, over every inventory.
/// #[derive(Debug, Default)]
/// struct Added { by_item: BTreeMap<String, u32>, last: u64 }
///
/// #[read_model(name = "items-added")]
/// impl Added {
///     #[from(Inventory)]
///     fn added(&mut self, e: &ItemsAdded, record: &EventRecord<'_>) {
///         *self.by_item.entry(e.item.clone()).or_default() += e.count;
///         self.last = record.global_position;
///     }
/// }
///
/// assert_eq!(Added::NAME, "items-added");
/// assert_eq!(Added::HANDLES[0].aggregate_type, "Inventory");
/// ```
///
/// The hand-written equivalent (the macro also checks that `Inventory` records `ItemsAdded`):
///
/// ```
/// # use std::collections::BTreeMap;
/// # use es_core::{Aggregate, Event, EventRecord, applies};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// # struct ItemsAdded { item: String, count: u32 }
/// # #[derive(Debug, Default, Aggregate)]
/// # struct Inventory { items: u32 }
/// # #[applies]
/// # impl Inventory { fn added(&mut self, e: &ItemsAdded) { self.items += e.count; } }
/// # #[derive(Debug, Default)]
/// # struct Added { by_item: BTreeMap<String, u32> }
/// # impl Added {
/// #     fn added(&mut self, e: &ItemsAdded) { *self.by_item.entry(e.item.clone()).or_default() += e.count; }
/// # }
/// impl es_core::ReadModel for Added {
///     const NAME: &'static str = "Added";
///     const HANDLES: &'static [es_core::Handled] = &[es_core::Handled {
///         aggregate_type: Inventory::AGGREGATE_TYPE,
///         event_type: ItemsAdded::EVENT_TYPE,
///         aliases: ItemsAdded::ALIASES,
///     }];
///     fn apply(&mut self, record: &EventRecord<'_>) -> Result<(), es_core::ApplyError> {
///         if Self::HANDLES[0].matches(record) {
///             let event: ItemsAdded =
///                 es_core::decode_event(record.event_type, record.schema_version, record.payload)
///                     .map_err(es_core::ApplyError::Decode)?;
///             self.added(&event);
///         }
///         Ok(())
///     }
///     fn reset(&mut self) { *self = Self::default(); }
/// }
/// ```
#[proc_macro_attribute]
pub fn read_model(args: TokenStream, item: TokenStream) -> TokenStream {
    read_model::expand(args.into(), item.into()).into()
}
