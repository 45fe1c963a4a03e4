//! Crash safety of the SQLite store: appends acknowledged before a `SIGKILL` survive it.
//!
//! The test re-runs this test binary as a child process (selecting the ignored
//! `crash_child` test, which only works when `ES_CRASH_DB` is set). The child appends
//! batches in a loop and prints `es-crash-ack <batch>` after each append returned `Ok`; the parent
//! kills it at varied moments, reopens the file and checks that it opens cleanly, that
//! every batch is whole or absent, that stream versions are contiguous, and that every
//! acknowledged batch is there.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use es_core::{EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StreamRef};
use es_sqlite::SqliteStore;

/// Events per batch.
const BATCH_SIZE: u64 = 5;
/// The child spreads its batches over this many streams.
const STREAMS: u64 = 3;
/// What the child prints, followed by the batch number, after each acknowledged append.
const ACK: &str = "es-crash-ack ";
/// How long after its first acknowledged batch each round's child is killed.
const KILL_AFTER_MS: [u64; 5] = [50, 260, 120, 300, 190];

fn stream_id(n: u64) -> String {
    format!("s{n}")
}

/// The child: append batches until killed (or, as a safety net, for 20 seconds).
#[test]
#[ignore = "child process of `acknowledged_appends_survive_sigkill`"]
fn crash_child() {
    let Some(path) = std::env::var_os("ES_CRASH_DB") else {
        return;
    };
    let first_batch: u64 = std::env::var("ES_CRASH_FIRST_BATCH")
        .expect("ES_CRASH_FIRST_BATCH")
        .parse()
        .expect("a batch number");
    let store = SqliteStore::open(&path).expect("the child opens the store");
    let ids: Vec<String> = (0..STREAMS).map(stream_id).collect();
    let mut versions: Vec<u64> = ids
        .iter()
        .map(|id| store.stream_version(StreamRef::new("Crash", id)).unwrap())
        .collect();
    let mut stdout = std::io::stdout();
    let started = Instant::now();
    for batch in first_batch.. {
        if started.elapsed() > Duration::from_secs(20) {
            return;
        }
        let slot = (batch % STREAMS) as usize;
        let stream = StreamRef::new("Crash", &ids[slot]);
        let events: Vec<NewEvent> = (0..BATCH_SIZE)
            .map(|index| {
                NewEvent::new(
                    "Logged",
                    1,
                    serde_json::json!({ "batch": batch, "index": index, "pad": "x".repeat(200) }),
                    Metadata::new().with_correlation_id(format!("batch-{batch}")),
                )
            })
            .collect();
        let outcome = store
            .append(stream, ExpectedVersion::Exact(versions[slot]), &events)
            .expect("append");
        versions[slot] = outcome.stream_version;
        // Acknowledge only after `append` returned Ok.
        writeln!(stdout, "{ACK}{batch}").unwrap();
        stdout.flush().unwrap();
    }
}

/// Runs one child until it has acknowledged a batch, lets it run `kill_after`, kills it
/// with SIGKILL and returns the batches it acknowledged.
fn run_child(path: &Path, first_batch: u64, kill_after: Duration) -> Vec<u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ES_CRASH_DB", path)
        .env("ES_CRASH_FIRST_BATCH", first_batch.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().unwrap();
    let (acks, received) = mpsc::channel();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest may print `test crash_child ... ` on the same line as the first ack.
            if let Some((_, batch)) = line.split_once(ACK) {
                let _ = acks.send(batch.parse::<u64>().expect("an acknowledged batch number"));
            }
        }
    });
    let mut acknowledged = vec![
        received
            .recv_timeout(Duration::from_secs(30))
            .expect("the child acknowledged its first batch"),
    ];
    thread::sleep(kill_after);
    child.kill().expect("SIGKILL the child"); // `kill` sends SIGKILL on Unix.
    child.wait().unwrap();
    reader.join().unwrap();
    acknowledged.extend(received.try_iter());
    acknowledged
}

/// Checks the reopened store: every batch whole or absent, versions contiguous, and every
/// acknowledged batch present. Returns the batches found.
fn check(store: &SqliteStore, acknowledged: &[u64]) -> BTreeMap<u64, Vec<RecordedEvent>> {
    let mut batches: BTreeMap<u64, Vec<RecordedEvent>> = BTreeMap::new();
    for n in 0..STREAMS {
        let id = stream_id(n);
        let stream = StreamRef::new("Crash", &id);
        let events = store
            .read_stream(stream, 1)
            .expect("the stream reads cleanly");
        for (event, version) in events.iter().zip(1..) {
            assert_eq!(
                event.stream_version, version,
                "versions of {id} are contiguous"
            );
        }
        assert_eq!(store.stream_version(stream).unwrap(), events.len() as u64);
        for event in events {
            let batch = event.payload_value().unwrap()["batch"]
                .as_u64()
                .expect("a batch number");
            assert_eq!(batch % STREAMS, n, "batch {batch} is in its stream");
            batches.entry(batch).or_default().push(event);
        }
    }
    for (batch, events) in &batches {
        let indexes: Vec<u64> = events
            .iter()
            .map(|e| e.payload_value().unwrap()["index"].as_u64().unwrap())
            .collect();
        assert_eq!(
            indexes,
            (0..BATCH_SIZE).collect::<Vec<_>>(),
            "batch {batch} is whole"
        );
        assert!(
            events
                .windows(2)
                .all(|w| w[1].global_position == w[0].global_position + 1
                    && w[1].stream_version == w[0].stream_version + 1),
            "batch {batch} is contiguous"
        );
        let correlation = format!("batch-{batch}");
        assert!(
            events
                .iter()
                .all(|e| e.metadata.correlation_id.as_deref() == Some(correlation.as_str()))
        );
    }
    for batch in acknowledged {
        assert!(
            batches.contains_key(batch),
            "acknowledged batch {batch} survived the kill"
        );
    }
    let all = es_store_tests::read_everything(store);
    let logged = all.iter().filter(|e| e.event_type == "Logged").count() as u64;
    assert_eq!(
        logged,
        batches.len() as u64 * BATCH_SIZE,
        "the log holds the same batches"
    );
    assert!(
        all.windows(2)
            .all(|w| w[0].global_position < w[1].global_position)
    );
    batches
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let mut all_acknowledged = Vec::new();
    for (round, kill_after) in KILL_AFTER_MS.into_iter().enumerate() {
        let first_batch = round as u64 * 1_000_000;
        let acknowledged = run_child(&path, first_batch, Duration::from_millis(kill_after));
        all_acknowledged.extend(&acknowledged);

        let store = SqliteStore::open(&path).expect("the file opens cleanly after SIGKILL");
        let batches = check(&store, &all_acknowledged);
        // At most one batch can be committed but unacknowledged: the one in flight.
        let in_round = batches
            .keys()
            .filter(|&&b| (first_batch..first_batch + 1_000_000).contains(&b))
            .count();
        assert!(
            in_round == acknowledged.len() || in_round == acknowledged.len() + 1,
            "round {round}: {} batches stored, {} acknowledged",
            in_round,
            acknowledged.len()
        );
        // The store takes appends again after recovery.
        let stream = StreamRef::new("Crash", "after");
        let version = store.stream_version(stream).unwrap();
        store
            .append(
                stream,
                ExpectedVersion::Exact(version),
                &es_store_tests::events(1, 1),
            )
            .unwrap();
        eprintln!(
            "round {round}: killed after {kill_after} ms, {} batches acknowledged, {in_round} stored",
            acknowledged.len()
        );
    }
    eprintln!("crash test: {:?}", started.elapsed());
}
