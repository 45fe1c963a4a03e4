//! Wake-ups for projectors: `LISTEN` for the notification every append commits.
//!
//! Schema version 4 adds a statement trigger on `es_events` that runs
//! `pg_notify('es_events', <schema>)`: the server delivers it to every listening session
//! when (and only if) the appending transaction commits, once per transaction however many
//! events it inserted. Appends by other processes, and by
//! [`append_in_transaction`](crate::append_in_transaction), notify alike.
//!
//! A notification is only a wake-up: the projector then reads the log as it would after a
//! pause, so a lost notification (the listening connection dropped, the server's queue
//! full) costs at most one pause of polling, and nothing is skipped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use es_core::StopHandle;
use postgres::fallible_iterator::FallibleIterator;

use crate::error::Error;
use crate::store::{PostgresStore, connect_error};

/// The notification channel of every schema; the payload names the schema.
pub(crate) const CHANNEL: &str = "es_events";

/// The statement a listening connection runs.
pub(crate) const LISTEN: &str = "LISTEN es_events";

/// How often the listening thread looks at its stop flags while no notification comes.
const TICK: Duration = Duration::from_millis(100);

/// The pauses between attempts to reconnect a listening connection that was lost.
pub(crate) fn reconnect_delay(attempt: u32) -> Duration {
    Duration::from_millis(50u64 << attempt.min(6)).min(Duration::from_secs(2))
}

/// Whether a notification on `channel` with `payload` announces an append to `schema`.
pub(crate) fn is_append_in(channel: &str, payload: &str, schema: &str) -> bool {
    channel == CHANNEL && payload == schema
}

/// A connection that listens for appends to a store's schema and wakes a projector (its
/// [`StopHandle::wake`]) at each, from [`PostgresStore::listen`] or
/// `AsyncPostgresStore::listen`.
///
/// It runs until the handle is stopped or the `Listener` is dropped. A lost connection is
/// opened again (pausing up to 2 s between attempts), and the projector is woken once it
/// is back, for the appends it may have missed meanwhile.
#[derive(Debug)]
pub struct Listener {
    quit: Arc<AtomicBool>,
    worker: Worker,
}

#[derive(Debug)]
enum Worker {
    Thread(Option<JoinHandle<()>>),
    #[cfg(feature = "async")]
    Task(tokio::task::JoinHandle<()>),
}

impl Listener {
    #[cfg(feature = "async")]
    pub(crate) fn task(quit: Arc<AtomicBool>, task: tokio::task::JoinHandle<()>) -> Self {
        Self {
            quit,
            worker: Worker::Task(task),
        }
    }

    /// Whether the listener still runs (it ends once its handle is stopped).
    pub fn is_running(&self) -> bool {
        match &self.worker {
            Worker::Thread(thread) => thread.as_ref().is_some_and(|t| !t.is_finished()),
            #[cfg(feature = "async")]
            Worker::Task(task) => !task.is_finished(),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.quit.store(true, Ordering::Relaxed);
        match &mut self.worker {
            // Not joined: the thread sees the flag within one tick and closes its
            // connection itself; waiting for that here would block the dropping thread.
            Worker::Thread(thread) => drop(thread.take()),
            #[cfg(feature = "async")]
            Worker::Task(task) => task.abort(),
        }
    }
}

impl PostgresStore {
    /// Opens a connection that `LISTEN`s for appends to this store's schema and wakes
    /// `projector` (through [`StopHandle::wake`]) at each one that commits, so that a
    /// [`Projector::run`](es_core::Projector::run) polling with long pauses applies new
    /// events at once. Returns once the connection listens; runs on a thread of its own
    /// until `projector` is stopped or the [`Listener`] dropped.
    ///
    /// ```no_run
    /// # use es_core::{Projector, ReadModel, RunOptions, StopHandle};
    /// # fn demo<R: ReadModel + Default>(store: es_postgres::PostgresStore) -> Result<(), Box<dyn std::error::Error>> {
    /// let stop = StopHandle::new();
    /// let _listener = store.listen(&stop)?;
    /// let mut projector = Projector::new(store.clone(), R::default(), store.clone());
    /// projector.run(&stop, RunOptions::default())?; // until `stop.stop()` elsewhere
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The connection's errors ([`Error::Connect`] and the like) if it cannot be opened or
    /// cannot `LISTEN` the first time; later losses are ridden out.
    pub fn listen(&self, projector: &StopHandle) -> Result<Listener, Error> {
        let first = self.listening_client()?;
        let quit = Arc::new(AtomicBool::new(false));
        let store = self.clone();
        let (handle, flag) = (projector.clone(), Arc::clone(&quit));
        let thread = thread::Builder::new()
            .name("es-postgres-listen".to_owned())
            .spawn(move || store.listen_loop(first, &handle, &flag))
            .map_err(|source| Error::Thread { cause: source })?;
        Ok(Listener {
            quit,
            worker: Worker::Thread(Some(thread)),
        })
    }

    fn listening_client(&self) -> Result<postgres::Client, Error> {
        crate::offload::blocking(
            || {
                let mut client = self
                    .inner
                    .config
                    .connect(self.inner.tls.clone())
                    .map_err(connect_error)?;
                client.batch_execute(LISTEN).map_err(connect_error)?;
                Ok(client)
            },
            |source| Err(Error::Thread { cause: source }),
        )
    }

    fn listen_loop(&self, mut client: postgres::Client, handle: &StopHandle, quit: &AtomicBool) {
        let done = || handle.is_stopped() || quit.load(Ordering::Relaxed);
        loop {
            // Listen until the connection is lost or the listener is done.
            while !done() {
                let next = client.notifications().timeout_iter(TICK).next();
                match next {
                    Ok(Some(note)) => {
                        if is_append_in(note.channel(), note.payload(), &self.inner.schema) {
                            handle.wake();
                        }
                    }
                    Ok(None) if !client.is_closed() => {}
                    Ok(None) | Err(_) => break,
                }
            }
            if done() {
                return;
            }
            // Lost: open a new connection, then wake the projector for what was missed.
            let mut attempt = 0;
            client = loop {
                if done() {
                    return;
                }
                match self.listening_client() {
                    Ok(client) => break client,
                    Err(_) => {
                        thread::sleep(reconnect_delay(attempt));
                        attempt += 1;
                    }
                }
            };
            handle.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_stores_own_schema_wakes_it() {
        assert!(is_append_in("es_events", "billing", "billing"));
        assert!(!is_append_in("es_events", "other", "billing"));
        assert!(!is_append_in("elsewhere", "billing", "billing"));
    }

    #[test]
    fn reconnects_back_off_up_to_two_seconds() {
        assert_eq!(reconnect_delay(0), Duration::from_millis(50));
        assert_eq!(reconnect_delay(1), Duration::from_millis(100));
        assert_eq!(reconnect_delay(30), Duration::from_secs(2));
    }
}
