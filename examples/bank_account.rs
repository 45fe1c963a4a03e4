//! A bank account kept in a durable store: run it twice and the second run shows the
//! history the first one recorded. It also shows the temporal queries (the state at a
//! version, and as of a time), snapshots every 10 events, and every withdrawal listed by
//! event type across accounts. On SQLite it keeps a read model of balances by owner in the
//! same file, whose rows are committed with its checkpoint in one transaction (exactly
//! once).
//!
//! ```text
//! cargo run --example bank_account                      # SQLite file ./bank_account.db
//! cargo run --example bank_account -- --db /tmp/x.db    # another SQLite file
//! ES_POSTGRES_URL=postgres://... cargo run --example bank_account -- --postgres
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use es_core::{
    Aggregate, Event, EventRecord, EventStore, ExpectedVersion, Metadata, NewEvent, Projector,
    Repository, StreamRef, UpcastError, applies, read_model,
};
use es_sqlite::rusqlite::{Connection, Transaction, params};
use es_sqlite::{ExactlyOnce, SqliteReadModel, SqliteStore};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct AccountOpened {
    owner: String,
    /// The opening balance (absent in accounts opened by earlier releases: 0).
    #[serde(default)]
    initial: u64,
}

/// Version 1 (stored as `FundsAdded` by an older release) had no currency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "MoneyDeposited", version = 2,
        upcast(from = 1, with = deposit_v1_to_v2),
        aliases("FundsAdded"))]
struct MoneyDeposited {
    amount: u64,
    currency: String,
}

fn deposit_v1_to_v2(mut payload: Value) -> Result<Value, UpcastError> {
    payload
        .as_object_mut()
        .ok_or_else(|| UpcastError::new("payload is not an object"))?
        .insert("currency".into(), "EUR".into());
    Ok(payload)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct MoneyWithdrawn {
    amount: u64,
}

#[derive(Debug, Default, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "BankAccount", snapshot_every = 10)]
struct BankAccount {
    owner: String,
    balance: u64,
    open: bool,
}

#[applies]
impl BankAccount {
    fn opened(&mut self, e: &AccountOpened) {
        self.owner.clone_from(&e.owner);
        self.balance = e.initial;
        self.open = true;
    }
    fn deposited(&mut self, e: &MoneyDeposited) {
        self.balance += e.amount;
    }
    fn withdrawn(&mut self, e: &MoneyWithdrawn) {
        self.balance -= e.amount;
    }
}

#[derive(Debug, thiserror::Error)]
enum BankError {
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("the account is not open")]
    NotOpen,
    #[error("insufficient funds: balance {balance}, requested {requested}")]
    InsufficientFunds { balance: u64, requested: u64 },
}

impl BankAccount {
    fn open(&self, owner: &str) -> Result<AccountOpened, BankError> {
        self.open_with(owner, 0)
    }

    fn open_with(&self, owner: &str, initial: u64) -> Result<AccountOpened, BankError> {
        if self.open {
            return Err(BankError::AlreadyOpen);
        }
        Ok(AccountOpened {
            owner: owner.into(),
            initial,
        })
    }

    fn deposit(&self, amount: u64) -> Result<MoneyDeposited, BankError> {
        if !self.open {
            return Err(BankError::NotOpen);
        }
        Ok(MoneyDeposited {
            amount,
            currency: "EUR".into(),
        })
    }

    fn withdraw(&self, amount: u64) -> Result<MoneyWithdrawn, BankError> {
        if !self.open {
            return Err(BankError::NotOpen);
        }
        if amount > self.balance {
            return Err(BankError::InsufficientFunds {
                balance: self.balance,
                requested: amount,
            });
        }
        Ok(MoneyWithdrawn { amount })
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut db = String::from("bank_account.db");
    let mut postgres = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--postgres" => postgres = true,
            "--db" => db = args.next().ok_or("--db needs a path")?,
            other => {
                return Err(
                    format!("unknown argument `{other}`; use --db PATH or --postgres").into(),
                );
            }
        }
    }
    if postgres {
        let url = std::env::var("ES_POSTGRES_URL")
            .map_err(|_| "--postgres needs ES_POSTGRES_URL, e.g. postgres://es:es@127.0.0.1/es")?;
        println!("store: PostgreSQL at {url}");
        run(es_postgres::PostgresStore::connect(&url)?)
    } else {
        println!("store: SQLite file {db}");
        let store = SqliteStore::open(&db)?;
        run(store.clone())?;
        balances_by_owner(&store)
    }
}

/// Balances by owner, in the table `rm_accounts` of the event store's SQLite file. The
/// handlers only note what changed; `write` applies it to the table in the transaction
/// that also stores the checkpoint, so the table never counts an event twice, nor misses
/// one, whatever happens to the process.
#[derive(Debug, Default)]
struct BalancesByOwner {
    /// The changes of the current batch, in order: (account, owner if opened, amount).
    changes: Vec<(String, Option<String>, i64)>,
}

#[read_model(name = "balances-by-owner", from = BankAccount)]
impl BalancesByOwner {
    fn opened(&mut self, e: &AccountOpened, record: &EventRecord<'_>) {
        let (account, owner) = (record.stream.id.to_owned(), Some(e.owner.clone()));
        self.changes.push((account, owner, e.initial as i64));
    }
    fn deposited(&mut self, e: &MoneyDeposited, record: &EventRecord<'_>) {
        let account = record.stream.id.to_owned();
        self.changes.push((account, None, e.amount as i64));
    }
    fn withdrawn(&mut self, e: &MoneyWithdrawn, record: &EventRecord<'_>) {
        let account = record.stream.id.to_owned();
        self.changes.push((account, None, -(e.amount as i64)));
    }
}

impl SqliteReadModel for BalancesByOwner {
    fn write(&mut self, tx: &Transaction<'_>) -> es_sqlite::rusqlite::Result<()> {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO rm_accounts (account, owner, balance) VALUES (?1, COALESCE(?2, ''), ?3) \
             ON CONFLICT (account) DO UPDATE SET balance = balance + excluded.balance, \
             owner = COALESCE(?2, owner)",
        )?;
        for (account, owner, amount) in self.changes.drain(..) {
            upsert.execute(params![account, owner, amount])?;
        }
        Ok(())
    }

    fn clear(&mut self, tx: &Transaction<'_>) -> es_sqlite::rusqlite::Result<()> {
        tx.execute("DELETE FROM rm_accounts", []).map(drop)
    }
}

fn balances_by_owner(store: &SqliteStore) -> Result<(), Box<dyn std::error::Error>> {
    let checkpoints = ExactlyOnce::open(store)?;
    checkpoints.connection().execute_batch(
        "CREATE TABLE IF NOT EXISTS rm_accounts (
             account TEXT PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL
         )",
    )?;
    let mut projector = Projector::new(store.clone(), BalancesByOwner::default(), checkpoints);
    let done = projector.catch_up()?;
    println!(
        "balances by owner (exactly-once read model in the same file; {} new events applied, checkpoint {}):",
        done.applied, done.position
    );
    let conn: &Connection = projector.checkpoints().connection();
    let mut stmt = conn.prepare(
        "SELECT owner, SUM(balance), COUNT(*) FROM rm_accounts GROUP BY owner ORDER BY owner",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (owner, balance, accounts) = row?;
        println!("  {owner:<8} {balance:>6} over {accounts} account(s)");
    }
    Ok(())
}

fn run<S: EventStore + Clone>(store: S) -> Result<(), Box<dyn std::error::Error>> {
    let repo = Repository::<BankAccount, _>::new(store.clone());
    let request = Metadata::new()
        .with_correlation_id(format!("run-{}", now_secs()))
        .with_entry("example", "bank_account");

    match repo.load("acc-1")? {
        None => {
            println!("acc-1 is new: opening it");
            repo.execute_with("acc-1", &request, |acc| acc.open("Alice"))?;
        }
        Some(acc) => println!(
            "acc-1 exists from an earlier run: {} has {} at version {}",
            acc.state.owner, acc.state.balance, acc.version
        ),
    }
    repo.execute_with("acc-1", &request, |acc| acc.deposit(100))?;
    repo.execute_with("acc-1", &request, |acc| acc.withdraw(30))?;

    // Rejected commands append nothing and say why.
    for result in [
        repo.execute_with("acc-1", &request, |acc| acc.withdraw(1_000_000)),
        repo.execute_with("acc-1", &request, |acc| acc.open("Mallory")),
        repo.execute_with("acc-2", &request, |acc| acc.withdraw(1)),
    ] {
        if let Err(error) = result {
            println!("rejected: {error}");
        }
    }

    let acc = repo.load("acc-1")?.ok_or("acc-1 was opened above")?;
    println!(
        "acc-1: owner {}, balance {}, version {}",
        acc.state.owner, acc.state.balance, acc.version
    );
    println!("history of acc-1:");
    for entry in repo.history("acc-1")? {
        let r = &entry.record;
        println!(
            "  v{:<3} #{:<4} {:<15} (schema v{}) at {}s, correlation {}: {:?}",
            r.stream_version,
            r.global_position,
            r.event_type,
            r.schema_version,
            r.recorded_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            r.metadata.correlation_id.as_deref().unwrap_or("-"),
            entry.event
        );
    }

    // An account written by an older release: the deposit was stored as `FundsAdded` v1,
    // without a currency. It reads back as today's `MoneyDeposited` v2.
    let legacy = StreamRef::new(BankAccount::AGGREGATE_TYPE, "acc-legacy");
    if store.stream_version(legacy)? == 0 {
        store.append(
            legacy,
            ExpectedVersion::NoStream,
            &[
                NewEvent::new(
                    "AccountOpened",
                    1,
                    json!({"owner": "Grace"}),
                    Metadata::new(),
                ),
                NewEvent::new("FundsAdded", 1, json!({"amount": 250}), Metadata::new()),
            ],
        )?;
    }
    println!("acc-legacy, stored by an older release:");
    for entry in repo.history("acc-legacy")? {
        println!(
            "  stored as {} v{} {} -> read as {:?}",
            entry.record.event_type, entry.record.schema_version, entry.record.payload, entry.event
        );
    }
    temporal(&repo, &store)
}

/// The state at a version and as of a time, snapshots, and events by type, on an account
/// opened for this run.
fn temporal<S: EventStore>(
    repo: &Repository<BankAccount, S>,
    store: &S,
) -> Result<(), Box<dyn std::error::Error>> {
    // A new account per run (runs may follow each other within a second).
    let id = format!(
        "acc-t-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros())
    );
    repo.execute(&id, |acc| acc.open_with("Bob", 1000))?;
    repo.execute(&id, |acc| acc.deposit(500))?;
    // A moment between the second and the third event.
    std::thread::sleep(Duration::from_millis(5));
    let between = SystemTime::now();
    std::thread::sleep(Duration::from_millis(5));
    repo.execute(&id, |acc| acc.withdraw(200))?;
    repo.execute(&id, |acc| acc.deposit(100))?;

    let now = repo.load(&id)?.ok_or("opened above")?;
    println!(
        "{id}: opened with 1000, deposit 500, withdraw 200, deposit 100 -> balance {} at version {}",
        now.state.balance, now.version
    );
    let at_3 = repo.load_at(&id, 3)?.ok_or("version 3 exists")?;
    println!("{id} at version 3: balance {}", at_3.state.balance);
    let as_of = repo.load_as_of(&id, between)?.ok_or("opened before")?;
    println!(
        "{id} as of the moment between its 2nd and 3rd event: balance {} at version {}",
        as_of.state.balance, as_of.version
    );

    // Snapshots every 10 events (`snapshot_every = 10`): 8 more deposits reach version 12.
    for _ in 0..8 {
        repo.execute(&id, |acc| acc.deposit(10))?;
    }
    let stream = StreamRef::new(BankAccount::AGGREGATE_TYPE, &id);
    match store.load_snapshot(stream, 1, u64::MAX)? {
        Some(snapshot) => println!(
            "{id}: snapshot taken at version {} ({}); a load reads it and the {} events after it",
            snapshot.stream_version,
            snapshot.state,
            repo.load(&id)?.map_or(0, |acc| acc.version) - snapshot.stream_version
        ),
        None => println!("{id}: this store keeps no snapshots"),
    }

    println!("every withdrawal of every bank account, by event type:");
    let mut from = 0;
    loop {
        let page = repo.events_of::<MoneyWithdrawn>(from, 100)?;
        let Some(last) = page.last() else { break };
        from = last.record.global_position + 1;
        for entry in &page {
            println!(
                "  #{:<4} {} v{}: {}",
                entry.record.global_position,
                entry.record.stream_id,
                entry.record.stream_version,
                entry.event.amount
            );
        }
    }
    Ok(())
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
