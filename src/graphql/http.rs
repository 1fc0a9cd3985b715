//! GraphQL over HTTP, as the GraphQL-over-HTTP specification says.
//!
//! - `POST /graphql` with `Content-Type: application/json`; anything else is 415.
//! - `GET /graphql?query=…&variables=…&operationName=…` for queries only: a mutation over
//!   GET is 405 (GET must be safe: links and prefetchers follow it). A browser asking for
//!   HTML with no query gets GraphiQL.
//! - Answers in `application/graphql-response+json` when the client accepts it: a request
//!   error (the query never ran: unparsable, invalid, over a limit) is then 400 with no
//!   `data`. Otherwise in `application/json`, where such errors are 200 as legacy clients
//!   expect. A body that is not a GraphQL request at all is 400 in both.

use async_graphql::{Response as GqlResponse, ServerError, Value, http::GraphiQLSource};
use poem::{
    Body, IntoResponse, Request, Response, handler,
    http::{HeaderMap, Method, StatusCode, header},
    web::{Data, Html},
};
use serde::Deserialize;

use std::sync::Arc;

use async_graphql::parser::types::OperationType;
use tracing::Instrument;

use super::{
    RequestMeta,
    cache::DocumentCache,
    error::ErrorCode,
    observe::{self, selected_operation},
};
use crate::app::AppState;

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

/// Which media type the response is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accept {
    GraphqlResponse,
    Json,
}

fn negotiate(headers: &HeaderMap) -> Accept {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Prefer the newer type whenever the client names it; it carries better status codes.
    if accept
        .split(',')
        .any(|part| part.split(';').next().map(str::trim) == Some(GRAPHQL_RESPONSE))
    {
        Accept::GraphqlResponse
    } else {
        Accept::Json
    }
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// A response for a request that is not a GraphQL request at all.
fn refuse(accept: Accept, status: StatusCode, reason: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{
            "message": message,
            "extensions": { "code": ErrorCode::BadUserInput.as_str(), "reason": reason },
        }]
    });
    let content_type = match accept {
        Accept::GraphqlResponse => GRAPHQL_RESPONSE,
        Accept::Json => JSON,
    };
    Response::builder()
        .status(status)
        .content_type(content_type)
        .body(body.to_string())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetParams {
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

fn parse_get(query_string: &str) -> Result<async_graphql::Request, String> {
    let params: GetParams =
        serde_urlencoded::from_str(query_string).map_err(|e| format!("bad query string: {e}"))?;
    let query = params
        .query
        .filter(|q| !q.trim().is_empty())
        .ok_or("the `query` parameter is required")?;
    let mut request = async_graphql::Request::new(query);
    request.operation_name = params.operation_name;
    if let Some(variables) = params.variables {
        request.variables = serde_json::from_str(&variables)
            .map_err(|e| format!("`variables` is not a JSON object: {e}"))?;
    }
    if let Some(extensions) = params.extensions {
        request.extensions = serde_json::from_str(&extensions)
            .map_err(|e| format!("`extensions` is not a JSON object: {e}"))?;
    }
    Ok(request)
}

fn is_json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(JSON))
}

/// Errors that stopped the request before execution: no data, and no error has a path.
fn is_request_error(response: &GqlResponse) -> bool {
    response.data == Value::Null
        && !response.errors.is_empty()
        && response
            .errors
            .iter()
            .all(|e: &ServerError| e.path.is_empty())
}

fn write(accept: Accept, response: GqlResponse) -> Response {
    let request_error = is_request_error(&response);
    let (status, content_type) = match accept {
        Accept::GraphqlResponse if request_error => (StatusCode::BAD_REQUEST, GRAPHQL_RESPONSE),
        Accept::GraphqlResponse => (StatusCode::OK, GRAPHQL_RESPONSE),
        Accept::Json => (StatusCode::OK, JSON),
    };
    let body = if request_error {
        // The spec's signal that execution never started is the absence of `data`.
        serde_json::to_vec(&serde_json::json!({ "errors": response.errors }))
    } else {
        serde_json::to_vec(&response)
    };
    let body = match body {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "serializing a GraphQL response failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut builder = Response::builder()
        .status(status)
        .content_type(content_type);
    if let Some(cache_control) = response.cache_control.value() {
        builder = builder.header(header::CACHE_CONTROL, cache_control);
    }
    // Headers resolvers asked for (session cookies).
    for (name, value) in &response.http_headers {
        builder = builder.header(name.clone(), value.clone());
    }
    builder.body(body)
}

/// `GET` and `POST` on `/graphql`.
#[handler]
pub async fn endpoint(
    req: &Request,
    body: Body,
    Data(state): Data<&AppState>,
    Data(schema): Data<&HttpSchema>,
    Data(meta): Data<&RequestMeta>,
    Data(documents): Data<&Arc<DocumentCache>>,
) -> Response {
    // Boxed so that the router's and middleware's futures, which poem moves into boxes of
    // their own on every request, stay small.
    Box::pin(serve(req, body, state, schema, meta, documents)).await
}

async fn serve(
    req: &Request,
    body: Body,
    state: &AppState,
    schema: &HttpSchema,
    meta: &RequestMeta,
    documents: &DocumentCache,
) -> Response {
    let accept = negotiate(req.headers());
    let request = match *req.method() {
        Method::GET => {
            let query_string = req.uri().query().unwrap_or("");
            if query_string.is_empty() && wants_html(req.headers()) {
                return Html(
                    GraphiQLSource::build()
                        .endpoint("/graphql")
                        .subscription_endpoint("/graphql/ws")
                        .title("Tessera GraphiQL")
                        .finish(),
                )
                .into_response();
            }

            match parse_get(query_string) {
                Ok(request) => request,
                Err(message) => {
                    return refuse(
                        accept,
                        StatusCode::BAD_REQUEST,
                        "malformed_request",
                        &message,
                    );
                }
            }
        }
        Method::POST => {
            if !is_json_content_type(req.headers()) {
                return refuse(
                    accept,
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send the request as Content-Type: application/json",
                );
            }
            let bytes = match body.into_bytes_limit(state.config.body_limit_bytes).await {
                Ok(bytes) => bytes,
                Err(poem::error::ReadBodyError::PayloadTooLarge) => {
                    return super::error::http_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        &format!(
                            "the request body exceeds {} bytes",
                            state.config.body_limit_bytes
                        ),
                    );
                }
                Err(e) => {
                    return refuse(
                        accept,
                        StatusCode::BAD_REQUEST,
                        "malformed_request",
                        &e.to_string(),
                    );
                }
            };
            match serde_json::from_slice::<async_graphql::Request>(&bytes) {
                Ok(request) if !request.query.trim().is_empty() => request,
                Ok(_) => {
                    return refuse(
                        accept,
                        StatusCode::BAD_REQUEST,
                        "malformed_request",
                        "the `query` field is required",
                    );
                }
                Err(e) => {
                    let message = if bytes.first() == Some(&b'[') {
                        "batched requests are not supported; send one operation per request"
                            .to_owned()
                    } else {
                        format!("the body is not a GraphQL request: {e}")
                    };
                    return refuse(
                        accept,
                        StatusCode::BAD_REQUEST,
                        "malformed_request",
                        &message,
                    );
                }
            }
        }
        _ => {
            let mut response = refuse(
                accept,
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use GET or POST",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, POST"));
            return response;
        }
    };
    let mut request = request;
    let parsed = documents.lookup(&request.query, request.operation_name.as_deref());
    let (doc, validated) = match parsed {
        Some(parsed) => (Some(parsed.doc), parsed.validated),
        None => (None, false),
    };
    let (name, kind) = match doc
        .as_ref()
        .and_then(|d| selected_operation(d, request.operation_name.as_deref()))
    {
        Some((name, kind)) => (name.or_else(|| request.operation_name.clone()), Some(kind)),
        None => (request.operation_name.clone(), None),
    };
    if req.method() == Method::GET && kind.is_some_and(|k| k != OperationType::Query) {
        let mut response = refuse(
            accept,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "only queries may be sent with GET; send mutations with POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, POST"));
        return response;
    }
    let kind = kind.map_or("unknown", observe::kind_str);
    let name = name.as_deref().unwrap_or("anonymous");
    let span = tracing::info_span!(
        "graphql.operation",
        otel.name = format!("{kind} {name}"),
        graphql.operation.name = name,
        graphql.operation.type = kind,
        otel.status_code = tracing::field::Empty,
    );
    let mut response = match doc {
        Some(doc)
            if !state.config.graphql_introspection && observe::asks_for_introspection(&doc) =>
        {
            GqlResponse::from_errors(vec![observe::introspection_refused()])
        }
        Some(doc) => {
            // Only documents without variables may skip full validation (see cache.rs).
            let fixed = request.variables.is_empty() && super::cache::declares_no_variables(&doc);
            let fast = fixed && validated;
            let query = fixed.then(|| request.query.clone());
            let operation = request.operation_name.clone();
            request.set_parsed_query(doc);
            let response = execute(state, schema, request, meta, fast)
                .instrument(span.clone())
                .await;
            if let Some(query) = query
                && !fast
                && !is_request_error(&response)
            {
                documents.mark_validated(&query, operation.as_deref());
            }
            response
        }
        // Unparsable: the executor reports the syntax error.
        None => {
            execute(state, schema, request, meta, false)
                .instrument(span.clone())
                .await
        }
    };
    observe::finish(&state.metrics, &span, name, kind, &mut response);
    write(accept, response)
}

/// Runs the request. The executor's future is large (several kilobytes of state); boxing it
/// here keeps every enclosing future (middleware, router, connection) small, so they are
/// not copied around by value on each request.
async fn execute(
    state: &AppState,
    schema: &HttpSchema,
    request: async_graphql::Request,
    meta: &RequestMeta,
    validated: bool,
) -> GqlResponse {
    let auth = crate::identity::auth::authenticate(state, meta).await;
    let schema = if validated {
        &schema.fast
    } else {
        &schema.strict
    };
    Box::pin(schema.execute(request.data(meta.clone()).data(auth))).await
}

/// The schema HTTP requests run on: the same as the WebSocket one, without the observing
/// extension, because this handler observes each operation itself (it has the parsed
/// document at hand, and an extension costs a boxed future per hook and per field).
#[derive(Clone)]
pub struct HttpSchema {
    /// Full validation.
    pub strict: super::AppSchema,
    /// Depth, complexity and fragment cycles only: for documents that already passed
    /// `strict` (see cache.rs).
    pub fast: super::AppSchema,
}
