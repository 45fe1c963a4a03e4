//! A small TCP proxy on 127.0.0.1 between a store and the PostgreSQL server that breaks
//! connections at chosen points of the wire protocol: a lost `COMMIT` reply, a read cut
//! after its first row, connections that die unnoticed while pooled.
//!
//! Included with `#[path = "support/proxy.rs"] mod proxy;` next to `support/postgres.rs`
//! (as `support`); not every file uses every item. It is the proxy of
//! `tests/postgres_faults.rs`, shared so that the async store's fault tests break
//! connections the same way.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use es_postgres::postgres::Config;
use es_postgres::postgres::config::Host;

use super::support::without_tls_params;

/// A value quoted for a `key=value` connection string.
pub fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The server's TCP address, from `url`.
pub fn server_address(url: &str) -> String {
    let config: Config = without_tls_params(url)
        .parse()
        .expect("ES_POSTGRES_URL parses");
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        other => panic!(
            "the fault tests reach the server over TCP through a proxy; ES_POSTGRES_URL must \
             name a TCP host, not {other:?}"
        ),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A connection string like `url`, but to 127.0.0.1:`port` (the proxy), with
/// `application_name` set to `app`, unencrypted: the proxy reads the protocol's messages to
/// cut the connection at the right one.
pub fn via_port(url: &str, port: u16, app: &str) -> String {
    let config: Config = without_tls_params(url)
        .parse()
        .expect("ES_POSTGRES_URL parses");
    let mut text = format!(
        "host=127.0.0.1 port={port} sslmode=disable application_name={}",
        quoted(app)
    );
    if let Some(user) = config.get_user() {
        text.push_str(&format!(" user={}", quoted(user)));
    }
    if let Some(password) = config.get_password() {
        let password = std::str::from_utf8(password).expect("a UTF-8 password");
        text.push_str(&format!(" password={}", quoted(password)));
    }
    if let Some(dbname) = config.get_dbname() {
        text.push_str(&format!(" dbname={}", quoted(dbname)));
    }
    text
}

/// Where the proxy cuts a connection's server-to-client traffic, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Nowhere.
    Off,
    /// Instead of forwarding the `CommandComplete` of a `COMMIT`: the transaction commits
    /// on the server, but the client only sees its connection break.
    CommitReply,
    /// Right after forwarding the first `DataRow`: the client reads one row, then the
    /// connection breaks.
    AfterFirstRow,
}

struct ProxyState {
    upstream: String,
    cut: Mutex<Cut>,
    /// How many connections the proxy cut.
    cuts: AtomicUsize,
    /// How many client connections were accepted; each connection's number is its rank.
    accepted: AtomicUsize,
    /// Connections ranked below this die as soon as the client sends anything, as if the
    /// server or a firewall had dropped them silently while they sat idle.
    doomed_below: AtomicUsize,
    stopping: AtomicBool,
    sockets: Mutex<Vec<TcpStream>>,
}

/// A TCP proxy on 127.0.0.1 in front of the server, which breaks connections on demand.
pub struct Proxy {
    pub port: u16,
    state: Arc<ProxyState>,
}

impl Proxy {
    pub fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState {
            upstream,
            cut: Mutex::new(Cut::Off),
            cuts: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            doomed_below: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            sockets: Mutex::new(Vec::new()),
        });
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for client in listener.incoming() {
                if shared.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let rank = shared.accepted.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(&shared.upstream) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut sockets = shared.sockets.lock().unwrap();
                    sockets.push(client.try_clone().unwrap());
                    sockets.push(server.try_clone().unwrap());
                }
                let (c, s, state) = (
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    Arc::clone(&shared),
                );
                thread::spawn(move || requests(rank, c, s, &state));
                let state = Arc::clone(&shared);
                thread::spawn(move || replies(server, client, &state));
            }
        });
        Self { port, state }
    }

    /// Cuts the next connection that reaches `cut`, then forwards normally again.
    pub fn arm(&self, cut: Cut) {
        *self.state.cut.lock().unwrap() = cut;
    }

    /// How many connections were cut so far (by [`arm`](Proxy::arm)).
    pub fn cuts(&self) -> usize {
        self.state.cuts.load(Ordering::SeqCst)
    }

    /// Every connection open now dies the next time the client sends anything; new ones
    /// are left alone.
    pub fn doom_open_connections(&self) {
        let accepted = self.state.accepted.load(Ordering::SeqCst);
        self.state.doomed_below.store(accepted, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop, and end every forwarding thread.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for socket in self.state.sockets.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

fn close(a: &TcpStream, b: &TcpStream) {
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
}

/// Forwards client-to-server bytes.
fn requests(rank: usize, mut client: TcpStream, mut server: TcpStream, state: &ProxyState) {
    let mut buffer = [0; 16 * 1024];
    loop {
        let n = match client.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if rank < state.doomed_below.load(Ordering::SeqCst) {
            break;
        }
        if server.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    close(&client, &server);
}

/// Forwards server-to-client bytes whole message by whole message (type byte, `int32`
/// length including itself, body), so that a cut falls exactly where it is armed.
fn replies(mut server: TcpStream, mut client: TcpStream, state: &ProxyState) {
    let mut buffer = [0; 16 * 1024];
    let mut pending = Vec::new();
    loop {
        let n = match server.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buffer[..n]);
        let mut complete = 0;
        while pending.len() - complete >= 5 {
            let length =
                u32::from_be_bytes(pending[complete + 1..complete + 5].try_into().unwrap());
            let end = complete + 1 + length as usize;
            if pending.len() < end {
                break;
            }
            let message = &pending[complete..end];
            let forward_to = {
                let mut cut = state.cut.lock().unwrap();
                let at = match *cut {
                    Cut::CommitReply if message[0] == b'C' && &message[5..] == b"COMMIT\0" => {
                        Some(complete)
                    }
                    Cut::AfterFirstRow if message[0] == b'D' => Some(end),
                    _ => None,
                };
                if at.is_some() {
                    *cut = Cut::Off;
                    state.cuts.fetch_add(1, Ordering::SeqCst);
                }
                at
            };
            if let Some(at) = forward_to {
                let _ = client.write_all(&pending[..at]);
                if at == end {
                    // Let the client take the row before its connection breaks.
                    thread::sleep(Duration::from_millis(200));
                }
                close(&client, &server);
                return;
            }
            complete = end;
        }
        if client.write_all(&pending[..complete]).is_err() {
            break;
        }
        pending.drain(..complete);
    }
    close(&client, &server);
}
