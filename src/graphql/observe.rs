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

/// Gives back the spare room of every list in a parsed document. The parser collects each
/// selection set, argument list and variable list with room for four; a subscription keeps
/// its document for as long as it runs, so with one or two fields per set most of that
/// room (a few KiB per subscriber) would be held for nothing.
pub fn compact(doc: &mut ExecutableDocument) {
    use async_graphql::parser::types::{Selection, SelectionSet};
    fn set(selection_set: &mut SelectionSet) {
        selection_set.items.shrink_to_fit();
        for item in &mut selection_set.items {
            match &mut item.node {
                Selection::Field(field) => {
                    field.node.arguments.shrink_to_fit();
                    field.node.directives.shrink_to_fit();
                    set(&mut field.node.selection_set.node);
                }
                Selection::InlineFragment(fragment) => {
                    fragment.node.directives.shrink_to_fit();
                    set(&mut fragment.node.selection_set.node);
                }
                Selection::FragmentSpread(spread) => spread.node.directives.shrink_to_fit(),
            }
        }
    }
    let operations: Vec<_> = match &mut doc.operations {
        DocumentOperations::Single(op) => vec![op],
        DocumentOperations::Multiple(ops) => ops.values_mut().collect(),
    };
    for op in operations {
        op.node.variable_definitions.shrink_to_fit();
        for variable in &mut op.node.variable_definitions {
            variable.node.directives.shrink_to_fit();
        }
        op.node.directives.shrink_to_fit();
        set(&mut op.node.selection_set.node);
    }
    for fragment in doc.fragments.values_mut() {
        fragment.node.directives.shrink_to_fit();
        set(&mut fragment.node.selection_set.node);
    }
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
        let mut doc = next.run(ctx, query, variables).await?;
        if !self.introspection && asks_for_introspection(&doc) {
            return Err(introspection_refused());
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((name, kind)) = selected_operation(&doc, state.requested_name.as_deref()) {
            state.name = name.or_else(|| state.requested_name.clone());
            state.kind = Some(kind_str(kind));
            if kind == OperationType::Subscription {
                compact(&mut doc);
            }
        }
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::{
        parse_query,
        types::{Selection, SelectionSet},
    };

    use super::*;

    fn tight(set: &SelectionSet) -> bool {
        set.items.capacity() == set.items.len()
            && set.items.iter().all(|item| match &item.node {
                Selection::Field(f) => {
                    f.node.arguments.capacity() == f.node.arguments.len()
                        && tight(&f.node.selection_set.node)
                }
                Selection::InlineFragment(f) => tight(&f.node.selection_set.node),
                Selection::FragmentSpread(_) => true,
            })
    }

    #[test]
    fn compacting_keeps_the_document_and_drops_the_spare_room() {
        let query = r#"subscription Follow($id: ID!, $after: Int) {
            vpsSessionProgress(sessionId: $id, afterSeq: $after) {
                seq
                changedSteps { key message }
                ... on VpsSessionEvent { snapshot }
                ...More
            }
        }
        fragment More on VpsSessionEvent { session { id status } }"#;
        let mut doc = parse_query(query).unwrap();
        let before = format!("{doc:?}");
        let (_, op) = doc.operations.iter().next().unwrap();
        assert!(
            !tight(&op.node.selection_set.node),
            "the parser leaves room"
        );
        compact(&mut doc);
        assert_eq!(format!("{doc:?}"), before, "nothing but capacity changes");
        let (_, op) = doc.operations.iter().next().unwrap();
        assert!(tight(&op.node.selection_set.node));
        assert_eq!(
            op.node.variable_definitions.capacity(),
            op.node.variable_definitions.len()
        );
        assert!(
            doc.fragments
                .values()
                .all(|f| tight(&f.node.selection_set.node))
        );
    }
}
