//! The only way coins move: [`transfer`] (and [`transfer_in`] inside a caller's
//! transaction), two-phase [`post`] / [`void`], [`refund`], and the expiry sweep.
//!
//! Each movement is one database transaction: the account rows are changed with
//! conditional `UPDATE … RETURNING` (a user debit only `WHERE balance - pending_debits >=
//! amount`), in one lock order (users, then system accounts) so two transfers never wait on
//! each other in a cycle, and
//! the transfer row is inserted with the balances it left. Account ids are derived from
//! their names (UUID v5), so no lookup precedes the updates.

use std::{future::Future, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TryIntoModel,
    sea_query::{CaseStatement, Expr, ExprTrait, OnConflict, Query},
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::entity::{account, transfer};
use crate::{
    app::AppState,
    graphql::{ApiError, ErrorCode},
    platform::db::{Page, is_retryable, newest_first},
};

/// The one asset today.
pub const COIN: &str = "COIN";

/// Longest idempotency key accepted.
pub const MAX_KEY_LEN: usize = 160;

/// Accounts that belong to Tessera rather than a user. They may go negative: a system
/// account's negative balance is what it has issued.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemAccount {
    /// Pays ad rewards.
    Ads,
    /// Receives what users spend on access tokens and VPS sessions.
    Sales,
    /// Pays refunds that are not reversals of a transfer.
    Refunds,
    /// Pays admin grants.
    Grants,
    /// Pays plans' coin allowances.
    Plans,
}

impl SystemAccount {
    pub const ALL: [SystemAccount; 5] = [
        SystemAccount::Ads,
        SystemAccount::Sales,
        SystemAccount::Refunds,
        SystemAccount::Grants,
        SystemAccount::Plans,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SystemAccount::Ads => "system:ads",
            SystemAccount::Sales => "system:sales",
            SystemAccount::Refunds => "system:refunds",
            SystemAccount::Grants => "system:grants",
            SystemAccount::Plans => "system:plans",
        }
    }

    /// The system account with this id (any of its shards), if any.
    pub fn by_id(id: Uuid) -> Option<SystemAccount> {
        Self::ALL.into_iter().find(|s| {
            (0..SYSTEM_SHARDS).any(|shard| {
                Slot {
                    account: Account::System(*s),
                    shard,
                }
                .id()
                    == id
            })
        })
    }
}

/// Each system account is kept as this many rows (shards), and a transfer touches one of
/// them at random: every sale or reward touches a system account, and one row would make
/// them all wait on its lock. Its balance is the sum of its shards.
pub const SYSTEM_SHARDS: u8 = 8;

/// One concrete account row: a user's account, or one shard of a system account
/// (shard 0 has the system account's plain name and id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    account: Account,
    shard: u8,
}

impl Slot {
    fn name(self) -> String {
        match (self.account, self.shard) {
            (account, 0) => account.name(),
            (account, shard) => format!("{}#{shard}", account.name()),
        }
    }

    fn id(self) -> Uuid {
        match self.shard {
            0 => self.account.id(),
            _ => Uuid::new_v5(
                &ACCOUNT_NAMESPACE,
                format!("{}:{COIN}", self.name()).as_bytes(),
            ),
        }
    }

    fn new_row(self) -> account::ActiveModel {
        let now = Utc::now();
        let (user_id, kind, allow_negative) = match self.account {
            Account::User(id) => (Some(id), "user", false),
            Account::System(_) => (None, "system", true),
        };
        account::ActiveModel {
            id: Set(self.id()),
            name: Set(self.name()),
            user_id: Set(user_id),
            asset: Set(COIN.to_owned()),
            kind: Set(kind.to_owned()),
            balance: Set(0),
            pending_debits: Set(0),
            pending_credits: Set(0),
            allow_negative: Set(allow_negative),
            created_at: Set(now),
            updated_at: Set(now),
        }
    }
}

/// One side of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account {
    /// A user's coin account.
    User(Uuid),
    System(SystemAccount),
}

/// Namespace of the derived account ids.
const ACCOUNT_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a4e_7d3b_4c59_9a1e_5b2d_8c7f_0e13);

impl Account {
    pub fn name(self) -> String {
        match self {
            Account::User(id) => format!("user:{id}"),
            Account::System(s) => s.name().to_owned(),
        }
    }

    /// The account's id: a UUID v5 of its name and asset, the same on every instance.
    pub fn id(self) -> Uuid {
        Uuid::new_v5(
            &ACCOUNT_NAMESPACE,
            format!("{}:{COIN}", self.name()).as_bytes(),
        )
    }

    /// The row a transfer touches: the user's account, or a random shard.
    fn slot(self) -> Slot {
        let shard = match self {
            Account::User(_) => 0,
            Account::System(_) => rand::random::<u8>() % SYSTEM_SHARDS,
        };
        Slot {
            account: self,
            shard,
        }
    }
}

/// What a transfer paid for.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferKind {
    Grant,
    AdReward,
    PlanAllowance,
    AccessToken,
    VpsSession,
    Refund,
}

impl TransferKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::Grant => "grant",
            TransferKind::AdReward => "ad_reward",
            TransferKind::PlanAllowance => "plan_allowance",
            TransferKind::AccessToken => "access_token",
            TransferKind::VpsSession => "vps_session",
            TransferKind::Refund => "refund",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            TransferKind::Grant,
            TransferKind::AdReward,
            TransferKind::PlanAllowance,
            TransferKind::AccessToken,
            TransferKind::VpsSession,
            TransferKind::Refund,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A request to move `amount` coins from `debit` to `credit`.
#[derive(Debug, Clone)]
pub struct TransferRequest {
    pub debit: Account,
    pub credit: Account,
    pub amount: i64,
    pub kind: TransferKind,
    /// What it paid for (an access token id, a VPS session id, …).
    pub reference: Option<String>,
    /// Retrying with the same key returns the first transfer and moves nothing.
    pub idempotency_key: Option<String>,
    pub metadata: serde_json::Value,
    /// Two-phase: reserve now, and void by itself after this long unless posted or voided.
    pub pending_timeout: Option<Duration>,
    /// The caller's own claim, in the same transaction, makes the idempotency key new.
    pub key_claimed: bool,
}

impl TransferRequest {
    pub fn new(debit: Account, credit: Account, amount: i64, kind: TransferKind) -> Self {
        Self {
            debit,
            credit,
            amount,
            kind,
            reference: None,
            idempotency_key: None,
            metadata: serde_json::Value::Null,
            pending_timeout: None,
            key_claimed: false,
        }
    }

    pub fn reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }

    pub fn idempotency_key(mut self, key: Option<String>) -> Self {
        self.idempotency_key = key;
        self
    }

    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }

    /// Skips the look-up of an earlier transfer under the idempotency key, for a caller that
    /// claimed something unique to this key earlier in the same transaction (an ad's nonce):
    /// no earlier transfer can hold the key, and its unique index still refuses a second.
    pub fn key_claimed(mut self) -> Self {
        self.key_claimed = true;
        self
    }

    /// Makes this a reservation that voids itself after `timeout`.
    pub fn pending(mut self, timeout: Duration) -> Self {
        self.pending_timeout = Some(timeout);
        self
    }

    /// What must match for a retry under the same key to be the same request.
    fn fingerprint(&self) -> String {
        let text = format!(
            "{}|{}|{}|{}|{}|{}",
            self.debit.id(),
            self.credit.id(),
            self.amount,
            self.kind.as_str(),
            self.reference.as_deref().unwrap_or(""),
            self.pending_timeout.is_some(),
        );
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}

/// A transfer that happened (or had already happened under the same key).
#[derive(Debug, Clone)]
pub struct Transferred {
    pub transfer: transfer::Model,
    /// True when the idempotency key matched an earlier transfer: nothing moved now.
    pub replayed: bool,
    /// Users whose wallets changed, to notify after commit.
    pub users: Vec<Uuid>,
}

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("the amount must be a positive whole number of coins")]
    InvalidAmount,
    #[error("{0}")]
    InvalidInput(&'static str),
    #[error("not enough coins: {available} available, {needed} needed")]
    InsufficientFunds { available: i64, needed: i64 },
    #[error("there is no such account")]
    UnknownAccount,
    #[error("this idempotency key was already used for a different request")]
    IdempotencyConflict,
    #[error("transfer not found")]
    NotFound,
    #[error("this reservation is already {0}")]
    AlreadyResolved(String),
    #[error("this reservation expired")]
    PendingExpired,
    #[error("cannot post {requested}: only {reserved} were reserved")]
    OverPost { requested: i64, reserved: i64 },
    #[error("this transfer was already refunded")]
    AlreadyRefunded,
    #[error("{0}")]
    NotRefundable(&'static str),
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<WalletError> for ApiError {
    fn from(err: WalletError) -> Self {
        let message = err.to_string();
        match err {
            WalletError::InvalidAmount => ApiError::bad_input("invalid_amount", message),
            WalletError::InvalidInput(reason) => ApiError::bad_input(reason, message),
            WalletError::InsufficientFunds { .. } => {
                ApiError::new(ErrorCode::InsufficientFunds, message)
                    .with_reason("insufficient_funds")
            }
            WalletError::UnknownAccount => ApiError::not_found("account"),
            WalletError::IdempotencyConflict => {
                ApiError::conflict("idempotency_key_reused", message)
            }
            WalletError::NotFound => ApiError::not_found("transfer"),
            WalletError::AlreadyResolved(_) => ApiError::conflict("already_resolved", message),
            WalletError::PendingExpired => ApiError::conflict("reservation_expired", message),
            WalletError::OverPost { .. } => ApiError::bad_input("over_post", message),
            WalletError::AlreadyRefunded => ApiError::conflict("already_refunded", message),
            WalletError::NotRefundable(reason) => ApiError::conflict(reason, message),
            WalletError::Db(e) => e.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, WalletError>;

/// Runs `op` (which opens its own transaction) again when the database asks for a retry
/// (SQLite busy, PostgreSQL serialization failure or deadlock), a few times with backoff.
pub async fn retrying<T, F, Fut>(mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 0u32;
    loop {
        match op().await {
            Err(WalletError::Db(e)) if is_retryable(&e) && attempt < 5 => {
                attempt += 1;
                let jitter = u64::from(rand::random::<u8>() % 10);
                tokio::time::sleep(Duration::from_millis(5 * 2u64.pow(attempt) + jitter)).await;
            }
            other => return other,
        }
    }
}

/// Opens the user's coin account (with the user, inside the caller's transaction).
pub async fn open_user_account(
    conn: &impl ConnectionTrait,
    user_id: Uuid,
) -> std::result::Result<(), DbErr> {
    create_account(
        conn,
        Slot {
            account: Account::User(user_id),
            shard: 0,
        },
    )
    .await
}

/// Opens (when needed) and locks the user's coin account row until the caller's transaction
/// ends, so one user's concurrent purchases run one after another: each then sees what the
/// one before it created (a count of live items, a reused idempotency key).
pub async fn lock_user(
    conn: &impl ConnectionTrait,
    user_id: Uuid,
) -> std::result::Result<(), DbErr> {
    // One statement: an existing row is updated, which locks it as `lock_users` would.
    let row = Slot {
        account: Account::User(user_id),
        shard: 0,
    }
    .new_row();
    account::Entity::insert(row)
        .on_conflict(
            OnConflict::column(account::Column::Id)
                .update_column(account::Column::UpdatedAt)
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Locks these users' coin account rows as [`lock_user`] locks one, without opening any:
/// false when one of them has no account row yet.
pub async fn lock_users(
    conn: &impl ConnectionTrait,
    users: &[Uuid],
) -> std::result::Result<bool, DbErr> {
    let locked = account::Entity::update_many()
        .col_expr(account::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(account::Column::Id.is_in(users.iter().map(|u| Account::User(*u).id())))
        .exec(conn)
        .await?;
    Ok(locked.rows_affected == users.len() as u64)
}

async fn create_account(conn: &impl ConnectionTrait, slot: Slot) -> std::result::Result<(), DbErr> {
    open_accounts(conn, [slot]).await
}

/// Inserts the rows of these accounts, leaving any that exist as they are.
async fn open_accounts(
    conn: &impl ConnectionTrait,
    slots: impl IntoIterator<Item = Slot>,
) -> std::result::Result<(), DbErr> {
    let inserted = account::Entity::insert_many(slots.into_iter().map(Slot::new_row))
        .on_conflict(
            OnConflict::column(account::Column::Id)
                .do_nothing()
                .to_owned(),
        )
        .exec(conn)
        .await;
    match inserted {
        Ok(_) | Err(DbErr::RecordNotInserted) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates every system account shard that does not exist yet (at start-up), in one
/// statement.
pub async fn ensure_system_accounts(conn: &impl ConnectionTrait) -> std::result::Result<(), DbErr> {
    open_accounts(
        conn,
        SystemAccount::ALL.into_iter().flat_map(|system| {
            (0..SYSTEM_SHARDS).map(move |shard| Slot {
                account: Account::System(system),
                shard,
            })
        }),
    )
    .await
}

fn validate(req: &TransferRequest) -> Result<()> {
    if req.amount <= 0 {
        return Err(WalletError::InvalidAmount);
    }
    if req.debit == req.credit {
        return Err(WalletError::InvalidInput(
            "a transfer needs two different accounts",
        ));
    }
    if let Some(key) = &req.idempotency_key
        && (key.is_empty() || key.len() > MAX_KEY_LEN)
    {
        return Err(WalletError::InvalidInput(
            "the idempotency key must be 1 to 160 characters",
        ));
    }
    if req.reference.as_ref().is_some_and(|r| r.len() > 255) {
        return Err(WalletError::InvalidInput("the reference is too long"));
    }
    Ok(())
}

/// What an account update left.
struct AfterUpdate {
    balance: i64,
    user_id: Option<Uuid>,
}

/// How an account row changes.
#[derive(Clone, Copy)]
struct Change {
    balance: i64,
    pending_debits: i64,
    pending_credits: i64,
    /// Refuse unless `balance - pending_debits >= need` (or the account may go negative).
    need: Option<i64>,
}

impl Change {
    /// `delta` to the balance and `debits`/`credits` to the reservations.
    const fn by(delta: i64, debits: i64, credits: i64) -> Self {
        Self {
            balance: delta,
            pending_debits: debits,
            pending_credits: credits,
            need: None,
        }
    }

    /// Only if at least `amount` is available.
    const fn needing(mut self, amount: i64) -> Self {
        self.need = Some(amount);
        self
    }
}

async fn apply(
    conn: &impl ConnectionTrait,
    id: Uuid,
    change: Change,
) -> Result<Option<AfterUpdate>> {
    use account::Column as C;
    let mut update = Query::update();
    update
        .table(account::Entity)
        .value(C::UpdatedAt, Utc::now())
        .and_where(Expr::col(C::Id).eq(id));
    if change.balance != 0 {
        update.value(C::Balance, Expr::col(C::Balance).add(change.balance));
    }
    if change.pending_debits != 0 {
        update.value(
            C::PendingDebits,
            Expr::col(C::PendingDebits).add(change.pending_debits),
        );
    }
    if change.pending_credits != 0 {
        update.value(
            C::PendingCredits,
            Expr::col(C::PendingCredits).add(change.pending_credits),
        );
    }
    if let Some(need) = change.need {
        update.and_where(
            Expr::col(C::AllowNegative)
                .eq(true)
                .or(Expr::col(C::Balance)
                    .sub(Expr::col(C::PendingDebits))
                    .gte(need)),
        );
    }
    update.returning(Query::returning().columns([C::Balance, C::UserId]));
    let Some(row) = conn.query_one(&update).await? else {
        return Ok(None);
    };
    Ok(Some(AfterUpdate {
        balance: row.try_get("", "balance")?,
        user_id: row.try_get("", "user_id")?,
    }))
}

/// Applies `change` to `account`, opening the account when it does not exist yet.
async fn apply_to(conn: &impl ConnectionTrait, slot: Slot, change: Change) -> Result<AfterUpdate> {
    if let Some(after) = apply(conn, slot.id(), change).await? {
        return Ok(after);
    }
    let existing = account::Entity::find_by_id(slot.id()).one(conn).await?;
    match existing {
        Some(row) => Err(WalletError::InsufficientFunds {
            available: row.balance - row.pending_debits,
            needed: change.need.unwrap_or(0),
        }),
        None => {
            if let Account::User(user_id) = slot.account {
                let exists = crate::identity::entity::user::Entity::find_by_id(user_id)
                    .one(conn)
                    .await?
                    .is_some();
                if !exists {
                    return Err(WalletError::UnknownAccount);
                }
            }
            create_account(conn, slot).await?;
            apply(conn, slot.id(), change)
                .await?
                .ok_or(WalletError::InsufficientFunds {
                    available: 0,
                    needed: change.need.unwrap_or(0),
                })
        }
    }
}

/// The row of a plain posted transfer that left the two accounts with these balances.
fn posted_row(
    (debit, credit): (Uuid, Uuid),
    amount: i64,
    kind: &str,
    (debit_after, credit_after): (i64, i64),
) -> transfer::ActiveModel {
    transfer::ActiveModel {
        id: Set(Uuid::now_v7()),
        debit_account_id: Set(debit),
        credit_account_id: Set(credit),
        asset: Set(COIN.to_owned()),
        amount: Set(amount),
        kind: Set(kind.to_owned()),
        phase: Set("single".to_owned()),
        status: Set("posted".to_owned()),
        pending_id: Set(None),
        refund_of: Set(None),
        timeout_at: Set(None),
        resolved_at: Set(None),
        reference: Set(None),
        idempotency_key: Set(None),
        request_hash: Set(None),
        metadata: Set(serde_json::json!({})),
        debit_balance_after: Set(debit_after),
        credit_balance_after: Set(credit_after),
        created_at: Set(Utc::now()),
    }
}

/// Writes the transfer row for a movement that was just applied, with the balances both
/// accounts were left with; `fill` sets what differs from a plain posted transfer.
async fn record(
    conn: &impl ConnectionTrait,
    accounts: (Uuid, Uuid),
    amount: i64,
    kind: &str,
    (d, c): (AfterUpdate, AfterUpdate),
    fill: impl FnOnce(&mut transfer::ActiveModel),
) -> Result<Transferred> {
    let mut row = posted_row(accounts, amount, kind, (d.balance, c.balance));
    fill(&mut row);
    Ok(Transferred {
        transfer: row.insert(conn).await?,
        replayed: false,
        users: [d.user_id, c.user_id].into_iter().flatten().collect(),
    })
}

/// What a request adds to its transfer row: reference, key, metadata, reservation.
fn fill_from(req: &TransferRequest, fingerprint: String, row: &mut transfer::ActiveModel) {
    if let Some(timeout) = req.pending_timeout {
        row.phase = Set("pending".to_owned());
        row.status = Set("pending".to_owned());
        row.timeout_at = Set(Some(timeout_at(timeout)));
    }
    row.reference = Set(req.reference.clone());
    row.idempotency_key = Set(req.idempotency_key.clone());
    row.request_hash = Set(req.idempotency_key.as_ref().map(|_| fingerprint));
    if !serde_json::Value::is_null(&req.metadata) {
        row.metadata = Set(req.metadata.clone());
    }
}

/// The order in which account rows are locked, the same everywhere so that two
/// transfers never wait on each other in a cycle: user accounts first, then system
/// accounts (the hot rows every sale or reward touches, held as briefly as possible), each
/// group by id.
fn lock_rank(id: Uuid) -> (bool, Uuid) {
    static SYSTEM: std::sync::OnceLock<Vec<Uuid>> = std::sync::OnceLock::new();
    let system = SYSTEM.get_or_init(|| {
        SystemAccount::ALL
            .iter()
            .flat_map(|s| {
                (0..SYSTEM_SHARDS).map(|shard| {
                    Slot {
                        account: Account::System(*s),
                        shard,
                    }
                    .id()
                })
            })
            .collect()
    });
    (system.contains(&id), id)
}

/// Applies both sides in lock order.
async fn apply_both(
    conn: &impl ConnectionTrait,
    debit: (Slot, Change),
    credit: (Slot, Change),
) -> Result<(AfterUpdate, AfterUpdate)> {
    if lock_rank(debit.0.id()) < lock_rank(credit.0.id()) {
        let d = apply_to(conn, debit.0, debit.1).await?;
        let c = apply_to(conn, credit.0, credit.1).await?;
        Ok((d, c))
    } else {
        let c = apply_to(conn, credit.0, credit.1).await?;
        let d = apply_to(conn, debit.0, debit.1).await?;
        Ok((d, c))
    }
}

pub async fn by_key(conn: &impl ConnectionTrait, key: &str) -> Result<Option<transfer::Model>> {
    Ok(transfer::Entity::find()
        .filter(transfer::Column::IdempotencyKey.eq(key))
        .one(conn)
        .await?)
}

/// The earlier transfer under `req`'s key, if it is the same request; a conflict if not.
async fn replay(
    conn: &impl ConnectionTrait,
    req: &TransferRequest,
    fingerprint: &str,
) -> Result<Option<Transferred>> {
    let Some(key) = &req.idempotency_key else {
        return Ok(None);
    };
    match by_key(conn, key).await? {
        Some(found) if found.request_hash.as_deref() == Some(fingerprint) => {
            Ok(Some(Transferred {
                transfer: found,
                replayed: true,
                users: Vec::new(),
            }))
        }
        Some(_) => Err(WalletError::IdempotencyConflict),
        None => Ok(None),
    }
}

/// Moves coins inside the caller's transaction. The caller commits, then calls
/// [`notify`]. With an idempotency key that another transaction is using at the same time,
/// this may fail (unique violation or, having lost the race for the funds, insufficient
/// funds); [`transfer`] resolves that by reading the winner, a caller with its own
/// transaction should roll back and retry.
pub async fn transfer_in(
    conn: &impl ConnectionTrait,
    req: &TransferRequest,
) -> Result<Transferred> {
    validate(req)?;
    let fingerprint = req.fingerprint();
    if !req.key_claimed
        && let Some(done) = replay(conn, req, &fingerprint).await?
    {
        return Ok(done);
    }
    let (debit_change, credit_change) = match req.pending_timeout {
        None => (
            Change::by(-req.amount, 0, 0).needing(req.amount),
            Change::by(req.amount, 0, 0),
        ),
        Some(_) => (
            Change::by(0, req.amount, 0).needing(req.amount),
            Change::by(0, 0, req.amount),
        ),
    };
    let (debit, credit) = (req.debit.slot(), req.credit.slot());
    let after = apply_both(conn, (debit, debit_change), (credit, credit_change)).await?;
    record(
        conn,
        (debit.id(), credit.id()),
        req.amount,
        req.kind.as_str(),
        after,
        |row| fill_from(req, fingerprint, row),
    )
    .await
}

/// A user's coins taken for a payment to a system account, inside the caller's transaction,
/// the system account not credited yet: see [`debit_first`].
pub struct Debited {
    req: TransferRequest,
    debit: Slot,
    after: AfterUpdate,
    transfer_id: Uuid,
}

/// The first half of [`transfer_in`] for a posted payment from a user to a system account:
/// takes the coins and so locks the user's row (opening it when needed), for a caller that
/// checks something of that user's under the lock before [`Debited::finish`] credits the
/// system account and writes the transfer row. Rolling back undoes the debit. The request's
/// idempotency key, if any, must be claimed (the look-up of an earlier transfer would come
/// too late here).
pub async fn debit_first(conn: &impl ConnectionTrait, req: TransferRequest) -> Result<Debited> {
    validate(&req)?;
    let shape = matches!(req.debit, Account::User(_))
        && matches!(req.credit, Account::System(_))
        && req.pending_timeout.is_none()
        && (req.idempotency_key.is_none() || req.key_claimed);
    if !shape {
        return Err(WalletError::InvalidInput(
            "a split transfer is a posted payment from a user to a system account under a claimed key",
        ));
    }
    let debit = req.debit.slot();
    let after = apply_to(
        conn,
        debit,
        Change::by(-req.amount, 0, 0).needing(req.amount),
    )
    .await?;
    Ok(Debited {
        req,
        debit,
        after,
        transfer_id: Uuid::now_v7(),
    })
}

impl Debited {
    /// The id the transfer row will have, for rows the caller writes before [`Self::finish`]
    /// (so the hot system row is locked only at the very end).
    pub fn transfer_id(&self) -> Uuid {
        self.transfer_id
    }

    /// Credits the system account and writes the transfer row.
    pub async fn finish(self, conn: &impl ConnectionTrait) -> Result<Transferred> {
        let req = &self.req;
        let credit = req.credit.slot();
        // The user's row is locked already; the system shard comes second, as everywhere.
        let credited = apply_to(conn, credit, Change::by(req.amount, 0, 0)).await?;
        record(
            conn,
            (self.debit.id(), credit.id()),
            req.amount,
            req.kind.as_str(),
            (self.after, credited),
            |row| {
                row.id = Set(self.transfer_id);
                fill_from(req, req.fingerprint(), row);
            },
        )
        .await
    }
}

/// Pays many users from one system account inside the caller's transaction, as
/// [`transfer_in`] would one request after another, in three statements: the users' rows
/// (first, as in every transfer's lock order), one shard of the system account, and every
/// transfer row, each with the balances it left. The requests must be posted transfers from
/// the same system account to distinct users, under keys the caller claimed (or none).
/// `None` when a user has no account row yet; the caller rolls back and pays that user
/// with [`transfer_in`], which opens it.
pub async fn pay_out_in(
    conn: &impl ConnectionTrait,
    reqs: &[TransferRequest],
) -> Result<Option<Vec<Transferred>>> {
    let Some(first) = reqs.first() else {
        return Ok(Some(Vec::new()));
    };
    let mut users = std::collections::HashSet::new();
    for req in reqs {
        validate(req)?;
        let payout = matches!(first.debit, Account::System(_))
            && req.debit == first.debit
            && req.pending_timeout.is_none()
            && (req.idempotency_key.is_none() || req.key_claimed)
            && matches!(req.credit, Account::User(id) if users.insert(id));
        if !payout {
            return Err(WalletError::InvalidInput(
                "a payout moves posted coins from one system account to distinct users under claimed keys",
            ));
        }
    }
    use account::Column as C;
    let raise = if reqs.iter().all(|r| r.amount == first.amount) {
        Expr::col(C::Balance).add(first.amount)
    } else {
        Expr::col(C::Balance).add(
            reqs.iter()
                .fold(CaseStatement::new(), |case, r| {
                    case.case(Expr::col(C::Id).eq(r.credit.id()), r.amount)
                })
                .finally(0),
        )
    };
    let mut update = Query::update();
    update
        .table(account::Entity)
        .value(C::Balance, raise)
        .value(C::UpdatedAt, Utc::now())
        .and_where(Expr::col(C::Id).is_in(reqs.iter().map(|r| r.credit.id())))
        .returning(Query::returning().columns([C::Id, C::Balance]));
    let rows = conn.query_all(&update).await?;
    if rows.len() != reqs.len() {
        return Ok(None);
    }
    let mut credited = std::collections::HashMap::with_capacity(rows.len());
    for row in rows {
        credited.insert(
            row.try_get::<Uuid>("", "id")?,
            row.try_get::<i64>("", "balance")?,
        );
    }
    let total: i64 = reqs.iter().map(|r| r.amount).sum();
    let debit = first.debit.slot();
    let paid = apply_to(conn, debit, Change::by(-total, 0, 0).needing(total)).await?;
    // The system account's balance after each transfer, as if they had run in this order.
    let mut still_to_pay = total;
    let mut rows = Vec::with_capacity(reqs.len());
    for req in reqs {
        still_to_pay -= req.amount;
        let credit = req.credit.id();
        let mut row = posted_row(
            (debit.id(), credit),
            req.amount,
            req.kind.as_str(),
            (paid.balance + still_to_pay, credited[&credit]),
        );
        fill_from(req, req.fingerprint(), &mut row);
        rows.push(row);
    }
    transfer::Entity::insert_many(rows.clone())
        .exec_without_returning(conn)
        .await?;
    rows.into_iter()
        .zip(reqs)
        .map(|(row, req)| {
            Ok(Transferred {
                transfer: row.try_into_model()?,
                replayed: false,
                users: match req.credit {
                    Account::User(id) => vec![id],
                    Account::System(_) => Vec::new(),
                },
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Moves coins in a transaction of its own, retried on transient database errors, and
/// notifies the wallets' owners. The same idempotency key returns the first transfer, even
/// when the two calls race.
pub async fn transfer(state: &AppState, req: TransferRequest) -> Result<Transferred> {
    let done = retrying(|| async {
        let txn = state.db.begin_write().await?;
        match transfer_in(&txn, &req).await {
            Ok(done) => {
                txn.commit().await?;
                Ok(done)
            }
            Err(err) => {
                txn.rollback().await?;
                after_failure(state, &req, err).await
            }
        }
    })
    .await?;
    notify(state, &done.users).await;
    Ok(done)
}

/// After a failed, rolled-back [`transfer_in`]: when it lost a race with another call
/// under the same idempotency key (a unique violation, or the winner spent the funds
/// first), the winner's transfer is the answer; otherwise the error stands.
pub async fn after_failure(
    state: &AppState,
    req: &TransferRequest,
    err: WalletError,
) -> Result<Transferred> {
    if matches!(
        err,
        WalletError::Db(_) | WalletError::InsufficientFunds { .. }
    ) && req.idempotency_key.is_some()
        && let Some(done) = replay(state.db.conn(), req, &req.fingerprint()).await?
    {
        return Ok(done);
    }
    Err(err)
}

/// Tells subscribers (on every instance) that these users' wallets changed.
pub async fn notify(state: &AppState, users: &[Uuid]) {
    for user in users {
        if let Err(e) = state.kv.publish(&channel(*user), b"").await {
            tracing::warn!(error = %e, "could not publish a wallet change");
        }
    }
}

/// The pub/sub channel of a user's wallet changes.
pub fn channel(user_id: Uuid) -> String {
    format!("wallet.changed.{user_id}")
}

/// Locks a pending transfer for resolution: flips its status from `pending` to `status`
/// and returns it, or says why it cannot be resolved.
async fn resolve_pending(
    conn: &impl ConnectionTrait,
    pending_id: Uuid,
    status: &str,
    require_live: bool,
) -> Result<transfer::Model> {
    use transfer::Column as C;
    let now = Utc::now();
    let mut update = transfer::Entity::update_many()
        .col_expr(C::Status, Expr::value(status))
        .col_expr(C::ResolvedAt, Expr::value(now))
        .filter(C::Id.eq(pending_id))
        .filter(C::Phase.eq("pending"))
        .filter(C::Status.eq("pending"));
    if require_live {
        update = update.filter(C::TimeoutAt.gt(now));
    }
    let changed = update.exec(conn).await?.rows_affected;
    let row = transfer::Entity::find_by_id(pending_id)
        .one(conn)
        .await?
        .ok_or(WalletError::NotFound)?;
    if changed == 1 {
        return Ok(row);
    }
    if row.phase != "pending" {
        return Err(WalletError::NotRefundable("not_a_reservation"));
    }
    if row.status == "pending" {
        return Err(WalletError::PendingExpired);
    }
    Err(WalletError::AlreadyResolved(row.status))
}

fn accounts_of(row: &transfer::Model) -> (Uuid, Uuid) {
    (row.debit_account_id, row.credit_account_id)
}

/// Applies changes to two accounts known by id, in lock order.
async fn apply_ids(
    conn: &impl ConnectionTrait,
    debit: (Uuid, Change),
    credit: (Uuid, Change),
) -> Result<(AfterUpdate, AfterUpdate)> {
    let run = |id: Uuid, change: Change| async move {
        if let Some(after) = apply(conn, id, change).await? {
            return Ok(after);
        }
        let row = account::Entity::find_by_id(id)
            .one(conn)
            .await?
            .ok_or(WalletError::UnknownAccount)?;
        Err(WalletError::InsufficientFunds {
            available: row.balance - row.pending_debits,
            needed: change.need.unwrap_or(0),
        })
    };
    if lock_rank(debit.0) < lock_rank(credit.0) {
        let d = run(debit.0, debit.1).await?;
        let c = run(credit.0, credit.1).await?;
        Ok((d, c))
    } else {
        let c = run(credit.0, credit.1).await?;
        let d = run(debit.0, debit.1).await?;
        Ok((d, c))
    }
}

/// Posts a reservation inside the caller's transaction: moves `amount` (all of it when
/// `None`) and releases the rest. Returns the posting transfer.
pub async fn post_in(
    conn: &impl ConnectionTrait,
    pending_id: Uuid,
    amount: Option<i64>,
) -> Result<Transferred> {
    let pending = resolve_pending(conn, pending_id, "posted", true).await?;
    let amount = amount.unwrap_or(pending.amount);
    if amount <= 0 {
        return Err(WalletError::InvalidAmount);
    }
    if amount > pending.amount {
        return Err(WalletError::OverPost {
            requested: amount,
            reserved: pending.amount,
        });
    }
    let (debit, credit) = accounts_of(&pending);
    let after = apply_ids(
        conn,
        (debit, Change::by(-amount, -pending.amount, 0)),
        (credit, Change::by(amount, 0, -pending.amount)),
    )
    .await?;
    record(conn, (debit, credit), amount, &pending.kind, after, |row| {
        row.phase = Set("post".to_owned());
        row.pending_id = Set(Some(pending.id));
        row.reference = Set(pending.reference.clone());
        row.metadata = Set(serde_json::json!({ "reserved": pending.amount }));
    })
    .await
}

/// Voids a reservation inside the caller's transaction (`expired` when the sweep does it).
async fn release_in(
    conn: &impl ConnectionTrait,
    pending_id: Uuid,
    status: &str,
) -> Result<Transferred> {
    let pending = resolve_pending(conn, pending_id, status, false).await?;
    let (debit, credit) = accounts_of(&pending);
    let (d, c) = apply_ids(
        conn,
        (debit, Change::by(0, -pending.amount, 0)),
        (credit, Change::by(0, 0, -pending.amount)),
    )
    .await?;
    Ok(Transferred {
        transfer: pending,
        replayed: false,
        users: [d.user_id, c.user_id].into_iter().flatten().collect(),
    })
}

/// Voids a reservation inside the caller's transaction; returns it, now `voided`.
pub async fn void_in(conn: &impl ConnectionTrait, pending_id: Uuid) -> Result<Transferred> {
    release_in(conn, pending_id, "voided").await
}

/// A resolution of an existing transfer, run by [`in_own_txn`].
enum Op {
    Post(Uuid, Option<i64>),
    Release(Uuid, &'static str),
    Refund(Uuid, Option<String>),
}

/// Runs `op` in a write transaction of its own (retried), commits, and notifies.
async fn in_own_txn(state: &AppState, op: Op) -> Result<Transferred> {
    let done = retrying(|| async {
        let txn = state.db.begin_write().await?;
        let result = match &op {
            Op::Post(id, amount) => post_in(&txn, *id, *amount).await,
            Op::Release(id, status) => release_in(&txn, *id, status).await,
            Op::Refund(id, key) => refund_in(&txn, *id, key.clone()).await,
        };
        match result {
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
    .await?;
    notify(state, &done.users).await;
    Ok(done)
}

/// Posts a reservation (all of it, or `amount`, releasing the rest).
pub async fn post(state: &AppState, pending_id: Uuid, amount: Option<i64>) -> Result<Transferred> {
    in_own_txn(state, Op::Post(pending_id, amount)).await
}

/// Voids a reservation: nothing moves, the reserved amount is available again.
pub async fn void(state: &AppState, pending_id: Uuid) -> Result<Transferred> {
    in_own_txn(state, Op::Release(pending_id, "voided")).await
}

/// Reverses a posted transfer (at most once): the same amount back, as kind `refund`.
pub async fn refund_in(
    conn: &impl ConnectionTrait,
    transfer_id: Uuid,
    idempotency_key: Option<String>,
) -> Result<Transferred> {
    let original = transfer::Entity::find_by_id(transfer_id)
        .one(conn)
        .await?
        .ok_or(WalletError::NotFound)?;
    if original.phase == "pending" {
        return Err(WalletError::NotRefundable("not_posted"));
    }
    if original.kind == TransferKind::Refund.as_str() {
        return Err(WalletError::NotRefundable("refund_of_refund"));
    }
    let earlier = transfer::Entity::find()
        .filter(transfer::Column::RefundOf.eq(transfer_id))
        .one(conn)
        .await?;
    if let Some(earlier) = earlier {
        if idempotency_key.is_some() && earlier.idempotency_key == idempotency_key {
            return Ok(Transferred {
                transfer: earlier,
                replayed: true,
                users: Vec::new(),
            });
        }
        return Err(WalletError::AlreadyRefunded);
    }
    let (debit, credit) = (original.credit_account_id, original.debit_account_id);
    let after = apply_ids(
        conn,
        (
            debit,
            Change::by(-original.amount, 0, 0).needing(original.amount),
        ),
        (credit, Change::by(original.amount, 0, 0)),
    )
    .await?;
    record(
        conn,
        (debit, credit),
        original.amount,
        TransferKind::Refund.as_str(),
        after,
        |row| {
            row.refund_of = Set(Some(original.id));
            row.reference = Set(original.reference.clone());
            row.idempotency_key = Set(idempotency_key);
            row.metadata = Set(serde_json::json!({ "refund_of_kind": original.kind }));
        },
    )
    .await
}

/// [`refund_in`] in a transaction of its own.
pub async fn refund(
    state: &AppState,
    transfer_id: Uuid,
    idempotency_key: Option<String>,
) -> Result<Transferred> {
    in_own_txn(state, Op::Refund(transfer_id, idempotency_key)).await
}

/// Voids reservations whose timeout has passed (status `expired`). Safe on every instance
/// at once: each is resolved by a conditional update that only one can win.
pub async fn expire_pending(state: &AppState) -> Result<u64> {
    let due: Vec<Uuid> = transfer::Entity::find()
        .select_only()
        .column(transfer::Column::Id)
        .filter(transfer::Column::Status.eq("pending"))
        .filter(transfer::Column::TimeoutAt.lte(Utc::now()))
        .order_by_asc(transfer::Column::TimeoutAt)
        .limit(200)
        .into_tuple()
        .all(state.db.conn())
        .await?;
    let mut expired = 0;
    for id in due {
        match in_own_txn(state, Op::Release(id, "expired")).await {
            Ok(_) => expired += 1,
            // Another instance (or a post or void) got there first.
            Err(WalletError::AlreadyResolved(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(expired)
}

/// Runs [`expire_pending`] every `every` until shutdown.
pub async fn run_expiry_sweeper(state: AppState, every: Duration) {
    crate::platform::every(&state.shutdown, every, false, || async {
        match expire_pending(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "expired coin reservations"),
            Err(e) => tracing::warn!(error = %e, "reservation expiry sweep failed"),
        }
    })
    .await;
}

/// A user's coin account, or zeros when none exists yet.
pub async fn balances(conn: &impl ConnectionTrait, user_id: Uuid) -> Result<(i64, i64)> {
    Ok(account::Entity::find_by_id(Account::User(user_id).id())
        .one(conn)
        .await?
        .map(|a| (a.balance, a.balance - a.pending_debits))
        .unwrap_or((0, 0)))
}

/// Transfers touching `account`, newest first, strictly older than `before` when given.
pub async fn transfers_of(
    conn: &impl ConnectionTrait,
    account: Uuid,
    first: u64,
    before: Option<Uuid>,
    kind: Option<TransferKind>,
) -> Result<Page<transfer::Model>> {
    use sea_orm::Condition;
    let mut filter = Condition::all().add(
        Condition::any()
            .add(transfer::Column::DebitAccountId.eq(account))
            .add(transfer::Column::CreditAccountId.eq(account)),
    );
    if let Some(kind) = kind {
        filter = filter.add(transfer::Column::Kind.eq(kind.as_str()));
    }
    Ok(newest_first::<transfer::Entity>(conn, filter, transfer::Column::Id, first, before).await?)
}

/// Totals for the admin ledger view.
pub struct LedgerTotals {
    pub total_user_balances: i64,
    pub system: Vec<(String, i64)>,
    /// Sum of every balance: always 0 in a sound ledger.
    pub imbalance: i64,
    /// Reserved out minus reserved in: always 0 as well.
    pub pending_imbalance: i64,
}

pub async fn ledger_totals(conn: &impl ConnectionTrait) -> Result<LedgerTotals> {
    let accounts = account::Entity::find()
        .order_by_asc(account::Column::Name)
        .all(conn)
        .await?;
    let mut totals = LedgerTotals {
        total_user_balances: 0,
        system: Vec::new(),
        imbalance: 0,
        pending_imbalance: 0,
    };
    for a in accounts {
        totals.imbalance += a.balance;
        totals.pending_imbalance += a.pending_debits - a.pending_credits;
        if a.kind == "system" {
            let name = a.name.split('#').next().unwrap_or(&a.name).to_owned();
            match totals.system.iter_mut().find(|(n, _)| *n == name) {
                Some((_, balance)) => *balance += a.balance,
                None => totals.system.push((name, a.balance)),
            }
        } else {
            totals.total_user_balances += a.balance;
        }
    }
    Ok(totals)
}

/// Checks the ledger's invariants and lists what is wrong (empty when sound): balances sum
/// to zero; each balance equals its postings and each reservation total its open
/// reservations; no user account is below zero.
pub async fn check_invariants(conn: &impl ConnectionTrait) -> Result<Vec<String>> {
    let accounts = account::Entity::find().all(conn).await?;
    let transfers = transfer::Entity::find().all(conn).await?;
    let mut problems = Vec::new();
    let sum: i64 = accounts.iter().map(|a| a.balance).sum();
    if sum != 0 {
        problems.push(format!("balances sum to {sum}, not 0"));
    }
    for a in &accounts {
        let mut posted = 0i64;
        let mut reserved_out = 0i64;
        let mut reserved_in = 0i64;
        for t in &transfers {
            let moves = t.phase != "pending";
            let open = t.phase == "pending" && t.status == "pending";
            if t.debit_account_id == a.id {
                if moves {
                    posted -= t.amount;
                }
                if open {
                    reserved_out += t.amount;
                }
            }
            if t.credit_account_id == a.id {
                if moves {
                    posted += t.amount;
                }
                if open {
                    reserved_in += t.amount;
                }
            }
        }
        if posted != a.balance {
            problems.push(format!(
                "{}: balance {} but postings say {posted}",
                a.name, a.balance
            ));
        }
        if reserved_out != a.pending_debits || reserved_in != a.pending_credits {
            problems.push(format!(
                "{}: reserved {}/{} but open reservations say {reserved_out}/{reserved_in}",
                a.name, a.pending_debits, a.pending_credits
            ));
        }
        if !a.allow_negative && a.balance - a.pending_debits < 0 {
            problems.push(format!("{}: below zero ({})", a.name, a.balance));
        }
    }
    Ok(problems)
}

/// When a reservation made now with `timeout` ends.
pub fn timeout_at(timeout: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::days(3650))
}
