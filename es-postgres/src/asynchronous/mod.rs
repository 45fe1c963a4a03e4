//! The async store, [`AsyncPostgresStore`] (feature `async`): the sync store's tables, SQL,
//! row decoding and error mapping, run through tokio-postgres and a deadpool pool.
//!
//! What is shared with the sync store, and where:
//!
//! * the SQL text of every statement and its parameters: [`crate::statements`];
//! * the checkpoint statements, checks, lease parameters and the reading of lease rows:
//!   [`crate::checkpoint`], run here by `checkpoint`;
//! * creating and migrating the tables (the SQL, the lock, the decisions):
//!   [`crate::schema`], run here by [`schema::migrate`];
//! * every check and outcome of an append, the insert's parameters and the mapping of its
//!   failures (SQLSTATE, constraint) to store errors: [`crate::append`], run here in the
//!   same order by [`append::append`];
//! * decoding a row and handing it to a visitor: [`crate::row`];
//! * describing driver errors, and [`AcquireTimeout`](crate::AcquireTimeout):
//!   [`crate::error`];
//! * the pool's rules and [`Attempt`](crate::pool::Attempt): [`crate::pool`];
//! * TLS and connection strings: [`crate::tls`].

mod append;
mod checkpoint;
mod exactly_once;
mod listen;
mod pool;
mod schema;
mod store;

pub use exactly_once::{AsyncExactlyOnce, AsyncPostgresReadModel};
pub use store::AsyncPostgresStore;
