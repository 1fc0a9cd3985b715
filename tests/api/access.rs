//! Access tokens end to end: buying with coins (and every refusal), listing and revoking,
//! and the proxy in front of a loopback upstream: credentials stripped, assertion signed,
//! hop-by-hop headers dropped, bodies streamed, holders' attenuations honoured, WebSockets
//! closed on revocation (on another instance too) and at expiry.

use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt, future::join_all};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tessera::wallet::service as wallet;
use tessera_fakes::upstream::{Upstream, page_body};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};
use url::Url;
use uuid::Uuid;

use crate::helpers::{Session, TestApp, TestAppBuilder, error_of, ws_close_code};

const SECRET: &str = "assertion-secret-for-tests";
const BUY: &str = "mutation($i: PurchaseAccessTokenInput!) { purchaseAccessToken(input: $i) { token accessToken { id name durationHours price status expiresAt transfer { amount kind } } } }";

fn builder(upstream: Option<String>) -> TestAppBuilder {
    TestApp::builder().configure(move |c| {
        c.identity.admin_emails = vec!["root@example.com".into()];
        c.access.access_proxy_upstream = upstream.map(|u| Url::parse(&u).unwrap());
        c.access.access_proxy_assertion_secret = Some(tessera::config::Secret::new(SECRET));
    })
}

async fn rich_user(app: &TestApp, email: &str, username: &str, coins: i64) -> Session {
    let user = app.register(email, username).await;
    if coins > 0 {
        wallet::transfer(
            &app.state,
            tessera::wallet::TransferRequest::new(
                tessera::wallet::Account::System(tessera::wallet::SystemAccount::Grants),
                tessera::wallet::Account::User(user.user_id.parse().unwrap()),
                coins,
                tessera::wallet::TransferKind::Grant,
            ),
        )
        .await
        .unwrap();
    }
    user
}

async fn buy(app: &TestApp, user: &Session, input: Value) -> Value {
    app.graphql_as(&user.access, BUY, json!({ "i": input }))
        .await
}

async fn token_for(app: &TestApp, user: &Session) -> (String, String) {
    let body = buy(app, user, json!({ "durationHours": 1, "name": "laptop" })).await;
    assert!(body["errors"].is_null(), "{body}");
    let p = &body["data"]["purchaseAccessToken"];
    (
        p["token"].as_str().unwrap().to_owned(),
        p["accessToken"]["id"].as_str().unwrap().to_owned(),
    )
}

async fn balance(app: &TestApp, user: &Session) -> i64 {
    wallet::balances(app.state.db.conn(), user.user_id.parse().unwrap())
        .await
        .unwrap()
        .0
}

async fn assert_sound(app: &TestApp) {
    let problems = wallet::check_invariants(app.state.db.conn()).await.unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
}

async fn revoke(app: &TestApp, user: &Session, id: &str) -> Value {
    app.graphql_as(
        &user.access,
        "mutation($id: ID!) { revokeAccessToken(id: $id) { id status revokedAt } }",
        json!({ "id": id }),
    )
    .await
}

async fn get(app: &TestApp, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(app.url(path));
    if let Some(token) = token {
        request = request.header("x-access-token", token);
    }
    request.send().await.unwrap()
}

/// A GET written byte for byte on a socket; returns the status code.
async fn raw_get(app: &TestApp, path: &str, token: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nX-Access-Token: {token}\r\nConnection: close\r\n\r\n",
        app.addr
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.contains("bad_path") || !text.starts_with("HTTP/1.1 400"),
        "{text}"
    );
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn refusal(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"].as_str().unwrap_or("").to_owned())
}

#[tokio::test]
async fn buying_lists_and_revoking() {
    let app = builder(None).spawn().await;
    let ann = rich_user(&app, "ann@example.com", "ann", 100).await;
    let prices = app
        .graphql("{ accessTokenPrices { durationHours price } }", json!({}))
        .await;
    assert_eq!(
        prices["data"]["accessTokenPrices"],
        json!([
            { "durationHours": 1, "price": 10 },
            { "durationHours": 12, "price": 100 },
            { "durationHours": 24, "price": 180 },
            { "durationHours": 168, "price": 1000 },
            { "durationHours": 720, "price": 3600 },
        ])
    );
    let body = buy(&app, &ann, json!({ "durationHours": 1, "name": "laptop" })).await;
    let bought = &body["data"]["purchaseAccessToken"];
    assert!(
        bought["token"].as_str().unwrap().starts_with("tsr_at_"),
        "{body}"
    );
    assert_eq!(bought["accessToken"]["status"], "ACTIVE");
    assert_eq!(bought["accessToken"]["transfer"]["kind"], "ACCESS_TOKEN");
    assert_eq!(bought["accessToken"]["transfer"]["amount"], 10);
    assert_eq!(balance(&app, &ann).await, 90);
    let id = bought["accessToken"]["id"].as_str().unwrap().to_owned();

    let list = "{ me { accessTokens { totalCount edges { node { id name status } } } all: accessTokens(activeOnly: false) { totalCount } } }";
    let body = app.graphql_as(&ann.access, list, json!({})).await;
    assert_eq!(
        body["data"]["me"]["accessTokens"]["totalCount"], 1,
        "{body}"
    );
    assert_eq!(
        body["data"]["me"]["accessTokens"]["edges"][0]["node"]["name"],
        "laptop"
    );

    // Someone else cannot see or revoke it.
    let bob = rich_user(&app, "bob@example.com", "bob", 0).await;
    assert_eq!(error_of(&revoke(&app, &bob, &id).await).0, "NOT_FOUND");

    let first = revoke(&app, &ann, &id).await;
    assert_eq!(
        first["data"]["revokeAccessToken"]["status"], "REVOKED",
        "{first}"
    );
    let again = revoke(&app, &ann, &id).await;
    assert_eq!(
        again["data"]["revokeAccessToken"]["revokedAt"],
        first["data"]["revokeAccessToken"]["revokedAt"],
        "revoking twice changes nothing"
    );
    let body = app.graphql_as(&ann.access, list, json!({})).await;
    assert_eq!(body["data"]["me"]["accessTokens"]["totalCount"], 0);
    assert_eq!(body["data"]["me"]["all"]["totalCount"], 1);

    // Admins list and revoke anyone's, audited.
    let (_, other) = token_for(&app, &ann).await;
    let root = app.register("root@example.com", "root").await;
    let all = app
        .graphql_as(
            &root.access,
            "query($u: ID) { admin { accessTokens(userId: $u, activeOnly: true) { totalCount } } }",
            json!({ "u": ann.user_id }),
        )
        .await;
    assert_eq!(
        all["data"]["admin"]["accessTokens"]["totalCount"], 1,
        "{all}"
    );
    let by_admin = revoke(&app, &root, &other).await;
    assert_eq!(by_admin["data"]["revokeAccessToken"]["status"], "REVOKED");
    let audit = tessera::platform::audit::recent(app.state.db.conn(), 5)
        .await
        .unwrap();
    assert!(audit.iter().any(|e| e.action == "access_token.revoke"));
    let denied = app
        .graphql_as(
            &bob.access,
            "{ admin { accessTokens { totalCount } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_of(&denied).0, "FORBIDDEN");
    assert_sound(&app).await;
}

#[tokio::test]
async fn purchase_refusals_change_nothing() {
    let app = builder(None)
        .configure(|c| c.access.access_token_max_active = 3)
        .spawn()
        .await;
    let cy = rich_user(&app, "cy@example.com", "cy.c", 45).await;
    for (input, code, reason) in [
        (
            json!({ "durationHours": 2 }),
            "BAD_USER_INPUT",
            "duration_not_offered",
        ),
        (
            json!({ "durationHours": 1, "name": "n".repeat(65) }),
            "BAD_USER_INPUT",
            "name_too_long",
        ),
        (
            json!({ "durationHours": 12 }),
            "INSUFFICIENT_FUNDS",
            "insufficient_funds",
        ),
    ] {
        let body = buy(&app, &cy, input).await;
        assert_eq!(error_of(&body), (code.into(), reason.into()), "{body}");
    }
    assert_eq!(balance(&app, &cy).await, 45);
    let anonymous = app
        .graphql(BUY, json!({ "i": { "durationHours": 1 } }))
        .await;
    assert_eq!(error_of(&anonymous).0, "UNAUTHENTICATED");

    // The longest key accepted works (prefixes added inside do not push it over).
    let long = buy(
        &app,
        &cy,
        json!({ "durationHours": 1, "idempotencyKey": "k".repeat(160) }),
    )
    .await;
    assert!(long["errors"].is_null(), "{long}");
    // The same key for another request is a conflict; for the same one, a replay.
    let keyed = json!({ "durationHours": 1, "idempotencyKey": "k-1" });
    let a = buy(&app, &cy, keyed.clone()).await;
    let b = buy(&app, &cy, keyed).await;
    assert_eq!(
        a["data"]["purchaseAccessToken"]["accessToken"]["id"],
        b["data"]["purchaseAccessToken"]["accessToken"]["id"]
    );
    assert!(
        b["data"]["purchaseAccessToken"]["token"]
            .as_str()
            .unwrap()
            .starts_with("tsr_at_")
    );
    let other = buy(
        &app,
        &cy,
        json!({ "durationHours": 1, "name": "x", "idempotencyKey": "k-1" }),
    )
    .await;
    assert_eq!(
        error_of(&other),
        ("CONFLICT".into(), "idempotency_key_reused".into())
    );
    assert_eq!(balance(&app, &cy).await, 25);

    token_for(&app, &cy).await;
    let third = buy(&app, &cy, json!({ "durationHours": 1 })).await;
    assert_eq!(
        error_of(&third),
        ("CONFLICT".into(), "too_many_tokens".into())
    );
    assert_eq!(
        balance(&app, &cy).await,
        15,
        "the refused purchase was not charged"
    );
    assert_sound(&app).await;
}

#[tokio::test]
async fn a_replay_wins_over_an_empty_wallet_and_a_full_cap() {
    let app = builder(None)
        .configure(|c| c.access.access_token_max_active = 1)
        .spawn()
        .await;
    let hal = rich_user(&app, "hal@example.com", "hal", 10).await;
    let keyed = json!({ "durationHours": 1, "idempotencyKey": "last-coins" });
    let first = buy(&app, &hal, keyed.clone()).await;
    assert!(first["errors"].is_null(), "{first}");
    assert_eq!(balance(&app, &hal).await, 0);
    // Broke and at the cap: a new purchase is refused, the same one is answered again.
    let fresh = buy(&app, &hal, json!({ "durationHours": 1 })).await;
    assert_eq!(
        error_of(&fresh),
        ("CONFLICT".into(), "too_many_tokens".into())
    );
    let again = buy(&app, &hal, keyed).await;
    assert!(again["errors"].is_null(), "{again}");
    assert_eq!(
        again["data"]["purchaseAccessToken"]["accessToken"]["id"],
        first["data"]["purchaseAccessToken"]["accessToken"]["id"]
    );
    assert_eq!(balance(&app, &hal).await, 0);
    assert_sound(&app).await;
}

#[tokio::test]
async fn free_durations_write_no_transfer() {
    let app = builder(None)
        .configure(|c| c.access.access_token_prices = "1:0,24:5".into())
        .spawn()
        .await;
    let dee = rich_user(&app, "dee@example.com", "dee", 0).await;
    let body = buy(&app, &dee, json!({ "durationHours": 1 })).await;
    assert_eq!(
        body["data"]["purchaseAccessToken"]["accessToken"]["transfer"],
        Value::Null,
        "{body}"
    );
    assert_eq!(balance(&app, &dee).await, 0);
}

#[tokio::test]
async fn concurrent_purchases_charge_once_per_key_and_never_overdraw() {
    let app = builder(None)
        .configure(|c| c.access.access_token_max_active = 100)
        .spawn()
        .await;
    let eve = rich_user(&app, "eve@example.com", "eve", 100).await;
    let same_key = join_all((0..20).map(|_| {
        buy(
            &app,
            &eve,
            json!({ "durationHours": 1, "idempotencyKey": "once" }),
        )
    }))
    .await;
    let ids: Vec<&Value> = same_key
        .iter()
        .map(|b| &b["data"]["purchaseAccessToken"]["accessToken"]["id"])
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0] && id.is_string()),
        "{same_key:?}"
    );
    assert_eq!(balance(&app, &eve).await, 90);

    // 90 coins left: nine more tokens at 10, out of 50 tries.
    let many = join_all((0..50).map(|_| buy(&app, &eve, json!({ "durationHours": 1 })))).await;
    let ok = many.iter().filter(|b| b["errors"].is_null()).count();
    let broke = many
        .iter()
        .filter(|b| error_of(b).0 == "INSUFFICIENT_FUNDS")
        .count();
    assert_eq!((ok, broke), (9, 41));
    assert_eq!(balance(&app, &eve).await, 0);
    assert_sound(&app).await;
}

#[tokio::test]
async fn concurrent_purchases_never_pass_the_active_cap() {
    let app = builder(None)
        .configure(|c| c.access.access_token_max_active = 4)
        .spawn()
        .await;
    let gil = rich_user(&app, "gil@example.com", "gil", 1000).await;
    // Thirty at once from one user: the cap is counted under the user's row lock.
    let all = join_all((0..30).map(|_| buy(&app, &gil, json!({ "durationHours": 1 })))).await;
    let ok = all.iter().filter(|b| b["errors"].is_null()).count();
    let capped = all
        .iter()
        .filter(|b| error_of(b) == ("CONFLICT".into(), "too_many_tokens".into()))
        .count();
    let outcomes: Vec<_> = all
        .iter()
        .map(|b| b["errors"][0]["extensions"]["reason"].clone())
        .collect();
    assert_eq!((ok, capped), (4, 26), "{outcomes:?}");
    assert_eq!(balance(&app, &gil).await, 960, "only the four were charged");
    let listed = app
        .graphql_as(
            &gil.access,
            "{ me { accessTokens(activeOnly: true) { totalCount } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed["data"]["me"]["accessTokens"]["totalCount"], 4,
        "{listed}"
    );
    assert_sound(&app).await;
}

#[tokio::test]
async fn the_proxy_forwards_without_our_credentials_and_signs_an_assertion() {
    let upstream = Upstream::start("127.0.0.1:0").await.unwrap();
    let app = builder(Some(upstream.url())).spawn().await;
    let fay = rich_user(&app, "fay@example.com", "fay", 50).await;
    let (token, token_id) = token_for(&app, &fay).await;

    let page = get(&app, "/proxy/page", Some(&token)).await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.text().await.unwrap(), page_body());

    let response = app
        .client
        .get(app.url("/proxy/headers?x=1"))
        .header("x-access-token", &token)
        .header(
            "cookie",
            format!(
                "theme=dark; tessera_access={token}; tsr_access={}",
                fay.access
            ),
        )
        .header("authorization", format!("Bearer {}", fay.access))
        .header("connection", "x-hop")
        .header("x-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("x-forwarded-for", "6.6.6.6")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = upstream.last().unwrap();
    assert_eq!(seen.uri, "/headers?x=1");
    assert_eq!(seen.header("x-access-token"), None);
    assert_eq!(
        seen.header("cookie"),
        Some("theme=dark"),
        "our cookies are stripped"
    );
    assert_eq!(
        seen.header("authorization"),
        None,
        "our bearer token is stripped"
    );
    assert_eq!(seen.header("x-hop"), None);
    assert_eq!(seen.header("keep-alive"), None);
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("127.0.0.1"),
        "untrusted XFF replaced"
    );
    assert_eq!(seen.header("x-forwarded-prefix"), Some("/proxy"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    let assertion = seen.header("x-tessera-assertion").expect("an assertion");
    let parts: std::collections::HashMap<&str, &str> = assertion
        .split(',')
        .filter_map(|p| p.split_once('='))
        .collect();
    assert_eq!(parts["uid"], fay.user_id);
    assert_eq!(parts["tid"], token_id);
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(
        format!(
            "{}.{}.{}.{}.GET./headers",
            parts["t"], parts["uid"], parts["tid"], parts["exp"]
        )
        .as_bytes(),
    );
    assert_eq!(parts["v1"], hex::encode(mac.finalize().into_bytes()));
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(parts["t"].parse::<u64>().unwrap().abs_diff(now) < 60);

    // Path mode moves the upstream's redirects and cookie paths under /proxy.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    for path in ["/proxy/redirect", "/proxy/redirect-absolute"] {
        let r = no_redirects
            .get(app.url(path))
            .header("x-access-token", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        assert_eq!(r.headers()["location"], "/proxy/page", "{path}");
    }
    let c = get(&app, "/proxy/cookie", Some(&token)).await;
    assert_eq!(
        c.headers()["set-cookie"],
        "sid=1; Path=/proxy/app; HttpOnly"
    );

    // POST bodies stream through.
    let echoed = app
        .client
        .post(app.url("/proxy/echo"))
        .header("x-access-token", &token)
        .body("x".repeat(200_000))
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.text().await.unwrap().len(), 200_000);
}

#[tokio::test]
async fn the_cookie_routes_sign_a_browser_in_and_out() {
    let upstream = Upstream::start("127.0.0.1:0").await.unwrap();
    let app = builder(Some(upstream.url())).spawn().await;
    let gus = rich_user(&app, "gus@example.com", "gus", 50).await;
    let (token, _) = token_for(&app, &gus).await;
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .no_proxy()
        .build()
        .unwrap();
    // A cross-site form cannot plant a token: JSON only, and only from allowed origins.
    let form = client
        .post(app.url("/access/authenticate"))
        .header("content-type", "text/plain")
        .body(json!({ "token": token }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(form).await, (415, "unsupported_media_type".into()));
    let foreign = client
        .post(app.url("/access/authenticate"))
        .header("origin", "https://evil.example")
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        refusal(foreign).await.0,
        403,
        "refused (by the CORS layer first)"
    );
    let bad = client
        .post(app.url("/access/authenticate"))
        .json(&json!({ "token": "tsr_at_nope" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(bad).await, (401, "invalid_token".into()));
    let ok = client
        .post(app.url("/access/authenticate"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let status: Value = client
        .get(app.url("/access/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["active"], true);
    let page = client.get(app.url("/proxy/page")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        upstream.last().unwrap().header("cookie"),
        None,
        "our cookie is stripped"
    );
    let out = client
        .delete(app.url("/access/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    let after = client.get(app.url("/proxy/page")).send().await.unwrap();
    assert_eq!(refusal(after).await, (401, "missing_token".into()));
}

#[tokio::test]
async fn proxy_refusals_are_json_and_reach_nothing() {
    let upstream = Upstream::start("127.0.0.1:0").await.unwrap();
    let app = builder(Some(upstream.url()))
        .configure(|c| {
            c.access.access_proxy_max_body_bytes = 1000;
            c.access.access_proxy_response_timeout =
                tessera::config::HumanDuration(Duration::from_millis(500));
            c.access.access_proxy_rate_limit = 3;
        })
        .spawn()
        .await;
    let hal = rich_user(&app, "hal@example.com", "hal", 50).await;
    let (token, token_id) = token_for(&app, &hal).await;
    let before = upstream.seen().len();

    assert_eq!(
        refusal(get(&app, "/proxy/page", None).await).await,
        (401, "missing_token".into())
    );
    assert_eq!(
        refusal(get(&app, "/proxy/page", Some("tsr_at_garbage")).await).await,
        (401, "invalid_token".into())
    );
    let mut tampered = token.clone();
    tampered.insert(30, 'A');
    assert_eq!(
        refusal(get(&app, "/proxy/page", Some(&tampered)).await)
            .await
            .0,
        401
    );
    // Sent raw: an HTTP client would normalise the dots away before sending.
    for path in [
        "/proxy/a/%2e%2e/page",
        "/proxy/a/../page",
        "/proxy/a%2fb",
        "/proxy/reports/..;/page",
        "/proxy/%70age",
    ] {
        assert_eq!(raw_get(&app, path, &token).await, 400, "{path}");
    }
    let big = app
        .client
        .post(app.url("/proxy/echo"))
        .header("x-access-token", &token)
        .body("x".repeat(5000))
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(big).await, (413, "payload_too_large".into()));
    // The site's CORS policy covers path mode: a foreign page's request is refused as JSON.
    let foreign = app
        .client
        .get(app.url("/proxy/page"))
        .header("x-access-token", &token)
        .header("origin", "https://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(foreign).await, (403, "bad_request".into()));
    // `/proxy` itself and everything under it is the proxy's, and nothing beside it.
    for path in ["/proxy", "/proxy/", "/proxy?x=1"] {
        assert_eq!(
            refusal(get(&app, path, None).await).await,
            (401, "missing_token".into()),
            "{path}"
        );
    }
    let beside = get(&app, "/proxyish/page", None).await;
    assert_ne!(beside.status(), 401, "not answered by the proxy");
    assert_eq!(
        upstream.seen().len(),
        before,
        "nothing reached the upstream"
    );

    let slow = get(&app, "/proxy/slow", Some(&token)).await;
    assert_eq!(refusal(slow).await, (504, "upstream_timeout".into()));

    // The rate limit (3/s here) answers 429 with Retry-After.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let burst = join_all((0..6).map(|_| get(&app, "/proxy/page", Some(&token)))).await;
    let limited: Vec<&reqwest::Response> = burst.iter().filter(|r| r.status() == 429).collect();
    assert!(!limited.is_empty());
    assert!(limited[0].headers().contains_key("retry-after"));

    revoke(&app, &hal, &token_id).await;
    assert_eq!(
        refusal(get(&app, "/proxy/page", Some(&token)).await).await,
        (401, "token_revoked".into())
    );

    // An expired token (minted directly with a past expiry, as time would make it).
    let keys = &app.state.access.keys;
    let (expired, _) = keys
        .mint(
            Uuid::now_v7(),
            hal.user_id.parse().unwrap(),
            SystemTime::now() - Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(
        refusal(get(&app, "/proxy/page", Some(&expired)).await).await,
        (401, "token_expired".into())
    );

    // No upstream configured; an unreachable one.
    let off = builder(None).spawn().await;
    assert_eq!(
        refusal(get(&off, "/proxy/page", Some(&token)).await).await,
        (503, "proxy_not_configured".into())
    );
    let dead = builder(Some("http://127.0.0.1:9".into())).spawn().await;
    let ivy = rich_user(&dead, "ivy@example.com", "ivy", 50).await;
    let (ivy_token, _) = token_for(&dead, &ivy).await;
    assert_eq!(
        refusal(get(&dead, "/proxy/page", Some(&ivy_token)).await).await,
        (502, "upstream_unreachable".into())
    );
}

#[tokio::test]
async fn holders_narrow_tokens_offline() {
    let upstream = Upstream::start("127.0.0.1:0").await.unwrap();
    let app = builder(Some(upstream.url())).spawn().await;
    let jo = rich_user(&app, "jo@example.com", "jo.j", 50).await;
    let (token, token_id) = token_for(&app, &jo).await;
    // What a holder does with the biscuit library (or CLI): append a block, no key needed.
    let public: biscuit_auth::PublicKey = {
        let info = app
            .graphql(
                "{ accessProxy { configured baseUrl publicKey } }",
                json!({}),
            )
            .await;
        assert_eq!(info["data"]["accessProxy"]["configured"], true);
        assert!(
            info["data"]["accessProxy"]["baseUrl"]
                .as_str()
                .unwrap()
                .ends_with("/proxy/")
        );
        info["data"]["accessProxy"]["publicKey"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let biscuit =
        biscuit_auth::Biscuit::from_base64(token.strip_prefix("tsr_at_").unwrap(), public).unwrap();
    let narrowed = biscuit
        .append(
            biscuit_auth::builder::BlockBuilder::new()
                .code(
                    r#"check if method("GET"); check if path($p), $p.starts_with("/page"); check if protocol("http");"#,
                )
                .unwrap(),
        )
        .unwrap()
        .to_base64()
        .unwrap();
    assert_eq!(
        get(&app, "/proxy/page", Some(&narrowed)).await.status(),
        200
    );
    assert_eq!(
        refusal(get(&app, "/proxy/headers", Some(&narrowed)).await).await,
        (403, "forbidden_by_token".into())
    );
    let post = app
        .client
        .post(app.url("/proxy/page"))
        .header("x-access-token", &narrowed)
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(post).await, (403, "forbidden_by_token".into()));
    let ws = ws_connect(&app, &format!("/proxy/ws?token={narrowed}"), None).await;
    assert!(ws.is_err(), "protocol(\"http\") refuses WebSockets");

    // Revoking the token revokes what was derived from it.
    revoke(&app, &jo, &token_id).await;
    assert_eq!(
        refusal(get(&app, "/proxy/page", Some(&narrowed)).await).await,
        (401, "token_revoked".into())
    );
}

/// The `biscuit` command (crate biscuit-cli), or `None` where it is not installed; CI
/// installs it and sets `REQUIRE_BISCUIT_CLI=1`, so there its absence fails the test.
fn biscuit_cli() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("biscuit"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("REQUIRE_BISCUIT_CLI").is_err(),
            "REQUIRE_BISCUIT_CLI is set but no `biscuit` is on PATH"
        );
        eprintln!("`biscuit` (biscuit-cli) not installed: the CLI case runs where it is");
    }
    found
}

#[tokio::test]
async fn holders_narrow_tokens_with_the_biscuit_cli() {
    let Some(cli) = biscuit_cli() else {
        return;
    };
    let upstream = Upstream::start("127.0.0.1:0").await.unwrap();
    let app = builder(Some(upstream.url())).spawn().await;
    let ada = rich_user(&app, "ada@example.com", "ada.l", 50).await;
    let (token, _) = token_for(&app, &ada).await;
    // As the README shows: the token without its prefix on stdin, a block to append, no key.
    let output = tokio::process::Command::new(cli)
        .args([
            "attenuate",
            "-",
            "--add-ttl",
            "1h",
            "--block",
            r#"check if method("GET"); check if path($p), $p.starts_with("/reports/");"#,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map(|mut child| {
            use tokio::io::AsyncWriteExt;
            let mut stdin = child.stdin.take().unwrap();
            let body = token.strip_prefix("tsr_at_").unwrap().to_owned();
            tokio::spawn(async move {
                stdin.write_all(body.as_bytes()).await.unwrap();
            });
            child
        })
        .unwrap()
        .wait_with_output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let narrowed = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert_ne!(narrowed, token.strip_prefix("tsr_at_").unwrap());
    let before = upstream.seen().len();
    // The prefix is optional on input: both forms are the same token.
    for presented in [narrowed.clone(), format!("tsr_at_{narrowed}")] {
        let allowed = get(&app, "/proxy/reports/q3", Some(&presented)).await;
        assert_ne!(allowed.status(), 403, "the holder's checks allow this path");
        assert_ne!(allowed.status(), 401);
        assert_eq!(
            refusal(get(&app, "/proxy/page", Some(&presented)).await).await,
            (403, "forbidden_by_token".into())
        );
        let post = app
            .client
            .post(app.url("/proxy/reports/q3"))
            .header("x-access-token", &presented)
            .send()
            .await
            .unwrap();
        assert_eq!(refusal(post).await, (403, "forbidden_by_token".into()));
    }
    let seen = upstream.seen();
    assert_eq!(
        seen.len(),
        before + 2,
        "only the two allowed requests arrived"
    );
    assert!(seen[before..].iter().all(|s| s.uri == "/reports/q3"));
}

#[tokio::test]
async fn large_downloads_and_events_stream_through() {
    let upstream = Upstream::start("127.0.0.1:0").await.unwrap();
    let app = builder(Some(upstream.url())).spawn().await;
    let kit = rich_user(&app, "kit@example.com", "kit", 50).await;
    let (token, _) = token_for(&app, &kit).await;

    let rss = || {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    let before = rss();
    let mut download = get(&app, "/proxy/stream?mib=100", Some(&token)).await;
    assert_eq!(download.status(), 200);
    let mut total = 0usize;
    while let Some(chunk) = download.chunk().await.unwrap() {
        total += chunk.len();
    }
    assert_eq!(total, 100 * 1024 * 1024);
    let grown_mib = rss().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 48,
        "memory grew {grown_mib} MiB: the body was buffered"
    );

    // Server-sent events arrive one by one, not at the end.
    let started = std::time::Instant::now();
    let mut events = get(&app, "/proxy/sse", Some(&token)).await;
    let first = events.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("event 0"));
    assert!(
        started.elapsed() < Duration::from_millis(180),
        "first event came at once"
    );
}

async fn ws_connect(
    app: &TestApp,
    path: &str,
    token_header: Option<&str>,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    let mut request = format!("ws://{}{path}", app.addr)
        .into_client_request()
        .unwrap();
    if let Some(token) = token_header {
        request
            .headers_mut()
            .insert("x-access-token", HeaderValue::from_str(token).unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(ws, _)| ws)
}

#[tokio::test]
async fn proxied_websockets_get_a_close_frame_at_shutdown() {
    let upstream = Upstream::start("127.0.0.1:0").await.unwrap();
    let mut app = builder(Some(upstream.url())).spawn().await;
    let lou = rich_user(&app, "lou@example.com", "lou", 50).await;
    let (token, _) = token_for(&app, &lou).await;
    let mut ws = ws_connect(&app, "/proxy/ws", Some(&token)).await.unwrap();
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));

    let shutdown = app.shutdown_token();
    let handle = app.take_handle();
    shutdown.cancel();
    let (code, reason) = ws_close_code(&mut ws, Duration::from_secs(5)).await;
    assert_eq!((code, reason.as_str()), (1001, "server shutting down"));
    let run = tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("run returns after shutdown")
        .expect("no panic");
    assert!(run.is_ok(), "{run:?}");
}

#[tokio::test]
async fn websockets_echo_and_close_on_revocation_and_expiry() {
    let upstream = Upstream::start("127.0.0.1:0").await.unwrap();
    let app = builder(Some(upstream.url())).spawn().await;
    let lou = rich_user(&app, "lou@example.com", "lou", 50).await;
    let (token, token_id) = token_for(&app, &lou).await;

    let mut ws = ws_connect(&app, &format!("/proxy/ws?token={token}&room=1"), None)
        .await
        .unwrap();
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    let seen = upstream.last().unwrap();
    assert_eq!(seen.uri, "/ws?room=1", "the token parameter is stripped");
    assert!(seen.header("x-tessera-assertion").is_some());

    // Every value of a repeated header crosses, as on plain requests.
    let mut request = format!("ws://{}/proxy/ws", app.addr)
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert("x-access-token", HeaderValue::from_str(&token).unwrap());
    headers.append("x-note", HeaderValue::from_static("one"));
    headers.append("x-note", HeaderValue::from_static("two"));
    let (mut noted, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let notes: Vec<String> = upstream
        .last()
        .unwrap()
        .headers
        .into_iter()
        .filter(|(name, _)| name == "x-note")
        .map(|(_, value)| value)
        .collect();
    assert_eq!(notes, ["one", "two"]);
    noted.close(None).await.unwrap();

    // A header-authenticated one too, then revoke: both close with 1008.
    let mut second = ws_connect(&app, "/proxy/ws", Some(&token)).await.unwrap();
    let started = std::time::Instant::now();
    revoke(&app, &lou, &token_id).await;
    assert_eq!(
        ws_close_code(&mut ws, Duration::from_secs(2)).await,
        (1008, "token_revoked".into())
    );
    assert_eq!(
        ws_close_code(&mut second, Duration::from_secs(2)).await.0,
        1008
    );
    assert!(started.elapsed() < Duration::from_secs(1));

    // Expiry: a token that ends in two seconds.
    let token_id = Uuid::now_v7();
    let expires = SystemTime::now() + Duration::from_secs(2);
    let (short, revocation) = app
        .state
        .access
        .keys
        .mint(token_id, lou.user_id.parse().unwrap(), expires)
        .unwrap();
    insert_row(&app, token_id, &lou, &revocation, expires).await;
    let mut ws = ws_connect(&app, &format!("/proxy/ws?token={short}"), None)
        .await
        .unwrap();
    assert_eq!(
        ws_close_code(&mut ws, Duration::from_secs(4)).await,
        (1008, "token_expired".into())
    );

    // Refusals come before the upgrade.
    assert!(ws_connect(&app, "/proxy/ws", None).await.is_err());
    assert_eq!(app.state.access.open_socket_count(), 0);
}

async fn insert_row(
    app: &TestApp,
    id: Uuid,
    user: &Session,
    revocation: &str,
    expires: SystemTime,
) {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    tessera::access::entity::access_token::ActiveModel {
        id: Set(id),
        user_id: Set(user.user_id.parse().unwrap()),
        name: Set(None),
        duration_hours: Set(1),
        price: Set(0),
        transfer_id: Set(None),
        revocation_id: Set(revocation.to_owned()),
        key_id: Set(1),
        idempotency_key: Set(None),
        request_hash: Set(None),
        expires_at: Set(expires.into()),
        revoked_at: Set(None),
        last_used_at: Set(None),
        created_at: Set(chrono::Utc::now()),
    }
    .insert(app.state.db.conn())
    .await
    .unwrap();
}

#[tokio::test]
async fn cookie_upgrades_need_an_allowed_origin_and_sockets_are_capped() {
    let upstream = Upstream::start("127.0.0.1:0").await.unwrap();
    let app = builder(Some(upstream.url()))
        .configure(|c| c.access.access_proxy_max_websockets = 2)
        .spawn()
        .await;
    let mo = rich_user(&app, "mo@example.com", "mo.m", 50).await;
    let (token, _) = token_for(&app, &mo).await;
    let with_cookie = |origin: Option<&str>| {
        let mut request = format!("ws://{}/proxy/ws", app.addr)
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "cookie",
            HeaderValue::from_str(&format!("tessera_access={token}")).unwrap(),
        );
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", HeaderValue::from_str(origin).unwrap());
        }
        tokio_tungstenite::connect_async(request)
    };
    match with_cookie(Some("https://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected 403, got {other:?}"),
    }
    let origin = format!("http://127.0.0.1:{}", app.addr.port());
    let _a = with_cookie(Some(&origin)).await.expect("allowed origin");
    let _b = ws_connect(&app, "/proxy/ws", Some(&token)).await.unwrap();
    match ws_connect(&app, "/proxy/ws", Some(&token)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429)
        }
        other => panic!("expected 429, got {other:?}"),
    }
}

#[tokio::test]
async fn disabling_a_user_revokes_their_tokens() {
    let upstream = Upstream::start("127.0.0.1:0").await.unwrap();
    let app = builder(Some(upstream.url())).spawn().await;
    let nat = rich_user(&app, "nat@example.com", "nat", 50).await;
    let (token, _) = token_for(&app, &nat).await;
    assert_eq!(get(&app, "/proxy/page", Some(&token)).await.status(), 200);
    let root = app.register("root@example.com", "root").await;
    let body = app
        .graphql_as(
            &root.access,
            "mutation($u: ID!) { disableUser(userId: $u) { id } }",
            json!({ "u": nat.user_id }),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(
        refusal(get(&app, "/proxy/page", Some(&token)).await).await,
        (401, "token_revoked".into())
    );
}

#[tokio::test]
async fn revoking_on_one_instance_closes_sockets_on_another() {
    let Some(redis) = crate::helpers::redis_url() else {
        eprintln!("REDIS_URL unset: cross-instance revocation runs in the Redis pass of CI");
        return;
    };
    let upstream = Upstream::start("127.0.0.1:0").await.unwrap();
    let a = builder(Some(upstream.url())).redis_url(redis).spawn().await;
    let b = a.spawn_peer_with(builder(Some(upstream.url()))).await;
    let pat = rich_user(&a, "pat@example.com", "pat", 50).await;
    let (token, token_id) = token_for(&a, &pat).await;
    let mut ws = ws_connect(&b, &format!("/proxy/ws?token={token}"), None)
        .await
        .unwrap();
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("ping"));
    let started = std::time::Instant::now();
    revoke(&a, &pat, &token_id).await;
    assert_eq!(
        ws_close_code(&mut ws, Duration::from_secs(2)).await,
        (1008, "token_revoked".into())
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        refusal(get(&b, "/proxy/page", Some(&token)).await).await,
        (401, "token_revoked".into())
    );
}

#[tokio::test]
async fn upstream_urls_in_bodies_are_rewritten_when_asked() {
    let upstream = Upstream::start("127.0.0.1:0").await.unwrap();
    let plain = builder(Some(upstream.url())).spawn().await;
    let rewriting = builder(Some(upstream.url()))
        .configure(|c| c.access.access_proxy_rewrite_bodies = true)
        .spawn()
        .await;
    for (app, rewritten) in [(&plain, false), (&rewriting, true)] {
        let user = rich_user(app, "rae@example.com", "rae", 50).await;
        let (token, _) = token_for(app, &user).await;
        let body = app
            .client
            .get(app.url("/proxy/links"))
            .header("x-access-token", &token)
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        let text = body.text().await.unwrap();
        let public = app.state.config.public_url();
        let proxied = format!("{}/proxy/page", public.as_str().trim_end_matches('/'));
        assert_eq!(text.contains(&proxied), rewritten, "{text}");
        assert_eq!(text.contains(&upstream.url()), !rewritten, "{text}");
        if rewritten {
            assert_eq!(
                upstream.last().unwrap().header("accept-encoding"),
                None,
                "bodies to rewrite are asked for uncompressed"
            );
        }
    }
}

#[tokio::test]
async fn with_redis_down_checks_fall_back_to_the_database_and_revocation_holds() {
    let Some(redis) = crate::helpers::redis_url() else {
        eprintln!("REDIS_URL unset: the outage case runs in the Redis pass of CI");
        return;
    };
    let target = Url::parse(&redis).unwrap();
    let target = format!(
        "{}:{}",
        target.host_str().unwrap_or("127.0.0.1"),
        target.port().unwrap_or(6379)
    );
    let mut cut = crate::helpers::TcpProxy::start(&target).await;
    let upstream = Upstream::start("127.0.0.1:0").await.unwrap();
    let app = builder(Some(upstream.url()))
        .redis_url(format!("redis://{}", cut.addr))
        .configure(|c| {
            c.kv_command_timeout = tessera::config::HumanDuration(Duration::from_millis(300));
        })
        .spawn()
        .await;
    let sam = rich_user(&app, "sam@example.com", "sam", 50).await;
    let (token, token_id) = token_for(&app, &sam).await;
    assert_eq!(get(&app, "/proxy/page", Some(&token)).await.status(), 200);

    cut.cut();
    // Past the five seconds this instance trusts its memory: the database answers.
    tokio::time::sleep(Duration::from_millis(5200)).await;
    assert_eq!(get(&app, "/proxy/page", Some(&token)).await.status(), 200);
    // Sign-in checks need kv (they fail closed), so the revocation comes from the service,
    // as an admin action or a disabled account would.
    let meta = tessera::graphql::RequestMeta {
        request_id: "outage".into(),
        peer: None,
        client_ip: None,
        user_agent: None,
        authorization: None,
        cookies: None,
        client: None,
    };
    let revoked = tessera::access::service::revoke(
        &app.state,
        sam.user_id.parse().unwrap(),
        false,
        token_id.parse().unwrap(),
        &meta,
    )
    .await
    .unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(
        refusal(get(&app, "/proxy/page", Some(&token)).await).await,
        (401, "token_revoked".into())
    );
    cut.restore().await;
}

#[tokio::test]
async fn a_proxy_host_is_proxied_on_every_path_and_use_is_recorded() {
    let upstream = Upstream::start("127.0.0.1:0").await.unwrap();
    let app = builder(Some(upstream.url()))
        .configure(|c| c.access.access_proxy_host = Some("tools.example.com".into()))
        .spawn()
        .await;
    let una = rich_user(&app, "una@example.com", "una", 50).await;
    let (token, _) = token_for(&app, &una).await;
    let page = app
        .client
        .get(app.url("/page"))
        .header("host", "tools.example.com")
        .header("x-access-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.text().await.unwrap(), page_body());
    let seen = upstream.last().unwrap();
    assert_eq!(seen.uri, "/page");
    assert_eq!(seen.header("x-forwarded-prefix"), None);
    assert_eq!(seen.header("x-forwarded-host"), Some("tools.example.com"));
    // Without a token, even /graphql on that host belongs to the proxy.
    let refused = app
        .client
        .get(app.url("/graphql"))
        .header("host", "tools.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(refused).await, (401, "missing_token".into()));
    // The site itself still answers on its own host.
    assert_eq!(
        app.client
            .get(app.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Use is written down in batches.
    tessera::access::service::flush_last_used(&app.state)
        .await
        .unwrap();
    let body = app
        .graphql_as(
            &una.access,
            "{ me { accessTokens { edges { node { lastUsedAt } } } } }",
            json!({}),
        )
        .await;
    assert!(
        body["data"]["me"]["accessTokens"]["edges"][0]["node"]["lastUsedAt"].is_string(),
        "{body}"
    );

    // The checks are counted by level and outcome.
    let metrics = app.metrics().await;
    assert!(metrics.contains("access_token_checks"), "{metrics}");
    assert!(metrics.contains("access_proxy_requests"), "{metrics}");
}

const TLS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");

#[tokio::test]
async fn an_https_upstream_is_reached_over_tls_for_pages_and_websockets() {
    let cert = std::fs::read(format!("{TLS_DIR}/server.pem")).unwrap();
    let key = std::fs::read(format!("{TLS_DIR}/server.key")).unwrap();
    let upstream = Upstream::start_tls("127.0.0.1:0", &cert, &key)
        .await
        .unwrap();
    assert!(upstream.url().starts_with("https://127.0.0.1:"));
    let ca = std::path::PathBuf::from(format!("{TLS_DIR}/ca.pem"));
    let app = builder(Some(upstream.url()))
        .configure(move |c| c.access.access_proxy_upstream_ca_file = Some(ca))
        .spawn()
        .await;
    let kit = rich_user(&app, "kit@example.com", "kit", 50).await;
    let (token, _) = token_for(&app, &kit).await;

    let response = get(&app, "/proxy/page", Some(&token)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), page_body());
    let seen = upstream.last().unwrap();
    assert_eq!(seen.uri, "/page");
    assert!(seen.header("x-tessera-assertion").is_some());
    assert!(seen.header("x-access-token").is_none());

    let mut ws = ws_connect(&app, &format!("/proxy/ws?token={token}&room=tls"), None)
        .await
        .unwrap();
    ws.send(Message::text("over tls")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("over tls"));
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![1u8, 2, 3])
    );
    assert_eq!(upstream.last().unwrap().uri, "/ws?room=tls");
    ws.close(None).await.unwrap();

    // A server that does not trust the upstream's CA reaches neither, and says so.
    let untrusting = builder(Some(upstream.url())).spawn().await;
    let lee = rich_user(&untrusting, "lee@example.com", "lee", 50).await;
    let (token, _) = token_for(&untrusting, &lee).await;
    let before = upstream.seen().len();
    assert_eq!(
        refusal(get(&untrusting, "/proxy/page", Some(&token)).await).await,
        (502, "upstream_unreachable".into())
    );
    match ws_connect(&untrusting, &format!("/proxy/ws?token={token}"), None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 502)
        }
        other => panic!("expected a 502 before the upgrade, got {other:?}"),
    }
    assert_eq!(upstream.seen().len(), before, "no request got through");
    assert_eq!(untrusting.state.access.open_socket_count(), 0);
}

#[test]
fn an_upstream_ca_file_must_hold_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("ca.pem");
    std::fs::write(&bogus, "not a certificate\n").unwrap();
    let mut config = tessera::config::Config::from_args([
        "--access-proxy-upstream",
        "https://127.0.0.1:9",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ])
    .unwrap();
    config.access.access_proxy_upstream_ca_file = Some(bogus);
    let err = tessera::access::AccessState::new(&config)
        .err()
        .expect("a CA file without certificates is refused at start");
    assert!(
        err.to_string().contains("ACCESS_PROXY_UPSTREAM_CA_FILE"),
        "{err}"
    );

    config.access.access_proxy_upstream_ca_file = Some(dir.path().join("missing.pem"));
    let err = tessera::access::AccessState::new(&config).err().unwrap();
    assert!(err.to_string().contains("cannot read"), "{err}");

    config.access.access_proxy_upstream_ca_file =
        Some(std::path::PathBuf::from(format!("{TLS_DIR}/ca.pem")));
    assert!(tessera::access::AccessState::new(&config).is_ok());
}

#[tokio::test]
async fn upstream_connections_are_reused_and_a_silent_body_is_cut() {
    let upstream = Upstream::start("127.0.0.1:0").await.unwrap();
    let app = builder(Some(upstream.url()))
        .configure(|c| {
            c.access.access_proxy_idle_timeout =
                tessera::config::HumanDuration(Duration::from_millis(400));
        })
        .spawn()
        .await;
    let lee = rich_user(&app, "lee@example.com", "lee", 50).await;
    let (token, _) = token_for(&app, &lee).await;

    // One request after another: one upstream connection carries them all, whether the
    // body had a length, came in chunks or had a request body to send.
    let before = upstream.seen().len();
    for round in 0..12 {
        let response = match round % 3 {
            0 => get(&app, "/proxy/page", Some(&token)).await,
            1 => get(&app, "/proxy/stream?mib=1", Some(&token)).await,
            _ => app
                .client
                .post(app.url("/proxy/echo"))
                .header("x-access-token", &token)
                .body("hello")
                .send()
                .await
                .unwrap(),
        };
        assert_eq!(response.status(), 200);
        assert!(!response.bytes().await.unwrap().is_empty());
    }
    let seen = upstream.seen();
    let mut remotes: Vec<&str> = seen[before..].iter().map(|s| s.remote.as_str()).collect();
    assert_eq!(remotes.len(), 12);
    remotes.dedup();
    assert_eq!(remotes.len(), 1, "{remotes:?}");

    // A body that goes quiet ends after ACCESS_PROXY_IDLE_TIMEOUT, not when the upstream
    // gets round to it; what came before it arrives. (The proxy's body ends in an error;
    // the HTTP server under it then closes the chunked body as if complete, so a client
    // sees a short body: the rest never comes.)
    let started = std::time::Instant::now();
    let mut stalled = get(&app, "/proxy/stall", Some(&token)).await;
    assert_eq!(stalled.status(), 200);
    let mut received = Vec::new();
    while let Ok(Some(chunk)) = stalled.chunk().await {
        received.extend_from_slice(&chunk);
    }
    assert_eq!(received, b"begin\n");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // The broken connection is not reused: the next request works.
    assert_eq!(get(&app, "/proxy/page", Some(&token)).await.status(), 200);
}

#[tokio::test]
async fn checks_that_run_out_of_time_answer_busy_and_reach_nothing() {
    let upstream = Upstream::start("127.0.0.1:0").await.unwrap();
    let app = builder(Some(upstream.url()))
        .configure(|c| {
            c.access.access_token_check_time =
                tessera::config::HumanDuration(Duration::from_nanos(1));
        })
        .spawn()
        .await;
    let max = rich_user(&app, "max@example.com", "max", 50).await;
    let (token, _) = token_for(&app, &max).await;
    let before = upstream.seen().len();

    let busy = get(&app, "/proxy/page", Some(&token)).await;
    assert_eq!(busy.headers()["retry-after"], "1");
    assert_eq!(refusal(busy).await, (503, "busy".into()));
    // A WebSocket upgrade is refused the same way, before any upgrade.
    match ws_connect(&app, &format!("/proxy/ws?token={token}"), None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => panic!("expected a 503 refusal, got {other:?}"),
    }
    assert_eq!(
        upstream.seen().len(),
        before,
        "nothing reached the upstream"
    );
    // Not remembered as a verdict on the token: with time to run, the same token passes.
    let relaxed = app.spawn_peer_with(builder(Some(upstream.url()))).await;
    assert_eq!(
        get(&relaxed, "/proxy/page", Some(&token)).await.status(),
        200
    );
}

#[tokio::test]
async fn a_revocation_missed_while_pubsub_was_down_closes_sockets_after_the_reconnect() {
    let Some(mut cut) = crate::helpers::redis_proxy().await else {
        return;
    };
    let redis = crate::helpers::redis_url().expect("redis_proxy implies REDIS_URL");
    let upstream = Upstream::start("127.0.0.1:0").await.unwrap();
    let a = builder(Some(upstream.url())).redis_url(redis).spawn().await;
    let b = a
        .spawn_peer_with(
            builder(Some(upstream.url()))
                .redis_url(format!("redis://{}", cut.addr))
                .configure(|c| {
                    c.kv_command_timeout =
                        tessera::config::HumanDuration(Duration::from_millis(500));
                }),
        )
        .await;
    let kim = rich_user(&a, "kim@example.com", "kim", 50).await;
    let (token, token_id) = token_for(&a, &kim).await;
    let mut ws = ws_connect(&b, &format!("/proxy/ws?token={token}"), None)
        .await
        .unwrap();
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("ping"));

    // B loses Redis; the revocation on A is published while B cannot hear it.
    cut.cut();
    revoke(&a, &kim, &token_id).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(700), ws.next())
            .await
            .is_err(),
        "B could not have heard of the revocation yet"
    );

    // Back online, B is told it may have missed messages and checks its sockets.
    let restored = std::time::Instant::now();
    cut.restore().await;
    assert_eq!(
        ws_close_code(&mut ws, Duration::from_secs(15)).await,
        (1008, "token_revoked".into())
    );
    eprintln!("closed {:?} after the reconnect", restored.elapsed());
}

/// The proxy bench's yardstick forwards requests and bodies as they are, on one kept-alive
/// connection.
#[tokio::test]
async fn the_bench_forwarder_relays_pages_and_bodies() {
    let upstream = Upstream::start("127.0.0.1:0").await.unwrap();
    let upstream_addr: std::net::SocketAddr = upstream
        .url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let forwarder = listener.local_addr().unwrap();
    let relay = tokio::spawn(tessera_fakes::forwarder::serve(listener, upstream_addr));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for _ in 0..3 {
        let page = client
            .get(format!("http://{forwarder}/page"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        assert_eq!(page.text().await.unwrap(), page_body());
    }
    let echoed = client
        .post(format!("http://{forwarder}/echo"))
        .body("a body both ways")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.text().await.unwrap(), "a body both ways");
    let remotes: std::collections::HashSet<String> = upstream
        .seen()
        .into_iter()
        .map(|seen| seen.remote)
        .collect();
    assert_eq!(
        remotes.len(),
        1,
        "one upstream connection for one client connection"
    );
    relay.abort();
}
