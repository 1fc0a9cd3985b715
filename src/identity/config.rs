//! Identity settings (flattened into [`crate::config::Config`]).

use clap::Args;

use url::Url;

use crate::config::{ConfigError, HumanDuration, Secret};

#[derive(Debug, Clone, Args)]
pub struct IdentityConfig {
    /// Root key that signs session access tokens (`ed25519-private/<hex>`). Unset: generated
    /// once and kept in DATA_DIR/identity-keys.json (fine for one development instance; set it
    /// when running several).
    #[arg(long, env = "AUTH_TOKEN_KEY", value_name = "AUTH_TOKEN_KEY")]
    pub auth_token_key: Option<Secret>,

    /// Server secret (at least 32 bytes, hex) keying the HMACs of refresh tokens and codes.
    /// Unset: generated and kept beside the token key.
    #[arg(long, env = "AUTH_SECRET", value_name = "AUTH_SECRET")]
    pub auth_secret: Option<Secret>,

    /// Lifetime of an access token.
    #[arg(
        long,
        env = "ACCESS_TOKEN_TTL",
        value_name = "ACCESS_TOKEN_TTL",
        default_value = "15m"
    )]
    pub access_token_ttl: HumanDuration,

    /// Lifetime of a session (its refresh token), renewed by each refresh.
    #[arg(
        long,
        env = "REFRESH_TOKEN_TTL",
        value_name = "REFRESH_TOKEN_TTL",
        default_value = "30d"
    )]
    pub refresh_token_ttl: HumanDuration,

    /// Mark session cookies `Secure`. Unset: on when PUBLIC_URL is https.
    #[arg(long, env = "COOKIE_SECURE", value_name = "COOKIE_SECURE")]
    pub cookie_secure: Option<bool>,

    /// Emails promoted to admin when they register or sign in (comma-separated).
    #[arg(
        long,
        env = "ADMIN_EMAILS",
        value_name = "ADMIN_EMAILS",
        value_delimiter = ','
    )]
    pub admin_emails: Vec<String>,

    /// Argon2id memory cost in KiB.
    #[arg(
        long,
        env = "ARGON2_MEMORY_KIB",
        value_name = "ARGON2_MEMORY_KIB",
        default_value_t = 19_456
    )]
    pub argon2_memory_kib: u32,

    /// Argon2id passes.
    #[arg(
        long,
        env = "ARGON2_ITERATIONS",
        value_name = "ARGON2_ITERATIONS",
        default_value_t = 2
    )]
    pub argon2_iterations: u32,

    /// Argon2id lanes.
    #[arg(
        long,
        env = "ARGON2_PARALLELISM",
        value_name = "ARGON2_PARALLELISM",
        default_value_t = 1
    )]
    pub argon2_parallelism: u32,

    /// How often the last-use time of sessions is written (kept in memory between).
    #[arg(
        long,
        env = "SESSION_TOUCH_INTERVAL",
        value_name = "SESSION_TOUCH_INTERVAL",
        default_value = "60s"
    )]
    pub session_touch_interval: HumanDuration,

    /// Sign-in attempts allowed per client IP per minute.
    #[arg(
        long,
        env = "LOGIN_RATE_LIMIT_PER_IP",
        value_name = "LOGIN_RATE_LIMIT_PER_IP",
        default_value_t = 20
    )]
    pub login_rate_limit_per_ip: u32,

    /// Sign-in attempts allowed per email address per minute.
    #[arg(
        long,
        env = "LOGIN_RATE_LIMIT_PER_EMAIL",
        value_name = "LOGIN_RATE_LIMIT_PER_EMAIL",
        default_value_t = 5
    )]
    pub login_rate_limit_per_email: u32,

    /// Discord OAuth2 application id. Discord sign-in is on when this and the secret are set.
    #[arg(long, env = "DISCORD_CLIENT_ID", value_name = "DISCORD_CLIENT_ID")]
    pub discord_client_id: Option<String>,

    #[arg(
        long,
        env = "DISCORD_CLIENT_SECRET",
        value_name = "DISCORD_CLIENT_SECRET"
    )]
    pub discord_client_secret: Option<Secret>,

    /// Base of Discord's web and API endpoints (`/oauth2/authorize`, `/api/oauth2/token`,
    /// `/api/users/@me`).
    #[arg(
        long,
        env = "DISCORD_URL",
        value_name = "DISCORD_URL",
        default_value = "https://discord.com"
    )]
    pub discord_url: Url,

    /// Google OAuth client id. Google sign-in is on when this and the secret are set.
    #[arg(long, env = "GOOGLE_CLIENT_ID", value_name = "GOOGLE_CLIENT_ID")]
    pub google_client_id: Option<String>,

    #[arg(
        long,
        env = "GOOGLE_CLIENT_SECRET",
        value_name = "GOOGLE_CLIENT_SECRET"
    )]
    pub google_client_secret: Option<Secret>,

    /// OpenID Connect issuer for the `google` provider (any issuer with discovery works).
    #[arg(
        long,
        env = "GOOGLE_ISSUER_URL",
        value_name = "GOOGLE_ISSUER_URL",
        default_value = "https://accounts.google.com"
    )]
    pub google_issuer_url: Url,

    /// GitHub OAuth app client id. GitHub sign-in is on when this and the secret are set.
    #[arg(long, env = "GITHUB_CLIENT_ID", value_name = "GITHUB_CLIENT_ID")]
    pub github_client_id: Option<String>,

    #[arg(
        long,
        env = "GITHUB_CLIENT_SECRET",
        value_name = "GITHUB_CLIENT_SECRET"
    )]
    pub github_client_secret: Option<Secret>,

    /// Base of GitHub's web endpoints (`/login/oauth/authorize`, `/login/oauth/access_token`).
    #[arg(
        long,
        env = "GITHUB_URL",
        value_name = "GITHUB_URL",
        default_value = "https://github.com"
    )]
    pub github_url: Url,

    /// Base of GitHub's REST API (`/user`, `/user/emails`).
    #[arg(
        long,
        env = "GITHUB_API_URL",
        value_name = "GITHUB_API_URL",
        default_value = "https://api.github.com"
    )]
    pub github_api_url: Url,
}

impl IdentityConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |variable, message: &str| {
            Err(ConfigError {
                variable,
                message: message.to_owned(),
            })
        };
        if let Some(key) = &self.auth_token_key
            && key.expose().parse::<biscuit_auth::PrivateKey>().is_err()
        {
            return err(
                "AUTH_TOKEN_KEY",
                "must be an Ed25519 private key as ed25519-private/<64 hex>",
            );
        }
        if let Some(secret) = &self.auth_secret {
            match hex::decode(secret.expose()) {
                Ok(bytes) if bytes.len() >= 32 => {}
                _ => {
                    return err(
                        "AUTH_SECRET",
                        "must be at least 32 bytes written as hex (64+ characters)",
                    );
                }
            }
        }
        if self.session_touch_interval.0.is_zero() {
            return err("SESSION_TOUCH_INTERVAL", "must be more than 0");
        }
        if self.access_token_ttl.0.as_secs() < 30 {
            return err("ACCESS_TOKEN_TTL", "must be at least 30s");
        }
        if self.refresh_token_ttl.0 <= self.access_token_ttl.0 {
            return err("REFRESH_TOKEN_TTL", "must be longer than ACCESS_TOKEN_TTL");
        }
        if argon2::Params::new(
            self.argon2_memory_kib,
            self.argon2_iterations,
            self.argon2_parallelism,
            None,
        )
        .is_err()
        {
            return err(
                "ARGON2_MEMORY_KIB",
                "invalid Argon2 parameters (memory ≥ 8 × parallelism KiB, iterations ≥ 1, parallelism ≥ 1)",
            );
        }
        if self.login_rate_limit_per_ip == 0 || self.login_rate_limit_per_email == 0 {
            return err("LOGIN_RATE_LIMIT_PER_IP", "rate limits must be at least 1");
        }
        for (variable, id, secret, url) in [
            (
                "DISCORD_CLIENT_ID",
                &self.discord_client_id,
                &self.discord_client_secret,
                &self.discord_url,
            ),
            (
                "GOOGLE_CLIENT_ID",
                &self.google_client_id,
                &self.google_client_secret,
                &self.google_issuer_url,
            ),
            (
                "GITHUB_CLIENT_ID",
                &self.github_client_id,
                &self.github_client_secret,
                &self.github_url,
            ),
        ] {
            if id.is_some() != secret.is_some() {
                return err(
                    variable,
                    "set both the client id and its secret, or neither",
                );
            }
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return err(variable, "the provider's URL must be http:// or https://");
            }
        }
        if !matches!(self.github_api_url.scheme(), "http" | "https") {
            return err("GITHUB_API_URL", "must be an http:// or https:// URL");
        }
        for email in &self.admin_emails {
            if !email.contains('@') {
                return err("ADMIN_EMAILS", "each entry must be an email address");
            }
        }
        Ok(())
    }

    pub fn is_admin_email(&self, email: &str) -> bool {
        self.admin_emails
            .iter()
            .any(|e| e.trim().eq_ignore_ascii_case(email))
    }
}
