//! Logs, traces and metrics.
//!
//! - Logs: `tracing`, pretty in development and one JSON object per line with
//!   `LOG_FORMAT=json`. Never log tokens, codes, passwords, emails or raw bodies.
//! - Traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans are exported over OTLP/HTTP
//!   (protobuf). The HTTP middleware opens a span per request and the GraphQL extension one
//!   per operation, named by the operation name (never the query text or variables).
//! - Metrics: OpenTelemetry instruments read by a Prometheus exporter; `GET /metrics` renders
//!   them. Each running app owns its [`Metrics`] (no global), so several servers in one
//!   process (the tests) do not mix their figures.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram, MeterProvider as _, UpDownCounter},
    trace::TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, metrics::SdkMeterProvider, trace::SdkTracerProvider};
use prometheus::{Encoder, TextEncoder};
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::{
    config::{Config, LogFormat},
    platform::FastMap,
};

/// Flushes exported spans when dropped; keep it alive for the life of the process.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    tracer_provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer_provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("flushing traces failed: {e}");
        }
    }
}

fn resource(config: &Config) -> Resource {
    Resource::builder()
        .with_service_name(config.otel_service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Installs the global log subscriber (and the OTLP trace pipeline when configured).
/// Must be called from within a Tokio runtime when OTLP is on.
pub fn init(config: &Config) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_new(&config.log_filter)
        .with_context(|| format!("RUST_LOG: '{}' is not a valid filter", config.log_filter))?;
    // Logs go to stderr: stdout belongs to commands' output (migrate status, export-schema).
    let fmt = match config.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(true)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };

    let tracer_provider = match &config.otel_endpoint {
        Some(endpoint) => {
            let endpoint = endpoint.as_str().trim_end_matches('/');
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(format!("{endpoint}/v1/traces"))
                .with_timeout(Duration::from_secs(5))
                .build()
                .context("OTEL_EXPORTER_OTLP_ENDPOINT: cannot build the span exporter")?;
            let processor =
                opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                    exporter,
                    opentelemetry_sdk::runtime::Tokio,
                )
                .build();
            Some(
                SdkTracerProvider::builder()
                    .with_span_processor(processor)
                    .with_resource(resource(config))
                    .build(),
            )
        }
        None => None,
    };
    let otel_layer = tracer_provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("tessera")));

    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel_layer)
        .try_init()
        .context("a log subscriber was already installed")?;
    Ok(TelemetryGuard { tracer_provider })
}

/// The server's instruments and the registry `/metrics` renders.
#[derive(Clone)]
pub struct Metrics {
    registry: prometheus::Registry,
    // Kept so the exporter stays registered; instruments hold their own handles.
    _provider: SdkMeterProvider,
    http_requests: Arc<LocalCounter<(&'static str, &'static str, u16)>>,
    http_duration: Histogram<f64>,
    graphql_operations: Counter<u64>,
    websocket_connections: UpDownCounter<i64>,
    access_checks: Arc<LocalCounter<(&'static str, &'static str)>>,
    proxy_requests: Arc<LocalCounter<(&'static str, &'static str)>>,
    vps_progress: Counter<u64>,
    ads_prepare: Counter<u64>,
    ads_complete: Counter<u64>,
    ads_ssv: Counter<u64>,
    ads_reward_amount: Counter<u64>,
    ads_failure_ratio: opentelemetry::metrics::Gauge<f64>,
    ads_effective_cap: opentelemetry::metrics::Gauge<u64>,
    ads_credit_writes: Counter<u64>,
    stripe_webhooks: Counter<u64>,
    billing_events: Counter<u64>,
}

/// The method as metrics and spans name it: the standard ones by name, any other as
/// `_OTHER` (OpenTelemetry's convention, which also keeps the label set bounded).
pub fn method_name(method: &poem::http::Method) -> &'static str {
    use poem::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

impl Metrics {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
            .context("cannot build the Prometheus exporter")?;
        let provider = SdkMeterProvider::builder()
            .with_reader(exporter)
            .with_resource(resource(config))
            .build();
        let meter = provider.meter("tessera");
        Ok(Self {
            registry,
            http_requests: LocalCounter::register(
                &meter,
                "http.server.requests",
                "HTTP requests answered, by route, method and status",
                |key| http_attributes(key).to_vec(),
            ),
            http_duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Time to answer an HTTP request, by route, method and status")
                .with_boundaries(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
                .build(),
            graphql_operations: meter
                .u64_counter("graphql.operations")
                .with_description(
                    "GraphQL operations executed, by operation name, type and outcome",
                )
                .build(),
            websocket_connections: meter
                .i64_up_down_counter("graphql.websocket.connections")
                .with_description("Open GraphQL WebSocket connections")
                .build(),
            access_checks: LocalCounter::register(
                &meter,
                "access.token.checks",
                "Access-token revocation checks, by the level that answered and the outcome",
                two_labels("level", "outcome"),
            ),
            proxy_requests: LocalCounter::register(
                &meter,
                "access.proxy.requests",
                "Proxied requests, by protocol and outcome",
                two_labels("protocol", "outcome"),
            ),
            vps_progress: meter
                .u64_counter("vps.progress.deliveries")
                .with_description(
                    "VPS progress events handed to subscribers, by where they came from (pubsub, or table after a gap)",
                )
                .build(),
            ads_prepare: meter
                .u64_counter("rewarded_ads_prepare")
                .with_description("prepareAdReward calls, by status (ok or the refusal reason)")
                .build(),
            ads_complete: meter
                .u64_counter("rewarded_ads_complete")
                .with_description(
                    "completeAdReward calls, by status (credited, pending, duplicate or the refusal reason)",
                )
                .build(),
            ads_ssv: meter
                .u64_counter("rewarded_ads_ssv")
                .with_description("SSV callbacks, by status (credited, duplicate or the refusal reason)")
                .build(),
            ads_reward_amount: meter
                .u64_counter("rewarded_ads_reward_amount")
                .with_description("Coins credited for ads, by network and placement")
                .build(),
            ads_failure_ratio: meter
                .f64_gauge("rewarded_ads_failure_ratio")
                .with_description("Failed share of the SSV callbacks of the last 30 minutes")
                .build(),
            ads_effective_cap: meter
                .u64_gauge("rewarded_ads_effective_daily_cap")
                .with_description("Rewards per user per day after the adaptive cut")
                .build(),
            ads_credit_writes: meter
                .u64_counter("rewarded_ads_credit_writes")
                .with_description(
                    "Ad credit attempts (duplicates included) by how they were written: single (alone), batched (several in one transaction) or fallback (a batch undone and written one by one)",
                )
                .build(),
            stripe_webhooks: meter
                .u64_counter("stripe_webhooks")
                .with_description("Stripe webhooks received, by outcome (stored, duplicate, ignored or the refusal reason)")
                .build(),
            billing_events: meter
                .u64_counter("billing_events_processed")
                .with_description("Stored Stripe events processed, by type and outcome")
                .build(),
            _provider: provider,
        })
    }

    pub fn record_http(
        &self,
        route: &'static str,
        method: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        self.http_requests.add((route, method, status));
        self.http_duration.record(
            elapsed.as_secs_f64(),
            &http_attributes((route, method, status)),
        );
    }

    pub fn record_graphql(&self, operation: &str, kind: &'static str, outcome: &'static str) {
        self.graphql_operations.add(
            1,
            &[
                KeyValue::new("graphql.operation.name", operation.to_owned()),
                KeyValue::new("graphql.operation.type", kind),
                KeyValue::new("outcome", outcome),
            ],
        );
    }

    pub fn websocket_opened(&self) {
        self.websocket_connections.add(1, &[]);
    }

    pub fn websocket_closed(&self) {
        self.websocket_connections.add(-1, &[]);
    }

    /// `level`: memory, kv or database; `outcome`: active, revoked or unknown.
    pub fn record_access_check(&self, level: &'static str, outcome: &'static str) {
        self.access_checks.add((level, outcome));
    }

    /// `protocol`: http or websocket; `outcome`: a refusal reason or `proxied`.
    pub fn record_proxy(&self, protocol: &'static str, outcome: &'static str) {
        self.proxy_requests.add((protocol, outcome));
    }

    /// `source`: `pubsub` (live) or `table` (read back after a gap, a lag or a reconnect).
    pub fn record_progress(&self, source: &'static str, events: u64) {
        self.vps_progress
            .add(events, &[KeyValue::new("source", source)]);
    }

    /// `what`: prepare, complete or ssv; `status`: the outcome or refusal reason.
    pub fn record_ads(&self, what: &'static str, status: &'static str) {
        let counter = match what {
            "prepare" => &self.ads_prepare,
            "complete" => &self.ads_complete,
            _ => &self.ads_ssv,
        };
        counter.add(1, &[KeyValue::new("status", status)]);
    }

    pub fn record_ads_reward(&self, network: &str, placement: &str, amount: u64) {
        self.ads_reward_amount.add(
            amount,
            &[
                KeyValue::new("network", network.to_owned()),
                KeyValue::new("placement", placement.to_owned()),
            ],
        );
    }

    pub fn record_ads_failure_ratio(&self, ratio: f64) {
        self.ads_failure_ratio.record(ratio, &[]);
    }

    pub fn record_ads_credit_batch(&self, how: &'static str, credits: u64) {
        self.ads_credit_writes
            .add(credits, &[KeyValue::new("how", how)]);
    }

    pub fn record_ads_effective_cap(&self, cap: u64) {
        self.ads_effective_cap.record(cap, &[]);
    }

    pub fn record_stripe_webhook(&self, outcome: &'static str) {
        self.stripe_webhooks
            .add(1, &[KeyValue::new("outcome", outcome)]);
    }

    pub fn record_billing_event(&self, kind: &str, outcome: &'static str) {
        self.billing_events.add(
            1,
            &[
                KeyValue::new("type", kind.to_owned()),
                KeyValue::new("outcome", outcome),
            ],
        );
    }

    /// The Prometheus text exposition of every instrument.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// A counter kept in process and read by an observable counter when metrics are collected.
/// The SDK's own counters hash the attributes on every add (SipHash over each key and
/// value), which showed on the proxy's hot path, where three counters are bumped per
/// request; here an add is one short lock and a fast hash of the
/// label values. Label values are `'static` strings or numbers, so the set stays bounded.
struct LocalCounter<K> {
    counts: Mutex<FastMap<K, u64>>,
}

impl<K: std::hash::Hash + Eq + Copy + Send + 'static> LocalCounter<K> {
    fn register(
        meter: &opentelemetry::metrics::Meter,
        name: &'static str,
        description: &'static str,
        attributes: impl Fn(K) -> Vec<KeyValue> + Send + Sync + 'static,
    ) -> Arc<Self> {
        let counter = Arc::new(Self {
            counts: Mutex::default(),
        });
        let observed = Arc::clone(&counter);
        meter
            .u64_observable_counter(name)
            .with_description(description)
            .with_callback(move |observer| {
                let counts: Vec<(K, u64)> = observed
                    .lock()
                    .iter()
                    .map(|(key, count)| (*key, *count))
                    .collect();
                for (key, count) in counts {
                    observer.observe(count, &attributes(key));
                }
            })
            .build();
        counter
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FastMap<K, u64>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, key: K) {
        *self.lock().entry(key).or_default() += 1;
    }
}

/// The attributes of an HTTP request's counter and duration: route, method, status.
fn http_attributes((route, method, status): (&'static str, &'static str, u16)) -> [KeyValue; 3] {
    [
        KeyValue::new("http.route", route),
        KeyValue::new("http.request.method", method),
        KeyValue::new("http.response.status_code", i64::from(status)),
    ]
}

/// The attributes of a [`LocalCounter`] keyed by two label values.
fn two_labels(
    first: &'static str,
    second: &'static str,
) -> impl Fn((&'static str, &'static str)) -> Vec<KeyValue> + Send + Sync + 'static {
    move |(a, b)| vec![KeyValue::new(first, a), KeyValue::new(second, b)]
}

#[cfg(test)]
mod tests {
    use poem::http::Method;

    use super::*;

    #[test]
    fn methods_are_named_from_a_fixed_set() {
        assert_eq!(method_name(&Method::GET), "GET");
        assert_eq!(method_name(&Method::PATCH), "PATCH");
        // A client cannot add label values by inventing methods.
        let invented = Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(method_name(&invented), "_OTHER");
    }

    #[test]
    fn local_counters_count_each_label_set_and_show_in_the_exposition() {
        let config = crate::config::Config::from_args(Vec::<String>::new()).unwrap();
        let metrics = Metrics::new(&config).unwrap();
        for _ in 0..3 {
            metrics.record_proxy("http", "proxied");
        }
        metrics.record_proxy("websocket", "token_revoked");
        metrics.record_access_check("memory", "active");
        metrics.record_http("/proxy/{*path}", "GET", 200, Duration::from_millis(1));
        metrics.record_http("/proxy/{*path}", "GET", 200, Duration::from_millis(1));
        metrics.record_http("/proxy/{*path}", "GET", 404, Duration::from_millis(1));
        let text = metrics.render();
        let value = |name: &str, labels: &[&str]| {
            text.lines()
                .find(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
                .unwrap_or_else(|| panic!("no {name} with {labels:?} in\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned()
        };
        let proxy = "access_proxy_requests_total{";
        assert_eq!(
            value(proxy, &["outcome=\"proxied\"", "protocol=\"http\""]),
            "3"
        );
        assert_eq!(
            value(
                proxy,
                &["outcome=\"token_revoked\"", "protocol=\"websocket\""]
            ),
            "1"
        );
        let checks = "access_token_checks_total{";
        assert_eq!(
            value(checks, &["level=\"memory\"", "outcome=\"active\""]),
            "1"
        );
        let http = "http_server_requests_total{";
        let route = "http_route=\"/proxy/{*path}\"";
        assert_eq!(value(http, &[route, "status_code=\"200\""]), "2");
        assert_eq!(value(http, &[route, "status_code=\"404\""]), "1");
        // The histogram beside it still counts every request.
        let count = "http_server_request_duration_seconds_count{";
        assert_eq!(value(count, &[route, "status_code=\"200\""]), "2");
        // Label sets never counted are not reported.
        assert!(!text.contains("outcome=\"busy\""), "{text}");
        assert!(
            text.contains("# TYPE access_proxy_requests_total counter"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE http_server_requests_total counter"),
            "{text}"
        );
    }
}
