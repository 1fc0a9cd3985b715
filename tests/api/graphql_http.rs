use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::TestApp;

/// The introspection query GraphiQL sends (type references seven `ofType`s deep).
const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) {
    name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}
"#;

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

fn reason(body: &Value) -> &str {
    body["errors"][0]["extensions"]["reason"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn post_runs_a_query() {
    let app = TestApp::spawn().await;
    let body = app
        .graphql(
            "{ serverInfo { version databaseBackend kvBackend startedAt } }",
            json!({}),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    let info = &body["data"]["serverInfo"];
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["databaseBackend"], app.state.db.backend().as_str());
    assert_eq!(info["kvBackend"], app.state.kv.backend());
    assert!(chrono::DateTime::parse_from_rfc3339(info["startedAt"].as_str().unwrap()).is_ok());
}

#[tokio::test]
async fn get_runs_a_query_with_variables_and_operation_name() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/graphql"))
        .query(&[
            ("query", "query A { serverInfo { version } } query B($x: Boolean!) { serverInfo { kvBackend @include(if: $x) } }"),
            ("operationName", "B"),
            ("variables", r#"{"x": true}"#),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["data"]["serverInfo"]["kvBackend"],
        app.state.kv.backend(),
        "{body}"
    );
}

#[tokio::test]
async fn mutations_are_refused_over_get() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/graphql"))
        .query(&[("query", "mutation { anything }")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, POST");
    let body: Value = response.json().await.unwrap();
    assert_eq!(reason(&body), "method_not_allowed");

    // The operation GET would run decides, not the first one in the document.
    let response = app
        .client
        .get(app.url("/graphql"))
        .query(&[
            (
                "query",
                "query Q { serverInfo { version } } mutation M { anything }",
            ),
            ("operationName", "M"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
}

#[tokio::test]
async fn browsers_get_graphiql() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/graphql"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = response.text().await.unwrap();
    assert!(html.contains("graphiql"), "GraphiQL page");
    assert!(
        html.contains("/graphql/ws"),
        "subscriptions endpoint wired in"
    );
}

#[tokio::test]
async fn get_without_query_is_a_bad_request() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/graphql"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(reason(&body), "malformed_request");
}

#[tokio::test]
async fn introspection_passes_the_limits_and_deeper_queries_do_not() {
    let app = TestApp::spawn().await;
    let body = app.graphql(INTROSPECTION, json!({})).await;
    assert!(
        body["errors"].is_null(),
        "introspection refused: {}",
        body["errors"]
    );
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");

    let mut deep = String::from("{ __schema { types { fields { type { ");
    for _ in 0..14 {
        deep.push_str("ofType { ");
    }
    deep.push_str("name ");
    deep.push_str(&"} ".repeat(14 + 5));
    let body = app.graphql(&deep, json!({})).await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    assert_eq!(reason(&body), "query_too_deep");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("too deep")
    );
}

#[tokio::test]
async fn complexity_and_introspection_switches_apply() {
    let app = TestApp::builder()
        .configure(|c| {
            c.graphql_max_complexity = 3;
            c.graphql_introspection = false;
        })
        .spawn()
        .await;
    let body = app
        .graphql(
            "{ serverInfo { version databaseBackend kvBackend startedAt } }",
            json!({}),
        )
        .await;
    assert_eq!(reason(&body), "query_too_complex", "{body}");

    for query in [
        "{ __schema { queryType { name } } }",
        "{ ... on Query { __type(name: \"Query\") { name } } }",
        "query { ...F } fragment F on Query { __schema { types { name } } }",
    ] {
        let body = app.graphql(query, json!({})).await;
        assert_eq!(reason(&body), "introspection_disabled", "{query}: {body}");
        assert!(body["data"].is_null(), "{body}");
    }
    // Ordinary queries still run.
    let app = TestApp::builder()
        .configure(|c| c.graphql_introspection = false)
        .spawn()
        .await;
    let body = app.graphql("{ serverInfo { version } }", json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
}

#[tokio::test]
async fn malformed_json_is_a_bad_request() {
    let app = TestApp::spawn().await;
    for accept in ["application/json", "application/graphql-response+json"] {
        let response = app
            .client
            .post(app.url("/graphql"))
            .header("content-type", "application/json")
            .header("accept", accept)
            .body(r#"{"query": "{ serverInfo { version } }"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "accept {accept}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(accept)
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(reason(&body), "malformed_request");
        assert_eq!(code(&body), "BAD_USER_INPUT");
    }

    // Valid JSON without a query, and batches, are not requests either.
    for payload in [
        r#"{"variables": {}}"#,
        r#"[{"query": "{ serverInfo { version } }"}]"#,
    ] {
        let response = app
            .client
            .post(app.url("/graphql"))
            .header("content-type", "application/json")
            .body(payload)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{payload}");
    }
}

#[tokio::test]
async fn a_wrong_content_type_is_unsupported() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "text/plain")
        .body(r#"{"query": "{ serverInfo { version } }"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.unwrap();
    assert_eq!(reason(&body), "unsupported_media_type");

    // JSON with parameters is JSON.
    let response = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"query": "{ serverInfo { version } }"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn graphql_response_json_uses_status_codes() {
    let app = TestApp::spawn().await;
    let send = |query: &'static str, accept: &'static str| {
        app.client
            .post(app.url("/graphql"))
            .header("accept", accept)
            .json(&json!({ "query": query }))
            .send()
    };
    let response = send(
        "{ serverInfo { version } }",
        "application/graphql-response+json",
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/graphql-response+json"
    );

    let response = send("{ nope }", "application/graphql-response+json")
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body.get("data").is_none(),
        "a request error has no data: {body}"
    );
    assert_eq!(code(&body), "BAD_USER_INPUT");
    assert_eq!(reason(&body), "invalid_query");

    let response = send("{ nope }", "application/json").await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "legacy JSON keeps 200 for request errors"
    );
    assert_eq!(response.headers()["content-type"], "application/json");
}

#[tokio::test]
async fn oversize_bodies_get_413() {
    let app = TestApp::builder()
        .configure(|c| c.body_limit_bytes = 4096)
        .spawn()
        .await;
    let big = format!(
        r#"{{"query": "{{ serverInfo {{ version }} }}", "x": "{}"}}"#,
        "a".repeat(5000)
    );

    // With Content-Length: refused before the body is read.
    let response = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large");

    // Chunked, so no length is declared: refused while reading.
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = "POST /graphql HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    socket.write_all(head.as_bytes()).await.unwrap();
    for chunk in big.as_bytes().chunks(1000) {
        let frame = format!("{:x}\r\n", chunk.len());
        socket.write_all(frame.as_bytes()).await.unwrap();
        socket.write_all(chunk).await.unwrap();
        socket.write_all(b"\r\n").await.unwrap();
    }
    socket.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");

    // Under the limit is fine.
    let body = app.graphql("{ serverInfo { version } }", json!({})).await;
    assert!(body["errors"].is_null());
}

#[tokio::test]
async fn repeated_documents_are_checked_every_time() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        let body = app.graphql("{ nope }", json!({})).await;
        assert_eq!(
            reason(&body),
            "invalid_query",
            "an invalid document stays invalid: {body}"
        );
        let body = app.graphql("{ serverInfo { version } }", json!({})).await;
        assert!(body["errors"].is_null(), "{body}");
    }
    // With variables, every request is fully validated against its own values.
    let query = "query($x: Boolean!) { serverInfo { version @include(if: $x) } }";
    let body = app.graphql(query, json!({ "x": true })).await;
    assert!(body["errors"].is_null(), "{body}");
    let body = app.graphql(query, json!({ "x": "yes" })).await;
    assert!(!body["errors"].as_array().unwrap().is_empty(), "{body}");
    // A document is valid only as a whole; neither of its operations runs, however often.
    let doc = "query A { serverInfo { version } } query B { serverInfo { nope } }";
    for _ in 0..2 {
        let a = app
            .post_graphql(json!({ "query": doc, "operationName": "A" }))
            .await;
        assert_eq!(reason(&a), "invalid_query", "{a}");
        let b = app
            .post_graphql(json!({ "query": doc, "operationName": "B" }))
            .await;
        assert_eq!(reason(&b), "invalid_query", "{b}");
    }
}

#[tokio::test]
async fn operations_of_a_valid_document_are_remembered_apart() {
    let app = TestApp::spawn().await;
    let doc = "query A { serverInfo { version } } query B { serverInfo { kvBackend } }";
    for name in ["A", "B", "A", "B", "C"] {
        let body = app
            .post_graphql(json!({ "query": doc, "operationName": name }))
            .await;
        if name == "C" {
            assert!(
                !body["errors"].as_array().unwrap().is_empty(),
                "no operation C: {body}"
            );
        } else {
            assert!(body["errors"].is_null(), "{name}: {body}");
        }
    }
}
