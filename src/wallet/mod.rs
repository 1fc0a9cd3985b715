//! Wallet: a double-entry coin ledger. Accounts (one per user, plus system accounts such as
//! `system:ads`) and transfers between them; balances change only with a transfer, in the
//! same database transaction. Every coin that moves goes through [`service::transfer`] (or
//! its two-phase and refund relatives).
//!
//! Invariants (checked by [`service::check_invariants`] after every test that moves coins):
//! - the balances of all accounts sum to zero;
//! - each balance equals its postings, each reservation total its open reservations;
//! - a user's available balance (`balance - pending_debits`) never goes below zero;
//! - an idempotency key moves coins at most once; a transfer is refunded at most once.

pub mod entity;
pub mod graphql;
pub mod service;

use uuid::Uuid;

use crate::{
    app::AppState,
    graphql::RequestMeta,
    identity::auth::Admin,
    platform::audit::{self, AuditEntry},
};
pub use service::{Account, SystemAccount, TransferKind, TransferRequest, WalletError};

/// Admin: gives a user coins from `system:grants`, with the reason in the audit log.
pub async fn grant(
    state: &AppState,
    admin: Admin<'_>,
    user_id: Uuid,
    amount: i64,
    reason: &str,
    idempotency_key: Option<String>,
    meta: &RequestMeta,
) -> service::Result<service::Transferred> {
    let reason = reason.trim();
    if idempotency_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > service::MAX_KEY_LEN)
    {
        return Err(WalletError::InvalidInput(
            "the idempotency key must be 1 to 160 characters",
        ));
    }
    if reason.is_empty() || reason.len() > 500 {
        return Err(WalletError::InvalidInput(
            "a reason of 1 to 500 characters is required",
        ));
    }
    let request = TransferRequest::new(
        Account::System(SystemAccount::Grants),
        Account::User(user_id),
        amount,
        TransferKind::Grant,
    )
    .idempotency_key(idempotency_key.map(|k| {
        use sha2::Digest;
        format!("grant:{}", hex::encode(sha2::Sha256::digest(k.as_bytes())))
    }))
    .metadata(serde_json::json!({ "reason": reason, "by": admin.user_id() }));
    let done = service::retrying(|| async {
        let txn = state.db.begin_write().await?;
        let done = match service::transfer_in(&txn, &request).await {
            Ok(done) => done,
            Err(e) => {
                txn.rollback().await?;
                return service::after_failure(state, &request, e).await;
            }
        };
        if !done.replayed {
            audit::record(
                &txn,
                AuditEntry::by(admin.user_id(), "wallet.grant", meta)
                    .on("user", user_id)
                    .details(serde_json::json!({
                        "amount": amount,
                        "reason": reason,
                        "transfer": done.transfer.id,
                    })),
            )
            .await?;
        }
        txn.commit().await?;
        Ok(done)
    })
    .await?;
    service::notify(state, &done.users).await;
    Ok(done)
}
