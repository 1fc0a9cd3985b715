//! Ledger throughput: `wallet::transfer` from N concurrent tasks against PostgreSQL.
//!
//!   cargo run --release --example ledger_bench -- setup  DATABASE_URL [USERS]
//!   cargo run --release --example ledger_bench -- run    DATABASE_URL CLIENTS SECONDS
//!   cargo run --release --example ledger_bench -- buy    DATABASE_URL CLIENTS SECONDS
//!
//! `setup` migrates the (empty) database, creates USERS users (default 1000) with a large
//! balance each, and a `bench_accounts(n, id)` table mapping 1..USERS to their account ids
//! for the pgbench script (bench/ledger.sql). `run` moves 1 coin between two random users
//! per transfer, each with a fresh idempotency key (the shape of a paid operation), and
//! prints one line: `transfers=… seconds=… tps=… p50_ms=… p99_ms=…`. `buy` has each client
//! call `access::service::purchase` for a 1-hour token as a random user instead (every
//! purchase pays the one `system:sales` account), and prints the same line with
//! `purchases=`.

use std::time::{Duration, Instant};

use rand::Rng;
use sea_orm::{ActiveModelTrait, ConnectionTrait};
use tessera::{
    Application, Config,
    identity::{Role, service::verified_user},
    wallet::{Account, SystemAccount, TransferKind, TransferRequest, service},
};
use uuid::Uuid;

const START_BALANCE: i64 = 1_000_000_000;

async fn app(url: &str, pool: u32) -> anyhow::Result<Application> {
    let config = Config::from_args([
        "--database-url",
        url,
        "--database-max-connections",
        &pool.to_string(),
        "--database-min-connections",
        &pool.to_string(),
        "--access-token-max-active",
        "100000000",
        "--data-dir",
        std::env::temp_dir()
            .join("tessera-ledger-bench")
            .to_str()
            .unwrap(),
    ])?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Application::build(config, listener).await
}

fn user_id(n: u32) -> Uuid {
    Uuid::from_u128(0xbe7c_0000_0000_4000_8000_0000_0000_0000 | u128::from(n))
}

async fn setup(url: &str, users: u32) -> anyhow::Result<()> {
    let app = app(url, 4).await?;
    let state = app.state();
    let conn = state.db.conn();
    conn.execute_unprepared(
        "CREATE TABLE IF NOT EXISTS bench_accounts (n integer PRIMARY KEY, id uuid NOT NULL)",
    )
    .await?;
    for n in 1..=users {
        let mut user = verified_user(
            &format!("bench{n}@example.com"),
            format!("bench{n}"),
            Role::User,
            None,
        );
        user.id = sea_orm::ActiveValue::Set(user_id(n));
        user.insert(conn).await?;
        service::open_user_account(conn, user_id(n)).await?;
        service::transfer(
            state,
            TransferRequest::new(
                Account::System(SystemAccount::Grants),
                Account::User(user_id(n)),
                START_BALANCE,
                TransferKind::Grant,
            ),
        )
        .await?;
        conn.execute_unprepared(&format!(
            "INSERT INTO bench_accounts (n, id) VALUES ({n}, '{}')",
            Account::User(user_id(n)).id()
        ))
        .await?;
    }
    println!("set up {users} users");
    Ok(())
}

async fn run(url: &str, clients: u32, seconds: u64, buy: bool) -> anyhow::Result<()> {
    let app = app(url, clients).await?;
    let state = app.state().clone();
    let users: u32 = {
        let row = state
            .db
            .conn()
            .query_one_raw(sea_orm::Statement::from_string(
                state.db.conn().get_database_backend(),
                "SELECT count(*)::integer AS n FROM bench_accounts",
            ))
            .await?
            .expect("a count");
        row.try_get::<i32>("", "n")? as u32
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let state = state.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                if buy {
                    let started = Instant::now();
                    let buyer = rand::thread_rng().gen_range(1..=users);
                    tessera::access::service::purchase(
                        &state,
                        user_id(buyer),
                        tessera::access::service::Purchase {
                            duration_hours: 1,
                            name: None,
                            idempotency_key: Some(Uuid::new_v4().to_string()),
                        },
                    )
                    .await
                    .expect("a purchase");
                    latencies.push(started.elapsed().as_micros() as u64);
                    continue;
                }
                let (a, b) = {
                    let mut rng = rand::thread_rng();
                    let a = rng.gen_range(1..=users);
                    let mut b = rng.gen_range(1..=users);
                    if b == a {
                        b = a % users + 1;
                    }
                    (a, b)
                };
                let started = Instant::now();
                service::transfer(
                    &state,
                    TransferRequest::new(
                        Account::User(user_id(a)),
                        Account::User(user_id(b)),
                        1,
                        TransferKind::Grant,
                    )
                    .idempotency_key(Some(Uuid::new_v4().to_string())),
                )
                .await
                .expect("a transfer");
                latencies.push(started.elapsed().as_micros() as u64);
            }
            latencies
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await?);
    }
    let elapsed = started.elapsed().as_secs_f64().max(seconds as f64);
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1000.0;
    println!(
        "{}={} seconds={elapsed:.1} tps={:.0} p50_ms={:.2} p99_ms={:.2}",
        if buy { "purchases" } else { "transfers" },
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
    let problems = service::check_invariants(state.db.conn()).await?;
    if !problems.is_empty() {
        anyhow::bail!("ledger invariants broken: {problems:?}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    match (arg(0), arg(1)) {
        (Some("setup"), Some(url)) => setup(url, arg(2).map_or(Ok(1000), str::parse)?).await,
        (Some(mode @ ("run" | "buy")), Some(url)) => {
            run(
                url,
                arg(2).map_or(Ok(16), str::parse)?,
                arg(3).map_or(Ok(10), str::parse)?,
                mode == "buy",
            )
            .await
        }
        _ => {
            anyhow::bail!("usage: ledger_bench setup URL [USERS] | run|buy URL [CLIENTS] [SECONDS]")
        }
    }
}
