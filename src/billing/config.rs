//! Billing settings (flattened into [`crate::config::Config`]).

use clap::Args;

use crate::config::{HumanDuration, Secret};

#[derive(Debug, Clone, Args)]
pub struct BillingConfig {
    /// Stripe's secret API key (`sk_…`). Billing is off until it is set.
    #[arg(long, env = "STRIPE_SECRET_KEY", value_name = "STRIPE_SECRET_KEY")]
    pub stripe_secret_key: Option<Secret>,

    /// Webhook signing secrets (`whsec_…`), comma-separated while rotating. Webhooks are
    /// verified whenever one is set, even before the API key is.
    #[arg(
        long,
        env = "STRIPE_WEBHOOK_SECRET",
        value_name = "STRIPE_WEBHOOK_SECRET"
    )]
    pub stripe_webhook_secret: Option<Secret>,

    /// Base URL of Stripe's API (a loopback fake in tests).
    #[arg(
        long,
        env = "STRIPE_API_BASE",
        value_name = "STRIPE_API_BASE",
        default_value = "https://api.stripe.com/"
    )]
    pub stripe_api_base: String,

    /// Accepted and unused: hosted Checkout needs no publishable key.
    #[arg(long, env = "STRIPE_PUBLIC_KEY", value_name = "STRIPE_PUBLIC_KEY")]
    pub stripe_public_key: Option<String>,

    /// How long a call to Stripe may take before it counts as unavailable.
    #[arg(
        long,
        env = "STRIPE_TIMEOUT",
        value_name = "STRIPE_TIMEOUT",
        default_value = "10s"
    )]
    pub stripe_timeout: HumanDuration,

    /// Days a past-due subscription keeps its access after its period ends.
    #[arg(
        long,
        env = "BILLING_GRACE_DAYS",
        value_name = "BILLING_GRACE_DAYS",
        default_value_t = 3
    )]
    pub billing_grace_days: u32,

    /// Seconds between sweeps (lapsed subscriptions, reminders, missed events).
    #[arg(
        long,
        env = "BILLING_SWEEP_INTERVAL_S",
        value_name = "BILLING_SWEEP_INTERVAL_S",
        default_value_t = 300
    )]
    pub billing_sweep_interval_s: u64,

    /// Stripe sessions (Checkout, Billing Portal) a user may open, as `COUNT/PERIOD`: each
    /// is a call to Stripe.
    #[arg(
        long,
        env = "BILLING_SESSION_RATE",
        value_name = "BILLING_SESSION_RATE",
        default_value = "10/1m"
    )]
    pub billing_session_rate: crate::ads::config::RateSetting,
}

impl BillingConfig {
    /// The webhook secrets, in order.
    pub fn webhook_secrets(&self) -> Vec<String> {
        self.stripe_webhook_secret
            .as_ref()
            .map(|s| {
                s.expose()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}
