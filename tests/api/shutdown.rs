//! Graceful shutdown: in-flight requests finish, WebSockets get a close frame, the server
//! stops accepting, and `run` returns cleanly.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, ws_close_code, ws_next, ws_send};

#[tokio::test]
async fn shutdown_finishes_requests_and_closes_websockets() {
    let mut app = TestApp::spawn().await;
    let addr = app.addr;

    let mut ws = app.ws_connect("graphql-transport-ws", None).await.unwrap();
    ws_send(&mut ws, json!({"type": "connection_init"})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "connection_ack");

    // A request whose body is still arriving when shutdown begins.
    let body = r#"{"query": "{ serverInfo { version } }"}"#;
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&body.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let token = app.shutdown_token();
    let handle = app.take_handle();
    token.cancel();

    let (code, reason) = ws_close_code(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, 1001, "{reason}");

    tokio::time::sleep(Duration::from_millis(200)).await;
    socket.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer))
        .await
        .expect("the in-flight request is answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("serverInfo"), "{answer}");

    let result = tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("run returns after shutdown")
        .expect("no panic");
    assert!(result.is_ok(), "{result:?}");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting connections"
    );
}
