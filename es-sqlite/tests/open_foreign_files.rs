//! Opening files that es-sqlite did not create: another program's SQLite database gets the
//! event tables next to its own (and is switched to WAL); a file that is not a database is
//! refused and left alone.

use std::path::Path;

use es_core::{EventStore, ExpectedVersion, Metadata, NewEvent, StreamRef};
use es_sqlite::rusqlite::{self, Connection};
use es_sqlite::{Error, SqliteStore};

fn append_one(store: &SqliteStore, id: &str) {
    let stream = StreamRef::new("Counter", id);
    let event = NewEvent::new(
        "Incremented",
        1,
        serde_json::json!({ "id": id }),
        Metadata::new(),
    );
    store
        .append(stream, ExpectedVersion::NoStream, &[event])
        .unwrap();
}

fn journal_mode(conn: &Connection) -> String {
    conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap()
}

fn customers(conn: &Connection) -> Vec<(i64, String)> {
    let mut stmt = conn
        .prepare("SELECT id, name FROM customers ORDER BY id")
        .unwrap();
    stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[test]
fn an_existing_database_keeps_its_tables_and_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = DELETE;
             PRAGMA user_version = 7;
             CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
             CREATE INDEX customers_by_name ON customers (name);
             INSERT INTO customers (id, name) VALUES (1, 'Ada'), (2, 'Grace');",
        )
        .unwrap();
        assert_eq!(journal_mode(&conn), "delete");
    }

    let store = SqliteStore::open(&path).unwrap();
    append_one(&store, "c-1");

    // While the store is open, the application uses its own table in the same file.
    let conn = Connection::open(&path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        customers(&conn),
        [(1, "Ada".to_owned()), (2, "Grace".to_owned())]
    );
    conn.execute("INSERT INTO customers (id, name) VALUES (3, 'Edsger')", [])
        .unwrap();
    append_one(&store, "c-2");
    drop(store);

    // What `open` did to the file, as its documentation says: the event tables were added,
    // the journal mode is WAL for good, and nothing of the application's was touched.
    assert_eq!(journal_mode(&conn), "wal");
    let user_version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(user_version, 7, "PRAGMA user_version is the application's");
    let mut tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'index') AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    tables.retain(|name| !name.starts_with("es_"));
    assert_eq!(tables, ["customers", "customers_by_name"]);
    assert_eq!(customers(&conn).len(), 3);
    let events: i64 = conn
        .query_row("SELECT COUNT(*) FROM es_events", [], |row| row.get(0))
        .unwrap();
    assert_eq!(events, 2);
    drop(conn);

    // Reopening finds both the events and the application's rows.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.read_all(1, 10).unwrap().len(), 2);
    drop(store);
    let conn = Connection::open(&path).unwrap();
    assert_eq!(customers(&conn).len(), 3);
}

/// Opens `path`, expects [`Error::NotADatabase`] and checks the file was left as it was.
fn refused_as_not_a_database(path: &Path) {
    let before = std::fs::read(path).unwrap();
    match SqliteStore::open(path) {
        Err(error @ Error::NotADatabase { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains("is not a SQLite database"),
                "the message says what is wrong: {message}"
            );
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
        Err(other) => panic!("{} gave another error: {other:?}: {other}", path.display()),
        Ok(store) => panic!("{} opened: {store:?}", path.display()),
    }
    assert_eq!(
        std::fs::read(path).unwrap(),
        before,
        "the file is unchanged"
    );
    let dir = path.parent().unwrap();
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, [path.file_name().unwrap()], "no -wal or -shm file");
}

#[test]
fn a_text_file_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(
        &path,
        "These are my notes, not an event store.\nThey are long enough to fill a SQLite header and then some more.\n",
    )
    .unwrap();
    refused_as_not_a_database(&path);
}

#[test]
fn a_binary_file_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image.png");
    let bytes: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&path, bytes).unwrap();
    refused_as_not_a_database(&path);
}
