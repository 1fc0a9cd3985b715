//! Traces leave the process over OTLP/HTTP when an endpoint is configured. A small collector
//! on loopback receives the protobuf export, as a real one would.

use std::{
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use poem::{EndpointExt, Route, handler, listener::TcpAcceptor, post, web::Data};
use prost::Message;

type Received = Arc<Mutex<Vec<Vec<u8>>>>;

#[handler]
async fn collect(body: Vec<u8>, Data(received): Data<&Received>) -> &'static str {
    received.lock().unwrap().push(body);
    ""
}

#[tokio::test]
async fn spans_are_exported_over_otlp_named_by_route_and_operation() {
    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = listener.local_addr().unwrap();
    let collector = Route::new()
        .at("/v1/traces", post(collect))
        .data(Arc::clone(&received));
    tokio::spawn(
        poem::Server::new_with_acceptor(TcpAcceptor::from_tokio(listener).unwrap()).run(collector),
    );

    let dir = tempfile::tempdir().unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    command
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{collector_addr}"),
        )
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = tokio::process::Command::from(command).spawn().unwrap();

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !client
        .get(format!("{base}/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(tokio::time::Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secret_query =
        "query ServerVersion($v: Boolean!) { serverInfo { version @include(if: $v) } }";
    let response = client
        .post(format!("{base}/graphql"))
        .json(&serde_json::json!({
            "query": secret_query,
            "variables": {"v": true},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Shutdown flushes the batch.
    let pid = child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());

    let bodies = received.lock().unwrap().clone();
    assert!(!bodies.is_empty(), "the collector received no export");
    let mut names = Vec::new();
    let mut values = Vec::new();
    for body in &bodies {
        let export = ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
        for resource in export.resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    names.push(span.name.clone());
                    for attribute in span.attributes {
                        values.push(format!("{:?}", attribute.value));
                    }
                }
            }
        }
    }
    assert!(names.iter().any(|n| n == "POST /graphql"), "{names:?}");
    assert!(
        names.iter().any(|n| n == "query ServerVersion"),
        "{names:?}"
    );
    assert!(
        !values
            .iter()
            .any(|v| v.contains("serverInfo {") || v.contains("\"v\"")),
        "neither the query text nor variables are exported: {values:?}"
    );
}
