//! Many processes opening the same new file at once: every open waits for the others and
//! succeeds, and the store works afterwards.
//!
//! The test re-runs this test binary as child processes. A child sees
//! `ES_SQLITE_OPEN_CHILD` (the database path) and `ES_SQLITE_OPEN_AT` (when to start, in
//! milliseconds since the Unix epoch, so that all children open at the same moment), opens
//! the store, appends one event to its own stream, reads it back and exits with status 0,
//! or prints the error and exits with status 1.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use es_core::{EventStore, ExpectedVersion, Metadata, NewEvent, StreamRef};
use es_sqlite::SqliteStore;

/// This test's name, which the parent passes to the children's `--exact`.
const TEST_NAME: &str = "concurrent_opens_of_a_new_file_all_succeed";
/// Processes opening each file at once.
const PROCESSES: usize = 16;
/// Fresh files, one per round.
const ROUNDS: usize = 20;

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// The child's work; `Err` is printed by the caller.
fn child(path: &Path, index: &str) -> Result<(), Box<dyn std::error::Error>> {
    let start_at: u128 = std::env::var("ES_SQLITE_OPEN_AT")?.parse()?;
    while now_ms() < start_at {
        std::thread::sleep(Duration::from_millis(1));
    }
    let store = SqliteStore::open(path)?;
    let stream = StreamRef::new("Opener", index);
    let event = NewEvent::new(
        "Opened",
        1,
        serde_json::json!({ "child": index }),
        Metadata::new(),
    );
    store.append(stream, ExpectedVersion::NoStream, &[event])?;
    let events = store.read_stream(stream, 1)?;
    if events.len() != 1 || events[0].payload_value()?["child"] != index {
        return Err(format!("child {index} read back {events:?}").into());
    }
    Ok(())
}

fn spawn(path: &Path, index: usize, start_at: u128) -> Child {
    Command::new(std::env::current_exe().expect("the test binary's path"))
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env("ES_SQLITE_OPEN_CHILD", path)
        .env("ES_SQLITE_OPEN_INDEX", index.to_string())
        .env("ES_SQLITE_OPEN_AT", start_at.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a child")
}

#[test]
fn concurrent_opens_of_a_new_file_all_succeed() {
    if let Some(path) = std::env::var_os("ES_SQLITE_OPEN_CHILD") {
        let index = std::env::var("ES_SQLITE_OPEN_INDEX").unwrap_or_default();
        match child(Path::new(&path), &index) {
            Ok(()) => std::process::exit(0),
            Err(error) => {
                eprintln!("es-open-child-failed {index}: {error}");
                std::process::exit(1);
            }
        }
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        let path = dir.path().join(format!("round-{round}.db"));
        // Give every child time to start before the common start time.
        let start_at = now_ms() + 150;
        let children: Vec<Child> = (0..PROCESSES)
            .map(|index| spawn(&path, index, start_at))
            .collect();
        for (index, child) in children.into_iter().enumerate() {
            let output = child.wait_with_output().unwrap();
            if !output.status.success() {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let reason = stderr
                    .lines()
                    .find(|line| line.contains("es-open-child-failed"))
                    .map_or_else(|| stderr.trim().to_owned(), str::to_owned);
                failures.push(format!(
                    "round {round}, child {index}: {}: {reason}",
                    output.status
                ));
            }
        }
        // Whatever the children did, the file opens and holds every successful append.
        let store = SqliteStore::open(&path).expect("the parent opens the file");
        let all = store.read_all(1, usize::MAX).unwrap();
        let failed_here = failures
            .iter()
            .filter(|f| f.starts_with(&format!("round {round},")))
            .count();
        assert_eq!(all.len(), PROCESSES - failed_here, "round {round}");
    }
    eprintln!(
        "{} opens in {:?}, {} failed",
        PROCESSES * ROUNDS,
        started.elapsed(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} concurrent opens failed:\n{}",
        failures.len(),
        PROCESSES * ROUNDS,
        failures.join("\n")
    );
}
