//! The billing part of the GraphQL schema: plans, Checkout, the viewer's subscription and
//! payments, plan changes, cancel and resume, the Billing Portal, the live
//! `subscriptionChanged` stream, and the admin side (plans, sync, drift).

use async_graphql::{
    Context, Enum, ID, InputObject, Object, Result, SimpleObject, Subscription,
    futures_util::{Stream, StreamExt},
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    entity::{payment, plan, subscription},
    is_active,
    service::{self, PlanFields},
};
use crate::{
    app::AppState,
    graphql::{
        ApiError, RequestMeta,
        pagination::{self, PageInfo},
    },
    identity::auth::AuthContextExt,
};

fn parse_id(id: &ID, what: &'static str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found(what))
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanInterval {
    Month,
    Year,
}

impl PlanInterval {
    fn as_str(self) -> &'static str {
        match self {
            PlanInterval::Month => "month",
            PlanInterval::Year => "year",
        }
    }
}

/// A plan on sale (or archived, for admins).
pub struct Plan(pub plan::Model);

#[Object]
impl Plan {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Orders plans: moving to a higher tier is an upgrade.
    async fn tier(&self) -> i32 {
        self.0.tier
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// Price per interval in the currency's smallest unit.
    async fn price_cents(&self) -> i64 {
        self.0.price_cents
    }
    /// ISO 4217, lower case.
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    async fn interval(&self) -> PlanInterval {
        if self.0.interval == "year" {
            PlanInterval::Year
        } else {
            PlanInterval::Month
        }
    }
    /// Coins credited for each paid period.
    async fn coin_allowance(&self) -> i64 {
        self.0.coin_allowance
    }
    async fn active(&self) -> bool {
        self.0.active
    }
    /// The Stripe Price that sells it now (none until synced).
    async fn stripe_price_id(&self) -> Option<&str> {
        self.0.stripe_price_id.as_deref()
    }
}

#[derive(InputObject)]
pub struct PlanInput {
    pub name: String,
    #[graphql(default)]
    pub tier: i32,
    #[graphql(default)]
    pub description: String,
    pub price_cents: i64,
    #[graphql(default_with = "String::from(\"usd\")")]
    pub currency: String,
    #[graphql(default_with = "PlanInterval::Month")]
    pub interval: PlanInterval,
    pub coin_allowance: i64,
    #[graphql(default = true)]
    pub active: bool,
}

impl From<PlanInput> for PlanFields {
    fn from(i: PlanInput) -> Self {
        PlanFields {
            name: i.name,
            tier: i.tier,
            description: i.description,
            price_cents: i.price_cents,
            currency: i.currency,
            interval: i.interval.as_str().to_owned(),
            coin_allowance: i.coin_allowance,
            active: i.active,
        }
    }
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillingStatus {
    Incomplete,
    IncompleteExpired,
    Trialing,
    Active,
    PastDue,
    Canceled,
    Unpaid,
    Paused,
}

impl BillingStatus {
    fn parse(s: &str) -> Self {
        match s {
            "incomplete_expired" => BillingStatus::IncompleteExpired,
            "trialing" => BillingStatus::Trialing,
            "active" => BillingStatus::Active,
            "past_due" => BillingStatus::PastDue,
            "canceled" => BillingStatus::Canceled,
            "unpaid" => BillingStatus::Unpaid,
            "paused" => BillingStatus::Paused,
            _ => BillingStatus::Incomplete,
        }
    }
}

/// A plan subscription, as Stripe last said.
pub struct BillingSubscription(pub subscription::Model);

#[Object]
impl BillingSubscription {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// The plan it pays for (none for a Price no plan knows).
    async fn plan(&self, ctx: &Context<'_>) -> Result<Option<Plan>> {
        let Some(id) = self.0.plan_id else {
            return Ok(None);
        };
        let state = ctx.data::<AppState>()?;
        let row = service::plan_by_id(state.db.conn(), id)
            .await
            .map_err(ApiError::from)?;
        Ok(row.map(Plan))
    }
    async fn status(&self) -> BillingStatus {
        BillingStatus::parse(&self.0.status)
    }
    async fn current_period_start(&self) -> DateTime<Utc> {
        self.0.current_period_start
    }
    async fn current_period_end(&self) -> DateTime<Utc> {
        self.0.current_period_end
    }
    /// Ends with the period unless resumed.
    async fn cancel_at_period_end(&self) -> bool {
        self.0.cancel_at_period_end
    }
    async fn canceled_at(&self) -> Option<DateTime<Utc>> {
        self.0.canceled_at
    }
    /// Whether it gives access now: active or trialing, or past due within the grace days,
    /// until the period (plus the grace) ends.
    async fn active(&self, ctx: &Context<'_>) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        Ok(is_active(
            &self.0.status,
            self.0.current_period_start,
            self.0.current_period_end,
            state.billing.grace,
            state.billing.clock.now(),
        ))
    }
}

#[derive(SimpleObject)]
pub struct CheckoutSession {
    id: String,
    /// Stripe's hosted Checkout page: send the browser there.
    url: String,
    expires_at: DateTime<Utc>,
}

#[derive(SimpleObject)]
pub struct BillingPortalSession {
    url: String,
}

#[derive(SimpleObject)]
pub struct PlanChangeLine {
    description: String,
    amount_cents: i64,
}

#[derive(SimpleObject)]
pub struct PlanChangePreview {
    /// Charged now (0 for a downgrade: the new price starts next period).
    amount_due_cents: i64,
    currency: String,
    /// An upgrade: the proration lines charged now. A downgrade: the next period's invoice
    /// at the new price.
    lines: Vec<PlanChangeLine>,
}

/// A paid invoice.
pub struct Payment(pub payment::Model);

#[Object]
impl Payment {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn amount_cents(&self) -> i64 {
        self.0.amount_cents
    }
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    async fn status(&self) -> &str {
        &self.0.status
    }
    async fn invoice_id(&self) -> &str {
        &self.0.invoice_id
    }
    async fn hosted_invoice_url(&self) -> Option<&str> {
        self.0.hosted_invoice_url.as_deref()
    }
    /// Coins this payment credited.
    async fn coin_allowance(&self) -> i64 {
        self.0.allowance
    }
    async fn paid_at(&self) -> DateTime<Utc> {
        self.0.paid_at
    }
}

#[derive(SimpleObject)]
pub struct PaymentEdge {
    cursor: String,
    node: Payment,
}

#[derive(SimpleObject)]
pub struct PaymentConnection {
    edges: Vec<PaymentEdge>,
    page_info: PageInfo,
    total_count: u64,
}

/// One page of a user's payments, newest first.
pub async fn payments(
    ctx: &Context<'_>,
    user: Uuid,
    first: Option<i32>,
    after: Option<String>,
) -> Result<PaymentConnection> {
    let state = ctx.data::<AppState>()?;
    let first = pagination::page_size(first)?;
    let after = pagination::after(after.as_deref())?;
    let page = service::payments_of(state.db.conn(), user, first, after)
        .await
        .map_err(ApiError::from)?;
    let edges: Vec<PaymentEdge> = page
        .rows
        .into_iter()
        .map(|row| PaymentEdge {
            cursor: pagination::cursor(row.id),
            node: Payment(row),
        })
        .collect();
    let cursors: Vec<String> = edges.iter().map(|e| e.cursor.clone()).collect();
    Ok(PaymentConnection {
        page_info: PageInfo::new(&cursors, page.has_next),
        edges,
        total_count: page.total,
    })
}

/// A user's current subscription (for `me.subscription`).
pub async fn current(ctx: &Context<'_>, user: Uuid) -> Result<Option<BillingSubscription>> {
    let state = ctx.data::<AppState>()?;
    let row = service::current_subscription(state.db.conn(), user)
        .await
        .map_err(ApiError::from)?;
    Ok(row.map(BillingSubscription))
}

#[derive(Default)]
pub struct BillingQuery;

#[Object]
impl BillingQuery {
    /// Plans on sale, lowest tier first (`includeArchived`: admins only).
    async fn plans(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] include_archived: bool,
    ) -> Result<Vec<Plan>> {
        if include_archived {
            ctx.admin()?;
        }
        let state = ctx.data::<AppState>()?;
        let rows = service::plans(state.db.conn(), include_archived)
            .await
            .map_err(ApiError::from)?;
        Ok(rows.into_iter().map(Plan).collect())
    }

    /// Whether plans can be bought here (Stripe is configured).
    async fn billing_configured(&self, ctx: &Context<'_>) -> Result<bool> {
        Ok(ctx.data::<AppState>()?.billing.client.is_some())
    }

    /// What changing to `planId` would charge now: an upgrade's proration, or nothing for
    /// a downgrade (its lower price starts next period).
    async fn preview_plan_change(
        &self,
        ctx: &Context<'_>,
        plan_id: ID,
    ) -> Result<PlanChangePreview> {
        let viewer = ctx.viewer()?;
        let state = ctx.data::<AppState>()?;
        let id = parse_id(&plan_id, "plan")?;
        let (invoice, billed_now) = service::preview_change(state, viewer.user_id, id)
            .await
            .map_err(ApiError::from)?;
        let due_now = if billed_now { invoice.amount_due } else { 0 };
        Ok(PlanChangePreview {
            amount_due_cents: due_now,
            currency: invoice.currency,
            lines: invoice
                .lines
                .into_iter()
                .map(|l| PlanChangeLine {
                    description: l.description,
                    amount_cents: l.amount_cents,
                })
                .collect(),
        })
    }
}

#[derive(Default)]
pub struct BillingMutation;

#[Object]
impl BillingMutation {
    /// A Stripe Checkout to subscribe to `planId` (CONFLICT while a subscription is
    /// active: use `changePlan`).
    async fn start_checkout(&self, ctx: &Context<'_>, plan_id: ID) -> Result<CheckoutSession> {
        let viewer = ctx.viewer()?;
        let state = ctx.data::<AppState>()?;
        let id = parse_id(&plan_id, "plan")?;
        let session = service::start_checkout(state, viewer.user_id, id)
            .await
            .map_err(ApiError::from)?;
        Ok(CheckoutSession {
            url: session
                .url
                .ok_or_else(|| ApiError::internal("a Checkout Session without a URL"))?,
            id: session.id,
            expires_at: session.expires_at,
        })
    }

    /// Stripe's Billing Portal (cards, invoices) for the viewer's customer.
    async fn open_billing_portal(&self, ctx: &Context<'_>) -> Result<BillingPortalSession> {
        let viewer = ctx.viewer()?;
        let state = ctx.data::<AppState>()?;
        let url = service::open_portal(state, viewer.user_id)
            .await
            .map_err(ApiError::from)?;
        Ok(BillingPortalSession { url })
    }

    /// Moves the running subscription to `planId`: an upgrade now, prorated and charged at
    /// once; a downgrade without proration (the lower allowance starts next period).
    async fn change_plan(&self, ctx: &Context<'_>, plan_id: ID) -> Result<BillingSubscription> {
        let viewer = ctx.viewer()?;
        let state = ctx.data::<AppState>()?;
        let id = parse_id(&plan_id, "plan")?;
        let row = service::change_plan(state, viewer.user_id, id)
            .await
            .map_err(ApiError::from)?;
        Ok(BillingSubscription(row))
    }

    /// Cancels at the period's end (default) or now.
    async fn cancel_subscription(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = true)] at_period_end: bool,
    ) -> Result<BillingSubscription> {
        let viewer = ctx.viewer()?;
        let state = ctx.data::<AppState>()?;
        let row = service::cancel(state, viewer.user_id, at_period_end)
            .await
            .map_err(ApiError::from)?;
        Ok(BillingSubscription(row))
    }

    /// Undoes a scheduled cancellation while the period runs.
    async fn resume_subscription(&self, ctx: &Context<'_>) -> Result<BillingSubscription> {
        let viewer = ctx.viewer()?;
        let state = ctx.data::<AppState>()?;
        let row = service::resume(state, viewer.user_id)
            .await
            .map_err(ApiError::from)?;
        Ok(BillingSubscription(row))
    }

    /// Admin: a new plan (synced to Stripe when it is configured; audited).
    async fn create_plan(&self, ctx: &Context<'_>, input: PlanInput) -> Result<Plan> {
        let admin = ctx.admin()?.user_id();
        let state = ctx.data::<AppState>()?;
        let meta = ctx.data::<RequestMeta>()?;
        let row = service::create_plan(state, admin, input.into(), meta)
            .await
            .map_err(ApiError::from)?;
        Ok(Plan(row))
    }

    /// Admin: new terms make a new Stripe Price; subscribers keep theirs until they change
    /// plan (audited).
    async fn update_plan(&self, ctx: &Context<'_>, id: ID, input: PlanInput) -> Result<Plan> {
        let admin = ctx.admin()?.user_id();
        let state = ctx.data::<AppState>()?;
        let meta = ctx.data::<RequestMeta>()?;
        let id = parse_id(&id, "plan")?;
        let row = service::update_plan(state, admin, id, input.into(), meta)
            .await
            .map_err(ApiError::from)?;
        Ok(Plan(row))
    }

    /// Admin: takes a plan off sale (audited).
    async fn archive_plan(&self, ctx: &Context<'_>, id: ID) -> Result<Plan> {
        let admin = ctx.admin()?.user_id();
        let state = ctx.data::<AppState>()?;
        let meta = ctx.data::<RequestMeta>()?;
        let id = parse_id(&id, "plan")?;
        let row = service::archive_plan(state, admin, id, meta)
            .await
            .map_err(ApiError::from)?;
        Ok(Plan(row))
    }

    /// Admin: every plan's Product and Price brought in line with it.
    async fn sync_plans_to_stripe(&self, ctx: &Context<'_>) -> Result<Vec<Plan>> {
        let admin = ctx.admin()?.user_id();
        let state = ctx.data::<AppState>()?;
        let meta = ctx.data::<RequestMeta>()?;
        let rows = service::sync_all_plans(state, admin, meta)
            .await
            .map_err(ApiError::from)?;
        Ok(rows.into_iter().map(Plan).collect())
    }
}

#[derive(Default)]
pub struct BillingSubscriptionRoot;

#[Subscription]
impl BillingSubscriptionRoot {
    /// The viewer's subscription each time it changes (on any instance).
    async fn subscription_changed(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = Option<BillingSubscription>> + use<>> {
        let viewer = ctx.viewer()?;
        let state = ctx.data::<AppState>()?.clone();
        let user = viewer.user_id;
        let deliveries = state
            .kv
            .subscribe(&service::channel(user))
            .await
            .map_err(ApiError::from)?;
        Ok(deliveries.then(move |_| {
            let state = state.clone();
            async move {
                service::current_subscription(state.db.conn(), user)
                    .await
                    .ok()
                    .flatten()
                    .map(BillingSubscription)
            }
        }))
    }
}

#[derive(SimpleObject)]
pub struct DriftEntry {
    subscription_id: String,
    local: String,
    remote: String,
}

pub struct BillingAdmin(service::DriftReport);

#[Object]
impl BillingAdmin {
    /// Running subscriptions whose local state and Stripe's disagree, as of
    /// `driftCheckedAt` (checked once a day, or now with `billing(refresh: true)`).
    async fn drift(&self) -> Vec<DriftEntry> {
        self.0
            .entries
            .iter()
            .map(|d| DriftEntry {
                subscription_id: d.subscription_id.clone(),
                local: d.local.clone(),
                remote: d.remote.clone(),
            })
            .collect()
    }

    async fn drift_checked_at(&self) -> DateTime<Utc> {
        self.0.checked_at
    }
}

#[derive(Default)]
pub struct BillingAdminQuery;

#[Object]
impl BillingAdminQuery {
    /// Billing's health: local state against Stripe's.
    async fn billing(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] refresh: bool,
    ) -> Result<BillingAdmin> {
        let state = ctx.data::<AppState>()?;
        let report = service::drift_report(state, refresh)
            .await
            .map_err(ApiError::from)?;
        Ok(BillingAdmin(report))
    }
}
