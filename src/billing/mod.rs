//! Billing: Stripe plans, Checkout, and webhooks applied once, with each paid period's coins
//! in the ledger.
//!
//! - Plans are ours; each gets a Stripe Product and, under the lookup key
//!   `tessera_plan_<id>`, the Price that currently sells it. Prices are immutable: new terms
//!   make a new Price that takes the lookup key over, and the old one is deactivated
//!   (subscribers keep theirs until they change plan).
//! - `startCheckout` maps the user to a Stripe customer first, then opens a hosted Checkout.
//!   Coming back through `/billing/return` syncs at once, before any webhook.
//! - Webhooks are verified over the raw body ([`webhook`]), stored once by event id, and
//!   processed by a job that does not trust the payload: it re-reads the customer's
//!   subscriptions (and the invoice) from Stripe's API and writes what it says
//!   ([`service::sync_customer`]), so reordered or repeated deliveries cannot regress state.
//! - A paid invoice is one `payments` row (unique invoice id) and, for a subscription, the
//!   plan's coin allowance `system:plans` → user (`plan-allowance:<invoice id>`); an
//!   upgrade's proration invoice adds only what the period has not had yet.

pub mod api;
pub mod config;
pub mod entity;
pub mod graphql;
pub mod http;
pub mod service;
pub mod webhook;

use chrono::{DateTime, Duration, Utc};

use crate::config::Config;

/// Prefix of a plan's Price lookup key.
pub const LOOKUP_PREFIX: &str = "tessera_plan_";

pub fn lookup_key(plan: uuid::Uuid) -> String {
    format!("{LOOKUP_PREFIX}{plan}")
}

/// Billing's long-lived parts, shared through `AppState`.
pub struct BillingState {
    /// The Stripe client; `None` until `STRIPE_SECRET_KEY` is set.
    pub client: Option<stripe::Client>,
    pub webhook_secrets: Vec<String>,
    pub grace: Duration,
    /// Periods, grace and reminders read this clock (tests move it).
    pub clock: crate::platform::clock::Clock,
    /// Wakes this instance's event processor when a webhook was stored.
    pub wake: tokio::sync::Notify,
}

impl BillingState {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let billing = &config.billing;
        let client = match &billing.stripe_secret_key {
            None => None,
            Some(key) => {
                install_crypto_provider();
                Some(
                    stripe::ClientBuilder::new(key.expose())
                        .url(billing.stripe_api_base.clone())
                        .timeout(billing.stripe_timeout.0)
                        .app_info("tessera", Some(env!("CARGO_PKG_VERSION").to_owned()), None)
                        .build()
                        .map_err(|e| anyhow::anyhow!("STRIPE_SECRET_KEY / STRIPE_API_BASE: {e}"))?,
                )
            }
        };
        if billing.stripe_public_key.is_some() {
            tracing::info!("STRIPE_PUBLIC_KEY is set and unused: hosted Checkout needs none");
        }
        let webhook_secrets = billing.webhook_secrets();
        if client.is_some() && webhook_secrets.is_empty() {
            tracing::warn!(
                "STRIPE_SECRET_KEY is set but STRIPE_WEBHOOK_SECRET is not: webhooks are refused, and state follows only from the return redirect and the sweep"
            );
        }
        Ok(Self {
            client,
            webhook_secrets,
            grace: Duration::days(i64::from(billing.billing_grace_days)),
            clock: Default::default(),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// The client, or NOT_CONFIGURED.
    pub fn client(&self) -> Result<&stripe::Client, crate::graphql::ApiError> {
        self.client
            .as_ref()
            .ok_or_else(|| crate::graphql::ApiError::not_configured("billing"))
    }
}

/// With both of rustls's providers in the tree, building a TLS client panics unless one is
/// the process default (P25): make it ring, once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Statuses whose subscription still runs (it may be renewed or resumed).
pub const LIVE_STATUSES: [&str; 4] = ["active", "trialing", "past_due", "paused"];

/// Whether a subscription gives access at `now`: active or trialing until its period ends
/// (plus the grace, so a renewal a little late cuts nothing), past due for the grace only.
/// A renewal whose charge failed has moved the period on already, so a past-due grace runs
/// from the start of the period it failed to pay for.
pub fn is_active(
    status: &str,
    period_start: DateTime<Utc>,
    period_end: DateTime<Utc>,
    grace: Duration,
    now: DateTime<Utc>,
) -> bool {
    match status {
        "active" | "trialing" => now < period_end + grace,
        "past_due" => now < period_start + grace && now < period_end + grace,
        _ => false,
    }
}

/// What a user's plan gives them now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entitlement {
    pub plan_id: uuid::Uuid,
    pub tier: i32,
    pub until: DateTime<Utc>,
}

/// The plan a user's active subscription gives them, if any (other domains ask this).
pub async fn entitlement(
    state: &crate::app::AppState,
    user: uuid::Uuid,
) -> Result<Option<Entitlement>, sea_orm::DbErr> {
    let Some(sub) = service::current_subscription(state.db.conn(), user).await? else {
        return Ok(None);
    };
    let now = state.billing.clock.now();
    if !is_active(
        &sub.status,
        sub.current_period_start,
        sub.current_period_end,
        state.billing.grace,
        now,
    ) {
        return Ok(None);
    }
    let Some(plan_id) = sub.plan_id else {
        return Ok(None);
    };
    let plan = service::plan_by_id(state.db.conn(), plan_id).await?;
    Ok(plan.map(|p| Entitlement {
        plan_id,
        tier: p.tier,
        until: sub.current_period_end + state.billing.grace,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_follows_status_period_and_grace() {
        let start = Utc::now();
        let end = start + Duration::days(30);
        let grace = Duration::days(3);
        let at = |days: i64| start + Duration::days(days);
        assert!(is_active("active", start, end, grace, at(29)));
        assert!(is_active("active", start, end, grace, at(32)));
        assert!(!is_active("active", start, end, grace, at(33)));
        assert!(is_active("trialing", start, end, grace, at(1)));
        // Past due: the grace from the start of the unpaid period, not its end.
        assert!(is_active("past_due", start, end, grace, at(2)));
        assert!(!is_active("past_due", start, end, grace, at(4)));
        assert!(!is_active("past_due", start, end, grace, at(29)));
        for status in [
            "canceled",
            "incomplete",
            "incomplete_expired",
            "unpaid",
            "paused",
        ] {
            assert!(!is_active(status, start, end, grace, at(1)), "{status}");
        }
    }
}
