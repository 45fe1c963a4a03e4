//! What the repositories report through `tracing` (feature `tracing`): a span per load and
//! per command, and an event for each append, conflict, retry and duplicate, each carrying
//! the aggregate type, stream id, versions and attempt number. Without the feature every
//! function here is empty and compiles away.

use std::time::Duration;

use crate::envelope::StreamRef;

/// The span of one command ([`Repository::execute`](crate::Repository::execute) and its
/// async twin): aggregate type and stream id.
#[cfg(feature = "tracing")]
pub(crate) fn command_span(stream: StreamRef<'_>) -> tracing::Span {
    tracing::debug_span!(
        "es.execute",
        aggregate_type = stream.aggregate_type,
        stream_id = stream.id
    )
}

/// The span of one load: aggregate type and stream id.
#[cfg(feature = "tracing")]
pub(crate) fn load_span(stream: StreamRef<'_>) -> tracing::Span {
    tracing::debug_span!(
        "es.load",
        aggregate_type = stream.aggregate_type,
        stream_id = stream.id
    )
}

/// A state was loaded (or caught up) to `version`, after reading `events` events.
pub(crate) fn loaded(stream: StreamRef<'_>, version: u64, events: u64) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        aggregate_type = stream.aggregate_type,
        stream_id = stream.id,
        version,
        events,
        "es: loaded"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (stream, version, events);
}

/// A command's append succeeded.
pub(crate) fn appended(stream: StreamRef<'_>, version: u64, events: usize, attempt: u32) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        aggregate_type = stream.aggregate_type,
        stream_id = stream.id,
        version,
        events,
        attempt,
        "es: appended"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (stream, version, events, attempt);
}

/// A command's append hit a concurrency conflict; `pause` is the pause before its retry,
/// or `None` when the retry policy gives up.
pub(crate) fn conflict(
    stream: StreamRef<'_>,
    expected: u64,
    actual: u64,
    attempt: u32,
    pause: Option<Duration>,
) {
    #[cfg(feature = "tracing")]
    match pause {
        Some(pause) => tracing::info!(
            aggregate_type = stream.aggregate_type,
            stream_id = stream.id,
            expected_version = expected,
            actual_version = actual,
            attempt,
            pause_us = u64::try_from(pause.as_micros()).unwrap_or(u64::MAX),
            "es: concurrency conflict, retrying"
        ),
        None => tracing::warn!(
            aggregate_type = stream.aggregate_type,
            stream_id = stream.id,
            expected_version = expected,
            actual_version = actual,
            attempt,
            "es: concurrency conflict, giving up: the retry policy is exhausted"
        ),
    }
    #[cfg(not(feature = "tracing"))]
    let _ = (stream, expected, actual, attempt, pause);
}

/// A command's idempotency key was already committed: nothing was appended.
pub(crate) fn duplicate(stream: StreamRef<'_>, version: u64, attempt: u32) {
    #[cfg(feature = "tracing")]
    tracing::info!(
        aggregate_type = stream.aggregate_type,
        stream_id = stream.id,
        version,
        attempt,
        "es: duplicate command, its idempotency key was already committed"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (stream, version, attempt);
}

/// A snapshot could not be used (it failed to decode, or to be read): the state is rebuilt
/// from the events.
pub(crate) fn snapshot_unusable(
    stream: StreamRef<'_>,
    version: u64,
    error: &dyn std::fmt::Display,
) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        aggregate_type = stream.aggregate_type,
        stream_id = stream.id,
        version,
        error = %error,
        "es: snapshot ignored, rebuilding the state from the events"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (stream, version, error);
}

/// A snapshot was taken.
pub(crate) fn snapshot_saved(stream: StreamRef<'_>, version: u64) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        aggregate_type = stream.aggregate_type,
        stream_id = stream.id,
        version,
        "es: snapshot saved"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (stream, version);
}

/// A snapshot could not be taken or saved; the command succeeded anyway.
pub(crate) fn snapshot_not_saved(
    stream: StreamRef<'_>,
    version: u64,
    error: &dyn std::fmt::Display,
) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        aggregate_type = stream.aggregate_type,
        stream_id = stream.id,
        version,
        error = %error,
        "es: snapshot not saved (the command succeeded)"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (stream, version, error);
}
