//! The benchmark domain, a bank account, written three ways.
//!
//! Events: `Opened { owner }`, `Deposited { amount }`, `Withdrawn { amount }`. Commands: open
//! (rejected if already open), deposit (rejected if not open), withdraw (rejected if not open
//! or on insufficient funds). All three implementations share [`BankError`] and make the same
//! decisions; [`baseline`] and [`cqrs`] even share the state type and its decision methods.

use std::fmt;

/// Why a bank command was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BankError {
    /// `open` on an account that is already open.
    AlreadyOpen,
    /// `deposit` or `withdraw` on an account that was never opened.
    NotOpen,
    /// `withdraw` of more than the balance.
    InsufficientFunds {
        /// The balance at the time.
        balance: u64,
        /// The amount asked for.
        requested: u64,
    },
}

impl fmt::Display for BankError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyOpen => f.write_str("the account is already open"),
            Self::NotOpen => f.write_str("the account is not open"),
            Self::InsufficientFunds { balance, requested } => {
                write!(
                    f,
                    "insufficient funds: balance {balance}, requested {requested}"
                )
            }
        }
    }
}

impl std::error::Error for BankError {}

/// The hand-written baseline: events as JSON strings in a `HashMap`, decoded with serde's
/// default (externally tagged) enum form and applied with a hand-written `match`.
pub mod baseline {
    use std::collections::HashMap;

    use serde::{Deserialize, Serialize};

    use super::BankError;

    /// The events, in serde's default externally tagged form: `{"Deposited":{"amount":5}}`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub enum AccountEvent {
        /// The account was opened.
        Opened {
            /// Who owns it.
            owner: String,
        },
        /// Money was paid in.
        Deposited {
            /// How much.
            amount: u64,
        },
        /// Money was taken out.
        Withdrawn {
            /// How much.
            amount: u64,
        },
    }

    /// The account state. Also the state of the cqrs-es aggregate, which wraps it.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct Account {
        /// The owner's name ("" until opened).
        pub owner: String,
        /// The balance.
        pub balance: u64,
        /// Whether the account was opened.
        pub open: bool,
    }

    impl Account {
        /// Applies one event: the hand-written `match` the derive macros generate for es.
        pub fn apply(&mut self, event: AccountEvent) {
            match event {
                AccountEvent::Opened { owner } => {
                    self.owner = owner;
                    self.open = true;
                }
                AccountEvent::Deposited { amount } => self.balance += amount,
                AccountEvent::Withdrawn { amount } => self.balance -= amount,
            }
        }

        /// Decides `open`.
        pub fn open(&self, owner: &str) -> Result<AccountEvent, BankError> {
            if self.open {
                return Err(BankError::AlreadyOpen);
            }
            Ok(AccountEvent::Opened {
                owner: owner.to_owned(),
            })
        }

        /// Decides `deposit`.
        pub fn deposit(&self, amount: u64) -> Result<AccountEvent, BankError> {
            if !self.open {
                return Err(BankError::NotOpen);
            }
            Ok(AccountEvent::Deposited { amount })
        }

        /// Decides `withdraw`.
        pub fn withdraw(&self, amount: u64) -> Result<AccountEvent, BankError> {
            if !self.open {
                return Err(BankError::NotOpen);
            }
            if amount > self.balance {
                return Err(BankError::InsufficientFunds {
                    balance: self.balance,
                    requested: amount,
                });
            }
            Ok(AccountEvent::Withdrawn { amount })
        }
    }

    /// Why a baseline command failed.
    #[derive(Debug)]
    pub enum CommandError {
        /// The decision rejected the command; nothing was stored.
        Rejected(BankError),
        /// A stored or new event did not (de)serialize.
        Json(serde_json::Error),
    }

    impl From<serde_json::Error> for CommandError {
        fn from(error: serde_json::Error) -> Self {
            Self::Json(error)
        }
    }

    /// Stream id -> the stream's events as JSON strings.
    #[derive(Debug, Default)]
    pub struct Store {
        streams: HashMap<String, Vec<String>>,
    }

    impl Store {
        /// An empty store.
        pub fn new() -> Self {
            Self::default()
        }

        /// Rebuilds the state of stream `id` and its version (0: no such stream).
        pub fn load(&self, id: &str) -> Result<(Account, usize), serde_json::Error> {
            let mut account = Account::default();
            let Some(events) = self.streams.get(id) else {
                return Ok((account, 0));
            };
            for json in events {
                account.apply(serde_json::from_str(json)?);
            }
            Ok((account, events.len()))
        }

        /// Appends an event as JSON, without a decision (for seeding).
        pub fn push(&mut self, id: &str, event: &AccountEvent) -> Result<(), serde_json::Error> {
            let json = serde_json::to_string(event)?;
            self.streams.entry(id.to_owned()).or_default().push(json);
            Ok(())
        }

        /// Runs a command: load, decide, serialize the new event, push it.
        pub fn execute(
            &mut self,
            id: &str,
            decide: impl FnOnce(&Account) -> Result<AccountEvent, BankError>,
        ) -> Result<(), CommandError> {
            let (account, _version) = self.load(id)?;
            let event = decide(&account).map_err(CommandError::Rejected)?;
            self.push(id, &event)?;
            Ok(())
        }
    }
}

/// The cqrs-es 0.5 aggregate: the baseline state and decisions behind cqrs-es's traits.
pub mod cqrs {
    use cqrs_es::event_sink::EventSink;
    use cqrs_es::{Aggregate, DomainEvent};
    use serde::{Deserialize, Serialize};

    use super::BankError;
    use super::baseline::Account;
    pub use super::baseline::AccountEvent;

    impl DomainEvent for AccountEvent {
        fn event_type(&self) -> String {
            match self {
                Self::Opened { .. } => "Opened",
                Self::Deposited { .. } => "Deposited",
                Self::Withdrawn { .. } => "Withdrawn",
            }
            .to_owned()
        }

        fn event_version(&self) -> String {
            "1".to_owned()
        }
    }

    /// The commands cqrs-es dispatches to [`CqrsAccount::handle`].
    #[derive(Debug, Clone)]
    pub enum AccountCommand {
        /// Open the account.
        Open {
            /// Who owns it.
            owner: String,
        },
        /// Pay money in.
        Deposit {
            /// How much.
            amount: u64,
        },
        /// Take money out.
        Withdraw {
            /// How much.
            amount: u64,
        },
    }

    /// The account as a cqrs-es aggregate (`Clone` because `MemStore` is only `Clone` then).
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct CqrsAccount(pub Account);

    impl Aggregate for CqrsAccount {
        const TYPE: &'static str = "BankAccount";
        type Command = AccountCommand;
        type Event = AccountEvent;
        type Error = BankError;
        type Services = ();

        async fn handle(
            &mut self,
            command: AccountCommand,
            _services: &(),
            sink: &EventSink<Self>,
        ) -> Result<(), BankError> {
            let event = match command {
                AccountCommand::Open { owner } => self.0.open(&owner)?,
                AccountCommand::Deposit { amount } => self.0.deposit(amount)?,
                AccountCommand::Withdraw { amount } => self.0.withdraw(amount)?,
            };
            // `write` applies the event to `self` and queues it for the commit.
            sink.write(event, self).await;
            Ok(())
        }

        fn apply(&mut self, event: AccountEvent) {
            self.0.apply(event);
        }
    }
}

/// The es aggregate: event structs with `#[derive(Event)]`, handlers in an `#[applies]` block.
pub mod es {
    use es_core::applies;
    use es_core::{
        Aggregate, AsyncEventStore, Event, EventStore, ExpectedVersion, Metadata, NewEvent,
        StreamRef,
    };
    use serde::{Deserialize, Serialize};

    use super::BankError;

    /// The account was opened.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
    pub struct Opened {
        /// Who owns it.
        pub owner: String,
    }

    /// Money was paid in.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
    pub struct Deposited {
        /// How much.
        pub amount: u64,
    }

    /// Money was taken out.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
    pub struct Withdrawn {
        /// How much.
        pub amount: u64,
    }

    /// The account state, stored under aggregate type `BankAccount`.
    #[derive(Debug, Default, Aggregate)]
    #[aggregate(name = "BankAccount")]
    pub struct BankAccount {
        /// The owner's name ("" until opened).
        pub owner: String,
        /// The balance.
        pub balance: u64,
        /// Whether the account was opened.
        pub open: bool,
    }

    #[applies]
    impl BankAccount {
        fn opened(&mut self, e: &Opened) {
            self.owner.clone_from(&e.owner);
            self.open = true;
        }
        fn deposited(&mut self, e: &Deposited) {
            self.balance += e.amount;
        }
        fn withdrawn(&mut self, e: &Withdrawn) {
            self.balance -= e.amount;
        }
    }

    impl BankAccount {
        /// Decides `open`.
        pub fn open(&self, owner: &str) -> Result<Opened, BankError> {
            if self.open {
                return Err(BankError::AlreadyOpen);
            }
            Ok(Opened {
                owner: owner.to_owned(),
            })
        }

        /// Decides `deposit`.
        pub fn deposit(&self, amount: u64) -> Result<Deposited, BankError> {
            if !self.open {
                return Err(BankError::NotOpen);
            }
            Ok(Deposited { amount })
        }

        /// Decides `withdraw`.
        pub fn withdraw(&self, amount: u64) -> Result<Withdrawn, BankError> {
            if !self.open {
                return Err(BankError::NotOpen);
            }
            if amount > self.balance {
                return Err(BankError::InsufficientFunds {
                    balance: self.balance,
                    requested: amount,
                });
            }
            Ok(Withdrawn { amount })
        }
    }

    /// A stored `Deposited` event of `amount`, as the repository would write it.
    pub fn deposited_event(amount: u64) -> NewEvent {
        new_event(&Deposited { amount })
    }

    /// A stored event of type `E`, as the repository would write it.
    pub fn new_event<E: Event>(event: &E) -> NewEvent {
        let payload = serde_json::to_value(event).expect("bank events serialize");
        NewEvent::new(E::EVENT_TYPE, E::VERSION, payload, Metadata::new())
    }

    /// Seeds account `id` with one `Opened` and `deposits` `Deposited { amount: 1 }` events,
    /// appended directly in batches of 1,000 (a few commits, so durable stores seed fast).
    pub fn seed<S: EventStore>(store: &S, id: &str, deposits: u64) {
        let stream = StreamRef::new(BankAccount::AGGREGATE_TYPE, id);
        let mut version = 0;
        for chunk in seed_events(deposits).chunks(1_000) {
            let outcome = store
                .append(stream, ExpectedVersion::from_version(version), chunk)
                .expect("seed append");
            version = outcome.stream_version;
        }
    }

    /// [`seed`] through an [`AsyncEventStore`].
    pub async fn seed_async<S: AsyncEventStore>(store: &S, id: &str, deposits: u64) {
        let stream = StreamRef::new(BankAccount::AGGREGATE_TYPE, id);
        let mut version = 0;
        for chunk in seed_events(deposits).chunks(1_000) {
            let outcome = store
                .append(stream, ExpectedVersion::from_version(version), chunk)
                .await
                .expect("seed append");
            version = outcome.stream_version;
        }
    }

    /// One `Opened`, then `deposits` `Deposited { amount: 1 }`.
    fn seed_events(deposits: u64) -> Vec<NewEvent> {
        let mut events = vec![new_event(&Opened {
            owner: "Alice".to_owned(),
        })];
        events.extend((0..deposits).map(|_| deposited_event(1)));
        events
    }
}
