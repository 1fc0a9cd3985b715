//! Redis goes away and comes back: /ready says so, everything else keeps serving, and the
//! kv store reconnects on its own (commands and pub/sub alike).

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tessera::platform::kv::Delivery;

use crate::helpers::{TestApp, redis_proxy, wait_ready_status};

#[tokio::test]
async fn ready_fails_while_redis_is_down_and_recovers() {
    let Some(mut proxy) = redis_proxy().await else {
        return;
    };
    let app = TestApp::builder()
        .redis_url(format!("redis://{}", proxy.addr))
        .configure(|c| c.kv_command_timeout = "500ms".parse().unwrap())
        .spawn()
        .await;
    wait_ready_status(&app, 200, Duration::from_secs(5)).await;
    let mut sub = app.state.kv.subscribe("outage").await.unwrap();

    proxy.cut();
    let body = wait_ready_status(&app, 503, Duration::from_secs(10)).await;
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["checks"]["kv"]["status"], "down", "{body}");
    assert_eq!(body["checks"]["database"]["status"], "up", "{body}");

    // The server stays up and serves what needs no kv.
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let answer = app.graphql("{ serverInfo { version } }", json!({})).await;
    assert!(answer["errors"].is_null(), "{answer}");
    // kv calls fail fast with an error instead of hanging.
    let started = std::time::Instant::now();
    assert!(app.state.kv.get("anything").await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );

    proxy.restore().await;
    wait_ready_status(&app, 200, Duration::from_secs(15)).await;
    app.state.kv.set("back", b"1", None).await.unwrap();
    assert_eq!(app.state.kv.get("back").await.unwrap(), Some(b"1".to_vec()));

    // The subscriber was told it may have missed messages, and is subscribed again.
    let mut saw_gap = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        app.state
            .kv
            .publish("outage", b"hello again")
            .await
            .unwrap();
        match tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
            Ok(Some(Delivery::Gap)) => saw_gap = true,
            Ok(Some(Delivery::Message(m))) => {
                assert_eq!(m, b"hello again");
                break;
            }
            Ok(None) => panic!("the subscription ended"),
            Err(_) => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message after the reconnect"
        );
    }
    assert!(saw_gap, "a reconnect must be reported as a gap");
}
