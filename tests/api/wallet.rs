//! The coin ledger end to end: grants and spends, refusals that change nothing, idempotency,
//! two-phase reservations, refunds, pagination, the live `walletChanged` stream, and the
//! money invariants under concurrency. Every test that moves coins ends by checking the
//! invariants (sum zero, balances equal postings, no user below zero).

use std::time::Duration;

use futures_util::future::join_all;
use rand::Rng;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use tessera::wallet::{
    Account, SystemAccount, TransferKind, TransferRequest, WalletError,
    entity::{account, transfer},
    service,
};
use uuid::Uuid;

use crate::helpers::{Session, TestApp, error_of, ws_next, ws_send};

const WALLET: &str = "{ me { wallet { balance available } } }";

async fn admin_app() -> (TestApp, Session) {
    let app = TestApp::builder()
        .configure(|c| c.identity.admin_emails = vec!["treasurer@example.com".into()])
        .spawn()
        .await;
    let admin = app.register("treasurer@example.com", "treasurer").await;
    assert_eq!(admin.role, "ADMIN");
    (app, admin)
}

fn uid(session: &Session) -> Uuid {
    session.user_id.parse().unwrap()
}

async fn assert_sound(app: &TestApp) {
    let problems = service::check_invariants(app.state.db.conn())
        .await
        .unwrap();
    assert!(
        problems.is_empty(),
        "ledger invariants broken: {problems:#?}"
    );
}

async fn wallet(app: &TestApp, session: &Session) -> (i64, i64) {
    let body = app.graphql_as(&session.access, WALLET, json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
    let w = &body["data"]["me"]["wallet"];
    (
        w["balance"].as_i64().unwrap(),
        w["available"].as_i64().unwrap(),
    )
}

async fn grant(app: &TestApp, admin: &Session, user: &str, amount: i64) -> Value {
    app.graphql_as(
        &admin.access,
        "mutation($u: ID!, $a: Int!) { grantCoins(userId: $u, amount: $a, reason: \"welcome\") { id amount direction kind balanceAfter counterparty } }",
        json!({ "u": user, "a": amount }),
    )
    .await
}

fn spend(user: Uuid, amount: i64) -> TransferRequest {
    TransferRequest::new(
        Account::User(user),
        Account::System(SystemAccount::Sales),
        amount,
        TransferKind::AccessToken,
    )
}

async fn transfer_count(app: &TestApp) -> u64 {
    transfer::Entity::find()
        .count(app.state.db.conn())
        .await
        .unwrap()
}

#[tokio::test]
async fn every_user_gets_an_account_and_grants_and_spends_move_coins() {
    let (app, admin) = admin_app().await;
    let ann = app.register("ann@example.com", "ann").await;
    let row = account::Entity::find_by_id(Account::User(uid(&ann)).id())
        .one(app.state.db.conn())
        .await
        .unwrap()
        .expect("the account opens with the user");
    assert_eq!((row.balance, row.kind.as_str()), (0, "user"));
    assert_eq!(wallet(&app, &ann).await, (0, 0));

    let body = grant(&app, &admin, &ann.user_id, 100).await;
    let granted = &body["data"]["grantCoins"];
    assert_eq!(granted["amount"], 100, "{body}");
    assert_eq!(granted["direction"], "CREDIT");
    assert_eq!(granted["kind"], "GRANT");
    assert_eq!(granted["balanceAfter"], 100);
    assert_eq!(granted["counterparty"], "GRANTS");

    service::transfer(&app.state, spend(uid(&ann), 30).reference("token-1"))
        .await
        .unwrap();
    assert_eq!(wallet(&app, &ann).await, (70, 70));

    let body = app
        .graphql_as(
            &ann.access,
            "{ me { wallet { transfers { totalCount edges { node { amount direction kind balanceAfter reference counterparty status } } } } } }",
            json!({}),
        )
        .await;
    let list = &body["data"]["me"]["wallet"]["transfers"];
    assert_eq!(list["totalCount"], 2, "{body}");
    let newest = &list["edges"][0]["node"];
    assert_eq!(newest["direction"], "DEBIT");
    assert_eq!(newest["balanceAfter"], 70);
    assert_eq!(newest["reference"], "token-1");
    assert_eq!(newest["counterparty"], "SALES");
    assert_eq!(newest["status"], "POSTED");
    assert_eq!(list["edges"][1]["node"]["balanceAfter"], 100);

    let ledger = app
        .graphql_as(
            &admin.access,
            "{ admin { ledger { totalUserBalances imbalance pendingImbalance systemAccounts { name balance } } } }",
            json!({}),
        )
        .await;
    let ledger = &ledger["data"]["admin"]["ledger"];
    assert_eq!(ledger["totalUserBalances"], 70, "{ledger}");
    assert_eq!(ledger["imbalance"], 0);
    assert_eq!(ledger["pendingImbalance"], 0);
    let systems = ledger["systemAccounts"].as_array().unwrap();
    let balance_of = |name: &str| {
        systems
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["balance"].as_i64().unwrap())
    };
    assert_eq!(balance_of("system:grants"), Some(-100));
    assert_eq!(balance_of("system:sales"), Some(30));

    // The grant is in the audit log with its reason.
    let audit = tessera::platform::audit::recent(app.state.db.conn(), 10)
        .await
        .unwrap();
    let entry = audit
        .iter()
        .find(|e| e.action == "wallet.grant")
        .expect("audited");
    assert_eq!(entry.details["reason"], "welcome");
    assert_sound(&app).await;
}

#[tokio::test]
async fn refusals_change_nothing() {
    let (app, admin) = admin_app().await;
    let bo = app.register("bo@example.com", "bo.b").await;
    grant(&app, &admin, &bo.user_id, 50).await;
    let before = transfer_count(&app).await;

    for amount in [0, -5] {
        let body = grant(&app, &admin, &bo.user_id, amount).await;
        assert_eq!(
            error_of(&body),
            ("BAD_USER_INPUT".into(), "invalid_amount".into()),
            "{body}"
        );
    }
    let body = grant(&app, &admin, &Uuid::now_v7().to_string(), 10).await;
    assert_eq!(error_of(&body).0, "NOT_FOUND", "{body}");
    let body = grant(&app, &bo, &bo.user_id, 10).await;
    assert_eq!(error_of(&body), ("FORBIDDEN".into(), "admin_only".into()));
    let body = app
        .graphql_as(
            &admin.access,
            "mutation($u: ID!) { grantCoins(userId: $u, amount: 5, reason: \"  \") { id } }",
            json!({ "u": bo.user_id }),
        )
        .await;
    assert_eq!(error_of(&body).0, "BAD_USER_INPUT", "{body}");
    let body = app
        .graphql_as(&bo.access, "{ admin { ledger { imbalance } } }", json!({}))
        .await;
    assert_eq!(error_of(&body), ("FORBIDDEN".into(), "admin_only".into()));
    let body = app.graphql(WALLET, json!({})).await;
    assert_eq!(body["data"]["me"], Value::Null, "anonymous: no wallet");

    let err = service::transfer(&app.state, spend(uid(&bo), 51))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            WalletError::InsufficientFunds {
                available: 50,
                needed: 51
            }
        ),
        "{err:?}"
    );
    let err = service::transfer(
        &app.state,
        TransferRequest::new(
            Account::User(uid(&bo)),
            Account::User(Uuid::now_v7()),
            5,
            TransferKind::Grant,
        ),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, WalletError::UnknownAccount), "{err:?}");
    let err = service::transfer(
        &app.state,
        TransferRequest::new(
            Account::User(uid(&bo)),
            Account::User(uid(&bo)),
            5,
            TransferKind::Grant,
        ),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, WalletError::InvalidInput(_)), "{err:?}");

    assert_eq!(wallet(&app, &bo).await, (50, 50));
    assert_eq!(transfer_count(&app).await, before);
    assert_sound(&app).await;
}

#[tokio::test]
async fn a_split_payment_takes_only_its_own_shape_and_rolls_back_whole() {
    let (app, admin) = admin_app().await;
    let bo = app.register("split@example.com", "split").await;
    grant(&app, &admin, &bo.user_id, 50).await;
    let before = transfer_count(&app).await;

    let txn = app.state.db.begin_write().await.unwrap();
    let refused = [
        // Not from a user to a system account.
        TransferRequest::new(
            Account::System(SystemAccount::Sales),
            Account::User(uid(&bo)),
            5,
            TransferKind::Grant,
        ),
        TransferRequest::new(
            Account::User(uid(&bo)),
            Account::User(uid(&admin)),
            5,
            TransferKind::Grant,
        ),
        // A reservation, and a key nobody claimed.
        spend(uid(&bo), 5).pending(Duration::from_secs(60)),
        spend(uid(&bo), 5).idempotency_key(Some("unclaimed".into())),
    ];
    for req in refused {
        let err = service::debit_first(&txn, req).await.err().unwrap();
        assert!(matches!(err, WalletError::InvalidInput(_)), "{err:?}");
    }
    let err = service::debit_first(&txn, spend(uid(&bo), 51))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            WalletError::InsufficientFunds {
                available: 50,
                needed: 51
            }
        ),
        "{err:?}"
    );
    // Taken, then rolled back before the system account was paid: nothing moved.
    service::debit_first(&txn, spend(uid(&bo), 20))
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(wallet(&app, &bo).await, (50, 50));
    assert_eq!(transfer_count(&app).await, before);

    let txn = app.state.db.begin_write().await.unwrap();
    let debited = service::debit_first(&txn, spend(uid(&bo), 20))
        .await
        .unwrap();
    let id = debited.transfer_id();
    let done = debited.finish(&txn).await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(
        done.transfer.id, id,
        "the id announced before the row was written"
    );
    assert_eq!(done.transfer.amount, 20);
    assert_eq!(wallet(&app, &bo).await, (30, 30));
    assert_eq!(transfer_count(&app).await, before + 1);
    assert_sound(&app).await;
}

#[tokio::test]
async fn an_idempotency_key_moves_coins_once_and_refuses_a_different_request() {
    let (app, admin) = admin_app().await;
    let cy = app.register("cy@example.com", "cy.c").await;
    grant(&app, &admin, &cy.user_id, 100).await;
    let key = Some("order-42".to_owned());
    let first = service::transfer(&app.state, spend(uid(&cy), 40).idempotency_key(key.clone()))
        .await
        .unwrap();
    let again = service::transfer(&app.state, spend(uid(&cy), 40).idempotency_key(key.clone()))
        .await
        .unwrap();
    assert!(!first.replayed && again.replayed);
    assert_eq!(first.transfer.id, again.transfer.id);
    let other = service::transfer(&app.state, spend(uid(&cy), 41).idempotency_key(key))
        .await
        .unwrap_err();
    assert!(
        matches!(other, WalletError::IdempotencyConflict),
        "{other:?}"
    );
    assert_eq!(wallet(&app, &cy).await, (60, 60));

    // The same through GraphQL: a retried grant with its key grants once.
    let grant_with_key = "mutation($u: ID!, $k: String) { grantCoins(userId: $u, amount: 7, reason: \"bonus\", idempotencyKey: $k) { id } }";
    let a = app
        .graphql_as(
            &admin.access,
            grant_with_key,
            json!({ "u": cy.user_id, "k": "g-1" }),
        )
        .await;
    let b = app
        .graphql_as(
            &admin.access,
            grant_with_key,
            json!({ "u": cy.user_id, "k": "g-1" }),
        )
        .await;
    assert_eq!(a["data"]["grantCoins"]["id"], b["data"]["grantCoins"]["id"]);
    assert_eq!(wallet(&app, &cy).await, (67, 67));
    assert_sound(&app).await;
}

#[tokio::test]
async fn fifty_concurrent_spends_never_overdraw() {
    let (app, admin) = admin_app().await;
    let dee = app.register("dee@example.com", "dee").await;
    grant(&app, &admin, &dee.user_id, 1000).await;
    let user = uid(&dee);
    let amounts: Vec<i64> = {
        let mut rng = rand::thread_rng();
        (0..50).map(|_| rng.gen_range(1..=60)).collect()
    };
    let results = join_all(amounts.iter().map(|amount| {
        let state = app.state.clone();
        let amount = *amount;
        tokio::spawn(async move { service::transfer(&state, spend(user, amount)).await })
    }))
    .await;
    let mut spent = 0;
    let mut refused = 0;
    for (result, amount) in results.into_iter().zip(&amounts) {
        match result.unwrap() {
            Ok(_) => spent += amount,
            Err(WalletError::InsufficientFunds { .. }) => refused += 1,
            Err(e) => panic!("unexpected failure: {e:?}"),
        }
    }
    let total: i64 = amounts.iter().sum();
    if total <= 1000 {
        assert_eq!(refused, 0, "all fit, so all succeed");
    }
    assert!(spent <= 1000);
    assert_eq!(wallet(&app, &dee).await, (1000 - spent, 1000 - spent));
    assert_sound(&app).await;

    // Drain to exactly zero with more concurrent spends than coins.
    let left = 1000 - spent;
    let results = join_all((0..(left + 10)).map(|_| {
        let state = app.state.clone();
        tokio::spawn(async move { service::transfer(&state, spend(user, 1)).await })
    }))
    .await;
    let ok = results
        .into_iter()
        .filter(|r| matches!(r, Ok(Ok(_))))
        .count() as i64;
    assert_eq!(ok, left, "exactly the remaining coins were spent");
    assert_eq!(wallet(&app, &dee).await, (0, 0));
    assert_sound(&app).await;
}

#[tokio::test]
async fn twenty_racing_retries_of_one_key_move_once() {
    let (app, admin) = admin_app().await;
    let eve = app.register("eve@example.com", "eve").await;
    grant(&app, &admin, &eve.user_id, 50).await;
    let user = uid(&eve);
    let results = join_all((0..20).map(|_| {
        let state = app.state.clone();
        tokio::spawn(async move {
            service::transfer(
                &state,
                spend(user, 30).idempotency_key(Some("checkout-7".into())),
            )
            .await
        })
    }))
    .await;
    let done: Vec<_> = results.into_iter().map(|r| r.unwrap().unwrap()).collect();
    let first = done[0].transfer.id;
    assert!(done.iter().all(|d| d.transfer.id == first), "one transfer");
    assert_eq!(done.iter().filter(|d| !d.replayed).count(), 1);
    assert_eq!(wallet(&app, &eve).await, (20, 20));
    assert_sound(&app).await;
}

#[tokio::test]
async fn grants_and_spends_interleaved_keep_the_books() {
    let (app, admin) = admin_app().await;
    let fay = app.register("fay@example.com", "fay").await;
    let user = uid(&fay);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let state = app.state.clone();
        tasks.push(tokio::spawn(async move {
            if i % 3 == 0 {
                service::transfer(
                    &state,
                    TransferRequest::new(
                        Account::System(SystemAccount::Grants),
                        Account::User(user),
                        10,
                        TransferKind::Grant,
                    ),
                )
                .await
                .map(|_| 10)
            } else {
                service::transfer(&state, spend(user, 4)).await.map(|_| -4)
            }
        }));
    }
    let mut expected = 0;
    for task in join_all(tasks).await {
        match task.unwrap() {
            Ok(delta) => expected += delta,
            Err(WalletError::InsufficientFunds { .. }) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(wallet(&app, &fay).await.0, expected);
    assert!(expected >= 0);
    drop(admin);
    assert_sound(&app).await;
}

#[tokio::test]
async fn reservations_post_in_part_void_and_expire() {
    let (app, admin) = admin_app().await;
    let gus = app.register("gus@example.com", "gus").await;
    let user = uid(&gus);
    grant(&app, &admin, &gus.user_id, 100).await;

    let hold = service::transfer(
        &app.state,
        TransferRequest::new(
            Account::User(user),
            Account::System(SystemAccount::Sales),
            50,
            TransferKind::VpsSession,
        )
        .reference("vps-1")
        .pending(Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    assert_eq!(wallet(&app, &gus).await, (100, 50), "reserved, not spent");
    let err = service::transfer(&app.state, spend(user, 60))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        WalletError::InsufficientFunds { available: 50, .. }
    ));

    let over = service::post(&app.state, hold.transfer.id, Some(51))
        .await
        .unwrap_err();
    assert!(matches!(over, WalletError::OverPost { reserved: 50, .. }));
    assert_eq!(
        wallet(&app, &gus).await,
        (100, 50),
        "a refused post changes nothing"
    );

    // Post 30 of the 50: 30 move, 20 come back.
    let posted = service::post(&app.state, hold.transfer.id, Some(30))
        .await
        .unwrap();
    assert_eq!(posted.transfer.amount, 30);
    assert_eq!(wallet(&app, &gus).await, (70, 70));
    for again in [
        service::post(&app.state, hold.transfer.id, None).await,
        service::void(&app.state, hold.transfer.id).await,
    ] {
        assert!(
            matches!(again, Err(WalletError::AlreadyResolved(ref s)) if s == "posted"),
            "{again:?}"
        );
    }

    // Void: everything comes back.
    let hold = service::transfer(
        &app.state,
        spend(user, 20).pending(Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    assert_eq!(wallet(&app, &gus).await, (70, 50));
    service::void(&app.state, hold.transfer.id).await.unwrap();
    assert_eq!(wallet(&app, &gus).await, (70, 70));

    // Timeout: the sweep releases it, and it can no longer be posted.
    let hold = service::transfer(
        &app.state,
        spend(user, 25).pending(Duration::from_millis(10)),
    )
    .await
    .unwrap();
    assert_eq!(wallet(&app, &gus).await, (70, 45));
    tokio::time::sleep(Duration::from_millis(30)).await;
    let late = service::post(&app.state, hold.transfer.id, None)
        .await
        .unwrap_err();
    assert!(matches!(late, WalletError::PendingExpired), "{late:?}");
    assert_eq!(service::expire_pending(&app.state).await.unwrap(), 1);
    assert_eq!(service::expire_pending(&app.state).await.unwrap(), 0);
    assert_eq!(wallet(&app, &gus).await, (70, 70));
    let body = app
        .graphql_as(
            &gus.access,
            "{ me { wallet { transfers(first: 1, kind: ACCESS_TOKEN) { edges { node { status amount expiresAt } } } } } }",
            json!({}),
        )
        .await;
    let node = &body["data"]["me"]["wallet"]["transfers"]["edges"][0]["node"];
    assert_eq!(node["status"], "EXPIRED", "{body}");
    assert_eq!(node["amount"], 25);
    assert_sound(&app).await;
}

#[tokio::test]
async fn a_reservation_is_resolved_once_under_concurrency() {
    let (app, admin) = admin_app().await;
    let hal = app.register("hal@example.com", "hal").await;
    let user = uid(&hal);
    grant(&app, &admin, &hal.user_id, 100).await;
    let hold = service::transfer(&app.state, spend(user, 80).pending(Duration::from_secs(60)))
        .await
        .unwrap();
    let id = hold.transfer.id;
    let results = join_all((0..10).map(|i| {
        let state = app.state.clone();
        tokio::spawn(async move {
            if i % 2 == 0 {
                service::post(&state, id, Some(50)).await.map(|_| "posted")
            } else {
                service::void(&state, id).await.map(|_| "voided")
            }
        })
    }))
    .await;
    let winners: Vec<&str> = results
        .into_iter()
        .filter_map(|r| r.unwrap().ok())
        .collect();
    assert_eq!(winners.len(), 1, "{winners:?}");
    let expected = if winners[0] == "posted" { 50 } else { 100 };
    assert_eq!(wallet(&app, &hal).await, (expected, expected));
    assert_sound(&app).await;
}

#[tokio::test]
async fn refunds_reverse_once() {
    let (app, admin) = admin_app().await;
    let ivy = app.register("ivy@example.com", "ivy").await;
    let user = uid(&ivy);
    grant(&app, &admin, &ivy.user_id, 40).await;
    let bought = service::transfer(&app.state, spend(user, 15))
        .await
        .unwrap();
    let refunded = service::refund(&app.state, bought.transfer.id, None)
        .await
        .unwrap();
    assert_eq!(refunded.transfer.refund_of, Some(bought.transfer.id));
    assert_eq!(wallet(&app, &ivy).await, (40, 40));
    let twice = service::refund(&app.state, bought.transfer.id, None)
        .await
        .unwrap_err();
    assert!(matches!(twice, WalletError::AlreadyRefunded), "{twice:?}");
    let of_refund = service::refund(&app.state, refunded.transfer.id, None)
        .await
        .unwrap_err();
    assert!(
        matches!(of_refund, WalletError::NotRefundable(_)),
        "{of_refund:?}"
    );

    // Racing refunds of one transfer: one wins.
    let bought = service::transfer(&app.state, spend(user, 10))
        .await
        .unwrap();
    let results = join_all((0..8).map(|_| {
        let state = app.state.clone();
        let id = bought.transfer.id;
        tokio::spawn(async move { service::refund(&state, id, None).await })
    }))
    .await;
    let ok = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    assert_eq!(ok, 1);
    assert_eq!(wallet(&app, &ivy).await, (40, 40));

    // Taking back a grant the user already spent is refused.
    let spent_all = service::transfer(&app.state, spend(user, 40))
        .await
        .unwrap();
    let grant_row = transfer::Entity::find()
        .all(app.state.db.conn())
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.kind == "grant")
        .unwrap();
    let err = service::refund(&app.state, grant_row.id, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, WalletError::InsufficientFunds { .. }),
        "{err:?}"
    );
    assert!(!spent_all.replayed);
    assert_sound(&app).await;
}

#[tokio::test]
async fn transfer_pages_are_stable_while_new_transfers_arrive() {
    let (app, admin) = admin_app().await;
    let jo = app.register("jo@example.com", "jo.j").await;
    let user = uid(&jo);
    grant(&app, &admin, &jo.user_id, 1000).await;
    for _ in 0..24 {
        service::transfer(&app.state, spend(user, 1)).await.unwrap();
    }
    let page = "query($a: String) { me { wallet { transfers(first: 10, after: $a) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id } } } } } }";
    let fetch = |after: Option<String>| {
        let app = &app;
        let access = jo.access.clone();
        async move {
            let body = app.graphql_as(&access, page, json!({ "a": after })).await;
            assert!(body["errors"].is_null(), "{body}");
            body["data"]["me"]["wallet"]["transfers"].clone()
        }
    };
    let first = fetch(None).await;
    assert_eq!(first["totalCount"], 25);
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    let mut seen: Vec<String> = first["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
        .collect();
    // New transfers arrive between pages; they do not shift what comes next.
    for _ in 0..5 {
        service::transfer(&app.state, spend(user, 1)).await.unwrap();
    }
    let mut cursor = first["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    loop {
        let next = fetch(cursor.clone()).await;
        assert_eq!(next["totalCount"], 30);
        for edge in next["edges"].as_array().unwrap() {
            seen.push(edge["node"]["id"].as_str().unwrap().to_owned());
        }
        if next["pageInfo"]["hasNextPage"] == false {
            break;
        }
        cursor = next["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(seen.len(), 25, "the original 25, each once");
    assert_eq!(unique.len(), 25);

    let kinds = app
        .graphql_as(
            &jo.access,
            "{ me { wallet { transfers(kind: GRANT) { totalCount } } } }",
            json!({}),
        )
        .await;
    assert_eq!(kinds["data"]["me"]["wallet"]["transfers"]["totalCount"], 1);
    for (vars, reason) in [
        (json!({ "a": "garbage!" }), "invalid_cursor"),
        (json!({ "a": null, "f": 0 }), "invalid_page_size"),
        (json!({ "a": null, "f": 500 }), "invalid_page_size"),
    ] {
        let body = app
            .graphql_as(
                &jo.access,
                "query($a: String, $f: Int) { me { wallet { transfers(first: $f, after: $a) { totalCount } } } }",
                vars,
            )
            .await;
        assert_eq!(error_of(&body), ("BAD_USER_INPUT".into(), reason.into()));
    }
    assert_sound(&app).await;
}

#[tokio::test]
async fn wallet_changed_streams_each_change_to_the_owner() {
    let (app, admin) = admin_app().await;
    let kit = app.register("kit@example.com", "kit").await;
    let mut ws = app.ws_signed_in(&kit.access).await;
    ws_send(
        &mut ws,
        json!({"id": "w", "type": "subscribe", "payload": {"query": "subscription { walletChanged { balance available } }"}}),
    )
    .await;
    // The subscription is live once the server has subscribed; a grant then reaches it.
    let mut balance = Value::Null;
    for attempt in 0..50 {
        grant(&app, &admin, &kit.user_id, 5).await;
        let message =
            tokio::time::timeout(Duration::from_millis(200 + attempt * 10), ws_next(&mut ws)).await;
        if let Ok(message) = message {
            assert_eq!(message["type"], "next", "{message}");
            balance = message["payload"]["data"]["walletChanged"]["balance"].clone();
            break;
        }
    }
    let balance = balance.as_i64().expect("a wallet update arrived");
    assert_eq!(balance % 5, 0);
    service::transfer(&app.state, spend(uid(&kit), 5))
        .await
        .unwrap();
    let mut last = Value::Null;
    // Drain updates until the spend shows.
    for _ in 0..60 {
        let message = ws_next(&mut ws).await;
        last = message["payload"]["data"]["walletChanged"].clone();
        if last["balance"].as_i64() == wallet(&app, &kit).await.0.into() {
            break;
        }
    }
    assert_eq!(last["balance"].as_i64(), Some(wallet(&app, &kit).await.0));

    // Anonymous subscribers are refused.
    let mut anon = app.ws_connect("graphql-transport-ws", None).await.unwrap();
    ws_send(&mut anon, json!({"type": "connection_init"})).await;
    assert_eq!(ws_next(&mut anon).await["type"], "connection_ack");
    ws_send(
        &mut anon,
        json!({"id": "x", "type": "subscribe", "payload": {"query": "subscription { walletChanged { balance } }"}}),
    )
    .await;
    // A resolver's refusal is a `next` carrying the error (graphql-transport-ws keeps
    // `error` for documents that do not validate), then `complete`.
    let refused = ws_next(&mut anon).await;
    assert_eq!(refused["type"], "next", "{refused}");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
    assert_eq!(ws_next(&mut anon).await["type"], "complete");
    assert_sound(&app).await;
}

#[tokio::test]
async fn wallet_changes_reach_subscribers_on_other_instances() {
    let Some(_) = crate::helpers::redis_url() else {
        eprintln!("REDIS_URL unset: cross-instance delivery runs in the Redis pass of CI");
        return;
    };
    let (app, admin) = admin_app().await;
    let peer = app.spawn_peer().await;
    let lou = app.register("lou@example.com", "lou").await;
    let mut ws = peer.ws_signed_in(&lou.access).await;
    ws_send(
        &mut ws,
        json!({"id": "w", "type": "subscribe", "payload": {"query": "subscription { walletChanged { balance } }"}}),
    )
    .await;
    let mut got = None;
    for _ in 0..50 {
        grant(&app, &admin, &lou.user_id, 1).await;
        if let Ok(message) =
            tokio::time::timeout(Duration::from_millis(200), ws_next(&mut ws)).await
        {
            got = message["payload"]["data"]["walletChanged"]["balance"].as_i64();
            break;
        }
    }
    assert!(got.is_some_and(|b| b >= 1), "the peer delivered the change");
}

#[tokio::test]
async fn system_accounts_are_opened_once_at_start_in_shards() {
    use sea_orm::{ColumnTrait, QueryFilter};
    let app = TestApp::spawn().await;
    let count = || async {
        account::Entity::find()
            .filter(account::Column::Kind.eq("system"))
            .count(app.state.db.conn())
            .await
            .unwrap()
    };
    let expected = (SystemAccount::ALL.len() * usize::from(service::SYSTEM_SHARDS)) as u64;
    assert_eq!(count().await, expected);
    // A second instance on the same database starts cleanly and adds none.
    let _peer = app.spawn_peer().await;
    assert_eq!(count().await, expected);
}

#[tokio::test]
async fn a_payout_pays_many_users_in_one_go_with_each_transfers_balances() {
    let app = TestApp::spawn().await;
    let mut users = Vec::new();
    for name in ["ann", "bob", "cid"] {
        users.push(uid(&app
            .register(&format!("{name}@example.com"), name)
            .await));
    }
    let pay = |user: Uuid, amount: i64, key: &str| {
        TransferRequest::new(
            Account::System(SystemAccount::Grants),
            Account::User(user),
            amount,
            TransferKind::Grant,
        )
        .idempotency_key(Some(key.to_owned()))
        .key_claimed()
    };
    let conn = app.state.db.conn();

    // Refusals: each request must be a posted payment from one system account to a user
    // not paid twice in the payout, under a claimed key; nothing moves.
    let stranger = Uuid::now_v7();
    let refused: [(&str, Vec<TransferRequest>); 5] = [
        (
            "two payers",
            vec![
                pay(users[0], 5, "k1"),
                TransferRequest::new(
                    Account::System(SystemAccount::Ads),
                    Account::User(users[1]),
                    5,
                    TransferKind::Grant,
                ),
            ],
        ),
        (
            "one user twice",
            vec![pay(users[0], 5, "k1"), pay(users[0], 5, "k2")],
        ),
        (
            "a reservation",
            vec![pay(users[0], 5, "k1").pending(Duration::from_secs(60))],
        ),
        (
            "an unclaimed key",
            vec![
                TransferRequest::new(
                    Account::System(SystemAccount::Grants),
                    Account::User(users[0]),
                    5,
                    TransferKind::Grant,
                )
                .idempotency_key(Some("k1".into())),
            ],
        ),
        (
            "a user paying",
            vec![TransferRequest::new(
                Account::User(users[0]),
                Account::User(users[1]),
                5,
                TransferKind::Grant,
            )],
        ),
    ];
    for (what, reqs) in refused {
        let txn = app.state.db.begin_write().await.unwrap();
        let err = service::pay_out_in(&txn, &reqs).await.unwrap_err();
        assert!(
            matches!(err, WalletError::InvalidInput(_)),
            "{what}: {err:?}"
        );
        txn.rollback().await.unwrap();
    }
    // Someone without an account row: no payout, the caller pays them alone.
    let txn = app.state.db.begin_write().await.unwrap();
    let none = service::pay_out_in(&txn, &[pay(users[0], 5, "k1"), pay(stranger, 5, "k2")])
        .await
        .unwrap();
    assert!(none.is_none());
    txn.rollback().await.unwrap();
    assert_eq!(transfer_count(&app).await, 0);

    // Different amounts, one statement per table, each row with the balances it left.
    let txn = app.state.db.begin_write().await.unwrap();
    let paid = service::pay_out_in(
        &txn,
        &[
            pay(users[0], 3, "k1"),
            pay(users[1], 7, "k2"),
            pay(users[2], 11, "k3"),
        ],
    )
    .await
    .unwrap()
    .expect("every user has an account");
    txn.commit().await.unwrap();
    let rows: Vec<_> = paid.iter().map(|t| &t.transfer).collect();
    assert_eq!(
        rows.iter()
            .map(|t| (t.amount, t.credit_balance_after))
            .collect::<Vec<_>>(),
        [(3, 3), (7, 7), (11, 11)]
    );
    // The payer's balance after each: as if the three had run one after another.
    let payer = rows[0].debit_account_id;
    assert!(rows.iter().all(|t| t.debit_account_id == payer));
    let shard = account::Entity::find_by_id(payer)
        .one(conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rows.iter()
            .map(|t| t.debit_balance_after)
            .collect::<Vec<_>>(),
        [shard.balance + 18, shard.balance + 11, shard.balance]
    );
    assert_eq!(
        paid.iter().map(|t| t.users.clone()).collect::<Vec<_>>(),
        users.iter().map(|u| vec![*u]).collect::<Vec<_>>()
    );
    for (user, want) in users.iter().zip([3, 7, 11]) {
        assert_eq!(service::balances(conn, *user).await.unwrap().0, want);
    }
    let stored = transfer::Entity::find_by_id(rows[1].id)
        .one(conn)
        .await
        .unwrap()
        .unwrap();
    let fields = |t: &transfer::Model| {
        (
            t.amount,
            t.debit_balance_after,
            t.credit_balance_after,
            t.idempotency_key.clone(),
            t.request_hash.clone(),
            t.kind.clone(),
            t.status.clone(),
        )
    };
    assert_eq!(fields(&stored), fields(rows[1]));
    // The keys' unique index refuses paying under one of them again.
    let txn = app.state.db.begin_write().await.unwrap();
    let again = service::pay_out_in(&txn, &[pay(users[0], 3, "k1")]).await;
    assert!(
        matches!(again, Err(WalletError::Db(_))),
        "a claimed key was paid twice: {again:?}"
    );
    txn.rollback().await.unwrap();
    assert_eq!(transfer_count(&app).await, 3);
    assert_sound(&app).await;
}
