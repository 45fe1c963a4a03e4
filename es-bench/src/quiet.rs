//! Silencing stdout while cqrs-es runs.
//!
//! cqrs-es 0.5's `MemStore` `println!`s a line on every `load_events` ("loading: N events for
//! aggregate ID ...") and every `commit` ("storing: ..."). Left on a terminal those lines
//! would flood it and time the terminal rather than the framework, so while it runs fd 1
//! points at `/dev/null`: each line then still costs its formatting and one `write` system
//! call, which is part of what that store does and stays in its figures.
//! [`println_cost`] measures that cost on its own, for the report's notes.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Instant;

/// Points fd 1 (stdout) at `/dev/null` until dropped, then restores it.
#[derive(Debug)]
pub struct SilencedStdout {
    saved: OwnedFd,
}

impl SilencedStdout {
    /// Flushes stdout and redirects fd 1 to `/dev/null`.
    pub fn new() -> io::Result<Self> {
        io::stdout().flush()?;
        let saved = io::stdout().as_fd().try_clone_to_owned()?;
        let null = File::options().write(true).open("/dev/null")?;
        // SAFETY: both are open file descriptors owned by this process for the whole call;
        // dup2 only makes fd 1 another reference to /dev/null's open file.
        if unsafe { libc::dup2(null.as_raw_fd(), libc::STDOUT_FILENO) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { saved })
    }
}

impl Drop for SilencedStdout {
    fn drop(&mut self) {
        // Whatever Rust still buffers belongs to the silenced section.
        let _ = io::stdout().flush();
        // SAFETY: `saved` is an open descriptor we own; this points fd 1 back at it.
        unsafe {
            libc::dup2(self.saved.as_raw_fd(), libc::STDOUT_FILENO);
        }
    }
}

/// Seconds per `println!` of a line like cqrs-es's `MemStore` log lines, with stdout on
/// `/dev/null` (median of 5 runs of `lines` lines).
pub fn println_cost(lines: usize) -> io::Result<f64> {
    let _quiet = SilencedStdout::new()?;
    let mut runs = Vec::with_capacity(5);
    for _ in 0..5 {
        let start = Instant::now();
        for i in 0..lines {
            println!("loading: {} events for aggregate ID '{}'", 10, i);
        }
        runs.push(start.elapsed().as_secs_f64() / lines as f64);
    }
    Ok(crate::measure::median(runs))
}
