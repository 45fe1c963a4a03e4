//! The conformance suite against the in-memory store.
//!
//! No `durable` section: the in-memory store keeps no rows another program could damage.

es_suite::conformance_tests!(es_core::InMemoryStore::new);
