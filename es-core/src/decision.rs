//! The load -> decide -> append cycle as pure functions, free of I/O.
//!
//! [`Repository`](crate::Repository) drives these against a blocking
//! [`EventStore`](crate::EventStore); an async driver can drive the very same functions against an async
//! store. Nothing here reads a clock, a store or a socket.

use crate::aggregate::Aggregate;
use crate::envelope::{EventRecord, Metadata, NewEvent, RecordedEvent, StreamRef};
use crate::error::Error;
use crate::event::{EventEnum, IntoEvents};

/// A decision: what [`Repository::execute`](crate::Repository::execute) runs against the
/// current state, `|state: &A| -> Result<events, error>`. Every closure and function of
/// that shape implements it, and nothing else can: it is a bound, not a trait to implement.
///
/// It is `FnMut(&A) -> Result<R, E>` with a name, so that passing something else, or
/// passing the closure in the wrong position, says what `execute` expects.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a decision: `execute` takes the stream id and then a closure `|state: &{A}| -> Result<events, error>`",
    label = "expected the decision closure here",
    note = "a decision is a closure or function `FnMut(&{A}) -> Result<R, E>`, where `R` is one event, several or none (see `IntoEvents`) and `E` the domain error; `execute(id, decide)` takes exactly these two arguments"
)]
pub trait Decide<A, R, E>: for<'a> FnMut(&'a A) -> Result<R, E> {}

#[diagnostic::do_not_recommend]
impl<A, R, E, F> Decide<A, R, E> for F where F: for<'a> FnMut(&'a A) -> Result<R, E> {}

/// An aggregate's state and the stream version it reflects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Versioned<A> {
    /// The state after applying every event up to `version`.
    pub state: A,
    /// The version of the last applied event (0: no event yet).
    pub version: u64,
}

impl<A: Aggregate> Versioned<A> {
    /// The initial state of a stream with no events.
    pub fn initial() -> Self {
        Self {
            state: A::default(),
            version: 0,
        }
    }

    /// Decodes and applies stored events, which must continue this state's version without
    /// a gap.
    pub fn replay(
        &mut self,
        stream: StreamRef<'_>,
        records: &[RecordedEvent],
    ) -> Result<(), Error> {
        for record in records {
            self.apply_record(stream, &record.as_record())?;
        }
        Ok(())
    }

    /// Decodes one stored event, which must continue this state without a gap, and
    /// applies it.
    #[inline]
    pub fn apply_record(
        &mut self,
        stream: StreamRef<'_>,
        record: &EventRecord<'_>,
    ) -> Result<(), Error> {
        // The same check and decode as `decode_after`, written out: this runs once per
        // stored event on every load, and matching the decoder's own result here kept the
        // large `Result<Event, Error>` out of the loop (W1 in memory: 540 -> 481 us).
        if record.stream_version != self.version + 1 {
            return Err(gap_error(stream, self.version + 1, record));
        }
        match A::Event::from_stored(record.event_type, record.schema_version, record.payload) {
            Ok(event) => {
                self.state.apply(&event);
                self.version = record.stream_version;
                Ok(())
            }
            Err(source) => Err(decode_error(stream, record.stream_version, source)),
        }
    }

    /// Checks one stored event continues this state without a gap, then decodes it.
    #[inline]
    pub fn decode_next(
        &self,
        stream: StreamRef<'_>,
        record: &EventRecord<'_>,
    ) -> Result<A::Event, Error> {
        decode_after::<A::Event>(stream, self.version, record)
    }
}

/// Checks that one stored event comes right after version `version` of `stream`, then
/// decodes it into the event enum.
#[inline]
pub fn decode_after<Ev: EventEnum>(
    stream: StreamRef<'_>,
    version: u64,
    record: &EventRecord<'_>,
) -> Result<Ev, Error> {
    if record.stream_version != version + 1 {
        return Err(gap_error(stream, version + 1, record));
    }
    decode_record::<Ev>(stream, record)
}

// The error paths are kept out of line: the replay loop runs once per stored event, and
// building an error (which copies names) in it makes every iteration carry that code.
#[cold]
#[inline(never)]
fn gap_error(stream: StreamRef<'_>, expected: u64, record: &EventRecord<'_>) -> Error {
    Error::VersionGap {
        stream: stream.to_key(),
        expected,
        found: record.stream_version,
        event_type: record.event_type.to_owned(),
    }
}

#[cold]
#[inline(never)]
fn decode_error(stream: StreamRef<'_>, version: u64, cause: crate::DecodeError) -> Error {
    Error::Decode {
        stream: stream.to_key(),
        version,
        cause: Box::new(cause),
    }
}

/// Decodes one stored event into the event enum, naming the stream and version on failure.
#[inline]
pub fn decode_record<Ev: EventEnum>(
    stream: StreamRef<'_>,
    record: &EventRecord<'_>,
) -> Result<Ev, Error> {
    Ev::from_stored(record.event_type, record.schema_version, record.payload)
        .map_err(|source| decode_error(stream, record.stream_version, source))
}

/// Runs a decision against the current state and collects the events it returns.
pub fn decide<A, R, E, F>(
    stream: StreamRef<'_>,
    current: &Versioned<A>,
    decision: F,
) -> Result<Vec<A::Event>, Error<E>>
where
    A: Aggregate,
    R: IntoEvents<A::Event>,
    F: FnOnce(&A) -> Result<R, E>,
{
    match decision(&current.state) {
        Ok(events) => Ok(events.into_events()),
        Err(cause) => Err(Error::Rejected {
            stream: stream.to_key(),
            version: current.version,
            cause,
        }),
    }
}

/// Encodes decided events as [`NewEvent`]s, each with a fresh id and a copy of `metadata`.
pub fn encode<Ev: EventEnum>(
    stream: StreamRef<'_>,
    events: &[Ev],
    metadata: &Metadata,
) -> Result<Vec<NewEvent>, Error> {
    events
        .iter()
        .map(|event| {
            let payload = event.to_payload().map_err(|cause| Error::Encode {
                stream: stream.to_key(),
                event_type: event.event_type(),
                cause,
            })?;
            Ok(NewEvent::from_json(
                event.event_type(),
                event.event_version(),
                payload,
                metadata.clone(),
            ))
        })
        .collect()
}
