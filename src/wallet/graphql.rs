//! GraphQL surface of the wallet: `User.wallet` (balance, available, transfers), the
//! `walletChanged` subscription, admin `grantCoins` and `admin.ledger`.

use async_graphql::{
    Context, Enum, ID, Object, Result, SimpleObject, Subscription, futures_util::Stream,
};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use uuid::Uuid;

use super::{
    entity::transfer,
    service::{self, Account, SystemAccount, TransferKind},
};
use crate::{
    app::AppState,
    graphql::{
        ApiError, RequestMeta,
        pagination::{self, PageInfo},
    },
    identity::auth::AuthContextExt,
};

/// A user's coins.
pub struct Wallet {
    user_id: Uuid,
    balances: tokio::sync::OnceCell<(i64, i64)>,
}

impl Wallet {
    pub fn of(user_id: Uuid) -> Self {
        Self {
            user_id,
            balances: tokio::sync::OnceCell::new(),
        }
    }

    async fn balances(&self, ctx: &Context<'_>) -> Result<(i64, i64)> {
        let state = ctx.data::<AppState>()?;
        Ok(*self
            .balances
            .get_or_try_init(|| async {
                service::balances(state.db.conn(), self.user_id)
                    .await
                    .map_err(ApiError::from)
            })
            .await?)
    }
}

#[Object]
impl Wallet {
    /// Coins posted to the account.
    async fn balance(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(self.balances(ctx).await?.0)
    }

    /// Coins that can be spent now: the balance less what open reservations hold.
    async fn available(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(self.balances(ctx).await?.1)
    }

    /// Movements in and out, newest first.
    async fn transfers(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        kind: Option<TransferKind>,
    ) -> Result<TransferConnection> {
        let state = ctx.data::<AppState>()?;
        let first = pagination::page_size(first)?;
        let after = pagination::after(after.as_deref())?;
        let account = Account::User(self.user_id).id();
        let page = service::transfers_of(state.db.conn(), account, first, after, kind)
            .await
            .map_err(ApiError::from)?;
        let edges: Vec<TransferEdge> = page
            .rows
            .into_iter()
            .map(|row| TransferEdge {
                cursor: pagination::cursor(row.id),
                node: Transfer { row, account },
            })
            .collect();
        let cursors: Vec<String> = edges.iter().map(|e| e.cursor.clone()).collect();
        Ok(TransferConnection {
            page_info: PageInfo::new(&cursors, page.has_next),
            edges,
            total_count: page.total,
        })
    }
}

#[derive(SimpleObject)]
pub struct TransferConnection {
    edges: Vec<TransferEdge>,
    page_info: PageInfo,
    total_count: u64,
}

#[derive(SimpleObject)]
pub struct TransferEdge {
    cursor: String,
    node: Transfer,
}

/// Which way coins went, seen from the wallet being listed.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Into this wallet.
    Credit,
    /// Out of this wallet.
    Debit,
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferStatus {
    /// Moved.
    Posted,
    /// Reserved: counted against `available`, not yet moved.
    Pending,
    /// A reservation released without moving.
    Voided,
    /// A reservation that ran out of time and was released.
    Expired,
}

/// One movement of coins, seen from one account.
pub struct Transfer {
    row: transfer::Model,
    /// The account whose view this is.
    account: Uuid,
}

impl Transfer {
    pub fn seen_by(row: transfer::Model, account: Account) -> Self {
        Self {
            row,
            account: account.id(),
        }
    }

    fn is_debit(&self) -> bool {
        self.row.debit_account_id == self.account
    }
}

#[Object]
impl Transfer {
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }

    async fn amount(&self) -> i64 {
        self.row.amount
    }

    async fn direction(&self) -> Direction {
        if self.is_debit() {
            Direction::Debit
        } else {
            Direction::Credit
        }
    }

    async fn kind(&self) -> Option<TransferKind> {
        TransferKind::parse(&self.row.kind)
    }

    async fn status(&self) -> TransferStatus {
        match self.row.status.as_str() {
            "pending" => TransferStatus::Pending,
            "voided" => TransferStatus::Voided,
            "expired" => TransferStatus::Expired,
            _ => TransferStatus::Posted,
        }
    }

    /// What it paid for (an access token, a VPS session, …).
    async fn reference(&self) -> Option<&str> {
        self.row.reference.as_deref()
    }

    /// The Tessera account on the other side, when it is one.
    async fn counterparty(&self) -> Option<SystemAccount> {
        let other = if self.is_debit() {
            self.row.credit_account_id
        } else {
            self.row.debit_account_id
        };
        SystemAccount::by_id(other)
    }

    /// This wallet's posted balance right after the transfer.
    async fn balance_after(&self) -> i64 {
        if self.is_debit() {
            self.row.debit_balance_after
        } else {
            self.row.credit_balance_after
        }
    }

    /// For a reservation: when it releases itself unless posted.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.row.timeout_at
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.row.created_at
    }
}

#[derive(Default)]
pub struct WalletSubscription;

#[Subscription]
impl WalletSubscription {
    /// The viewer's wallet after each change (from any instance). A gap in delivery also
    /// yields the wallet, so a client is never left with a stale balance.
    async fn wallet_changed(&self, ctx: &Context<'_>) -> Result<impl Stream<Item = Wallet>> {
        let viewer = ctx.viewer()?;
        let state = ctx.data::<AppState>()?;
        let user = viewer.user_id;
        let deliveries = state
            .kv
            .subscribe(&service::channel(user))
            .await
            .map_err(ApiError::from)?;
        Ok(deliveries.map(move |_| Wallet::of(user)))
    }
}

#[derive(Default)]
pub struct WalletMutation;

#[Object]
impl WalletMutation {
    /// Admin: gives a user coins from `system:grants` (audited with the reason).
    async fn grant_coins(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        amount: i64,
        reason: String,
        idempotency_key: Option<String>,
    ) -> Result<Transfer> {
        let state = ctx.data::<AppState>()?;
        let meta = ctx.data::<RequestMeta>()?;
        let admin = ctx.admin()?;
        let user_id = Uuid::parse_str(&user_id).map_err(|_| ApiError::not_found("user"))?;
        let done = super::grant(
            state,
            admin,
            user_id,
            amount,
            &reason,
            idempotency_key,
            meta,
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Transfer::seen_by(done.transfer, Account::User(user_id)))
    }
}

/// The whole ledger at a glance.
#[derive(SimpleObject)]
pub struct Ledger {
    /// Coins held by users.
    total_user_balances: i64,
    system_accounts: Vec<SystemAccountBalance>,
    /// Sum of every balance. Must read 0.
    imbalance: i64,
    /// Coins reserved out less coins reserved in. Must read 0.
    pending_imbalance: i64,
}

#[derive(SimpleObject)]
pub struct SystemAccountBalance {
    name: String,
    /// Negative: coins this account has issued.
    balance: i64,
}

#[derive(Default)]
pub struct WalletAdminQuery;

#[Object]
impl WalletAdminQuery {
    async fn ledger(&self, ctx: &Context<'_>) -> Result<Ledger> {
        ctx.admin()?;
        let state = ctx.data::<AppState>()?;
        let totals = service::ledger_totals(state.db.conn())
            .await
            .map_err(ApiError::from)?;
        Ok(Ledger {
            total_user_balances: totals.total_user_balances,
            system_accounts: totals
                .system
                .into_iter()
                .map(|(name, balance)| SystemAccountBalance { name, balance })
                .collect(),
            imbalance: totals.imbalance,
            pending_imbalance: totals.pending_imbalance,
        })
    }
}
