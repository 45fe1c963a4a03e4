//! The conformance suite against the in-memory store.
//!
//! No `durable` section: the in-memory store keeps no rows another program could damage.

es_store_tests::store_tests!(es_core::InMemoryStore::new);

mod checkpoints {
    es_store_tests::checkpoint_tests!(es_core::InMemoryStore::new);
}
