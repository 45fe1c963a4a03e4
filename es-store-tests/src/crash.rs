//! Crash tests: kill a process that writes to a store with SIGKILL at random points, then
//! check what the store holds. es's own kill tests (exactly-once projectors on SQLite and
//! PostgreSQL, the NATS publisher) use these helpers; so can the tests of your own store
//! or read model.
//!
//! The pattern: the test binary runs one of its own `#[ignore]`d tests as the child
//! ([`spawn_child`]), which does the work (told what by environment variables) and prints
//! a marker once it has started; the parent kills it after a delay from [`Lcg`], appends
//! more, and checks the store after every round.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Runs this test binary's ignored test `test` alone as a child process with `env`, and
/// returns it once it printed a line containing `ready`.
pub fn spawn_child(test: &str, env: &[(&str, &str)], ready: &'static str) -> Child {
    let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
    command
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("spawn the child");
    let stdout = child.stdout.take().expect("the child's stdout is piped");
    let (started, waiting) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(ready) {
                let _ = started.send(());
            }
        }
    });
    waiting
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("the child ({test}) did not start within 30 s"));
    child
}

/// A small pseudo-random sequence, seeded from the clock; print [`Lcg::seed`] to replay a
/// failure with [`Lcg::new`].
pub struct Lcg(u64);

impl Lcg {
    /// The sequence of `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A seed from the clock.
    pub fn seed() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos() as u64
    }

    /// The next number below `bound`.
    pub fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}
