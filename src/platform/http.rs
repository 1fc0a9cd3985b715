//! HTTP plumbing shared by every route: request ids and per-request metadata, a span and
//! metrics per request, the body-size limit, JSON refusals, and the probe endpoints.

use std::time::Instant;

use poem::{
    Endpoint, IntoResponse, Middleware, Request, Response, Result, handler,
    http::{HeaderName, HeaderValue, StatusCode, header},
    web::{Data, Json},
};
use serde_json::json;
use tracing::Instrument;

use crate::{app::AppState, graphql::RequestMeta, graphql::error::http_error};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request id from the client is kept when it is short and plain; otherwise we make one.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(new_request_id)
}

/// A UUIDv7 whose random bits come from the thread's generator: `Uuid::now_v7` asks the
/// kernel for them, one system call per request.
fn new_request_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let random: [u8; 10] = rand::random();
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    let mut buf = uuid::Uuid::encode_buffer();
    id.hyphenated().encode_lower(&mut buf).to_owned()
}

/// The client's address: the socket peer, unless the peer is a trusted proxy; then the
/// nearest address in `X-Forwarded-For` that is not itself a trusted proxy (the entries
/// further left were written by the client and prove nothing).
pub fn client_ip(
    peer: Option<std::net::IpAddr>,
    headers: &poem::http::HeaderMap,
    trusted: &[ipnet::IpNet],
) -> Option<std::net::IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| part.trim().parse().ok())
        .collect();
    Some(
        forwarded
            .iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .or(forwarded.first())
            .copied()
            .unwrap_or(peer),
    )
}

/// Wraps one route: names it for metrics and spans.
pub struct Observed {
    route: &'static str,
    state: AppState,
    body_limit: bool,
}

impl Observed {
    pub fn new(route: &'static str, state: &AppState) -> Self {
        Self {
            route,
            state: state.clone(),
            body_limit: true,
        }
    }

    /// For routes with limits of their own (the proxy): BODY_LIMIT_BYTES does not apply.
    pub fn without_body_limit(mut self) -> Self {
        self.body_limit = false;
        self
    }
}

impl<E: Endpoint> Middleware<E> for Observed {
    type Output = ObservedEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        ObservedEndpoint {
            inner,
            route: self.route,
            state: self.state.clone(),
            body_limit: self.body_limit,
        }
    }
}

pub struct ObservedEndpoint<E> {
    inner: E,
    route: &'static str,
    state: AppState,
    body_limit: bool,
}

impl<E: Endpoint> Endpoint for ObservedEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Response> {
        let started = Instant::now();
        let id = request_id(&req);
        let method = crate::platform::telemetry::method_name(req.method());
        let span = tracing::info_span!(
            "http.request",
            otel.name = format!("{method} {}", self.route),
            otel.kind = "server",
            http.request.method = %method,
            http.route = self.route,
            http.response.status_code = tracing::field::Empty,
            request_id = %id,
        );
        let peer = req.remote_addr().as_socket_addr().copied();
        let meta = RequestMeta {
            request_id: id.clone(),
            peer,
            client_ip: client_ip(
                peer.map(|p| p.ip()),
                req.headers(),
                &self.state.config.trusted_proxies,
            ),
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            authorization: req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            cookies: req
                .headers()
                .get(header::COOKIE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            client: crate::graphql::ClientHeaders::read(
                req.headers(),
                self.state.config.ads.ads_asn_header.as_deref(),
                peer.is_some_and(|p| {
                    let ip = p.ip();
                    self.state
                        .config
                        .trusted_proxies
                        .iter()
                        .any(|n| n.contains(&ip))
                }),
            ),
        };
        req.extensions_mut().insert(meta);

        let limit = self.state.config.body_limit_bytes;
        let too_large = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|len| self.body_limit && len > limit as u64);

        let mut response = if too_large {
            http_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                &format!("the request body exceeds {limit} bytes"),
            )
        } else {
            match self.inner.call(req).instrument(span.clone()).await {
                Ok(output) => output.into_response(),
                Err(err) => json_refusal(err),
            }
        };
        let status = response.status().as_u16();
        span.record("http.response.status_code", status);
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
        self.state
            .metrics
            .record_http(self.route, method, status, started.elapsed());
        Ok(response)
    }
}

/// Turns a framework error (404, 405, bad upgrade, …) into `{"error", "message"}`.
pub fn json_refusal(err: poem::Error) -> Response {
    let status = err.status();
    if status.is_server_error() {
        tracing::error!(error = %err, "request failed");
    }
    let reason = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let message = if status.is_server_error() {
        "internal error".to_owned()
    } else {
        err.to_string()
    };
    http_error(status, reason, &message)
}

/// `GET /health`: the process is up and serving HTTP. Checks nothing else on purpose, so an
/// orchestrator does not restart us for a dependency's outage.
#[handler]
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /ready`: the database and the kv store both answer. 503 with per-dependency detail
/// otherwise, so a load balancer stops sending traffic while we cannot serve it.
#[handler]
pub async fn ready(Data(state): Data<&AppState>) -> Response {
    let timeout = state.config.kv_command_timeout.0;
    let db = async {
        let started = Instant::now();
        let result = match tokio::time::timeout(timeout, state.db.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        };
        (result, started.elapsed())
    };
    let kv = async {
        let started = Instant::now();
        let result = match tokio::time::timeout(timeout, state.kv.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        };
        (result, started.elapsed())
    };
    let ((db, db_time), (kv, kv_time)) = tokio::join!(db, kv);
    let check = |result: &std::result::Result<(), String>,
                 elapsed: std::time::Duration,
                 backend: &str| {
        match result {
            Ok(()) => {
                json!({ "status": "up", "backend": backend, "latencyMs": elapsed.as_millis() as u64 })
            }
            Err(e) => json!({ "status": "down", "backend": backend, "error": e }),
        }
    };
    let ready = db.is_ok() && kv.is_ok() && !state.shutdown.is_cancelled();
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "checks": {
            "database": check(&db, db_time, state.db.backend().as_str()),
            "kv": check(&kv, kv_time, state.kv.backend()),
        },
    });
    if !ready {
        tracing::warn!(database = ?db.err(), kv = ?kv.err(), "not ready");
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text exposition.
#[handler]
pub async fn metrics(Data(state): Data<&AppState>) -> Response {
    Response::builder()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = poem::http::HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.7, 10.1.1.1".parse().unwrap(),
        );
        let proxy = Some("10.0.0.2".parse().unwrap());
        let stranger = Some("198.51.100.1".parse().unwrap());
        // From a trusted proxy: the nearest untrusted hop, not the spoofable leftmost one.
        assert_eq!(
            client_ip(proxy, &headers, &trusted),
            Some("203.0.113.7".parse().unwrap())
        );
        // From anyone else the header is ignored.
        assert_eq!(client_ip(stranger, &headers, &trusted), stranger);
        assert_eq!(client_ip(proxy, &headers, &[]), proxy);
        // A trusted proxy without the header is the client itself.
        assert_eq!(
            client_ip(proxy, &poem::http::HeaderMap::new(), &trusted),
            proxy
        );
    }
}
