//! What checking an access token costs, level by level (in-process, embedded defaults):
//!
//!   cargo run --release --example access_check_bench [-- ITERATIONS]
//!
//! SQLite and the in-process kv by default; `BENCH_DATABASE_URL` (an empty PostgreSQL
//! database) and `BENCH_REDIS_URL` measure those instead.
//!
//! - signature: parsing and verifying the biscuit (Ed25519) with the cache cold;
//! - signature (cached): the same token again, found by SHA-256;
//! - authorize: the token's checks against one request's facts (Datalog);
//! - revocation (memory / kv / database): `check_active` answered by each level.

use std::time::{Duration, Instant, SystemTime};

use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use tessera::{
    Application, Config,
    access::{
        entity::access_token,
        service::check_active,
        tokens::{AccessKeys, RequestFacts},
    },
    identity::{Role, service::verified_user},
};
use uuid::Uuid;

fn per_call(total: Duration, n: u32) -> f64 {
    total.as_secs_f64() * 1e6 / f64::from(n)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: u32 = std::env::args().nth(1).map_or(Ok(20_000), |s| s.parse())?;
    let dir = tempfile_dir()?;
    let database = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}/bench.db?mode=rwc", dir.display()));
    let mut args = vec![
        "--database-url".to_owned(),
        database,
        "--data-dir".to_owned(),
        dir.join("data").display().to_string(),
        "--kv-prefix".to_owned(),
        format!("bench:{}:", Uuid::new_v4().simple()),
    ];
    if let Ok(redis) = std::env::var("BENCH_REDIS_URL") {
        args.extend(["--redis-url".to_owned(), redis]);
    }
    let config = Config::from_args(args)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app = Application::build(config, listener).await?;
    let state = app.state().clone();
    let keys: &AccessKeys = &state.access.keys;

    let user = verified_user("bench@example.com", "bench".into(), Role::User, None)
        .insert(state.db.conn())
        .await?;
    let token_id = Uuid::now_v7();
    let expires = SystemTime::now() + Duration::from_secs(3600);
    let (token, revocation) = keys.mint(token_id, user.id, expires)?;
    access_token::ActiveModel {
        id: Set(token_id),
        user_id: Set(user.id),
        name: Set(None),
        duration_hours: Set(1),
        price: Set(0),
        transfer_id: Set(None),
        revocation_id: Set(revocation),
        key_id: Set(1),
        idempotency_key: Set(None),
        request_hash: Set(None),
        expires_at: Set(expires.into()),
        revoked_at: Set(None),
        last_used_at: Set(None),
        created_at: Set(chrono::Utc::now()),
    }
    .insert(state.db.conn())
    .await?;

    // Cold signature checks: each iteration forgets the cache first.
    let cold_n = n.min(2000);
    let started = Instant::now();
    for _ in 0..cold_n {
        keys.forget();
        keys.verify(&token).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    println!(
        "signature            {:>8.2} µs",
        per_call(started.elapsed(), cold_n)
    );

    let started = Instant::now();
    for _ in 0..n {
        keys.verify(&token).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    println!(
        "signature (cached)   {:>8.2} µs",
        per_call(started.elapsed(), n)
    );

    let verified = keys.verify(&token).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let facts = RequestFacts {
        method: "GET",
        path: "/reports/q3",
        protocol: "http",
        host: "example.com",
    };
    let started = Instant::now();
    for _ in 0..n {
        keys.authorize(&verified, &facts)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    println!(
        "authorize            {:>8.2} µs",
        per_call(started.elapsed(), n)
    );

    // Database: the kv entry and memory are cleared before each call.
    let db_n = n.min(2000);
    let kv_key = format!("access:tok:{token_id}");
    let mut db_total = Duration::ZERO;
    let mut kv_total = Duration::ZERO;
    for _ in 0..db_n {
        state.kv.delete(&kv_key).await?;
        state.access.forget_revocation_memory();
        let started = Instant::now();
        check_active(&state, token_id)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        db_total += started.elapsed();
        // Now kv holds it: clear only memory.
        state.access.forget_revocation_memory();
        let started = Instant::now();
        check_active(&state, token_id)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        kv_total += started.elapsed();
    }
    let started = Instant::now();
    for _ in 0..n {
        check_active(&state, token_id)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    println!(
        "revocation (memory)  {:>8.2} µs",
        per_call(started.elapsed(), n)
    );
    println!(
        "revocation (kv, {})  {:>8.2} µs",
        state.kv.backend(),
        per_call(kv_total, db_n)
    );
    println!(
        "revocation (database, {}) {:>8.2} µs",
        state.db.backend().as_str(),
        per_call(db_total, db_n)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("tessera-check-bench-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
