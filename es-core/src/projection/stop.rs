//! [`StopHandle`]: stops a running projector, or wakes it when new events are announced.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Stops a projector's `run` from another thread or task (a signal handler, a shutdown
/// hook), and wakes it early when new events are announced. Clones share the handle.
///
/// [`Projector::run`](crate::Projector::run) and `AsyncProjector::run` poll the store with
/// backoff; [`wake`](StopHandle::wake) cuts the current pause short, so a listener that
/// hears of new events (PostgreSQL's `LISTEN`, see `es_postgres::PostgresStore::listen`)
/// gets them applied at once. A wake-up is only a hint: the projector reads what the store
/// has, so a lost or spurious wake-up costs at most one pause or one empty poll.
#[derive(Debug, Clone, Default)]
pub struct StopHandle {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    /// Wakes a thread blocked in [`StopHandle::wait`].
    wake: Condvar,
    /// Wakes a task awaiting [`StopHandle::wait_async`].
    #[cfg(feature = "async")]
    notify: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct State {
    stopped: bool,
    /// A wake-up not yet consumed by a wait.
    woken: bool,
}

/// How a [`StopHandle::wait`] (or [`wait_async`](StopHandle::wait_async)) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// [`StopHandle::stop`] was called.
    Stopped,
    /// [`StopHandle::wake`] was called (since the last wait).
    Woken,
    /// The timeout passed.
    TimedOut,
}

impl StopHandle {
    /// A handle that has not been stopped.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the projector to stop: it finishes the batch it is applying, commits it and
    /// returns. Wakes it at once if it is waiting for new events.
    pub fn stop(&self) {
        self.state().stopped = true;
        self.notify_waiters();
    }

    /// Whether [`stop`](StopHandle::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.state().stopped
    }

    /// Tells the projector that new events may be in the store: if it is pausing between
    /// polls, it polls now; if it is applying a batch, it polls again right after.
    pub fn wake(&self) {
        self.state().woken = true;
        self.notify_waiters();
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The lock guards two flags and nothing panics while holding it.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn notify_waiters(&self) {
        self.inner.wake.notify_all();
        #[cfg(feature = "async")]
        self.inner.notify.notify_waiters();
    }

    /// Consumes a pending wake-up or reports a stop, if either happened.
    fn check(state: &mut State) -> Option<Waited> {
        if state.stopped {
            Some(Waited::Stopped)
        } else if std::mem::take(&mut state.woken) {
            Some(Waited::Woken)
        } else {
            None
        }
    }

    /// Blocks up to `timeout`, or until stopped or woken (consuming the wake-up): the pause
    /// of a loop that follows the log, such as a projector's or a publisher's.
    pub fn wait(&self, timeout: Duration) -> Waited {
        let guard = self.state();
        let (mut guard, _) = self
            .inner
            .wake
            .wait_timeout_while(guard, timeout, |state| !state.stopped && !state.woken)
            .unwrap_or_else(PoisonError::into_inner);
        Self::check(&mut guard).unwrap_or(Waited::TimedOut)
    }

    /// Waits up to `timeout`, or until stopped or woken (consuming the wake-up), without
    /// blocking the thread.
    #[cfg(feature = "async")]
    pub async fn wait_async(&self, timeout: Duration) -> Waited {
        let notified = self.inner.notify.notified();
        let mut notified = std::pin::pin!(notified);
        // Registered before the flags are read: a stop or wake in between is not missed.
        notified.as_mut().enable();
        if let Some(waited) = Self::check(&mut self.state()) {
            return waited;
        }
        if tokio::time::timeout(timeout, notified).await.is_err() {
            return Waited::TimedOut;
        }
        Self::check(&mut self.state()).unwrap_or(Waited::TimedOut)
    }

    /// Waits, without blocking the thread, until [`stop`](StopHandle::stop) is called:
    /// for tasks that run next to a projector and end with it (a listener).
    #[cfg(feature = "async")]
    pub async fn stopped(&self) {
        loop {
            let notified = self.inner.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;
    use std::time::Instant;

    #[test]
    fn a_wake_up_ends_one_wait_and_a_stop_every_wait() {
        let handle = StopHandle::new();
        assert_eq!(handle.wait(Duration::from_millis(1)), Waited::TimedOut);
        handle.wake();
        assert_eq!(handle.wait(Duration::from_secs(60)), Waited::Woken);
        assert_eq!(
            handle.wait(Duration::from_millis(1)),
            Waited::TimedOut,
            "a wake-up is consumed by the wait it ends"
        );
        let other = handle.clone();
        let started = Instant::now();
        let waker = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            other.stop();
        });
        assert_eq!(handle.wait(Duration::from_secs(60)), Waited::Stopped);
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(handle.wait(Duration::from_secs(60)), Waited::Stopped);
        waker.join().unwrap();
    }

    #[cfg(feature = "async")]
    #[tokio::test]
    async fn async_waits_end_on_a_wake_up_or_a_stop_from_another_thread() {
        let handle = StopHandle::new();
        assert_eq!(
            handle.wait_async(Duration::from_millis(1)).await,
            Waited::TimedOut
        );
        let other = handle.clone();
        let waker = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            other.wake();
            thread::sleep(Duration::from_millis(20));
            other.stop();
        });
        assert_eq!(
            handle.wait_async(Duration::from_secs(60)).await,
            Waited::Woken
        );
        handle.stopped().await;
        assert_eq!(
            handle.wait_async(Duration::from_secs(60)).await,
            Waited::Stopped
        );
        waker.join().unwrap();
    }
}
