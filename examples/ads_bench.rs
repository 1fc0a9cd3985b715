//! Load client for rewarded ads: prepare → complete pairs (Monetag) and verified Google SSV
//! callbacks, from CLIENTS concurrent clients, each with its own account.
//!
//!   cargo run --release --example ads_bench -- BASE_URL KEYS_PORT [CLIENTS] [PER_CLIENT]
//!
//! The server must run with `ADS_SSV_KEYS_URL=http://127.0.0.1:KEYS_PORT/admob/reward/verifier-keys.json`
//! (this client serves Google's key file there and signs callbacks with it), Monetag and GMA
//! configured, `REQUIRED_DURATION=1`, `MIN_INTERVAL=0`, caps and rate limits out of the way
//! (bench/ads.sh sets all of it).
//!
//! Each client has its own account, User-Agent and address (`X-Forwarded-For`, which the
//! server believes from loopback with `TRUSTED_PROXIES=127.0.0.1/32`), as real viewers do:
//! one shared device would make every credit wait on that device's counter row.
//!
//! Phases: (1) saturation: every client prepares PER_CLIENT Monetag tickets, all wait the
//! required second, every client completes its tickets; pairs per second = pairs /
//! (prepare time + complete time), so the wait is not counted. (2) Steady load: ADS_RATE
//! pairs per second in all (default 500) for ADS_STEADY_SECONDS (10), each client preparing
//! one ad and completing one prepared a second earlier per tick; the latency of each call at
//! that rate. (3) Each client prepares PER_CLIENT GMA nonces and Google "calls back" for
//! each (fresh credits), then (4) the same callbacks again (verified, found duplicate).
//! Last, the cost of one ECDSA P-256 verification in this process. Prints one
//! `key=value` line per figure.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey, signature::Signer, signature::Verifier};
use serde_json::{Value, json};
use tessera_fakes::ads::{GoogleSsv, google_params};

const PASSWORD: &str = "plum-orbit-cascade-91";
const PREPARE: &str =
    "mutation($i: PrepareAdRewardInput!) { prepareAdReward(input: $i) { nonce ticket } }";
const COMPLETE: &str =
    "mutation($i: CompleteAdRewardInput!) { completeAdReward(input: $i) { status credited } }";

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    user: String,
    /// This client's device and address (the server trusts X-Forwarded-For from loopback).
    agent: String,
    address: String,
}

impl Client {
    async fn gql(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let body: Value = self
            .http
            .post(format!("{}/graphql", self.base))
            .bearer_auth(&self.token)
            .header("user-agent", &self.agent)
            .header("x-forwarded-for", &self.address)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(body["errors"].is_null(), "GraphQL error: {body}");
        Ok(body["data"].clone())
    }

    async fn prepare(&self, provider: &str) -> anyhow::Result<(String, String)> {
        let data = self
            .gql(
                PREPARE,
                json!({"i": {"provider": provider, "placement": "earn"}}),
            )
            .await?;
        let t = &data["prepareAdReward"];
        Ok((
            t["nonce"].as_str().unwrap_or_default().to_owned(),
            t["ticket"].as_str().unwrap_or_default().to_owned(),
        ))
    }
}

async fn register(http: &reqwest::Client, base: &str, i: usize) -> anyhow::Result<Client> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let body: Value = http
        .post(format!("{base}/graphql"))
        .json(&json!({
            "query": "mutation($input: RegisterInput!) { register(input: $input) { user { id } accessToken } }",
            "variables": {"input": {
                "email": format!("ads-{i}-{}@example.com", &run[..8]),
                "username": format!("ads{i}x{}", &run[..8]),
                "password": PASSWORD,
            }},
        }))
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(body["errors"].is_null(), "register failed: {body}");
    let r = &body["data"]["register"];
    Ok(Client {
        http: http.clone(),
        base: base.to_owned(),
        token: r["accessToken"].as_str().unwrap_or_default().to_owned(),
        user: r["user"]["id"].as_str().unwrap_or_default().to_owned(),
        agent: format!("AdsBench/1.0 (client {i})"),
        address: format!("10.{}.{}.7", i / 250, i % 250),
    })
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn report(name: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "{name}_p50_ms={:.2} {name}_p99_ms={:.2} {name}_max_ms={:.2}",
        percentile(&times, 0.50),
        percentile(&times, 0.99),
        percentile(&times, 1.0)
    );
}

/// Runs `per` timed calls of `f` on every client at once: (wall time, each call's time).
async fn phase<F, Fut, T>(clients: &[Client], per: usize, f: F) -> (Duration, Vec<Duration>, Vec<T>)
where
    F: Fn(Client, usize) -> Fut + Clone,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let started = Instant::now();
    let runs = join_all(clients.iter().cloned().map(|c| {
        let f = f.clone();
        async move {
            let mut times = Vec::with_capacity(per);
            let mut out = Vec::with_capacity(per);
            for i in 0..per {
                let t = Instant::now();
                out.push(f(c.clone(), i).await.expect("call failed"));
                times.push(t.elapsed());
            }
            (times, out)
        }
    }))
    .await;
    let wall = started.elapsed();
    let mut times = Vec::new();
    let mut out = Vec::new();
    for (t, o) in runs {
        times.extend(t);
        out.extend(o);
    }
    (wall, times, out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let base = args
        .first()
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:18400".into());
    let keys_port: u16 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(18401);
    let clients_n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(16);
    let per: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(200);
    let google = GoogleSsv::start(&format!("127.0.0.1:{keys_port}")).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients_n * 2)
        .build()?;
    let clients = join_all((0..clients_n).map(|i| register(&http, &base, i)))
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;

    // Monetag: prepare, wait the required second, complete.
    let (prep_wall, prep_times, tickets) =
        phase(
            &clients,
            per,
            |c, _| async move { c.prepare("MONETAG").await },
        )
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let tickets = std::sync::Arc::new(tickets);
    let (comp_wall, comp_times, outcomes) = {
        let tickets = std::sync::Arc::clone(&tickets);
        let index: std::collections::HashMap<String, usize> = clients
            .iter()
            .enumerate()
            .map(|(i, c)| (c.user.clone(), i))
            .collect();
        let index = std::sync::Arc::new(index);
        phase(&clients, per, move |c, i| {
            let tickets = std::sync::Arc::clone(&tickets);
            let index = std::sync::Arc::clone(&index);
            async move {
                let ticket = &tickets[index[&c.user] * per + i].1;
                let data = c
                    .gql(
                        COMPLETE,
                        json!({"i": {"ticket": ticket, "durationSec": 31}}),
                    )
                    .await?;
                Ok(data["completeAdReward"]["status"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned())
            }
        })
        .await
    };
    let pairs = clients_n * per;
    let credited = outcomes.iter().filter(|o| *o == "CREDITED").count();
    println!(
        "clients={clients_n} pairs={pairs} credited={credited} pairs_per_s={:.0} prepare_per_s={:.0} complete_per_s={:.0}",
        pairs as f64 / (prep_wall + comp_wall).as_secs_f64(),
        pairs as f64 / prep_wall.as_secs_f64(),
        pairs as f64 / comp_wall.as_secs_f64(),
    );
    report("prepare", prep_times);
    report("complete", comp_times);

    // Steady load: every client prepares one ad and completes one prepared over a second
    // ago per tick, at RATE pairs per second in all, for STEADY_SECONDS.
    let rate: f64 = std::env::var("ADS_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(500.0);
    let seconds: u64 = std::env::var("ADS_STEADY_SECONDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    let interval = Duration::from_secs_f64(clients_n as f64 / rate);
    let started = Instant::now();
    let runs = join_all(
        clients
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, c)| async move {
                let mut prep = Vec::new();
                let mut comp = Vec::new();
                let mut queue: std::collections::VecDeque<(String, Instant)> = Default::default();
                // Spread the clients' ticks over one interval.
                tokio::time::sleep(interval.mul_f64(i as f64 / clients_n as f64)).await;
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let end = Instant::now() + Duration::from_secs(seconds);
                let mut done = 0usize;
                while Instant::now() < end {
                    tick.tick().await;
                    let t = Instant::now();
                    let (_, ticket) = c.prepare("MONETAG").await.expect("prepare");
                    prep.push(t.elapsed());
                    queue.push_back((ticket, Instant::now()));
                    if queue
                        .front()
                        .is_some_and(|(_, at)| at.elapsed() >= Duration::from_millis(1050))
                    {
                        let (ticket, _) = queue.pop_front().expect("front");
                        let t = Instant::now();
                        let data = c
                            .gql(
                                COMPLETE,
                                json!({"i": {"ticket": ticket, "durationSec": 31}}),
                            )
                            .await
                            .expect("complete");
                        comp.push(t.elapsed());
                        if data["completeAdReward"]["status"] == "CREDITED" {
                            done += 1;
                        }
                    }
                }
                (prep, comp, done)
            }),
    )
    .await;
    let wall = started.elapsed().as_secs_f64();
    let (mut prep, mut comp, mut done) = (Vec::new(), Vec::new(), 0);
    for (p, c, d) in runs {
        prep.extend(p);
        comp.extend(c);
        done += d;
    }
    println!(
        "steady_target_pairs_per_s={rate:.0} steady_prepares_per_s={:.0} steady_credits_per_s={:.0}",
        prep.len() as f64 / wall,
        done as f64 / wall
    );
    report("steady_prepare", std::mem::take(&mut prep));
    report("steady_complete", std::mem::take(&mut comp));

    // Google SSV: nonces first, then the callbacks.
    let (_, _, nonces) = phase(&clients, per, |c, _| async move {
        let (nonce, _) = c.prepare("GMA").await?;
        Ok((c.user.clone(), nonce))
    })
    .await;
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
            .to_string()
    };
    let queries: Vec<String> = nonces
        .iter()
        .enumerate()
        .map(|(i, (user, nonce))| {
            google.callback(&google_params(
                nonce,
                user,
                &format!("bench-{i}-{nonce}"),
                &now_ms(),
            ))
        })
        .collect();
    // Warm the server's key cache.
    let warm: Value = http
        .get(format!("{base}/ads/ssv?{}", queries[0]))
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(warm["credited"] == 5, "first callback: {warm}");
    let queries = std::sync::Arc::new(queries);
    let index: std::collections::HashMap<String, usize> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| (c.user.clone(), i))
        .collect();
    let index = std::sync::Arc::new(index);
    let (replay_queries, replay_index) = (
        std::sync::Arc::clone(&queries),
        std::sync::Arc::clone(&index),
    );
    let (ssv_wall, ssv_times, ssv_out) = phase(&clients, per, move |c, i| {
        let queries = std::sync::Arc::clone(&queries);
        let index = std::sync::Arc::clone(&index);
        async move {
            let q = &queries[index[&c.user] * per + i];
            let r = c.http.get(format!("{}/ads/ssv?{q}", c.base)).send().await?;
            let status = r.status().as_u16();
            let body: Value = r.json().await?;
            Ok((status, body["credited"].as_i64().unwrap_or(0)))
        }
    })
    .await;
    let ok = ssv_out.iter().filter(|(s, _)| *s == 200).count();
    let credited: i64 = ssv_out.iter().map(|(_, c)| c).sum();
    println!(
        "ssv_callbacks={} ssv_ok={ok} ssv_coins={credited} ssv_per_s={:.0} key_fetches={}",
        ssv_out.len(),
        ssv_out.len() as f64 / ssv_wall.as_secs_f64(),
        google.fetches()
    );
    report("ssv", ssv_times);

    // The same callbacks again: each is verified and found credited (a replay).
    let (replay_wall, replay_times, replay_out) = phase(&clients, per, move |c, i| {
        let queries = std::sync::Arc::clone(&replay_queries);
        let index = std::sync::Arc::clone(&replay_index);
        async move {
            let q = &queries[index[&c.user] * per + i];
            let r = c.http.get(format!("{}/ads/ssv?{q}", c.base)).send().await?;
            let body: Value = r.json().await?;
            Ok(body["duplicate"] == true)
        }
    })
    .await;
    println!(
        "ssv_replays={} ssv_replays_duplicate={} ssv_replays_per_s={:.0}",
        replay_out.len(),
        replay_out.iter().filter(|d| **d).count(),
        replay_out.len() as f64 / replay_wall.as_secs_f64()
    );
    report("ssv_replay", replay_times);

    // One ECDSA P-256 / SHA-256 verification, in this process: the server's (ring), and
    // the pure-Rust p256 crate's for comparison.
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let message = queries_sample();
    let sig: Signature = key.sign(message.as_bytes());
    let der = sig.to_der();
    let encoded = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        der.as_bytes(),
    );
    let verifying: VerifyingKey = *key.verifying_key();
    let rounds = 2000;
    let started = Instant::now();
    for _ in 0..rounds {
        anyhow::ensure!(tessera::ads::ssv::verify_ecdsa(
            &verifying,
            message.as_bytes(),
            &encoded
        ));
    }
    let ring_us = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    let started = Instant::now();
    for _ in 0..rounds {
        verifying.verify(message.as_bytes(), &sig)?;
    }
    println!(
        "ecdsa_verify_us={ring_us:.1} p256_crate_verify_us={:.1}",
        started.elapsed().as_secs_f64() * 1e6 / rounds as f64
    );
    Ok(())
}

/// A callback's signed content of typical length.
fn queries_sample() -> String {
    "ad_network=5450213213286189855&ad_unit=1234567890&custom_data=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MDEy&reward_amount=5&reward_item=coins&timestamp=1764120000000&transaction_id=123456789&user_id=0196b6f2-0000-7000-8000-000000000000".to_owned()
}
