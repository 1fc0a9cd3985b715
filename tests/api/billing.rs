//! Billing against a local Stripe (`tessera_fakes::stripe`) over real sockets: plans and
//! their Prices, Checkout and the return redirect, webhooks verified, stored once and
//! applied by syncing from the API, allowances in the ledger once per period, plan
//! changes, cancel and resume, failed payments and the grace, mails, and every refusal.

use std::time::Duration;

use futures_util::future::join_all;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use tessera::{
    billing::entity::{payment, stripe_event},
    config::Secret,
    wallet::service::check_invariants,
};
use tessera_fakes::stripe::StripeFake;

use crate::helpers::{Session, TestApp, TestAppBuilder, error_of, ws_next, ws_send};

const ADMIN: &str = "billing-admin@example.com";
const SECRET: &str = "whsec_test_primary";

struct Shop {
    app: TestApp,
    fake: StripeFake,
    admin: Session,
    /// Tier 1: 10.00 a month, 500 coins.
    basic: String,
    /// Tier 2: 30.00 a month, 2000 coins.
    pro: String,
}

fn configured(fake: &StripeFake) -> TestAppBuilder {
    let base = fake.base_url();
    TestApp::builder().configure(move |c| {
        c.identity.admin_emails = vec![ADMIN.into()];
        c.billing.stripe_secret_key = Some("sk_test_tessera".parse::<Secret>().unwrap());
        c.billing.stripe_webhook_secret =
            Some(format!("{SECRET},whsec_old").parse::<Secret>().unwrap());
        c.billing.stripe_api_base = base;
    })
}

async fn shop() -> Shop {
    let fake = StripeFake::start("127.0.0.1:0").await.expect("stripe fake");
    let app = configured(&fake).spawn().await;
    fake.set_webhook(&app.url("/webhooks/stripe"), &[SECRET]);
    let admin = app.register(ADMIN, "billing-ops").await;
    let basic = create_plan(&app, &admin, "Basic", 1, 1000, 500).await;
    let pro = create_plan(&app, &admin, "Pro", 2, 3000, 2000).await;
    Shop {
        app,
        fake,
        admin,
        basic: str_of(&basic["id"]),
        pro: str_of(&pro["id"]),
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

async fn create_plan(
    app: &TestApp,
    admin: &Session,
    name: &str,
    tier: i32,
    cents: i64,
    coins: i64,
) -> Value {
    let body = app
        .graphql_as(
            &admin.access,
            "mutation($i: PlanInput!) { createPlan(input: $i) { id name tier priceCents currency interval coinAllowance active stripePriceId } }",
            json!({ "i": { "name": name, "tier": tier, "priceCents": cents, "coinAllowance": coins, "description": format!("{name} plan") } }),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["createPlan"].clone()
}

const STATE: &str = "{ me { wallet { balance } subscription { id status cancelAtPeriodEnd active currentPeriodEnd plan { name } } payments { totalCount edges { node { invoiceId amountCents coinAllowance hostedInvoiceUrl } } } } }";

async fn state_of(app: &TestApp, s: &Session) -> Value {
    let body = app.graphql_as(&s.access, STATE, json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["me"].clone()
}

/// Polls the user's state until `done` holds (15 s at most).
async fn wait_for(app: &TestApp, s: &Session, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..300 {
        last = state_of(app, s).await;
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}: {last}");
}

fn balance(me: &Value) -> i64 {
    me["wallet"]["balance"].as_i64().unwrap_or(-1)
}

fn payments(me: &Value) -> i64 {
    me["payments"]["totalCount"].as_i64().unwrap_or(-1)
}

async fn start_checkout(app: &TestApp, s: &Session, plan: &str) -> Value {
    app.graphql_as(
        &s.access,
        "mutation($p: ID!) { startCheckout(planId: $p) { id url expiresAt } }",
        json!({ "p": plan }),
    )
    .await
}

/// Subscribes `s` to `plan` through Checkout; returns the Stripe subscription id.
async fn subscribe(shop: &Shop, s: &Session, plan: &str) -> String {
    let body = start_checkout(&shop.app, s, plan).await;
    assert!(body["errors"].is_null(), "{body}");
    let session = str_of(&body["data"]["startCheckout"]["id"]);
    shop.fake
        .complete_checkout(&session)
        .await
        .expect("checkout completes")
}

/// Waits until every stored event has been applied (15 s at most).
async fn drained(app: &TestApp) {
    for _ in 0..300 {
        let waiting = stripe_event::Entity::find()
            .filter(stripe_event::Column::ProcessedAt.is_null())
            .count(app.state.db.conn())
            .await
            .unwrap();
        if waiting == 0 {
            let failed: Vec<_> = stripe_event::Entity::find()
                .filter(stripe_event::Column::Error.is_not_null())
                .all(app.state.db.conn())
                .await
                .unwrap()
                .into_iter()
                .map(|e| (e.kind, e.error))
                .collect();
            assert!(failed.is_empty(), "events that failed: {failed:?}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("events still waiting");
}

fn mails_to(app: &TestApp, to: &str) -> Vec<String> {
    app.state
        .mailer
        .outbox()
        .into_iter()
        .filter(|m| m.to == to)
        .map(|m| m.subject)
        .collect()
}

async fn mutate(app: &TestApp, s: &Session, query: &str, vars: Value) -> Value {
    app.graphql_as(&s.access, query, vars).await
}

#[tokio::test]
async fn subscribe_then_renew_twice_credits_each_period_once() {
    let shop = shop().await;
    let user = shop.app.register("payer@example.com", "payer").await;
    let plans = shop
        .app
        .graphql(
            "{ plans { name tier priceCents coinAllowance interval stripePriceId } }",
            json!({}),
        )
        .await;
    assert_eq!(plans["data"]["plans"].as_array().unwrap().len(), 2);
    assert!(str_of(&plans["data"]["plans"][0]["stripePriceId"]).starts_with("price_"));

    let body = start_checkout(&shop.app, &user, &shop.basic).await;
    let checkout = &body["data"]["startCheckout"];
    assert!(
        str_of(&checkout["url"]).starts_with(&format!("{}checkout/cs_", shop.fake.base_url())),
        "{body}"
    );
    let session = str_of(&checkout["id"]);
    // Every create carried an idempotency key made from our ids.
    let creates: Vec<_> = shop
        .fake
        .requests()
        .into_iter()
        .filter(|(m, p, _)| {
            m == "POST"
                && (p.ends_with("/customers")
                    || p.ends_with("/checkout/sessions")
                    || p.ends_with("/prices")
                    || p.ends_with("/products"))
        })
        .collect();
    assert!(
        creates
            .iter()
            .all(|(_, _, k)| k.as_deref().is_some_and(|k| k.starts_with("tessera-"))),
        "{creates:?}"
    );

    // The return redirect syncs before any webhook: deliveries are held back here.
    shop.fake.set_auto_deliver(false);
    shop.fake.complete_checkout(&session).await.unwrap();
    let back = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(
            shop.app
                .url(&format!("/billing/return?session_id={session}")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(back.status().as_u16(), 303);
    assert_eq!(back.headers()["location"], "/plans?checkout=success");
    let me = state_of(&shop.app, &user).await;
    assert_eq!(me["subscription"]["status"], "ACTIVE");
    assert_eq!(me["subscription"]["active"], true);
    assert_eq!(me["subscription"]["plan"]["name"], "Basic");
    assert_eq!(balance(&me), 0, "coins come with the paid invoice");

    // Now the webhooks.
    for event in shop.fake.events() {
        assert_eq!(shop.fake.deliver(&str_of(&event["id"])).await, 200);
    }
    shop.fake.set_auto_deliver(true);
    // (Sibling fields resolve concurrently: wait for both, not one then the other.)
    let me = wait_for(&shop.app, &user, "the first allowance", |m| {
        balance(m) == 500 && payments(m) == 1
    })
    .await;

    let sub = str_of(&me["subscription"]["id"]);
    shop.fake.renew(&sub).await.unwrap();
    wait_for(&shop.app, &user, "the second allowance", |m| {
        balance(m) == 1000
    })
    .await;
    shop.fake.renew(&sub).await.unwrap();
    let me = wait_for(&shop.app, &user, "the third allowance", |m| {
        balance(m) == 1500 && payments(m) == 3
    })
    .await;
    assert!(
        str_of(&me["payments"]["edges"][0]["node"]["hostedInvoiceUrl"]).contains("/invoices/in_")
    );
    drained(&shop.app).await;
    let subjects = mails_to(&shop.app, "payer@example.com");
    assert_eq!(
        subjects
            .iter()
            .filter(|s| s.contains("has started"))
            .count(),
        1,
        "{subjects:?}"
    );
    assert_eq!(
        subjects.iter().filter(|s| s.contains("renewed")).count(),
        2,
        "{subjects:?}"
    );
    assert!(
        check_invariants(shop.app.state.db.conn())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn reordered_and_repeated_delivery_ends_as_one_in_order_delivery() {
    let shop = shop().await;
    let user = shop.app.register("shuffle@example.com", "shuffle").await;
    shop.fake.set_auto_deliver(false);
    let sub = subscribe(&shop, &user, &shop.basic).await;
    shop.fake.renew(&sub).await.unwrap();
    shop.fake.renew(&sub).await.unwrap();
    let mut events = shop.fake.events();
    events.reverse();
    for event in &events {
        for _ in 0..2 {
            assert_eq!(shop.fake.deliver(&str_of(&event["id"])).await, 200);
        }
    }
    drained(&shop.app).await;
    let me = state_of(&shop.app, &user).await;
    assert_eq!((balance(&me), payments(&me)), (1500, 3), "{me}");
    assert_eq!(me["subscription"]["status"], "ACTIVE");
    let remote = shop.fake.subscription(&sub).unwrap();
    let end = remote["items"]["data"][0]["current_period_end"]
        .as_i64()
        .unwrap();
    let local = chrono::DateTime::parse_from_rfc3339(
        me["subscription"]["currentPeriodEnd"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(
        local.timestamp(),
        end,
        "the newest period, though its event came first"
    );
    // Duplicates were answered 200 and stored once.
    let stored = stripe_event::Entity::find()
        .count(shop.app.state.db.conn())
        .await
        .unwrap();
    assert_eq!(stored as usize, events.len());
}

#[tokio::test]
async fn one_invoice_paid_delivered_twenty_times_at_once_credits_once() {
    let shop = shop().await;
    let user = shop.app.register("burst@example.com", "burst").await;
    shop.fake.set_auto_deliver(false);
    subscribe(&shop, &user, &shop.pro).await;
    for event in shop.fake.events() {
        if event["type"] != "invoice.paid" {
            shop.fake.deliver(&str_of(&event["id"])).await;
        }
    }
    let paid = shop.fake.events_of("invoice.paid").remove(0);
    let id = str_of(&paid["id"]);
    let statuses = join_all((0..20).map(|_| shop.fake.deliver(&id))).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // The same invoice under twenty other event ids (as if Stripe re-sent it), at once.
    let now = chrono::Utc::now().timestamp();
    let copies: Vec<(String, String)> = (0..20)
        .map(|i| {
            let mut copy = paid.clone();
            copy["id"] = json!(format!("evt_copy_{i}"));
            let body = copy.to_string();
            let header = shop.fake.sign(&body, now);
            (body, header)
        })
        .collect();
    // Half of them to a second instance on the same database: two processors at once.
    let peer = shop.app.spawn_peer_with(configured(&shop.fake)).await;
    let peer_url = peer.url("/webhooks/stripe");
    let statuses = join_all(copies.iter().enumerate().map(|(i, (b, h))| {
        let (client, url) = (
            shop.app.client.clone(),
            if i % 2 == 0 {
                shop.app.url("/webhooks/stripe")
            } else {
                peer_url.clone()
            },
        );
        async move {
            let r = client
                .post(url)
                .header("stripe-signature", h)
                .body(b.clone())
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    }))
    .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    drained(&shop.app).await;
    let me = state_of(&shop.app, &user).await;
    assert_eq!((balance(&me), payments(&me)), (2000, 1), "{me}");

    // Below the event queue: twenty payment writers for one renewal invoice at once.
    let sub = str_of(&me["subscription"]["id"]);
    let invoice_id = shop.fake.renew(&sub).await.unwrap();
    let client = shop.app.state.billing.client.as_ref().unwrap();
    let invoice = tessera::billing::api::retrieve_invoice(client, &invoice_id)
        .await
        .unwrap();
    let owner: uuid::Uuid = user.user_id.parse().unwrap();
    let results = join_all(
        (0..20)
            .map(|_| tessera::billing::service::record_payment(&shop.app.state, owner, &invoice)),
    )
    .await;
    assert!(
        results.iter().all(Result::is_ok),
        "{:?}",
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .collect::<Vec<_>>()
    );
    let me = state_of(&shop.app, &user).await;
    assert_eq!((balance(&me), payments(&me)), (4000, 2), "{me}");
    peer.stop().await.unwrap();
    let rows = payment::Entity::find()
        .count(shop.app.state.db.conn())
        .await
        .unwrap();
    assert_eq!(rows, 2);
    assert!(
        check_invariants(shop.app.state.db.conn())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn upgrade_credits_the_difference_once_and_a_downgrade_waits_for_the_next_period() {
    let shop = shop().await;
    let user = shop.app.register("climber@example.com", "climber").await;
    let sub = subscribe(&shop, &user, &shop.basic).await;
    wait_for(&shop.app, &user, "basic allowance", |m| balance(m) == 500).await;

    let preview = mutate(&shop.app, &user, "query($p: ID!) { previewPlanChange(planId: $p) { amountDueCents currency lines { description amountCents } } }", json!({ "p": shop.pro })).await;
    let preview = &preview["data"]["previewPlanChange"];
    assert!(preview["amountDueCents"].as_i64().unwrap() > 0, "{preview}");
    assert!(
        preview["amountDueCents"].as_i64().unwrap() <= 2000,
        "{preview}"
    );
    assert_eq!(preview["lines"].as_array().unwrap().len(), 2);
    assert_eq!(preview["currency"], "usd");
    let nothing_moved = state_of(&shop.app, &user).await;
    assert_eq!(nothing_moved["subscription"]["plan"]["name"], "Basic");

    let changed = mutate(
        &shop.app,
        &user,
        "mutation($p: ID!) { changePlan(planId: $p) { status plan { name } } }",
        json!({ "p": shop.pro }),
    )
    .await;
    assert_eq!(
        changed["data"]["changePlan"]["plan"]["name"], "Pro",
        "{changed}"
    );
    let me = wait_for(&shop.app, &user, "the upgrade's difference", |m| {
        balance(m) == 2000 && payments(m) == 2
    })
    .await;
    assert_eq!(me["payments"]["edges"][0]["node"]["coinAllowance"], 1500);
    // The same invoices again under new event ids (stored, applied, found recorded).
    let now = chrono::Utc::now().timestamp();
    for (i, mut event) in shop.fake.events_of("invoice.paid").into_iter().enumerate() {
        event["id"] = json!(format!("evt_again_{i}"));
        let body = event.to_string();
        assert_eq!(
            shop.fake
                .deliver_raw(&body, &shop.fake.sign(&body, now))
                .await,
            200
        );
    }
    drained(&shop.app).await;
    assert_eq!(balance(&state_of(&shop.app, &user).await), 2000);

    // Down again: no charge now, the lower allowance from the next period.
    let preview = mutate(
        &shop.app,
        &user,
        "query($p: ID!) { previewPlanChange(planId: $p) { amountDueCents } }",
        json!({ "p": shop.basic }),
    )
    .await;
    assert_eq!(
        preview["data"]["previewPlanChange"]["amountDueCents"], 0,
        "{preview}"
    );
    let invoices_before = shop.fake.events_of("invoice.paid").len();
    let changed = mutate(
        &shop.app,
        &user,
        "mutation($p: ID!) { changePlan(planId: $p) { plan { name } } }",
        json!({ "p": shop.basic }),
    )
    .await;
    assert_eq!(
        changed["data"]["changePlan"]["plan"]["name"], "Basic",
        "{changed}"
    );
    drained(&shop.app).await;
    assert_eq!(
        shop.fake.events_of("invoice.paid").len(),
        invoices_before,
        "no proration invoice"
    );
    assert_eq!(balance(&state_of(&shop.app, &user).await), 2000);
    shop.fake.renew(&sub).await.unwrap();
    wait_for(&shop.app, &user, "the basic renewal", |m| {
        balance(m) == 2500
    })
    .await;
}

#[tokio::test]
async fn cancel_remind_resume_and_end() {
    let shop = shop().await;
    let user = shop.app.register("leaver@example.com", "leaver").await;
    let sub = subscribe(&shop, &user, &shop.basic).await;
    wait_for(&shop.app, &user, "active", |m| {
        m["subscription"]["status"] == "ACTIVE"
    })
    .await;

    let resume = "mutation { resumeSubscription { cancelAtPeriodEnd } }";
    let body = mutate(&shop.app, &user, resume, json!({})).await;
    assert_eq!(error_of(&body), ("CONFLICT".into(), "not_canceling".into()));

    let body = mutate(
        &shop.app,
        &user,
        "mutation { cancelSubscription { cancelAtPeriodEnd active status } }",
        json!({}),
    )
    .await;
    assert_eq!(
        body["data"]["cancelSubscription"]["cancelAtPeriodEnd"], true,
        "{body}"
    );
    assert_eq!(body["data"]["cancelSubscription"]["active"], true);
    let body = mutate(&shop.app, &user, resume, json!({})).await;
    assert_eq!(
        body["data"]["resumeSubscription"]["cancelAtPeriodEnd"], false,
        "{body}"
    );
    let body = mutate(
        &shop.app,
        &user,
        "mutation { cancelSubscription(atPeriodEnd: true) { cancelAtPeriodEnd } }",
        json!({}),
    )
    .await;
    assert_eq!(
        body["data"]["cancelSubscription"]["cancelAtPeriodEnd"],
        true
    );

    // Three days before the end, the sweep reminds once.
    let end = chrono::DateTime::parse_from_rfc3339(
        state_of(&shop.app, &user).await["subscription"]["currentPeriodEnd"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let until = (end.with_timezone(&chrono::Utc) - chrono::Utc::now() - chrono::Duration::days(2))
        .to_std()
        .unwrap();
    shop.app.state.billing.clock.advance(until);
    tessera::billing::service::sweep_once(&shop.app.state)
        .await
        .unwrap();
    tessera::billing::service::sweep_once(&shop.app.state)
        .await
        .unwrap();
    // After the period, resuming is refused.
    shop.app
        .state
        .billing
        .clock
        .advance(Duration::from_secs(3 * 86_400));
    let body = mutate(&shop.app, &user, resume, json!({})).await;
    assert_eq!(error_of(&body), ("CONFLICT".into(), "period_ended".into()));

    shop.fake.renew(&sub).await.unwrap();
    let me = wait_for(&shop.app, &user, "ended", |m| {
        m["subscription"]["status"] == "CANCELED"
    })
    .await;
    assert_eq!(me["subscription"]["active"], false);
    // Events held back while our own changes had the customer locked may still be due.
    drained(&shop.app).await;
    assert_eq!(
        balance(&state_of(&shop.app, &user).await),
        500,
        "no renewal after a cancellation"
    );
    // Ended (canceled at Stripe): resuming is a conflict, not a missing subscription.
    let body = mutate(&shop.app, &user, resume, json!({})).await;
    assert_eq!(error_of(&body), ("CONFLICT".into(), "period_ended".into()));
    drained(&shop.app).await;
    let subjects = mails_to(&shop.app, "leaver@example.com");
    for (needle, count) in [
        ("has started", 1),
        ("will end", 1),
        ("continues", 1),
        ("ends in 3 days", 1),
        ("has ended", 1),
    ] {
        assert_eq!(
            subjects.iter().filter(|s| s.contains(needle)).count(),
            count,
            "{needle}: {subjects:?}"
        );
    }
    // Ended: a new Checkout is allowed again, a change is not.
    let body = mutate(
        &shop.app,
        &user,
        "mutation($p: ID!) { changePlan(planId: $p) { id } }",
        json!({ "p": shop.pro }),
    )
    .await;
    assert_eq!(error_of(&body).0, "NOT_FOUND");
    let body = start_checkout(&shop.app, &user, &shop.pro).await;
    assert!(body["errors"].is_null(), "{body}");
}

#[tokio::test]
async fn failed_payment_is_past_due_through_the_grace_then_ends() {
    let shop = shop().await;
    let user = shop.app.register("late@example.com", "late").await;
    let sub = subscribe(&shop, &user, &shop.basic).await;
    wait_for(&shop.app, &user, "active", |m| balance(m) == 500).await;
    shop.fake.fail_payment(&sub).await.unwrap();
    let me = wait_for(&shop.app, &user, "past due", |m| {
        m["subscription"]["status"] == "PAST_DUE"
    })
    .await;
    assert_eq!(me["subscription"]["active"], true, "within the grace");
    shop.fake.require_action(&sub).await.unwrap();
    drained(&shop.app).await;
    // The failed renewal opened a new period already: the grace runs from its start, not
    // to its end (that would be a month free).
    let start = shop.fake.subscription(&sub).unwrap()["items"]["data"][0]["current_period_start"]
        .as_i64()
        .unwrap();
    let start = chrono::DateTime::from_timestamp(start, 0).unwrap();
    let to = |at: chrono::DateTime<chrono::Utc>| {
        (at - shop.app.state.billing.clock.now()).to_std().unwrap()
    };
    shop.app
        .state
        .billing
        .clock
        .advance(to(start + chrono::Duration::days(2)));
    let me = state_of(&shop.app, &user).await;
    assert_eq!(
        me["subscription"]["active"], true,
        "two days into the grace"
    );
    shop.app.state.billing.clock.advance(to(start
        + chrono::Duration::days(3)
        + chrono::Duration::minutes(1)));
    // The sweep re-reads it (still past due at Stripe) and says it has ended, once.
    tessera::billing::service::sweep_once(&shop.app.state)
        .await
        .unwrap();
    tessera::billing::service::sweep_once(&shop.app.state)
        .await
        .unwrap();
    let me = state_of(&shop.app, &user).await;
    assert_eq!(
        (
            me["subscription"]["status"].as_str(),
            me["subscription"]["active"].as_bool()
        ),
        (Some("PAST_DUE"), Some(false))
    );
    assert!(
        tessera::billing::entitlement(&shop.app.state, user.user_id.parse().unwrap())
            .await
            .unwrap()
            .is_none()
    );
    shop.fake.end_unpaid(&sub).await.unwrap();
    let me = wait_for(&shop.app, &user, "canceled", |m| {
        m["subscription"]["status"] == "CANCELED"
    })
    .await;
    assert_eq!(me["subscription"]["active"], false);
    drained(&shop.app).await;
    let subjects = mails_to(&shop.app, "late@example.com");
    for needle in ["failed", "confirm a payment", "has ended"] {
        assert_eq!(
            subjects.iter().filter(|s| s.contains(needle)).count(),
            1,
            "{needle}: {subjects:?}"
        );
    }
}

#[tokio::test]
async fn portal_and_live_subscription_changes() {
    let shop = shop().await;
    let user = shop.app.register("watcher@example.com", "watcher").await;
    let body = mutate(
        &shop.app,
        &user,
        "mutation { openBillingPortal { url } }",
        json!({}),
    )
    .await;
    assert_eq!(error_of(&body).0, "NOT_FOUND");

    let mut ws = shop.app.ws_signed_in(&user.access).await;
    ws_send(&mut ws, json!({ "id": "s", "type": "subscribe", "payload": { "query": "subscription { subscriptionChanged { status active plan { name } } }" } })).await;
    // The subscription is registered before anything changes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    subscribe(&shop, &user, &shop.basic).await;
    let mut seen = Vec::new();
    for _ in 0..6 {
        let msg = ws_next(&mut ws).await;
        assert_eq!(msg["type"], "next", "{msg}");
        seen.push(msg["payload"]["data"]["subscriptionChanged"].clone());
        if seen.last().unwrap()["status"] == "ACTIVE" {
            break;
        }
    }
    assert_eq!(
        seen.last().unwrap(),
        &json!({ "status": "ACTIVE", "active": true, "plan": { "name": "Basic" } })
    );

    let body = mutate(
        &shop.app,
        &user,
        "mutation { openBillingPortal { url } }",
        json!({}),
    )
    .await;
    assert!(
        str_of(&body["data"]["openBillingPortal"]["url"])
            .starts_with(&format!("{}portal/", shop.fake.base_url())),
        "{body}"
    );
}

#[tokio::test]
async fn refusals_change_nothing() {
    let shop = shop().await;
    let user = shop.app.register("refused@example.com", "refused").await;
    let conn = shop.app.state.db.conn();

    // Plan writes: admins only, no negative numbers.
    let write = "mutation($i: PlanInput!) { createPlan(input: $i) { id } }";
    let body = mutate(
        &shop.app,
        &user,
        write,
        json!({ "i": { "name": "X", "priceCents": 100, "coinAllowance": 1 } }),
    )
    .await;
    assert_eq!(error_of(&body).0, "FORBIDDEN");
    for (price, coins, reason) in [(-1, 1, "negative_price"), (100, -1, "negative_allowance")] {
        let body = mutate(
            &shop.app,
            &shop.admin,
            write,
            json!({ "i": { "name": "X", "priceCents": price, "coinAllowance": coins } }),
        )
        .await;
        assert_eq!(error_of(&body), ("BAD_USER_INPUT".into(), reason.into()));
    }
    let body = mutate(
        &shop.app,
        &shop.admin,
        write,
        json!({ "i": { "name": "X", "priceCents": 1, "coinAllowance": 1, "currency": "zz1" } }),
    )
    .await;
    assert_eq!(error_of(&body).0, "BAD_USER_INPUT");
    let plans = shop.app.graphql("{ plans { id } }", json!({})).await;
    assert_eq!(plans["data"]["plans"].as_array().unwrap().len(), 2);

    // Unknown and archived plans.
    let body = start_checkout(&shop.app, &user, &uuid::Uuid::now_v7().to_string()).await;
    assert_eq!(error_of(&body).0, "NOT_FOUND");
    let body = start_checkout(&shop.app, &user, "not-an-id").await;
    assert_eq!(error_of(&body).0, "NOT_FOUND");
    let archived = create_plan(&shop.app, &shop.admin, "Old", 0, 500, 100).await;
    let body = mutate(
        &shop.app,
        &shop.admin,
        "mutation($id: ID!) { archivePlan(id: $id) { active } }",
        json!({ "id": archived["id"] }),
    )
    .await;
    assert_eq!(body["data"]["archivePlan"]["active"], false);
    let body = start_checkout(&shop.app, &user, &str_of(&archived["id"])).await;
    assert_eq!(error_of(&body).0, "NOT_FOUND");

    // No subscription: change, cancel, resume and portal are NOT_FOUND.
    for q in [
        format!(
            "mutation {{ changePlan(planId: \"{}\") {{ id }} }}",
            shop.pro
        ),
        "mutation { cancelSubscription { id } }".to_owned(),
        "mutation { resumeSubscription { id } }".to_owned(),
        "mutation { openBillingPortal { url } }".to_owned(),
        format!(
            "{{ previewPlanChange(planId: \"{}\") {{ amountDueCents }} }}",
            shop.pro
        ),
    ] {
        let body = mutate(&shop.app, &user, &q, json!({})).await;
        assert_eq!(error_of(&body).0, "NOT_FOUND", "{q}: {body}");
    }

    // Stripe failing: UNAVAILABLE, and no customer was mapped.
    shop.fake.fail_next(500);
    let body = start_checkout(&shop.app, &user, &shop.basic).await;
    assert_eq!(error_of(&body).0, "UNAVAILABLE", "{body}");
    assert_eq!(
        tessera::billing::entity::customer::Entity::find()
            .count(conn)
            .await
            .unwrap(),
        0
    );

    // Subscribed: a second Checkout conflicts, the same plan is bad input.
    subscribe(&shop, &user, &shop.basic).await;
    wait_for(&shop.app, &user, "active", |m| {
        m["subscription"]["status"] == "ACTIVE"
    })
    .await;
    let body = start_checkout(&shop.app, &user, &shop.pro).await;
    assert_eq!(
        error_of(&body),
        ("CONFLICT".into(), "already_subscribed".into())
    );
    let body = mutate(
        &shop.app,
        &user,
        "mutation($p: ID!) { changePlan(planId: $p) { id } }",
        json!({ "p": shop.basic }),
    )
    .await;
    assert_eq!(
        error_of(&body),
        ("BAD_USER_INPUT".into(), "same_plan".into())
    );
    let me = state_of(&shop.app, &user).await;
    assert_eq!(me["subscription"]["plan"]["name"], "Basic");

    // The return route with junk goes back to the app and syncs nothing.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for q in [
        "",
        "?session_id=cs_missing",
        "?session_id=../../etc",
        "?session_id=x",
    ] {
        let r = client
            .get(shop.app.url(&format!("/billing/return{q}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 303);
        assert_eq!(r.headers()["location"], "/plans?checkout=unknown", "{q}");
    }
}

#[tokio::test]
async fn without_stripe_billing_is_not_configured() {
    let app = TestApp::builder()
        .configure(|c| c.identity.admin_emails = vec![ADMIN.into()])
        .spawn()
        .await;
    let admin = app.register(ADMIN, "admin").await;
    let user = app.register("plain@example.com", "plain").await;
    // Plans can be written (and synced later); nothing talks to Stripe.
    let plan = create_plan(&app, &admin, "Later", 1, 900, 100).await;
    assert!(plan["stripePriceId"].is_null());
    let body = start_checkout(&app, &user, &str_of(&plan["id"])).await;
    assert_eq!(error_of(&body).0, "NOT_CONFIGURED");
    let body = app
        .graphql_as(
            &admin.access,
            "mutation { syncPlansToStripe { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_of(&body).0, "NOT_CONFIGURED");
    let body = app
        .graphql_as(
            &user.access,
            "mutation { openBillingPortal { url } }",
            json!({}),
        )
        .await;
    assert_eq!(error_of(&body).0, "NOT_CONFIGURED");
    // No webhook secret: the route is not there.
    let r = app
        .client
        .post(app.url("/webhooks/stripe"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

#[tokio::test]
async fn webhook_refusals_are_clear_and_store_nothing() {
    let shop = shop().await;
    let url = shop.app.url("/webhooks/stripe");
    let post = |body: String, header: Option<String>| {
        let mut r = shop.app.client.post(url.clone()).body(body);
        if let Some(h) = header {
            r = r.header("Stripe-Signature", h);
        }
        async move {
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let event = json!({
        "id": "evt_hand_1", "object": "event", "api_version": "2026-09-30.endive", "created": 1,
        "livemode": false, "pending_webhooks": 1, "type": "customer.created",
        "data": { "object": { "id": "cus_hand", "object": "customer", "created": 1, "livemode": false, "metadata": {} } }
    })
    .to_string();
    let now = chrono::Utc::now().timestamp();
    let sign = |body: &str, t: i64, secret: &str| {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.{body}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    let cases = [
        (event.clone(), None, "missing_signature"),
        (
            event.clone(),
            Some("t=abc".to_owned()),
            "malformed_signature",
        ),
        (
            event.clone(),
            Some(format!("t={now},v1={}", sign(&event, now, "whsec_wrong"))),
            "bad_signature",
        ),
        (
            event.replace("cus_hand", "cus_evil"),
            Some(format!("t={now},v1={}", sign(&event, now, SECRET))),
            "bad_signature",
        ),
        (
            String::new(),
            Some(format!("t={now},v1={}", sign(&event, now, SECRET))),
            "bad_signature",
        ),
        (
            event.clone(),
            Some(format!(
                "t={},v1={}",
                now - 330,
                sign(&event, now - 330, SECRET)
            )),
            "stale_timestamp",
        ),
        (
            "{\"not\":\"an event\"}".to_owned(),
            Some(format!(
                "t={now},v1={}",
                sign("{\"not\":\"an event\"}", now, SECRET)
            )),
            "bad_payload",
        ),
    ];
    for (body, header, reason) in cases {
        let (status, answer) = post(body, header).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some(reason)),
            "{answer}"
        );
    }
    assert_eq!(
        stripe_event::Entity::find()
            .count(shop.app.state.db.conn())
            .await
            .unwrap(),
        0
    );

    // Two v1 with the valid one first (a rotation), and the old secret: accepted.
    let header = format!(
        "t={now},v1={},v1={}",
        sign(&event, now, SECRET),
        "00".repeat(32)
    );
    let (status, answer) = post(event.clone(), Some(header)).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("ignored")),
        "{answer}"
    );
    let again = event.replace("evt_hand_1", "evt_hand_2");
    let header = format!(
        "t={now},v1={},v1={}",
        "00".repeat(32),
        sign(&again, now, "whsec_old")
    );
    let (status, answer) = post(again, Some(header.clone())).await;
    assert_eq!((status, answer["outcome"].as_str()), (200, Some("ignored")));
    // Replayed: 200, a duplicate.
    let (status, answer) = post(event.replace("evt_hand_1", "evt_hand_2"), Some(header)).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("duplicate"))
    );
    let stored = stripe_event::Entity::find()
        .all(shop.app.state.db.conn())
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    assert!(
        stored.iter().all(|e| e.processed_at.is_some()),
        "unhandled types are not work"
    );
}

#[tokio::test]
async fn a_new_price_takes_the_lookup_key_and_subscribers_keep_theirs() {
    let shop = shop().await;
    let user = shop.app.register("keeper@example.com", "keeper").await;
    let sub = subscribe(&shop, &user, &shop.basic).await;
    wait_for(&shop.app, &user, "active", |m| balance(m) == 500).await;
    let plans = shop
        .app
        .graphql("{ plans { id stripePriceId } }", json!({}))
        .await;
    let old_price = str_of(&plans["data"]["plans"][0]["stripePriceId"]);
    let body = mutate(&shop.app, &shop.admin, "mutation($id: ID!, $i: PlanInput!) { updatePlan(id: $id, input: $i) { priceCents stripePriceId } }", json!({ "id": shop.basic, "i": { "name": "Basic", "tier": 1, "priceCents": 1200, "coinAllowance": 600 } })).await;
    let new_price = str_of(&body["data"]["updatePlan"]["stripePriceId"]);
    assert!(
        new_price.starts_with("price_") && new_price != old_price,
        "{body}"
    );
    // Only the name changed: the same Price.
    let body = mutate(&shop.app, &shop.admin, "mutation($id: ID!, $i: PlanInput!) { updatePlan(id: $id, input: $i) { stripePriceId } }", json!({ "id": shop.basic, "i": { "name": "Basic+", "tier": 1, "priceCents": 1200, "coinAllowance": 600 } })).await;
    assert_eq!(
        str_of(&body["data"]["updatePlan"]["stripePriceId"]),
        new_price
    );
    let client = reqwest::Client::new();
    let get = |id: String| {
        let req = client
            .get(format!("{}v1/prices/{id}", shop.fake.base_url()))
            .bearer_auth("sk_test_x");
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let old = get(old_price.clone()).await;
    let new = get(new_price.clone()).await;
    assert_eq!(
        (old["active"].as_bool(), new["active"].as_bool()),
        (Some(false), Some(true))
    );
    assert!(old["lookup_key"].is_null());
    assert_eq!(
        str_of(&new["lookup_key"]),
        format!("tessera_plan_{}", shop.basic)
    );
    // The subscriber keeps the old Price; the plan's new allowance applies from renewal.
    assert_eq!(
        str_of(&shop.fake.subscription(&sub).unwrap()["items"]["data"][0]["price"]["id"]),
        old_price
    );
    shop.fake.renew(&sub).await.unwrap();
    wait_for(&shop.app, &user, "renewal", |m| balance(m) == 1100).await;
    let audit = tessera::platform::audit::recent(shop.app.state.db.conn(), 20)
        .await
        .unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    for action in ["billing.plan.create", "billing.plan.update"] {
        assert!(actions.contains(&action), "{actions:?}");
    }
    let drift_query = "query($r: Boolean!) { admin { billing(refresh: $r) { drift { subscriptionId local remote } driftCheckedAt } } }";
    let drift = mutate(&shop.app, &shop.admin, drift_query, json!({ "r": true })).await;
    assert_eq!(
        drift["data"]["admin"]["billing"]["drift"],
        json!([]),
        "{drift}"
    );
    // A row that disagrees with Stripe shows up on the next check (and not before it).
    use sea_orm::{ActiveModelTrait, Set};
    let row = tessera::billing::entity::subscription::Entity::find_by_id(sub.as_str())
        .one(shop.app.state.db.conn())
        .await
        .unwrap()
        .unwrap();
    let mut row: tessera::billing::entity::subscription::ActiveModel = row.into();
    row.cancel_at_period_end = Set(true);
    row.update(shop.app.state.db.conn()).await.unwrap();
    let cached = mutate(&shop.app, &shop.admin, drift_query, json!({ "r": false })).await;
    assert_eq!(
        cached["data"]["admin"]["billing"]["drift"],
        json!([]),
        "{cached}"
    );
    let drift = mutate(&shop.app, &shop.admin, drift_query, json!({ "r": true })).await;
    let entries = drift["data"]["admin"]["billing"]["drift"]
        .as_array()
        .unwrap();
    assert_eq!(entries.len(), 1, "{drift}");
    assert_eq!(str_of(&entries[0]["subscriptionId"]), sub);
    assert!(str_of(&entries[0]["local"]).contains("cancel_at_period_end=true"));
    assert!(str_of(&entries[0]["remote"]).contains("cancel_at_period_end=false"));
    let body = mutate(&shop.app, &user, drift_query, json!({ "r": true })).await;
    assert_eq!(error_of(&body).0, "FORBIDDEN");
}

#[tokio::test]
async fn sessions_are_rate_limited_and_a_slow_stripe_is_unavailable() {
    let fake = StripeFake::start("127.0.0.1:0").await.expect("stripe fake");
    let app = configured(&fake)
        .configure(|c| {
            c.billing.billing_session_rate = "2/1m".parse().unwrap();
            c.billing.stripe_timeout = tessera::config::HumanDuration(Duration::from_millis(500));
        })
        .spawn()
        .await;
    let admin = app.register(ADMIN, "ops").await;
    let plan = str_of(&create_plan(&app, &admin, "Basic", 1, 1000, 500).await["id"]);
    let user = app.register("hasty@example.com", "hasty").await;
    for _ in 0..2 {
        let body = start_checkout(&app, &user, &plan).await;
        assert!(body["errors"].is_null(), "{body}");
    }
    let body = start_checkout(&app, &user, &plan).await;
    assert_eq!(
        error_of(&body),
        ("RATE_LIMITED".into(), "rate_limited".into())
    );
    assert!(
        body["errors"][0]["extensions"]["retryAfter"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0,
        "{body}"
    );
    let sessions = fake
        .requests()
        .iter()
        .filter(|(m, p, _)| m == "POST" && p.ends_with("checkout/sessions"))
        .count();
    assert_eq!(sessions, 2, "the refused call did not reach Stripe");

    // Slower than STRIPE_TIMEOUT: UNAVAILABLE, nothing written.
    let other = app.register("patient@example.com", "patient").await;
    fake.set_latency(Duration::from_secs(2));
    let body = start_checkout(&app, &other, &plan).await;
    assert_eq!(error_of(&body).0, "UNAVAILABLE", "{body}");
    fake.set_latency(Duration::ZERO);
    let mapped = tessera::billing::entity::customer::Entity::find_by_id(
        other.user_id.parse::<uuid::Uuid>().unwrap(),
    )
    .one(app.state.db.conn())
    .await
    .unwrap();
    assert!(mapped.is_none());
}

#[tokio::test]
async fn an_upgrade_invoice_credits_its_own_plan_whatever_the_row_says_by_then() {
    let shop = shop().await;
    let user = shop.app.register("flipper@example.com", "flipper").await;
    subscribe(&shop, &user, &shop.basic).await;
    wait_for(&shop.app, &user, "basic allowance", |m| balance(m) == 500).await;
    drained(&shop.app).await;
    // Hold the webhooks back, move up and straight down again.
    shop.fake.set_auto_deliver(false);
    let delivered = shop.fake.events().len();
    for plan in [&shop.pro, &shop.basic] {
        let body = mutate(
            &shop.app,
            &user,
            "mutation($p: ID!) { changePlan(planId: $p) { plan { name } } }",
            json!({ "p": plan }),
        )
        .await;
        assert!(body["errors"].is_null(), "{body}");
    }
    assert_eq!(
        state_of(&shop.app, &user).await["subscription"]["plan"]["name"],
        "Basic"
    );
    // The upgrade's invoice, applied now, still credits Pro's difference (once).
    for event in shop.fake.events().iter().skip(delivered) {
        assert_eq!(shop.fake.deliver(&str_of(&event["id"])).await, 200);
    }
    drained(&shop.app).await;
    let me = state_of(&shop.app, &user).await;
    assert_eq!((balance(&me), payments(&me)), (2000, 2), "{me}");
    assert_eq!(me["subscription"]["plan"]["name"], "Basic");
}
