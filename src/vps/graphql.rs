//! GraphQL surface of VPS sessions: products, starting, extending and stopping sessions,
//! the live `vpsSessionProgress` stream, and the admin side (products, workers).

use std::{collections::VecDeque, time::Duration};

use async_graphql::{
    Context, ID, InputObject, Object, Result, SimpleObject, Subscription,
    futures_util::{Stream, StreamExt},
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    SessionStatus, WorkerStatus,
    entity::{checklist_item, event, product, session, worker},
    service::{self, EventPayload, Published},
};
use crate::{
    app::AppState,
    graphql::{
        ApiError, RequestMeta,
        pagination::{self, PageInfo},
    },
    identity::{Role, auth::AuthContextExt},
    platform::kv::{Delivery, Subscription as KvSubscription},
    wallet::{Account, entity::transfer, graphql::Transfer},
};

fn parse_id(id: &ID, what: &'static str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found(what))
}

/// A machine on sale.
pub struct VpsProduct(pub product::Model);

#[Object]
impl VpsProduct {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn vcpu(&self) -> i32 {
        self.0.vcpu
    }
    async fn memory_mb(&self) -> i32 {
        self.0.memory_mb
    }
    async fn disk_gb(&self) -> i32 {
        self.0.disk_gb
    }
    async fn region(&self) -> &str {
        &self.0.region
    }
    /// Coins per hour.
    async fn price_per_hour(&self) -> i64 {
        self.0.price_per_hour
    }
    /// Inactive products cannot be started.
    async fn active(&self) -> bool {
        self.0.active
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// One step of a session's provisioning checklist.
#[derive(SimpleObject)]
pub struct ChecklistStep {
    key: String,
    title: String,
    position: i32,
    status: StepStatus,
    message: Option<String>,
    updated_at: Option<DateTime<Utc>>,
}

#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    Pending,
    Running,
    Done,
    Failed,
}

impl From<checklist_item::Model> for ChecklistStep {
    fn from(row: checklist_item::Model) -> Self {
        let status = match row.status.as_str() {
            "running" => StepStatus::Running,
            "done" => StepStatus::Done,
            "failed" => StepStatus::Failed,
            _ => StepStatus::Pending,
        };
        Self {
            key: row.key,
            title: row.title,
            position: row.position,
            status,
            message: row.message,
            updated_at: row.updated_at,
        }
    }
}

/// How to reach a running machine. Only its owner and admins see it.
#[derive(SimpleObject)]
pub struct VpsConnection {
    host: String,
    port: i32,
    username: String,
    /// The one-time password, when the session was started without an SSH key.
    password: Option<String>,
    /// Sign in with the SSH key given at start.
    uses_ssh_key: bool,
}

/// A session (only its owner and admins can see one).
pub struct VpsSession(pub session::Model);

#[Object]
impl VpsSession {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn status(&self) -> SessionStatus {
        SessionStatus::parse(&self.0.status).unwrap_or(SessionStatus::Failed)
    }

    async fn product(&self, ctx: &Context<'_>) -> Result<Option<VpsProduct>> {
        let state = ctx.data::<AppState>()?;
        let row = <product::Entity as sea_orm::EntityTrait>::find_by_id(self.0.product_id)
            .one(state.db.conn())
            .await
            .map_err(ApiError::from)?;
        Ok(row.map(VpsProduct))
    }

    /// Hours paid for, extensions included.
    async fn hours(&self) -> i32 {
        self.0.hours
    }

    /// Coins per hour, as when it was started.
    async fn price_per_hour(&self) -> i64 {
        self.0.price_per_hour
    }

    /// Coins paid (or reserved, before it runs), extensions included.
    async fn amount_paid(&self) -> i64 {
        self.0.amount_paid
    }

    /// Coins given back: unused whole hours, or everything when it never ran.
    async fn amount_refunded(&self) -> i64 {
        self.0.amount_refunded
    }

    /// Seq of its newest progress event (pass it as `afterSeq` to resume a stream).
    async fn last_seq(&self) -> i32 {
        self.0.last_seq
    }

    async fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn running_at(&self) -> Option<DateTime<Utc>> {
        self.0.running_at
    }

    /// When it expires (set once running; moves with each extension).
    async fn ends_at(&self) -> Option<DateTime<Utc>> {
        self.0.ends_at
    }

    async fn ended_at(&self) -> Option<DateTime<Utc>> {
        self.0.ended_at
    }

    async fn checklist(&self, ctx: &Context<'_>) -> Result<Vec<ChecklistStep>> {
        let state = ctx.data::<AppState>()?;
        let rows = service::checklist(state.db.conn(), self.0.id)
            .await
            .map_err(ApiError::from)?;
        Ok(rows.into_iter().map(ChecklistStep::from).collect())
    }

    /// Where to connect, once running (null before and after).
    async fn connection(&self, ctx: &Context<'_>) -> Result<Option<VpsConnection>> {
        ctx.owner_or_admin(self.0.user_id)?;
        if self.0.status != SessionStatus::Running.as_str() {
            return Ok(None);
        }
        // Progress events carry no credentials: read them from the row.
        let state = ctx.data::<AppState>()?;
        let Some(row) = <session::Entity as sea_orm::EntityTrait>::find_by_id(self.0.id)
            .one(state.db.conn())
            .await
            .map_err(ApiError::from)?
        else {
            return Ok(None);
        };
        let (Some(host), Some(port)) = (row.host.clone(), row.port) else {
            return Ok(None);
        };
        Ok(Some(VpsConnection {
            host,
            port,
            username: row.username.clone(),
            uses_ssh_key: row.ssh_key.is_some(),
            password: row.password,
        }))
    }

    /// Its payments and refunds, oldest first.
    async fn transfers(&self, ctx: &Context<'_>) -> Result<Vec<Transfer>> {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
        let state = ctx.data::<AppState>()?;
        let rows = transfer::Entity::find()
            .filter(transfer::Column::Reference.eq(format!("vps_session:{}", self.0.id)))
            .order_by_asc(transfer::Column::Id)
            .all(state.db.conn())
            .await
            .map_err(ApiError::from)?;
        Ok(rows
            .into_iter()
            .map(|row| Transfer::seen_by(row, Account::User(self.0.user_id)))
            .collect())
    }
}

#[derive(SimpleObject)]
pub struct VpsSessionConnection {
    edges: Vec<VpsSessionEdge>,
    page_info: PageInfo,
    total_count: u64,
}

#[derive(SimpleObject)]
pub struct VpsSessionEdge {
    cursor: String,
    node: VpsSession,
}

/// One page of sessions as a connection.
pub async fn connection(
    ctx: &Context<'_>,
    user: Option<Uuid>,
    status: Option<SessionStatus>,
    first: Option<i32>,
    after: Option<String>,
) -> Result<VpsSessionConnection> {
    let state = ctx.data::<AppState>()?;
    let first = pagination::page_size(first)?;
    let after = pagination::after(after.as_deref())?;
    let page = service::list(state.db.conn(), user, status, first, after)
        .await
        .map_err(ApiError::from)?;
    let edges: Vec<VpsSessionEdge> = page
        .rows
        .into_iter()
        .map(|row| VpsSessionEdge {
            cursor: pagination::cursor(row.id),
            node: VpsSession(row),
        })
        .collect();
    let cursors: Vec<String> = edges.iter().map(|e| e.cursor.clone()).collect();
    Ok(VpsSessionConnection {
        page_info: PageInfo::new(&cursors, page.has_next),
        edges,
        total_count: page.total,
    })
}

/// A worker, as admins see it (never its secret).
pub struct Worker(pub worker::Model);

#[Object]
impl Worker {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn key_id(&self) -> &str {
        &self.0.key_id
    }
    async fn status(&self) -> WorkerStatus {
        WorkerStatus::parse(&self.0.status).unwrap_or(WorkerStatus::Disabled)
    }
    /// Heard from within the heartbeat timeout.
    async fn online(&self) -> bool {
        self.0.reachable
    }
    async fn capacity(&self) -> i32 {
        self.0.capacity
    }
    /// Sessions holding a slot on it now.
    async fn load(&self, ctx: &Context<'_>) -> Result<i64> {
        let state = ctx.data::<AppState>()?;
        Ok(service::worker_load(state.db.conn(), self.0.id)
            .await
            .map_err(ApiError::from)?)
    }
    async fn last_heartbeat_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_heartbeat_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A new worker's credentials: shown once.
#[derive(SimpleObject)]
pub struct WorkerCredentials {
    worker: Worker,
    key_id: String,
    secret: String,
}

#[derive(InputObject)]
pub struct WorkerInput {
    /// Letters, digits, '-', '_' or '.'.
    pub name: String,
    /// Sessions it runs at once until its first heartbeat says otherwise.
    #[graphql(default = 4)]
    pub capacity: i32,
}

#[derive(InputObject)]
pub struct VpsProductInput {
    pub name: String,
    #[graphql(default)]
    pub description: String,
    pub vcpu: i32,
    pub memory_mb: i32,
    pub disk_gb: i32,
    pub region: String,
    /// Coins per hour.
    pub price_per_hour: i64,
    #[graphql(default = true)]
    pub active: bool,
}

impl From<VpsProductInput> for service::ProductInput {
    fn from(i: VpsProductInput) -> Self {
        Self {
            name: i.name,
            description: i.description,
            vcpu: i.vcpu,
            memory_mb: i.memory_mb,
            disk_gb: i.disk_gb,
            region: i.region,
            price_per_hour: i.price_per_hour,
            active: i.active,
        }
    }
}

#[derive(InputObject)]
pub struct StartVpsSessionInput {
    pub product_id: ID,
    /// 1 to 720.
    pub hours: i32,
    /// The same key returns the same session and pays once.
    pub idempotency_key: Option<String>,
    /// An OpenSSH public key line; without one, a one-time password is made.
    pub ssh_public_key: Option<String>,
}

#[derive(Default)]
pub struct VpsQuery;

#[Object]
impl VpsQuery {
    /// Machines on sale, cheapest first (admins may ask for inactive ones too).
    async fn vps_products(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] include_inactive: bool,
    ) -> Result<Vec<VpsProduct>> {
        if include_inactive {
            ctx.admin()?;
        }
        let state = ctx.data::<AppState>()?;
        let rows = service::products(state.db.conn(), include_inactive)
            .await
            .map_err(ApiError::from)?;
        Ok(rows.into_iter().map(VpsProduct).collect())
    }

    /// A session: yours, or anyone's for an admin. NOT_FOUND for anyone else.
    async fn vps_session(&self, ctx: &Context<'_>, id: ID) -> Result<Option<VpsSession>> {
        let viewer = ctx.viewer()?;
        let state = ctx.data::<AppState>()?;
        let id = parse_id(&id, "vps session")?;
        let row = service::visible(
            state.db.conn(),
            viewer.user_id,
            viewer.role == Role::Admin,
            id,
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Some(VpsSession(row)))
    }
}

#[derive(Default)]
pub struct VpsAdminQuery;

#[Object]
impl VpsAdminQuery {
    /// Every worker, by name.
    async fn workers(&self, ctx: &Context<'_>) -> Result<Vec<Worker>> {
        ctx.admin()?;
        let state = ctx.data::<AppState>()?;
        let rows = service::workers(state.db.conn())
            .await
            .map_err(ApiError::from)?;
        Ok(rows.into_iter().map(Worker).collect())
    }

    /// Anyone's sessions (one user's with `userId`), newest first.
    async fn vps_sessions(
        &self,
        ctx: &Context<'_>,
        user_id: Option<ID>,
        status: Option<SessionStatus>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<VpsSessionConnection> {
        ctx.admin()?;
        let user = user_id.map(|id| parse_id(&id, "user")).transpose()?;
        connection(ctx, user, status, first, after).await
    }
}

#[derive(Default)]
pub struct VpsMutation;

#[Object]
impl VpsMutation {
    /// Starts a session: reserves hours × price now, posted when the machine runs. Placed on
    /// a worker with room, or queued until one has.
    async fn start_vps_session(
        &self,
        ctx: &Context<'_>,
        input: StartVpsSessionInput,
    ) -> Result<VpsSession> {
        let viewer = ctx.viewer()?;
        let state = ctx.data::<AppState>()?;
        let product_id = parse_id(&input.product_id, "product")?;
        let row = service::start(
            state,
            viewer.user_id,
            service::StartRequest {
                product_id,
                hours: input.hours,
                idempotency_key: input.idempotency_key,
                ssh_public_key: input.ssh_public_key,
            },
        )
        .await
        .map_err(ApiError::from)?;
        Ok(VpsSession(row))
    }

    /// Pays for more hours (1 to 720). The same idempotency key extends once.
    async fn extend_vps_session(
        &self,
        ctx: &Context<'_>,
        id: ID,
        hours: i32,
        idempotency_key: Option<String>,
    ) -> Result<VpsSession> {
        let viewer = ctx.viewer()?;
        let state = ctx.data::<AppState>()?;
        let id = parse_id(&id, "vps session")?;
        let row = service::extend(
            state,
            viewer.user_id,
            viewer.role == Role::Admin,
            id,
            hours,
            idempotency_key,
        )
        .await
        .map_err(ApiError::from)?;
        Ok(VpsSession(row))
    }

    /// Stops a session; unused whole hours come back (everything, if it never ran).
    /// Stopping twice returns it unchanged.
    async fn stop_vps_session(&self, ctx: &Context<'_>, id: ID) -> Result<VpsSession> {
        let viewer = ctx.viewer()?;
        let state = ctx.data::<AppState>()?;
        let meta = ctx.data::<RequestMeta>()?;
        let id = parse_id(&id, "vps session")?;
        let row = service::stop(state, viewer.user_id, viewer.role == Role::Admin, id, meta)
            .await
            .map_err(ApiError::from)?;
        Ok(VpsSession(row))
    }

    /// Admin: adds a product (audited).
    async fn create_vps_product(
        &self,
        ctx: &Context<'_>,
        input: VpsProductInput,
    ) -> Result<VpsProduct> {
        let admin = ctx.admin()?;
        let state = ctx.data::<AppState>()?;
        let meta = ctx.data::<RequestMeta>()?;
        let row = service::save_product(state, admin.user_id(), None, input.into(), meta)
            .await
            .map_err(ApiError::from)?;
        Ok(VpsProduct(row))
    }

    /// Admin: changes a product (audited). Started sessions keep their price.
    async fn update_vps_product(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: VpsProductInput,
    ) -> Result<VpsProduct> {
        let admin = ctx.admin()?;
        let state = ctx.data::<AppState>()?;
        let meta = ctx.data::<RequestMeta>()?;
        let id = parse_id(&id, "product")?;
        let row = service::save_product(state, admin.user_id(), Some(id), input.into(), meta)
            .await
            .map_err(ApiError::from)?;
        Ok(VpsProduct(row))
    }

    /// Admin: registers a worker; its key id and secret are shown once (audited).
    async fn create_worker(
        &self,
        ctx: &Context<'_>,
        input: WorkerInput,
    ) -> Result<WorkerCredentials> {
        let admin = ctx.admin()?;
        let state = ctx.data::<AppState>()?;
        let meta = ctx.data::<RequestMeta>()?;
        let created =
            service::create_worker(state, admin.user_id(), &input.name, input.capacity, meta)
                .await
                .map_err(ApiError::from)?;
        Ok(WorkerCredentials {
            key_id: created.row.key_id.clone(),
            secret: created.secret,
            worker: Worker(created.row),
        })
    }

    /// Admin: online, draining (no new sessions) or disabled (every request refused).
    async fn set_worker_status(
        &self,
        ctx: &Context<'_>,
        id: ID,
        status: WorkerStatus,
    ) -> Result<Worker> {
        let admin = ctx.admin()?;
        let state = ctx.data::<AppState>()?;
        let meta = ctx.data::<RequestMeta>()?;
        let id = parse_id(&id, "worker")?;
        let row = service::set_worker_status(state, admin.user_id(), id, status, meta)
            .await
            .map_err(ApiError::from)?;
        Ok(Worker(row))
    }
}

/// One event of a progress stream.
#[derive(SimpleObject)]
pub struct VpsSessionEvent {
    seq: i32,
    session: VpsSession,
    changed_steps: Vec<ChecklistStep>,
    /// True for the first event without `afterSeq`: the whole checklist as of `seq`.
    snapshot: bool,
}

impl VpsSessionEvent {
    fn from_payload(seq: i32, payload: serde_json::Value) -> Option<Self> {
        let payload: EventPayload = serde_json::from_value(payload).ok()?;
        Some(Self {
            seq,
            session: VpsSession(payload.session),
            changed_steps: payload
                .changed_steps
                .into_iter()
                .map(ChecklistStep::from)
                .collect(),
            snapshot: false,
        })
    }

    fn from_row(row: event::Model) -> Option<Self> {
        Self::from_payload(row.seq, row.payload)
    }

    fn is_terminal(&self) -> bool {
        SessionStatus::parse(&self.session.0.status).is_some_and(SessionStatus::is_terminal)
    }
}

/// How often a follower checks the table even when pub/sub is quiet: the backstop for a
/// lost message with nothing after it.
const RECHECK: Duration = Duration::from_secs(60);
/// Events read from the table at a time when catching up.
const CATCH_UP_PAGE: u64 = 500;

/// Follows one session's events: pub/sub for speed, the table for completeness.
struct Follower {
    state: AppState,
    session_id: Uuid,
    /// Seq of the last event handed out.
    cursor: i32,
    queue: VecDeque<VpsSessionEvent>,
    deliveries: KvSubscription,
    finished: bool,
    recheck: tokio::time::Interval,
}

impl Follower {
    /// Reads every stored event after the cursor into the queue.
    async fn catch_up(&mut self) -> Result<(), ApiError> {
        loop {
            let rows = service::events_after(
                self.state.db.conn(),
                self.session_id,
                self.cursor,
                CATCH_UP_PAGE,
            )
            .await
            .map_err(ApiError::from)?;
            let full = rows.len() as u64 == CATCH_UP_PAGE;
            let fresh = rows.iter().filter(|r| r.seq > self.cursor).count();
            if fresh > 0 {
                self.state.metrics.record_progress("table", fresh as u64);
            }
            for row in rows {
                self.push(row.seq, VpsSessionEvent::from_row(row));
            }
            if !full {
                return Ok(());
            }
        }
    }

    fn push(&mut self, seq: i32, event: Option<VpsSessionEvent>) {
        if seq <= self.cursor {
            return;
        }
        self.cursor = seq;
        if let Some(event) = event {
            self.queue.push_back(event);
        }
    }

    async fn next(&mut self) -> Option<VpsSessionEvent> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                if self.queue.is_empty() {
                    // Idle followers hold no buffer (the snapshot or a catch-up grew it).
                    self.queue = VecDeque::new();
                }
                if event.is_terminal() {
                    self.finished = true;
                    self.queue.clear();
                }
                return Some(event);
            }
            if self.finished {
                return None;
            }
            tokio::select! {
                delivery = self.deliveries.next() => match delivery {
                    Some(Delivery::Message(bytes)) => {
                        match serde_json::from_slice::<Published>(&bytes) {
                            Ok(published) if published.seq == self.cursor + 1 => {
                                self.state.metrics.record_progress("pubsub", 1);
                                let event = VpsSessionEvent::from_payload(published.seq, published.payload);
                                self.push(published.seq, event);
                            }
                            Ok(published) if published.seq <= self.cursor => {}
                            // Ahead of us: something was missed; read it in order.
                            _ => Box::pin(self.catch_up()).await.ok()?,
                        }
                    }
                    Some(Delivery::Gap) => Box::pin(self.catch_up()).await.ok()?,
                    // The kv store is shutting down: hand out what the table has, then end.
                    None => {
                        Box::pin(self.catch_up()).await.ok()?;
                        self.finished = self.queue.is_empty();
                        if self.finished {
                            return None;
                        }
                    }
                },
                _ = self.recheck.tick() => Box::pin(self.catch_up()).await.ok()?,
            }
        }
    }
}

/// Checks the viewer may follow the session, subscribes, then reads the snapshot (or the
/// events after `after_seq`): the follower of [`VpsSubscription::vps_session_progress`].
async fn open_progress(
    state: AppState,
    viewer: Uuid,
    as_admin: bool,
    id: Uuid,
    after_seq: Option<i32>,
) -> Result<Follower, ApiError> {
    service::visible(state.db.conn(), viewer, as_admin, id).await?;
    // Subscribe first, then read: anything published after the read is delivered, and
    // anything before it is in the snapshot or the table.
    let deliveries = state.kv.subscribe(&service::progress_channel(id)).await?;
    let (row, items) = service::snapshot(state.db.conn(), id).await?;
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut follower = Follower {
        state,
        session_id: id,
        cursor: 0,
        queue: VecDeque::new(),
        deliveries,
        finished: false,
        recheck,
    };
    match after_seq {
        None => {
            follower.cursor = row.last_seq;
            follower.queue.push_back(VpsSessionEvent {
                seq: row.last_seq,
                session: VpsSession(row),
                changed_steps: items.into_iter().map(ChecklistStep::from).collect(),
                snapshot: true,
            });
        }
        Some(after) if after < 0 || after > row.last_seq => {
            return Err(ApiError::bad_input(
                "invalid_after_seq",
                format!("afterSeq must be 0 to {}", row.last_seq),
            ));
        }
        Some(after) => {
            follower.cursor = after;
            let terminal =
                SessionStatus::parse(&row.status).is_some_and(SessionStatus::is_terminal);
            follower.catch_up().await?;
            if terminal && follower.queue.is_empty() {
                follower.finished = true;
            }
        }
    }
    Ok(follower)
}

#[derive(Default)]
pub struct VpsSubscription;

#[Subscription]
impl VpsSubscription {
    /// A session's progress: first a snapshot of the session and its whole checklist (or,
    /// with `afterSeq`, every event after it), then each change in `seq` order, across
    /// instances, none lost or repeated. Ends when the session ends. Owner or admin only.
    async fn vps_session_progress(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        after_seq: Option<i32>,
    ) -> Result<impl Stream<Item = VpsSessionEvent> + use<>> {
        let viewer = ctx.viewer()?;
        let state = ctx.data::<AppState>()?.clone();
        let id = parse_id(&session_id, "vps session")?;
        // Boxed: the library keeps this future's space for the stream's whole life, and the
        // database reads in it are large; every idle subscriber would carry them.
        let follower = Box::pin(open_progress(
            state,
            viewer.user_id,
            viewer.role == Role::Admin,
            id,
            after_seq,
        ))
        .await?;
        Ok(futures_util::stream::unfold(follower, |mut f| async move {
            f.next().await.map(|event| (event, f))
        }))
    }
}
