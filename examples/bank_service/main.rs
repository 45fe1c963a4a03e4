//! The bank account of `examples/bank_account.rs` as an HTTP service: axum handlers over an
//! `AsyncRepository`, on SQLite (default) or PostgreSQL.
//!
//! ```text
//! cargo run --example bank_service                             # SQLite file target/bank_service.db, 127.0.0.1:3000
//! cargo run --example bank_service -- --db /tmp/bank.db --addr 127.0.0.1:8080
//! cargo run --example bank_service -- --postgres postgres://es:es@127.0.0.1/es
//! ES_POSTGRES_URL=postgres://... cargo run --example bank_service -- --postgres
//! cargo run --example bank_service -- --self-test              # serve on a free port, run requests, exit
//! RUST_LOG=info cargo run --example bank_service               # less log (default: info,es_core=debug)
//! ```
//!
//! It serves until Ctrl-C. Then, from another terminal:
//!
//! ```text
//! curl -i -X POST localhost:3000/accounts/acc-1/open -H 'content-type: application/json' -d '{"owner":"Alice"}'
//! curl -i -X POST localhost:3000/accounts/acc-1/deposit -H 'content-type: application/json' \
//!      -H 'Idempotency-Key: req-42' -d '{"amount":100}'          # again with req-42: 200, "duplicate":true, no second deposit
//! curl -i -X POST localhost:3000/accounts/acc-1/withdraw -H 'content-type: application/json' -d '{"amount":30}'
//! curl -i -X POST localhost:3000/accounts/acc-1/withdraw -H 'content-type: application/json' -d '{"amount":1000}'   # 422
//! curl -i localhost:3000/accounts/acc-1                          # {"id":"acc-1","owner":"Alice","balance":70,"version":3}
//! curl -i localhost:3000/accounts/nobody                         # 404
//! ```
//!
//! Statuses: 200 (the command's outcome, or the account), 400 (malformed body or header),
//! 404 (no such account), 409 (concurrent requests kept conflicting beyond the retry
//! policy: retry), 422 (the domain refused: the message says why), 500 (store failure,
//! logged; the body says no more). The log (stderr) shows each request with the
//! repository's load/append/conflict/retry events inside it.

mod app;
mod client;

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use es_core::AsyncEventStore;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use app::{Accounts, Server};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Options {
    db: String,
    /// `Some(url)` to use PostgreSQL.
    postgres: Option<String>,
    addr: String,
    self_test: bool,
}

fn parse_args() -> Result<Options, BoxError> {
    let mut options = Options {
        db: "target/bank_service.db".into(),
        postgres: None,
        addr: "127.0.0.1:3000".into(),
        self_test: false,
    };
    let mut args = std::env::args().skip(1).peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--db" => options.db = args.next().ok_or("--db needs a path")?,
            "--addr" => options.addr = args.next().ok_or("--addr needs HOST:PORT")?,
            "--self-test" => options.self_test = true,
            // `--postgres URL`, or `--postgres` alone for the URL in ES_POSTGRES_URL.
            "--postgres" => {
                let url = match args.next_if(|next| !next.starts_with("--")) {
                    Some(url) => url,
                    None => std::env::var("ES_POSTGRES_URL").map_err(|_| {
                        "--postgres needs a URL or ES_POSTGRES_URL, e.g. postgres://es:es@127.0.0.1/es"
                    })?,
                };
                options.postgres = Some(url);
            }
            other => {
                return Err(format!(
                    "unknown argument `{other}`; use --db PATH, --postgres [URL], --addr HOST:PORT or --self-test"
                )
                .into());
            }
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // The repository's spans and events (es_core, feature `tracing`) and the service's
    // own, on stderr; RUST_LOG overrides the filter.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,es_core=debug")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let options = parse_args()?;
    match &options.postgres {
        Some(url) => {
            println!("store: PostgreSQL at {}", without_password(url));
            run(
                es_postgres::AsyncPostgresStore::connect(url).await?,
                &options,
            )
            .await
        }
        None => {
            if let Some(parent) = Path::new(&options.db).parent() {
                std::fs::create_dir_all(parent)?;
            }
            println!("store: SQLite file {}", options.db);
            run(
                es_sqlite::AsyncSqliteStore::open(&options.db).await?,
                &options,
            )
            .await
        }
    }
}

async fn run<S: AsyncEventStore + 'static>(store: S, options: &Options) -> Result<(), BoxError> {
    // The default retry policy (30 attempts within 1 s) absorbs concurrent requests on one
    // account; a request still losing after that gets 409.
    let accounts: Accounts<S> = Accounts::new(Arc::new(store));
    let router = app::router(accounts);
    if options.self_test {
        let server = Server::start(
            TcpListener::bind("127.0.0.1:0").await?,
            router,
            std::future::pending(),
        )?;
        let outcome = self_test(server.addr()).await;
        server.stop().await?;
        return outcome;
    }
    let listener = TcpListener::bind(&options.addr).await?;
    let server = Server::start(listener, router, async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C ({error}); stop the process to end");
            std::future::pending::<()>().await;
        }
        tracing::info!("Ctrl-C: finishing the requests in flight");
    })?;
    println!(
        "serving on http://{} (Ctrl-C to stop); try: curl -i http://{}/accounts/acc-1",
        server.addr(),
        server.addr()
    );
    server.wait().await?;
    println!("stopped");
    Ok(())
}

/// Runs a few requests against the service at `addr`, prints each answer, and fails if one
/// is not what the service promises.
async fn self_test(addr: std::net::SocketAddr) -> Result<(), BoxError> {
    // A fresh account per run: the store may hold those of earlier runs.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos();
    let id = format!("self-test-{nanos}");
    let path = |command: &str| format!("/accounts/{id}/{command}");
    let key = format!("{id}-deposit-1");
    let mut failures = 0;
    let mut check = |what: &str, expected: u16, reply: client::Reply| {
        // Every answer, error or not, is JSON.
        let ok =
            reply.status == expected && reply.header("content-type") == Some("application/json");
        println!(
            "{} {what} -> {} {}",
            if ok { "ok  " } else { "FAIL" },
            reply.status,
            reply.body
        );
        if !ok {
            println!("     expected {expected}");
            failures += 1;
        }
        reply.body
    };

    let amount = |n: u64| json!({ "amount": n });
    let reply = client::post(addr, &path("open"), &json!({"owner": "Alice"}), None).await?;
    check("open", 200, reply);
    let reply = client::post(addr, &path("deposit"), &amount(100), Some(&key)).await?;
    check("deposit 100 (Idempotency-Key)", 200, reply);
    let reply = client::post(addr, &path("deposit"), &amount(100), Some(&key)).await?;
    let replay = check("deposit 100 again, same key", 200, reply);
    let reply = client::post(addr, &path("withdraw"), &amount(30), None).await?;
    check("withdraw 30", 200, reply);
    let reply = client::post(addr, &path("withdraw"), &amount(1_000_000), None).await?;
    check("withdraw 1000000 (overdraft)", 422, reply);
    let reply = client::post(addr, &path("open"), &json!({"owner": "Mallory"}), None).await?;
    check("open again", 422, reply);
    let reply = client::get(addr, &format!("/accounts/{id}-missing")).await?;
    check("get an unknown account", 404, reply);
    let reply = client::post(
        addr,
        &format!("/accounts/{id}-missing/deposit"),
        &amount(1),
        None,
    )
    .await?;
    check("deposit to an unknown account", 404, reply);

    // Concurrent deposits: the repository retries the conflicts.
    let (clients, each) = (4, 10);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let path = path("deposit");
            tokio::spawn(async move {
                let mut replies = Vec::new();
                for _ in 0..each {
                    replies.push(client::post(addr, &path, &json!({"amount": 1}), None).await);
                }
                replies
            })
        })
        .collect();
    let (mut ok, mut retried) = (0, 0);
    for task in tasks {
        for reply in task.await? {
            let reply = reply?;
            if reply.status == 200 {
                ok += 1;
                retried += usize::from(reply.body["attempts"].as_u64() > Some(1));
            } else {
                check("concurrent deposit", 200, reply);
            }
        }
    }
    println!(
        "{} {clients} clients x {each} concurrent deposits of 1 -> {ok} x 200 ({retried} needed a retry)",
        if ok == clients * each { "ok  " } else { "FAIL" }
    );

    let reply = client::get(addr, &format!("/accounts/{id}")).await?;
    let account = check("get the account", 200, reply);
    let expected_balance = 70 + (clients * each) as u64;
    let expected_version = 3 + (clients * each) as u64;
    let state_ok = account["balance"] == json!(expected_balance)
        && account["version"] == json!(expected_version)
        && replay["duplicate"] == Value::Bool(true);
    println!(
        "{} balance {} (expected {expected_balance}), version {} (expected {expected_version}), the replay was a duplicate: {}",
        if state_ok { "ok  " } else { "FAIL" },
        account["balance"],
        account["version"],
        replay["duplicate"]
    );
    if failures > 0 || !state_ok || ok != clients * each {
        return Err(format!("self-test failed ({failures} unexpected answers)").into());
    }
    println!("self-test passed");
    Ok(())
}

/// `url` with the password of a `postgres://user:password@host/...` URL hidden.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // A `host=... password=...` string: say no more than that.
        return "a key=value connection string".to_owned();
    };
    match rest.split_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}")
        }
        _ => url.to_owned(),
    }
}
