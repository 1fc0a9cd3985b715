//! Billing's work: plans and their Stripe twins, Checkout, the event processor that syncs
//! from Stripe's API, payments with their allowance, mails, and the sweep.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, ExprTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, sea_query::Expr,
};
use serde_json::json;
use uuid::Uuid;

use super::{
    LIVE_STATUSES,
    api::{self, ApiFailure, PlanSpec, Proration, RemoteInvoice, RemoteSubscription},
    entity::{customer, mail, payment, plan, stripe_event, subscription},
    is_active,
};
use crate::{
    app::AppState,
    graphql::{ApiError, RequestMeta},
    platform::audit::{self, AuditEntry},
    wallet::service::{self as wallet, Account, SystemAccount, TransferKind, TransferRequest},
};

/// A failure of billing's work.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error(transparent)]
    Api(#[from] ApiFailure),
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Wallet(#[from] wallet::WalletError),
    #[error(transparent)]
    Refused(#[from] ApiError),
    /// Not yet possible (a customer no checkout has mapped yet): retried a few times.
    #[error("{0}")]
    NotYet(String),
}

impl BillingError {
    /// Worth retrying for as long as it takes: Stripe or the database was unavailable.
    fn transient(&self) -> bool {
        matches!(
            self,
            BillingError::Api(ApiFailure::Unavailable(_))
                | BillingError::Db(_)
                | BillingError::Wallet(wallet::WalletError::Db(_))
        )
    }
}

impl From<BillingError> for ApiError {
    fn from(err: BillingError) -> Self {
        match err {
            BillingError::Api(e) => e.into(),
            BillingError::Db(e) => e.into(),
            BillingError::Wallet(e) => ApiError::internal(e),
            BillingError::Refused(e) => e,
            BillingError::NotYet(m) => ApiError::internal(m),
        }
    }
}

pub type Result<T> = std::result::Result<T, BillingError>;

// ---------------------------------------------------------------------------------------
// Plans

pub async fn plan_by_id(
    conn: &impl ConnectionTrait,
    id: Uuid,
) -> std::result::Result<Option<plan::Model>, sea_orm::DbErr> {
    plan::Entity::find_by_id(id).one(conn).await
}

/// Plans on sale, cheapest tier first (archived ones too when asked).
pub async fn plans(
    conn: &impl ConnectionTrait,
    include_archived: bool,
) -> std::result::Result<Vec<plan::Model>, sea_orm::DbErr> {
    let mut q = plan::Entity::find();
    if !include_archived {
        q = q.filter(plan::Column::Active.eq(true));
    }
    q.order_by_asc(plan::Column::Tier)
        .order_by_asc(plan::Column::PriceCents)
        .order_by_asc(plan::Column::Id)
        .all(conn)
        .await
}

/// A plan as an admin writes it.
#[derive(Debug, Clone)]
pub struct PlanFields {
    pub name: String,
    pub tier: i32,
    pub description: String,
    pub price_cents: i64,
    pub currency: String,
    pub interval: String,
    pub coin_allowance: i64,
    pub active: bool,
}

impl PlanFields {
    /// Checks and normalizes (currency lower case).
    pub fn validate(mut self) -> std::result::Result<Self, ApiError> {
        self.name = self.name.trim().to_owned();
        if self.name.is_empty() || self.name.chars().count() > 100 {
            return Err(ApiError::bad_input(
                "invalid_name",
                "a plan's name has 1 to 100 characters",
            ));
        }
        if self.description.chars().count() > 1000 {
            return Err(ApiError::bad_input(
                "invalid_description",
                "a description has at most 1000 characters",
            ));
        }
        if self.price_cents < 0 {
            return Err(ApiError::bad_input(
                "negative_price",
                "a price cannot be negative",
            ));
        }
        if self.price_cents > 100_000_000 {
            return Err(ApiError::bad_input(
                "price_too_high",
                "a price is at most 1,000,000.00",
            ));
        }
        if self.coin_allowance < 0 {
            return Err(ApiError::bad_input(
                "negative_allowance",
                "a coin allowance cannot be negative",
            ));
        }
        self.currency = self.currency.trim().to_ascii_lowercase();
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(ApiError::bad_input(
                "invalid_currency",
                "a currency is a three-letter ISO 4217 code",
            ));
        }
        if self.currency.parse::<stripe_types::Currency>().is_err() {
            return Err(ApiError::bad_input(
                "invalid_currency",
                "Stripe does not know this currency",
            ));
        }
        Ok(self)
    }

    fn terms(&self) -> String {
        format!("{}:{}:{}", self.price_cents, self.currency, self.interval)
    }
}

fn spec(row: &plan::Model) -> PlanSpec<'_> {
    PlanSpec {
        id: row.id,
        name: &row.name,
        description: &row.description,
        price_cents: row.price_cents,
        currency: &row.currency,
        interval: &row.interval,
        active: row.active,
    }
}

fn terms_of(row: &plan::Model) -> String {
    format!("{}:{}:{}", row.price_cents, row.currency, row.interval)
}

/// Brings a plan's Product and Price in line with it: a Product made or updated, and a new
/// Price (taking the lookup key over, the old one deactivated) when its terms changed.
pub async fn sync_plan(state: &AppState, row: plan::Model) -> Result<plan::Model> {
    let client = state.billing.client()?;
    let product = match &row.stripe_product_id {
        None => api::create_product(client, &spec(&row)).await?,
        Some(id) => {
            api::update_product(client, id, &spec(&row)).await?;
            id.clone()
        }
    };
    let terms = terms_of(&row);
    let (price, old) =
        if row.stripe_price_id.is_some() && row.stripe_price_terms.as_deref() == Some(&terms) {
            (row.stripe_price_id.clone(), None)
        } else {
            let price = api::create_price(client, &product, &spec(&row)).await?;
            (Some(price), row.stripe_price_id.clone())
        };
    if let Some(old) = &old
        && Some(old) != price.as_ref()
        && let Err(e) = api::deactivate_price(client, old).await
    {
        // The lookup key has moved already; a still-active old Price sells nothing new.
        tracing::warn!(error = %e, price = %old, "could not deactivate a replaced Price");
    }
    let mut active: plan::ActiveModel = row.into();
    active.stripe_product_id = Set(Some(product));
    active.stripe_price_id = Set(price);
    active.stripe_price_terms = Set(Some(terms));
    active.updated_at = Set(Utc::now());
    Ok(active.update(state.db.conn()).await?)
}

/// `createPlan`: stored, audited, and synced to Stripe when it is configured.
pub async fn create_plan(
    state: &AppState,
    admin: Uuid,
    fields: PlanFields,
    meta: &RequestMeta,
) -> Result<plan::Model> {
    let fields = fields.validate()?;
    let now = Utc::now();
    let txn = state.db.begin_write().await?;
    let row = plan::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(fields.name.clone()),
        tier: Set(fields.tier),
        description: Set(fields.description.clone()),
        price_cents: Set(fields.price_cents),
        currency: Set(fields.currency.clone()),
        interval: Set(fields.interval.clone()),
        coin_allowance: Set(fields.coin_allowance),
        active: Set(fields.active),
        stripe_product_id: Set(None),
        stripe_price_id: Set(None),
        stripe_price_terms: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        AuditEntry::by(admin, "billing.plan.create", meta)
            .on("plan", row.id)
            .details(plan_details(&row)),
    )
    .await?;
    txn.commit().await?;
    tracing::info!(plan.id = %row.id, name = %row.name, "plan created");
    after_write(state, row).await
}

/// `updatePlan`: new terms make a new Price; subscribers keep theirs until they change.
pub async fn update_plan(
    state: &AppState,
    admin: Uuid,
    id: Uuid,
    fields: PlanFields,
    meta: &RequestMeta,
) -> Result<plan::Model> {
    let fields = fields.validate()?;
    let txn = state.db.begin_write().await?;
    let row = plan::Entity::find_by_id(id)
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| ApiError::not_found("plan"))?;
    let changed_terms = terms_of(&row) != fields.terms();
    let mut active: plan::ActiveModel = row.into();
    active.name = Set(fields.name);
    active.tier = Set(fields.tier);
    active.description = Set(fields.description);
    active.price_cents = Set(fields.price_cents);
    active.currency = Set(fields.currency);
    active.interval = Set(fields.interval);
    active.coin_allowance = Set(fields.coin_allowance);
    active.active = Set(fields.active);
    active.updated_at = Set(Utc::now());
    let row = active.update(&txn).await?;
    audit::record(
        &txn,
        AuditEntry::by(admin, "billing.plan.update", meta)
            .on("plan", row.id)
            .details(json!({"plan": plan_details(&row), "newPrice": changed_terms})),
    )
    .await?;
    txn.commit().await?;
    after_write(state, row).await
}

/// `archivePlan`: off sale (its Product inactive); subscribers keep it until they change.
pub async fn archive_plan(
    state: &AppState,
    admin: Uuid,
    id: Uuid,
    meta: &RequestMeta,
) -> Result<plan::Model> {
    let txn = state.db.begin_write().await?;
    let row = plan::Entity::find_by_id(id)
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| ApiError::not_found("plan"))?;
    let mut active: plan::ActiveModel = row.into();
    active.active = Set(false);
    active.updated_at = Set(Utc::now());
    let row = active.update(&txn).await?;
    audit::record(
        &txn,
        AuditEntry::by(admin, "billing.plan.archive", meta).on("plan", row.id),
    )
    .await?;
    txn.commit().await?;
    after_write(state, row).await
}

/// Syncs a written plan when Stripe is configured; the local write stands either way (an
/// admin can `syncPlansToStripe` later), but a failed sync is reported.
async fn after_write(state: &AppState, row: plan::Model) -> Result<plan::Model> {
    if state.billing.client.is_none() {
        return Ok(row);
    }
    let id = row.id;
    match sync_plan(state, row.clone()).await {
        Ok(synced) => Ok(synced),
        // The plan is saved: answer with it (its Price is behind, as `stripePriceId` or the
        // next Checkout shows) rather than an error a retry would turn into a second plan.
        Err(BillingError::Api(e)) => {
            tracing::warn!(error = %e, plan.id = %id, "plan saved but not synced to Stripe; it syncs before its next sale or with syncPlansToStripe");
            Ok(plan_by_id(state.db.conn(), id).await?.unwrap_or(row))
        }
        Err(e) => Err(e),
    }
}

/// The plan with a Price that sells its current terms (synced now when it has none, or when
/// an earlier sync of new terms failed).
async fn on_sale(state: &AppState, plan: plan::Model) -> Result<plan::Model> {
    if plan.stripe_price_id.is_some()
        && plan.stripe_price_terms.as_deref() == Some(&terms_of(&plan))
    {
        return Ok(plan);
    }
    sync_plan(state, plan).await
}

/// `syncPlansToStripe`: every plan, archived ones too.
pub async fn sync_all_plans(
    state: &AppState,
    admin: Uuid,
    meta: &RequestMeta,
) -> Result<Vec<plan::Model>> {
    state.billing.client()?;
    let mut out = Vec::new();
    for row in plans(state.db.conn(), true).await? {
        out.push(sync_plan(state, row).await?);
    }
    audit::record(
        state.db.conn(),
        AuditEntry::by(admin, "billing.plan.sync", meta).details(json!({"plans": out.len()})),
    )
    .await?;
    Ok(out)
}

fn plan_details(row: &plan::Model) -> serde_json::Value {
    json!({
        "name": row.name, "tier": row.tier, "priceCents": row.price_cents,
        "currency": row.currency, "interval": row.interval,
        "coinAllowance": row.coin_allowance, "active": row.active,
    })
}

// ---------------------------------------------------------------------------------------
// Customers and subscriptions

pub async fn customer_of(
    conn: &impl ConnectionTrait,
    user: Uuid,
) -> std::result::Result<Option<customer::Model>, sea_orm::DbErr> {
    customer::Entity::find_by_id(user).one(conn).await
}

/// The user's Stripe customer, created (and mapped) on first use.
pub async fn ensure_customer(state: &AppState, user: Uuid) -> Result<String> {
    if let Some(found) = customer_of(state.db.conn(), user).await? {
        return Ok(found.stripe_customer_id);
    }
    let client = state.billing.client()?;
    let email = crate::identity::entity::user::Entity::find_by_id(user)
        .one(state.db.conn())
        .await?
        .and_then(|u| u.email)
        .unwrap_or_default();
    // The idempotency key is the user's id: two racing calls get one customer.
    let id = api::create_customer(client, user, &email).await?;
    customer::Entity::insert(customer::ActiveModel {
        user_id: Set(user),
        stripe_customer_id: Set(id),
        created_at: Set(Utc::now()),
    })
    .on_conflict_do_nothing_on([customer::Column::UserId])
    .exec(state.db.conn())
    .await?;
    let found = customer_of(state.db.conn(), user)
        .await?
        .ok_or_else(|| ApiError::internal("customer mapping vanished"))?;
    Ok(found.stripe_customer_id)
}

/// The subscription that describes the user now: the newest still running, else the
/// newest of all.
pub async fn current_subscription(
    conn: &impl ConnectionTrait,
    user: Uuid,
) -> std::result::Result<Option<subscription::Model>, sea_orm::DbErr> {
    let rows = subscription::Entity::find()
        .filter(subscription::Column::UserId.eq(user))
        .order_by_desc(subscription::Column::CreatedAt)
        .limit(20)
        .all(conn)
        .await?;
    let running = rows
        .iter()
        .find(|r| LIVE_STATUSES.contains(&r.status.as_str()))
        .cloned();
    Ok(running.or_else(|| rows.into_iter().next()))
}

/// The pub/sub channel of a user's subscription changes.
pub fn channel(user: Uuid) -> String {
    format!("billing.changed.{user}")
}

async fn notify(state: &AppState, user: Uuid) {
    if let Err(e) = state.kv.publish(&channel(user), b"").await {
        tracing::warn!(error = %e, "could not publish a subscription change");
    }
}

/// Mails a change of state earns (each once per subscription, kind and period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    Started,
    Renewed,
    PaymentFailed,
    ActionRequired,
    CancelScheduled,
    CancelReminder,
    Resumed,
    Ended,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::Started => "started",
            MailKind::Renewed => "renewed",
            MailKind::PaymentFailed => "payment_failed",
            MailKind::ActionRequired => "action_required",
            MailKind::CancelScheduled => "cancel_scheduled",
            MailKind::CancelReminder => "cancel_reminder",
            MailKind::Resumed => "resumed",
            MailKind::Ended => "ended",
        }
    }
}

/// What a sync wrote for one subscription.
struct Written {
    user: Uuid,
    changed: bool,
    mails: Vec<(MailKind, String)>,
}

/// Writes what Stripe says about one subscription; mails follow from the difference.
async fn apply_remote(
    state: &AppState,
    user: Uuid,
    remote: &RemoteSubscription,
) -> Result<Written> {
    let conn = state.db.conn();
    let plan_id = match remote.plan_id {
        Some(id) if plan_by_id(conn, id).await?.is_some() => Some(id),
        _ => plan::Entity::find()
            .filter(plan::Column::StripePriceId.eq(remote.price_id.as_str()))
            .one(conn)
            .await?
            .map(|p| p.id),
    };
    let now = Utc::now();
    let txn = state.db.begin_write().await?;
    let old = subscription::Entity::find_by_id(remote.id.as_str())
        .lock_exclusive()
        .one(&txn)
        .await?;
    let row = subscription::ActiveModel {
        id: Set(remote.id.clone()),
        user_id: Set(user),
        customer_id: Set(remote.customer.clone()),
        plan_id: Set(plan_id),
        price_id: Set(remote.price_id.clone()),
        item_id: Set(remote.item_id.clone()),
        status: Set(remote.status.clone()),
        current_period_start: Set(remote.current_period_start),
        current_period_end: Set(remote.current_period_end),
        cancel_at_period_end: Set(remote.cancel_at_period_end),
        canceled_at: Set(remote.canceled_at),
        ended_at: Set(remote.ended_at),
        created_at: Set(remote.created),
        updated_at: Set(now),
    };
    let same = old.as_ref().is_some_and(|o| {
        o.status == remote.status
            && o.plan_id == plan_id
            && o.price_id == remote.price_id
            && o.current_period_start == remote.current_period_start
            && o.current_period_end == remote.current_period_end
            && o.cancel_at_period_end == remote.cancel_at_period_end
            && o.ended_at == remote.ended_at
    });
    if !same {
        match &old {
            None => {
                row.insert(&txn).await?;
            }
            Some(_) => {
                row.update(&txn).await?;
            }
        }
    }
    txn.commit().await?;
    let period = remote.current_period_end.timestamp().to_string();
    let was_live = old
        .as_ref()
        .is_some_and(|o| LIVE_STATUSES.contains(&o.status.as_str()));
    let is_live = LIVE_STATUSES.contains(&remote.status.as_str());
    let mut mails = Vec::new();
    if !was_live
        && matches!(remote.status.as_str(), "active" | "trialing")
        && old.as_ref().is_none_or(|o| o.ended_at.is_none())
    {
        mails.push((MailKind::Started, "start".to_owned()));
    }
    if is_live {
        let was_canceling = old.as_ref().is_some_and(|o| o.cancel_at_period_end);
        if remote.cancel_at_period_end && !was_canceling {
            mails.push((MailKind::CancelScheduled, period.clone()));
        }
        if !remote.cancel_at_period_end && was_canceling {
            mails.push((MailKind::Resumed, period.clone()));
        }
    }
    if !is_live
        && was_live
        && matches!(
            remote.status.as_str(),
            "canceled" | "unpaid" | "incomplete_expired"
        )
    {
        mails.push((MailKind::Ended, "end".to_owned()));
    }
    Ok(Written {
        user,
        changed: !same,
        mails,
    })
}

/// Re-reads a customer's subscriptions from Stripe and writes them: what every webhook,
/// the return redirect and the sweep come down to. Returns the user, if the customer is ours.
pub async fn sync_customer(state: &AppState, customer_id: &str) -> Result<Option<Uuid>> {
    let client = state.billing.client()?;
    let Some(mapping) = customer::Entity::find()
        .filter(customer::Column::StripeCustomerId.eq(customer_id))
        .one(state.db.conn())
        .await?
    else {
        tracing::warn!(customer = %customer_id, "a Stripe customer we never mapped");
        return Ok(None);
    };
    let remote = api::list_subscriptions(client, customer_id).await?;
    let mut changed = false;
    for sub in &remote {
        let written = apply_remote(state, mapping.user_id, sub).await?;
        changed |= written.changed;
        for (kind, period) in written.mails {
            send_mail(state, written.user, &sub.id, kind, &period, None).await;
        }
    }
    if changed {
        notify(state, mapping.user_id).await;
    }
    Ok(Some(mapping.user_id))
}

// ---------------------------------------------------------------------------------------
// Checkout, return, changes

/// Refuses a user opening Stripe sessions faster than `BILLING_SESSION_RATE`.
async fn session_rate(state: &AppState, user: Uuid) -> Result<()> {
    let rate = state.config.billing.billing_session_rate.0;
    let decision = state
        .kv
        .rate_limit(&format!("billing:sessions:{user}"), rate)
        .await
        .map_err(ApiError::from)?;
    if !decision.allowed {
        return Err(ApiError::rate_limited(decision.retry_after)
            .with_reason("rate_limited")
            .into());
    }
    Ok(())
}

/// A Checkout to subscribe to `plan_id`.
pub async fn start_checkout(
    state: &AppState,
    user: Uuid,
    plan_id: Uuid,
) -> Result<api::RemoteCheckout> {
    let client = state.billing.client()?;
    let plan = plan_by_id(state.db.conn(), plan_id)
        .await?
        .filter(|p| p.active)
        .ok_or_else(|| ApiError::not_found("plan"))?;
    if let Some(sub) = current_subscription(state.db.conn(), user).await?
        && LIVE_STATUSES.contains(&sub.status.as_str())
        && is_active(
            &sub.status,
            sub.current_period_start,
            sub.current_period_end,
            state.billing.grace,
            state.billing.clock.now(),
        )
    {
        return Err(ApiError::conflict(
            "already_subscribed",
            "a subscription is active: use changePlan",
        )
        .into());
    }
    let plan = on_sale(state, plan).await?;
    let price = plan
        .stripe_price_id
        .clone()
        .ok_or_else(|| ApiError::internal("plan without a Price after sync"))?;
    session_rate(state, user).await?;
    let customer = ensure_customer(state, user).await?;
    let base = state.config.public_url();
    let base = base.as_str().trim_end_matches('/');
    let success = format!("{base}/billing/return?session_id={{CHECKOUT_SESSION_ID}}");
    let cancel = format!("{base}/plans?checkout=canceled");
    let attempt = Uuid::now_v7();
    let session =
        api::create_checkout(client, attempt, &customer, user, &price, &success, &cancel).await?;
    tracing::info!(user.id = %user, plan.id = %plan.id, checkout = %session.id, "checkout started");
    Ok(session)
}

/// Back from Checkout: sync the session's customer now. Returns where to send the browser.
pub async fn checkout_return(state: &AppState, session_id: &str) -> &'static str {
    let valid = session_id.starts_with("cs_")
        && session_id.len() <= 255
        && session_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return "/plans?checkout=unknown";
    }
    let Ok(client) = state.billing.client() else {
        return "/plans?checkout=unavailable";
    };
    let session = match api::retrieve_checkout(client, session_id).await {
        Ok(s) => s,
        Err(ApiFailure::Refused { .. }) => return "/plans?checkout=unknown",
        Err(e) => {
            tracing::warn!(error = %e, "could not read a returning Checkout Session");
            return "/plans?checkout=pending";
        }
    };
    let Some(customer) = session.customer else {
        return "/plans?checkout=pending";
    };
    match locked_sync(state, &customer).await {
        Ok(Some(_)) => "/plans?checkout=success",
        Ok(None) => "/plans?checkout=unknown",
        Err(e) => {
            tracing::warn!(error = %e, "sync after Checkout failed; the webhook will catch up");
            "/plans?checkout=pending"
        }
    }
}

/// The subscription a change, cancel or portal acts on: the running one, or NOT_FOUND.
async fn running_subscription(state: &AppState, user: Uuid) -> Result<subscription::Model> {
    current_subscription(state.db.conn(), user)
        .await?
        .filter(|s| LIVE_STATUSES.contains(&s.status.as_str()))
        .ok_or_else(|| ApiError::not_found("subscription").into())
}

fn remote_of(row: &subscription::Model) -> RemoteSubscription {
    RemoteSubscription {
        id: row.id.clone(),
        customer: row.customer_id.clone(),
        status: row.status.clone(),
        price_id: row.price_id.clone(),
        plan_id: row.plan_id,
        item_id: row.item_id.clone(),
        current_period_start: row.current_period_start,
        current_period_end: row.current_period_end,
        cancel_at_period_end: row.cancel_at_period_end,
        canceled_at: row.canceled_at,
        ended_at: row.ended_at,
        created: row.created_at,
    }
}

/// The target plan of a change and how it is billed: an upgrade (higher tier, or the same
/// tier at a higher price) is prorated now; anything else takes effect without proration.
async fn change_target(
    state: &AppState,
    user: Uuid,
    plan_id: Uuid,
) -> Result<(subscription::Model, plan::Model, Proration)> {
    state.billing.client()?;
    let target = plan_by_id(state.db.conn(), plan_id)
        .await?
        .filter(|p| p.active)
        .ok_or_else(|| ApiError::not_found("plan"))?;
    let sub = running_subscription(state, user).await?;
    if sub.plan_id == Some(target.id) {
        return Err(ApiError::bad_input("same_plan", "this is the current plan").into());
    }
    let current = match sub.plan_id {
        Some(id) => plan_by_id(state.db.conn(), id).await?,
        None => None,
    };
    let upgrade = match &current {
        Some(c) => (target.tier, target.price_cents) > (c.tier, c.price_cents),
        None => true,
    };
    let target = on_sale(state, target).await?;
    let proration = if upgrade {
        Proration::Now
    } else {
        Proration::None
    };
    Ok((sub, target, proration))
}

/// Whether changing between these plans invoices at once: an upgrade (prorated), or any
/// change of interval (Stripe starts a new period with it, proration or not).
fn billed_now(proration: Proration, current: Option<&plan::Model>, target: &plan::Model) -> bool {
    proration == Proration::Now || current.is_some_and(|c| c.interval != target.interval)
}

/// What a change to `plan_id` would bill, and whether it is billed now: an upgrade's (or an
/// interval change's) invoice now, or a downgrade's next period at the new price.
pub async fn preview_change(
    state: &AppState,
    user: Uuid,
    plan_id: Uuid,
) -> Result<(RemoteInvoice, bool)> {
    let (sub, target, proration) = change_target(state, user, plan_id).await?;
    let client = state.billing.client()?;
    let price = target.stripe_price_id.clone().unwrap_or_default();
    let invoice = api::preview_change(client, &remote_of(&sub), &price, proration).await?;
    let current = match sub.plan_id {
        Some(id) => plan_by_id(state.db.conn(), id).await?,
        None => None,
    };
    Ok((invoice, billed_now(proration, current.as_ref(), &target)))
}

pub async fn change_plan(
    state: &AppState,
    user: Uuid,
    plan_id: Uuid,
) -> Result<subscription::Model> {
    let (sub, target, proration) = change_target(state, user, plan_id).await?;
    let client = state.billing.client()?;
    let price = target.stripe_price_id.clone().unwrap_or_default();
    under_lock(state, &sub.customer_id, async {
        let remote = api::change_price(client, &remote_of(&sub), &price, proration).await?;
        tracing::info!(user.id = %user, subscription = %sub.id, plan.id = %target.id, ?proration, "plan changed");
        written(state, user, &remote).await
    })
    .await
}

pub async fn cancel(
    state: &AppState,
    user: Uuid,
    at_period_end: bool,
) -> Result<subscription::Model> {
    let client = state.billing.client()?;
    let sub = running_subscription(state, user).await?;
    under_lock(state, &sub.customer_id, async {
        let remote = if at_period_end {
            api::set_cancel_at_period_end(client, &sub.id, true).await?
        } else {
            api::cancel_now(client, &sub.id).await?
        };
        tracing::info!(user.id = %user, subscription = %sub.id, at_period_end, "subscription canceled");
        written(state, user, &remote).await
    })
    .await
}

pub async fn resume(state: &AppState, user: Uuid) -> Result<subscription::Model> {
    let client = state.billing.client()?;
    let sub = current_subscription(state.db.conn(), user)
        .await?
        .ok_or_else(|| ApiError::not_found("subscription"))?;
    if !LIVE_STATUSES.contains(&sub.status.as_str())
        || state.billing.clock.now() >= sub.current_period_end
    {
        return Err(ApiError::conflict(
            "period_ended",
            "the period has ended; start a new subscription",
        )
        .into());
    }
    if !sub.cancel_at_period_end {
        return Err(ApiError::conflict("not_canceling", "no cancellation is scheduled").into());
    }
    under_lock(state, &sub.customer_id, async {
        let remote = api::set_cancel_at_period_end(client, &sub.id, false).await?;
        written(state, user, &remote).await
    })
    .await
}

/// The key of a customer's sync lock.
fn sync_lock(customer: &str) -> String {
    format!("billing:sync:{customer}")
}

/// Takes a customer's sync lock for a change of ours (waiting up to 5 s for a processor
/// to finish), so a sync that read Stripe before our change cannot write after it. Without
/// the kv store, or after the wait, it goes ahead unlocked (the next event corrects a
/// stale write).
async fn lock_customer(state: &AppState, customer: &str) -> Option<String> {
    let key = sync_lock(customer);
    let started = std::time::Instant::now();
    loop {
        match state.kv.set_nx(&key, b"1", SYNC_LOCK).await {
            Ok(true) => return Some(key),
            Ok(false) if started.elapsed() < std::time::Duration::from_secs(5) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Ok(false) => {
                tracing::warn!(
                    customer,
                    "billing sync lock still held after 5 s; going ahead"
                );
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "billing sync lock unavailable");
                return None;
            }
        }
    }
}

async fn unlock_customer(state: &AppState, key: Option<String>) {
    if let Some(key) = key
        && let Err(e) = state.kv.delete(&key).await
    {
        tracing::warn!(error = %e, "could not release a billing sync lock");
    }
}

/// `work` under the customer's sync lock.
async fn under_lock<T>(
    state: &AppState,
    customer: &str,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let lock = lock_customer(state, customer).await;
    let done = work.await;
    unlock_customer(state, lock).await;
    done
}

/// [`sync_customer`] under the customer's sync lock (the return redirect, the sweep).
pub async fn locked_sync(state: &AppState, customer: &str) -> Result<Option<Uuid>> {
    under_lock(state, customer, sync_customer(state, customer)).await
}

/// Writes what Stripe answered to our own call, mails and notifies, and returns the row.
async fn written(
    state: &AppState,
    user: Uuid,
    remote: &RemoteSubscription,
) -> Result<subscription::Model> {
    let written = apply_remote(state, user, remote).await?;
    for (kind, period) in written.mails {
        send_mail(state, user, &remote.id, kind, &period, None).await;
    }
    if written.changed {
        notify(state, user).await;
    }
    subscription::Entity::find_by_id(remote.id.as_str())
        .one(state.db.conn())
        .await?
        .ok_or_else(|| ApiError::internal("subscription row vanished").into())
}

pub async fn open_portal(state: &AppState, user: Uuid) -> Result<String> {
    let client = state.billing.client()?;
    let sub = current_subscription(state.db.conn(), user)
        .await?
        .ok_or_else(|| ApiError::not_found("subscription"))?;
    let base = state.config.public_url();
    let back = format!("{}/plans", base.as_str().trim_end_matches('/'));
    session_rate(state, user).await?;
    Ok(api::create_portal(client, Uuid::now_v7(), &sub.customer_id, &back).await?)
}

// ---------------------------------------------------------------------------------------
// Webhook events: stored once, processed by a job

/// Stores a verified event once. `stored` (queued), `duplicate`, or `ignored` (a type we
/// do not act on, kept as processed).
pub async fn record_event(
    state: &AppState,
    parsed: &super::webhook::Parsed,
    raw: &str,
) -> std::result::Result<&'static str, sea_orm::DbErr> {
    let now = Utc::now();
    let handled = super::webhook::HANDLED.contains(&parsed.kind.as_str());
    let inserted = stripe_event::Entity::insert(stripe_event::ActiveModel {
        id: Set(parsed.id.clone()),
        kind: Set(parsed.kind.clone()),
        payload: Set(raw.to_owned()),
        customer_id: Set(parsed.customer.clone()),
        received_at: Set(now),
        locked_until: Set(None),
        attempts: Set(0),
        processed_at: Set((!handled).then_some(now)),
        error: Set(None),
    })
    .on_conflict_do_nothing_on([stripe_event::Column::Id])
    .exec(state.db.conn())
    .await?;
    Ok(match inserted {
        sea_orm::TryInsertResult::Inserted(_) if handled => {
            state.billing.wake.notify_one();
            "stored"
        }
        sea_orm::TryInsertResult::Inserted(_) => "ignored",
        _ => "duplicate",
    })
}

/// How long a processor holds a claimed event.
const LEASE: chrono::Duration = chrono::Duration::seconds(60);
/// Attempts before an event is given up (logged as an error).
const MAX_ATTEMPTS: i32 = 12;

/// Claims the oldest waiting event, if any (safe with many processors: the conditional
/// update lets one win).
pub async fn claim_next(
    state: &AppState,
) -> std::result::Result<Option<stripe_event::Model>, sea_orm::DbErr> {
    let conn = state.db.conn();
    let now = Utc::now();
    let waiting = stripe_event::Entity::find()
        .filter(stripe_event::Column::ProcessedAt.is_null())
        .filter(
            Condition::any()
                .add(stripe_event::Column::LockedUntil.is_null())
                .add(stripe_event::Column::LockedUntil.lt(now)),
        )
        .order_by_asc(stripe_event::Column::ReceivedAt)
        .limit(8)
        .all(conn)
        .await?;
    for event in waiting {
        let claimed = stripe_event::Entity::update_many()
            .col_expr(stripe_event::Column::LockedUntil, Expr::value(now + LEASE))
            .col_expr(
                stripe_event::Column::Attempts,
                Expr::col(stripe_event::Column::Attempts).add(1),
            )
            .filter(stripe_event::Column::Id.eq(event.id.as_str()))
            .filter(stripe_event::Column::ProcessedAt.is_null())
            .filter(
                Condition::any()
                    .add(stripe_event::Column::LockedUntil.is_null())
                    .add(stripe_event::Column::LockedUntil.lt(now)),
            )
            .exec(conn)
            .await?;
        if claimed.rows_affected == 1 {
            return Ok(Some(event));
        }
    }
    Ok(None)
}

/// How long one customer's sync lock lasts at most (a crashed holder frees it then).
const SYNC_LOCK: std::time::Duration = std::time::Duration::from_secs(30);
/// Longest wait between two attempts of a transient failure.
const MAX_BACKOFF_S: i64 = 3600;

/// Applies one claimed event and records the outcome (or schedules a retry). One customer's
/// events are applied one at a time across instances (a kv lock), so an older read of
/// Stripe cannot land after a newer one. False when the customer was busy (the event is
/// put back for a moment).
pub async fn process(state: &AppState, event: stripe_event::Model) -> bool {
    let lock = event.customer_id.as_deref().map(sync_lock);
    if let Some(key) = &lock {
        match state.kv.set_nx(key, b"1", SYNC_LOCK).await {
            Ok(true) => {}
            Ok(false) => {
                // Another processor has this customer: try again shortly, uncounted.
                let again = stripe_event::Entity::update_many()
                    .col_expr(
                        stripe_event::Column::LockedUntil,
                        Expr::value(Utc::now() + chrono::Duration::milliseconds(200)),
                    )
                    .col_expr(stripe_event::Column::Attempts, Expr::value(event.attempts))
                    .filter(stripe_event::Column::Id.eq(event.id.as_str()))
                    .exec(state.db.conn())
                    .await;
                if let Err(e) = again {
                    tracing::warn!(error = %e, event = %event.id, "could not release a busy event");
                }
                return false;
            }
            // Without the kv store, the database's own locks still keep money right.
            Err(e) => tracing::warn!(error = %e, "billing sync lock unavailable"),
        }
    }
    let outcome = apply_event(state, &event).await;
    if let Some(key) = &lock
        && let Err(e) = state.kv.delete(key).await
    {
        tracing::warn!(error = %e, "could not release a billing sync lock");
    }
    let now = Utc::now();
    let conn = state.db.conn();
    let mut update =
        stripe_event::Entity::update_many().filter(stripe_event::Column::Id.eq(event.id.as_str()));
    let label = match &outcome {
        Ok(()) => {
            update = update
                .col_expr(stripe_event::Column::ProcessedAt, Expr::value(now))
                .col_expr(
                    stripe_event::Column::Error,
                    Expr::value(Option::<String>::None),
                );
            "applied"
        }
        Err(e) => {
            let attempts = event.attempts + 1;
            let message: String = e.to_string().chars().take(900).collect();
            // Transient failures (Stripe or the database away) are retried for as long as it
            // takes, at most an hour apart; a refusal or a customer never mapped gives up.
            if attempts >= MAX_ATTEMPTS && !e.transient() {
                tracing::error!(event = %event.id, kind = %event.kind, error = %message, "giving up on a Stripe event");
                update = update.col_expr(stripe_event::Column::ProcessedAt, Expr::value(now));
            } else {
                let backoff = chrono::Duration::seconds(Ord::min(
                    2i64.saturating_pow(attempts.clamp(1, 12) as u32),
                    MAX_BACKOFF_S,
                ));
                tracing::warn!(event = %event.id, kind = %event.kind, error = %message, retry_in_s = backoff.num_seconds(), "a Stripe event failed; retrying");
                update = update.col_expr(
                    stripe_event::Column::LockedUntil,
                    Expr::value(now + backoff),
                );
            }
            update = update.col_expr(stripe_event::Column::Error, Expr::value(Some(message)));
            "failed"
        }
    };
    if let Err(e) = update.exec(conn).await {
        tracing::warn!(error = %e, event = %event.id, "could not record an event's outcome");
    }
    state.metrics.record_billing_event(&event.kind, label);
    true
}

async fn apply_event(state: &AppState, event: &stripe_event::Model) -> Result<()> {
    let payload: serde_json::Value =
        serde_json::from_str(&event.payload).map_err(ApiError::internal)?;
    let object = &payload["data"]["object"];
    let text = |v: &serde_json::Value| {
        v.as_str()
            .map(str::to_owned)
            .or_else(|| v["id"].as_str().map(str::to_owned))
    };
    let customer = text(&object["customer"]).or_else(|| event.customer_id.clone());
    match event.kind.as_str() {
        "checkout.session.completed" => {
            let Some(customer) = customer else {
                return Ok(());
            };
            // The user named by our client_reference_id owns the customer; map it if the
            // mapping is missing (a customer made outside startCheckout).
            if let Some(user) = object["client_reference_id"]
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                && customer_of(state.db.conn(), user).await?.is_none()
                && crate::identity::entity::user::Entity::find_by_id(user)
                    .one(state.db.conn())
                    .await?
                    .is_some()
            {
                customer::Entity::insert(customer::ActiveModel {
                    user_id: Set(user),
                    stripe_customer_id: Set(customer.clone()),
                    created_at: Set(Utc::now()),
                })
                .on_conflict_do_nothing()
                .exec(state.db.conn())
                .await?;
            }
            sync_customer(state, &customer).await?;
        }
        "invoice.paid" | "invoice.payment_failed" | "invoice.payment_action_required" => {
            let Some(customer) = customer else {
                return Ok(());
            };
            let Some(user) = sync_customer(state, &customer).await? else {
                // Its checkout.session.completed may not have been applied yet.
                return Err(BillingError::NotYet(format!(
                    "customer {customer} is not mapped to a user yet"
                )));
            };
            let Some(invoice_id) = object["id"].as_str() else {
                return Ok(());
            };
            let client = state.billing.client()?;
            let invoice = api::retrieve_invoice(client, invoice_id).await?;
            match event.kind.as_str() {
                "invoice.paid" => record_payment(state, user, &invoice).await?,
                kind => {
                    let mail = if kind == "invoice.payment_failed" {
                        MailKind::PaymentFailed
                    } else {
                        MailKind::ActionRequired
                    };
                    if let Some(sub) = &invoice.subscription {
                        send_mail(
                            state,
                            user,
                            sub,
                            mail,
                            &invoice.id,
                            invoice.hosted_invoice_url.as_deref(),
                        )
                        .await;
                    }
                }
            }
        }
        _ => {
            let Some(customer) = customer else {
                return Ok(());
            };
            sync_customer(state, &customer).await?;
        }
    }
    Ok(())
}

/// A paid invoice: one `payments` row and, for a subscription, the coins its period has
/// not had yet (a renewal: the whole allowance; an upgrade's proration: the difference).
pub async fn record_payment(state: &AppState, user: Uuid, invoice: &RemoteInvoice) -> Result<()> {
    if invoice.status != "paid" {
        return Ok(());
    }
    // The plan comes from the Price the invoice charged, not from our row (which a sync
    // of another event may be rewriting).
    let charged_plan = match invoice.charged_price() {
        None => None,
        Some(price) => match plan::Entity::find()
            .filter(plan::Column::StripePriceId.eq(price))
            .one(state.db.conn())
            .await?
        {
            Some(plan) => Some(plan.id),
            None => api::plan_of_price(state.billing.client()?, price).await?,
        },
    };
    let result = wallet::retrying(|| async {
        let txn = state.db.begin_write().await?;
        match record_payment_in(&txn, user, invoice, charged_plan).await {
            Ok(done) => {
                txn.commit().await?;
                Ok(done)
            }
            Err(e) => {
                txn.rollback().await?;
                Err(e)
            }
        }
    })
    .await;
    let (recorded, allowance) = match result {
        Ok(done) => done,
        // Lost a race with another processor on the same invoice: it is recorded.
        Err(wallet::WalletError::Db(_))
            if payment::Entity::find()
                .filter(payment::Column::InvoiceId.eq(invoice.id.as_str()))
                .one(state.db.conn())
                .await?
                .is_some() =>
        {
            (false, 0)
        }
        Err(e) => return Err(e.into()),
    };
    if recorded {
        tracing::info!(user.id = %user, invoice = %invoice.id, amount = invoice.amount_paid, allowance, "payment recorded");
        if allowance > 0 {
            wallet::notify(state, &[user]).await;
        }
        // A new payment is news to the subscription's page too.
        notify(state, user).await;
        if invoice.billing_reason.as_deref() == Some("subscription_cycle")
            && let Some(sub) = &invoice.subscription
        {
            send_mail(
                state,
                user,
                sub,
                MailKind::Renewed,
                &invoice.id,
                invoice.hosted_invoice_url.as_deref(),
            )
            .await;
        }
    }
    Ok(())
}

async fn record_payment_in(
    conn: &impl ConnectionTrait,
    user: Uuid,
    invoice: &RemoteInvoice,
    charged_plan: Option<Uuid>,
) -> std::result::Result<(bool, i64), wallet::WalletError> {
    if payment::Entity::find()
        .filter(payment::Column::InvoiceId.eq(invoice.id.as_str()))
        .one(conn)
        .await?
        .is_some()
    {
        return Ok((false, 0));
    }
    let period_end = invoice.period_end();
    let mut plan_id = None;
    let mut allowance = 0;
    if let Some(sub_id) = &invoice.subscription
        // Locks the subscription: two invoices of one period are credited one at a time.
        && let Some(sub) = subscription::Entity::find_by_id(sub_id.as_str())
            .lock_exclusive()
            .one(conn)
            .await?
        && let Some(pid) = charged_plan.or(sub.plan_id)
        && let Some(plan) = plan::Entity::find_by_id(pid).one(conn).await?
    {
        plan_id = Some(pid);
        let granted: i64 = match period_end {
            Some(end) => payment::Entity::find()
                .filter(payment::Column::SubscriptionId.eq(sub_id.as_str()))
                .filter(payment::Column::PeriodEnd.eq(end))
                .all(conn)
                .await?
                .iter()
                .map(|p| p.allowance)
                .sum(),
            None => 0,
        };
        allowance = Ord::max(plan.coin_allowance - granted, 0);
    }
    let mut transfer_id = None;
    if allowance > 0 {
        let done = wallet::transfer_in(
            conn,
            &TransferRequest::new(
                Account::System(SystemAccount::Plans),
                Account::User(user),
                allowance,
                TransferKind::PlanAllowance,
            )
            .reference(invoice.id.clone())
            .idempotency_key(Some(format!("plan-allowance:{}", invoice.id)))
            .metadata(json!({
                "invoice": invoice.id,
                "subscription": invoice.subscription,
                "plan": plan_id,
            })),
        )
        .await?;
        if done.replayed {
            return Ok((false, 0));
        }
        transfer_id = Some(done.transfer.id);
    }
    let now = Utc::now();
    payment::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user),
        invoice_id: Set(invoice.id.clone()),
        subscription_id: Set(invoice.subscription.clone()),
        plan_id: Set(plan_id),
        amount_cents: Set(invoice.amount_paid),
        currency: Set(invoice.currency.clone()),
        status: Set(invoice.status.clone()),
        hosted_invoice_url: Set(invoice.hosted_invoice_url.clone()),
        billing_reason: Set(invoice.billing_reason.clone()),
        period_end: Set(period_end),
        allowance: Set(allowance),
        transfer_id: Set(transfer_id),
        paid_at: Set(invoice.paid_at.unwrap_or(now)),
        created_at: Set(now),
    }
    .insert(conn)
    .await?;
    Ok((true, allowance))
}

/// Processes stored events until shut down: woken by a stored webhook, and every 2 s for
/// events stored by other instances or waiting for a retry.
pub async fn run_processor(state: AppState) {
    if state.billing.client.is_none() {
        return;
    }
    // Rounds left to poll quickly: an event put back because its customer was busy elsewhere
    // is due again within a fraction of a second.
    let mut quick = 0u32;
    loop {
        let mut busy = false;
        loop {
            match claim_next(&state).await {
                Ok(Some(event)) => busy |= !process(&state, event).await,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim Stripe events");
                    break;
                }
            }
            if state.shutdown.is_cancelled() {
                return;
            }
        }
        quick = if busy { 20 } else { quick.saturating_sub(1) };
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = state.billing.wake.notified() => {}
            _ = tokio::time::sleep(std::time::Duration::from_millis(if quick > 0 { 100 } else { 2000 })) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Mails

/// Subject and first paragraph of each mail.
fn mail_text(kind: MailKind, grace_days: i64) -> (&'static str, String) {
    let (subject, body) = match kind {
        MailKind::Started => (
            "Your Tessera subscription has started",
            "Thank you: your subscription is active, and this period's coins are in your wallet.",
        ),
        MailKind::Renewed => (
            "Your Tessera subscription renewed",
            "Your subscription renewed and this period's coins are in your wallet.",
        ),
        MailKind::PaymentFailed => {
            let body = format!(
                "We could not charge your card. Update it in the billing portal within \
                 {grace_days} days to keep your plan."
            );
            return ("A payment for your Tessera subscription failed", body);
        }
        MailKind::ActionRequired => (
            "Your bank needs you to confirm a payment",
            "Your bank asks you to confirm this payment before it goes through.",
        ),
        MailKind::CancelScheduled => (
            "Your Tessera subscription will end",
            "Your subscription is canceled and ends with the current period. \
             You can resume it until then.",
        ),
        MailKind::CancelReminder => (
            "Your Tessera subscription ends in 3 days",
            "Your subscription ends with the current period. Resume it to keep your plan.",
        ),
        MailKind::Resumed => (
            "Your Tessera subscription continues",
            "Your subscription is no longer canceled and renews as before.",
        ),
        MailKind::Ended => (
            "Your Tessera subscription has ended",
            "Your subscription has ended. You can subscribe again at any time.",
        ),
    };
    (subject, body.to_owned())
}

/// Sends one billing mail unless it went already (a unique row per subscription, kind and
/// period is written first).
pub async fn send_mail(
    state: &AppState,
    user: Uuid,
    subscription: &str,
    kind: MailKind,
    period: &str,
    link: Option<&str>,
) {
    let claimed = mail::Entity::insert(mail::ActiveModel {
        subscription_id: Set(subscription.to_owned()),
        kind: Set(kind.as_str().to_owned()),
        period: Set(period.to_owned()),
        sent_at: Set(Utc::now()),
    })
    .on_conflict_do_nothing_on([
        mail::Column::SubscriptionId,
        mail::Column::Kind,
        mail::Column::Period,
    ])
    .exec(state.db.conn())
    .await;
    match claimed {
        Ok(sea_orm::TryInsertResult::Inserted(_)) => {}
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(error = %e, "could not record a billing mail");
            return;
        }
    }
    let Ok(Some(to)) = crate::identity::entity::user::Entity::find_by_id(user)
        .one(state.db.conn())
        .await
        .map(|u| u.and_then(|u| u.email))
    else {
        return;
    };
    let plans_url = format!(
        "{}/plans",
        state.config.public_url().as_str().trim_end_matches('/')
    );
    let (subject, body) = mail_text(kind, state.billing.grace.num_days());
    let link_line = link
        .map(|l| format!("\n\nInvoice: {l}"))
        .unwrap_or_default();
    let text = format!("{body}{link_line}\n\nYour plan: {plans_url}\n");
    let esc = crate::platform::mail::escape_html;
    let link_html = link
        .map(|l| format!("<p><a href=\"{}\">Invoice</a></p>", esc(l)))
        .unwrap_or_default();
    let html = format!(
        "<p>{}</p>{link_html}<p><a href=\"{}\">Your plan</a></p>",
        esc(&body),
        esc(&plans_url)
    );
    let outgoing = crate::platform::mail::OutgoingMail {
        to,
        subject: subject.to_owned(),
        text,
        html,
    };
    if let Err(e) = state.mailer.send(outgoing).await {
        tracing::warn!(error = %e, kind = kind.as_str(), "a billing mail was not sent");
    }
}

// ---------------------------------------------------------------------------------------
// Sweep

/// One round: lapsed subscriptions re-read from Stripe (their access ends with the grace in
/// any case), the reminder three days before a scheduled cancellation.
pub async fn sweep_once(state: &AppState) -> Result<()> {
    if state.billing.client.is_none() {
        return Ok(());
    }
    let now = state.billing.clock.now();
    let conn = state.db.conn();
    // Running rows whose period is over, and past-due ones: re-read from Stripe.
    let candidates = subscription::Entity::find()
        .filter(subscription::Column::Status.is_in(LIVE_STATUSES))
        .filter(
            Condition::any()
                .add(subscription::Column::CurrentPeriodEnd.lt(now))
                .add(subscription::Column::Status.eq("past_due")),
        )
        .order_by_asc(subscription::Column::CurrentPeriodEnd)
        .limit(100)
        .all(conn)
        .await?;
    let mut customers: Vec<String> = candidates.iter().map(|s| s.customer_id.clone()).collect();
    customers.sort();
    customers.dedup();
    for c in &customers {
        if let Err(e) = locked_sync(state, c).await {
            // Nothing is concluded from a stale row.
            tracing::warn!(error = %e, customer = %c, "sweep: sync failed");
            continue;
        }
        // Still running by Stripe's word, but past the grace: access has ended.
        let rows = subscription::Entity::find()
            .filter(subscription::Column::CustomerId.eq(c.as_str()))
            .filter(subscription::Column::Status.is_in(LIVE_STATUSES))
            .all(conn)
            .await?;
        for s in rows {
            let grace = state.billing.grace;
            if s.status != "paused"
                && !is_active(
                    &s.status,
                    s.current_period_start,
                    s.current_period_end,
                    grace,
                    now,
                )
            {
                send_mail(state, s.user_id, &s.id, MailKind::Ended, "end", None).await;
            }
        }
    }
    let soon = subscription::Entity::find()
        .filter(subscription::Column::Status.is_in(["active", "trialing"]))
        .filter(subscription::Column::CancelAtPeriodEnd.eq(true))
        .filter(subscription::Column::CurrentPeriodEnd.gt(now))
        .filter(subscription::Column::CurrentPeriodEnd.lte(now + chrono::Duration::days(3)))
        .limit(500)
        .all(conn)
        .await?;
    for s in soon {
        let period = s.current_period_end.timestamp().to_string();
        send_mail(
            state,
            s.user_id,
            &s.id,
            MailKind::CancelReminder,
            &period,
            None,
        )
        .await;
    }
    nightly_drift(state).await;
    Ok(())
}

pub async fn run_sweeper(state: AppState) {
    let every = std::time::Duration::from_secs(state.config.billing.billing_sweep_interval_s)
        .max(std::time::Duration::from_secs(1));
    crate::platform::every(&state.shutdown, every, false, || async {
        if let Err(e) = sweep_once(&state).await {
            tracing::warn!(error = %e, "billing sweep failed");
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Reads

pub struct PaymentPage {
    pub rows: Vec<payment::Model>,
    pub has_next: bool,
    pub total: u64,
}

pub async fn payments_of(
    conn: &impl ConnectionTrait,
    user: Uuid,
    first: u64,
    after: Option<Uuid>,
) -> std::result::Result<PaymentPage, sea_orm::DbErr> {
    let base = payment::Entity::find().filter(payment::Column::UserId.eq(user));
    let total = base.clone().count(conn).await?;
    let mut q = base.order_by_desc(payment::Column::Id);
    if let Some(after) = after {
        q = q.filter(payment::Column::Id.lt(after));
    }
    let mut rows = q.limit(first + 1).all(conn).await?;
    let has_next = rows.len() as u64 > first;
    rows.truncate(first as usize);
    Ok(PaymentPage {
        rows,
        has_next,
        total,
    })
}

/// One subscription whose local row and Stripe disagree.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Drift {
    pub subscription_id: String,
    pub local: String,
    pub remote: String,
}

fn summary(status: &str, price: &str, end: DateTime<Utc>, cancel: bool) -> String {
    format!(
        "{status} {price} until {} cancel_at_period_end={cancel}",
        end.to_rfc3339()
    )
}

/// The last comparison of our rows with Stripe.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DriftReport {
    pub checked_at: DateTime<Utc>,
    pub entries: Vec<Drift>,
}

const DRIFT_KEY: &str = "billing:drift:last";
const DRIFT_LOCK: &str = "billing:drift:lock";

/// The stored report (computed now when asked, or when there is none yet).
pub async fn drift_report(state: &AppState, refresh: bool) -> Result<DriftReport> {
    if !refresh
        && let Some(bytes) = state.kv.get(DRIFT_KEY).await.map_err(ApiError::from)?
        && let Ok(report) = serde_json::from_slice::<DriftReport>(&bytes)
    {
        return Ok(report);
    }
    let report = DriftReport {
        checked_at: Utc::now(),
        entries: drift(state).await?,
    };
    let bytes = serde_json::to_vec(&report).map_err(ApiError::internal)?;
    state
        .kv
        .set(
            DRIFT_KEY,
            &bytes,
            Some(std::time::Duration::from_secs(2 * 86_400)),
        )
        .await
        .map_err(ApiError::from)?;
    Ok(report)
}

/// Once a day across instances (a kv lock), the comparison, logged when anything differs.
async fn nightly_drift(state: &AppState) {
    let day = std::time::Duration::from_secs(23 * 3600);
    match state.kv.set_nx(DRIFT_LOCK, b"1", day).await {
        Ok(true) => match drift_report(state, true).await {
            Ok(report) if report.entries.is_empty() => tracing::info!("billing drift check: none"),
            Ok(report) => {
                tracing::warn!(
                    subscriptions = report.entries.len(),
                    "billing drift: local state and Stripe disagree (admin.billing.drift)"
                )
            }
            Err(e) => tracing::warn!(error = %e, "billing drift check failed"),
        },
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "billing drift lock unavailable"),
    }
}

/// Local rows of running subscriptions against what Stripe says now (at most 100).
pub async fn drift(state: &AppState) -> Result<Vec<Drift>> {
    let client = state.billing.client()?;
    let rows = subscription::Entity::find()
        .filter(subscription::Column::Status.is_in(LIVE_STATUSES))
        .order_by_asc(subscription::Column::CustomerId)
        .limit(100)
        .all(state.db.conn())
        .await?;
    let mut out = Vec::new();
    let mut customers: Vec<&str> = rows.iter().map(|r| r.customer_id.as_str()).collect();
    customers.dedup();
    for c in customers {
        let remote = api::list_subscriptions(client, c).await?;
        for row in rows.iter().filter(|r| r.customer_id == c) {
            let local = summary(
                &row.status,
                &row.price_id,
                row.current_period_end,
                row.cancel_at_period_end,
            );
            let theirs = remote
                .iter()
                .find(|r| r.id == row.id)
                .map(|r| {
                    summary(
                        &r.status,
                        &r.price_id,
                        r.current_period_end,
                        r.cancel_at_period_end,
                    )
                })
                .unwrap_or_else(|| "missing".to_owned());
            if local != theirs {
                out.push(Drift {
                    subscription_id: row.id.clone(),
                    local,
                    remote: theirs,
                });
            }
        }
    }
    Ok(out)
}
