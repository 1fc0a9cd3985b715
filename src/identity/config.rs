//! Identity settings (flattened into [`crate::config::Config`]).

use clap::Args;

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
