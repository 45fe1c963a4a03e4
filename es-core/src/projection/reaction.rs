//! [`Reaction`]: the metadata and idempotency key of a command a process manager runs in
//! reaction to a stored event.

use crate::envelope::{EventRecord, Metadata};
use crate::repository::ExecuteOptions;

/// What a command issued in reaction to a stored event carries, so that the reaction is
/// traceable and safe to redeliver.
///
/// A process manager is a read model whose handlers run commands on other aggregates (an
/// order submitted reserves its stock; a transfer debited from one account is credited to
/// another, or refunded when the credit is refused). A projector delivers each event at
/// least once: after a crash between a handler and the checkpoint it delivers it again.
/// Run every reaction command with [`Reaction::options`], and the second delivery finds the
/// command's idempotency key already committed and appends nothing (the repository returns
/// the first outcome with [`Executed::duplicate`](crate::Executed::duplicate) set).
///
/// * the correlation id is copied from the triggering event (or is the event's id, when it
///   carried none), so every command of one business flow shares it;
/// * the causation id is the triggering event's id;
/// * the idempotency key is `"{reaction}:{event id}"`, plus `":{step}"` for a reaction
///   that runs several commands ([`step`](Reaction::step)).
///
/// ```
/// use es_core::{EventRecord, Reaction};
/// # fn handler(record: &EventRecord<'_>) {
/// let reaction = Reaction::to(record, "reserve-stock");
/// let per_item = reaction.step("sku-42");
/// assert!(per_item.idempotency_key().starts_with("reserve-stock:"));
/// assert_eq!(per_item.metadata().causation_id.as_deref(), Some(record.event_id.to_string().as_str()));
/// // repo.execute_with_options("sku-42", per_item.options(), |stock| stock.reserve(..))?;
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Reaction {
    metadata: Metadata,
    key: String,
}

impl Reaction {
    /// The reaction named `reaction` (stable: it is part of the idempotency keys) to the
    /// stored event `record`.
    pub fn to(record: &EventRecord<'_>, reaction: &str) -> Self {
        let event_id = record.event_id.to_string();
        // Metadata that does not parse has no correlation id to copy: the flow starts here.
        let correlation = record
            .metadata
            .to_metadata()
            .ok()
            .and_then(|m| m.correlation_id)
            .unwrap_or_else(|| event_id.clone());
        Self {
            metadata: Metadata::new()
                .with_correlation_id(correlation)
                .with_causation_id(event_id.clone()),
            key: format!("{reaction}:{event_id}"),
        }
    }

    /// The same reaction's command number or name `step`, with a key of its own.
    pub fn step(&self, step: &str) -> Self {
        Self {
            metadata: self.metadata.clone(),
            key: format!("{}:{step}", self.key),
        }
    }

    /// The options to run the reaction's command with.
    pub fn options(&self) -> ExecuteOptions<'_> {
        ExecuteOptions::new()
            .metadata(&self.metadata)
            .idempotency_key(&self.key)
    }

    /// The metadata the command's events are recorded with.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The command's idempotency key.
    pub fn idempotency_key(&self) -> &str {
        &self.key
    }
}
