//! Access-token and proxy settings (flattened into [`crate::config::Config`]).

use std::path::PathBuf;

use clap::Args;
use url::Url;

use crate::config::{ConfigError, HumanDuration, Secret};

#[cfg(not(debug_assertions))]
const CHECK_TIME: &str = "1ms";
#[cfg(debug_assertions)]
const CHECK_TIME: &str = "25ms";

#[derive(Debug, Clone, Args)]
pub struct AccessConfig {
    /// Durations on offer and their prices in coins, `HOURS:PRICE` comma-separated.
    #[arg(
        long,
        env = "ACCESS_TOKEN_PRICES",
        value_name = "ACCESS_TOKEN_PRICES",
        default_value = "1:10,12:100,24:180,168:1000,720:3600"
    )]
    pub access_token_prices: String,

    /// Root keys that sign access tokens: `ID:ed25519-private/HEX`, comma-separated; the
    /// first signs new tokens, the others still verify (rotation). A bare key is id 1.
    /// Unset: generated once into DATA_DIR/access-keys.json.
    #[arg(
        long,
        env = "ACCESS_TOKEN_ROOT_KEY",
        value_name = "ACCESS_TOKEN_ROOT_KEY"
    )]
    pub access_token_root_key: Option<Secret>,

    /// Most unexpired, unrevoked tokens a user may hold.
    #[arg(
        long,
        env = "ACCESS_TOKEN_MAX_ACTIVE",
        value_name = "ACCESS_TOKEN_MAX_ACTIVE",
        default_value_t = 20
    )]
    pub access_token_max_active: u32,

    /// Time budget of one token's checks (P20); a request whose checks run longer is
    /// answered 503 `busy`. Optimized builds get 1 ms; unoptimized ones (tests,
    /// `cargo run`) run the same rules many times slower and get 25 ms.
    #[arg(
        long,
        env = "ACCESS_TOKEN_CHECK_TIME",
        value_name = "ACCESS_TOKEN_CHECK_TIME",
        default_value = CHECK_TIME
    )]
    pub access_token_check_time: HumanDuration,

    /// Where the proxy forwards (`http://…` or `https://…`). Unset: the proxy is off.
    #[arg(
        long,
        env = "ACCESS_PROXY_UPSTREAM",
        value_name = "ACCESS_PROXY_UPSTREAM"
    )]
    pub access_proxy_upstream: Option<Url>,

    /// A host name whose every path is proxied (no `/proxy` prefix, no rewriting).
    #[arg(long, env = "ACCESS_PROXY_HOST", value_name = "ACCESS_PROXY_HOST")]
    pub access_proxy_host: Option<String>,

    /// Name of the cookie that `POST /access/authenticate` sets.
    #[arg(
        long,
        env = "ACCESS_PROXY_COOKIE",
        value_name = "ACCESS_PROXY_COOKIE",
        default_value = "tessera_access"
    )]
    pub access_proxy_cookie: String,

    /// Key of the `X-Tessera-Assertion` HMAC the upstream checks. Unset: generated into
    /// DATA_DIR/access-keys.json.
    #[arg(
        long,
        env = "ACCESS_PROXY_ASSERTION_SECRET",
        value_name = "ACCESS_PROXY_ASSERTION_SECRET"
    )]
    pub access_proxy_assertion_secret: Option<Secret>,

    /// Extra CA certificates (PEM) trusted for an https upstream (pages and WebSockets).
    #[arg(
        long,
        env = "ACCESS_PROXY_UPSTREAM_CA_FILE",
        value_name = "ACCESS_PROXY_UPSTREAM_CA_FILE"
    )]
    pub access_proxy_upstream_ca_file: Option<PathBuf>,

    #[arg(
        long,
        env = "ACCESS_PROXY_CONNECT_TIMEOUT",
        value_name = "ACCESS_PROXY_CONNECT_TIMEOUT",
        default_value = "5s"
    )]
    pub access_proxy_connect_timeout: HumanDuration,

    /// Longest wait for the upstream's response headers.
    #[arg(
        long,
        env = "ACCESS_PROXY_RESPONSE_TIMEOUT",
        value_name = "ACCESS_PROXY_RESPONSE_TIMEOUT",
        default_value = "30s"
    )]
    pub access_proxy_response_timeout: HumanDuration,

    /// Longest silence inside a response body.
    #[arg(
        long,
        env = "ACCESS_PROXY_IDLE_TIMEOUT",
        value_name = "ACCESS_PROXY_IDLE_TIMEOUT",
        default_value = "60s"
    )]
    pub access_proxy_idle_timeout: HumanDuration,

    /// Longest silence on a proxied WebSocket (never past the token's expiry).
    #[arg(
        long,
        env = "ACCESS_PROXY_WS_IDLE_TIMEOUT",
        value_name = "ACCESS_PROXY_WS_IDLE_TIMEOUT",
        default_value = "10m"
    )]
    pub access_proxy_ws_idle_timeout: HumanDuration,

    /// Largest request body forwarded.
    #[arg(
        long,
        env = "ACCESS_PROXY_MAX_BODY_BYTES",
        value_name = "ACCESS_PROXY_MAX_BODY_BYTES",
        default_value_t = 64 * 1024 * 1024
    )]
    pub access_proxy_max_body_bytes: u64,

    /// Requests per second allowed per token.
    #[arg(
        long,
        env = "ACCESS_PROXY_RATE_LIMIT",
        value_name = "ACCESS_PROXY_RATE_LIMIT",
        default_value_t = 50
    )]
    pub access_proxy_rate_limit: u32,

    /// Open WebSockets allowed per token.
    #[arg(
        long,
        env = "ACCESS_PROXY_MAX_WEBSOCKETS",
        value_name = "ACCESS_PROXY_MAX_WEBSOCKETS",
        default_value_t = 8
    )]
    pub access_proxy_max_websockets: u32,

    /// Path mode: rewrite the upstream's own absolute URLs in HTML, CSS and JavaScript
    /// bodies to their `/proxy` address (streamed; such responses lose Content-Length and
    /// are requested uncompressed).
    #[arg(
        long,
        env = "ACCESS_PROXY_REWRITE_BODIES",
        value_name = "ACCESS_PROXY_REWRITE_BODIES",
        default_value_t = false
    )]
    pub access_proxy_rewrite_bodies: bool,
}

impl AccessConfig {
    /// The offered durations and prices, in the order configured.
    pub fn prices(&self) -> Result<Vec<(i32, i64)>, String> {
        let mut prices = Vec::new();
        for entry in self.access_token_prices.split(',') {
            let (hours, price) = entry
                .trim()
                .split_once(':')
                .ok_or_else(|| format!("'{entry}' is not HOURS:PRICE"))?;
            let hours: i32 = hours
                .trim()
                .parse()
                .map_err(|_| format!("'{hours}' is not a number of hours"))?;
            let price: i64 = price
                .trim()
                .parse()
                .map_err(|_| format!("'{price}' is not a price"))?;
            if hours <= 0 || price < 0 {
                return Err("hours must be positive and prices not negative".into());
            }
            if prices.iter().any(|(h, _)| *h == hours) {
                return Err(format!("{hours} hours is listed twice"));
            }
            prices.push((hours, price));
        }
        Ok(prices)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |variable, message: String| Err(ConfigError { variable, message });
        if let Err(e) = self.prices() {
            return err("ACCESS_TOKEN_PRICES", e);
        }
        if let Some(url) = &self.access_proxy_upstream
            && (!matches!(url.scheme(), "http" | "https") || url.host().is_none())
        {
            return err(
                "ACCESS_PROXY_UPSTREAM",
                "must be an http:// or https:// URL".into(),
            );
        }
        if self.access_token_max_active == 0 {
            return err("ACCESS_TOKEN_MAX_ACTIVE", "must be at least 1".into());
        }
        if self.access_proxy_rate_limit == 0 || self.access_proxy_max_websockets == 0 {
            return err(
                "ACCESS_PROXY_RATE_LIMIT",
                "proxy limits must be at least 1".into(),
            );
        }
        if self.access_proxy_cookie.is_empty()
            || !self
                .access_proxy_cookie
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return err(
                "ACCESS_PROXY_COOKIE",
                "must be letters, digits, '_' or '-'".into(),
            );
        }
        if let Some(key) = &self.access_token_root_key
            && let Err(e) = super::tokens::parse_root_keys(key.expose())
        {
            return err("ACCESS_TOKEN_ROOT_KEY", e);
        }
        Ok(())
    }
}
