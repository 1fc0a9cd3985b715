use serde_json::Value;

use crate::helpers::TestApp;

#[tokio::test]
async fn health_answers_ok() {
    let app = TestApp::spawn().await;
    let response = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn ready_reports_each_dependency() {
    let app = TestApp::spawn().await;
    let response = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["database"]["status"], "up");
    assert_eq!(
        body["checks"]["database"]["backend"],
        app.state.db.backend().as_str()
    );
    assert_eq!(body["checks"]["kv"]["status"], "up");
    assert_eq!(body["checks"]["kv"]["backend"], app.state.kv.backend());
}

#[tokio::test]
async fn a_plain_request_id_is_echoed_and_a_hostile_one_replaced() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");

    let response = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "line\tbreak<script>")
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(id, "line\tbreak<script>");
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "a generated id is a UUID: {id}"
    );
}

#[tokio::test]
async fn unknown_routes_are_refused_as_json() {
    let app = TestApp::spawn().await;
    let response = app.client.get(app.url("/nowhere")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    assert!(body["message"].is_string());
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_operations_by_name() {
    let app = TestApp::spawn().await;
    app.client.get(app.url("/health")).send().await.unwrap();
    let body = app
        .graphql(
            "query ServerVersion { serverInfo { version } }",
            serde_json::json!({}),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "Prometheus text exposition"
    );
    let text = response.text().await.unwrap();
    let health_line = text
        .lines()
        .find(|l| {
            l.starts_with("http_server_requests_total") && l.contains("http_route=\"/health\"")
        })
        .unwrap_or_else(|| panic!("no /health counter in:\n{text}"));
    assert!(
        health_line.contains("http_response_status_code=\"200\""),
        "{health_line}"
    );
    assert!(health_line.ends_with(" 1"), "{health_line}");
    assert!(
        text.lines().any(
            |l| l.starts_with("http_server_request_duration_seconds_bucket")
                && l.contains("http_route=\"/graphql\"")
        ),
        "latency histogram by route"
    );
    let op = text
        .lines()
        .find(|l| l.starts_with("graphql_operations_total") && l.contains("ServerVersion"))
        .unwrap_or_else(|| panic!("no operation counter in:\n{text}"));
    assert!(
        op.contains("outcome=\"ok\"") && op.contains("graphql_operation_type=\"query\""),
        "{op}"
    );
}

#[tokio::test]
async fn in_process_kv_can_be_chosen_explicitly() {
    let app = TestApp::builder().memory_kv().spawn().await;
    let body = app
        .graphql("{ serverInfo { kvBackend } }", serde_json::json!({}))
        .await;
    assert_eq!(body["data"]["serverInfo"]["kvBackend"], "memory");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn cors_admits_only_listed_origins() {
    let app = TestApp::builder()
        .configure(|c| c.cors_allowed_origins = vec!["https://app.example.com".into()])
        .spawn()
        .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(
        allowed.headers()["access-control-allow-credentials"],
        "true"
    );

    let refused = preflight("https://evil.example").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "a foreign origin gets no CORS grant"
    );
}

#[tokio::test]
async fn responses_are_compressed_when_asked() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/metrics"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let bytes = response.bytes().await.unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "a gzip stream");
}
