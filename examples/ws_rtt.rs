//! WebSocket echo round trips, for comparing a direct connection with one through the
//! access proxy:
//!
//!   cargo run --release --example ws_rtt -- ws://127.0.0.1:18191/ws [MESSAGES]
//!   cargo run --release --example ws_rtt -- 'ws://127.0.0.1:18192/proxy/ws?token=…' [MESSAGES]
//!
//! Sends MESSAGES (default 5000) 64-byte text messages one after another, each after the
//! previous echo, and prints `messages=… p50_us=… p99_us=…`.

use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: ws_rtt URL [MESSAGES]"))?;
    let messages: usize = args.next().map_or(Ok(5000), |n| n.parse())?;
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    let payload = "x".repeat(64);
    // Warm up.
    for _ in 0..100 {
        ws.send(Message::text(payload.clone())).await?;
        ws.next().await.ok_or_else(|| anyhow::anyhow!("closed"))??;
    }
    let mut rtts = Vec::with_capacity(messages);
    for _ in 0..messages {
        let started = Instant::now();
        ws.send(Message::text(payload.clone())).await?;
        match ws.next().await {
            Some(Ok(Message::Text(_))) => rtts.push(started.elapsed().as_micros() as u64),
            other => anyhow::bail!("unexpected answer: {other:?}"),
        }
    }
    rtts.sort_unstable();
    let pct = |p: f64| rtts[((rtts.len() as f64 * p) as usize).min(rtts.len() - 1)];
    println!(
        "messages={} p50_us={} p99_us={}",
        rtts.len(),
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}
