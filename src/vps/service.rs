//! The VPS marketplace: products, starting, extending and stopping sessions, what workers
//! report, and the sweeps (expiry, silent workers, timeouts, the queue). Every change to a
//! session is written with its event in one transaction; [`Effects`] then publishes the
//! events, wakes workers and notifies wallets after the commit.

use std::{future::Future, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    CHECKLIST, SessionStatus, WorkerStatus,
    entity::{checklist_item, event, job, product, session, worker},
};
use crate::{
    app::AppState,
    graphql::{ApiError, RequestMeta},
    platform::{
        audit::{self, AuditEntry},
        db::{Page, is_retryable, newest_first},
    },
    wallet::{
        self, Account, SystemAccount, TransferKind, TransferRequest, WalletError, entity::transfer,
    },
};

/// Longest session, and longest extension, in hours.
pub const MAX_HOURS: i32 = 720;
/// Characters of a step message kept.
const MAX_MESSAGE: usize = 500;
/// The login name on every machine.
const USERNAME: &str = "tessera";

#[derive(Debug, thiserror::Error)]
pub enum VpsError {
    #[error("{message}")]
    Invalid {
        reason: &'static str,
        message: String,
    },
    #[error("{message}")]
    Conflict {
        reason: &'static str,
        message: String,
    },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error(transparent)]
    Wallet(#[from] WalletError),
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
}

impl VpsError {
    fn invalid(reason: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            reason,
            message: message.into(),
        }
    }

    fn conflict(reason: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            reason,
            message: message.into(),
        }
    }

    fn retryable(&self) -> bool {
        matches!(self, VpsError::Db(e) | VpsError::Wallet(WalletError::Db(e)) if is_retryable(e))
    }
}

impl From<VpsError> for ApiError {
    fn from(err: VpsError) -> Self {
        match err {
            VpsError::Invalid { reason, message } => ApiError::bad_input(reason, message),
            VpsError::Conflict { reason, message } => ApiError::conflict(reason, message),
            VpsError::NotFound(what) => ApiError::not_found(what),
            VpsError::Wallet(e) => e.into(),
            VpsError::Db(e) => e.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, VpsError>;

/// Runs `$body` (an `async` block using `$txn: &DatabaseTransaction` and `$fx: &mut
/// Effects`) in one write transaction, again on a transient database conflict, commits, and
/// then applies its effects.
macro_rules! in_txn {
    ($state:expr, |$txn:ident, $fx:ident| $body:expr) => {{
        let state: &AppState = $state;
        let mut attempt = 0u32;
        loop {
            let mut effects = Effects::default();
            let outcome: Result<_> = async {
                let txn = state.db.begin_write().await?;
                let result = {
                    let $txn = &txn;
                    let $fx = &mut effects;
                    $body.await
                };
                match result {
                    Ok(value) => {
                        txn.commit().await?;
                        Ok(value)
                    }
                    Err(e) => {
                        txn.rollback().await?;
                        Err(e)
                    }
                }
            }
            .await;
            match outcome {
                Err(e) if e.retryable() && attempt < 6 => {
                    attempt += 1;
                    let jitter = u64::from(rand::random::<u8>() % 10);
                    tokio::time::sleep(Duration::from_millis(5 * 2u64.pow(attempt) + jitter)).await;
                }
                Ok(value) => {
                    effects.apply(state).await;
                    break Ok(value);
                }
                Err(e) => break Err(e),
            }
        }
    }};
}

/// What to do once a transaction has committed.
#[derive(Default)]
pub struct Effects {
    /// (session, published message) in seq order.
    events: Vec<(Uuid, Vec<u8>)>,
    wallets: Vec<Uuid>,
    workers: Vec<Uuid>,
    /// Capacity was freed: try to place queued sessions.
    dispatch: bool,
}

impl Effects {
    pub async fn apply(self, state: &AppState) {
        for (session, message) in &self.events {
            if let Err(e) = state.kv.publish(&progress_channel(*session), message).await {
                // Subscribers catch up from the table on their next event or check.
                tracing::warn!(error = %e, session.id = %session, "could not publish a progress event");
            }
        }
        for worker in &self.workers {
            if let Err(e) = state.kv.publish(&jobs_channel(*worker), b"").await {
                tracing::warn!(error = %e, "could not wake a worker (it polls again soon)");
            }
        }
        wallet::service::notify(state, &self.wallets).await;
        if self.dispatch {
            spawn_dispatch(state);
        }
    }
}

/// Places queued sessions in the background (capacity was freed).
fn spawn_dispatch(state: &AppState) {
    let state = state.clone();
    // Boxed as `dyn Send`: placing sessions applies effects, which may come back here.
    let task: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
        if let Err(e) = dispatch_queued(&state).await {
            tracing::warn!(error = %e, "placing queued sessions failed");
        }
    });
    tokio::spawn(task);
}

/// Pub/sub channel of one session's progress events (payload: [`Published`] JSON).
pub fn progress_channel(session_id: Uuid) -> String {
    format!("vps.progress.{session_id}")
}

/// Pub/sub channel that wakes a worker's long poll.
pub fn jobs_channel(worker_id: Uuid) -> String {
    format!("vps.jobs.{worker_id}")
}

/// A progress event as published: the seq and the stored payload.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Published {
    pub seq: i32,
    pub payload: serde_json::Value,
}

/// The stored payload of an event: the session after the change and the steps it changed.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventPayload {
    pub session: session::Model,
    pub changed_steps: Vec<checklist_item::Model>,
}

fn status_of(row: &session::Model) -> SessionStatus {
    SessionStatus::parse(&row.status).unwrap_or(SessionStatus::Failed)
}

fn reference(session_id: Uuid) -> String {
    format!("vps_session:{session_id}")
}

/// Saves `row` (bumping its seq) and appends the event describing the change.
async fn record(
    conn: &impl ConnectionTrait,
    effects: &mut Effects,
    row: &mut session::Model,
    changed: Vec<checklist_item::Model>,
) -> Result<()> {
    let now = Utc::now();
    row.last_seq += 1;
    row.updated_at = now;
    row.clone()
        .into_active_model()
        .reset_all()
        .update(conn)
        .await?;
    let payload = serde_json::to_value(EventPayload {
        session: row.clone(),
        changed_steps: changed,
    })
    .map_err(|e| sea_orm::DbErr::Custom(format!("event payload: {e}")))?;
    event::ActiveModel {
        session_id: Set(row.id),
        seq: Set(row.last_seq),
        payload: Set(payload.clone()),
        created_at: Set(now),
    }
    .insert(conn)
    .await?;
    let message = serde_json::to_vec(&Published {
        seq: row.last_seq,
        payload,
    })
    .unwrap_or_default();
    effects.events.push((row.id, message));
    Ok(())
}

/// The session row, locked for the rest of the transaction (PostgreSQL; SQLite's write
/// transactions are already serial).
async fn lock_session(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<session::Model>> {
    Ok(session::Entity::find_by_id(id)
        .lock_exclusive()
        .one(conn)
        .await?)
}

// ---------------------------------------------------------------------------------------
// Products

/// What an admin sets on a product.
#[derive(Debug, Clone)]
pub struct ProductInput {
    pub name: String,
    pub description: String,
    pub vcpu: i32,
    pub memory_mb: i32,
    pub disk_gb: i32,
    pub region: String,
    pub price_per_hour: i64,
    pub active: bool,
}

fn check_product(input: &ProductInput) -> Result<()> {
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 80 {
        return Err(VpsError::invalid(
            "invalid_name",
            "a product name has 1 to 80 characters",
        ));
    }
    if input.description.chars().count() > 2000 {
        return Err(VpsError::invalid(
            "invalid_description",
            "a description has at most 2000 characters",
        ));
    }
    if !(1..=512).contains(&input.vcpu) {
        return Err(VpsError::invalid("invalid_vcpu", "vCPUs must be 1 to 512"));
    }
    if !(128..=4_194_304).contains(&input.memory_mb) {
        return Err(VpsError::invalid(
            "invalid_memory",
            "memory must be 128 MiB to 4 TiB",
        ));
    }
    if !(1..=65_536).contains(&input.disk_gb) {
        return Err(VpsError::invalid(
            "invalid_disk",
            "disk must be 1 to 65536 GB",
        ));
    }
    let region = input.region.trim();
    if region.is_empty() || region.chars().count() > 40 {
        return Err(VpsError::invalid(
            "invalid_region",
            "a region has 1 to 40 characters",
        ));
    }
    if !(0..=1_000_000_000).contains(&input.price_per_hour) {
        return Err(VpsError::invalid(
            "invalid_price",
            "the price per hour must be 0 to 1,000,000,000 coins",
        ));
    }
    Ok(())
}

/// Products on sale (every product when `include_inactive`), cheapest first.
pub async fn products(
    conn: &impl ConnectionTrait,
    include_inactive: bool,
) -> Result<Vec<product::Model>> {
    let mut query = product::Entity::find();
    if !include_inactive {
        query = query.filter(product::Column::Active.eq(true));
    }
    Ok(query
        .order_by_asc(product::Column::PricePerHour)
        .order_by_asc(product::Column::Name)
        .all(conn)
        .await?)
}

/// Admin: creates a product (`id: None`) or replaces one's settings (audited). Sessions
/// already started keep the price they paid.
pub async fn save_product(
    state: &AppState,
    admin: Uuid,
    id: Option<Uuid>,
    input: ProductInput,
    meta: &RequestMeta,
) -> Result<product::Model> {
    check_product(&input)?;
    let txn = state.db.begin_write().await?;
    let now = Utc::now();
    let (row, action) = match id {
        None => {
            let row = product::ActiveModel {
                id: Set(Uuid::now_v7()),
                name: Set(input.name.trim().to_owned()),
                description: Set(input.description.trim().to_owned()),
                vcpu: Set(input.vcpu),
                memory_mb: Set(input.memory_mb),
                disk_gb: Set(input.disk_gb),
                region: Set(input.region.trim().to_owned()),
                price_per_hour: Set(input.price_per_hour),
                active: Set(input.active),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(&txn)
            .await?;
            (row, "vps.product.create")
        }
        Some(id) => {
            let Some(existing) = product::Entity::find_by_id(id).one(&txn).await? else {
                return Err(VpsError::NotFound("product"));
            };
            let mut row = existing.into_active_model();
            row.name = Set(input.name.trim().to_owned());
            row.description = Set(input.description.trim().to_owned());
            row.vcpu = Set(input.vcpu);
            row.memory_mb = Set(input.memory_mb);
            row.disk_gb = Set(input.disk_gb);
            row.region = Set(input.region.trim().to_owned());
            row.price_per_hour = Set(input.price_per_hour);
            row.active = Set(input.active);
            row.updated_at = Set(now);
            (row.update(&txn).await?, "vps.product.update")
        }
    };
    audit::record(
        &txn,
        AuditEntry::by(admin, action, meta)
            .on("vps_product", row.id)
            .details(json!({
                "name": row.name,
                "pricePerHour": row.price_per_hour,
                "active": row.active,
            })),
    )
    .await?;
    txn.commit().await?;
    Ok(row)
}

// ---------------------------------------------------------------------------------------
// Sessions

/// A request to start a session.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub product_id: Uuid,
    pub hours: i32,
    pub idempotency_key: Option<String>,
    /// An OpenSSH public key; without one the session gets a one-time password.
    pub ssh_public_key: Option<String>,
}

fn check_hours(hours: i32) -> Result<()> {
    if !(1..=MAX_HOURS).contains(&hours) {
        return Err(VpsError::invalid(
            "hours_out_of_range",
            format!("hours must be 1 to {MAX_HOURS}"),
        ));
    }
    Ok(())
}

fn check_key(key: &Option<String>) -> Result<()> {
    if key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > wallet::service::MAX_KEY_LEN)
    {
        return Err(VpsError::invalid(
            "invalid_idempotency_key",
            "the idempotency key must be 1 to 160 characters",
        ));
    }
    Ok(())
}

/// A one-line OpenSSH public key of a known type, or a refusal.
fn check_ssh_key(key: &str) -> Result<String> {
    let key = key.trim();
    let mut parts = key.split_whitespace();
    let kind = parts.next().unwrap_or("");
    let body = parts.next().unwrap_or("");
    let known = matches!(
        kind,
        "ssh-ed25519"
            | "ssh-rsa"
            | "ecdsa-sha2-nistp256"
            | "ecdsa-sha2-nistp384"
            | "ecdsa-sha2-nistp521"
            | "sk-ssh-ed25519@openssh.com"
    );
    let body_ok = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    if !known || !body_ok || key.len() > 4096 || key.contains(['\n', '\r']) {
        return Err(VpsError::invalid(
            "invalid_ssh_key",
            "give one OpenSSH public key line, such as `ssh-ed25519 AAAA… you@host`",
        ));
    }
    Ok(key.to_owned())
}

fn cost(hours: i32, price_per_hour: i64) -> Result<i64> {
    price_per_hour
        .checked_mul(i64::from(hours))
        .ok_or_else(|| VpsError::invalid("amount_too_large", "this costs more than can be paid"))
}

fn scoped_hash(scoped: &str) -> String {
    hex::encode(Sha256::digest(scoped.as_bytes()))
}

/// How long a session's coin reservation may wait to be posted: the queue and provisioning
/// timeouts (after which the sweep fails the session), with an hour to spare.
fn reservation_timeout(state: &AppState) -> Duration {
    let vps = &state.config.vps;
    vps.vps_queue_timeout.0 + vps.vps_provision_timeout.0 + Duration::from_secs(3600)
}

/// Starts a session: reserves `hours × price` and creates the session and its checklist in
/// one transaction, then places it on a worker with free capacity or queues it. The same
/// idempotency key returns the same session and moves nothing.
pub async fn start(state: &AppState, user_id: Uuid, req: StartRequest) -> Result<session::Model> {
    check_hours(req.hours)?;
    check_key(&req.idempotency_key)?;
    let ssh_key = req
        .ssh_public_key
        .as_deref()
        .map(check_ssh_key)
        .transpose()?;
    let product = product::Entity::find_by_id(req.product_id)
        .one(state.db.conn())
        .await?
        .ok_or(VpsError::NotFound("product"))?;
    if !product.active {
        return Err(VpsError::invalid(
            "product_inactive",
            "this product is not on sale",
        ));
    }
    let amount = cost(req.hours, product.price_per_hour)?;
    let scoped = req
        .idempotency_key
        .as_ref()
        .map(|k| format!("{user_id}:{k}"));
    let hash = scoped_hash(&format!(
        "{}|{}|{}",
        req.product_id,
        req.hours,
        ssh_key.as_deref().unwrap_or("")
    ));
    let max_live = u64::from(state.config.vps.vps_max_live_sessions);
    let timeout = reservation_timeout(state);
    let heartbeat_timeout = state.config.vps.vps_heartbeat_timeout.0;
    let (product, scoped_ref, hash_ref, ssh_key) = (&product, &scoped, &hash, &ssh_key);
    let result = in_txn!(state, |txn, fx| async {
        let (scoped, hash) = (scoped_ref, hash_ref);
        {
            wallet::service::lock_user(txn, user_id).await?;
            if let Some(key) = scoped {
                let earlier = session::Entity::find()
                    .filter(session::Column::IdempotencyKey.eq(key.as_str()))
                    .one(txn)
                    .await?;
                if let Some(row) = earlier {
                    if row.request_hash.as_deref() != Some(hash.as_str()) {
                        return Err(VpsError::conflict(
                            "idempotency_key_reused",
                            "this idempotency key was already used for a different session",
                        ));
                    }
                    return Ok(row);
                }
            }
            let live = session::Entity::find()
                .filter(session::Column::UserId.eq(user_id))
                .filter(session::Column::Status.is_in(SessionStatus::live_strs()))
                .count(txn)
                .await?;
            if live >= max_live {
                return Err(VpsError::conflict(
                    "too_many_sessions",
                    format!("you already have {max_live} live sessions; stop one first"),
                ));
            }
            let id = Uuid::now_v7();
            if amount > 0 {
                let moved = wallet::service::transfer_in(
                    txn,
                    &TransferRequest::new(
                        Account::User(user_id),
                        Account::System(SystemAccount::Sales),
                        amount,
                        TransferKind::VpsSession,
                    )
                    .reference(reference(id))
                    .idempotency_key(scoped.as_ref().map(|k| format!("vps:{}", scoped_hash(k))))
                    .metadata(json!({ "hours": req.hours, "product": product.id }))
                    .pending(timeout),
                )
                .await?;
                fx.wallets.extend(moved.users);
            }
            let now = Utc::now();
            let mut row = session::Model {
                id,
                user_id,
                product_id: product.id,
                worker_id: None,
                status: SessionStatus::Queued.as_str().to_owned(),
                hours: req.hours,
                price_per_hour: product.price_per_hour,
                amount_paid: amount,
                amount_refunded: 0,
                idempotency_key: scoped.clone(),
                request_hash: scoped.as_ref().map(|_| hash.clone()),
                last_seq: 0,
                ssh_key: ssh_key.clone(),
                username: USERNAME.to_owned(),
                password: ssh_key.is_none().then(one_time_password),
                host: None,
                port: None,
                failure_reason: None,
                created_at: now,
                updated_at: now,
                provisioning_at: None,
                running_at: None,
                ends_at: None,
                ended_at: None,
            };
            row.clone()
                .into_active_model()
                .reset_all()
                .insert(txn)
                .await?;
            let items: Vec<checklist_item::Model> = CHECKLIST
                .iter()
                .enumerate()
                .map(|(i, (key, title))| checklist_item::Model {
                    session_id: id,
                    key: (*key).to_owned(),
                    title: (*title).to_owned(),
                    position: i as i32 + 1,
                    status: "pending".to_owned(),
                    message: None,
                    updated_at: None,
                })
                .collect();
            checklist_item::Entity::insert_many(
                items
                    .iter()
                    .map(|i| i.clone().into_active_model().reset_all()),
            )
            .exec(txn)
            .await?;
            assign(txn, fx, &mut row, heartbeat_timeout).await?;
            record(txn, fx, &mut row, items).await?;
            tracing::info!(session.id = %id, user.id = %user_id, hours = req.hours, status = %row.status, "vps session started");
            Ok(row)
        }
    });
    match result {
        // Lost a race with the same key: the winner's session is the answer.
        Err(VpsError::Db(_) | VpsError::Wallet(WalletError::InsufficientFunds { .. }))
            if scoped.is_some() =>
        {
            let key = scoped.as_deref().unwrap_or_default();
            match session::Entity::find()
                .filter(session::Column::IdempotencyKey.eq(key))
                .one(state.db.conn())
                .await?
            {
                Some(row) if row.request_hash.as_deref() == Some(hash.as_str()) => Ok(row),
                _ => result,
            }
        }
        other => other,
    }
}

fn one_time_password() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 18]>())
}

/// Places `row` on the online worker with the most free capacity, if any: status
/// `pending` and a provision job. Leaves it queued otherwise.
async fn assign(
    conn: &impl ConnectionTrait,
    fx: &mut Effects,
    row: &mut session::Model,
    heartbeat_timeout: Duration,
) -> Result<bool> {
    let cutoff = Utc::now() - chrono::Duration::from_std(heartbeat_timeout).unwrap_or_default();
    let candidates = worker::Entity::find()
        .filter(worker::Column::Status.eq(WorkerStatus::Online.as_str()))
        .filter(worker::Column::Reachable.eq(true))
        .filter(worker::Column::LastHeartbeatAt.gt(cutoff))
        .all(conn)
        .await?;
    let mut ranked = Vec::with_capacity(candidates.len());
    for w in candidates {
        let used = live_on(conn, w.id).await?;
        if used < i64::from(w.capacity) {
            ranked.push((i64::from(w.capacity) - used, w.id));
        }
    }
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, worker_id) in ranked {
        // Lock the worker and count again: two placements must not share its last slot.
        let Some(w) = worker::Entity::find_by_id(worker_id)
            .lock_exclusive()
            .one(conn)
            .await?
        else {
            continue;
        };
        if live_on(conn, w.id).await? >= i64::from(w.capacity) {
            continue;
        }
        row.worker_id = Some(w.id);
        row.status = SessionStatus::Pending.as_str().to_owned();
        add_job(conn, fx, w.id, row.id, "provision").await?;
        return Ok(true);
    }
    Ok(false)
}

/// Sessions that hold a slot on a worker.
async fn live_on(conn: &impl ConnectionTrait, worker_id: Uuid) -> Result<i64> {
    let holding = [
        SessionStatus::Pending,
        SessionStatus::Provisioning,
        SessionStatus::Running,
        SessionStatus::Stopping,
    ]
    .map(SessionStatus::as_str);
    Ok(session::Entity::find()
        .filter(session::Column::WorkerId.eq(worker_id))
        .filter(session::Column::Status.is_in(holding))
        .count(conn)
        .await? as i64)
}

async fn add_job(
    conn: &impl ConnectionTrait,
    fx: &mut Effects,
    worker_id: Uuid,
    session_id: Uuid,
    kind: &str,
) -> Result<()> {
    job::ActiveModel {
        id: Set(Uuid::now_v7()),
        worker_id: Set(worker_id),
        session_id: Set(session_id),
        kind: Set(kind.to_owned()),
        created_at: Set(Utc::now()),
        claimed_at: Set(None),
    }
    .insert(conn)
    .await?;
    fx.workers.push(worker_id);
    Ok(())
}

/// The session's reservations still pending, oldest first.
async fn open_reservations(
    conn: &impl ConnectionTrait,
    session_id: Uuid,
) -> Result<Vec<transfer::Model>> {
    Ok(transfer::Entity::find()
        .filter(transfer::Column::Reference.eq(reference(session_id)))
        .filter(transfer::Column::Phase.eq("pending"))
        .filter(transfer::Column::Status.eq("pending"))
        .order_by_asc(transfer::Column::CreatedAt)
        .all(conn)
        .await?)
}

/// Voids every open reservation of the session (it never ran): all of it back.
async fn void_all(
    conn: &impl ConnectionTrait,
    fx: &mut Effects,
    row: &mut session::Model,
) -> Result<()> {
    let mut released = 0;
    for r in open_reservations(conn, row.id).await? {
        let done = wallet::service::void_in(conn, r.id).await?;
        released += r.amount;
        fx.wallets.extend(done.users);
    }
    row.amount_refunded += released;
    Ok(())
}

/// Posts every open reservation (the machine is running). False when one had already
/// expired, so the session cannot be paid for.
async fn post_all(
    conn: &impl ConnectionTrait,
    fx: &mut Effects,
    row: &session::Model,
) -> Result<bool> {
    for r in open_reservations(conn, row.id).await? {
        match wallet::service::post_in(conn, r.id, None).await {
            Ok(done) => fx.wallets.extend(done.users),
            Err(WalletError::PendingExpired) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Ends `row` as failed: whatever it reserved goes back, and the stream ends.
async fn fail(
    conn: &impl ConnectionTrait,
    fx: &mut Effects,
    row: &mut session::Model,
    reason: String,
    changed: Vec<checklist_item::Model>,
) -> Result<()> {
    void_all(conn, fx, row).await?;
    row.status = SessionStatus::Failed.as_str().to_owned();
    row.failure_reason = Some(reason);
    row.ended_at = Some(Utc::now());
    fx.dispatch = true;
    record(conn, fx, row, changed).await
}

/// A session seen by `actor`: their own, or anyone's for an admin; NOT_FOUND otherwise.
pub async fn visible(
    conn: &impl ConnectionTrait,
    actor: Uuid,
    as_admin: bool,
    id: Uuid,
) -> Result<session::Model> {
    session::Entity::find_by_id(id)
        .one(conn)
        .await?
        .filter(|row| as_admin || row.user_id == actor)
        .ok_or(VpsError::NotFound("vps session"))
}

/// Pays for `hours` more. Before it runs, another reservation; while running, a transfer
/// at once and a later end. The same idempotency key extends once.
pub async fn extend(
    state: &AppState,
    actor: Uuid,
    as_admin: bool,
    id: Uuid,
    hours: i32,
    idempotency_key: Option<String>,
) -> Result<session::Model> {
    check_hours(hours)?;
    check_key(&idempotency_key)?;
    let timeout = reservation_timeout(state);
    let key = idempotency_key.map(|k| {
        format!(
            "vps:extend:{}",
            scoped_hash(&format!("{actor}:{id}:{hours}:{k}"))
        )
    });
    in_txn!(state, |txn, fx| async {
        let key = key.clone();
        {
            let Some(mut row) = lock_session(txn, id)
                .await?
                .filter(|row| as_admin || row.user_id == actor)
            else {
                return Err(VpsError::NotFound("vps session"));
            };
            if let Some(k) = &key
                && wallet::service::by_key(txn, k).await?.is_some()
            {
                return Ok(row);
            }
            let status = status_of(&row);
            if status.is_terminal() || status == SessionStatus::Stopping {
                return Err(VpsError::conflict(
                    "session_ended",
                    "this session has ended; start a new one",
                ));
            }
            let total = row.hours + hours;
            if total > MAX_HOURS * 12 {
                return Err(VpsError::invalid(
                    "hours_out_of_range",
                    "a session lasts at most a year",
                ));
            }
            let amount = cost(hours, row.price_per_hour)?;
            if amount > 0 {
                let mut request = TransferRequest::new(
                    Account::User(row.user_id),
                    Account::System(SystemAccount::Sales),
                    amount,
                    TransferKind::VpsSession,
                )
                .reference(reference(row.id))
                .idempotency_key(key.clone())
                .metadata(json!({ "hours": hours, "extension": true }));
                if status != SessionStatus::Running {
                    request = request.pending(timeout);
                }
                let moved = wallet::service::transfer_in(txn, &request).await?;
                fx.wallets.extend(moved.users);
            }
            row.hours = total;
            row.amount_paid += amount;
            if let Some(ends) = row.ends_at {
                row.ends_at = Some(ends + chrono::Duration::hours(i64::from(hours)));
            }
            record(txn, fx, &mut row, Vec::new()).await?;
            tracing::info!(session.id = %row.id, hours, "vps session extended");
            Ok(row)
        }
    })
}

/// Stops a session. Not yet picked up: ends now, everything back. Provisioning: everything
/// back, the worker tears down. Running: the unused whole hours back, the worker tears
/// down. Stopping or ended: unchanged.
pub async fn stop(
    state: &AppState,
    actor: Uuid,
    as_admin: bool,
    id: Uuid,
    meta: &RequestMeta,
) -> Result<session::Model> {
    in_txn!(state, |txn, fx| async {
        let Some(mut row) = lock_session(txn, id)
            .await?
            .filter(|row| as_admin || row.user_id == actor)
        else {
            return Err(VpsError::NotFound("vps session"));
        };
        let status = status_of(&row);
        let now = Utc::now();
        match status {
            SessionStatus::Stopping
            | SessionStatus::Stopped
            | SessionStatus::Failed
            | SessionStatus::Expired => return Ok(row),
            SessionStatus::Queued | SessionStatus::Pending => {
                void_all(txn, fx, &mut row).await?;
                job::Entity::delete_many()
                    .filter(job::Column::SessionId.eq(row.id))
                    .filter(job::Column::ClaimedAt.is_null())
                    .exec(txn)
                    .await?;
                row.status = SessionStatus::Stopped.as_str().to_owned();
                row.ended_at = Some(now);
            }
            SessionStatus::Provisioning => {
                void_all(txn, fx, &mut row).await?;
                row.status = SessionStatus::Stopping.as_str().to_owned();
                row.ended_at = Some(now);
                if let Some(worker) = row.worker_id {
                    add_job(txn, fx, worker, row.id, "teardown").await?;
                }
            }
            SessionStatus::Running => {
                refund_unused(txn, fx, &mut row, now).await?;
                row.status = SessionStatus::Stopping.as_str().to_owned();
                row.ended_at = Some(now);
                if let Some(worker) = row.worker_id {
                    add_job(txn, fx, worker, row.id, "teardown").await?;
                }
            }
        }
        fx.dispatch = true;
        record(txn, fx, &mut row, Vec::new()).await?;
        if as_admin && row.user_id != actor {
            audit::record(
                txn,
                AuditEntry::by(actor, "vps.session.stop", meta).on("vps_session", row.id),
            )
            .await?;
        }
        tracing::info!(session.id = %row.id, status = %row.status, refunded = row.amount_refunded, "vps session stopped");
        Ok(row)
    })
}

/// Gives the unused whole hours of a running session back (a `REFUND` transfer).
async fn refund_unused(
    conn: &impl ConnectionTrait,
    fx: &mut Effects,
    row: &mut session::Model,
    until: DateTime<Utc>,
) -> Result<()> {
    let unused = i64::from(row.hours) - used_hours(row, until);
    let refund = unused * row.price_per_hour;
    if refund > 0 {
        let moved = wallet::service::transfer_in(
            conn,
            &TransferRequest::new(
                Account::System(SystemAccount::Sales),
                Account::User(row.user_id),
                refund,
                TransferKind::Refund,
            )
            .reference(reference(row.id))
            .idempotency_key(Some(format!("vps:refund:{}", row.id)))
            .metadata(json!({ "unusedHours": unused })),
        )
        .await?;
        fx.wallets.extend(moved.users);
        row.amount_refunded += refund;
    }
    Ok(())
}

/// Hours started since the machine began running (at least 1, at most what was paid).
fn used_hours(row: &session::Model, now: DateTime<Utc>) -> i64 {
    let Some(since) = row.running_at else {
        return 0;
    };
    let seconds = (now - since).num_seconds().max(0);
    let started = (seconds + 3599) / 3600;
    started.clamp(1, i64::from(row.hours))
}

/// One page of sessions (a user's, or everyone's), newest first.
pub async fn list(
    conn: &impl ConnectionTrait,
    user_id: Option<Uuid>,
    status: Option<SessionStatus>,
    first: u64,
    before: Option<Uuid>,
) -> Result<Page<session::Model>> {
    let mut filter = Condition::all();
    if let Some(user) = user_id {
        filter = filter.add(session::Column::UserId.eq(user));
    }
    if let Some(status) = status {
        filter = filter.add(session::Column::Status.eq(status.as_str()));
    }
    Ok(newest_first::<session::Entity>(conn, filter, session::Column::Id, first, before).await?)
}

/// The checklist of a session, in order.
pub async fn checklist(
    conn: &impl ConnectionTrait,
    session_id: Uuid,
) -> Result<Vec<checklist_item::Model>> {
    Ok(checklist_item::Entity::find()
        .filter(checklist_item::Column::SessionId.eq(session_id))
        .order_by_asc(checklist_item::Column::Position)
        .all(conn)
        .await?)
}

/// The session and its checklist as of one seq. Reads the seq before and after the
/// checklist and tries again if an event landed in between, so the pair is consistent on
/// either database without a snapshot transaction.
pub async fn snapshot(
    conn: &impl ConnectionTrait,
    session_id: Uuid,
) -> Result<(session::Model, Vec<checklist_item::Model>)> {
    loop {
        let before = session::Entity::find_by_id(session_id)
            .one(conn)
            .await?
            .ok_or(VpsError::NotFound("vps session"))?;
        let items = checklist(conn, session_id).await?;
        let after = session::Entity::find_by_id(session_id)
            .one(conn)
            .await?
            .ok_or(VpsError::NotFound("vps session"))?;
        if after.last_seq == before.last_seq {
            return Ok((after, items));
        }
    }
}

/// Events after `after_seq`, in order, at most `limit`.
pub async fn events_after(
    conn: &impl ConnectionTrait,
    session_id: Uuid,
    after_seq: i32,
    limit: u64,
) -> Result<Vec<event::Model>> {
    Ok(event::Entity::find()
        .filter(event::Column::SessionId.eq(session_id))
        .filter(event::Column::Seq.gt(after_seq))
        .order_by_asc(event::Column::Seq)
        .limit(limit)
        .all(conn)
        .await?)
}

// ---------------------------------------------------------------------------------------
// Workers

/// A new worker's credentials (the secret is shown once).
pub struct NewWorker {
    pub row: worker::Model,
    pub secret: String,
}

/// Admin: registers a worker (audited).
pub async fn create_worker(
    state: &AppState,
    admin: Uuid,
    name: &str,
    capacity: i32,
    meta: &RequestMeta,
) -> Result<NewWorker> {
    let name = name.trim();
    if name.is_empty()
        || name.len() > 80
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(VpsError::invalid(
            "invalid_name",
            "a worker name has 1 to 80 letters, digits, '-', '_' or '.'",
        ));
    }
    if !(1..=10_000).contains(&capacity) {
        return Err(VpsError::invalid(
            "invalid_capacity",
            "capacity must be 1 to 10000",
        ));
    }
    let txn = state.db.begin_write().await?;
    if worker::Entity::find()
        .filter(worker::Column::Name.eq(name))
        .one(&txn)
        .await?
        .is_some()
    {
        return Err(VpsError::conflict(
            "name_taken",
            "a worker with this name exists",
        ));
    }
    let (row, secret) = insert_worker(&txn, name, capacity).await?;
    audit::record(
        &txn,
        AuditEntry::by(admin, "vps.worker.create", meta)
            .on("worker", row.id)
            .details(json!({ "name": row.name, "keyId": row.key_id, "capacity": capacity })),
    )
    .await?;
    txn.commit().await?;
    tracing::info!(worker.id = %row.id, worker.name = %row.name, "worker created");
    Ok(NewWorker { row, secret })
}

fn new_credentials() -> (String, String) {
    use base64::Engine;
    let key_id = format!("wk_{}", hex::encode(rand::random::<[u8; 8]>()));
    let secret = format!(
        "wks_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    );
    (key_id, secret)
}

async fn insert_worker(
    conn: &impl ConnectionTrait,
    name: &str,
    capacity: i32,
) -> Result<(worker::Model, String)> {
    let (key_id, secret) = new_credentials();
    let row = worker::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name.to_owned()),
        key_id: Set(key_id),
        secret: Set(secret.clone()),
        capacity: Set(capacity),
        status: Set(WorkerStatus::Online.as_str().to_owned()),
        reachable: Set(false),
        last_heartbeat_at: Set(None),
        created_at: Set(Utc::now()),
    }
    .insert(conn)
    .await?;
    Ok((row, secret))
}

/// The embedded worker's row, with fresh credentials each start (they live only in this
/// process).
pub async fn embedded_worker(state: &AppState, capacity: i32) -> Result<NewWorker> {
    const NAME: &str = "embedded";
    let txn = state.db.begin_write().await?;
    let found = worker::Entity::find()
        .filter(worker::Column::Name.eq(NAME))
        .one(&txn)
        .await?;
    let done = match found {
        None => {
            let (row, secret) = insert_worker(&txn, NAME, capacity).await?;
            NewWorker { row, secret }
        }
        Some(row) => {
            let (key_id, secret) = new_credentials();
            let mut active = row.into_active_model();
            active.key_id = Set(key_id);
            active.secret = Set(secret.clone());
            active.capacity = Set(capacity);
            NewWorker {
                row: active.update(&txn).await?,
                secret,
            }
        }
    };
    txn.commit().await?;
    Ok(done)
}

/// Admin: sets a worker's status (audited). Draining takes no new sessions; disabled is
/// refused on every request.
pub async fn set_worker_status(
    state: &AppState,
    admin: Uuid,
    id: Uuid,
    status: WorkerStatus,
    meta: &RequestMeta,
) -> Result<worker::Model> {
    let txn = state.db.begin_write().await?;
    let Some(row) = worker::Entity::find_by_id(id).one(&txn).await? else {
        return Err(VpsError::NotFound("worker"));
    };
    let before = row.status.clone();
    let mut active = row.into_active_model();
    active.status = Set(status.as_str().to_owned());
    let row = active.update(&txn).await?;
    audit::record(
        &txn,
        AuditEntry::by(admin, "vps.worker.status", meta)
            .on("worker", row.id)
            .details(json!({ "from": before, "to": row.status })),
    )
    .await?;
    txn.commit().await?;
    if status == WorkerStatus::Online {
        spawn_dispatch(state);
    }
    Ok(row)
}

/// Every worker, by name.
pub async fn workers(conn: &impl ConnectionTrait) -> Result<Vec<worker::Model>> {
    Ok(worker::Entity::find()
        .order_by_asc(worker::Column::Name)
        .all(conn)
        .await?)
}

/// Sessions holding a slot on the worker.
pub async fn worker_load(conn: &impl ConnectionTrait, worker_id: Uuid) -> Result<i64> {
    live_on(conn, worker_id).await
}

/// What a heartbeat tells us.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Heartbeat {
    /// Sessions it can run at once (unchanged when absent).
    pub capacity: Option<i32>,
    /// Sessions it holds a machine for (or is building one for). When present, the
    /// server reconciles its view with it (see [`reconcile`]).
    pub sessions: Option<Vec<Uuid>>,
}

/// Records a heartbeat the worker signed at `signed_at`. Returns the worker's status and
/// the sessions it holds that have ended here (or whose teardown it seems to have lost),
/// which it should tear down.
pub async fn heartbeat(
    state: &AppState,
    worker: &worker::Model,
    beat: Heartbeat,
    signed_at: DateTime<Utc>,
) -> Result<(String, Vec<Uuid>)> {
    let reports_sessions = beat.sessions.is_some();
    let held = beat.sessions.unwrap_or_default();
    if let Some(capacity) = beat.capacity
        && !(0..=10_000).contains(&capacity)
    {
        return Err(VpsError::invalid(
            "invalid_capacity",
            "capacity must be 0 to 10000",
        ));
    }
    if held.len() > 10_000 {
        return Err(VpsError::invalid(
            "too_many_sessions",
            "at most 10000 sessions",
        ));
    }
    let mut update = worker::Entity::update_many()
        .col_expr(worker::Column::Reachable, Expr::value(true))
        .col_expr(worker::Column::LastHeartbeatAt, Expr::value(Utc::now()))
        .filter(worker::Column::Id.eq(worker.id));
    if let Some(capacity) = beat.capacity {
        update = update.col_expr(worker::Column::Capacity, Expr::value(capacity));
    }
    update.exec(state.db.conn()).await?;
    let mut ended = Vec::new();
    for chunk in held.chunks(500) {
        let rows = session::Entity::find()
            .filter(session::Column::Id.is_in(chunk.to_vec()))
            .all(state.db.conn())
            .await?;
        for id in chunk {
            let gone = match rows.iter().find(|r| r.id == *id) {
                None => true,
                Some(r) => r.worker_id != Some(worker.id) || status_of(r).is_terminal(),
            };
            if gone {
                ended.push(*id);
            }
        }
    }
    if reports_sessions {
        ended.extend(reconcile(state, worker, &held, signed_at.min(Utc::now())).await?);
    }
    let grew = !worker.reachable || beat.capacity.is_some_and(|c| c > worker.capacity);
    if grew {
        spawn_dispatch(state);
    }
    Ok((worker.status.clone(), ended))
}

/// Compares what the worker says it holds (as of `as_of`) with what this server handed it,
/// for everything handed out more than the job lease before:
///
/// - a provision job it does not hold never reached it (a lost answer, a restart): with no
///   step reported yet it is handed out again, otherwise the session fails, all back;
/// - a running session it does not hold has lost its machine: it ends failed, the unused
///   whole hours back;
/// - a session being torn down: not held, it is stopped; still held, the teardown is sent
///   again (returned, to join the heartbeat's `teardown` list).
///
/// Each change re-checks the row under its lock, so this races safely with step reports,
/// stops and the sweeps.
async fn reconcile(
    state: &AppState,
    worker: &worker::Model,
    held: &[Uuid],
    as_of: DateTime<Utc>,
) -> Result<Vec<Uuid>> {
    let lease = chrono::Duration::from_std(state.config.vps.vps_job_lease.0).unwrap_or_default();
    let cutoff = as_of - lease;
    let held: std::collections::HashSet<Uuid> = held.iter().copied().collect();
    let rows = session::Entity::find()
        .filter(session::Column::WorkerId.eq(worker.id))
        .filter(session::Column::Status.is_in([
            SessionStatus::Provisioning.as_str(),
            SessionStatus::Running.as_str(),
            SessionStatus::Stopping.as_str(),
        ]))
        .all(state.db.conn())
        .await?;
    // The stopping ones whose teardown the worker took before the cutoff, in one query.
    let stopping: Vec<Uuid> = rows
        .iter()
        .filter(|r| status_of(r) == SessionStatus::Stopping)
        .map(|r| r.id)
        .collect();
    let torn: std::collections::HashSet<Uuid> = if stopping.is_empty() {
        Default::default()
    } else {
        job::Entity::find()
            .select_only()
            .column(job::Column::SessionId)
            .filter(job::Column::SessionId.is_in(stopping))
            .filter(job::Column::WorkerId.eq(worker.id))
            .filter(job::Column::Kind.eq("teardown"))
            .filter(job::Column::ClaimedAt.lt(cutoff))
            .into_tuple::<Uuid>()
            .all(state.db.conn())
            .await?
            .into_iter()
            .collect()
    };
    let mut resend = Vec::new();
    for row in rows {
        let is_held = held.contains(&row.id);
        let due = match status_of(&row) {
            SessionStatus::Provisioning => row.provisioning_at.is_some_and(|t| t < cutoff),
            SessionStatus::Running => row.running_at.is_some_and(|t| t < cutoff),
            SessionStatus::Stopping => torn.contains(&row.id),
            _ => false,
        };
        if !due {
            continue;
        }
        if is_held {
            if status_of(&row) == SessionStatus::Stopping {
                tracing::warn!(session.id = %row.id, worker.id = %worker.id, "the worker still holds a session it was told to tear down: sending the teardown again");
                resend.push(row.id);
            }
            continue;
        }
        in_txn!(state, |txn, fx| async {
            let Some(mut row) = lock_session(txn, row.id).await? else {
                return Ok(());
            };
            if row.worker_id != Some(worker.id) {
                return Ok(());
            }
            match status_of(&row) {
                SessionStatus::Provisioning if row.provisioning_at.is_some_and(|t| t < cutoff) => {
                    let started = checklist_item::Entity::find()
                        .filter(checklist_item::Column::SessionId.eq(row.id))
                        .filter(checklist_item::Column::Status.ne("pending"))
                        .count(txn)
                        .await?;
                    if started > 0 {
                        tracing::warn!(session.id = %row.id, worker.id = %worker.id, "the worker lost a session it was building");
                        return fail(
                            txn,
                            fx,
                            &mut row,
                            "the worker lost the machine while building it".into(),
                            Vec::new(),
                        )
                        .await;
                    }
                    let again = job::Entity::update_many()
                        .col_expr(
                            job::Column::ClaimedAt,
                            Expr::value(Option::<DateTime<Utc>>::None),
                        )
                        .filter(job::Column::SessionId.eq(row.id))
                        .filter(job::Column::WorkerId.eq(worker.id))
                        .filter(job::Column::Kind.eq("provision"))
                        .exec(txn)
                        .await?
                        .rows_affected;
                    if again == 0 {
                        return Ok(());
                    }
                    tracing::warn!(session.id = %row.id, worker.id = %worker.id, "the worker never took its provision job: handing it out again");
                    row.status = SessionStatus::Pending.as_str().to_owned();
                    row.provisioning_at = None;
                    fx.workers.push(worker.id);
                    record(txn, fx, &mut row, Vec::new()).await
                }
                SessionStatus::Running if row.running_at.is_some_and(|t| t < cutoff) => {
                    tracing::warn!(session.id = %row.id, worker.id = %worker.id, "the worker no longer holds a running session");
                    // Held at its last heartbeat, at most: charged until this one.
                    end_lost(
                        txn,
                        fx,
                        &mut row,
                        "the worker no longer holds the machine",
                        as_of,
                    )
                    .await
                }
                SessionStatus::Stopping => {
                    row.status = SessionStatus::Stopped.as_str().to_owned();
                    fx.dispatch = true;
                    record(txn, fx, &mut row, Vec::new()).await
                }
                _ => Ok(()),
            }
        })?;
    }
    Ok(resend)
}

/// Ends a running session whose machine is gone, last known alive at `alive_until`:
/// failed, with the whole hours unused by then back.
async fn end_lost(
    conn: &impl ConnectionTrait,
    fx: &mut Effects,
    row: &mut session::Model,
    reason: &str,
    alive_until: DateTime<Utc>,
) -> Result<()> {
    refund_unused(conn, fx, row, alive_until).await?;
    row.status = SessionStatus::Failed.as_str().to_owned();
    row.failure_reason = Some(reason.to_owned());
    row.ended_at = Some(alive_until.min(Utc::now()));
    fx.dispatch = true;
    record(conn, fx, row, Vec::new()).await
}

/// A job as a worker receives it.
#[derive(Debug, serde::Serialize, serde::Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct JobOut {
    pub id: Uuid,
    /// `provision` or `teardown`.
    pub kind: String,
    pub session_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provision: Option<ProvisionSpec>,
}

/// What to build.
#[derive(Debug, serde::Serialize, serde::Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionSpec {
    pub vcpu: i32,
    pub memory_mb: i32,
    pub disk_gb: i32,
    pub region: String,
    pub hours: i32,
    /// Step keys, in order.
    pub steps: Vec<String>,
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_public_key: Option<String>,
}

impl std::fmt::Display for ProvisionSpec {
    /// Without the credentials, for logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} vCPU, {} MiB, {} GB in {} for {} h",
            self.vcpu, self.memory_mb, self.disk_gb, self.region, self.hours
        )
    }
}

/// Claims the worker's waiting jobs (at most 16). A provision job moves its session to
/// `provisioning`; one whose session was stopped meanwhile is dropped.
pub async fn claim_jobs(state: &AppState, worker: &worker::Model) -> Result<Vec<JobOut>> {
    let waiting = job::Entity::find()
        .filter(job::Column::WorkerId.eq(worker.id))
        .filter(job::Column::ClaimedAt.is_null())
        .order_by_asc(job::Column::CreatedAt)
        .limit(16)
        .all(state.db.conn())
        .await?;
    let mut out = Vec::new();
    for waiting in waiting {
        let claimed = in_txn!(state, |txn, fx| async {
            let waiting = waiting.clone();
            {
                let taken = job::Entity::update_many()
                    .col_expr(job::Column::ClaimedAt, Expr::value(Utc::now()))
                    .filter(job::Column::Id.eq(waiting.id))
                    .filter(job::Column::ClaimedAt.is_null())
                    .exec(txn)
                    .await?
                    .rows_affected;
                if taken == 0 {
                    return Ok(None);
                }
                let mut out = JobOut {
                    id: waiting.id,
                    kind: waiting.kind.clone(),
                    session_id: waiting.session_id,
                    provision: None,
                };
                if waiting.kind != "provision" {
                    return Ok(Some(out));
                }
                let Some(mut row) = lock_session(txn, waiting.session_id).await? else {
                    return Ok(None);
                };
                if status_of(&row) != SessionStatus::Pending || row.worker_id != Some(worker.id) {
                    return Ok(None);
                }
                let product = product::Entity::find_by_id(row.product_id)
                    .one(txn)
                    .await?
                    .ok_or(VpsError::NotFound("product"))?;
                row.status = SessionStatus::Provisioning.as_str().to_owned();
                row.provisioning_at = Some(Utc::now());
                out.provision = Some(ProvisionSpec {
                    vcpu: product.vcpu,
                    memory_mb: product.memory_mb,
                    disk_gb: product.disk_gb,
                    region: product.region,
                    hours: row.hours,
                    steps: CHECKLIST.iter().map(|(k, _)| (*k).to_owned()).collect(),
                    username: row.username.clone(),
                    password: row.password.clone(),
                    ssh_public_key: row.ssh_key.clone(),
                });
                record(txn, fx, &mut row, Vec::new()).await?;
                Ok(Some(out))
            }
        })?;
        out.extend(claimed);
    }
    Ok(out)
}

/// A step report from a worker.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepReport {
    pub session_id: Uuid,
    /// A checklist key, or `teardown` to confirm a teardown job.
    pub step: String,
    /// `running`, `done` or `failed`.
    pub status: String,
    pub message: Option<String>,
    /// With the last step: where the machine answers.
    pub connection: Option<ReportedConnection>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportedConnection {
    pub host: String,
    pub port: u16,
}

/// What applying a report did.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepOutcome {
    /// False when it repeated what was already recorded.
    pub applied: bool,
    pub seq: i32,
    pub session_status: SessionStatus,
}

/// Applies a worker's step report: one checklist change and its event, and the session's
/// move to running (its reservation posted) after the last step, or to failed (everything
/// back) on a failed step.
pub async fn report_step(
    state: &AppState,
    worker: &worker::Model,
    report: StepReport,
) -> Result<StepOutcome> {
    let message = report.message.as_deref().map(|m| {
        let m = m.trim();
        m.chars().take(MAX_MESSAGE).collect::<String>()
    });
    if !matches!(report.status.as_str(), "running" | "done" | "failed") {
        return Err(VpsError::invalid(
            "invalid_status",
            "status must be running, done or failed",
        ));
    }
    if let Some(c) = &report.connection
        && (c.host.is_empty() || c.host.len() > 255 || c.host.contains(char::is_whitespace))
    {
        return Err(VpsError::invalid(
            "invalid_connection",
            "a host name is required",
        ));
    }
    let report = &report;
    let message = &message;
    in_txn!(state, |txn, fx| async {
        let Some(mut row) = lock_session(txn, report.session_id)
            .await?
            .filter(|row| row.worker_id == Some(worker.id))
        else {
            return Err(VpsError::NotFound("vps session"));
        };
        let status = status_of(&row);
        if report.step == "teardown" {
            if report.status != "done" {
                return Ok(StepOutcome {
                    applied: false,
                    seq: row.last_seq,
                    session_status: status,
                });
            }
            let applied = status == SessionStatus::Stopping;
            if applied {
                row.status = SessionStatus::Stopped.as_str().to_owned();
                fx.dispatch = true;
                record(txn, fx, &mut row, Vec::new()).await?;
            }
            return Ok(StepOutcome {
                applied,
                seq: row.last_seq,
                session_status: status_of(&row),
            });
        }
        if status != SessionStatus::Provisioning {
            return Err(VpsError::conflict(
                "session_not_provisioning",
                format!("this session is {}; stop working on it", row.status),
            ));
        }
        let items = checklist(txn, row.id).await?;
        let Some(index) = items.iter().position(|i| i.key == report.step) else {
            return Err(VpsError::invalid(
                "unknown_step",
                format!("no step `{}` in this checklist", report.step),
            ));
        };
        let item = &items[index];
        if item.status == report.status && item.message == *message {
            return Ok(StepOutcome {
                applied: false,
                seq: row.last_seq,
                session_status: status,
            });
        }
        if matches!(item.status.as_str(), "done" | "failed") {
            return Err(VpsError::conflict(
                "step_finished",
                format!("step `{}` is already {}", item.key, item.status),
            ));
        }
        if items[..index].iter().any(|i| i.status != "done") {
            return Err(VpsError::conflict(
                "step_out_of_order",
                "earlier steps are not done yet",
            ));
        }
        let now = Utc::now();
        let mut changed = item.clone();
        changed.status = report.status.clone();
        changed.message = message.clone();
        changed.updated_at = Some(now);
        changed
            .clone()
            .into_active_model()
            .reset_all()
            .update(txn)
            .await?;
        if report.status == "failed" {
            let reason = format!(
                "step `{}` failed{}",
                changed.key,
                message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
            fail(txn, fx, &mut row, reason, vec![changed]).await?;
        } else if report.status == "done" && index + 1 == items.len() {
            if !post_all(txn, fx, &row).await? {
                let reason = "the payment reservation expired before the machine was ready";
                fail(txn, fx, &mut row, reason.to_owned(), vec![changed]).await?;
                add_job(txn, fx, worker.id, row.id, "teardown").await?;
            } else {
                row.status = SessionStatus::Running.as_str().to_owned();
                row.running_at = Some(now);
                row.ends_at = Some(now + chrono::Duration::hours(i64::from(row.hours)));
                if let Some(c) = &report.connection {
                    row.host = Some(c.host.clone());
                    row.port = Some(i32::from(c.port));
                }
                record(txn, fx, &mut row, vec![changed]).await?;
                tracing::info!(session.id = %row.id, "vps session running");
            }
        } else {
            record(txn, fx, &mut row, vec![changed]).await?;
        }
        Ok(StepOutcome {
            applied: true,
            seq: row.last_seq,
            session_status: status_of(&row),
        })
    })
}

// ---------------------------------------------------------------------------------------
// Sweeps: safe on every instance at once (each change re-checks under the row lock).

/// Running sessions past their end become expired; their workers tear them down.
pub async fn expire_due(state: &AppState) -> Result<u64> {
    let due: Vec<Uuid> = session::Entity::find()
        .select_only()
        .column(session::Column::Id)
        .filter(session::Column::Status.eq(SessionStatus::Running.as_str()))
        .filter(session::Column::EndsAt.lte(Utc::now()))
        .limit(200)
        .into_tuple()
        .all(state.db.conn())
        .await?;
    let mut expired = 0;
    for id in due {
        let done = in_txn!(state, |txn, fx| async {
            let Some(mut row) = lock_session(txn, id).await? else {
                return Ok(false);
            };
            let due = row.ends_at.is_some_and(|end| end <= Utc::now());
            if status_of(&row) != SessionStatus::Running || !due {
                return Ok(false);
            }
            row.status = SessionStatus::Expired.as_str().to_owned();
            row.ended_at = row.ends_at;
            if let Some(worker) = row.worker_id {
                add_job(txn, fx, worker, row.id, "teardown").await?;
            }
            fx.dispatch = true;
            record(txn, fx, &mut row, Vec::new()).await?;
            Ok(true)
        })?;
        expired += u64::from(done);
    }
    Ok(expired)
}

/// Workers silent past the heartbeat timeout go offline: their provisioning sessions fail
/// (refunded), their unclaimed ones go back to the queue, their stopping ones are stopped.
pub async fn mark_silent_workers(state: &AppState) -> Result<u64> {
    let cutoff = Utc::now()
        - chrono::Duration::from_std(state.config.vps.vps_heartbeat_timeout.0).unwrap_or_default();
    let silent = worker::Entity::find()
        .filter(worker::Column::Reachable.eq(true))
        .filter(worker::Column::LastHeartbeatAt.lt(cutoff))
        .all(state.db.conn())
        .await?;
    let mut marked = 0;
    for w in silent {
        let went = worker::Entity::update_many()
            .col_expr(worker::Column::Reachable, Expr::value(false))
            .filter(worker::Column::Id.eq(w.id))
            .filter(worker::Column::Reachable.eq(true))
            .filter(worker::Column::LastHeartbeatAt.lt(cutoff))
            .exec(state.db.conn())
            .await?
            .rows_affected;
        if went == 0 {
            continue;
        }
        marked += 1;
        tracing::warn!(worker.id = %w.id, worker.name = %w.name, "worker went silent: marked offline");
        let affected: Vec<Uuid> = session::Entity::find()
            .select_only()
            .column(session::Column::Id)
            .filter(session::Column::WorkerId.eq(w.id))
            .filter(session::Column::Status.is_in([
                SessionStatus::Pending.as_str(),
                SessionStatus::Provisioning.as_str(),
                SessionStatus::Stopping.as_str(),
            ]))
            .into_tuple()
            .all(state.db.conn())
            .await?;
        for id in affected {
            in_txn!(state, |txn, fx| async {
                let Some(mut row) = lock_session(txn, id).await? else {
                    return Ok(());
                };
                if row.worker_id != Some(w.id) {
                    return Ok(());
                }
                match status_of(&row) {
                    SessionStatus::Provisioning => {
                        fail(
                            txn,
                            fx,
                            &mut row,
                            "the worker went offline".into(),
                            Vec::new(),
                        )
                        .await?;
                    }
                    SessionStatus::Pending => {
                        job::Entity::delete_many()
                            .filter(job::Column::SessionId.eq(row.id))
                            .filter(job::Column::ClaimedAt.is_null())
                            .exec(txn)
                            .await?;
                        row.worker_id = None;
                        row.status = SessionStatus::Queued.as_str().to_owned();
                        fx.dispatch = true;
                        record(txn, fx, &mut row, Vec::new()).await?;
                    }
                    SessionStatus::Stopping => {
                        row.status = SessionStatus::Stopped.as_str().to_owned();
                        record(txn, fx, &mut row, Vec::new()).await?;
                    }
                    _ => {}
                }
                Ok(())
            })?;
        }
    }
    Ok(marked)
}

/// Running sessions on a worker offline past `VPS_OFFLINE_GRACE` end failed, the unused
/// whole hours back (their users cannot reach them). Should the worker come back holding
/// one, its heartbeat tells it to tear it down.
pub async fn end_abandoned(state: &AppState) -> Result<u64> {
    let cutoff = Utc::now()
        - chrono::Duration::from_std(state.config.vps.vps_offline_grace.0).unwrap_or_default();
    let gone: Vec<Uuid> = worker::Entity::find()
        .select_only()
        .column(worker::Column::Id)
        .filter(worker::Column::Reachable.eq(false))
        .filter(worker::Column::LastHeartbeatAt.lt(cutoff))
        .into_tuple()
        .all(state.db.conn())
        .await?;
    if gone.is_empty() {
        return Ok(0);
    }
    let abandoned: Vec<Uuid> = session::Entity::find()
        .select_only()
        .column(session::Column::Id)
        .filter(session::Column::WorkerId.is_in(gone))
        .filter(session::Column::Status.eq(SessionStatus::Running.as_str()))
        .limit(200)
        .into_tuple()
        .all(state.db.conn())
        .await?;
    let mut ended = 0;
    for id in abandoned {
        let done = in_txn!(state, |txn, fx| async {
            let Some(mut row) = lock_session(txn, id).await? else {
                return Ok(false);
            };
            if status_of(&row) != SessionStatus::Running {
                return Ok(false);
            }
            // Still offline, and still past the grace, under the row lock; charged only up
            // to the worker's last heartbeat.
            let last_seen = match row.worker_id {
                Some(w) => worker::Entity::find_by_id(w)
                    .one(txn)
                    .await?
                    .filter(|w| !w.reachable)
                    .and_then(|w| w.last_heartbeat_at)
                    .filter(|t| *t < cutoff),
                None => None,
            };
            let Some(last_seen) = last_seen else {
                return Ok(false);
            };
            end_lost(
                txn,
                fx,
                &mut row,
                "the worker has been offline too long",
                last_seen,
            )
            .await?;
            Ok(true)
        })?;
        ended += u64::from(done);
    }
    Ok(ended)
}

/// Sessions queued or provisioning for too long fail (everything back).
pub async fn fail_stuck(state: &AppState) -> Result<u64> {
    let vps = &state.config.vps;
    let now = Utc::now();
    let queued_cutoff =
        now - chrono::Duration::from_std(vps.vps_queue_timeout.0).unwrap_or_default();
    let provision_cutoff =
        now - chrono::Duration::from_std(vps.vps_provision_timeout.0).unwrap_or_default();
    let stuck: Vec<Uuid> = session::Entity::find()
        .select_only()
        .column(session::Column::Id)
        .filter(
            Condition::any()
                .add(
                    Condition::all()
                        .add(session::Column::Status.is_in([
                            SessionStatus::Queued.as_str(),
                            SessionStatus::Pending.as_str(),
                        ]))
                        .add(session::Column::CreatedAt.lt(queued_cutoff)),
                )
                .add(
                    Condition::all()
                        .add(session::Column::Status.eq(SessionStatus::Provisioning.as_str()))
                        .add(session::Column::ProvisioningAt.lt(provision_cutoff)),
                ),
        )
        .limit(200)
        .into_tuple()
        .all(state.db.conn())
        .await?;
    let mut failed = 0;
    for id in stuck {
        let done = in_txn!(state, |txn, fx| async {
            let Some(mut row) = lock_session(txn, id).await? else {
                return Ok(false);
            };
            let (reason, teardown) = match status_of(&row) {
                SessionStatus::Queued | SessionStatus::Pending
                    if row.created_at < queued_cutoff =>
                {
                    ("no worker took the session in time", false)
                }
                SessionStatus::Provisioning
                    if row.provisioning_at.is_some_and(|t| t < provision_cutoff) =>
                {
                    ("provisioning took too long", true)
                }
                _ => return Ok(false),
            };
            job::Entity::delete_many()
                .filter(job::Column::SessionId.eq(row.id))
                .filter(job::Column::ClaimedAt.is_null())
                .exec(txn)
                .await?;
            if teardown && let Some(worker) = row.worker_id {
                add_job(txn, fx, worker, row.id, "teardown").await?;
            }
            fail(txn, fx, &mut row, reason.to_owned(), Vec::new()).await?;
            Ok(true)
        })?;
        failed += u64::from(done);
    }
    Ok(failed)
}

/// Places queued sessions, oldest first, while workers have room.
pub async fn dispatch_queued(state: &AppState) -> Result<u64> {
    let queued: Vec<Uuid> = session::Entity::find()
        .select_only()
        .column(session::Column::Id)
        .filter(session::Column::Status.eq(SessionStatus::Queued.as_str()))
        .order_by_asc(session::Column::CreatedAt)
        .limit(100)
        .into_tuple()
        .all(state.db.conn())
        .await?;
    let heartbeat_timeout = state.config.vps.vps_heartbeat_timeout.0;
    let mut placed = 0;
    for id in queued {
        let done = in_txn!(state, |txn, fx| async {
            let Some(mut row) = lock_session(txn, id).await? else {
                return Ok(None);
            };
            if status_of(&row) != SessionStatus::Queued {
                return Ok(Some(false));
            }
            if !assign(txn, fx, &mut row, heartbeat_timeout).await? {
                return Ok(None);
            }
            record(txn, fx, &mut row, Vec::new()).await?;
            Ok(Some(true))
        })?;
        match done {
            Some(true) => placed += 1,
            Some(false) => {}
            // No room anywhere: the rest waits too.
            None => break,
        }
    }
    Ok(placed)
}

/// Runs every sweep each `every` until shutdown.
pub async fn run_sweeper(state: AppState, every: Duration) {
    crate::platform::every(&state.shutdown, every, false, || sweep_once(&state)).await;
}

/// One round of every sweep, logging what each did.
pub async fn sweep_once(state: &AppState) {
    match expire_due(state).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(expired = n, "vps sessions expired"),
        Err(e) => tracing::warn!(error = %e, "vps expiry sweep failed"),
    }
    if let Err(e) = mark_silent_workers(state).await {
        tracing::warn!(error = %e, "worker heartbeat sweep failed");
    }
    match end_abandoned(state).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            ended = n,
            "running vps sessions on long-offline workers ended"
        ),
        Err(e) => tracing::warn!(error = %e, "offline worker sweep failed"),
    }
    match fail_stuck(state).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(failed = n, "vps sessions timed out"),
        Err(e) => tracing::warn!(error = %e, "vps timeout sweep failed"),
    }
    if let Err(e) = dispatch_queued(state).await {
        tracing::warn!(error = %e, "placing queued sessions failed");
    }
}
