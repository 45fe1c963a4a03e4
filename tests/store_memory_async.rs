//! The conformance suite against the in-memory store through its async API, checkpoints
//! included.

async fn make() -> es_core::InMemoryStore {
    es_core::InMemoryStore::new()
}

es_store_tests::async_store_tests!(make);

es_store_tests::async_checkpoint_tests!(make);
