//! The GraphQL extension that wraps every operation: a tracing span named by the operation
//! (never the query text or variables), the operations metric by name, type and outcome, and
//! the error-code mapping of [`super::error::normalize`] on every response.

use std::sync::{Arc, Mutex};

use async_graphql::{
    Request, Response, ServerResult, Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest,
        NextRequest, NextSubscribe,
    },
    parser::types::{DocumentOperations, ExecutableDocument, OperationType},
};
use futures_util::{StreamExt, stream::BoxStream};
use opentelemetry::trace::TraceContextExt as _;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::error::normalize;
use crate::platform::telemetry::Metrics;

pub struct Observe {
    metrics: Arc<Metrics>,
    introspection: bool,
}

impl Observe {
    /// `introspection: false` refuses `__schema` and `__type` with a clear error (the
    /// library alone would answer them with a silent null).
    pub fn new(metrics: Metrics, introspection: bool) -> Self {
        Self {
            metrics: Arc::new(metrics),
            introspection,
        }
    }
}

impl ExtensionFactory for Observe {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ObserveOperation {
            metrics: Arc::clone(&self.metrics),
            introspection: self.introspection,
            state: Mutex::new(OperationInfo::default()),
        })
    }
}

#[derive(Default, Clone)]
struct OperationInfo {
    requested_name: Option<String>,
    name: Option<String>,
    kind: Option<&'static str>,
}

struct ObserveOperation {
    metrics: Arc<Metrics>,
    introspection: bool,
    state: Mutex<OperationInfo>,
}

impl ObserveOperation {
    fn info(&self) -> OperationInfo {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub fn kind_str(kind: OperationType) -> &'static str {
    match kind {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

/// The error for an introspection query when introspection is off.
pub fn introspection_refused() -> async_graphql::ServerError {
    let mut err = async_graphql::ServerError::new("introspection is disabled on this server", None);
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", "BAD_USER_INPUT");
    extensions.set("reason", "introspection_disabled");
    err.extensions = Some(extensions);
    err
}

/// After an operation: error codes on every error, the span's status, the operations metric.
pub fn finish(
    metrics: &Metrics,
    span: &tracing::Span,
    name: &str,
    kind: &'static str,
    response: &mut Response,
) {
    let outcome = if response.errors.is_empty() {
        "ok"
    } else {
        "error"
    };
    if outcome == "error" {
        span.record("otel.status_code", "ERROR");
    }
    for err in &mut response.errors {
        normalize(err);
    }
    metrics.record_graphql(name, kind, outcome);
}

/// Whether any operation selects `__schema` or `__type` at its root (directly, or through
/// a fragment).
pub fn asks_for_introspection(doc: &ExecutableDocument) -> bool {
    use async_graphql::parser::types::{Selection, SelectionSet};
    fn scan(set: &SelectionSet, doc: &ExecutableDocument, depth: usize) -> bool {
        depth < 8
            && set.items.iter().any(|item| match &item.node {
                Selection::Field(field) => {
                    matches!(field.node.name.node.as_str(), "__schema" | "__type")
                }
                Selection::InlineFragment(fragment) => {
                    scan(&fragment.node.selection_set.node, doc, depth + 1)
                }
                Selection::FragmentSpread(spread) => doc
                    .fragments
                    .get(&spread.node.fragment_name.node)
                    .is_some_and(|f| scan(&f.node.selection_set.node, doc, depth + 1)),
            })
    }
    doc.operations
        .iter()
        .any(|(_, op)| scan(&op.node.selection_set.node, doc, 0))
}

/// The operation a document will run, given the requested name.
pub fn selected_operation(
    doc: &ExecutableDocument,
    requested: Option<&str>,
) -> Option<(Option<String>, OperationType)> {
    match (&doc.operations, requested) {
        (DocumentOperations::Single(op), _) => Some((None, op.node.ty)),
        (DocumentOperations::Multiple(ops), Some(name)) => {
            ops.get(name).map(|op| (Some(name.to_owned()), op.node.ty))
        }
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops
            .iter()
            .next()
            .map(|(name, op)| (Some(name.to_string()), op.node.ty)),
        _ => None,
    }
}

#[async_trait::async_trait]
impl Extension for ObserveOperation {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let span = tracing::info_span!(
            "graphql.operation",
            graphql.operation.name = tracing::field::Empty,
            graphql.operation.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let mut response = next.run(ctx).instrument(span.clone()).await;
        let info = self.info();
        let name = info
            .name
            .or(info.requested_name)
            .unwrap_or_else(|| "anonymous".into());
        let kind = info.kind.unwrap_or("unknown");
        // The OpenTelemetry span already exists once the operation ran, so rename it there;
        // recording `otel.name` now would be ignored.
        if !span.is_disabled() {
            span.context().span().update_name(format!("{kind} {name}"));
            span.record("graphql.operation.name", name.as_str());
            span.record("graphql.operation.type", kind);
        }
        finish(&self.metrics, &span, &name, kind, &mut response);
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream)
            .map(|mut response| {
                for err in &mut response.errors {
                    normalize(err);
                }
                response
            })
            .boxed()
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .requested_name = request.operation_name.clone();
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        if !self.introspection && asks_for_introspection(&doc) {
            return Err(introspection_refused());
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((name, kind)) = selected_operation(&doc, state.requested_name.as_deref()) {
            state.name = name.or_else(|| state.requested_name.clone());
            state.kind = Some(kind_str(kind));
        }
        Ok(doc)
    }
}
