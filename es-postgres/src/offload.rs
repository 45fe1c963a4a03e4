//! Running the blocking driver where it can run, whoever calls.
//!
//! The `postgres` driver blocks on a tokio runtime of its own, one per connection. Tokio
//! refuses to start (`block_on`) or shut down (drop) a runtime on a thread that is already
//! running one, and panics: so every call of the driver made inside `async` code panics,
//! and dropping one of its clients there panics too, which during the first panic's
//! unwinding aborts the process.
//!
//! Tokio has no way to ask whether the current thread is running a runtime, as opposed to
//! merely knowing one: a `spawn_blocking` thread (where the driver works) and an async task
//! (where it panics) look alike (`Handle::try_current` succeeds in both, and both have a
//! task id). So the store does not guess: on any thread that knows a runtime, it runs the
//! driver on a short-lived thread of its own, which never runs a runtime, and waits for it.
//! That costs a thread start per call (tens of microseconds, against a round trip to the
//! server) and only there; elsewhere the driver runs on the caller's thread.

use std::io;

use es_core::StoreError;

/// Whether the current thread knows a tokio runtime: it runs one, or is one's
/// `spawn_blocking` thread, or entered one's handle.
pub(crate) fn in_runtime_context() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

/// Runs `f`, on the current thread unless it [knows a tokio runtime](in_runtime_context),
/// then on a thread of its own, waiting for it. A panic in `f` is resumed here.
/// `spawn_failed` makes the result when no thread can be started.
pub(crate) fn blocking<T: Send>(
    f: impl FnOnce() -> T + Send,
    spawn_failed: impl FnOnce(io::Error) -> T,
) -> T {
    if !in_runtime_context() {
        return f();
    }
    std::thread::scope(|scope| {
        match std::thread::Builder::new()
            .name("es-postgres".to_owned())
            .spawn_scoped(scope, f)
        {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(error) => spawn_failed(error),
        }
    })
}

/// Drops `value` (connections) here, or on a thread of its own if the current thread
/// [knows a tokio runtime](in_runtime_context), where dropping a driver client panics. That
/// thread is not waited for: closing a connection needs no answer. If it cannot be started,
/// `value` is leaked rather than dropped here: its sockets close when the process ends.
pub(crate) fn drop_off_runtime<T: Send + 'static>(value: T) {
    if !in_runtime_context() {
        drop(value);
        return;
    }
    // If the thread cannot be started, the closure is dropped unrun, and `ManuallyDrop`
    // keeps it from dropping `value` here.
    let value = std::mem::ManuallyDrop::new(value);
    let _ = std::thread::Builder::new()
        .name("es-postgres-close".to_owned())
        .spawn(move || drop(std::mem::ManuallyDrop::into_inner(value)));
}

/// [`blocking`] for a store call.
pub(crate) fn blocking_store<T: Send>(
    f: impl FnOnce() -> Result<T, StoreError> + Send,
) -> Result<T, StoreError> {
    blocking(f, |error| Err(spawn_failed(error)))
}

/// No thread could be started for the driver.
pub(crate) fn spawn_failed(error: io::Error) -> StoreError {
    StoreError::backend(format!(
        "cannot start a thread to run the PostgreSQL driver outside the tokio runtime that called the store ({error}); call the store from `tokio::task::spawn_blocking`, or use the async store in async code"
    ))
}
