//! Every setting of the server, read once at start-up from flags, the environment and `.env`.
//!
//! Nothing else in the code reads the environment: the parsed [`Config`] is shared as
//! `Arc<Config>`. Each field's doc comment is its `--help` text. A value that does not parse
//! stops start-up with a message that names the variable (exit code 2, clap's usage-error
//! code); cross-field rules are checked by [`Config::validate`].

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use clap::{Args, ValueEnum};
use url::Url;

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable, coloured when the output is a terminal.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// A connection URL whose password never reaches logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password, for the driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        match Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("***"));
                url.to_string()
            }
            _ => self.0.clone(),
        }
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl FromStr for SecretUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
        Ok(Self(s.to_owned()))
    }
}

/// A duration written as a number with a unit: `500ms`, `30s`, `5m`, `1h`, `30d` (a bare number is seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("'{s}' is not a duration such as 500ms, 30s, 5m or 1h"))?;
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "" | "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            "d" => Duration::from_secs(n * 86_400),
            _ => return Err(format!("unknown unit '{unit}' (use ms, s, m, h or d)")),
        };
        Ok(Self(d))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

/// A secret setting: `Debug` prints `***`, so it never reaches logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err("must not be empty".into());
        }
        Ok(Self(s.trim().to_owned()))
    }
}

/// The server's settings. Every field is a flag and an environment variable.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address the HTTP server binds to.
    #[arg(
        long,
        env = "LISTEN_ADDR",
        value_name = "LISTEN_ADDR",
        default_value = "127.0.0.1:8000"
    )]
    pub listen_addr: SocketAddr,

    /// Externally visible base URL (links in mails, OAuth redirects, allowed WebSocket origin).
    /// Derived from LISTEN_ADDR when unset.
    #[arg(long, env = "PUBLIC_URL", value_name = "PUBLIC_URL")]
    pub public_url: Option<Url>,

    /// Database URL: sqlite://PATH?mode=rwc (embedded; a relative PATH resolves against the
    /// working directory) or postgres://USER:PASSWORD@HOST/DB.
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        default_value = "sqlite://data/tessera.db?mode=rwc"
    )]
    pub database_url: SecretUrl,

    /// Largest number of pooled database connections.
    #[arg(
        long,
        env = "DATABASE_MAX_CONNECTIONS",
        value_name = "DATABASE_MAX_CONNECTIONS",
        default_value_t = 10
    )]
    pub database_max_connections: u32,

    /// Connections the pool keeps open when idle.
    #[arg(
        long,
        env = "DATABASE_MIN_CONNECTIONS",
        value_name = "DATABASE_MIN_CONNECTIONS",
        default_value_t = 1
    )]
    pub database_min_connections: u32,

    /// How long to wait for a database connection (connect or acquire from the pool).
    #[arg(
        long,
        env = "DATABASE_CONNECT_TIMEOUT",
        value_name = "DATABASE_CONNECT_TIMEOUT",
        default_value = "5s"
    )]
    pub database_connect_timeout: HumanDuration,

    /// SQLite only: how long a write waits for another writer's lock before failing.
    #[arg(
        long,
        env = "SQLITE_BUSY_TIMEOUT",
        value_name = "SQLITE_BUSY_TIMEOUT",
        default_value = "5s"
    )]
    pub sqlite_busy_timeout: HumanDuration,

    /// Apply pending migrations at start-up.
    #[arg(
        long,
        env = "RUN_MIGRATIONS",
        value_name = "RUN_MIGRATIONS",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub run_migrations: bool,

    /// Redis URL (redis://[:PASSWORD@]HOST:PORT/DB). Unset: in-process kv and pub/sub,
    /// which only suits a single instance.
    #[arg(long, env = "REDIS_URL", value_name = "REDIS_URL")]
    pub redis_url: Option<SecretUrl>,

    /// Prefix of every key and pub/sub channel this server uses in the kv store.
    #[arg(
        long,
        env = "KV_PREFIX",
        value_name = "KV_PREFIX",
        default_value = "tessera:"
    )]
    pub kv_prefix: String,

    /// Redis connections in the command pool (pub/sub uses one more).
    #[arg(
        long,
        env = "REDIS_POOL_SIZE",
        value_name = "REDIS_POOL_SIZE",
        default_value_t = 4
    )]
    pub redis_pool_size: usize,

    /// Timeout of a single kv command; past it the command fails as UNAVAILABLE.
    #[arg(
        long,
        env = "KV_COMMAND_TIMEOUT",
        value_name = "KV_COMMAND_TIMEOUT",
        default_value = "2s"
    )]
    pub kv_command_timeout: HumanDuration,

    /// Messages from Redis pub/sub this instance may hold before handing them on (one queue
    /// for every channel); past it, subscribers are told they lost some.
    #[arg(
        long,
        env = "PUBSUB_CAPACITY",
        value_name = "PUBSUB_CAPACITY",
        default_value_t = 1024
    )]
    pub pubsub_capacity: usize,

    /// Messages one channel keeps for its slowest local subscriber before that subscriber is
    /// told it lost some (and catches up from the database). Every channel with a
    /// subscriber holds this many slots from the start (one per open session page or
    /// wallet), so it stays small.
    #[arg(
        long,
        env = "PUBSUB_CHANNEL_CAPACITY",
        value_name = "PUBSUB_CHANNEL_CAPACITY",
        default_value_t = 32
    )]
    pub pubsub_channel_capacity: usize,

    /// Log format.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_name = "LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    pub log_format: LogFormat,

    /// Log filter in tracing's EnvFilter syntax, e.g. `info,tessera=debug`.
    #[arg(
        long,
        env = "RUST_LOG",
        value_name = "RUST_LOG",
        default_value = "info"
    )]
    pub log_filter: String,

    /// OTLP/HTTP endpoint of an OpenTelemetry collector (e.g. http://127.0.0.1:4318).
    /// Traces are exported only when set.
    #[arg(
        long,
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        value_name = "OTEL_EXPORTER_OTLP_ENDPOINT"
    )]
    pub otel_endpoint: Option<Url>,

    /// Service name reported with traces and metrics.
    #[arg(
        long,
        env = "OTEL_SERVICE_NAME",
        value_name = "OTEL_SERVICE_NAME",
        default_value = "tessera"
    )]
    pub otel_service_name: String,

    /// Origins allowed to call the API from a browser (comma-separated, e.g.
    /// https://app.example.com). PUBLIC_URL's origin is always allowed.
    #[arg(
        long,
        env = "CORS_ALLOWED_ORIGINS",
        value_name = "CORS_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_allowed_origins: Vec<String>,

    /// Proxies whose `X-Forwarded-For` is believed (comma-separated CIDRs such as
    /// 10.0.0.0/8). Empty: the socket's peer is the client.
    #[arg(
        long,
        env = "TRUSTED_PROXIES",
        value_name = "TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Largest accepted request body in bytes; larger ones get 413.
    #[arg(
        long,
        env = "BODY_LIMIT_BYTES",
        value_name = "BODY_LIMIT_BYTES",
        default_value_t = 1_048_576
    )]
    pub body_limit_bytes: usize,

    /// Deepest selection nesting a GraphQL operation may have (introspection needs about 13).
    #[arg(
        long,
        env = "GRAPHQL_MAX_DEPTH",
        value_name = "GRAPHQL_MAX_DEPTH",
        default_value_t = 16
    )]
    pub graphql_max_depth: usize,

    /// Largest complexity score a GraphQL operation may have (one per field, times list sizes).
    #[arg(
        long,
        env = "GRAPHQL_MAX_COMPLEXITY",
        value_name = "GRAPHQL_MAX_COMPLEXITY",
        default_value_t = 1000
    )]
    pub graphql_max_complexity: usize,

    /// Answer introspection queries (GraphiQL needs them).
    #[arg(
        long,
        env = "GRAPHQL_INTROSPECTION",
        value_name = "GRAPHQL_INTROSPECTION",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub graphql_introspection: bool,

    /// How long a WebSocket client has to send `connection_init` before it is closed with 4408.
    #[arg(
        long,
        env = "GRAPHQL_WS_INIT_TIMEOUT",
        value_name = "GRAPHQL_WS_INIT_TIMEOUT",
        default_value = "10s"
    )]
    pub graphql_ws_init_timeout: HumanDuration,

    /// Ping a `graphql-transport-ws` client silent this long, and close it (3008) when it
    /// stays silent as long again (0 disables).
    #[arg(
        long,
        env = "GRAPHQL_WS_KEEPALIVE",
        value_name = "GRAPHQL_WS_KEEPALIVE",
        default_value = "60s"
    )]
    pub graphql_ws_keepalive: HumanDuration,

    /// Close a client's connection once it has been quiet (no byte either way) this long;
    /// a request in flight is answered first. WebSockets are not affected.
    #[arg(
        long,
        env = "HTTP_IDLE_TIMEOUT",
        value_name = "HTTP_IDLE_TIMEOUT",
        default_value = "75s"
    )]
    pub http_idle_timeout: HumanDuration,

    /// How long shutdown waits for in-flight requests before closing them.
    #[arg(
        long,
        env = "SHUTDOWN_TIMEOUT",
        value_name = "SHUTDOWN_TIMEOUT",
        default_value = "20s"
    )]
    pub shutdown_timeout: HumanDuration,

    #[command(flatten)]
    pub identity: crate::identity::config::IdentityConfig,

    #[command(flatten)]
    pub mail: crate::platform::mail::MailConfig,

    #[command(flatten)]
    pub access: crate::access::config::AccessConfig,

    #[command(flatten)]
    pub vps: crate::vps::config::VpsConfig,

    #[command(flatten)]
    pub ads: crate::ads::config::AdsConfig,

    #[command(flatten)]
    pub billing: crate::billing::config::BillingConfig,

    /// The built single-page app (`npm run build` in frontend/), served at `/`; relative to
    /// the working directory. A missing folder serves no app.
    #[arg(
        long,
        env = "SPA_DIR",
        value_name = "SPA_DIR",
        default_value = "frontend/dist"
    )]
    pub spa_dir: PathBuf,

    /// Folder for files the server writes itself (generated development keys); relative to the
    /// working directory.
    #[arg(
        long,
        env = "DATA_DIR",
        value_name = "DATA_DIR",
        default_value = "data"
    )]
    pub data_dir: PathBuf,
}

/// A setting that is well-formed on its own but wrong with the others.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

impl Config {
    /// Parses settings from these arguments alone (no environment), for tests and tools.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        use clap::Parser;
        let args = std::iter::once(std::ffi::OsString::from("tessera"))
            .chain(args.into_iter().map(Into::into));
        Wrapper::try_parse_from(args).map(|w| w.config)
    }

    /// Cross-field checks, run once at start-up.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |variable, message: &str| {
            Err(ConfigError {
                variable,
                message: message.to_owned(),
            })
        };
        let scheme = self.database_url.expose().split(':').next().unwrap_or("");
        if !matches!(scheme, "sqlite" | "postgres" | "postgresql") {
            return err(
                "DATABASE_URL",
                "scheme must be sqlite:// or postgres:// (e.g. sqlite://data/tessera.db?mode=rwc)",
            );
        }
        if let Some(redis) = &self.redis_url {
            let scheme = redis.expose().split(':').next().unwrap_or("");
            if !matches!(scheme, "redis" | "rediss") {
                return err(
                    "REDIS_URL",
                    "scheme must be redis:// (e.g. redis://127.0.0.1:6379)",
                );
            }
            if scheme == "rediss" {
                return err(
                    "REDIS_URL",
                    "TLS (rediss://) is not built in; reach Redis over a private network or a TLS sidecar",
                );
            }
        }
        if self.database_max_connections == 0 {
            return err("DATABASE_MAX_CONNECTIONS", "must be at least 1");
        }
        if self.database_min_connections > self.database_max_connections {
            return err(
                "DATABASE_MIN_CONNECTIONS",
                "must not exceed DATABASE_MAX_CONNECTIONS",
            );
        }
        if self.redis_pool_size == 0 {
            return err("REDIS_POOL_SIZE", "must be at least 1");
        }
        if self.http_idle_timeout.0 < std::time::Duration::from_millis(100) {
            return err("HTTP_IDLE_TIMEOUT", "must be at least 100ms");
        }
        if self.pubsub_capacity == 0 {
            return err("PUBSUB_CAPACITY", "must be at least 1");
        }
        if self.pubsub_channel_capacity == 0 {
            return err("PUBSUB_CHANNEL_CAPACITY", "must be at least 1");
        }
        if self.body_limit_bytes < 1024 {
            return err("BODY_LIMIT_BYTES", "must be at least 1024");
        }
        if self.vps.vps_max_live_sessions == 0 {
            return err("VPS_MAX_LIVE_SESSIONS", "must be at least 1");
        }
        if self.vps.embedded_worker_capacity == 0 {
            return err("EMBEDDED_WORKER_CAPACITY", "must be at least 1");
        }
        if self.vps.vps_sweep_interval.0.is_zero() {
            return err("VPS_SWEEP_INTERVAL", "must be longer than zero");
        }
        if self.graphql_max_depth == 0 {
            return err("GRAPHQL_MAX_DEPTH", "must be at least 1");
        }
        if self.graphql_max_complexity == 0 {
            return err("GRAPHQL_MAX_COMPLEXITY", "must be at least 1");
        }
        if let Some(url) = &self.public_url
            && (!matches!(url.scheme(), "http" | "https") || url.host().is_none())
        {
            return err(
                "PUBLIC_URL",
                "must be an http:// or https:// URL with a host",
            );
        }
        if let Some(url) = &self.otel_endpoint
            && !matches!(url.scheme(), "http" | "https")
        {
            return err(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "must be an http:// or https:// URL",
            );
        }
        self.identity.validate()?;
        self.mail.validate()?;
        self.access.validate()?;
        self.ads.validate(&self.public_url())?;
        for origin in &self.cors_allowed_origins {
            let parsed = Url::parse(origin.trim());
            let ok = matches!(&parsed, Ok(u) if matches!(u.scheme(), "http" | "https") && u.path() == "/");
            if !ok {
                return err(
                    "CORS_ALLOWED_ORIGINS",
                    "each entry must be an origin such as https://app.example.com",
                );
            }
        }
        Ok(())
    }

    /// PUBLIC_URL, or `http://LISTEN_ADDR` (with `localhost` for an unspecified address).
    pub fn public_url(&self) -> Url {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        let host = match self.listen_addr.ip() {
            ip if ip.is_unspecified() || ip.is_loopback() => "localhost".to_owned(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        Url::parse(&format!("http://{host}:{}/", self.listen_addr.port()))
            .expect("an address always forms a valid URL")
    }

    /// Origins (scheme://host[:port]) a browser may call us from: PUBLIC_URL's and the CORS list.
    pub fn allowed_origins(&self) -> Vec<String> {
        let mut origins = vec![self.public_url().origin().ascii_serialization()];
        if self.public_url.is_none() {
            // The derived URL says `localhost`; a browser on 127.0.0.1 sends that instead.
            origins.push(format!("http://127.0.0.1:{}", self.listen_addr.port()));
        }
        for o in &self.cors_allowed_origins {
            if let Ok(url) = Url::parse(o.trim()) {
                origins.push(url.origin().ascii_serialization());
            }
        }
        origins.sort();
        origins.dedup();
        origins
    }

    /// Whether the server runs a simulated VPS worker itself: as set, or on with SQLite (the
    /// embedded default) and off with PostgreSQL.
    pub fn embedded_worker_enabled(&self) -> bool {
        self.vps
            .embedded_worker
            .unwrap_or_else(|| self.database_url.expose().starts_with("sqlite"))
    }

    /// Whether the dev ad fakes run (see `ADS_DEV_FAKES`).
    pub fn ads_dev_fakes(&self) -> bool {
        self.ads.dev_fakes(
            &self.public_url(),
            self.database_url.expose().starts_with("sqlite"),
        )
    }

    /// Which kv implementation these settings select.
    pub fn kv_backend(&self) -> &'static str {
        if self.redis_url.is_some() {
            "redis"
        } else {
            "memory"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(
            "500ms".parse::<HumanDuration>().unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!(
            "30".parse::<HumanDuration>().unwrap().0,
            Duration::from_secs(30)
        );
        assert_eq!(
            "5m".parse::<HumanDuration>().unwrap().0,
            Duration::from_secs(300)
        );
        assert_eq!(
            "2h".parse::<HumanDuration>().unwrap().0,
            Duration::from_secs(7200)
        );
        assert!("5 minutes".parse::<HumanDuration>().is_err());
        assert!("fast".parse::<HumanDuration>().is_err());
        assert_eq!(
            HumanDuration(Duration::from_millis(1500)).to_string(),
            "1500ms"
        );
    }

    #[test]
    fn secret_url_hides_password() {
        let url: SecretUrl = "postgres://app:hunter2@db:5432/tessera".parse().unwrap();
        assert_eq!(format!("{url:?}"), "postgres://app:***@db:5432/tessera");
        assert!(url.expose().contains("hunter2"));
    }

    #[test]
    fn defaults_are_valid_and_derive_public_url() {
        let mut config = Config::from_args(Vec::<String>::new()).unwrap();
        // The environment may carry REDIS_URL (CI sets it); the default is what is tested here.
        config.redis_url = None;
        config.validate().unwrap();
        assert_eq!(config.listen_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(config.public_url().as_str(), "http://localhost:8000/");
        assert!(
            config
                .allowed_origins()
                .contains(&"http://127.0.0.1:8000".to_owned())
        );
        assert_eq!(config.kv_backend(), "memory");
    }

    #[test]
    fn a_provider_needs_both_id_and_secret() {
        let config = Config::from_args(["--github-client-id", "abc"]).unwrap();
        let err = config.validate().unwrap_err();
        assert_eq!(err.variable, "GITHUB_CLIENT_ID");
        let config = Config::from_args([
            "--google-client-id",
            "abc",
            "--google-client-secret",
            "s3cret",
            "--google-issuer-url",
            "ftp://issuer.example",
        ])
        .unwrap();
        assert_eq!(config.validate().unwrap_err().variable, "GOOGLE_CLIENT_ID");
        let config = Config::from_args([
            "--discord-client-id",
            "abc",
            "--discord-client-secret",
            "s3cret",
        ])
        .unwrap();
        let mut config = config;
        config.redis_url = None;
        config.validate().unwrap();
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = Config::from_args(["--listen-addr", "nowhere"]).unwrap_err();
        assert!(err.to_string().contains("LISTEN_ADDR"), "{err}");
        assert_eq!(err.exit_code(), 2);

        let config = Config::from_args(["--database-url", "mysql://x/y"]).unwrap();
        let err = config.validate().unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");

        let config =
            Config::from_args(["--cors-allowed-origins", "https://a.example/path"]).unwrap();
        assert_eq!(
            config.validate().unwrap_err().variable,
            "CORS_ALLOWED_ORIGINS"
        );
    }
}
