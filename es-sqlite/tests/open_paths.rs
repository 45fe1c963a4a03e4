//! Paths SQLite would read as something other than a database file are refused.

use std::path::Path;

use es_core::{EventStore, ExpectedVersion, Metadata, NewEvent, StreamRef};
use es_sqlite::{Error, SqliteStore};

/// Opens `path`, expects [`Error::InvalidPath`] and returns its message.
fn refused(path: &Path) -> String {
    match SqliteStore::open(path) {
        Err(error @ Error::InvalidPath { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains("SqliteStore::open_in_memory"),
                "the message points at open_in_memory: {message}"
            );
            message
        }
        Err(other) => panic!("{} gave another error: {other:?}", path.display()),
        Ok(store) => panic!("{} opened: {store:?}", path.display()),
    }
}

#[test]
fn an_empty_path_is_refused() {
    let message = refused(Path::new(""));
    assert!(message.contains("empty"), "{message}");
}

#[test]
fn memory_is_refused() {
    let message = refused(Path::new(":memory:"));
    assert!(message.contains(":memory:"), "{message}");
}

#[test]
fn a_file_named_memory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(":memory:");
    refused(&path);
    assert!(!path.exists(), "no file was created");
}

#[test]
fn sqlite_uris_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.db");
    for uri in [
        format!("file:{}", file.display()),
        format!("file:{}?mode=ro", file.display()),
        "file::memory:".to_owned(),
        "file:events.db?mode=memory&cache=shared".to_owned(),
    ] {
        let message = refused(Path::new(&uri));
        assert!(message.contains("URI"), "{message}");
    }
    assert!(!file.exists(), "no file was created");
}

#[test]
fn a_plain_path_whose_file_name_starts_with_file_is_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file:events.db");
    let store = SqliteStore::open(&path).unwrap();
    let stream = StreamRef::new("Counter", "c-1");
    let event = NewEvent::new("Incremented", 1, serde_json::json!({}), Metadata::new());
    store
        .append(stream, ExpectedVersion::NoStream, &[event])
        .unwrap();
    drop(store);
    assert!(path.is_file());
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.stream_version(stream).unwrap(), 1);
}
