//! Load client for VPS progress streams: many `vpsSessionProgress` subscribers, a worker
//! driving events, and the delivery latency from the worker's request to each receipt.
//!
//!   cargo run --release --example vps_progress_bench -- BASE_URL SERVER_PID \
//!       [SUBSCRIBERS] [SESSIONS] [EVENTS_PER_SECOND] [SECONDS]
//!
//! The server must have `ADMIN_EMAILS=bench-admin@example.com`, room for SESSIONS live
//! sessions per user (`VPS_MAX_LIVE_SESSIONS`) and no embedded worker. Setup: an admin, a
//! free product, a worker, one user with SESSIONS sessions claimed by the worker (so they
//! are provisioning). Then SUBSCRIBERS WebSocket connections (graphql-transport-ws), one
//! subscription each, spread over the sessions; the server's RSS is read before and after
//! (`/proc/SERVER_PID/status`) and once they are idle (`VPS_PER_CONNECTION=k` puts k
//! subscriptions on each WebSocket; `VPS_CONNECT_ONLY=1` opens connections only). Then the worker posts
//! EVENTS_PER_SECOND step reports (a progress message on a running step) for SECONDS, over
//! the signed HTTP protocol, round-robin over the sessions; every subscriber of that session
//! receives each. Prints one `key=value` line per figure.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt, stream};
use serde_json::{Value, json};
use tessera::{config::Secret, vps::worker::WorkerClient};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

const ADMIN: &str = "bench-admin@example.com";
const PASSWORD: &str = "plum-orbit-cascade-91";
const PROGRESS: &str = "subscription($id: ID!) { vpsSessionProgress(sessionId: $id) { seq changedSteps { message } } }";

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn gql(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .post(format!("{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let body: Value = request.send().await?.json().await?;
        anyhow::ensure!(body["errors"].is_null(), "GraphQL error: {body}");
        Ok(body["data"].clone())
    }

    async fn register(&self, email: &str, username: &str) -> anyhow::Result<(String, String)> {
        let data = self
            .gql(
                None,
                "mutation($i: RegisterInput!) { register(input: $i) { accessToken user { id } } }",
                json!({ "i": { "email": email, "password": PASSWORD, "username": username } }),
            )
            .await?;
        Ok((
            data["register"]["accessToken"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            data["register"]["user"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ))
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text message, or why there is none.
async fn next_text(ws: &mut Ws, i: usize) -> anyhow::Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
            Some(Ok(Message::Close(frame))) => anyhow::bail!("subscription {i} closed: {frame:?}"),
            Some(Ok(_)) => {}
            other => anyhow::bail!("subscription {i} failed: {other:?}"),
        }
    }
}

/// When each progress message was sent, by its text.
type Sent = Arc<Mutex<HashMap<String, Instant>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        args.len() >= 2,
        "usage: vps_progress_bench BASE_URL SERVER_PID [SUBSCRIBERS] [SESSIONS] [EVENTS_PER_SECOND] [SECONDS]"
    );
    let base = args[0].trim_end_matches('/').to_owned();
    let pid: u32 = args[1].parse()?;
    let subscribers: usize = args.get(2).map_or(Ok(1000), |v| v.parse())?;
    let sessions: usize = args.get(3).map_or(Ok(100), |v| v.parse())?;
    let rate: u64 = args.get(4).map_or(Ok(20), |v| v.parse())?;
    let seconds: u64 = args.get(5).map_or(Ok(20), |v| v.parse())?;
    // `VPS_CONNECT_ONLY=1`: open and acknowledge the connections but subscribe to nothing,
    // to tell the cost of a connection from the cost of a subscription.
    let connect_only = std::env::var("VPS_CONNECT_ONLY").is_ok_and(|v| v == "1");
    // `VPS_PER_CONNECTION=k`: k subscriptions share each WebSocket (default 1).
    let per: usize = std::env::var("VPS_PER_CONNECTION")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|k| *k > 0)
        .unwrap_or(1);
    let connections = subscribers.div_ceil(per);

    let api = Api {
        http: reqwest::Client::new(),
        base: base.clone(),
    };
    let (admin, _) = api.register(ADMIN, "benchadmin").await?;
    let product = api
        .gql(
            Some(&admin),
            "mutation { createVpsProduct(input: { name: \"bench\", vcpu: 1, memoryMb: 1024, diskGb: 10, region: \"local\", pricePerHour: 0 }) { id } }",
            json!({}),
        )
        .await?["createVpsProduct"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let creds = api
        .gql(
            Some(&admin),
            "mutation($c: Int!) { createWorker(input: { name: \"bench\", capacity: $c }) { keyId secret } }",
            json!({ "c": sessions }),
        )
        .await?;
    let worker = WorkerClient::new(
        format!("{base}/").parse()?,
        creds["createWorker"]["keyId"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        Secret::new(creds["createWorker"]["secret"].as_str().unwrap_or_default()),
    )?;
    let beat = worker
        .call(
            reqwest::Method::POST,
            "workers/heartbeat",
            Some(&json!({ "capacity": sessions })),
        )
        .await?;
    anyhow::ensure!(beat.status == 200, "heartbeat refused: {}", beat.body);

    // Keep the worker online for the whole run (starting thousands of sessions takes longer
    // than the heartbeat timeout).
    let beats = {
        let worker = worker.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let _ = worker
                    .call(reqwest::Method::POST, "workers/heartbeat", Some(&json!({})))
                    .await;
            }
        })
    };
    let (user, _) = api.register("bench-user@example.com", "benchuser").await?;
    let mut ids = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        let data = api
            .gql(
                Some(&user),
                "mutation($p: ID!) { startVpsSession(input: { productId: $p, hours: 1 }) { id } }",
                json!({ "p": product }),
            )
            .await?;
        ids.push(
            data["startVpsSession"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    let mut claimed = 0;
    while claimed < sessions {
        let jobs = worker
            .call(reqwest::Method::GET, "workers/jobs?wait=5", None)
            .await?;
        claimed += jobs.body["jobs"].as_array().map_or(0, Vec::len);
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib(pid);
    let sent: Sent = Arc::default();
    let received = Arc::new(AtomicU64::new(0));
    let latencies: Arc<Mutex<Vec<u32>>> = Arc::default();
    let ws_url = format!("{}/graphql/ws", base.replacen("http", "ws", 1));
    let opened = Instant::now();
    let readers: Vec<_> = stream::iter(0..connections)
        .map(|i| {
            // Subscriptions c·per … of this connection follow sessions (c·per + j) % SESSIONS.
            let mine: Vec<String> = (i * per..((i + 1) * per).min(subscribers))
                .map(|k| ids[k % sessions].clone())
                .collect();
            let (url, token) = (ws_url.clone(), user.clone());
            async move {
                let mut request = url.into_client_request()?;
                request.headers_mut().insert(
                    "sec-websocket-protocol",
                    HeaderValue::from_static("graphql-transport-ws"),
                );
                let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
                ws.send(Message::text(
                    json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}})
                        .to_string(),
                ))
                .await?;
                // The ack first (subscribing before it is a protocol error), then the
                // snapshot: subscribed.
                let ack = next_text(&mut ws, i).await?;
                anyhow::ensure!(ack.contains("connection_ack"), "not acknowledged: {ack}");
                if connect_only {
                    return anyhow::Ok(ws);
                }
                for (j, id) in mine.iter().enumerate() {
                    ws.send(Message::text(
                        json!({"id": j.to_string(), "type": "subscribe", "payload": {"query": PROGRESS, "variables": {"id": id}}})
                            .to_string(),
                    ))
                    .await?;
                }
                for _ in &mine {
                    let snapshot = next_text(&mut ws, i).await?;
                    anyhow::ensure!(snapshot.contains("\"next\""), "no snapshot: {snapshot}");
                }
                anyhow::Ok(ws)
            }
        })
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    let open_ms = opened.elapsed().as_millis();
    let rss_open = rss_kib(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_idle = rss_kib(pid);
    if connect_only {
        println!(
            "connections={connections} open_ms={open_ms} rss_before_kib={rss_before} rss_idle_kib={rss_idle} idle_kib_per_connection={:.1}",
            (rss_idle.saturating_sub(rss_before)) as f64 / connections as f64
        );
        beats.abort();
        return Ok(());
    }

    let mut tasks = Vec::with_capacity(readers.len());
    for mut ws in readers {
        let (sent, received, latencies) = (sent.clone(), received.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(message)) = ws.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let now = Instant::now();
                let Ok(body) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let Some(message) = body["payload"]["data"]["vpsSessionProgress"]["changedSteps"]
                    [0]["message"]
                    .as_str()
                else {
                    continue;
                };
                let at = sent
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(message)
                    .copied();
                if let Some(at) = at {
                    let micros = now.duration_since(at).as_micros() as u32;
                    latencies
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(micros);
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    // The worker: EVENTS_PER_SECOND reports, round-robin over the sessions.
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    let started = Instant::now();
    let mut posted = 0u64;
    let failures = Arc::new(AtomicU64::new(0));
    let mut inflight = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        let session = ids[(posted as usize) % sessions].clone();
        let message = format!("b{posted}");
        let (worker, sent, failures) = (worker.clone(), sent.clone(), failures.clone());
        inflight.push(tokio::spawn(async move {
            let body = json!({ "sessionId": session, "step": "reserve_capacity", "status": "running", "message": message });
            sent.lock().unwrap_or_else(|e| e.into_inner()).insert(message, Instant::now());
            match worker.call(reqwest::Method::POST, "workers/events", Some(&body)).await {
                Ok(answer) if answer.status == 200 => {}
                _ => {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        posted += 1;
    }
    for task in inflight {
        let _ = task.await;
    }
    let driven = started.elapsed();
    // Let the last deliveries land.
    // Subscriber i follows session i % SESSIONS; event k goes to session k % SESSIONS.
    let expected: u64 = (0..sessions)
        .map(|s| {
            let subs = (subscribers / sessions + usize::from(s < subscribers % sessions)) as u64;
            let events =
                posted / sessions as u64 + u64::from((s as u64) < posted % sessions as u64);
            subs * events
        })
        .sum();
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_busy = rss_kib(pid);
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
    beats.abort();

    let mut all = std::mem::take(&mut *latencies.lock().unwrap_or_else(|e| e.into_inner()));
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        f64::from(all[((all.len() as f64 * p) as usize).min(all.len() - 1)]) / 1000.0
    };
    let delivered = received.load(Ordering::Relaxed);
    println!(
        "subscribers={subscribers} connections={connections} sessions={sessions} open_ms={open_ms}"
    );
    println!(
        "rss_before_kib={rss_before} rss_open_kib={rss_open} rss_idle_kib={rss_idle} rss_busy_kib={rss_busy} idle_kib_per_subscription={:.1}",
        (rss_idle.saturating_sub(rss_before)) as f64 / subscribers as f64
    );
    println!(
        "events_posted={posted} post_failures={} seconds={:.1} events_per_s={:.1}",
        failures.load(Ordering::Relaxed),
        driven.as_secs_f64(),
        posted as f64 / driven.as_secs_f64()
    );
    println!(
        "deliveries={delivered} expected={expected} deliveries_per_s={:.0}",
        delivered as f64 / driven.as_secs_f64()
    );
    println!(
        "latency_ms p50={:.2} p99={:.2} max={:.2}",
        pct(0.50),
        pct(0.99),
        all.last().map_or(0.0, |v| f64::from(*v) / 1000.0)
    );
    Ok(())
}
