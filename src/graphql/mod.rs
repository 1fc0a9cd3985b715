//! The GraphQL schema: one root merged from each domain's Query, Mutation and Subscription,
//! with depth and complexity limits, switchable introspection, and the [`observe`] extension
//! (tracing, metrics, error codes). Transport lives in [`http`] and [`ws`].
//!
//! A domain adds its `#[derive(Default)]` `XQuery` to [`Query`] (and likewise for mutations
//! and subscriptions); `schema.graphql` is regenerated with `tessera export-schema`.

pub mod cache;
pub mod error;
pub mod http;
pub mod observe;
pub mod pagination;
pub mod ws;

use async_graphql::{
    Context, MergedObject, MergedSubscription, Object, Schema, SchemaBuilder, SimpleObject,
};
use chrono::{DateTime, Utc};

pub use error::{ApiError, ErrorCode};

use crate::access::graphql::{AccessAdminQuery, AccessMutation, AccessQuery};
use crate::ads::graphql::{AdsAdminQuery, AdsMutation, AdsQuery};
use crate::billing::graphql::{
    BillingAdminQuery, BillingMutation, BillingQuery, BillingSubscriptionRoot,
};
use crate::{
    app::AppState,
    identity::{
        auth::AuthContextExt,
        graphql::{IdentityMutation, IdentityQuery},
    },
    vps::graphql::{VpsAdminQuery, VpsMutation, VpsQuery, VpsSubscription},
    wallet::graphql::{WalletAdminQuery, WalletMutation, WalletSubscription},
};

/// What every resolver may ask of the request that carried it.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub request_id: String,
    /// The socket peer.
    pub peer: Option<std::net::SocketAddr>,
    /// The client: the peer, or from a trusted proxy the nearest untrusted address in
    /// `X-Forwarded-For`.
    pub client_ip: Option<std::net::IpAddr>,
    pub user_agent: Option<String>,
    /// `Authorization` header (HTTP) or `connection_init` payload (WebSocket), unverified.
    pub authorization: Option<String>,
    /// The raw `Cookie` header, for session cookies.
    pub cookies: Option<String>,
    /// Client hints, ASN and client signature, when the request carried any (boxed: most
    /// requests carry none, and every WebSocket connection keeps its meta).
    pub client: Option<Box<ClientHeaders>>,
}

const CLIENT_SIGNATURE: poem::http::HeaderName =
    poem::http::HeaderName::from_static("x-client-signature");

/// Request headers the ads domain reads: what makes up a device, and the client's proof.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHeaders {
    /// `Sec-CH-UA*` headers, (lower-case name, value).
    pub hints: Vec<(String, String)>,
    /// The client's autonomous system, from `ADS_ASN_HEADER` sent by a trusted proxy.
    pub asn: Option<String>,
    /// `X-Client-Signature`.
    pub signature: Option<String>,
}

impl ClientHeaders {
    /// Reads them from `headers`; `None` when there are none. The ASN header counts only
    /// when the peer is a trusted proxy.
    pub fn read(
        headers: &poem::http::HeaderMap,
        asn_header: Option<&str>,
        peer_trusted: bool,
    ) -> Option<Box<ClientHeaders>> {
        let mut out = ClientHeaders::default();
        for (name, value) in headers {
            if name.as_str().starts_with("sec-ch-ua")
                && let Ok(v) = value.to_str()
                && out.hints.len() < 16
            {
                out.hints.push((name.as_str().to_owned(), v.to_owned()));
            }
        }
        if peer_trusted && let Some(h) = asn_header {
            out.asn = headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned());
        }
        out.signature = headers
            .get(CLIENT_SIGNATURE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (out != ClientHeaders::default()).then(|| Box::new(out))
    }
}

/// Facts about the running server.
#[derive(SimpleObject)]
pub struct ServerInfo {
    /// Version of the server package.
    version: &'static str,
    /// `sqlite` or `postgres`.
    database_backend: &'static str,
    /// `memory` (single instance) or `redis` (shared between instances).
    kv_backend: &'static str,
    /// When this instance started.
    started_at: DateTime<Utc>,
}

#[derive(Default)]
pub struct PlatformQuery;

#[Object]
impl PlatformQuery {
    /// Version and backends of the server answering.
    async fn server_info(&self, ctx: &Context<'_>) -> async_graphql::Result<ServerInfo> {
        let state = ctx.data::<AppState>()?;
        Ok(ServerInfo {
            version: env!("CARGO_PKG_VERSION"),
            database_backend: state.db.backend().as_str(),
            kv_backend: state.kv.backend(),
            started_at: state.started_at,
        })
    }
}

#[derive(MergedObject, Default)]
pub struct Query(
    PlatformQuery,
    IdentityQuery,
    AccessQuery,
    VpsQuery,
    AdsQuery,
    BillingQuery,
    AdminRoot,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    IdentityMutation,
    WalletMutation,
    AccessMutation,
    VpsMutation,
    AdsMutation,
    BillingMutation,
);

#[derive(MergedSubscription, Default)]
pub struct Subscription(WalletSubscription, VpsSubscription, BillingSubscriptionRoot);

/// Everything only admins may read, one field per domain.
#[derive(MergedObject, Default)]
pub struct AdminQuery(
    WalletAdminQuery,
    AccessAdminQuery,
    VpsAdminQuery,
    AdsAdminQuery,
    BillingAdminQuery,
);

#[derive(Default)]
pub struct AdminRoot;

#[Object]
impl AdminRoot {
    /// Admin-only reads (FORBIDDEN for everyone else).
    async fn admin(&self, ctx: &Context<'_>) -> async_graphql::Result<AdminQuery> {
        ctx.admin()?;
        Ok(AdminQuery::default())
    }
}

pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// The schema's shape, without runtime data: what `export-schema` prints.
pub fn schema_builder() -> SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
}

/// The SDL of the schema, as written to `schema.graphql`.
pub fn sdl() -> String {
    schema_builder().finish().sdl()
}

/// The schema the server runs, with its limits and data. `observed` adds the extension that
/// traces, counts and maps errors of each operation (the WebSocket transport needs it; the
/// HTTP handler does the same itself).
pub fn build_schema(state: &AppState, observed: bool) -> AppSchema {
    build_schema_with(state, observed, async_graphql::ValidationMode::Strict)
}

/// [`build_schema`] with a validation mode (`Fast` only for documents already validated).
pub fn build_schema_with(
    state: &AppState,
    observed: bool,
    mode: async_graphql::ValidationMode,
) -> AppSchema {
    let config = &state.config;
    let mut builder = schema_builder()
        .validation_mode(mode)
        .data(state.clone())
        .limit_depth(config.graphql_max_depth)
        .limit_complexity(config.graphql_max_complexity);
    if observed {
        builder = builder.extension(observe::Observe::new(
            state.metrics.clone(),
            config.graphql_introspection,
        ));
    }
    if !config.graphql_introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}
