//! Examples, integration tests and benchmarks for the es workspace.
//!
//! The library part holds what every store's tests share: the [`conformance`] suite, a
//! generic specification of [`es_core::EventStore`] that the in-memory, SQLite and
//! PostgreSQL stores each instantiate with [`conformance_tests!`].
#![warn(missing_docs)]

pub mod conformance;
