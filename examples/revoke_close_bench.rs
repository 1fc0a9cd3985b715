//! From `revokeAccessToken` on instance A to the close frame of a WebSocket proxied by
//! instance B (PostgreSQL and Redis shared, as in production):
//!
//!   BENCH_DATABASE_URL=postgres://…/empty_db BENCH_REDIS_URL=redis://127.0.0.1:6379 \
//!     cargo run --release --example revoke_close_bench [-- ROUNDS]
//!
//! Prints `rounds=… p50_ms=… p99_ms=… max_ms=…`.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sea_orm::ActiveModelTrait;
use tessera::{
    Application, Config,
    access::service::{Purchase, purchase, revoke},
    graphql::RequestMeta,
    identity::{Role, service::verified_user},
};
use tessera_fakes::upstream::Upstream;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

async fn instance(
    database: &str,
    redis: &str,
    prefix: &str,
    data: &std::path::Path,
    upstream: &str,
) -> anyhow::Result<(tessera::AppState, std::net::SocketAddr)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let config = Config::from_args([
        "--database-url",
        database,
        "--redis-url",
        redis,
        "--kv-prefix",
        prefix,
        "--data-dir",
        &data.display().to_string(),
        "--access-proxy-upstream",
        upstream,
        "--access-token-prices",
        "1:0",
        "--listen-addr",
        &addr.to_string(),
    ])?;
    let app = Application::build(config, listener).await?;
    let state = app.state().clone();
    tokio::spawn(app.run(tokio_util::sync::CancellationToken::new()));
    Ok((state, addr))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args().nth(1).map_or(Ok(100), |s| s.parse())?;
    let database = std::env::var("BENCH_DATABASE_URL")?;
    let redis = std::env::var("BENCH_REDIS_URL")?;
    let prefix = format!("bench:{}:", Uuid::new_v4().simple());
    let data = std::env::temp_dir().join(format!("tessera-revoke-bench-{}", Uuid::new_v4()));
    let upstream = Upstream::start("127.0.0.1:0").await?;
    let (a, _) = instance(&database, &redis, &prefix, &data, &upstream.url()).await?;
    let (_b, b_addr) = instance(&database, &redis, &prefix, &data, &upstream.url()).await?;
    let user = verified_user(
        &format!("{}@example.com", Uuid::new_v4().simple()),
        format!("r{}", &Uuid::new_v4().simple().to_string()[..12]),
        Role::User,
        None,
    )
    .insert(a.db.conn())
    .await?;
    let meta = RequestMeta {
        request_id: "bench".into(),
        peer: None,
        client_ip: None,
        user_agent: None,
        authorization: None,
        cookies: None,
        client: None,
    };
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let bought = purchase(
            &a,
            user.id,
            Purchase {
                duration_hours: 1,
                name: None,
                idempotency_key: None,
            },
        )
        .await?;
        let url = format!("ws://{b_addr}/proxy/ws?token={}", bought.token);
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
        ws.send(Message::text("hi")).await?;
        ws.next()
            .await
            .ok_or_else(|| anyhow::anyhow!("closed early"))??;
        let started = Instant::now();
        revoke(&a, user.id, false, bought.row.id, &meta).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next()).await? {
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => continue,
                Some(Err(e)) => anyhow::bail!("socket failed: {e}"),
            }
        }
        times.push(started.elapsed().as_micros() as u64);
    }
    times.sort_unstable();
    let pct =
        |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)] as f64 / 1000.0;
    println!(
        "rounds={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        times.len(),
        pct(0.5),
        pct(0.99),
        *times.last().unwrap_or(&0) as f64 / 1000.0
    );
    let _ = std::fs::remove_dir_all(&data);
    std::process::exit(0);
}
