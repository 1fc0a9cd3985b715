//! Sign-in with Google (OpenID Connect), Discord and GitHub, end to end: a browser stand-in
//! goes from `/auth/{provider}/login` through a loopback fake of the provider (discovery,
//! RS256 JWKS, token endpoint, user APIs) to `/auth/{provider}/callback` and back, then uses
//! the session cookie. Refusals: replayed, unknown, unbound and cross-provider state,
//! tampered ID tokens, bad codes, open redirects, disabled accounts, unverified addresses.

use futures_util::future::join_all;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use tessera::identity::entity::user;
use tessera_fakes::oauth::{FakeAccount, Flavor, OAuthFake, Tamper};
use url::Url;

use crate::helpers::{Browser, PASSWORD, TestApp, error_of, location, redis_url};

const ME: &str = "{ me { id email emailVerified username displayName avatarUrl role identities { provider email emailVerified username } } }";

struct Fakes {
    google: OAuthFake,
    discord: OAuthFake,
    github: OAuthFake,
}

async fn fakes() -> Fakes {
    Fakes {
        google: OAuthFake::start(Flavor::Oidc, "127.0.0.1:0", "google-id", "google-secret")
            .await
            .unwrap(),
        discord: OAuthFake::start(
            Flavor::Discord,
            "127.0.0.1:0",
            "discord-id",
            "discord-secret",
        )
        .await
        .unwrap(),
        github: OAuthFake::start(Flavor::GitHub, "127.0.0.1:0", "github-id", "github-secret")
            .await
            .unwrap(),
    }
}

/// A server with all three providers pointed at the fakes, PUBLIC_URL on its own address
/// and one extra allowed origin.
async fn app_with(fakes: &Fakes) -> TestApp {
    app_builder(fakes).spawn().await
}

fn app_builder(fakes: &Fakes) -> crate::helpers::TestAppBuilder {
    let (google, discord, github) = (fakes.google.url(), fakes.discord.url(), fakes.github.url());
    TestApp::builder().configure(move |c| {
        c.public_url = Some(Url::parse(&format!("http://{}/", c.listen_addr)).unwrap());
        c.cors_allowed_origins = vec!["https://app.example.com".into()];
        let id = &mut c.identity;
        id.google_client_id = Some("google-id".into());
        id.google_client_secret = Some(tessera::config::Secret::new("google-secret"));
        id.google_issuer_url = Url::parse(&google).unwrap();
        id.discord_client_id = Some("discord-id".into());
        id.discord_client_secret = Some(tessera::config::Secret::new("discord-secret"));
        id.discord_url = Url::parse(&discord).unwrap();
        id.github_client_id = Some("github-id".into());
        id.github_client_secret = Some(tessera::config::Secret::new("github-secret"));
        id.github_url = Url::parse(&github).unwrap();
        id.github_api_url = Url::parse(&github).unwrap();
        id.admin_emails = vec!["boss@example.com".into()];
    })
}

fn login_url(app: &TestApp, provider: &str, redirect_to: Option<&str>) -> String {
    let mut url = Url::parse(&app.url(&format!("/auth/{provider}/login"))).unwrap();
    if let Some(target) = redirect_to {
        url.query_pairs_mut().append_pair("redirect_to", target);
    }
    url.to_string()
}

/// From the login route through the provider's consent: the callback URL, not yet visited.
async fn to_callback(browser: &Browser, app: &TestApp, provider: &str) -> String {
    let start = browser
        .get(&login_url(app, provider, Some("/welcome")))
        .await;
    assert_eq!(start.status(), 303, "{}", start.text().await.unwrap());
    let at_provider = location(&start);
    let consent = browser.get(&at_provider).await;
    assert_eq!(consent.status(), 302, "{}", consent.text().await.unwrap());
    location(&consent)
}

/// A whole sign-in; returns where the browser lands and its access token.
async fn sign_in(browser: &Browser, app: &TestApp, provider: &str) -> (String, Option<String>) {
    let callback = to_callback(browser, app, provider).await;
    let done = browser.get(&callback).await;
    assert_eq!(done.status(), 303, "{}", done.text().await.unwrap());
    (location(&done), browser.cookie("127.0.0.1", "tsr_access"))
}

async fn me(app: &TestApp, token: &str) -> Value {
    let body = app.graphql_as(token, ME, json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["me"].clone()
}

async fn user_count(app: &TestApp) -> u64 {
    user::Entity::find()
        .count(app.state.db.conn())
        .await
        .unwrap()
}

fn query_param(url: &str, key: &str) -> Option<String> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn google_sign_in_provisions_then_later_logins_update_the_profile() {
    let fakes = fakes().await;
    let app = app_with(&fakes).await;
    fakes
        .google
        .sign_in_as(FakeAccount::new("g-123", "Grace@Example.com", "grace"));

    let browser = Browser::new();
    let (landed, token) = sign_in(&browser, &app, "google").await;
    assert_eq!(landed, app.url("/welcome"));
    let token = token.expect("the session cookie is set");
    assert!(browser.cookie("127.0.0.1", "tsr_refresh").is_some());
    assert_eq!(
        browser.cookie("127.0.0.1", "tsr_oauth"),
        None,
        "the state cookie is cleared"
    );
    let first = me(&app, &token).await;
    assert_eq!(first["email"], "grace@example.com");
    assert_eq!(first["emailVerified"], true);
    assert_eq!(first["displayName"], "grace (display)");
    assert_eq!(first["identities"][0]["provider"], "GOOGLE");
    assert_eq!(first["role"], "USER");

    // The provider's profile changes; the next sign-in brings it over to the same account.
    let mut changed = FakeAccount::new("g-123", "grace.new@example.com", "grace");
    changed.name = Some("Grace H.".into());
    changed.avatar_url = Some("https://avatars.example/new.png".into());
    fakes.google.sign_in_as(changed);
    let (_, token) = sign_in(&Browser::new(), &app, "google").await;
    let second = me(&app, &token.unwrap()).await;
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["email"], "grace.new@example.com");
    assert_eq!(second["displayName"], "Grace H.");
    assert_eq!(second["avatarUrl"], "https://avatars.example/new.png");
    assert_eq!(second["identities"].as_array().unwrap().len(), 1);
    assert_eq!(user_count(&app).await, 1);
}

#[tokio::test]
async fn discord_and_github_sign_in_through_their_user_apis() {
    let fakes = fakes().await;
    let app = app_with(&fakes).await;
    fakes.discord.sign_in_as(FakeAccount::new(
        "80351110224678912",
        "nelly@example.com",
        "nelly",
    ));
    let (_, token) = sign_in(&Browser::new(), &app, "discord").await;
    let nelly = me(&app, &token.unwrap()).await;
    assert_eq!(nelly["username"], "nelly");
    assert_eq!(nelly["email"], "nelly@example.com");
    assert_eq!(nelly["identities"][0]["provider"], "DISCORD");
    assert_eq!(nelly["identities"][0]["username"], "nelly");
    assert!(
        nelly["avatarUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://cdn.discordapp.com/avatars/80351110224678912/")
    );

    // GitHub: the public profile has no email; the primary verified one comes from
    // /user/emails, and a verified secondary address does not count.
    let mut octo = FakeAccount::new("583231", "octo@example.com", "octocat");
    octo.other_emails = vec![("octo-old@example.com".into(), true)];
    fakes.github.sign_in_as(octo);
    let (_, token) = sign_in(&Browser::new(), &app, "github").await;
    let octo = me(&app, &token.unwrap()).await;
    assert_eq!(octo["username"], "octocat");
    assert_eq!(octo["email"], "octo@example.com");
    assert_eq!(octo["identities"][0]["provider"], "GITHUB");

    // Primary unverified (a verified secondary exists): the account gets no address.
    let mut quiet = FakeAccount::new("999", "quiet@example.com", "quiet").unverified();
    quiet.other_emails = vec![("quiet-verified@example.com".into(), true)];
    fakes.github.sign_in_as(quiet);
    let (_, token) = sign_in(&Browser::new(), &app, "github").await;
    let quiet = me(&app, &token.unwrap()).await;
    assert_eq!(quiet["email"], Value::Null);
    assert_eq!(quiet["emailVerified"], false);
    assert_eq!(quiet["identities"][0]["email"], "quiet@example.com");
    assert_eq!(quiet["identities"][0]["emailVerified"], false);
    assert_eq!(user_count(&app).await, 3);
}

#[tokio::test]
async fn an_unverified_provider_email_never_merges_accounts() {
    let fakes = fakes().await;
    let app = app_with(&fakes).await;
    let ada = app.register("ada@example.com", "ada").await;

    // Same address, but Discord has not verified it: a separate account, no address.
    fakes
        .discord
        .sign_in_as(FakeAccount::new("111", "ada@example.com", "not-ada").unverified());
    let (_, token) = sign_in(&Browser::new(), &app, "discord").await;
    let other = me(&app, &token.unwrap()).await;
    assert_ne!(other["id"], ada.user_id.as_str());
    assert_eq!(other["email"], Value::Null);
    assert_eq!(user_count(&app).await, 2);

    // Ada's password account is untouched.
    let login = app.login("ada@example.com", PASSWORD).await;
    assert!(login["errors"].is_null(), "{login}");
}

#[tokio::test]
async fn a_verified_provider_email_claims_an_unverified_account() {
    let fakes = fakes().await;
    let app = app_with(&fakes).await;
    // Someone registered this address without ever proving it, and linked their GitHub.
    let squatter = app.register("victim@example.com", "squatter").await;
    fakes
        .github
        .sign_in_as(FakeAccount::new("666", "squatter@example.com", "squatgh"));
    let squat_browser = Browser::new();
    squat_browser.set_cookie("127.0.0.1", "tsr_access", &squatter.access);
    let callback = to_callback(&squat_browser, &app, "github").await;
    assert_eq!(squat_browser.get(&callback).await.status(), 303);

    fakes
        .google
        .sign_in_as(FakeAccount::new("g-victim", "victim@example.com", "victim"));
    let (_, token) = sign_in(&Browser::new(), &app, "google").await;
    let victim = me(&app, &token.unwrap()).await;
    assert_eq!(
        victim["id"],
        squatter.user_id.as_str(),
        "one account per address"
    );
    assert_eq!(victim["emailVerified"], true);
    assert_eq!(
        victim["identities"],
        json!([{ "provider": "GOOGLE", "email": "victim@example.com", "emailVerified": true, "username": null }]),
        "the squatter's GitHub link is gone"
    );

    // The unproven password and its sessions are gone.
    let login = app.login("victim@example.com", PASSWORD).await;
    assert_eq!(error_of(&login).1, "invalid_credentials", "{login}");
    let old = app
        .graphql_as(&squatter.access, "{ me { id } }", json!({}))
        .await;
    assert_eq!(error_of(&old).0, "UNAUTHENTICATED", "{old}");
}

#[tokio::test]
async fn a_verified_provider_email_joins_a_verified_account_and_keeps_its_password() {
    let fakes = fakes().await;
    let app = app_with(&fakes).await;
    // A login code proves the address.
    let session = crate::identity_codes::sign_in_with_code(&app, "kim@example.com").await;
    fakes
        .github
        .sign_in_as(FakeAccount::new("4242", "kim@example.com", "kimgh"));
    let (_, token) = sign_in(&Browser::new(), &app, "github").await;
    let kim = me(&app, &token.unwrap()).await;
    assert_eq!(kim["id"], session.user_id.as_str());
    let still = app
        .graphql_as(&session.access, "{ me { id } }", json!({}))
        .await;
    assert!(
        still["errors"].is_null(),
        "earlier sessions survive: {still}"
    );
}

#[tokio::test]
async fn a_signed_in_browser_links_a_provider_and_can_unlink_it() {
    let fakes = fakes().await;
    let app = app_with(&fakes).await;
    let lin = app.register("lin@example.com", "lin.w").await;
    let browser = Browser::new();
    browser.set_cookie("127.0.0.1", "tsr_access", &lin.access);

    fakes
        .github
        .sign_in_as(FakeAccount::new("7", "lin-gh@example.com", "lingh"));
    let callback = to_callback(&browser, &app, "github").await;
    let done = browser.get(&callback).await;
    assert_eq!(done.status(), 303);
    let landed = location(&done);
    assert_eq!(query_param(&landed, "linked").as_deref(), Some("github"));
    let linked = me(&app, &lin.access).await;
    assert_eq!(linked["identities"][0]["provider"], "GITHUB");
    assert_eq!(
        linked["email"], "lin@example.com",
        "linking keeps the address"
    );

    // Signing in with that GitHub account now opens Lin's account.
    let (_, token) = sign_in(&Browser::new(), &app, "github").await;
    assert_eq!(me(&app, &token.unwrap()).await["id"], lin.user_id.as_str());

    // Another user cannot take the same GitHub account.
    let mo = app.register("mo@example.com", "mo.k").await;
    let other = Browser::new();
    other.set_cookie("127.0.0.1", "tsr_access", &mo.access);
    let callback = to_callback(&other, &app, "github").await;
    let refused = location(&other.get(&callback).await);
    assert_eq!(
        query_param(&refused, "auth_error").as_deref(),
        Some("identity_in_use")
    );
    assert_eq!(me(&app, &mo.access).await["identities"], json!([]));

    let unlink = "mutation($p: AuthProviderKind!) { unlinkIdentity(provider: $p) { identities { provider } } }";
    let body = app
        .graphql_as(&lin.access, unlink, json!({ "p": "GITHUB" }))
        .await;
    assert_eq!(
        body["data"]["unlinkIdentity"]["identities"],
        json!([]),
        "{body}"
    );
    let again = app
        .graphql_as(&lin.access, unlink, json!({ "p": "GITHUB" }))
        .await;
    assert_eq!(error_of(&again).0, "NOT_FOUND", "{again}");
}

#[tokio::test]
async fn unlink_refuses_to_remove_the_last_way_in() {
    let fakes = fakes().await;
    let app = app_with(&fakes).await;
    // No verified address, no password: GitHub is the only way in.
    fakes
        .github
        .sign_in_as(FakeAccount::new("31", "solo@example.com", "solo").unverified());
    let browser = Browser::new();
    let (_, token) = sign_in(&browser, &app, "github").await;
    let token = token.unwrap();
    let unlink = "mutation($p: AuthProviderKind!) { unlinkIdentity(provider: $p) { identities { provider } } }";
    let refused = app
        .graphql_as(&token, unlink, json!({ "p": "GITHUB" }))
        .await;
    assert_eq!(
        error_of(&refused),
        ("CONFLICT".into(), "last_sign_in_method".into()),
        "{refused}"
    );
    assert_eq!(
        me(&app, &token).await["identities"][0]["provider"],
        "GITHUB"
    );

    // With Discord linked as well, GitHub may go.
    fakes
        .discord
        .sign_in_as(FakeAccount::new("32", "solo-d@example.com", "solo-d").unverified());
    let callback = to_callback(&browser, &app, "discord").await;
    assert_eq!(browser.get(&callback).await.status(), 303);
    let body = app
        .graphql_as(&token, unlink, json!({ "p": "GITHUB" }))
        .await;
    assert_eq!(
        body["data"]["unlinkIdentity"]["identities"],
        json!([{ "provider": "DISCORD" }]),
        "{body}"
    );
}

#[tokio::test]
async fn state_is_single_use_bound_to_the_browser_and_the_provider() {
    let fakes = fakes().await;
    let app = app_with(&fakes).await;
    let browser = Browser::new();

    // Replay: the first use signs in, the second is refused.
    let callback = to_callback(&browser, &app, "google").await;
    assert_eq!(browser.get(&callback).await.status(), 303);
    let replay = browser.get(&callback).await;
    assert_eq!(replay.status(), 400);
    assert_eq!(
        replay.json::<Value>().await.unwrap()["error"],
        "state_unknown"
    );

    // Unknown state.
    let forged = browser
        .get(&app.url("/auth/google/callback?code=abc&state=not-a-state-we-issued"))
        .await;
    assert_eq!(
        forged.json::<Value>().await.unwrap()["error"],
        "state_unknown"
    );
    let missing = browser
        .get(&app.url("/auth/google/callback?code=abc"))
        .await;
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"],
        "state_missing"
    );

    // A callback URL carried to another browser (login CSRF) is refused, and burns the state.
    let callback = to_callback(&browser, &app, "google").await;
    let elsewhere = Browser::new().get(&callback).await;
    assert_eq!(elsewhere.status(), 400);
    assert_eq!(
        elsewhere.json::<Value>().await.unwrap()["error"],
        "state_not_bound"
    );
    let late = browser.get(&callback).await;
    assert_eq!(
        late.json::<Value>().await.unwrap()["error"],
        "state_unknown"
    );

    // A state made for Google is no good at GitHub's callback.
    let callback = to_callback(&browser, &app, "google").await;
    let swapped = callback.replace("/auth/google/callback", "/auth/github/callback");
    let mixed = browser.get(&swapped).await;
    assert_eq!(
        mixed.json::<Value>().await.unwrap()["error"],
        "state_mismatch"
    );
    let before = user_count(&app).await;
    assert_eq!(before, 1, "only the first flow created an account");
}

#[tokio::test]
async fn a_state_used_concurrently_signs_in_exactly_once() {
    let fakes = fakes().await;
    let app = app_with(&fakes).await;
    let browser = Browser::new();
    let callback = to_callback(&browser, &app, "discord").await;
    let attempts = join_all((0..8).map(|_| browser.get(&callback))).await;
    let statuses: Vec<u16> = attempts.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 303).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 7);
    assert_eq!(fakes.discord.token_requests(), 1, "one code exchange");
    assert_eq!(user_count(&app).await, 1);
}

#[tokio::test]
async fn tampered_id_tokens_are_refused() {
    let fakes = fakes().await;
    let app = app_with(&fakes).await;
    for tamper in [
        Tamper::WrongNonce,
        Tamper::UnknownKey,
        Tamper::WrongAudience,
        Tamper::Expired,
    ] {
        let browser = Browser::new();
        let callback = to_callback(&browser, &app, "google").await;
        fakes.google.tamper_next(tamper);
        let done = browser.get(&callback).await;
        assert_eq!(done.status(), 303, "{tamper:?}");
        let landed = location(&done);
        assert_eq!(
            query_param(&landed, "auth_error").as_deref(),
            Some("id_token_invalid"),
            "{tamper:?}: {landed}"
        );
        assert_eq!(
            browser.cookie("127.0.0.1", "tsr_access"),
            None,
            "{tamper:?}"
        );
    }
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn provider_refusals_return_to_the_app_with_a_reason() {
    let fakes = fakes().await;
    let app = app_with(&fakes).await;

    // The person says no at the consent screen.
    fakes.google.deny_next();
    let browser = Browser::new();
    let callback = to_callback(&browser, &app, "google").await;
    let landed = location(&browser.get(&callback).await);
    assert!(landed.starts_with(&app.url("/welcome")), "{landed}");
    assert_eq!(
        query_param(&landed, "auth_error").as_deref(),
        Some("access_denied")
    );

    // A bad code: GitHub answers 200 with an error body.
    let callback = to_callback(&browser, &app, "github").await;
    let mut bad = Url::parse(&callback).unwrap();
    let state = query_param(&callback, "state").unwrap();
    bad.query_pairs_mut()
        .clear()
        .append_pair("code", "bogus")
        .append_pair("state", &state);
    let landed = location(&browser.get(bad.as_str()).await);
    assert_eq!(
        query_param(&landed, "auth_error").as_deref(),
        Some("code_rejected")
    );

    // A disabled account cannot come back through a provider.
    fakes
        .discord
        .sign_in_as(FakeAccount::new("66", "gone@example.com", "gone"));
    let (_, token) = sign_in(&Browser::new(), &app, "discord").await;
    let gone_id = me(&app, &token.unwrap()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = app.register("boss@example.com", "boss").await;
    let disabled = app
        .graphql_as(
            &admin.access,
            "mutation($u: ID!) { disableUser(userId: $u) { id } }",
            json!({ "u": gone_id }),
        )
        .await;
    assert!(disabled["errors"].is_null(), "{disabled}");
    let browser = Browser::new();
    let callback = to_callback(&browser, &app, "discord").await;
    let landed = location(&browser.get(&callback).await);
    assert_eq!(
        query_param(&landed, "auth_error").as_deref(),
        Some("account_disabled")
    );
    assert_eq!(browser.cookie("127.0.0.1", "tsr_access"), None);
}

#[tokio::test]
async fn redirect_to_must_stay_on_allowed_origins() {
    let fakes = fakes().await;
    let app = app_with(&fakes).await;
    let browser = Browser::new();
    for bad in [
        "https://evil.example/steal",
        "//evil.example/steal",
        "/\\evil.example",
        "javascript:alert(1)",
        "http://127.0.0.1.evil.example/",
    ] {
        let response = browser.get(&login_url(&app, "google", Some(bad))).await;
        assert_eq!(response.status(), 400, "{bad}");
        assert_eq!(
            response.json::<Value>().await.unwrap()["error"],
            "redirect_not_allowed",
            "{bad}"
        );
    }
    for good in ["/account?tab=1", "https://app.example.com/after"] {
        let response = browser.get(&login_url(&app, "google", Some(good))).await;
        assert_eq!(response.status(), 303, "{good}");
    }

    // The allowed origin is where the browser lands after signing in.
    let start = browser
        .get(&login_url(
            &app,
            "github",
            Some("https://app.example.com/after"),
        ))
        .await;
    let consent = browser.get(&location(&start)).await;
    let done = browser.get(&location(&consent)).await;
    assert_eq!(location(&done), "https://app.example.com/after");
}

#[tokio::test]
async fn only_configured_providers_are_offered() {
    let fakes = fakes().await;
    let google = fakes.google.url();
    let app = TestApp::builder()
        .configure(move |c| {
            c.identity.google_client_id = Some("google-id".into());
            c.identity.google_client_secret = Some(tessera::config::Secret::new("google-secret"));
            c.identity.google_issuer_url = Url::parse(&google).unwrap();
        })
        .spawn()
        .await;
    let body = app
        .graphql("{ authProviders { kind name loginUrl } }", json!({}))
        .await;
    let providers = body["data"]["authProviders"].as_array().unwrap();
    assert_eq!(providers.len(), 1, "{body}");
    assert_eq!(providers[0]["kind"], "GOOGLE");
    assert_eq!(providers[0]["name"], "Google");
    assert!(
        providers[0]["loginUrl"]
            .as_str()
            .unwrap()
            .ends_with("/auth/google/login")
    );
    let browser = Browser::new();
    let off = browser.get(&app.url("/auth/discord/login")).await;
    assert_eq!(off.status(), 404);
    assert_eq!(
        off.json::<Value>().await.unwrap()["error"],
        "provider_not_configured"
    );
    let unknown = browser.get(&app.url("/auth/myspace/login")).await;
    assert_eq!(
        unknown.json::<Value>().await.unwrap()["error"],
        "unknown_provider"
    );

    let bare = TestApp::spawn().await;
    let body = bare.graphql("{ authProviders { kind } }", json!({})).await;
    assert_eq!(body["data"]["authProviders"], json!([]));
}

#[tokio::test]
async fn admin_emails_promote_on_provider_sign_in() {
    let fakes = fakes().await;
    let app = app_with(&fakes).await;
    fakes
        .google
        .sign_in_as(FakeAccount::new("g-boss", "boss@example.com", "boss"));
    let (_, token) = sign_in(&Browser::new(), &app, "google").await;
    assert_eq!(me(&app, &token.unwrap()).await["role"], "ADMIN");
}

#[tokio::test]
async fn a_sign_in_started_on_one_instance_finishes_on_another() {
    // Needs state shared through Redis; the in-process kv is per instance by design.
    let Some(redis) = redis_url() else {
        eprintln!("REDIS_URL unset: the cross-instance case runs in the Redis pass of CI");
        return;
    };
    let fakes = fakes().await;
    let a = app_builder(&fakes).redis_url(redis).spawn().await;
    let b = a.spawn_peer_with(app_builder(&fakes)).await;
    let browser = Browser::new();
    let callback = to_callback(&browser, &a, "google").await;
    // PUBLIC_URL names instance A; send the callback to B, as a load balancer might.
    let to_b = callback.replace(&a.addr.to_string(), &b.addr.to_string());
    let done = browser.get(&to_b).await;
    assert_eq!(done.status(), 303, "{}", done.text().await.unwrap());
}

#[tokio::test]
async fn a_rotated_issuer_key_is_fetched_once_and_accepted() {
    let fakes = fakes().await;
    let app = app_with(&fakes).await;
    fakes
        .google
        .sign_in_as(FakeAccount::new("g-rot", "rot@example.com", "rot"));
    let (_, before) = sign_in(&Browser::new(), &app, "google").await;
    assert!(before.is_some(), "keys are now cached");
    fakes.google.rotate_key();
    let (landed, after) = sign_in(&Browser::new(), &app, "google").await;
    assert_eq!(query_param(&landed, "auth_error"), None, "{landed}");
    assert!(
        after.is_some(),
        "the new key was fetched and the token accepted"
    );
}
