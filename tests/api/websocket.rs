use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::helpers::{TestApp, ws_close_code, ws_next, ws_send};

#[tokio::test]
async fn graphql_transport_ws_runs_an_operation() {
    let app = TestApp::spawn().await;
    let mut ws = app.ws_connect("graphql-transport-ws", None).await.unwrap();
    ws_send(&mut ws, json!({"type": "connection_init", "payload": {}})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "connection_ack");

    ws_send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "pong");

    ws_send(
        &mut ws,
        json!({"id": "1", "type": "subscribe", "payload": {"query": "{ serverInfo { version } }"}}),
    )
    .await;
    let next = ws_next(&mut ws).await;
    assert_eq!(next["type"], "next");
    assert_eq!(next["id"], "1");
    assert_eq!(
        next["payload"]["data"]["serverInfo"]["version"],
        env!("CARGO_PKG_VERSION")
    );
    let complete = ws_next(&mut ws).await;
    assert_eq!(complete, json!({"type": "complete", "id": "1"}));

    // The id is free again once completed.
    ws_send(
        &mut ws,
        json!({"id": "1", "type": "subscribe", "payload": {"query": "{ serverInfo { kvBackend } }"}}),
    )
    .await;
    assert_eq!(ws_next(&mut ws).await["type"], "next");
}

#[tokio::test]
async fn legacy_graphql_ws_runs_an_operation() {
    let app = TestApp::spawn().await;
    let mut ws = app.ws_connect("graphql-ws", None).await.unwrap();
    ws_send(&mut ws, json!({"type": "connection_init"})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "connection_ack");
    ws_send(
        &mut ws,
        json!({"id": "a", "type": "start", "payload": {"query": "{ serverInfo { databaseBackend } }"}}),
    )
    .await;
    let data = ws_next(&mut ws).await;
    assert_eq!(data["type"], "data");
    assert_eq!(
        data["payload"]["data"]["serverInfo"]["databaseBackend"],
        app.state.db.backend().as_str()
    );
    assert_eq!(ws_next(&mut ws).await["type"], "complete");
}

#[tokio::test]
async fn a_bad_message_closes_with_4400() {
    let app = TestApp::spawn().await;
    for (protocol, frame) in [
        ("graphql-transport-ws", "this is not json"),
        ("graphql-transport-ws", r#"{"type": "launch_missiles"}"#),
        ("graphql-ws", r#"{"id": 1, "type": "start"}"#),
    ] {
        let mut ws = app.ws_connect(protocol, None).await.unwrap();
        ws.send(Message::text(frame)).await.unwrap();
        let (code, reason) = ws_close_code(&mut ws, Duration::from_secs(5)).await;
        assert_eq!(code, 4400, "{protocol} {frame}: {reason}");
        assert!(reason.contains("Invalid message"));
    }
}

#[tokio::test]
async fn init_must_come_in_time_and_only_once() {
    let app = TestApp::builder()
        .configure(|c| c.graphql_ws_init_timeout = "300ms".parse().unwrap())
        .spawn()
        .await;
    let mut ws = app.ws_connect("graphql-transport-ws", None).await.unwrap();
    let (code, _) = ws_close_code(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, 4408);

    let mut ws = app.ws_connect("graphql-transport-ws", None).await.unwrap();
    ws_send(&mut ws, json!({"type": "connection_init"})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "connection_ack");
    ws_send(&mut ws, json!({"type": "connection_init"})).await;
    let (code, _) = ws_close_code(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, 4429);

    // After the ack, the init timer no longer applies.
    let mut ws = app.ws_connect("graphql-transport-ws", None).await.unwrap();
    ws_send(&mut ws, json!({"type": "connection_init"})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "connection_ack");
    tokio::time::sleep(Duration::from_millis(500)).await;
    ws_send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "pong");
}

#[tokio::test]
async fn subscribe_before_ack_closes_4401_and_duplicate_ids_4409() {
    let app = TestApp::spawn().await;
    let mut ws = app.ws_connect("graphql-transport-ws", None).await.unwrap();
    ws_send(
        &mut ws,
        json!({"id": "1", "type": "subscribe", "payload": {"query": "{ serverInfo { version } }"}}),
    )
    .await;
    let (code, _) = ws_close_code(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, 4401);

    // Two subscribes with one id before the first completes. A query completes at once, so
    // send both in one burst: the second is read before the first's answer goes out.
    let mut ws = app.ws_connect("graphql-transport-ws", None).await.unwrap();
    ws_send(&mut ws, json!({"type": "connection_init"})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "connection_ack");
    let subscribe =
        json!({"id": "x", "type": "subscribe", "payload": {"query": "{ serverInfo { version } }"}});
    ws.feed(Message::text(subscribe.to_string())).await.unwrap();
    ws.feed(Message::text(subscribe.to_string())).await.unwrap();
    ws.flush().await.unwrap();
    let (code, reason) = ws_close_code(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, 4409, "{reason}");
}

#[tokio::test]
async fn a_refused_init_payload_closes_4403() {
    let app = TestApp::spawn().await;
    let mut ws = app.ws_connect("graphql-transport-ws", None).await.unwrap();
    ws_send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"authorization": 42}}),
    )
    .await;
    let (code, reason) = ws_close_code(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, 4403, "{reason}");

    let mut ws = app.ws_connect("graphql-transport-ws", None).await.unwrap();
    ws_send(
        &mut ws,
        json!({"type": "connection_init", "payload": "Bearer x"}),
    )
    .await;
    let (code, _) = ws_close_code(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, 4403);
}

#[tokio::test]
async fn foreign_origins_and_unknown_subprotocols_are_refused() {
    let app = TestApp::spawn().await;
    let err = app
        .ws_connect("graphql-transport-ws", Some("https://evil.example"))
        .await
        .unwrap_err();
    match err {
        tungstenite::Error::Http(response) => assert_eq!(response.status(), 403),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }

    let own = format!("http://127.0.0.1:{}", app.addr.port());
    let mut ws = app
        .ws_connect("graphql-transport-ws", Some(&own))
        .await
        .unwrap();
    ws_send(&mut ws, json!({"type": "connection_init"})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "connection_ack");

    let err = app.ws_connect("mqtt", None).await.unwrap_err();
    match err {
        tungstenite::Error::Http(response) => assert_eq!(response.status(), 400),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn open_connections_are_counted() {
    let app = TestApp::spawn().await;
    let gauge = || async {
        let text = app.metrics().await;
        text.lines()
            .find(|l| l.starts_with("graphql_websocket_connections"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let mut ws = app.ws_connect("graphql-transport-ws", None).await.unwrap();
    ws_send(&mut ws, json!({"type": "connection_init"})).await;
    ws_next(&mut ws).await;
    assert_eq!(gauge().await, 1);
    ws.close(None).await.unwrap();
    drop(ws);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while gauge().await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gauge never went back to 0"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_listening_client_is_pinged_and_stays_and_a_silent_one_is_closed() {
    let app = TestApp::builder()
        .configure(|c| c.graphql_ws_keepalive = "300ms".parse().unwrap())
        .spawn()
        .await;
    // A client that only listens, answering pings as graphql-ws clients do: it stays open
    // for many periods, and is pinged about once a period.
    let mut ws = app.ws_connect("graphql-transport-ws", None).await.unwrap();
    ws_send(&mut ws, json!({"type": "connection_init"})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "connection_ack");
    let started = std::time::Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(2000) {
        let message = ws_next(&mut ws).await;
        assert_eq!(message, json!({"type": "ping"}));
        pings += 1;
        ws_send(&mut ws, json!({"type": "pong"})).await;
    }
    assert!((4..=8).contains(&pings), "{pings} pings in 2 s");
    ws_send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "pong", "still open");

    // One that answers nothing is pinged once, then closed after a second period.
    let mut silent = app.ws_connect("graphql-transport-ws", None).await.unwrap();
    ws_send(&mut silent, json!({"type": "connection_init"})).await;
    assert_eq!(ws_next(&mut silent).await["type"], "connection_ack");
    let started = std::time::Instant::now();
    assert_eq!(ws_next(&mut silent).await, json!({"type": "ping"}));
    let (code, reason) = ws_close_code(&mut silent, Duration::from_secs(5)).await;
    assert_eq!((code, reason.as_str()), (3008, "timeout"));
    let lasted = started.elapsed();
    assert!(
        lasted >= Duration::from_millis(500) && lasted < Duration::from_secs(2),
        "{lasted:?}"
    );

    // The legacy protocol has no pings: its clients are never closed for silence.
    let mut legacy = app.ws_connect("graphql-ws", None).await.unwrap();
    ws_send(&mut legacy, json!({"type": "connection_init"})).await;
    assert_eq!(ws_next(&mut legacy).await["type"], "connection_ack");
    tokio::time::sleep(Duration::from_millis(900)).await;
    ws_send(
        &mut legacy,
        json!({"id": "a", "type": "start", "payload": {"query": "{ serverInfo { version } }"}}),
    )
    .await;
    assert_eq!(ws_next(&mut legacy).await["type"], "data");
}

#[tokio::test]
async fn a_client_may_stop_an_operation_and_run_at_most_a_hundred() {
    let app = TestApp::spawn().await;
    let user = app.register("ops@example.com", "ops").await;
    let mut ws = app.ws_connect("graphql-transport-ws", None).await.unwrap();
    ws_send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {}", user.access)}}),
    )
    .await;
    assert_eq!(ws_next(&mut ws).await["type"], "connection_ack");
    let subscribe = |id: String| json!({"id": id, "type": "subscribe", "payload": {"query": "subscription { walletChanged { balance } }"}});
    // Stopping one answers `complete` and frees its id.
    ws_send(&mut ws, subscribe("w".into())).await;
    ws_send(&mut ws, json!({"id": "w", "type": "complete"})).await;
    assert_eq!(
        ws_next(&mut ws).await,
        json!({"type": "complete", "id": "w"})
    );
    ws_send(&mut ws, subscribe("w".into())).await;
    for i in 1..100 {
        ws.feed(Message::text(subscribe(format!("s{i}")).to_string()))
            .await
            .unwrap();
    }
    ws.flush().await.unwrap();
    ws_send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "pong", "a hundred run");
    ws_send(&mut ws, subscribe("one-too-many".into())).await;
    let (code, reason) = ws_close_code(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(
        (code, reason.as_str()),
        (1008, "Too many operations at once")
    );
}
