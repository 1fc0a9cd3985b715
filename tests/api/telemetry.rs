//! Traces leave the process over OTLP/HTTP when an endpoint is configured. A small collector
//! on loopback receives the protobuf export, as a real one would.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use poem::{EndpointExt, Route, handler, listener::TcpAcceptor, post, web::Data};
use prost::Message;

use crate::helpers::BinaryServer;

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

    let server = BinaryServer::start(&[(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://{collector_addr}"),
    )])
    .await;
    let body = server
        .graphql(
            "query ServerVersion($v: Boolean!) { serverInfo { version @include(if: $v) } }",
            serde_json::json!({"v": true}),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    // Shutdown flushes the batch.
    server.stop().await;

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
