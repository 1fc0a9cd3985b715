//! Rewarded ads end to end: Monetag tickets, Google's ECDSA callbacks and the existing
//! HMAC / RS256 format, Monetag postbacks, Turnstile, caps and cooldowns, the failure
//! window under an injected clock, and the credit-once guarantees under concurrency and a
//! Redis outage. Every credit is checked in the ledger.

use std::time::Duration;

use futures_util::future::join_all;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use tessera::{ads::entity::ad_reward, config::Config, wallet::service::check_invariants};
use tessera_fakes::ads::{GoogleSsv, Turnstile, google_params, monetag_postback};

use crate::helpers::{Session, TestApp, TestAppBuilder, error_of, redis_proxy};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0";
const PREPARE: &str = "mutation($i: PrepareAdRewardInput!) { prepareAdReward(input: $i) { provider nonce deviceHash expiresAt requiredDurationSec ticket monetag { zoneId scriptUrl ymid } adTagUrl } }";
const COMPLETE: &str = "mutation($i: CompleteAdRewardInput!) { completeAdReward(input: $i) { status credited balance } }";
const STATUS: &str = "{ adRewardStatus { providers defaultProvider amount requiredSeconds cooldownSeconds todayCount dailyCap deviceDailyCap placements turnstileSiteKey clientSigningRequired } }";

/// Both providers on, no dev fakes, no Turnstile.
fn ads_on(c: &mut Config) {
    c.ads.ads_dev_fakes = Some(false);
    c.ads.monetag_zone_id = Some("9100001".into());
    c.ads.monetag_script_url = Some("https://ads.example/sdk.js".parse().unwrap());
    c.ads.ad_tag_base = Some(
        "https://pubads.example/gampad/ads?iu=/1/rewarded&sz=640x480"
            .parse()
            .unwrap(),
    );
    c.ads.ssv_secret = Some(tessera::config::Secret::new("ssv-secret"));
}

fn builder() -> TestAppBuilder {
    TestApp::builder().configure(ads_on)
}

async fn gql_with(app: &TestApp, token: &str, ua: &str, query: &str, variables: Value) -> Value {
    let response = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(token)
        .header("user-agent", ua)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("POST /graphql");
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

async fn gql(app: &TestApp, s: &Session, query: &str, variables: Value) -> Value {
    gql_with(app, &s.access, UA, query, variables).await
}

async fn prepare(app: &TestApp, s: &Session, provider: &str, placement: &str) -> Value {
    gql(
        app,
        s,
        PREPARE,
        json!({"i": {"provider": provider, "placement": placement}}),
    )
    .await
}

/// A prepared Monetag ticket (must succeed): (nonce, ticket).
async fn ticket(app: &TestApp, s: &Session) -> (String, String) {
    let body = prepare(app, s, "MONETAG", "earn").await;
    assert!(body["errors"].is_null(), "prepare failed: {body}");
    let t = &body["data"]["prepareAdReward"];
    (
        t["nonce"].as_str().unwrap().to_owned(),
        t["ticket"].as_str().unwrap().to_owned(),
    )
}

async fn complete(app: &TestApp, s: &Session, ticket: &str, duration: i64) -> Value {
    gql(
        app,
        s,
        COMPLETE,
        json!({"i": {"ticket": ticket, "durationSec": duration}}),
    )
    .await
}

fn outcome(body: &Value) -> String {
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["completeAdReward"]["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn balance(app: &TestApp, s: &Session) -> i64 {
    let body = app
        .graphql_as(&s.access, "{ me { wallet { balance } } }", json!({}))
        .await;
    body["data"]["me"]["wallet"]["balance"].as_i64().unwrap()
}

async fn rewards(app: &TestApp) -> u64 {
    ad_reward::Entity::find()
        .count(app.state.db.conn())
        .await
        .unwrap()
}

async fn assert_sound(app: &TestApp) {
    let problems = check_invariants(app.state.db.conn()).await.unwrap();
    assert!(
        problems.is_empty(),
        "ledger invariants broken: {problems:#?}"
    );
}

/// Marks the user's email verified (new unverified accounts get half the user cap).
async fn verified(app: &TestApp, s: &Session) {
    use sea_orm::{ColumnTrait, QueryFilter, sea_query::Expr};
    use tessera::identity::entity::user;
    let done = user::Entity::update_many()
        .col_expr(
            user::Column::EmailVerifiedAt,
            Expr::value(chrono::Utc::now()),
        )
        .filter(user::Column::Id.eq(s.user_id.parse::<uuid::Uuid>().unwrap()))
        .exec(app.state.db.conn())
        .await
        .unwrap();
    assert_eq!(done.rows_affected, 1);
}

fn advance(app: &TestApp, secs: u64) {
    app.state.ads.clock.advance(Duration::from_secs(secs));
}

async fn get(app: &TestApp, path_and_query: &str) -> (u16, Value) {
    let r = app
        .client
        .get(app.url(path_and_query))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_monetag_ad_credits_once_and_starts_the_cooldown() {
    let app = builder().spawn().await;
    let sam = app.register("sam@example.com", "sam").await;

    let status = gql(&app, &sam, STATUS, json!({})).await;
    let st = &status["data"]["adRewardStatus"];
    assert_eq!(st["providers"], json!(["MONETAG", "GMA"]), "{status}");
    assert_eq!(st["defaultProvider"], "MONETAG");
    assert_eq!(st["amount"], 5);
    assert_eq!(st["requiredSeconds"], 30);
    assert_eq!(st["cooldownSeconds"], 0);
    assert_eq!(st["todayCount"], 0);
    assert_eq!(
        st["dailyCap"], 20,
        "a new unverified account gets half of 40"
    );
    assert_eq!(st["placements"], json!(["earn", "daily", "boost", "test"]));

    let body = prepare(&app, &sam, "MONETAG", "earn").await;
    let t = &body["data"]["prepareAdReward"];
    assert_eq!(t["monetag"]["zoneId"], "9100001", "{body}");
    assert_eq!(t["monetag"]["scriptUrl"], "https://ads.example/sdk.js");
    assert_eq!(t["monetag"]["ymid"], t["nonce"]);
    assert_eq!(t["requiredDurationSec"], 30);
    assert!(t["ticket"].as_str().unwrap().starts_with("v1."));
    assert!(t["adTagUrl"].is_null());
    let ticket = t["ticket"].as_str().unwrap().to_owned();

    // The client's count alone proves nothing: the server's own clock says 0 s passed.
    let early = complete(&app, &sam, &ticket, 31).await;
    assert_eq!(
        error_of(&early),
        ("BAD_USER_INPUT".into(), "duration_too_short".into())
    );
    advance(&app, 31);
    let done = complete(&app, &sam, &ticket, 31).await;
    assert_eq!(outcome(&done), "CREDITED");
    assert_eq!(done["data"]["completeAdReward"]["credited"], 5);
    assert_eq!(done["data"]["completeAdReward"]["balance"], 5);
    let again = complete(&app, &sam, &ticket, 31).await;
    assert_eq!(outcome(&again), "DUPLICATE");
    assert_eq!(again["data"]["completeAdReward"]["credited"], 0);
    assert_eq!(balance(&app, &sam).await, 5);

    let listed = gql(
        &app,
        &sam,
        "{ me { adRewards(first: 5) { totalCount edges { node { provider network placement amount } } } wallet { transfers(first: 5) { edges { node { kind amount counterparty } } } } } }",
        json!({}),
    )
    .await;
    let me = &listed["data"]["me"];
    assert_eq!(me["adRewards"]["totalCount"], 1, "{listed}");
    assert_eq!(
        me["adRewards"]["edges"][0]["node"],
        json!({"provider": "MONETAG", "network": "monetag", "placement": "earn", "amount": 5})
    );
    let transfer = &me["wallet"]["transfers"]["edges"][0]["node"];
    assert_eq!(transfer["kind"], "AD_REWARD", "{listed}");
    assert_eq!(transfer["counterparty"], "ADS");

    let status = gql(&app, &sam, STATUS, json!({})).await;
    let st = &status["data"]["adRewardStatus"];
    assert_eq!(st["todayCount"], 1);
    let cooldown = st["cooldownSeconds"].as_u64().unwrap();
    assert!((1..=30).contains(&cooldown), "{status}");
    let refused = prepare(&app, &sam, "MONETAG", "earn").await;
    assert_eq!(
        error_of(&refused),
        ("RATE_LIMITED".into(), "cooldown".into())
    );
    assert!(
        refused["errors"][0]["extensions"]["retryAfter"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert_eq!(rewards(&app).await, 1);
    assert_sound(&app).await;
}

#[tokio::test]
async fn completion_refusals_credit_nothing() {
    let app = builder().spawn().await;
    let sam = app.register("sam@example.com", "sam").await;
    let eve = app.register("eve@example.com", "eve").await;
    let (_, ticket) = ticket(&app, &sam).await;
    advance(&app, 31);

    let anonymous = app
        .graphql(
            COMPLETE,
            json!({"i": {"ticket": ticket, "durationSec": 31}}),
        )
        .await;
    assert_eq!(error_of(&anonymous).0, "UNAUTHENTICATED");
    for junk in ["", "v1.abc.def", "nonsense"] {
        let body = complete(&app, &sam, junk, 31).await;
        assert_eq!(
            error_of(&body),
            ("BAD_USER_INPUT".into(), "ticket_invalid".into()),
            "{junk}"
        );
    }
    // Tampered claims under the original tag.
    let mut parts: Vec<String> = ticket.split('.').map(str::to_owned).collect();
    let swap = if parts[1].starts_with('e') { "f" } else { "e" };
    parts[1].replace_range(0..1, swap);
    let body = complete(&app, &sam, &parts.join("."), 31).await;
    assert_eq!(error_of(&body).1, "ticket_invalid");
    // Another user's ticket.
    let body = complete(&app, &eve, &ticket, 31).await;
    assert_eq!(error_of(&body).1, "ticket_invalid");
    // Another device (User-Agent) than the one that prepared.
    let body = gql_with(
        &app,
        &sam.access,
        "Other/2.0",
        COMPLETE,
        json!({"i": {"ticket": ticket, "durationSec": 31}}),
    )
    .await;
    assert_eq!(
        error_of(&body),
        ("FORBIDDEN".into(), "device_mismatch".into())
    );
    // The client says it watched too little.
    let body = complete(&app, &sam, &ticket, 12).await;
    assert_eq!(error_of(&body).1, "duration_too_short");
    // A GMA ticket completes through SSV only.
    let gma = prepare(&app, &sam, "GMA", "earn").await;
    let gma_ticket = gma["data"]["prepareAdReward"]["ticket"].as_str().unwrap();
    advance(&app, 31);
    let body = complete(&app, &sam, gma_ticket, 31).await;
    assert_eq!(error_of(&body).1, "ticket_invalid");
    // Past its 180 s.
    advance(&app, 200);
    let body = complete(&app, &sam, &ticket, 31).await;
    assert_eq!(
        error_of(&body),
        ("BAD_USER_INPUT".into(), "ticket_expired".into())
    );
    assert_eq!(balance(&app, &sam).await, 0);
    assert_eq!(balance(&app, &eve).await, 0);
    assert_eq!(rewards(&app).await, 0);
}

#[tokio::test]
async fn prepare_refuses_what_it_must() {
    let app = builder()
        .configure(|c| {
            c.ads.ad_tag_base = None;
            c.ads.ads_blocked_asn = vec!["AS64500".into()];
            c.ads.ads_asn_header = Some("x-client-asn".into());
            c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
            c.ads.ads_blocked_ips = vec!["203.0.113.0/24".parse().unwrap()];
        })
        .spawn()
        .await;
    let sam = app.register("sam@example.com", "sam").await;
    let anonymous = app
        .graphql(
            PREPARE,
            json!({"i": {"provider": "MONETAG", "placement": "earn"}}),
        )
        .await;
    assert_eq!(error_of(&anonymous).0, "UNAUTHENTICATED");
    let body = prepare(&app, &sam, "GMA", "earn").await;
    assert_eq!(
        error_of(&body),
        ("BAD_USER_INPUT".into(), "provider_disabled".into())
    );
    let body = prepare(&app, &sam, "MONETAG", "lobby").await;
    assert_eq!(error_of(&body).1, "placement_not_allowed");

    let via_proxy = |headers: Vec<(&'static str, &'static str)>| {
        let app = &app;
        let sam = &sam;
        async move {
            let mut req = app
                .client
                .post(app.url("/graphql"))
                .bearer_auth(&sam.access)
                .header("user-agent", UA);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            req.json(&json!({"query": PREPARE, "variables": {"i": {"provider": "MONETAG", "placement": "earn"}}}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let blocked_asn = via_proxy(vec![("x-client-asn", "64500")]).await;
    assert_eq!(
        error_of(&blocked_asn),
        ("FORBIDDEN".into(), "network_blocked".into())
    );
    let blocked_ip = via_proxy(vec![("x-forwarded-for", "203.0.113.9")]).await;
    assert_eq!(error_of(&blocked_ip).1, "network_blocked");
    let fine = via_proxy(vec![
        ("x-client-asn", "AS64501"),
        ("x-forwarded-for", "198.51.100.7"),
    ])
    .await;
    assert!(fine["errors"].is_null(), "{fine}");
    assert_eq!(
        ad_nonces(&app).await,
        1,
        "only the accepted prepare issued a nonce"
    );
}

async fn ad_nonces(app: &TestApp) -> u64 {
    tessera::ads::entity::ad_nonce::Entity::find()
        .count(app.state.db.conn())
        .await
        .unwrap()
}

#[tokio::test]
async fn client_signatures_are_required_when_configured() {
    let app = builder()
        .configure(|c| {
            c.ads.client_signing_secret = Some(tessera::config::Secret::new("browser-key"))
        })
        .spawn()
        .await;
    let sam = app.register("sam@example.com", "sam").await;
    let now = chrono::Utc::now().timestamp();
    let sign = |ts: i64, placement: &str| {
        tessera::ads::ticket::hmac_hex(
            b"browser-key",
            format!("{}|cn-1|{ts}|{placement}", sam.user_id).as_bytes(),
        )
    };
    let call = |input: Value, header: Option<String>| {
        let app = &app;
        let sam = &sam;
        async move {
            let mut req = app
                .client
                .post(app.url("/graphql"))
                .bearer_auth(&sam.access)
                .header("user-agent", UA);
            if let Some(h) = header {
                req = req.header("x-client-signature", h);
            }
            req.json(&json!({"query": PREPARE, "variables": {"i": input}}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let base = json!({"provider": "MONETAG", "placement": "earn", "clientNonce": "cn-1", "timestamp": now});
    let missing = call(base.clone(), None).await;
    assert_eq!(
        error_of(&missing),
        ("FORBIDDEN".into(), "bad_client_signature".into())
    );
    let wrong = call(base.clone(), Some(sign(now, "daily"))).await;
    assert_eq!(error_of(&wrong).1, "bad_client_signature");
    let mut old = base.clone();
    old["timestamp"] = json!(now - 400);
    let stale = call(old, Some(sign(now - 400, "earn"))).await;
    assert_eq!(error_of(&stale).1, "bad_client_signature");
    let by_header = call(base.clone(), Some(sign(now, "earn"))).await;
    assert!(by_header["errors"].is_null(), "{by_header}");
    let mut in_input = base.clone();
    in_input["signature"] = json!(sign(now, "earn"));
    let by_input = call(in_input, None).await;
    assert!(by_input["errors"].is_null(), "{by_input}");
    let status = gql(&app, &sam, STATUS, json!({})).await;
    assert_eq!(
        status["data"]["adRewardStatus"]["clientSigningRequired"],
        true
    );
}

#[tokio::test]
async fn turnstile_is_checked_and_fails_closed() {
    let turnstile = Turnstile::start("127.0.0.1:0", "ts-secret", "localhost")
        .await
        .unwrap();
    let url = turnstile.verify_url();
    let app = builder()
        .configure(move |c| {
            c.ads.turnstile_secret_key = Some(tessera::config::Secret::new("ts-secret"));
            c.ads.turnstile_site_key = Some("site-key".into());
            c.ads.turnstile_verify_url = url.parse().unwrap();
            c.ads.ads_prepare_rate = "100/1s".parse().unwrap();
        })
        .spawn()
        .await;
    let sam = app.register("sam@example.com", "sam").await;
    let with_token = |token: Option<&'static str>| {
        let app = &app;
        let sam = &sam;
        async move {
            gql(
                app,
                sam,
                PREPARE,
                json!({"i": {"provider": "MONETAG", "placement": "earn", "turnstileToken": token}}),
            )
            .await
        }
    };
    let ok = with_token(Some("pass-1")).await;
    assert!(ok["errors"].is_null(), "{ok}");
    let sent = turnstile.requests().pop().unwrap();
    assert_eq!(sent["secret"], "ts-secret");
    assert_eq!(sent["response"], "pass-1");
    assert_eq!(sent["remoteip"], "127.0.0.1");
    assert!(
        uuid::Uuid::parse_str(&sent["idempotency_key"]).is_ok(),
        "{sent:?}"
    );

    for (token, code, reason) in [
        (Some("pass-1"), "FORBIDDEN", "turnstile_failed"), // spent
        (Some("fail-1"), "FORBIDDEN", "turnstile_failed"),
        (Some("action-1"), "FORBIDDEN", "turnstile_failed"),
        (Some("host-1"), "FORBIDDEN", "turnstile_failed"),
        (None, "FORBIDDEN", "turnstile_failed"),
        (Some("nonjson-1"), "UNAVAILABLE", "turnstile_unavailable"),
        (Some("timeout-1"), "UNAVAILABLE", "turnstile_unavailable"),
    ] {
        let started = std::time::Instant::now();
        let body = with_token(token).await;
        assert_eq!(
            error_of(&body),
            (code.into(), reason.into()),
            "{token:?}: {body}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "siteverify waits 2 s at most"
        );
    }
    let status = gql(&app, &sam, STATUS, json!({})).await;
    assert_eq!(
        status["data"]["adRewardStatus"]["turnstileSiteKey"],
        "site-key"
    );
    let script = gql(
        &app,
        &sam,
        "{ adRewardStatus { turnstileScriptUrl } }",
        json!({}),
    )
    .await;
    assert_eq!(
        script["data"]["adRewardStatus"]["turnstileScriptUrl"],
        "https://challenges.cloudflare.com/turnstile/v0/api.js?render=explicit"
    );
    assert_eq!(ad_nonces(&app).await, 1);

    // Unreachable: refused, not waved through.
    drop(turnstile);
    let body = with_token(Some("pass-2")).await;
    assert_eq!(error_of(&body).0, "UNAVAILABLE", "{body}");
    assert_eq!(ad_nonces(&app).await, 1);
}

#[tokio::test]
async fn daily_caps_hold_until_utc_midnight() {
    let app = builder()
        .configure(|c| {
            c.ads.daily_cap_user = 2;
            c.ads.rwd_per_day_min = 1;
            c.ads.daily_cap_device = 3;
            c.ads.ads_daily_cap_ip = 4;
            c.ads.min_interval = 0;
        })
        .spawn()
        .await;
    // The credits below move the clock by minutes: start them in a day that has room, not
    // in the last minutes before a real UTC midnight.
    let left = tessera::ads::service::until_midnight(app.state.ads.clock.now());
    if left < Duration::from_secs(600) {
        app.state.ads.clock.advance(left + Duration::from_secs(1));
    }
    let sam = app.register("sam@example.com", "sam").await;
    verified(&app, &sam).await;
    for _ in 0..2 {
        let (_, t) = ticket(&app, &sam).await;
        advance(&app, 31);
        assert_eq!(outcome(&complete(&app, &sam, &t, 31).await), "CREDITED");
    }
    let refused = prepare(&app, &sam, "MONETAG", "earn").await;
    assert_eq!(
        error_of(&refused),
        ("RATE_LIMITED".into(), "daily_cap_user".into())
    );
    let now = app.state.ads.clock.now();
    let to_midnight = tessera::ads::service::until_midnight(now).as_secs();
    let retry = refused["errors"][0]["extensions"]["retryAfter"]
        .as_u64()
        .unwrap();
    assert!(retry.abs_diff(to_midnight) <= 2, "{retry} vs {to_midnight}");

    // The device (same User-Agent and subnet) has one left, the address two.
    let ann = app.register("ann@example.com", "ann").await;
    verified(&app, &ann).await;
    let (_, t) = ticket(&app, &ann).await;
    advance(&app, 31);
    assert_eq!(outcome(&complete(&app, &ann, &t, 31).await), "CREDITED");
    let body = prepare(&app, &ann, "MONETAG", "earn").await;
    assert_eq!(error_of(&body).1, "daily_cap_device");
    // Someone else in another browser on the same address: the address cap.
    let carol = app.register("carol@example.com", "carol").await;
    verified(&app, &carol).await;
    let other = gql_with(
        &app,
        &carol.access,
        "Other/1",
        PREPARE,
        json!({"i": {"provider": "MONETAG", "placement": "earn"}}),
    )
    .await;
    let t = other["data"]["prepareAdReward"]["ticket"]
        .as_str()
        .unwrap()
        .to_owned();
    advance(&app, 31);
    let done = gql_with(
        &app,
        &carol.access,
        "Other/1",
        COMPLETE,
        json!({"i": {"ticket": t, "durationSec": 31}}),
    )
    .await;
    assert_eq!(outcome(&done), "CREDITED");
    let body = gql_with(
        &app,
        &carol.access,
        "Third/1",
        PREPARE,
        json!({"i": {"provider": "MONETAG", "placement": "earn"}}),
    )
    .await;
    assert_eq!(error_of(&body).1, "daily_cap_ip");

    // A new UTC day.
    advance(&app, to_midnight + 5);
    let (_, t) = ticket(&app, &sam).await;
    advance(&app, 31);
    assert_eq!(outcome(&complete(&app, &sam, &t, 31).await), "CREDITED");
    let status = gql(&app, &sam, STATUS, json!({})).await;
    assert_eq!(status["data"]["adRewardStatus"]["todayCount"], 1);
    assert_eq!(balance(&app, &sam).await, 15);
    assert_sound(&app).await;
}

/// Prepares a GMA ad and returns its nonce, checking the ad tag carries it.
async fn gma_nonce(app: &TestApp, s: &Session) -> String {
    let body = prepare(app, s, "GMA", "boost").await;
    assert!(body["errors"].is_null(), "{body}");
    let t = &body["data"]["prepareAdReward"];
    let nonce = t["nonce"].as_str().unwrap().to_owned();
    let tag = url::Url::parse(t["adTagUrl"].as_str().unwrap()).unwrap();
    let cust = tag
        .query_pairs()
        .find(|(k, _)| k == "cust_params")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let cust: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(cust.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(cust["nonce"], nonce);
    assert_eq!(cust["uid"], s.user_id);
    assert_eq!(cust["placement"], "boost");
    assert!(
        tag.as_str()
            .starts_with("https://pubads.example/gampad/ads?iu=/1/rewarded")
    );
    nonce
}

/// A Google key server and an app that fetches its keys, with `configure` on top.
async fn with_google(configure: impl FnOnce(&mut Config) + Send + 'static) -> (GoogleSsv, TestApp) {
    let google = GoogleSsv::start("127.0.0.1:0").await.unwrap();
    let keys = google.keys_url();
    let app = builder()
        .configure(move |c| {
            c.ads.ads_ssv_keys_url = Some(keys.parse().unwrap());
            configure(c);
        })
        .spawn()
        .await;
    (google, app)
}

fn now_ms(app: &TestApp) -> String {
    app.state.ads.clock.now().timestamp_millis().to_string()
}

#[tokio::test]
async fn google_callbacks_credit_once_and_forgeries_are_refused() {
    let (google, app) = with_google(|_| {}).await;
    let sam = app.register("sam@example.com", "sam").await;
    let eve = app.register("eve@example.com", "eve").await;
    let nonce = gma_nonce(&app, &sam).await;
    let ts = now_ms(&app);

    let forged = google.forged_callback(&google_params(&nonce, &sam.user_id, "tx-1", &ts));
    let (status, body) = get(&app, &format!("/ads/ssv?{forged}")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("bad_signature"))
    );
    let good = google.callback(&google_params(&nonce, &sam.user_id, "tx-1", &ts));
    let tampered = good.replace("reward_amount=5", "reward_amount=500");
    let (status, body) = get(&app, &format!("/ads/ssv?{tampered}")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("bad_signature"))
    );
    let unknown_key = good.replace(&format!("key_id={}", google.current_key_id()), "key_id=77");
    let (status, body) = get(&app, &format!("/ads/ssv?{unknown_key}")).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("unknown_key")));
    let stale_ts = (app.state.ads.clock.now().timestamp_millis() - 2 * 3600 * 1000).to_string();
    let stale = google.callback(&google_params(&nonce, &sam.user_id, "tx-1", &stale_ts));
    let (status, body) = get(&app, &format!("/ads/ssv?{stale}")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("stale_timestamp"))
    );
    let mut partial = google_params(&nonce, &sam.user_id, "tx-1", &ts);
    partial.retain(|(k, _)| *k != "transaction_id");
    let (status, body) = get(&app, &format!("/ads/ssv?{}", google.callback(&partial))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("missing_parameter"))
    );
    let wrong_user = google.callback(&google_params(&nonce, &eve.user_id, "tx-1", &ts));
    let (status, body) = get(&app, &format!("/ads/ssv?{wrong_user}")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("unknown_nonce"))
    );
    let never_issued = google.callback(&google_params("no-such-nonce", &sam.user_id, "tx-1", &ts));
    let (status, body) = get(&app, &format!("/ads/ssv?{never_issued}")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("unknown_nonce"))
    );
    assert_eq!(balance(&app, &sam).await, 0);

    let (status, body) = get(&app, &format!("/ads/ssv?{good}")).await;
    assert_eq!(
        (status, &body),
        (200, &json!({"credited": 5, "duplicate": false}))
    );
    let (status, body) = get(&app, &format!("/ads/ssv?{good}")).await;
    assert_eq!(
        (status, &body),
        (200, &json!({"credited": 0, "duplicate": true}))
    );
    // Another transaction for the same nonce: the nonce was credited.
    let second = google.callback(&google_params(&nonce, &sam.user_id, "tx-2", &ts));
    let (status, body) = get(&app, &format!("/ads/ssv?{second}")).await;
    assert_eq!((status, body["duplicate"].as_bool()), (200, Some(true)));
    assert_eq!(balance(&app, &sam).await, 5);
    assert_eq!(google.fetches(), 1, "keys are cached");
    let listed = gql(
        &app,
        &sam,
        "{ me { adRewards { edges { node { provider network placement } } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        listed["data"]["me"]["adRewards"]["edges"][0]["node"],
        json!({"provider": "GMA", "network": "gma", "placement": "boost"})
    );
    assert_sound(&app).await;
}

#[tokio::test]
async fn rotated_google_keys_are_refetched_at_most_once_a_minute() {
    let (google, app) = with_google(|c| {
        c.ads.min_interval = 0;
    })
    .await;
    let sam = app.register("sam@example.com", "sam").await;
    let first = gma_nonce(&app, &sam).await;
    let q = google.callback(&google_params(&first, &sam.user_id, "r-1", &now_ms(&app)));
    assert_eq!(get(&app, &format!("/ads/ssv?{q}")).await.0, 200);
    assert_eq!(google.fetches(), 1);

    google.rotate();
    let second = gma_nonce(&app, &sam).await;
    let q = google.callback(&google_params(&second, &sam.user_id, "r-2", &now_ms(&app)));
    // Within a minute of the last fetch the unknown id is not fetched again.
    let (status, body) = get(&app, &format!("/ads/ssv?{q}")).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("unknown_key")));
    let (status, _) = get(&app, &format!("/ads/ssv?{q}")).await;
    assert_eq!(status, 400);
    assert_eq!(google.fetches(), 1);
    advance(&app, 61);
    let q = google.callback(&google_params(&second, &sam.user_id, "r-2", &now_ms(&app)));
    let (status, body) = get(&app, &format!("/ads/ssv?{q}")).await;
    assert_eq!(
        (status, body["credited"].as_i64()),
        (200, Some(5)),
        "{body}"
    );
    assert_eq!(google.fetches(), 2);
    // Cached keys are trusted for at most a day.
    advance(&app, 25 * 3600);
    let third = gma_nonce(&app, &sam).await;
    let q = google.callback(&google_params(&third, &sam.user_id, "r-3", &now_ms(&app)));
    assert_eq!(get(&app, &format!("/ads/ssv?{q}")).await.0, 200);
    assert_eq!(google.fetches(), 3);
    assert_eq!(balance(&app, &sam).await, 15);
}

fn legacy_sig(secret: &[u8], p: &[(&str, &str)]) -> String {
    let get = |k: &str| p.iter().find(|(n, _)| *n == k).map(|(_, v)| *v).unwrap();
    let mut m = format!(
        "eventId={}|uid={}|nonce={}|amount={}|duration={}",
        get("eventId"),
        get("uid"),
        get("nonce"),
        get("amount"),
        get("duration")
    );
    if let Some((_, v)) = p.iter().find(|(n, _)| *n == "placement") {
        m.push_str(&format!("|placement={v}"));
    }
    tessera::ads::ticket::hmac_hex(secret, m.as_bytes())
}

/// A callback in the existing format, signed with the test secret, as a query string.
fn legacy_query(p: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in p {
        q.append_pair(k, v);
    }
    q.append_pair("sig", &legacy_sig(b"ssv-secret", p));
    q.finish()
}

#[tokio::test]
async fn the_existing_callback_format_is_verified_by_hmac() {
    let app = builder()
        .configure(|c| c.ads.min_interval = 0)
        .spawn()
        .await;
    let sam = app.register("sam@example.com", "sam").await;
    let n1 = gma_nonce(&app, &sam).await;
    let mut p = vec![
        ("eventId", "ev-1"),
        ("uid", sam.user_id.as_str()),
        ("nonce", n1.as_str()),
        ("amount", "5"),
        ("duration", "31"),
        ("network", "AppLovin"),
        ("placement", "boost"),
    ];
    let sig = legacy_sig(b"ssv-secret", &p);
    let bad = legacy_sig(b"wrong", &p);
    let query = |p: &[(&str, &str)], sig: &str| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in p {
            s.append_pair(k, v);
        }
        s.append_pair("sig", sig);
        s.finish()
    };
    let (status, body) = get(&app, &format!("/ads/ssv?{}", query(&p, &bad))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("bad_signature"))
    );
    let (status, body) = get(&app, &format!("/ads/ssv?{}", query(&p[..4], &sig))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("missing_parameter"))
    );
    let (status, body) = get(&app, &format!("/ads/ssv?{}", query(&p, &sig))).await;
    assert_eq!(
        (status, &body),
        (200, &json!({"credited": 5, "duplicate": false}))
    );
    let (status, body) = get(&app, &format!("/ads/ssv?{}", query(&p, &sig))).await;
    assert_eq!((status, body["duplicate"].as_bool()), (200, Some(true)));

    // POST JSON, with numbers as numbers.
    let n2 = gma_nonce(&app, &sam).await;
    p[0] = ("eventId", "ev-2");
    p[2] = ("nonce", n2.as_str());
    let sig = legacy_sig(b"ssv-secret", &p);
    let mut body: serde_json::Map<String, Value> =
        p.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    body.insert("amount".into(), json!(5));
    body.insert("sig".into(), json!(sig));
    let r = app
        .client
        .post(app.url("/ads/ssv"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["credited"], 5);

    // POST form; the amount must be ours.
    let n3 = gma_nonce(&app, &sam).await;
    p[0] = ("eventId", "ev-3");
    p[2] = ("nonce", n3.as_str());
    p[3] = ("amount", "50");
    let sig = legacy_sig(b"ssv-secret", &p);
    let post_form = |body: String| {
        let app = &app;
        async move {
            let r = app
                .client
                .post(app.url("/ads/ssv"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = post_form(query(&p, &sig)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_amount")));
    p[3] = ("amount", "5");
    let sig = legacy_sig(b"ssv-secret", &p);
    let (status, body) = post_form(query(&p, &sig)).await;
    assert_eq!((status, body["credited"].as_i64()), (200, Some(5)));
    assert_eq!(balance(&app, &sam).await, 15);
    let networks = gql(
        &app,
        &sam,
        "{ me { adRewards { edges { node { network } } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        networks["data"]["me"]["adRewards"]["edges"][0]["node"]["network"],
        "applovin"
    );
    assert_sound(&app).await;
}

#[tokio::test]
async fn an_event_credited_under_one_nonce_is_not_credited_under_another() {
    let app = builder()
        .configure(|c| c.ads.min_interval = 0)
        .spawn()
        .await;
    let sam = app.register("sam@example.com", "sam").await;
    let send = |event: &'static str, nonce: String| {
        let (app, uid) = (&app, sam.user_id.clone());
        async move {
            let p = [
                ("eventId", event),
                ("uid", uid.as_str()),
                ("nonce", nonce.as_str()),
                ("amount", "5"),
                ("duration", "31"),
            ];
            get(app, &format!("/ads/ssv?{}", legacy_query(&p))).await
        }
    };
    let (n1, n2) = (gma_nonce(&app, &sam).await, gma_nonce(&app, &sam).await);
    assert_eq!(send("ev-1", n1).await.1["credited"], 5);
    // The network's event again, now naming another of the user's nonces: nothing moves,
    // and that nonce is not used up by the attempt.
    let (status, body) = send("ev-1", n2.clone()).await;
    assert_eq!(
        (status, &body),
        (200, &json!({"credited": 0, "duplicate": true}))
    );
    assert_eq!((balance(&app, &sam).await, rewards(&app).await), (5, 1));
    let (status, body) = send("ev-2", n2).await;
    assert_eq!((status, body["credited"].as_i64()), (200, Some(5)));
    assert_eq!((balance(&app, &sam).await, rewards(&app).await), (10, 2));
    assert_sound(&app).await;
}

#[tokio::test]
async fn a_credit_refused_at_a_cap_names_that_cap_and_counts_nothing() {
    use tessera::ads::entity::ad_daily_count;
    let app = builder()
        .configure(|c| {
            c.ads.daily_cap_user = 1;
            c.ads.rwd_per_day_min = 1;
            c.ads.daily_cap_device = 1;
            c.ads.ads_daily_cap_ip = 100;
            c.ads.min_interval = 0;
        })
        .spawn()
        .await;
    // Two accounts on one device, both with an ad prepared while the device had room.
    let sam = app.register("sam@example.com", "sam").await;
    let ann = app.register("ann@example.com", "ann").await;
    verified(&app, &sam).await;
    verified(&app, &ann).await;
    let (_, sam_ticket) = ticket(&app, &sam).await;
    let (_, ann_ticket) = ticket(&app, &ann).await;
    advance(&app, 31);
    assert_eq!(
        outcome(&complete(&app, &sam, &sam_ticket, 31).await),
        "CREDITED"
    );
    // Ann's own count would reach her cap with this credit; the device's is reached
    // already, and that is the refusal.
    let refused = complete(&app, &ann, &ann_ticket, 31).await;
    assert_eq!(
        error_of(&refused),
        ("RATE_LIMITED".into(), "daily_cap_device".into())
    );
    assert_eq!(balance(&app, &ann).await, 0);
    let counts: Vec<(String, i32)> = ad_daily_count::Entity::find()
        .all(app.state.db.conn())
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.scope, r.count))
        .collect();
    assert!(
        !counts.iter().any(|(scope, _)| scope.contains(&ann.user_id)),
        "the refused credit left a count behind: {counts:?}"
    );
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<i32>(), 3, "{counts:?}");
    assert_eq!(rewards(&app).await, 1);
    assert_sound(&app).await;
}

#[tokio::test]
async fn the_existing_format_verifies_rs256_when_a_public_key_is_set() {
    use rsa::{
        pkcs1v15::SigningKey, pkcs8::EncodePublicKey, signature::SignatureEncoding,
        signature::Signer,
    };
    let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ssv.pem");
    std::fs::write(
        &path,
        private
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    let key_path = path.clone();
    let app = builder()
        .configure(move |c| c.ads.public_key_path = Some(key_path))
        .spawn()
        .await;
    let sam = app.register("sam@example.com", "sam").await;
    let nonce = gma_nonce(&app, &sam).await;
    let message = format!(
        "eventId=rs-1|uid={}|nonce={nonce}|amount=5|duration=30",
        sam.user_id
    );
    let signer = SigningKey::<sha2::Sha256>::new(private);
    let sig = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        signer.sign(message.as_bytes()).to_bytes(),
    );
    let q = |sig: &str| {
        format!(
            "/ads/ssv?eventId=rs-1&uid={}&nonce={nonce}&amount=5&duration=30&sig={sig}",
            sam.user_id
        )
    };
    // The HMAC of SSV_SECRET no longer counts once a public key is set.
    let hmac = tessera::ads::ticket::hmac_hex(b"ssv-secret", message.as_bytes());
    let (status, body) = get(&app, &q(&hmac)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("bad_signature"))
    );
    let (status, body) = get(&app, &q(&sig)).await;
    assert_eq!(
        (status, body["credited"].as_i64()),
        (200, Some(5)),
        "{body}"
    );
    assert_eq!(balance(&app, &sam).await, 5);
}

#[tokio::test]
async fn twenty_completions_of_one_nonce_credit_once() {
    let app = builder().spawn().await;
    let sam = app.register("sam@example.com", "sam").await;
    let (_, t) = ticket(&app, &sam).await;
    advance(&app, 31);
    let answers = join_all((0..20).map(|_| complete(&app, &sam, &t, 31))).await;
    let outcomes: Vec<String> = answers.iter().map(outcome).collect();
    assert_eq!(
        outcomes.iter().filter(|o| *o == "CREDITED").count(),
        1,
        "{outcomes:?}"
    );
    assert!(outcomes.iter().all(|o| o == "CREDITED" || o == "DUPLICATE"));
    assert_eq!(balance(&app, &sam).await, 5);
    assert_eq!(rewards(&app).await, 1);
    assert_sound(&app).await;
}

#[tokio::test]
async fn twenty_deliveries_of_one_transaction_credit_once() {
    let (google, app) = with_google(|c| {
        c.ads.ads_ssv_rate = "100/1s".parse().unwrap();
    })
    .await;
    let sam = app.register("sam@example.com", "sam").await;
    let nonce = gma_nonce(&app, &sam).await;
    let q = google.callback(&google_params(
        &nonce,
        &sam.user_id,
        "tx-race",
        &now_ms(&app),
    ));
    let path = format!("/ads/ssv?{q}");
    let answers = join_all((0..20).map(|_| get(&app, &path))).await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    let credited: i64 = answers
        .iter()
        .map(|(_, b)| b["credited"].as_i64().unwrap())
        .sum();
    assert_eq!(credited, 5);
    assert_eq!(balance(&app, &sam).await, 5);
    assert_eq!(rewards(&app).await, 1);
    assert_sound(&app).await;
}

#[tokio::test]
async fn sixty_completions_racing_a_cap_of_forty_credit_forty() {
    let app = builder()
        .configure(|c| {
            c.ads.min_interval = 0;
            c.ads.daily_cap_device = 1000;
            c.ads.ads_daily_cap_ip = 1000;
            c.ads.ads_prepare_rate = "1000/1s".parse().unwrap();
        })
        .spawn()
        .await;
    let sam = app.register("sam@example.com", "sam").await;
    verified(&app, &sam).await;
    let mut tickets = Vec::new();
    for _ in 0..60 {
        tickets.push(ticket(&app, &sam).await.1);
    }
    advance(&app, 31);
    let answers = join_all(tickets.iter().map(|t| complete(&app, &sam, t, 31))).await;
    let credited = answers
        .iter()
        .filter(|b| b["data"]["completeAdReward"]["status"] == "CREDITED")
        .count();
    let capped = answers
        .iter()
        .filter(|b| error_of(b) == ("RATE_LIMITED".into(), "daily_cap_user".into()))
        .count();
    assert_eq!((credited, capped), (40, 20), "{answers:?}");
    assert_eq!(balance(&app, &sam).await, 200);
    assert_eq!(rewards(&app).await, 40);
    assert_sound(&app).await;
}

/// An app whose Monetag completions wait for the valued postback, its base URL and a user.
async fn postback_app() -> (TestApp, String, Session) {
    let app = builder()
        .configure(|c| {
            c.ads.monetag_require_postback = true;
            c.ads.min_interval = 0;
        })
        .spawn()
        .await;
    let base = format!("http://{}", app.addr);
    let sam = app.register("sam@example.com", "sam").await;
    (app, base, sam)
}

#[tokio::test]
async fn postbacks_release_completions_that_wait_for_them() {
    let (app, base, sam) = postback_app().await;

    // Completion first: PENDING until the valued postback.
    let (nonce, t) = ticket(&app, &sam).await;
    advance(&app, 31);
    assert_eq!(outcome(&complete(&app, &sam, &t, 31).await), "PENDING");
    assert_eq!(outcome(&complete(&app, &sam, &t, 31).await), "PENDING");
    assert_eq!(balance(&app, &sam).await, 0);
    let (status, body) = monetag_postback(&base, &nonce, "valued", "0.0042")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["credited"], 5);
    assert_eq!(balance(&app, &sam).await, 5);
    let (status, body) = monetag_postback(&base, &nonce, "valued", "0.0042")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["duplicate"],
        true
    );
    assert_eq!(outcome(&complete(&app, &sam, &t, 31).await), "DUPLICATE");
    let row = tessera::ads::entity::ad_nonce::Entity::find_by_id(nonce.clone())
        .one(app.state.db.conn())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.estimated_price.as_deref(), Some("0.0042"));
    assert_eq!(row.postback_event.as_deref(), Some("valued"));

    // Postback first: the completion credits at once.
    let (nonce, t) = ticket(&app, &sam).await;
    let (status, _) = monetag_postback(&base, &nonce, "valued", "0.003")
        .await
        .unwrap();
    assert_eq!(status, 200);
    advance(&app, 31);
    assert_eq!(outcome(&complete(&app, &sam, &t, 31).await), "CREDITED");

    // A not-valued postback releases nothing.
    let (nonce, t) = ticket(&app, &sam).await;
    monetag_postback(&base, &nonce, "not_valued", "0")
        .await
        .unwrap();
    advance(&app, 31);
    assert_eq!(outcome(&complete(&app, &sam, &t, 31).await), "PENDING");

    let (status, body) = monetag_postback(&base, "never-issued", "valued", "1")
        .await
        .unwrap();
    assert_eq!(status, 409);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "unknown_nonce"
    );
    assert_eq!(balance(&app, &sam).await, 10);
    assert_sound(&app).await;
}

#[tokio::test]
async fn callbacks_for_a_disabled_account_credit_nothing() {
    use sea_orm::{ColumnTrait, QueryFilter, sea_query::Expr};
    use tessera::identity::entity::user;
    let (app, base, sam) = postback_app().await;
    let gma = gma_nonce(&app, &sam).await;
    let (monetag, t) = ticket(&app, &sam).await;
    advance(&app, 31);
    assert_eq!(outcome(&complete(&app, &sam, &t, 31).await), "PENDING");
    let set_disabled = |at: Option<chrono::DateTime<chrono::Utc>>| {
        let (app, id) = (&app, sam.user_id.parse::<uuid::Uuid>().unwrap());
        async move {
            user::Entity::update_many()
                .col_expr(user::Column::DisabledAt, Expr::value(at))
                .filter(user::Column::Id.eq(id))
                .exec(app.state.db.conn())
                .await
                .unwrap();
        }
    };
    set_disabled(Some(chrono::Utc::now())).await;
    let p = [
        ("eventId", "ev-1"),
        ("uid", sam.user_id.as_str()),
        ("nonce", gma.as_str()),
        ("amount", "5"),
        ("duration", "31"),
    ];
    let (status, body) = get(&app, &format!("/ads/ssv?{}", legacy_query(&p))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("account_disabled"))
    );
    let (status, body) = monetag_postback(&base, &monetag, "valued", "0.004")
        .await
        .unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "account_disabled"
    );
    assert_eq!(rewards(&app).await, 0);
    assert_sound(&app).await;

    // Enabled again: the same callbacks credit, once each.
    set_disabled(None).await;
    let (status, body) = get(&app, &format!("/ads/ssv?{}", legacy_query(&p))).await;
    assert_eq!((status, body["credited"].as_i64()), (200, Some(5)));
    let (status, body) = monetag_postback(&base, &monetag, "valued", "0.004")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["credited"], 5);
    assert_eq!((balance(&app, &sam).await, rewards(&app).await), (10, 2));
    assert_sound(&app).await;
}

#[tokio::test]
async fn postbacks_are_rate_limited() {
    let app = builder()
        .configure(|c| c.ads.ads_postback_rate = "3/10s".parse().unwrap())
        .spawn()
        .await;
    let base = format!("http://{}", app.addr);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(monetag_postback(&base, "x", "valued", "1").await.unwrap().0);
    }
    assert_eq!(statuses, vec![409, 409, 409, 429, 429]);
}

#[tokio::test]
async fn a_redis_outage_never_credits_twice() {
    let Some(mut proxy) = redis_proxy().await else {
        return;
    };
    let app = builder()
        .redis_url(format!("redis://{}", proxy.addr))
        .configure(|c| c.kv_command_timeout = "300ms".parse().unwrap())
        .spawn()
        .await;
    let sam = app.register("sam@example.com", "sam").await;
    let (_, t) = ticket(&app, &sam).await;
    advance(&app, 31);
    proxy.cut();
    // Sign-in checks need kv (they fail closed), so the completions come straight to the
    // service, as the resolver would hand them over, from the device that prepared.
    let meta = tessera::graphql::RequestMeta {
        request_id: "outage".into(),
        peer: None,
        client_ip: Some("127.0.0.1".parse().unwrap()),
        user_agent: Some(UA.into()),
        authorization: None,
        cookies: None,
        client: None,
    };
    let user: uuid::Uuid = sam.user_id.parse().unwrap();
    let answers =
        join_all((0..10).map(|_| tessera::ads::service::complete(&app.state, user, &meta, &t, 31)))
            .await;
    let outcomes: Vec<String> = answers
        .iter()
        .map(|a| match a {
            Ok(done) => done.outcome.as_str().to_owned(),
            Err(e) => format!("{:?}", e.code),
        })
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| *o == "credited").count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes.iter().all(|o| o == "credited" || o == "duplicate"),
        "{outcomes:?}"
    );
    proxy.restore().await;
    // Back: the same ticket is still a duplicate, whatever kv forgot.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut last = Value::Null;
    for _ in 0..20 {
        last = complete(&app, &sam, &t, 31).await;
        if last["errors"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(outcome(&last), "DUPLICATE");
    assert_eq!(rewards(&app).await, 1);
    assert_eq!(balance(&app, &sam).await, 5);
    assert_sound(&app).await;
}

async fn stats(app: &TestApp, admin: &Session) -> Value {
    let body = app
        .graphql_as(
            &admin.access,
            "{ admin { adStats { failureRatio effectiveDailyCap rewardsToday coinsToday } } }",
            json!({}),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["admin"]["adStats"].clone()
}

#[tokio::test]
async fn the_failure_window_halves_the_cap_for_thirty_minutes() {
    let app = TestApp::builder()
        .configure(|c| {
            ads_on(c);
            c.identity.admin_emails = vec!["boss@example.com".into()];
            c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        })
        .spawn()
        .await;
    let boss = app.register("boss@example.com", "boss").await;
    let before = stats(&app, &boss).await;
    assert_eq!(before["failureRatio"], 0.0);
    assert_eq!(before["effectiveDailyCap"], 40);
    let eve = app.register("eve@example.com", "eve").await;
    let forbidden = app
        .graphql_as(
            &eve.access,
            "{ admin { adStats { failureRatio } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_of(&forbidden).0, "FORBIDDEN");

    let bad = |i: usize, from: String| {
        let app = &app;
        let uid = boss.user_id.clone();
        async move {
            let q =
                format!("/ads/ssv?eventId=bad-{i}&uid={uid}&nonce=n&amount=5&duration=30&sig=00");
            let r = app
                .client
                .get(app.url(&q))
                .header("x-forwarded-for", from)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400);
        }
    };
    // One address alone counts a few failures a minute: not enough to move the window.
    for i in 0..25 {
        bad(i, "203.0.113.50".into()).await;
    }
    assert_eq!(stats(&app, &boss).await["failureRatio"], 0.0);
    // Many addresses failing do.
    for i in 0..25 {
        bad(100 + i, format!("198.51.100.{i}")).await;
    }
    let during = stats(&app, &boss).await;
    assert_eq!(during["failureRatio"], 1.0, "{during}");
    assert_eq!(during["effectiveDailyCap"], 20);
    let status = gql(&app, &eve, STATUS, json!({})).await;
    assert_eq!(
        status["data"]["adRewardStatus"]["dailyCap"], 10,
        "halved again for a new unverified account"
    );
    advance(&app, 29 * 60);
    assert_eq!(
        stats(&app, &boss).await["effectiveDailyCap"],
        20,
        "still inside the window"
    );
    advance(&app, 2 * 60);
    let after = stats(&app, &boss).await;
    assert_eq!(after["failureRatio"], 0.0, "{after}");
    assert_eq!(after["effectiveDailyCap"], 40);
}

#[tokio::test]
async fn verified_callbacks_weigh_against_failures_in_the_window() {
    let app = TestApp::builder()
        .configure(|c| {
            ads_on(c);
            c.ads.min_interval = 0;
            c.ads.ads_prepare_rate = "1000/1s".parse().unwrap();
            c.ads.ads_ssv_rate = "1000/1s".parse().unwrap();
            c.identity.admin_emails = vec!["boss@example.com".into()];
            c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        })
        .spawn()
        .await;
    let boss = app.register("boss@example.com", "boss").await;
    verified(&app, &boss).await;
    for i in 0..20 {
        let nonce = gma_nonce(&app, &boss).await;
        let event = format!("ok-{i}");
        let p = [
            ("eventId", event.as_str()),
            ("uid", boss.user_id.as_str()),
            ("nonce", nonce.as_str()),
            ("amount", "5"),
            ("duration", "31"),
        ];
        let (status, body) = get(&app, &format!("/ads/ssv?{}", legacy_query(&p))).await;
        assert_eq!((status, body["credited"].as_i64()), (200, Some(5)));
    }
    // Twenty failures from as many addresses: half of what the window saw, at once (the
    // successes are summed in memory and written by the first failure, not a second later).
    for i in 0..20 {
        let q = format!(
            "/ads/ssv?eventId=bad-{i}&uid={}&nonce=n&amount=5&duration=30&sig=00",
            boss.user_id
        );
        let r = app
            .client
            .get(app.url(&q))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
    let during = stats(&app, &boss).await;
    assert_eq!(during["failureRatio"], 0.5, "{during}");
}

#[tokio::test]
async fn metrics_name_every_ads_series() {
    let app = builder()
        .configure(|c| c.ads.min_interval = 0)
        .spawn()
        .await;
    let sam = app.register("sam@example.com", "sam").await;
    let (_, t) = ticket(&app, &sam).await;
    advance(&app, 31);
    assert_eq!(outcome(&complete(&app, &sam, &t, 31).await), "CREDITED");
    let bad = prepare(&app, &sam, "MONETAG", "lobby").await;
    assert_eq!(error_of(&bad).1, "placement_not_allowed");
    assert_eq!(get(&app, "/ads/ssv?eventId=e").await.0, 400);
    let _ = gql(&app, &sam, STATUS, json!({})).await;
    let text = app.metrics().await;
    for series in [
        "rewarded_ads_prepare_total{",
        "rewarded_ads_ssv_total{",
        "rewarded_ads_reward_amount_total{",
        "rewarded_ads_failure_ratio",
        "rewarded_ads_effective_daily_cap",
        "rewarded_ads_complete_total{",
    ] {
        assert!(text.contains(series), "{series} missing from /metrics");
    }
    for labelled in [
        "status=\"ok\"",
        "status=\"placement_not_allowed\"",
        "status=\"credited\"",
        "status=\"missing_parameter\"",
        "network=\"monetag\"",
        "placement=\"earn\"",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("rewarded_ads_") && l.contains(labelled)),
            "no ads series with {labelled}"
        );
    }
}

#[tokio::test]
async fn dev_fakes_earn_coins_through_the_real_paths() {
    let app = TestApp::builder()
        .configure(|c| {
            c.ads.ads_dev_fakes = Some(true);
            c.ads.ads_dev_ad_seconds = 1;
        })
        .spawn()
        .await;
    let sam = app.register("sam@example.com", "sam").await;
    let body = prepare(&app, &sam, "MONETAG", "earn").await;
    let t = &body["data"]["prepareAdReward"];
    let script = t["monetag"]["scriptUrl"].as_str().unwrap().to_owned();
    let zone = t["monetag"]["zoneId"].as_str().unwrap().to_owned();
    assert_eq!(script, "/dev/ads/monetag.js", "same-origin: {body}");
    let sdk = app.client.get(app.url(&script)).send().await.unwrap();
    assert_eq!(sdk.status(), 200);
    assert!(sdk.text().await.unwrap().contains(&format!("show_{zone}")));

    let body = prepare(&app, &sam, "GMA", "earn").await;
    let t = &body["data"]["prepareAdReward"];
    let nonce = t["nonce"].as_str().unwrap().to_owned();
    let player = t["adTagUrl"].as_str().unwrap().to_owned();
    assert!(player.starts_with("/dev/ads/gma/player?"), "{player}");
    let page = app.client.get(app.url(&player)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/dev/ads/gma/complete"));
    let keys = app
        .client
        .get(app.url("/dev/ads/verifier-keys.json"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert!(keys["keys"][0]["keyId"].is_u64(), "{keys}");
    let r = app
        .client
        .post(app.url("/dev/ads/gma/complete"))
        .json(&json!({"nonce": nonce}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["credited"], 5);
    assert_eq!(balance(&app, &sam).await, 5);

    // Off by default with PostgreSQL, and never for a public address.
    let mut config = Config::from_args(["--public-url", "https://coins.example"]).unwrap();
    config.ads.ads_dev_fakes = Some(true);
    let err = config.validate().unwrap_err();
    assert_eq!(err.variable, "ADS_DEV_FAKES");
    let pg = Config::from_args(["--database-url", "postgres://x@127.0.0.1/db"]).unwrap();
    assert!(!pg.ads_dev_fakes());
}

#[tokio::test]
async fn dev_fake_routes_are_gone_when_off() {
    let app = builder().spawn().await;
    for path in [
        "/dev/ads/verifier-keys.json",
        "/dev/ads/monetag.js",
        "/dev/ads/gma/player",
    ] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = app
        .client
        .post(app.url("/dev/ads/gma/complete"))
        .json(&json!({"nonce": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn prepare_and_ssv_are_rate_limited_and_ssv_honours_the_caps() {
    let (google, app) = with_google(|c| {
        c.ads.ads_prepare_rate = "3/10s".parse().unwrap();
        c.ads.ads_ssv_rate = "2/10s".parse().unwrap();
        c.ads.daily_cap_user = 2;
        c.ads.rwd_per_day_min = 1;
        c.ads.min_interval = 0;
    })
    .await;
    let sam = app.register("sam@example.com", "sam").await;
    let mut nonces = Vec::new();
    for _ in 0..3 {
        nonces.push(gma_nonce(&app, &sam).await);
    }
    let limited = prepare(&app, &sam, "GMA", "earn").await;
    assert_eq!(
        error_of(&limited),
        ("RATE_LIMITED".into(), "rate_limited".into())
    );
    assert!(
        limited["errors"][0]["extensions"]["retryAfter"]
            .as_u64()
            .unwrap()
            >= 1
    );

    // A new account's cap is 1 (half of 2): the second credit is refused with 429.
    let ts = now_ms(&app);
    let q = google.callback(&google_params(&nonces[0], &sam.user_id, "t-0", &ts));
    assert_eq!(get(&app, &format!("/ads/ssv?{q}")).await.0, 200);
    let q = google.callback(&google_params(&nonces[1], &sam.user_id, "t-1", &ts));
    let (status, body) = get(&app, &format!("/ads/ssv?{q}")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("daily_cap_user"))
    );
    // The third callback for this (address, user) within 10 s is over the SSV rate.
    let q = google.callback(&google_params(&nonces[2], &sam.user_id, "t-2", &ts));
    let r = app
        .client
        .get(app.url(&format!("/ads/ssv?{q}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "rate_limited");
    assert_eq!(balance(&app, &sam).await, 5);
    assert_eq!(rewards(&app).await, 1);
}

#[tokio::test]
async fn a_credit_reaches_wallet_changed_subscribers() {
    let app = builder().spawn().await;
    let sam = app.register("sam@example.com", "sam").await;
    let mut ws = app.ws_signed_in(&sam.access).await;
    crate::helpers::ws_send(
        &mut ws,
        json!({"id": "w", "type": "subscribe", "payload": {"query": "subscription { walletChanged { balance } }"}}),
    )
    .await;
    // The subscription is live once a change made after it arrives; give it a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, t) = ticket(&app, &sam).await;
    advance(&app, 31);
    assert_eq!(outcome(&complete(&app, &sam, &t, 31).await), "CREDITED");
    let message = tokio::time::timeout(Duration::from_secs(5), crate::helpers::ws_next(&mut ws))
        .await
        .expect("walletChanged within 5 s");
    assert_eq!(message["type"], "next", "{message}");
    assert_eq!(message["payload"]["data"]["walletChanged"]["balance"], 5);
}

#[tokio::test]
async fn google_callbacks_are_read_from_the_signed_part_and_for_our_ad_units_only() {
    let (google, app) = with_google(|c| {
        c.ads.ads_ssv_ad_units = vec!["1234567890".into()];
        c.ads.min_interval = 0;
    })
    .await;
    let sam = app.register("sam@example.com", "sam").await;
    let eve = app.register("eve@example.com", "eve").await;
    let sams = gma_nonce(&app, &sam).await;
    let eves = gma_nonce(&app, &eve).await;
    let ts = now_ms(&app);
    // Eve appends her own nonce and id after a callback signed for Sam's: refused, unread.
    let signed = google.callback(&google_params(&sams, &sam.user_id, "tx-a", &ts));
    let appended = format!(
        "{signed}&custom_data={eves}&user_id={}&transaction_id=tx-b",
        eve.user_id
    );
    let (status, body) = get(&app, &format!("/ads/ssv?{appended}")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("missing_parameter"))
    );
    assert_eq!(balance(&app, &eve).await, 0);
    // Another publisher's ad unit, validly signed by Google: not credited here.
    let mut foreign = google_params(&eves, &eve.user_id, "tx-c", &ts);
    foreign[1] = ("ad_unit", "9999999999");
    let (status, body) = get(&app, &format!("/ads/ssv?{}", google.callback(&foreign))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unknown_ad_unit"))
    );
    assert_eq!(balance(&app, &eve).await, 0);
    // The untouched callback credits its own user.
    let (status, body) = get(&app, &format!("/ads/ssv?{signed}")).await;
    assert_eq!((status, body["credited"].as_i64()), (200, Some(5)));
    assert_eq!(balance(&app, &sam).await, 5);
}

#[tokio::test]
async fn postbacks_need_the_configured_key() {
    let app = builder()
        .configure(|c| {
            c.ads.monetag_require_postback = true;
            c.ads.monetag_postback_key = Some(tessera::config::Secret::new("pb-key"));
        })
        .spawn()
        .await;
    let sam = app.register("sam@example.com", "sam").await;
    let (nonce, t) = ticket(&app, &sam).await;
    advance(&app, 31);
    assert_eq!(outcome(&complete(&app, &sam, &t, 31).await), "PENDING");
    // What a client could send itself: the ymid it was given, without the key.
    let (status, body) = monetag_postback(&format!("http://{}", app.addr), &nonce, "valued", "1")
        .await
        .unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "bad_postback_key"
    );
    let wrong = get(
        &app,
        &format!("/ads/monetag/postback?ymid={nonce}&reward_event_type=valued&key=nope"),
    )
    .await;
    assert_eq!(wrong.0, 403);
    assert_eq!(balance(&app, &sam).await, 0);
    let (status, body) = get(
        &app,
        &format!("/ads/monetag/postback?ymid={nonce}&reward_event_type=valued&estimated_price=0.01&key=pb-key"),
    )
    .await;
    assert_eq!(
        (status, body["credited"].as_i64()),
        (200, Some(5)),
        "{body}"
    );
    assert_eq!(balance(&app, &sam).await, 5);
}

#[tokio::test]
async fn two_accounts_on_one_device_share_its_cooldown_under_a_race() {
    let app = builder().spawn().await;
    let sam = app.register("sam@example.com", "sam").await;
    let ann = app.register("ann@example.com", "ann").await;
    let (_, t1) = ticket(&app, &sam).await;
    let (_, t2) = ticket(&app, &ann).await;
    advance(&app, 31);
    let (a, b) = futures_util::join!(complete(&app, &sam, &t1, 31), complete(&app, &ann, &t2, 31));
    let credited = [&a, &b]
        .iter()
        .filter(|x| x["data"]["completeAdReward"]["status"] == "CREDITED")
        .count();
    let cooled = [&a, &b]
        .iter()
        .filter(|x| error_of(x) == ("RATE_LIMITED".into(), "cooldown".into()))
        .count();
    assert_eq!((credited, cooled), (1, 1), "{a} {b}");
    assert_eq!(rewards(&app).await, 1);
    assert_sound(&app).await;
}

#[tokio::test]
async fn an_ad_tag_played_to_the_end_is_credited_by_googles_callback() {
    // Google's side on loopback: keys, the ad server answering the tag with VAST, and the
    // callback it sends when the ad's `complete` pixel arrives.
    let google = GoogleSsv::start("127.0.0.1:0").await.unwrap();
    let unit = "/21775744923/tessera/rewarded";
    let (keys, tag, sdk) = (
        google.keys_url(),
        google.ad_tag_base(unit),
        google.ima_sdk_url(),
    );
    let app = builder()
        .configure(move |c| {
            c.ads.ads_ssv_keys_url = Some(keys.parse().unwrap());
            c.ads.ad_tag_base = Some(tag.parse().unwrap());
            c.ads.ima_sdk_url = sdk.parse().unwrap();
            c.ads.ads_ssv_ad_units = vec![unit.to_owned()];
        })
        .spawn()
        .await;
    google.send_callbacks_to(&app.url("/ads/ssv"));
    let ivy = app.register("ivy@example.com", "ivy").await;
    let status = gql(&app, &ivy, "{ adRewardStatus { imaSdkUrl } }", json!({})).await;
    assert_eq!(
        status["data"]["adRewardStatus"]["imaSdkUrl"],
        google.ima_sdk_url()
    );

    let body = prepare(&app, &ivy, "GMA", "earn").await;
    let tag = body["data"]["prepareAdReward"]["adTagUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    // What the IMA SDK does: fetch the tag, read the VAST, fire the pixels as it plays.
    let vast = reqwest::get(&tag).await.unwrap().text().await.unwrap();
    let pixel = |event: &str| {
        let start = vast
            .find(event)
            .unwrap_or_else(|| panic!("{event} in {vast}"));
        let rest = &vast[start..];
        let open = rest.find("<![CDATA[").unwrap() + "<![CDATA[".len();
        let close = rest.find("]]>").unwrap();
        rest[open..close].to_owned()
    };
    let impression = pixel("<Impression>");
    let complete = pixel(r#"<Tracking event="complete">"#);
    assert_eq!(reqwest::get(&impression).await.unwrap().status(), 200);
    assert_eq!(
        balance(&app, &ivy).await,
        0,
        "an impression is not a reward"
    );
    assert_eq!(reqwest::get(&complete).await.unwrap().status(), 200);
    assert_eq!(google.callbacks(), vec![200]);
    assert_eq!(balance(&app, &ivy).await, 5);
    // The same pixel again is another callback for the same nonce: nothing more.
    assert_eq!(reqwest::get(&complete).await.unwrap().status(), 200);
    assert_eq!(google.callbacks().len(), 2);
    assert_eq!(balance(&app, &ivy).await, 5);
    assert_eq!(rewards(&app).await, 1);
    assert_sound(&app).await;
}

/// A GMA nonce prepared from a device and address of the user's own (trusted proxy
/// headers), so that its credit shares no cap scope with another user's.
async fn own_device_nonce(app: &TestApp, s: &Session, i: usize) -> String {
    let response = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&s.access)
        .header("user-agent", format!("{UA} Device/{i}"))
        .header("x-forwarded-for", format!("198.51.{}.7", 100 + i))
        .json(&json!({
            "query": PREPARE,
            "variables": {"i": {"provider": "GMA", "placement": "boost"}},
        }))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["prepareAdReward"]["nonce"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The credit a callback for `nonce` with `event` asks for.
async fn credit_job(app: &TestApp, nonce: &str, event: &str) -> tessera::ads::service::CreditJob {
    use tessera::ads::{entity::ad_nonce, service};
    let row = ad_nonce::Entity::find_by_id(nonce.to_owned())
        .one(app.state.db.conn())
        .await
        .unwrap()
        .unwrap();
    service::CreditJob {
        grant: service::Grant::from(&row),
        caps: service::caps_for(&app.state, false).await,
        network: "test".into(),
        event_id: Some(event.into()),
        amount: app.state.config.ads.reward_amount,
    }
}

/// What each credit of a batch was answered: `credited:<balance>`, `duplicate` or the
/// refusal's reason.
fn said(answers: &[tessera::ads::batch::Answer]) -> Vec<String> {
    answers
        .iter()
        .map(|a| match a {
            Ok(Some((_, balance))) => format!("credited:{balance}"),
            Ok(None) => "duplicate".into(),
            Err(e) => e.label().to_owned(),
        })
        .collect()
}

/// Credits counted under `how` in `rewarded_ads_credit_writes`.
async fn credit_writes(app: &TestApp, how: &str) -> u64 {
    let text = app.metrics().await;
    text.lines()
        .filter(|l| {
            l.starts_with("rewarded_ads_credit_writes_total{")
                && l.contains(&format!("how=\"{how}\""))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

fn many_users(c: &mut Config) {
    c.identity.login_rate_limit_per_ip = 1000;
    c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    c.ads.ads_prepare_rate = "1000/1s".parse().unwrap();
    c.ads.ads_ssv_rate = "1000/1s".parse().unwrap();
}

/// `n` users, each with a GMA nonce prepared on a device and address of their own.
async fn people_with_nonces(app: &TestApp, n: usize) -> Vec<(Session, String)> {
    let mut people = Vec::with_capacity(n);
    for i in 0..n {
        let s = app
            .register(&format!("user{i}@example.com"), &format!("user{i}"))
            .await;
        let nonce = own_device_nonce(app, &s, i).await;
        people.push((s, nonce));
    }
    people
}

#[tokio::test]
async fn credits_written_together_each_land_once_with_their_own_balances() {
    use tessera::{ads::batch, wallet::entity::transfer};
    // The cooldown is on (30 s), so the batch also locks the users and looks for recent
    // rewards.
    let app = builder().configure(many_users).spawn().await;
    let people = people_with_nonces(&app, 6).await;
    let mut jobs = Vec::new();
    for (i, (_, nonce)) in people.iter().enumerate() {
        jobs.push(credit_job(&app, nonce, &format!("ev-{i}")).await);
    }
    let answers = batch::write_batch(&app.state, jobs.clone()).await;
    let mut transfers = Vec::new();
    for answer in &answers {
        let (reward, balance) = answer.as_ref().unwrap().as_ref().expect("credited");
        assert_eq!(*balance, 5);
        transfers.push(reward.transfer_id);
    }
    assert_eq!(credit_writes(&app, "batched").await, 6);
    for (s, _) in &people {
        assert_eq!(balance(&app, s).await, 5);
    }
    assert_eq!(rewards(&app).await, 6);
    // Every transfer left the ads account's shard 5 coins lower than the one before.
    let mut after: Vec<i64> = Vec::new();
    for id in transfers {
        let t = transfer::Entity::find_by_id(id)
            .one(app.state.db.conn())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((t.amount, t.kind.as_str()), (5, "ad_reward"));
        after.push(t.debit_balance_after);
    }
    assert!(after.windows(2).all(|w| w[0] - w[1] == 5), "{after:?}");
    assert_sound(&app).await;

    // The same credits again: every nonce is claimed, nothing moves.
    let again = batch::write_batch(&app.state, jobs).await;
    assert!(again.iter().all(|a| matches!(a, Ok(None))), "{again:?}");
    assert_eq!(rewards(&app).await, 6);
    for (s, _) in &people {
        assert_eq!(balance(&app, s).await, 5);
    }
    assert_sound(&app).await;
}

#[tokio::test]
async fn a_batch_meeting_a_refusal_is_written_one_by_one_and_each_answer_is_its_own() {
    use tessera::ads::{batch, entity::ad_nonce};
    let app = builder()
        .configure(|c| {
            many_users(c);
            c.ads.min_interval = 0;
            c.ads.daily_cap_user = 1;
            c.ads.rwd_per_day_min = 1;
        })
        .spawn()
        .await;
    let (people, nonces): (Vec<_>, Vec<_>) = people_with_nonces(&app, 6).await.into_iter().unzip();
    // u2's second ad is prepared while the cap still has room.
    let second = own_device_nonce(&app, &people[2], 2).await;
    // Earlier today: u1, u2 and u5 were credited (u5 for the network's event "ev-dup").
    let earlier = vec![
        credit_job(&app, &nonces[1], "ev-1").await,
        credit_job(&app, &nonces[2], "ev-2").await,
        credit_job(&app, &nonces[5], "ev-dup").await,
    ];
    let answers = batch::write_batch(&app.state, earlier).await;
    assert!(
        answers.iter().all(|a| matches!(a, Ok(Some(_)))),
        "{answers:?}"
    );
    assert_eq!(credit_writes(&app, "batched").await, 3);

    // Now a fresh one (u0), u1's nonce again, u2 over the user cap, u3 naming u5's event,
    // and a fresh one (u4).
    let jobs = vec![
        credit_job(&app, &nonces[0], "ev-0").await,
        credit_job(&app, &nonces[1], "ev-1b").await,
        credit_job(&app, &second, "ev-2b").await,
        credit_job(&app, &nonces[3], "ev-dup").await,
        credit_job(&app, &nonces[4], "ev-4").await,
    ];
    let answers = batch::write_batch(&app.state, jobs).await;
    let said = said(&answers);
    assert_eq!(
        said,
        [
            "credited:5",
            "duplicate",
            "daily_cap_user",
            "duplicate",
            "credited:5"
        ]
    );
    assert_eq!(credit_writes(&app, "fallback").await, 5);
    let balances = join_all(people.iter().map(|s| balance(&app, s))).await;
    assert_eq!(balances, [5, 5, 5, 0, 5, 5]);
    assert_eq!(rewards(&app).await, 5);
    // What was refused is not used up: those nonces can still be credited.
    for nonce in [&second, &nonces[3]] {
        let row = ad_nonce::Entity::find_by_id(nonce.clone())
            .one(app.state.db.conn())
            .await
            .unwrap()
            .unwrap();
        assert!(row.credited_at.is_none(), "{nonce} was used up");
    }
    assert_sound(&app).await;
}

#[tokio::test]
async fn callbacks_of_many_users_arriving_together_credit_once_each() {
    let app = builder().configure(many_users).spawn().await;
    let people = people_with_nonces(&app, 24).await;
    let mut calls = Vec::new();
    for (i, (s, nonce)) in people.iter().enumerate() {
        let event = format!("ev-{i}");
        let p = [
            ("eventId", event.as_str()),
            ("uid", s.user_id.as_str()),
            ("nonce", nonce.as_str()),
            ("amount", "5"),
            ("duration", "31"),
        ];
        let path = format!("/ads/ssv?{}", legacy_query(&p));
        // Each callback is delivered twice at once.
        calls.push(path.clone());
        calls.push(path);
    }
    let answers = join_all(calls.iter().map(|p| get(&app, p))).await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    let credited: i64 = answers
        .iter()
        .map(|(_, b)| b["credited"].as_i64().unwrap())
        .sum();
    let duplicates = answers
        .iter()
        .filter(|(_, b)| b["duplicate"] == true)
        .count();
    assert_eq!((credited, duplicates), (24 * 5, 24));
    for (s, _) in &people {
        assert_eq!(balance(&app, s).await, 5);
    }
    assert_eq!(rewards(&app).await, 24);
    // Forty-eight callbacks at once are more than one credit transaction at a time.
    assert!(credit_writes(&app, "batched").await >= 2);
    assert_eq!(credit_writes(&app, "fallback").await, 0);
    assert_sound(&app).await;
}

#[tokio::test]
async fn a_credit_whose_caller_went_away_is_still_announced() {
    use tessera::ads::{entity::ad_nonce, service};
    let app = builder().configure(many_users).spawn().await;
    let people = people_with_nonces(&app, 1).await;
    let (_, nonce) = &people[0];
    let row = ad_nonce::Entity::find_by_id(nonce.clone())
        .one(app.state.db.conn())
        .await
        .unwrap()
        .unwrap();
    let state = app.state.clone();
    let caller = tokio::spawn(async move {
        service::credit(
            &state,
            &service::Grant::from(&row),
            Some(false),
            "gma",
            Some("ev-gone".into()),
        )
        .await
    });
    // The caller goes away as soon as the credit is written (a callback whose connection
    // dropped while it waited).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while rewards(&app).await == 0 {
        assert!(std::time::Instant::now() < deadline, "nothing was credited");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    caller.abort();
    // The credit is still counted, and its cooldown set in kv.
    let counted = |text: &str| {
        text.lines().any(|l| {
            l.starts_with("rewarded_ads_reward_amount_total{")
                && l.contains("network=\"gma\"")
                && l.ends_with(" 5")
        })
    };
    while !counted(&app.metrics().await) {
        assert!(
            std::time::Instant::now() < deadline,
            "the credit was never counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cooling = app
        .state
        .kv
        .get(&format!("ads:cool:user:{}", people[0].0.user_id))
        .await
        .unwrap();
    assert!(cooling.is_some(), "no cooldown in kv");
    assert_eq!(balance(&app, &people[0].0).await, 5);
    assert_sound(&app).await;
}

#[tokio::test]
async fn a_batch_meeting_a_running_cooldown_falls_back_and_names_it() {
    use tessera::ads::batch;
    // The cooldown is on (30 s): the batch looks for a recent reward of its users.
    let app = builder().configure(many_users).spawn().await;
    let people = people_with_nonces(&app, 3).await;
    // user0's second ad, prepared before the first is credited.
    let again = own_device_nonce(&app, &people[0].0, 0).await;
    let first = vec![
        credit_job(&app, &people[0].1, "ev-0").await,
        credit_job(&app, &people[1].1, "ev-1").await,
    ];
    let answers = batch::write_batch(&app.state, first).await;
    assert!(
        answers.iter().all(|a| matches!(a, Ok(Some(_)))),
        "{answers:?}"
    );
    let second = vec![
        credit_job(&app, &again, "ev-0b").await,
        credit_job(&app, &people[2].1, "ev-2").await,
    ];
    let answers = batch::write_batch(&app.state, second).await;
    let said = said(&answers);
    assert_eq!(said, ["cooldown", "credited:5"]);
    assert_eq!(credit_writes(&app, "fallback").await, 2);
    let balances = join_all(people.iter().map(|(s, _)| balance(&app, s))).await;
    assert_eq!(balances, [5, 5, 5]);
    assert_eq!(rewards(&app).await, 3);
    assert_sound(&app).await;
}
