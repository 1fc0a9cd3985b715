//! Builds the application state and the HTTP routes, and runs the server until shut down.
//!
//! Start-up is linear and logged: database (migrated when asked), kv, state, routes, then
//! the listener. [`Application::build`] does everything that can fail before serving, so
//! both `main` and the test harness get an error instead of a half-started server;
//! [`Application::run`] serves until the [`CancellationToken`] fires, then drains in-flight
//! requests, closes WebSockets with a close frame, and releases connections.

use std::{net::SocketAddr, sync::Arc};

use chrono::{DateTime, Utc};
use poem::{
    EndpointExt, Route,
    middleware::{Compression, Cors},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    config::Config,
    graphql::{self, AppSchema},
    platform::{
        db::Db,
        http::{Observed, health, metrics, ready},
        kv::{self, Kv},
        telemetry::Metrics,
    },
};

/// Everything a request handler or background task may need. Cheap to clone: one `Arc`
/// (poem clones it into every request's extensions).
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

pub struct AppStateInner {
    pub config: Arc<Config>,
    pub db: Db,
    pub kv: Arc<dyn Kv>,
    pub metrics: Metrics,
    /// Cancelled when the server begins to shut down.
    pub shutdown: CancellationToken,
    /// Open WebSocket connections, awaited at shutdown.
    pub ws_tracker: TaskTracker,
    pub started_at: DateTime<Utc>,
    /// Origins a browser may call from (PUBLIC_URL's and CORS_ALLOWED_ORIGINS).
    pub allowed_origins: Arc<Vec<String>>,
    pub identity: Arc<crate::identity::Identity>,
    pub access: Arc<crate::access::AccessState>,
    pub ads: Arc<crate::ads::AdsState>,
    pub billing: Arc<crate::billing::BillingState>,
    pub mailer: Arc<crate::platform::mail::Mailer>,
    /// Session revocations seen by this instance, for open WebSockets.
    pub revocations: tokio::sync::broadcast::Sender<crate::identity::auth::Revocation>,
}

/// A server that is ready to accept connections.
pub struct Application {
    state: AppState,
    schema: AppSchema,
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
}

impl Application {
    /// Connects to the database and kv store (migrating when configured) and binds nothing
    /// new: `listener` is already bound (port 0 in tests).
    pub async fn build(config: Config, listener: tokio::net::TcpListener) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        let local_addr = listener.local_addr()?;

        let db = Db::connect(&config).await?;
        tracing::info!(backend = db.backend().as_str(), url = ?config.database_url, "database connected");
        if config.run_migrations {
            db.migrate_up().await?;
            tracing::info!("migrations applied");
        }
        if let Err(e) = crate::wallet::service::ensure_system_accounts(db.conn()).await {
            // Not fatal: the first transfer that needs one opens it.
            tracing::warn!(error = %e, "could not open the system accounts");
        }
        let kv = kv::connect(&config).await?;
        tracing::info!(backend = kv.backend(), "kv store connected");

        let identity = Arc::new(crate::identity::Identity::new(&config)?);
        let access = Arc::new(crate::access::AccessState::new(&config)?);
        let ads = Arc::new(crate::ads::AdsState::new(&config)?);
        let billing = Arc::new(crate::billing::BillingState::new(&config)?);
        let state = AppState(Arc::new(AppStateInner {
            identity,
            access,
            ads,
            billing,
            mailer: Arc::new(crate::platform::mail::Mailer::new(&config.mail)?),
            revocations: tokio::sync::broadcast::channel(1024).0,
            metrics: Metrics::new(&config)?,
            allowed_origins: Arc::new(config.allowed_origins()),
            config,
            db,
            kv,
            shutdown: CancellationToken::new(),
            ws_tracker: TaskTracker::new(),
            started_at: Utc::now(),
        }));
        let schema = graphql::build_schema(&state, true);
        Ok(Self {
            state,
            schema,
            listener,
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` is cancelled, then shuts down gracefully.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self {
            state,
            schema,
            listener,
            local_addr,
        } = self;
        let routes = routes(&state, schema);
        let relay = tokio::spawn(crate::identity::auth::relay_revocations(state.clone()));
        let flusher = tokio::spawn(crate::identity::run_last_used_flusher(state.clone()));
        let access_relay = tokio::spawn(crate::access::service::relay_revocations(state.clone()));
        let access_flusher = tokio::spawn(crate::access::service::run_last_used_flusher(
            state.clone(),
            state.config.identity.session_touch_interval.0,
        ));
        let sweeper = tokio::spawn(crate::wallet::service::run_expiry_sweeper(
            state.clone(),
            std::time::Duration::from_secs(15),
        ));
        let vps_sweeper = tokio::spawn(crate::vps::service::run_sweeper(
            state.clone(),
            state.config.vps.vps_sweep_interval.0,
        ));
        let billing_processor = tokio::spawn(crate::billing::service::run_processor(state.clone()));
        let billing_sweeper = tokio::spawn(crate::billing::service::run_sweeper(state.clone()));
        let embedded_worker = state
            .config
            .embedded_worker_enabled()
            .then(|| tokio::spawn(crate::vps::worker::run_embedded(state.clone(), local_addr)));
        let grace = state.config.shutdown_timeout.0;
        tracing::info!(addr = %local_addr, public_url = %state.config.public_url(), "serving");

        let server_shutdown = state.shutdown.clone();
        let signal = {
            let shutdown = shutdown.clone();
            let server_shutdown = server_shutdown.clone();
            async move {
                shutdown.cancelled().await;
                tracing::info!("shutting down: draining in-flight requests");
                server_shutdown.cancel();
            }
        };
        let options = crate::platform::server::ServerOptions {
            idle_timeout: state.config.http_idle_timeout.0,
            grace,
        };
        let served = crate::platform::server::serve(listener, routes, signal, options).await;
        // The HTTP side is done; WebSockets got their close frames when the token fired.
        server_shutdown.cancel();
        state.ws_tracker.close();
        if tokio::time::timeout(grace, state.ws_tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some WebSockets did not close in time");
        }
        let _ = relay.await;
        let _ = flusher.await;
        let _ = sweeper.await;
        let _ = vps_sweeper.await;
        let _ = billing_processor.await;
        let _ = billing_sweeper.await;
        if let Some(worker) = embedded_worker {
            let _ = worker.await;
        }
        let _ = access_relay.await;
        let _ = access_flusher.await;
        state.kv.shutdown().await;
        state.db.clone().close().await;
        tracing::info!("stopped");
        served.map_err(Into::into)
    }
}

/// Every route, each wrapped with its name for metrics and spans.
pub fn routes(state: &AppState, schema: AppSchema) -> impl poem::Endpoint + 'static {
    let proxy = |route: &'static str| {
        crate::access::proxy::ProxyEndpoint {
            state: state.clone(),
        }
        .with(Observed::new(route, state).without_body_limit())
    };
    crate::access::proxy::ProxySwitch {
        host: state.config.access.access_proxy_host.clone(),
        host_proxy: proxy("/{*path} (proxy host)"),
        path_root: proxy("/proxy").with(cors(state)),
        path_proxy: proxy("/proxy/{*path}").with(cors(state)),
        rest: app_routes(state, schema),
    }
}

/// The site's CORS policy (path-mode proxy requests get it too, as part of the site).
fn cors(state: &AppState) -> Cors {
    Cors::new()
        .allow_origins(state.allowed_origins.iter().map(String::as_str))
        .allow_methods(["GET", "POST", "OPTIONS"])
        .allow_headers(["content-type", "authorization", "x-request-id"])
        .expose_headers(["x-request-id"])
        .allow_credentials(true)
        .max_age(600)
}

/// The routes of the site itself (everything but the proxy's).
fn app_routes(state: &AppState, schema: AppSchema) -> impl poem::Endpoint + 'static {
    Route::new()
        .at(
            "/graphql",
            poem::get(graphql::http::endpoint)
                .post(graphql::http::endpoint)
                .with(Compression::new())
                .with(Observed::new("/graphql", state)),
        )
        .at(
            "/graphql/ws",
            poem::get(graphql::ws::endpoint).with(Observed::new("/graphql/ws", state)),
        )
        .at(
            "/verify-email",
            poem::get(crate::identity::http::verify_email_page)
                .with(Observed::new("/verify-email", state)),
        )
        .at(
            "/reset-password",
            poem::get(crate::identity::http::reset_password_page)
                .with(Observed::new("/reset-password", state)),
        )
        .at(
            "/auth/:provider/login",
            poem::get(crate::identity::http::oauth_login)
                .with(Observed::new("/auth/{provider}/login", state)),
        )
        .at(
            "/auth/:provider/callback",
            poem::get(crate::identity::http::oauth_callback)
                .with(Observed::new("/auth/{provider}/callback", state)),
        )
        .at(
            "/access/authenticate",
            poem::post(crate::access::proxy::access_authenticate)
                .with(Observed::new("/access/authenticate", state)),
        )
        .at(
            "/access/status",
            poem::get(crate::access::proxy::access_status)
                .with(Observed::new("/access/status", state)),
        )
        .at(
            "/access/logout",
            poem::delete(crate::access::proxy::access_logout)
                .with(Observed::new("/access/logout", state)),
        )
        .at(
            "/workers/heartbeat",
            poem::post(crate::vps::workers::heartbeat)
                .with(Observed::new("/workers/heartbeat", state)),
        )
        .at(
            "/workers/jobs",
            poem::get(crate::vps::workers::jobs).with(Observed::new("/workers/jobs", state)),
        )
        .at(
            "/workers/events",
            poem::post(crate::vps::workers::events).with(Observed::new("/workers/events", state)),
        )
        .at(
            "/ads/ssv",
            poem::get(crate::ads::http::ssv_callback)
                .post(crate::ads::http::ssv_callback)
                .with(Observed::new("/ads/ssv", state)),
        )
        .at(
            "/ads/monetag/postback",
            poem::get(crate::ads::http::monetag_postback)
                .with(Observed::new("/ads/monetag/postback", state)),
        )
        .at(
            "/dev/ads/verifier-keys.json",
            poem::get(crate::ads::dev::verifier_keys)
                .with(Observed::new("/dev/ads/verifier-keys.json", state)),
        )
        .at(
            "/dev/ads/monetag.js",
            poem::get(crate::ads::dev::monetag_sdk)
                .with(Observed::new("/dev/ads/monetag.js", state)),
        )
        .at(
            "/dev/ads/gma/player",
            poem::get(crate::ads::dev::gma_player)
                .with(Observed::new("/dev/ads/gma/player", state)),
        )
        .at(
            "/dev/ads/gma/complete",
            poem::post(crate::ads::dev::gma_complete)
                .with(Observed::new("/dev/ads/gma/complete", state)),
        )
        .at(
            "/webhooks/stripe",
            poem::post(crate::billing::webhook::stripe_webhook)
                .with(Observed::new("/webhooks/stripe", state)),
        )
        .at(
            "/billing/return",
            poem::get(crate::billing::http::checkout_return)
                .with(Observed::new("/billing/return", state)),
        )
        .at(
            "/health",
            poem::get(health).with(Observed::new("/health", state)),
        )
        .at(
            "/ready",
            poem::get(ready).with(Observed::new("/ready", state)),
        )
        .at(
            "/metrics",
            poem::get(metrics)
                .with(Compression::new())
                .with(Observed::new("/metrics", state)),
        )
        .at(
            "/",
            poem::get(crate::platform::spa::spa)
                .head(crate::platform::spa::spa)
                .with(Observed::new("/", state)),
        )
        .at(
            "/*path",
            poem::get(crate::platform::spa::spa)
                .head(crate::platform::spa::spa)
                .with(Observed::new("/{*path} (app)", state)),
        )
        .with(cors(state))
        .data(state.clone())
        .data(graphql::http::HttpSchema {
            strict: graphql::build_schema(state, false),
            fast: graphql::build_schema_with(state, false, async_graphql::ValidationMode::Fast),
        })
        .data(schema)
        .data(Arc::new(graphql::cache::DocumentCache::new(512)))
        .catch_all_error(|err| async move { crate::platform::http::json_refusal(err) })
}
