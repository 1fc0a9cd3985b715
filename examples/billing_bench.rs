//! Load client for billing against a local Stripe (the `tessera-fakes` Stripe, started in
//! this process on FAKE_PORT, which the server was told with `STRIPE_API_BASE`).
//!
//!   cargo run --release --example billing_bench -- BASE_URL FAKE_PORT WEBHOOK_SECRET ADMIN_EMAIL
//!
//! bench/billing.sh starts the server with the settings this needs. Figures, one
//! `key=value` line each:
//! 1. `startCheckout` latency against the fake's own: ROUNDS Checkout Sessions created
//!    directly at the fake (the same three calls' worth of work is one call there) and
//!    ROUNDS `startCheckout` mutations; p50/p99 of each and the p99 difference.
//! 2. Webhook received → applied → `subscriptionChanged` at a subscriber: a subscribed user
//!    renews ROUNDS times at the fake (which signs and posts the events); the time from the
//!    renewal to the WebSocket message that shows the new period.
//! 3. Verified webhooks per second, duplicates included: WEBHOOKS signed posts from 32
//!    concurrent clients, half new events (stored) and half repeats (duplicates).

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt, future::join_all};
use serde_json::{Value, json};
use tessera_fakes::stripe::StripeFake;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

const PASSWORD: &str = "plum-orbit-cascade-91";

async fn gql(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> anyhow::Result<Value> {
    let body: Value = http
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(body["errors"].is_null(), "GraphQL error: {body}");
    Ok(body["data"].clone())
}

async fn register(http: &reqwest::Client, base: &str, email: &str) -> anyhow::Result<String> {
    let body: Value = http
        .post(format!("{base}/graphql"))
        .json(&json!({
            "query": "mutation($input: RegisterInput!) { register(input: $input) { accessToken } }",
            "variables": { "input": { "email": email, "username": email.split('@').next(), "password": PASSWORD } }
        }))
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(body["errors"].is_null(), "register failed: {body}");
    Ok(body["data"]["register"]["accessToken"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    ms(sorted[i])
}

async fn next_text<S>(ws: &mut S) -> anyhow::Result<Value>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))??;
        if let Message::Text(t) = msg {
            return Ok(serde_json::from_str(&t)?);
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        args.len() >= 4,
        "usage: billing_bench BASE_URL FAKE_PORT WEBHOOK_SECRET ADMIN_EMAIL"
    );
    let (base, fake_port, secret, admin_email) = (&args[0], &args[1], &args[2], &args[3]);
    let rounds: usize = std::env::var("BILLING_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let webhooks: usize = std::env::var("BILLING_WEBHOOKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let fake = StripeFake::start(&format!("127.0.0.1:{fake_port}")).await?;
    fake.set_webhook(&format!("{base}/webhooks/stripe"), &[secret.as_str()]);
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()?;

    let admin = register(&http, base, admin_email).await?;
    let plan = gql(
        &http,
        base,
        &admin,
        "mutation($i: PlanInput!) { createPlan(input: $i) { id stripePriceId } }",
        json!({ "i": { "name": "Bench", "tier": 1, "priceCents": 1000, "coinAllowance": 100 } }),
    )
    .await?;
    let plan_id = plan["createPlan"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let price = plan["createPlan"]["stripePriceId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // 1. startCheckout against the fake's own latency.
    let user = register(&http, base, "bench-buyer@example.com").await?;
    let mut ours = Vec::with_capacity(rounds);
    let mut first_session = String::new();
    for _ in 0..rounds {
        let started = Instant::now();
        let data = gql(
            &http,
            base,
            &user,
            "mutation($p: ID!) { startCheckout(planId: $p) { id url } }",
            json!({ "p": plan_id }),
        )
        .await?;
        ours.push(started.elapsed());
        if first_session.is_empty() {
            first_session = data["startCheckout"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
        }
    }
    let customer = fake_customer(&http, &fake, &first_session).await?;
    let mut theirs = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let form = format!(
            "mode=subscription&customer={customer}&client_reference_id=bench&line_items[0][price]={price}&line_items[0][quantity]=1&success_url=http%3A%2F%2F127.0.0.1%2Fok&cancel_url=http%3A%2F%2F127.0.0.1%2Fno"
        );
        let started = Instant::now();
        let r = http
            .post(format!("{}v1/checkout/sessions", fake.base_url()))
            .bearer_auth("sk_test_bench")
            .header("Idempotency-Key", format!("bench-direct-{i}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "fake refused: {}", r.text().await?);
        r.bytes().await?;
        theirs.push(started.elapsed());
    }
    ours.sort();
    theirs.sort();
    println!("checkout_rounds={rounds}");
    println!("start_checkout_p50_ms={:.2}", percentile(&ours, 0.5));
    println!("start_checkout_p99_ms={:.2}", percentile(&ours, 0.99));
    println!("fake_checkout_p50_ms={:.2}", percentile(&theirs, 0.5));
    println!("fake_checkout_p99_ms={:.2}", percentile(&theirs, 0.99));
    println!(
        "start_checkout_p99_over_fake_ms={:.2}",
        percentile(&ours, 0.99) - percentile(&theirs, 0.99)
    );

    // 2. Webhook → applied → subscriptionChanged.
    let sub = fake
        .complete_checkout(&first_session)
        .await
        .map_err(anyhow::Error::msg)?;
    let ws_url = format!("{}/graphql/ws", base.replacen("http", "ws", 1));
    let mut request = ws_url.into_client_request()?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
    ws.send(Message::text(
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {user}")}})
            .to_string(),
    ))
    .await?;
    let ack = next_text(&mut ws).await?;
    anyhow::ensure!(ack["type"] == "connection_ack", "not acknowledged: {ack}");
    ws.send(Message::text(json!({"id": "1", "type": "subscribe", "payload": {"query": "subscription { subscriptionChanged { currentPeriodEnd status } }"}}).to_string())).await?;
    // Let the checkout's own events settle before timing anything.
    tokio::time::sleep(Duration::from_secs(2)).await;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_millis(200), ws.next()).await {}
    let mut pushed = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        fake.renew(&sub).await.map_err(anyhow::Error::msg)?;
        let want = fake
            .subscription(&sub)
            .map(|s| {
                s["items"]["data"][0]["current_period_end"]
                    .as_i64()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        loop {
            let msg = next_text(&mut ws).await?;
            let end = msg["payload"]["data"]["subscriptionChanged"]["currentPeriodEnd"]
                .as_str()
                .unwrap_or("");
            let end = chrono::DateTime::parse_from_rfc3339(end)
                .map(|d| d.timestamp())
                .unwrap_or(0);
            if end == want {
                pushed.push(started.elapsed());
                break;
            }
        }
        // The renewal's invoice events follow; let them land before the next round.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pushed.sort();
    println!("webhook_to_subscriber_rounds={rounds}");
    println!(
        "webhook_to_subscriber_p50_ms={:.2}",
        percentile(&pushed, 0.5)
    );
    println!(
        "webhook_to_subscriber_p99_ms={:.2}",
        percentile(&pushed, 0.99)
    );

    // 3. Verified webhooks per second, half of them duplicates.
    let now = chrono::Utc::now().timestamp();
    let bodies: Vec<(String, String)> = (0..webhooks / 2)
        .map(|i| {
            let body = json!({
                "id": format!("evt_bench_{i}"), "object": "event", "api_version": tessera_fakes::stripe::API_VERSION,
                "created": now, "livemode": false, "pending_webhooks": 1, "type": "customer.created",
                "data": { "object": { "id": format!("cus_bench_{i}"), "object": "customer", "created": now, "livemode": false, "metadata": {} } }
            })
            .to_string();
            let header = fake.sign(&body, now);
            (body, header)
        })
        .collect();
    let url = format!("{base}/webhooks/stripe");
    let started = Instant::now();
    let per = bodies.len().div_ceil(32);
    let results = join_all(bodies.chunks(per).map(|chunk| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let mut ok = 0usize;
            // Each event twice: stored, then a duplicate.
            for (body, header) in chunk.iter().flat_map(|e| [e, e]) {
                let r = http
                    .post(&url)
                    .header("stripe-signature", header)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                if r.status().is_success() {
                    ok += 1;
                }
                r.bytes().await?;
            }
            anyhow::Ok(ok)
        }
    }))
    .await;
    let elapsed = started.elapsed();
    let ok: usize = results.into_iter().map(|r| r.unwrap_or(0)).sum();
    println!("webhooks_sent={}", bodies.len() * 2);
    println!("webhooks_accepted={ok}");
    println!("webhooks_per_s={:.0}", ok as f64 / elapsed.as_secs_f64());
    Ok(())
}

/// The customer of a Checkout Session the server created.
async fn fake_customer(
    http: &reqwest::Client,
    fake: &StripeFake,
    session: &str,
) -> anyhow::Result<String> {
    let s: Value = http
        .get(format!("{}v1/checkout/sessions/{session}", fake.base_url()))
        .bearer_auth("sk_test_bench")
        .send()
        .await?
        .json()
        .await?;
    Ok(s["customer"].as_str().unwrap_or_default().to_owned())
}
