//! The bank account's balances by owner (see `examples/bank_account.rs`), served by another
//! process that is fed the events through NATS JetStream. This process handles the commands
//! on a SQLite store and publishes its log with `es_nats::Publisher`; the read-model process
//! (this example started again with `--serve-balances URL`) consumes it with a
//! `JetStreamProjector` and prints the balances once it has caught up.
//!
//! ```text
//! cargo run --example bank_remote      # needs `nats-server` on the PATH: starts a private one
//! ```
//!
//! On two machines, the read-model side is the same code pointed at the shared server:
//! `bank_remote --serve-balances nats://nats.internal:4222`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use es_core::{AsyncRepository, Event, EventRecord, InMemoryStore, applies, read_model};
use es_nats::{ConsumerOptions, JetStreamProjector, Publisher, PublisherOptions};
use es_sqlite::AsyncSqliteStore;
use serde::{Deserialize, Serialize};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct AccountOpened {
    owner: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct MoneyDeposited {
    amount: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct MoneyWithdrawn {
    amount: u64,
}

#[derive(Debug, Default, es_core::Aggregate)]
#[aggregate(name = "BankAccount")]
struct BankAccount {
    owner: String,
    balance: u64,
}

#[applies]
impl BankAccount {
    fn opened(&mut self, e: &AccountOpened) {
        self.owner.clone_from(&e.owner);
    }
    fn deposited(&mut self, e: &MoneyDeposited) {
        self.balance += e.amount;
    }
    fn withdrawn(&mut self, e: &MoneyWithdrawn) {
        self.balance -= e.amount;
    }
}

#[derive(Debug, thiserror::Error)]
#[error("insufficient funds: balance {balance}, requested {requested}")]
struct InsufficientFunds {
    balance: u64,
    requested: u64,
}

impl BankAccount {
    fn withdraw(&self, amount: u64) -> Result<MoneyWithdrawn, InsufficientFunds> {
        if amount > self.balance {
            return Err(InsufficientFunds {
                balance: self.balance,
                requested: amount,
            });
        }
        Ok(MoneyWithdrawn { amount })
    }
}

/// Balances by owner, on the read-model process. Each stream arrives in order (its
/// opening first), so a deposit always finds its account's owner.
#[derive(Debug, Default)]
struct BalancesByOwner {
    owner_of: BTreeMap<String, String>,
    balances: BTreeMap<String, i64>,
}

#[read_model(name = "balances-by-owner", from = BankAccount)]
impl BalancesByOwner {
    fn opened(&mut self, e: &AccountOpened, r: &EventRecord<'_>) {
        self.owner_of
            .insert(r.stream.id.to_owned(), e.owner.clone());
        self.balances.entry(e.owner.clone()).or_default();
    }
    fn deposited(&mut self, e: &MoneyDeposited, r: &EventRecord<'_>) {
        self.add(r.stream.id, e.amount as i64);
    }
    fn withdrawn(&mut self, e: &MoneyWithdrawn, r: &EventRecord<'_>) {
        self.add(r.stream.id, -(e.amount as i64));
    }
}

impl BalancesByOwner {
    fn add(&mut self, account: &str, amount: i64) {
        if let Some(owner) = self.owner_of.get(account) {
            *self.balances.entry(owner.clone()).or_default() += amount;
        }
    }
}

/// `alice=150 bob=70`.
fn line(balances: &BTreeMap<String, i64>) -> String {
    let parts: Vec<String> = balances.iter().map(|(o, b)| format!("{o}={b}")).collect();
    parts.join(" ")
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, url] if flag == "--serve-balances" => serve_balances(url).await,
        [] => {
            let server = NatsServer::start()?;
            commands(&server.url).await
        }
        _ => Err("usage: bank_remote [--serve-balances NATS_URL]".into()),
    }
}

/// The read-model process: consumes the published events and prints the balances.
async fn serve_balances(url: &str) -> Result<(), Error> {
    let jetstream = async_nats::jetstream::new(async_nats::connect(url).await?);
    // Its progress (a checkpoint per partition) lives next to the read model: both in
    // memory here; on a real machine both in a file (e.g. an `AsyncSqliteStore`).
    let mut projector = JetStreamProjector::new(
        jetstream,
        BalancesByOwner::default(),
        InMemoryStore::new(),
        ConsumerOptions::new(),
    );
    let done = projector.catch_up().await?;
    println!(
        "read-model process {}: applied {} events from {} partitions",
        std::process::id(),
        done.applied,
        projector.partitions().len()
    );
    println!(
        "remote balances: {}",
        line(&projector.read_model().balances)
    );
    Ok(())
}

/// The command process: runs commands on SQLite, publishes the log, starts the read-model
/// process and checks what it prints.
async fn commands(url: &str) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(AsyncSqliteStore::open(dir.path().join("bank.db")).await?);
    let repo = AsyncRepository::<BankAccount, _>::new(store.clone());
    for (account, owner) in [("acc-1", "alice"), ("acc-2", "bob"), ("acc-3", "alice")] {
        let owner = owner.to_owned();
        repo.execute_infallible(account, move |_: &BankAccount| AccountOpened {
            owner: owner.clone(),
        })
        .await?;
    }
    for (account, amount) in [("acc-1", 100), ("acc-2", 100), ("acc-3", 80)] {
        repo.execute_infallible(account, move |_: &BankAccount| MoneyDeposited { amount })
            .await?;
    }
    repo.execute("acc-1", |acc| acc.withdraw(30)).await?;
    repo.execute("acc-2", |acc| acc.withdraw(30)).await?;
    if let Err(refused) = repo.execute("acc-2", |acc| acc.withdraw(1000)).await {
        println!("refused: {refused}");
    }
    let mut local = BTreeMap::new();
    for account in ["acc-1", "acc-2", "acc-3"] {
        let acc = repo.load(account).await?.ok_or("opened above")?;
        *local.entry(acc.state.owner).or_default() += acc.state.balance as i64;
    }
    println!("local balances:  {}", line(&local));

    // Publish the log to JetStream (the stream `ES_EVENTS` is created on first use).
    let jetstream = async_nats::jetstream::new(async_nats::connect(url).await?);
    let mut publisher = Publisher::new(
        jetstream,
        store.clone(),
        store.clone(),
        PublisherOptions::default(),
    )?;
    let published = publisher.catch_up().await?;
    println!(
        "published {} events to JetStream at {url}",
        published.published
    );

    // The read model runs in another process, as it would on another machine.
    let output = Command::new(std::env::current_exe()?)
        .args(["--serve-balances", url])
        .output()?;
    let printed = String::from_utf8_lossy(&output.stdout);
    print!("{printed}");
    if !output.status.success() {
        return Err(format!(
            "the read-model process failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let expected = format!("remote balances: {}", line(&local));
    if !printed.lines().any(|l| l == expected) {
        return Err(format!("the read-model process did not print `{expected}`").into());
    }
    println!("the remote read model agrees with the command side");
    Ok(())
}

/// A private `nats-server -js` on a free port with its own store, killed when dropped.
struct NatsServer {
    child: Child,
    url: String,
    _store: tempfile::TempDir,
}

impl NatsServer {
    fn start() -> Result<Self, Error> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let store = tempfile::tempdir()?;
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot start nats-server ({e}): install it (`apt-get install nats-server`) and put it on the PATH")
            })?;
        let server = Self {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            _store: store,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if Instant::now() > deadline {
                return Err("nats-server did not start listening within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
