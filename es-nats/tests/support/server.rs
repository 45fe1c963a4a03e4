//! A private `nats-server -js` for one test: its own free port and its own store directory,
//! stopped, killed and restarted on the same port and store (for restart tests), killed
//! when dropped.
//!
//! Include it in a test file with `mod support { pub mod server; }` and start a server
//! with [`nats_server_or_skip`]:
//!
//! ```ignore
//! let Some(server) = support::server::nats_server_or_skip() else { return };
//! let client = async_nats::connect(server.url()).await?;
//! ```
//!
//! The binary is `$NATS_SERVER_BIN` if set, else `nats-server` on the `PATH`. Without it
//! a test is skipped with a printed reason, unless `CI` is set: then it fails.
#![allow(dead_code)]

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long a starting server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stopping server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The `nats-server` binary to run: `$NATS_SERVER_BIN` (if it names a file), or
/// `nats-server` on the `PATH`.
pub fn nats_server_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
}

/// A fresh server, or `None` (with the reason on stderr) when `nats-server` is not
/// installed. With `CI` set, a missing binary fails the test instead: CI installs it.
pub fn nats_server_or_skip() -> Option<NatsServer> {
    match nats_server_binary() {
        Some(binary) => Some(NatsServer::start_with(binary)),
        None if std::env::var_os("CI").is_some() => panic!(
            "nats-server was not found (NATS_SERVER_BIN names no file, or is unset and none is on the PATH) and CI is set: \
             the NATS tests must run in CI; install it (`apt-get install -y nats-server`, see .ci/run)"
        ),
        None => {
            eprintln!(
                "skipped: nats-server was not found (NATS_SERVER_BIN names no file, or is unset and none is on the PATH); \
                 install it (`apt-get install -y nats-server`) to run the NATS tests"
            );
            None
        }
    }
}

/// A private JetStream server (file storage) on 127.0.0.1.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
}

impl NatsServer {
    /// Starts a server with `binary` on a free port, with a new store directory.
    pub fn start_with(binary: PathBuf) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("es-nats-test-")
            .tempdir()
            .expect("create a temp dir for the nats-server store");
        let mut server = Self {
            binary,
            port: free_port(),
            dir,
            child: None,
            starts: 0,
        };
        server.launch();
        server
    }

    /// The URL to connect to: `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port it listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory (the same across restarts).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    /// Whether the server process is running (started and not stopped or exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The server's log so far (all runs), for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stops the server with SIGTERM (a clean shutdown that flushes the store), killing it
    /// if it has not exited within 10 s. Does nothing if it is not running.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills the server with SIGKILL (a crash: what was not synced to disk may be lost, as
    /// the server's sync settings allow). Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server (if running) and starts it again on the same port with the same
    /// store directory; returns once it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Starts the server again after [`stop`](NatsServer::stop) or
    /// [`kill`](NatsServer::kill), on the same port and store.
    pub fn start_again(&mut self) {
        if self.child.is_none() {
            self.launch();
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    fn launch(&mut self) {
        self.starts += 1;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the nats-server log file");
        let child = Command::new(&self.binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.store_dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                // The client port opens once JetStream has started (the server starts its
                // subsystems before accepting clients).
                return;
            }
            if !self.is_running() {
                panic!(
                    "nats-server exited at start (run {}, port {}); its log:\n{}",
                    self.starts,
                    self.port,
                    self.log()
                );
            }
            if Instant::now() > deadline {
                let log = self.log();
                self.kill();
                panic!(
                    "nats-server did not accept connections on port {} within {START_TIMEOUT:?}; its log:\n{log}",
                    self.port
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port no one listens on now (the OS picks it; it stays free unless someone else
/// takes it before the server binds it).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("find a free port")
}
