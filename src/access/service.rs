//! Buying, listing and revoking access tokens, and the revocation check the proxy runs on
//! every request (memory ≤ 5 s, then kv, then the database, each filling the one above).

use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    QueryFilter, sea_query::Expr,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{entity::access_token, tokens::Refusal};
use crate::{
    app::AppState,
    graphql::{ApiError, RequestMeta},
    platform::{
        audit::{self, AuditEntry},
        db::{Page, newest_first},
    },
    wallet::{self, Account, SystemAccount, TransferKind, TransferRequest, WalletError},
};

/// Pub/sub channel of revocations (payload: the token id).
pub const REVOKED_CHANNEL: &str = "access.revoked";
/// How long this instance trusts what it learned about a token.
const MEMORY_TTL: Duration = Duration::from_secs(5);
/// How long kv vouches for a token being active (a revocation overwrites it at once).
const ACTIVE_KV_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
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
    #[error("access token not found")]
    NotFound,
    #[error(transparent)]
    Wallet(#[from] WalletError),
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<AccessError> for ApiError {
    fn from(err: AccessError) -> Self {
        match err {
            AccessError::Invalid { reason, message } => ApiError::bad_input(reason, message),
            AccessError::Conflict { reason, message } => ApiError::conflict(reason, message),
            AccessError::NotFound => ApiError::not_found("access token"),
            AccessError::Wallet(e) => e.into(),
            AccessError::Db(e) => e.into(),
            AccessError::Internal(e) => ApiError::internal(format!("{e:#}")),
        }
    }
}

type Result<T> = std::result::Result<T, AccessError>;

/// A purchase request.
#[derive(Debug, Clone)]
pub struct Purchase {
    pub duration_hours: i32,
    pub name: Option<String>,
    pub idempotency_key: Option<String>,
}

/// A bought token: the secret (shown once) and its row.
#[derive(Debug)]
pub struct Purchased {
    pub token: String,
    pub row: access_token::Model,
}

fn fingerprint(p: &Purchase) -> String {
    hex::encode(Sha256::digest(
        format!("{}|{}", p.duration_hours, p.name.as_deref().unwrap_or("")).as_bytes(),
    ))
}

/// The price of `hours`, if offered.
pub fn price_of(state: &AppState, hours: i32) -> Option<i64> {
    state
        .access
        .prices
        .iter()
        .find(|(h, _)| *h == hours)
        .map(|(_, p)| *p)
}

fn to_system(t: DateTime<Utc>) -> SystemTime {
    SystemTime::from(t)
}

/// Buys a token: one transfer (user → `system:sales`) and one row, in one transaction. The
/// same idempotency key returns the same purchase (with a freshly minted copy of its token,
/// which the first answer may never have delivered) and moves nothing.
pub async fn purchase(state: &AppState, user_id: Uuid, purchase: Purchase) -> Result<Purchased> {
    let Some(price) = price_of(state, purchase.duration_hours) else {
        return Err(AccessError::Invalid {
            reason: "duration_not_offered",
            message: "this duration is not offered; see accessTokenPrices".into(),
        });
    };
    let name = purchase
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    if name.is_some_and(|n| n.chars().count() > 64) {
        return Err(AccessError::Invalid {
            reason: "name_too_long",
            message: "a token name has at most 64 characters".into(),
        });
    }
    if purchase
        .idempotency_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > wallet::service::MAX_KEY_LEN)
    {
        return Err(AccessError::Invalid {
            reason: "invalid_idempotency_key",
            message: "the idempotency key must be 1 to 160 characters".into(),
        });
    }
    let purchase = Purchase {
        name: name.map(str::to_owned),
        ..purchase
    };
    let hash = fingerprint(&purchase);
    let scoped_key = purchase
        .idempotency_key
        .as_ref()
        .map(|k| format!("{user_id}:{k}"));

    // Signed before the transaction, so no row is locked while the signature is computed.
    // A retry keeps this token; a replay or a refusal throws it away unused.
    let fresh = Fresh::mint(state, user_id, purchase.duration_hours)?;
    let attempt = || async {
        let txn = state.db.begin_write().await?;
        let result = purchase_in(
            state,
            &txn,
            user_id,
            &purchase,
            price,
            &hash,
            &scoped_key,
            &fresh,
        )
        .await;
        match result {
            // A replay changes nothing (the coins were taken before the key was looked up).
            Ok((done, Outcome::Replayed)) => {
                txn.rollback().await?;
                Ok((done, false))
            }
            Ok((done, Outcome::Bought { paid })) => {
                txn.commit().await?;
                Ok((done, paid))
            }
            Err(e) => {
                txn.rollback().await?;
                Err(e)
            }
        }
    };
    let mut tries = 0;
    let (purchased, moved) = loop {
        match attempt().await {
            Err(AccessError::Db(e) | AccessError::Wallet(WalletError::Db(e)))
                if tries < 5 && (crate::platform::db::is_retryable(&e) || scoped_key.is_some()) =>
            {
                // A transient failure, or a race with the same key (unique violation): the
                // next attempt replays the winner.
                tries += 1;
                tokio::time::sleep(Duration::from_millis(5 << tries)).await;
            }
            other => break other?,
        }
    };
    if moved {
        wallet::service::notify(state, &[user_id]).await;
    }
    Ok(purchased)
}

/// A token minted for a purchase before its transaction begins.
struct Fresh {
    token_id: Uuid,
    token: String,
    revocation_id: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl Fresh {
    fn mint(state: &AppState, user_id: Uuid, hours: i32) -> Result<Self> {
        let token_id = Uuid::now_v7();
        let created_at = Utc::now();
        let expires_at = created_at + chrono::Duration::hours(i64::from(hours));
        let (token, revocation_id) = mint(state, token_id, user_id, expires_at)?;
        Ok(Self {
            token_id,
            token,
            revocation_id,
            created_at,
            expires_at,
        })
    }
}

/// The token text and authority revocation id for a token row's facts.
fn mint(
    state: &AppState,
    token_id: Uuid,
    user_id: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<(String, String)> {
    Ok(state
        .access
        .keys
        .mint(token_id, user_id, to_system(expires_at))
        .map_err(|e| anyhow::anyhow!("minting failed: {e}"))?)
}

/// How a purchase's transaction ends.
enum Outcome {
    /// A new token; `paid` when coins moved. Commit.
    Bought { paid: bool },
    /// The token bought earlier under the same key. Roll back.
    Replayed,
}

#[allow(clippy::too_many_arguments)]
async fn purchase_in(
    state: &AppState,
    txn: &impl ConnectionTrait,
    user_id: Uuid,
    purchase: &Purchase,
    price: i64,
    hash: &str,
    scoped_key: &Option<String>,
    fresh: &Fresh,
) -> Result<(Purchased, Outcome)> {
    let token_id = fresh.token_id;
    // The buyer's account row is locked first, so one user's purchases run one after
    // another and each sees what the one before it left (its key, its token). A paid
    // purchase locks it by taking the coins, a free one by touching it. The hot
    // `system:sales` row comes last and is held only for the end of the transaction.
    let debited = if price > 0 {
        let payment = TransferRequest::new(
            Account::User(user_id),
            Account::System(SystemAccount::Sales),
            price,
            TransferKind::AccessToken,
        )
        .reference(format!("access_token:{token_id}"))
        // Derived from the purchase's key, fixed length whatever the key's. Only this
        // function writes such a key, beside the token row that holds the purchase's key;
        // `holdings` below finds that row when there is one, and then nothing commits.
        .idempotency_key(
            scoped_key
                .as_ref()
                .map(|k| format!("access:{}", hex::encode(Sha256::digest(k.as_bytes())))),
        )
        .key_claimed();
        match wallet::service::debit_first(txn, payment).await {
            Ok(debited) => Ok(Some(debited)),
            // Said after the replay and the cap are checked: an earlier purchase under the
            // key is still returned to a buyer who has spent the coins since. (The refused
            // debit waited for any purchase holding the row, so its token is visible.)
            Err(short @ WalletError::InsufficientFunds { .. }) => Err(short),
            Err(e) => return Err(e.into()),
        }
    } else {
        wallet::service::lock_user(txn, user_id).await?;
        Ok(None)
    };
    let held = holdings(txn, user_id, scoped_key.as_deref(), fresh.created_at).await?;
    if held.keyed
        && let Some(key) = scoped_key
    {
        let earlier = access_token::Entity::find()
            .filter(access_token::Column::IdempotencyKey.eq(key.as_str()))
            .one(txn)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the token under this key went away"))?;
        if earlier.request_hash.as_deref() != Some(hash) {
            return Err(AccessError::Conflict {
                reason: "idempotency_key_reused",
                message: "this idempotency key was already used for a different purchase".into(),
            });
        }
        let (token, _) = mint(state, earlier.id, earlier.user_id, earlier.expires_at)?;
        let replayed = Purchased {
            token,
            row: earlier,
        };
        return Ok((replayed, Outcome::Replayed));
    }
    let max = u64::from(state.config.access.access_token_max_active);
    if held.active >= max {
        return Err(AccessError::Conflict {
            reason: "too_many_tokens",
            message: format!("you already hold {max} active tokens; revoke one first"),
        });
    }
    let debited = debited?;
    let transfer_id = debited.as_ref().map(wallet::service::Debited::transfer_id);
    let row = access_token::ActiveModel {
        id: Set(token_id),
        user_id: Set(user_id),
        name: Set(purchase.name.clone()),
        duration_hours: Set(purchase.duration_hours),
        price: Set(price),
        transfer_id: Set(transfer_id),
        revocation_id: Set(fresh.revocation_id.clone()),
        key_id: Set(state.access.keys.signing_key_id() as i32),
        idempotency_key: Set(scoped_key.clone()),
        request_hash: Set(scoped_key.as_ref().map(|_| hash.to_owned())),
        expires_at: Set(fresh.expires_at),
        revoked_at: Set(None),
        last_used_at: Set(None),
        created_at: Set(fresh.created_at),
    }
    .insert(txn)
    .await?;
    // The payment last: the `system:sales` shard it credits is locked until COMMIT.
    if let Some(debited) = debited {
        debited.finish(txn).await?;
    }
    tracing::info!(token.id = %row.id, user.id = %user_id, hours = purchase.duration_hours, "access token bought");
    let token = fresh.token.clone();
    let paid = transfer_id.is_some();
    Ok((Purchased { token, row }, Outcome::Bought { paid }))
}

/// Tokens neither revoked nor expired at `now`.
fn active_at(now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(access_token::Column::RevokedAt.is_null())
        .add(access_token::Column::ExpiresAt.gt(now))
}

/// What a buyer holds, read in one statement: how many tokens are active at `now`, and
/// whether one was bought under `key`.
struct Holdings {
    active: u64,
    keyed: bool,
}

async fn holdings(
    conn: &impl ConnectionTrait,
    user_id: Uuid,
    key: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Holdings> {
    use access_token::Column as C;
    use sea_orm::sea_query::{Alias, Func, Query};
    let mut active = Query::select();
    active
        .expr(Func::count(Expr::col(C::Id)))
        .from(access_token::Entity)
        .cond_where(active_at(now).add(C::UserId.eq(user_id)));
    // Without a key this counts `= NULL`: nothing.
    let mut keyed = Query::select();
    keyed
        .expr(Func::count(Expr::col(C::Id)))
        .from(access_token::Entity)
        .and_where(C::IdempotencyKey.eq(key));
    let mut both = Query::select();
    both.expr_as(active, Alias::new("active"))
        .expr_as(keyed, Alias::new("keyed"));
    let backend = conn.get_database_backend();
    let row = conn
        .query_one_raw(backend.build(&both))
        .await?
        .ok_or_else(|| anyhow::anyhow!("a count without a row"))?;
    let active: i64 = row.try_get("", "active")?;
    let keyed: i64 = row.try_get("", "keyed")?;
    Ok(Holdings {
        active: active.max(0) as u64,
        keyed: keyed > 0,
    })
}

/// A user's tokens (everyone's when `user_id` is `None`; all, or only active ones), newest
/// first, one page.
pub async fn list(
    conn: &impl ConnectionTrait,
    user_id: Option<Uuid>,
    active_only: bool,
    first: u64,
    before: Option<Uuid>,
) -> Result<Page<access_token::Model>> {
    let mut filter = Condition::all();
    if let Some(user) = user_id {
        filter = filter.add(access_token::Column::UserId.eq(user));
    }
    if active_only {
        filter = filter.add(active_at(Utc::now()));
    }
    Ok(
        newest_first::<access_token::Entity>(conn, filter, access_token::Column::Id, first, before)
            .await?,
    )
}

/// Revokes a token: the viewer's own, or anyone's for an admin (audited). Revoking twice
/// returns the token unchanged.
pub async fn revoke(
    state: &AppState,
    actor: Uuid,
    as_admin: bool,
    token_id: Uuid,
    meta: &RequestMeta,
) -> Result<access_token::Model> {
    let row = access_token::Entity::find_by_id(token_id)
        .one(state.db.conn())
        .await?
        .filter(|row| as_admin || row.user_id == actor)
        .ok_or(AccessError::NotFound)?;
    if row.revoked_at.is_some() {
        // Already revoked: tell everyone again (a repair if kv or pub/sub missed it).
        announce(state, &[(token_id, row.expires_at)]).await;
        return Ok(row);
    }
    let txn = state.db.begin_write().await?;
    access_token::Entity::update_many()
        .col_expr(access_token::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(access_token::Column::Id.eq(token_id))
        .filter(access_token::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    if row.user_id != actor {
        audit::record(
            &txn,
            AuditEntry::by(actor, "access_token.revoke", meta)
                .on("access_token", token_id)
                .details(serde_json::json!({ "owner": row.user_id })),
        )
        .await?;
    }
    txn.commit().await?;
    announce(state, &[(token_id, row.expires_at)]).await;
    let row = access_token::Entity::find_by_id(token_id)
        .one(state.db.conn())
        .await?
        .ok_or(AccessError::NotFound)?;
    Ok(row)
}

/// Revokes every active token of a user (when the account is disabled).
pub async fn revoke_all_for_user(state: &AppState, user_id: Uuid) -> Result<usize> {
    let rows = access_token::Entity::find()
        .filter(access_token::Column::UserId.eq(user_id))
        .filter(access_token::Column::RevokedAt.is_null())
        .all(state.db.conn())
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    access_token::Entity::update_many()
        .col_expr(access_token::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(access_token::Column::UserId.eq(user_id))
        .filter(access_token::Column::RevokedAt.is_null())
        .exec(state.db.conn())
        .await?;
    let revoked: Vec<(Uuid, DateTime<Utc>)> = rows.iter().map(|r| (r.id, r.expires_at)).collect();
    announce(state, &revoked).await;
    Ok(revoked.len())
}

/// After the database says revoked: kv marker, this instance's caches and sockets, then
/// every other instance through pub/sub. kv or pub/sub failures are logged: the database
/// already holds the truth, and caches expire within seconds.
async fn announce(state: &AppState, tokens: &[(Uuid, DateTime<Utc>)]) {
    for (token_id, expires_at) in tokens {
        let ttl = (*expires_at - Utc::now())
            .to_std()
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_secs(1));
        if let Err(e) = state
            .kv
            .set(&kv_key(*token_id), b"revoked", Some(ttl))
            .await
        {
            tracing::warn!(error = %e, "could not mark a revoked access token in kv");
        }
        state.access.revoked_here(*token_id);
        if let Err(e) = state
            .kv
            .publish(REVOKED_CHANNEL, token_id.to_string().as_bytes())
            .await
        {
            tracing::warn!(error = %e, "could not publish an access-token revocation");
        }
    }
}

fn kv_key(token_id: Uuid) -> String {
    format!("access:tok:{token_id}")
}

/// Whether `token_id` may be used now: memory (≤ 5 s), kv, then the database.
pub async fn check_active(state: &AppState, token_id: Uuid) -> std::result::Result<(), Refusal> {
    let metrics = &state.metrics;
    if let Some(active) = state.access.remembered(token_id) {
        metrics.record_access_check("memory", if active { "active" } else { "revoked" });
        return if active {
            Ok(())
        } else {
            Err(Refusal::Revoked)
        };
    }
    // Boxed: the database query's future is large (about 2 KB), and every request, most
    // of them answered from memory above, would otherwise carry its size.
    Box::pin(check_active_beyond_memory(state, token_id)).await
}

/// [`check_active`] past the memory level: kv, then the database, filling upward.
async fn check_active_beyond_memory(
    state: &AppState,
    token_id: Uuid,
) -> std::result::Result<(), Refusal> {
    let metrics = &state.metrics;
    match state.kv.get(&kv_key(token_id)).await {
        Ok(Some(value)) => {
            let active = value == b"active";
            state.access.remember(token_id, active);
            metrics.record_access_check("kv", if active { "active" } else { "revoked" });
            return if active {
                Ok(())
            } else {
                Err(Refusal::Revoked)
            };
        }
        Ok(None) => {}
        Err(e) => {
            tracing::debug!(error = %e, "kv unavailable for an access check; asking the database")
        }
    }
    let row = access_token::Entity::find_by_id(token_id)
        .one(state.db.conn())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "access check failed");
            Refusal::Invalid
        })?;
    let Some(row) = row else {
        metrics.record_access_check("database", "unknown");
        return Err(Refusal::Invalid);
    };
    let active = row.revoked_at.is_none();
    metrics.record_access_check("database", if active { "active" } else { "revoked" });
    state.access.remember(token_id, active);
    // "active" is only a cache: short-lived, and never written over a "revoked" that a
    // revocation may have set since our read (SET NX). "revoked" is final until expiry.
    let until_expiry = (row.expires_at - Utc::now())
        .to_std()
        .unwrap_or(Duration::from_secs(1))
        .max(Duration::from_secs(1));
    let cached = if active {
        state
            .kv
            .set_nx(
                &kv_key(token_id),
                b"active",
                until_expiry.min(ACTIVE_KV_TTL),
            )
            .await
            .map(|_| ())
    } else {
        state
            .kv
            .set(&kv_key(token_id), b"revoked", Some(until_expiry))
            .await
    };
    if let Err(e) = cached {
        tracing::debug!(error = %e, "could not cache an access check in kv");
    }
    if active {
        Ok(())
    } else {
        Err(Refusal::Revoked)
    }
}

/// Writes `last_used_at` for the tokens used since the last call.
pub async fn flush_last_used(state: &AppState) -> std::result::Result<u64, sea_orm::DbErr> {
    let used = state.access.take_touched();
    if used.is_empty() {
        return Ok(0);
    }
    let result = access_token::Entity::update_many()
        .col_expr(access_token::Column::LastUsedAt, Expr::value(Utc::now()))
        .filter(access_token::Column::Id.is_in(used))
        .exec(state.db.conn())
        .await?;
    Ok(result.rows_affected)
}

/// Listens for revocations from every instance; after a gap in delivery, forgets what this
/// instance cached and rechecks its open sockets against the database.
pub async fn relay_revocations(state: AppState) {
    use futures_util::StreamExt;
    loop {
        let mut stream = match state.kv.subscribe(REVOKED_CHANNEL).await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to access-token revocations; retrying");
                tokio::select! {
                    _ = state.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let delivery = tokio::select! {
                _ = state.shutdown.cancelled() => return,
                d = stream.next() => d,
            };
            match delivery {
                Some(crate::platform::kv::Delivery::Message(payload)) => {
                    if let Some(id) = std::str::from_utf8(&payload)
                        .ok()
                        .and_then(|s| s.parse::<Uuid>().ok())
                    {
                        state.access.revoked_here(id);
                    }
                }
                Some(crate::platform::kv::Delivery::Gap) => {
                    state.access.forget_all();
                    recheck_sockets(&state).await;
                }
                None => break,
            }
        }
    }
}

/// Closes open proxied sockets whose tokens the database says are revoked.
async fn recheck_sockets(state: &AppState) {
    let open = state.access.open_tokens();
    if open.is_empty() {
        return;
    }
    match access_token::Entity::find()
        .filter(access_token::Column::Id.is_in(open))
        .filter(access_token::Column::RevokedAt.is_not_null())
        .all(state.db.conn())
        .await
    {
        Ok(rows) => {
            for row in rows {
                state.access.revoked_here(row.id);
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not recheck proxied sockets"),
    }
}

/// Flushes `last_used_at` every `every` until shutdown.
pub async fn run_last_used_flusher(state: AppState, every: Duration) {
    crate::platform::every(&state.shutdown, every, true, || async {
        if let Err(e) = flush_last_used(&state).await {
            tracing::warn!(error = %e, "could not record access-token use");
        }
    })
    .await;
}

/// When something this instance remembers was learned.
pub(super) fn fresh(at: Instant) -> bool {
    at.elapsed() < MEMORY_TTL
}
