//! The errors of es-nats: [`WireError`] (a message that is not in the wire format) and
//! [`PublishError`] (the publisher stopped).
//!
//! Each message names what went wrong and what to do, and carries its cause's text once
//! (causes are not chained as `source` as well, so that a report prints them once).

use std::fmt;
use std::time::SystemTime;

/// Where a message came from, for errors: its subject and event id, when known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageContext {
    /// The message's subject, when the decoder was given it.
    pub subject: Option<String>,
    /// The event id header's text, when the message has one.
    pub event_id: Option<String>,
}

impl fmt::Display for MessageContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NATS message")?;
        if let Some(subject) = &self.subject {
            write!(f, " on subject `{subject}`")?;
        }
        if let Some(id) = &self.event_id {
            write!(f, " (event {id})")?;
        }
        Ok(())
    }
}

/// A subject, token or message that is not in es-nats's [wire format](crate::wire).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The message has no headers at all.
    #[error(
        "{at} has no headers, so it is not an es event: it was not published by es-nats (check the subjects the consumer reads, and what else publishes to them)"
    )]
    NoHeaders {
        /// The message.
        at: MessageContext,
    },
    /// A required header is missing.
    #[error(
        "{at} has no `{header}` header, so it is not an es event: it was not published by es-nats, or by a publisher of another wire format (check what else publishes to these subjects)"
    )]
    MissingHeader {
        /// The header.
        header: &'static str,
        /// The message.
        at: MessageContext,
    },
    /// A header's value does not parse.
    #[error(
        "{at}: header `{header}` is `{value}`, which is {problem}; the message is damaged or was not published by es-nats (remove it from the JetStream stream, and stop whatever else publishes on these subjects)"
    )]
    BadHeader {
        /// The header.
        header: &'static str,
        /// Its value, as received.
        value: String,
        /// What is wrong with it.
        problem: String,
        /// The message.
        at: MessageContext,
    },
    /// The payload is not UTF-8 text.
    #[error(
        "{at}: the payload is not UTF-8 JSON text ({problem}); the message is damaged or was not published by es-nats (remove it from the JetStream stream, and stop whatever else publishes on these subjects)"
    )]
    PayloadNotUtf8 {
        /// The message.
        at: MessageContext,
        /// The UTF-8 error.
        problem: String,
    },
    /// Escaped text that does not unescape.
    #[error("`{text}` is not escaped text of the es wire format: {problem}")]
    BadEscape {
        /// The text.
        text: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A subject that is not an es event subject.
    #[error(
        "subject `{subject}` is not an es event subject (`{{prefix}}.{{partition}}.{{aggregate_type}}.{{event_type}}`): {problem}"
    )]
    BadSubject {
        /// The subject.
        subject: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A subject prefix that cannot start a subject.
    #[error(
        "subject prefix `{prefix}` cannot be used: {problem}; use one or more dot-separated tokens of letters, digits, `-` and `_`, such as `es` or `prod.es`"
    )]
    BadPrefix {
        /// The prefix.
        prefix: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// Why a [`Publisher`](crate::Publisher) stopped or a call to it failed.
///
/// [`is_transient`](PublishError::is_transient) tells the failures that
/// [`Publisher::run`](crate::Publisher::run) rides out (a lost connection, a timeout, a
/// busy store) from those that need someone to act.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The options cannot work.
    #[error("es-nats publisher options: {problem}")]
    Options {
        /// What is wrong.
        problem: String,
    },
    /// The JetStream stream does not exist and the publisher may not create it.
    #[error(
        "JetStream stream `{stream}` does not exist and `create_stream` is off; create it with subjects `{subjects}` (e.g. `nats stream add {stream} --subjects '{subjects}'`), or turn `create_stream` on"
    )]
    StreamMissing {
        /// The stream name.
        stream: String,
        /// The subjects it should have.
        subjects: String,
    },
    /// The JetStream stream exists but does not take the publisher's subjects.
    #[error(
        "JetStream stream `{stream}` does not take the subjects `{subjects}` (its subjects are {configured:?}); add them to its configuration, or configure the publisher's prefix or stream name to match"
    )]
    StreamSubjects {
        /// The stream name.
        stream: String,
        /// The subjects the publisher publishes on.
        subjects: String,
        /// The subjects the stream has.
        configured: Vec<String>,
    },
    /// JetStream refused to create the stream, or is not enabled.
    #[error(
        "JetStream refused to create stream `{stream}`: {cause}; check that JetStream is enabled on the server (`nats-server -js`), that the account may create streams, and that no other stream takes the subjects `{subjects}`"
    )]
    StreamCreate {
        /// The stream name.
        stream: String,
        /// The subjects.
        subjects: String,
        /// The server's answer.
        cause: String,
    },
    /// An event is larger than the server accepts.
    #[error(
        "event {event_id} at global position {position} is larger than the NATS server accepts with its headers ({cause}); raise the server's `max_payload` (and the stream's max message size): the publisher cannot skip an event"
    )]
    TooLarge {
        /// The event id.
        event_id: String,
        /// Its global position.
        position: u64,
        /// The client's or server's error.
        cause: String,
    },
    /// The stream did not end where the publisher expected (transient): another publisher
    /// writes to it, or a publish was lost in a reconnect.
    #[error(
        "JetStream stream `{stream}` no longer ends at sequence {expected} as the publisher expected ({cause}); it re-reads where the stream ends and resumes there; if this repeats, make sure that nothing but this publisher writes to `{stream}`"
    )]
    StreamMoved {
        /// The stream name.
        stream: String,
        /// The last sequence the publisher expected.
        expected: u64,
        /// The server's answer.
        cause: String,
    },
    /// A publish was stored by another stream than the configured one.
    #[error(
        "events on `{subjects}` are stored by JetStream stream `{actual}`, not `{expected}`; configure the publisher's `stream_name` as `{actual}`, or move the subjects to `{expected}`"
    )]
    WrongStream {
        /// The configured stream.
        expected: String,
        /// The stream that acked.
        actual: String,
        /// The publisher's subjects.
        subjects: String,
    },
    /// The stream refused an event for a reason that retrying does not fix.
    #[error(
        "JetStream stream `{stream}` refused event {event_id} at global position {position}: {cause}; fix the stream's configuration (limits, sealed, subjects) and run the publisher again, it resumes at that event"
    )]
    Refused {
        /// The stream name.
        stream: String,
        /// The event id.
        event_id: String,
        /// Its global position.
        position: u64,
        /// The server's answer.
        cause: String,
    },
    /// NATS could not be reached or did not answer in time (transient).
    #[error(
        "NATS {during} failed: {cause}; the publisher resumes after global position {position} once the server answers again (check that it runs and is reachable)"
    )]
    Nats {
        /// What the publisher was doing.
        during: String,
        /// The client's error.
        cause: String,
        /// The last global position known to be in the stream.
        position: u64,
    },
    /// The event store or the checkpoint store failed: a busy database, a lost
    /// connection (transient).
    #[error(
        "the event store failed while the publisher {during}: {cause}; the publisher resumes after global position {position} once the store works again"
    )]
    Store {
        /// What the publisher was doing.
        during: String,
        /// The store's error.
        cause: String,
        /// The last global position known to be in the stream.
        position: u64,
    },
    /// The event store reports an event or a request it cannot serve (a corrupt row); a
    /// retry would fail the same way.
    #[error(
        "when the publisher {during} after global position {position}, the event store reported an error that a retry does not fix: {cause}; repair the stored event (the publisher cannot skip one), then run the publisher again"
    )]
    StoreRefused {
        /// What the publisher was doing.
        during: String,
        /// The store's error.
        cause: String,
        /// The last global position known to be in the stream.
        position: u64,
    },
    /// The stream never held a message, yet the checkpoint says events were published to
    /// it: it was deleted and created again (by the publisher, or by hand), or the
    /// publisher points at a new stream with an old checkpoint. Publishing from the
    /// checkpoint would leave the stream without the events before it for good.
    #[error(
        "JetStream stream `{stream}` is empty and has never held a message, but publisher `{name}`'s checkpoint says events up to global position {checkpoint} were published: the stream was deleted and created again, or the checkpoint belongs to another stream; to publish the whole log into it, delete the checkpoint `{name}` (then every event is published again, in order); to keep only later events, point the publisher at the stream that holds the earlier ones"
    )]
    StreamReset {
        /// The stream name.
        stream: String,
        /// The publisher name (its checkpoint key).
        name: String,
        /// The checkpoint found.
        checkpoint: u64,
    },
    /// Another publisher instance holds the lease.
    #[error(
        "publisher `{name}` is run by another instance (`{owner}`), whose lease runs until {until:?}; stop that instance, or wait for its lease to expire"
    )]
    Locked {
        /// The publisher name (its checkpoint and lease key).
        name: String,
        /// The other instance's owner id.
        owner: String,
        /// When its lease expires unless renewed.
        until: SystemTime,
    },
}

impl PublishError {
    /// Whether [`Publisher::run`](crate::Publisher::run) retries after this error: a lost
    /// connection, a timeout, a busy store. The others need someone to act.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Nats { .. } | Self::StreamMoved { .. } | Self::Store { .. } | Self::Locked { .. }
        )
    }
}
