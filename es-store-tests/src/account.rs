//! The small aggregate the suite drives through [`es_core::Repository`], written with the
//! real derives exactly as a user would.

use std::fmt;

use es_core::{Aggregate, Event, applies};
use serde::{Deserialize, Serialize};

/// An account was opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct Opened {
    /// Who owns the account.
    pub owner: String,
}

/// Money was deposited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct Deposited {
    /// How much.
    pub amount: u64,
}

/// A bank account: the suite's test aggregate (stored aggregate type `"Account"`).
#[derive(Debug, Default, Aggregate)]
pub struct Account {
    /// Who owns the account (empty until opened).
    pub owner: String,
    /// The sum of every deposit.
    pub balance: u64,
    /// Whether [`Opened`] happened.
    pub open: bool,
}

#[applies]
impl Account {
    fn opened(&mut self, event: &Opened) {
        self.owner.clone_from(&event.owner);
        self.open = true;
    }

    fn deposited(&mut self, event: &Deposited) {
        self.balance += event.amount;
    }
}

/// Why the account refused a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountError {
    /// The account is already open.
    AlreadyOpen,
    /// The account is not open yet.
    NotOpen,
}

impl fmt::Display for AccountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AlreadyOpen => "the account is already open",
            Self::NotOpen => "the account is not open",
        })
    }
}

impl std::error::Error for AccountError {}

impl Account {
    /// Decides to open the account.
    pub fn open(&self, owner: &str) -> Result<Opened, AccountError> {
        if self.open {
            return Err(AccountError::AlreadyOpen);
        }
        Ok(Opened {
            owner: owner.to_owned(),
        })
    }

    /// Decides to deposit `amount`.
    pub fn deposit(&self, amount: u64) -> Result<Deposited, AccountError> {
        if !self.open {
            return Err(AccountError::NotOpen);
        }
        Ok(Deposited { amount })
    }
}
