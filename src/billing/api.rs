//! The calls billing makes to Stripe, through async-stripe's typed requests, and the few
//! facts we keep from each answer. Every create carries an idempotency key made from our
//! own ids, so a retried call (ours or the client's) cannot create a second object.
//!
//! This speaks the API version the crate pins ([`stripe_shared::version::VERSION`]):
//! periods live on subscription items, an invoice names its subscription under
//! `parent.subscription_details`, and proration previews come from `create_preview`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use stripe::{Client, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};

use crate::graphql::ApiError;

/// What went wrong talking to Stripe.
#[derive(Debug, thiserror::Error)]
pub enum ApiFailure {
    /// Stripe is down, slow or unreachable (5xx, timeout, connection): try again later.
    #[error("Stripe is unavailable: {0}")]
    Unavailable(String),
    /// Stripe refused the request (4xx), with its error code when it gave one.
    #[error("Stripe refused the request ({status}): {message}")]
    Refused {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// The answer did not parse as the object asked for.
    #[error("Stripe's answer could not be read: {0}")]
    Malformed(String),
}

impl From<StripeError> for ApiFailure {
    fn from(err: StripeError) -> Self {
        match err {
            StripeError::Stripe(errors, status) if status < 500 && status != 429 => {
                ApiFailure::Refused {
                    status,
                    code: errors.code.as_ref().map(|c| c.as_str().to_owned()),
                    message: errors.message.clone().unwrap_or_default(),
                }
            }
            StripeError::Stripe(errors, status) => ApiFailure::Unavailable(format!(
                "{status}: {}",
                errors.message.clone().unwrap_or_default()
            )),
            StripeError::JSONDeserialize(m) => ApiFailure::Malformed(m),
            StripeError::ClientError(m) | StripeError::ConfigError(m) => ApiFailure::Unavailable(m),
            StripeError::Timeout => ApiFailure::Unavailable("timed out".into()),
        }
    }
}

impl From<ApiFailure> for ApiError {
    fn from(err: ApiFailure) -> Self {
        match err {
            ApiFailure::Unavailable(m) => {
                tracing::warn!(error = %m, "Stripe unavailable");
                ApiError::unavailable("billing")
            }
            other => ApiError::internal(other),
        }
    }
}

pub type Result<T> = std::result::Result<T, ApiFailure>;

/// Once, under this idempotency key when there is one.
fn strategy(key: Option<&str>) -> Result<RequestStrategy> {
    match key {
        None => Ok(RequestStrategy::Once),
        Some(key) => IdempotencyKey::new(key)
            .map(RequestStrategy::Idempotent)
            .map_err(|e| ApiFailure::Malformed(e.to_string())),
    }
}

fn at(ts: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(ts, 0).unwrap_or_default()
}

/// A subscription as billing keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSubscription {
    pub id: String,
    pub customer: String,
    pub status: String,
    pub price_id: String,
    /// The plan the Price was made for (its `plan_id` metadata).
    pub plan_id: Option<uuid::Uuid>,
    /// The subscription item's item id (a plan change names it).
    pub item_id: String,
    pub current_period_start: DateTime<Utc>,
    pub current_period_end: DateTime<Utc>,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub created: DateTime<Utc>,
}

impl RemoteSubscription {
    fn from_stripe(sub: &stripe_shared::Subscription) -> Option<Self> {
        // One item per subscription here: the plan's Price.
        let item = sub.items.data.first()?;
        let plan_id = item
            .price
            .metadata
            .get("plan_id")
            .and_then(|v| uuid::Uuid::parse_str(v).ok())
            .or_else(|| {
                item.price
                    .lookup_key
                    .as_deref()
                    .and_then(|k| k.strip_prefix(super::LOOKUP_PREFIX))
                    .and_then(|v| uuid::Uuid::parse_str(v).ok())
            });
        Some(Self {
            id: sub.id.as_str().to_owned(),
            customer: sub.customer.id().as_str().to_owned(),
            status: sub.status.as_str().to_owned(),
            price_id: item.price.id.as_str().to_owned(),
            plan_id,
            item_id: item.id.as_str().to_owned(),
            current_period_start: at(item.current_period_start),
            current_period_end: at(item.current_period_end),
            cancel_at_period_end: sub.cancel_at_period_end,
            canceled_at: sub.canceled_at.map(at),
            ended_at: sub.ended_at.map(at),
            created: at(sub.created),
        })
    }
}

/// One line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLine {
    pub description: String,
    /// The Price the line bills, when it bills one.
    pub price_id: Option<String>,
    pub amount_cents: i64,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
}

/// An invoice as billing keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteInvoice {
    pub id: String,
    pub customer: Option<String>,
    pub subscription: Option<String>,
    pub status: String,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub currency: String,
    pub hosted_invoice_url: Option<String>,
    pub billing_reason: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    pub lines: Vec<RemoteLine>,
}

impl RemoteInvoice {
    fn from_stripe(inv: &stripe_shared::Invoice) -> Self {
        Self {
            id: inv
                .id
                .as_ref()
                .map(|i| i.as_str().to_owned())
                .unwrap_or_default(),
            customer: inv.customer.as_ref().map(|c| c.id().as_str().to_owned()),
            subscription: inv
                .parent
                .as_ref()
                .and_then(|p| p.subscription_details.as_ref())
                .map(|d| d.subscription.id().as_str().to_owned()),
            status: inv
                .status
                .as_ref()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            amount_due: inv.amount_due,
            amount_paid: inv.amount_paid,
            currency: inv.currency.to_string(),
            hosted_invoice_url: inv.hosted_invoice_url.clone(),
            billing_reason: inv.billing_reason.as_ref().map(|r| r.as_str().to_owned()),
            paid_at: inv.status_transitions.paid_at.map(at),
            lines: inv
                .lines
                .data
                .iter()
                .map(|l| RemoteLine {
                    description: l.description.clone().unwrap_or_default(),
                    price_id: l
                        .pricing
                        .as_ref()
                        .and_then(|p| p.price_details.as_ref())
                        .map(|d| d.price.id().as_str().to_owned()),
                    amount_cents: l.amount,
                    period_start: at(l.period.start),
                    period_end: at(l.period.end),
                })
                .collect(),
        }
    }

    /// The Price of the invoice's charge: its largest positive line's (an upgrade's
    /// proration bills the new Price there).
    pub fn charged_price(&self) -> Option<&str> {
        self.lines
            .iter()
            .filter(|l| l.amount_cents > 0)
            .max_by_key(|l| l.amount_cents)
            .and_then(|l| l.price_id.as_deref())
    }

    /// The end of the subscription period this invoice is for: the lines' latest end (a
    /// renewal's line and an upgrade's proration lines of one period all end with it).
    pub fn period_end(&self) -> Option<DateTime<Utc>> {
        self.lines.iter().map(|l| l.period_end).max()
    }
}

/// The plan a Price was made for (its `plan_id` metadata, or its lookup key).
pub async fn plan_of_price(client: &Client, price_id: &str) -> Result<Option<uuid::Uuid>> {
    use stripe_product::price::RetrievePrice;
    let price = RetrievePrice::new(price_id)
        .customize()
        .request_strategy(strategy(None)?)
        .send(client)
        .await?;
    Ok(price
        .metadata
        .get("plan_id")
        .and_then(|v| uuid::Uuid::parse_str(v).ok())
        .or_else(|| {
            price
                .lookup_key
                .as_deref()
                .and_then(|k| k.strip_prefix(super::LOOKUP_PREFIX))
                .and_then(|v| uuid::Uuid::parse_str(v).ok())
        }))
}

/// A Checkout Session as billing needs it.
#[derive(Debug, Clone)]
pub struct RemoteCheckout {
    pub id: String,
    pub url: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub customer: Option<String>,
    pub client_reference_id: Option<String>,
}

impl RemoteCheckout {
    fn from_stripe(s: &stripe_shared::CheckoutSession) -> Self {
        Self {
            id: s.id.as_str().to_owned(),
            url: s.url.clone(),
            expires_at: at(s.expires_at),
            customer: s.customer.as_ref().map(|c| c.id().as_str().to_owned()),
            client_reference_id: s.client_reference_id.clone(),
        }
    }
}

pub async fn create_customer(client: &Client, user_id: uuid::Uuid, email: &str) -> Result<String> {
    use stripe_core::customer::CreateCustomer;
    let metadata = HashMap::from([("user_id".to_owned(), user_id.to_string())]);
    let req = CreateCustomer::new().email(email).metadata(metadata);
    let customer = req
        .customize()
        .request_strategy(strategy(Some(&format!("tessera-customer-{user_id}")))?)
        .send(client)
        .await?;
    Ok(customer.id.as_str().to_owned())
}

/// The plan fields a Product and Price are made from.
pub struct PlanSpec<'a> {
    pub id: uuid::Uuid,
    pub name: &'a str,
    pub description: &'a str,
    pub price_cents: i64,
    pub currency: &'a str,
    pub interval: &'a str,
    pub active: bool,
}

pub async fn create_product(client: &Client, plan: &PlanSpec<'_>) -> Result<String> {
    use stripe_product::product::CreateProduct;
    let metadata = HashMap::from([("plan_id".to_owned(), plan.id.to_string())]);
    let mut req = CreateProduct::new(plan.name)
        .active(plan.active)
        .metadata(metadata);
    if !plan.description.is_empty() {
        req = req.description(plan.description);
    }
    let product = req
        .customize()
        .request_strategy(strategy(Some(&format!("tessera-product-{}", plan.id)))?)
        .send(client)
        .await?;
    Ok(product.id.as_str().to_owned())
}

pub async fn update_product(client: &Client, product_id: &str, plan: &PlanSpec<'_>) -> Result<()> {
    use stripe_product::product::UpdateProduct;
    let mut req = UpdateProduct::new(product_id)
        .name(plan.name)
        .active(plan.active);
    if !plan.description.is_empty() {
        req = req.description(plan.description);
    }
    req.customize()
        .request_strategy(strategy(None)?)
        .send(client)
        .await?;
    Ok(())
}

/// Creates the Price that sells `plan` now, taking over its lookup key.
pub async fn create_price(
    client: &Client,
    product_id: &str,
    plan: &PlanSpec<'_>,
) -> Result<String> {
    use stripe_product::price::{CreatePrice, CreatePriceRecurring, CreatePriceRecurringInterval};
    let interval = if plan.interval == "year" {
        CreatePriceRecurringInterval::Year
    } else {
        CreatePriceRecurringInterval::Month
    };
    let currency: stripe_types::Currency = plan
        .currency
        .parse()
        .map_err(|_| ApiFailure::Malformed(format!("unknown currency {}", plan.currency)))?;
    let metadata = HashMap::from([("plan_id".to_owned(), plan.id.to_string())]);
    let req = CreatePrice::new(currency)
        .unit_amount(plan.price_cents)
        .product(product_id)
        .recurring(CreatePriceRecurring::new(interval))
        .lookup_key(super::lookup_key(plan.id))
        .transfer_lookup_key(true)
        .metadata(metadata);
    let price = req
        .customize()
        .request_strategy(strategy(Some(&format!(
            "tessera-price-{}-{}-{}-{}",
            plan.id, plan.price_cents, plan.currency, plan.interval
        )))?)
        .send(client)
        .await?;
    Ok(price.id.as_str().to_owned())
}

pub async fn deactivate_price(client: &Client, price_id: &str) -> Result<()> {
    use stripe_product::price::UpdatePrice;
    UpdatePrice::new(price_id)
        .active(false)
        .customize()
        .request_strategy(strategy(None)?)
        .send(client)
        .await?;
    Ok(())
}

pub async fn create_checkout(
    client: &Client,
    attempt: uuid::Uuid,
    customer: &str,
    user_id: uuid::Uuid,
    price_id: &str,
    success_url: &str,
    cancel_url: &str,
) -> Result<RemoteCheckout> {
    use stripe_checkout::checkout_session::{
        CreateCheckoutSession, CreateCheckoutSessionLineItems,
    };
    let mut item = CreateCheckoutSessionLineItems::new();
    item.price = Some(price_id.to_owned());
    item.quantity = Some(1);
    let req = CreateCheckoutSession::new()
        .mode(stripe_shared::CheckoutSessionMode::Subscription)
        .customer(customer)
        .client_reference_id(user_id.to_string())
        .line_items(vec![item])
        .success_url(success_url)
        .cancel_url(cancel_url);
    let session = req
        .customize()
        .request_strategy(strategy(Some(&format!("tessera-checkout-{attempt}")))?)
        .send(client)
        .await?;
    Ok(RemoteCheckout::from_stripe(&session))
}

pub async fn retrieve_checkout(client: &Client, id: &str) -> Result<RemoteCheckout> {
    use stripe_checkout::checkout_session::RetrieveCheckoutSession;
    let session = RetrieveCheckoutSession::new(id)
        .customize()
        .request_strategy(strategy(None)?)
        .send(client)
        .await?;
    Ok(RemoteCheckout::from_stripe(&session))
}

/// The subscription Stripe answered with, which must carry its item.
fn one_subscription(sub: &stripe_shared::Subscription) -> Result<RemoteSubscription> {
    RemoteSubscription::from_stripe(sub)
        .ok_or_else(|| ApiFailure::Malformed("a subscription without items".into()))
}

/// Every subscription of a customer, whatever its status.
pub async fn list_subscriptions(
    client: &Client,
    customer: &str,
) -> Result<Vec<RemoteSubscription>> {
    use stripe_billing::subscription::{ListSubscription, ListSubscriptionStatus};
    let list = ListSubscription::new()
        .customer(customer)
        .status(ListSubscriptionStatus::All)
        .limit(100)
        .customize()
        .request_strategy(strategy(None)?)
        .send(client)
        .await?;
    Ok(list
        .data
        .iter()
        .filter_map(RemoteSubscription::from_stripe)
        .collect())
}

/// How a plan change is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proration {
    /// Charge (or credit) the difference for the rest of the period at once.
    Now,
    /// No proration: the new price applies from the next period.
    None,
}

pub async fn change_price(
    client: &Client,
    sub: &RemoteSubscription,
    price_id: &str,
    proration: Proration,
) -> Result<RemoteSubscription> {
    use stripe_billing::subscription::{
        UpdateSubscription, UpdateSubscriptionItems, UpdateSubscriptionPaymentBehavior,
        UpdateSubscriptionProrationBehavior,
    };
    let mut item = UpdateSubscriptionItems::new();
    item.id = Some(sub.item_id.clone());
    item.price = Some(price_id.to_owned());
    let behavior = match proration {
        Proration::Now => UpdateSubscriptionProrationBehavior::AlwaysInvoice,
        Proration::None => UpdateSubscriptionProrationBehavior::None,
    };
    let mut update = UpdateSubscription::new(sub.id.as_str())
        .items(vec![item])
        .proration_behavior(behavior);
    if proration == Proration::Now {
        // The new price applies only once its charge succeeds: a declined upgrade leaves the
        // subscription as it was instead of past due on the higher plan.
        update = update.payment_behavior(UpdateSubscriptionPaymentBehavior::PendingIfIncomplete);
    }
    let updated = update
        .customize()
        .request_strategy(strategy(None)?)
        .send(client)
        .await?;
    one_subscription(&updated)
}

pub async fn set_cancel_at_period_end(
    client: &Client,
    subscription: &str,
    cancel: bool,
) -> Result<RemoteSubscription> {
    use stripe_billing::subscription::UpdateSubscription;
    let updated = UpdateSubscription::new(subscription)
        .cancel_at_period_end(cancel)
        .customize()
        .request_strategy(strategy(None)?)
        .send(client)
        .await?;
    one_subscription(&updated)
}

pub async fn cancel_now(client: &Client, subscription: &str) -> Result<RemoteSubscription> {
    use stripe_billing::subscription::CancelSubscription;
    let canceled = CancelSubscription::new(subscription)
        .customize()
        .request_strategy(strategy(None)?)
        .send(client)
        .await?;
    one_subscription(&canceled)
}

/// What changing to `price_id` would invoice now.
pub async fn preview_change(
    client: &Client,
    sub: &RemoteSubscription,
    price_id: &str,
    proration: Proration,
) -> Result<RemoteInvoice> {
    use stripe_billing::invoice::{
        CreatePreviewInvoice, CreatePreviewInvoiceSubscriptionDetails,
        CreatePreviewInvoiceSubscriptionDetailsItems,
        CreatePreviewInvoiceSubscriptionDetailsProrationBehavior,
    };
    let mut item = CreatePreviewInvoiceSubscriptionDetailsItems::new();
    item.id = Some(sub.item_id.clone());
    item.price = Some(price_id.to_owned());
    let mut details = CreatePreviewInvoiceSubscriptionDetails::new();
    details.items = Some(vec![item]);
    details.proration_behavior = Some(match proration {
        Proration::Now => CreatePreviewInvoiceSubscriptionDetailsProrationBehavior::AlwaysInvoice,
        Proration::None => CreatePreviewInvoiceSubscriptionDetailsProrationBehavior::None,
    });
    let invoice = CreatePreviewInvoice::new()
        .customer(sub.customer.as_str())
        .subscription(sub.id.as_str())
        .subscription_details(details)
        .customize()
        .request_strategy(strategy(None)?)
        .send(client)
        .await?;
    Ok(RemoteInvoice::from_stripe(&invoice))
}

pub async fn retrieve_invoice(client: &Client, id: &str) -> Result<RemoteInvoice> {
    use stripe_billing::invoice::RetrieveInvoice;
    let invoice = RetrieveInvoice::new(id)
        .customize()
        .request_strategy(strategy(None)?)
        .send(client)
        .await?;
    Ok(RemoteInvoice::from_stripe(&invoice))
}

pub async fn create_portal(
    client: &Client,
    attempt: uuid::Uuid,
    customer: &str,
    return_url: &str,
) -> Result<String> {
    use stripe_billing::billing_portal_session::CreateBillingPortalSession;
    let session = CreateBillingPortalSession::new()
        .customer(customer)
        .return_url(return_url)
        .customize()
        .request_strategy(strategy(Some(&format!("tessera-portal-{attempt}")))?)
        .send(client)
        .await?;
    Ok(session.url)
}
