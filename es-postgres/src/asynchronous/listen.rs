//! [`AsyncPostgresStore::listen`]: the async twin of [`PostgresStore::listen`], on a
//! tokio-postgres connection of its own whose notifications are read as they arrive.
//!
//! [`PostgresStore::listen`]: crate::PostgresStore::listen

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use es_core::StopHandle;
use futures_util::future::{Either, select};
use tokio_postgres::AsyncMessage;

use super::store::AsyncPostgresStore;
use crate::error::Error;
use crate::listen::{LISTEN, Listener, is_append_in, reconnect_delay};
use crate::store::connect_error;

impl AsyncPostgresStore {
    /// Opens a connection that `LISTEN`s for appends to this store's schema and wakes
    /// `projector` at each one that commits; see
    /// [`PostgresStore::listen`](crate::PostgresStore::listen). Returns once the connection
    /// listens; runs as a task until `projector` is stopped or the [`Listener`] dropped.
    ///
    /// ```no_run
    /// # use es_core::{AsyncProjector, ReadModel, RunOptions, StopHandle};
    /// # async fn demo<R: ReadModel + Default + Send>(store: es_postgres::AsyncPostgresStore) -> Result<(), Box<dyn std::error::Error>> {
    /// let stop = StopHandle::new();
    /// let _listener = store.listen(&stop).await?;
    /// let mut projector = AsyncProjector::new(store.clone(), R::default(), store.clone());
    /// projector.run(&stop, RunOptions::default()).await?; // until `stop.stop()` elsewhere
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The connection's errors if it cannot be opened or cannot `LISTEN` the first time;
    /// later losses are ridden out.
    pub async fn listen(&self, projector: &StopHandle) -> Result<Listener, Error> {
        let first = self.listening_connection(projector).await?;
        let quit = Arc::new(AtomicBool::new(false));
        let (store, handle, flag) = (self.clone(), projector.clone(), Arc::clone(&quit));
        let task = tokio::spawn(async move { store.listen_loop(first, &handle, &flag).await });
        Ok(Listener::task(quit, task))
    }

    /// Connects, starts the task that reads the connection's messages (waking `handle` at
    /// each notification for this schema), and `LISTEN`s. The task ends when the
    /// connection does.
    async fn listening_connection(&self, handle: &StopHandle) -> Result<Listening, Error> {
        let (config, tls) = &self.inner.listen;
        let (client, mut connection) = config.connect(tls.clone()).await.map_err(connect_error)?;
        let (schema, handle) = (self.inner.schema.clone(), handle.clone());
        let reader = tokio::spawn(async move {
            while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(AsyncMessage::Notification(note)) => {
                        if is_append_in(note.channel(), note.payload(), &schema) {
                            handle.wake();
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        if let Err(error) = client.batch_execute(LISTEN).await {
            reader.abort();
            return Err(connect_error(error));
        }
        Ok(Listening {
            _client: client,
            reader,
        })
    }

    async fn listen_loop(&self, mut listening: Listening, handle: &StopHandle, quit: &AtomicBool) {
        loop {
            match select(std::pin::pin!(handle.stopped()), &mut listening.reader).await {
                Either::Left(_) => {
                    listening.reader.abort();
                    return;
                }
                Either::Right(_) => {}
            }
            // The connection is lost: open a new one, then wake for what was missed.
            let mut attempt = 0;
            listening = loop {
                if handle.is_stopped() || quit.load(Ordering::Relaxed) {
                    return;
                }
                match self.listening_connection(handle).await {
                    Ok(listening) => break listening,
                    Err(_) => {
                        tokio::time::sleep(reconnect_delay(attempt)).await;
                        attempt += 1;
                    }
                }
            };
            handle.wake();
        }
    }
}

/// A listening connection: its client (the connection closes when it is dropped) and the
/// task reading its messages, which ends when the connection does.
struct Listening {
    _client: tokio_postgres::Client,
    reader: tokio::task::JoinHandle<()>,
}
