//! Identity end to end over HTTP and WebSocket: registration, sign-in, sessions, refresh
//! rotation with reuse detection, sign-out, password change, roles and disabling, and the
//! refusals of each.

use std::time::{Duration, SystemTime};

use futures_util::future::join_all;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use tessera::identity::{Role, entity::user, tokens::AccessClaims};

use crate::helpers::{PASSWORD, Session, TestApp, error_of, ws_close_code, ws_next, ws_send};

const ME: &str = "{ me { id email username role emailVerified } }";

async fn user_count(app: &TestApp) -> u64 {
    user::Entity::find()
        .count(app.state.db.conn())
        .await
        .unwrap()
}

async fn refresh(app: &TestApp, token: &str) -> Value {
    app.graphql(
        "mutation($t: String) { refreshSession(refreshToken: $t) { user { id role } accessToken refreshToken } }",
        json!({ "t": token }),
    )
    .await
}

#[tokio::test]
async fn register_signs_in_with_bearer_and_cookies() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/graphql"))
        .json(&json!({
            "query": "mutation($i: RegisterInput!) { register(input: $i) { user { id username } accessToken refreshToken accessTokenExpiresAt } }",
            "variables": { "i": { "email": "Ada@Example.com", "username": "ada", "password": PASSWORD } },
        }))
        .send()
        .await
        .unwrap();
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body: Value = response.json().await.unwrap();
    assert!(body["errors"].is_null(), "{body}");
    let payload = &body["data"]["register"];
    let access = payload["accessToken"].as_str().unwrap();
    assert!(access.starts_with("tsr_sat_"));
    assert!(
        payload["refreshToken"]
            .as_str()
            .unwrap()
            .starts_with("tsr_rt_")
    );
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    for cookie in &cookies {
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );
        assert!(!cookie.contains("Secure"), "plain http in tests: {cookie}");
    }
    let refresh_cookie = cookies
        .iter()
        .find(|c| c.starts_with("tsr_refresh="))
        .unwrap();
    assert!(refresh_cookie.contains("Path=/graphql"), "{refresh_cookie}");

    let me = app.graphql_as(access, ME, json!({})).await;
    assert_eq!(me["data"]["me"]["email"], "ada@example.com", "{me}");
    assert_eq!(me["data"]["me"]["role"], "USER");
    assert_eq!(me["data"]["me"]["emailVerified"], false);

    // The cookie alone signs the browser in.
    let access_cookie = cookies
        .iter()
        .find(|c| c.starts_with("tsr_access="))
        .unwrap();
    // Both cookies last as long as the session can be refreshed, so an expired access
    // token is still sent and answered `token_expired` (the cue to refresh), never
    // mistaken for nobody signed in.
    let max_age = |c: &str| -> i64 {
        c.split("; ")
            .find_map(|a| a.strip_prefix("Max-Age="))
            .unwrap()
            .parse()
            .unwrap()
    };
    let refresh_ttl = app.state.config.identity.refresh_token_ttl.0.as_secs() as i64;
    assert!(
        (refresh_ttl - max_age(access_cookie)).abs() <= 2,
        "{access_cookie}"
    );
    assert!(
        (max_age(access_cookie) - max_age(refresh_cookie)).abs() <= 1,
        "{cookies:?}"
    );
    let pair = access_cookie.split(';').next().unwrap();
    let me: Value = app
        .client
        .post(app.url("/graphql"))
        .header("cookie", pair)
        .json(&json!({ "query": ME }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["data"]["me"]["username"], "ada", "{me}");

    // Anonymous: me is null, no error.
    let me = app.graphql(ME, json!({})).await;
    assert!(me["data"]["me"].is_null() && me["errors"].is_null(), "{me}");
}

#[tokio::test]
async fn registration_refusals_write_nothing() {
    let app = TestApp::spawn().await;
    app.register("grace@example.com", "grace").await;
    let before = user_count(&app).await;
    let attempt = |email: &'static str, username: &'static str, password: &'static str| {
        app.graphql(
            "mutation($i: RegisterInput!) { register(input: $i) { accessToken } }",
            json!({ "i": { "email": email, "username": username, "password": password } }),
        )
    };
    let cases = [
        (
            "GRACE@example.com",
            "grace2",
            PASSWORD,
            "CONFLICT",
            "email_taken",
        ),
        (
            "other@example.com",
            "GRACE",
            PASSWORD,
            "CONFLICT",
            "username_taken",
        ),
        (
            "weak@example.com",
            "weakling",
            "password123",
            "BAD_USER_INPUT",
            "weak_password",
        ),
        (
            "not-an-email",
            "someone",
            PASSWORD,
            "BAD_USER_INPUT",
            "invalid_email",
        ),
        (
            "ok@example.com",
            "a",
            PASSWORD,
            "BAD_USER_INPUT",
            "invalid_username",
        ),
    ];
    for (email, username, password, code, reason) in cases {
        let body = attempt(email, username, password).await;
        assert_eq!(
            error_of(&body),
            (code.to_owned(), reason.to_owned()),
            "{email}: {body}"
        );
        assert!(body["data"].is_null(), "{body}");
    }
    let weak = attempt("weak@example.com", "weakling", "password123").await;
    assert!(
        weak["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("too easy to guess"),
        "the refusal says why: {weak}"
    );
    assert_eq!(user_count(&app).await, before);
}

#[tokio::test]
async fn login_refuses_wrong_and_unknown_alike_then_rate_limits() {
    let app = TestApp::builder()
        .configure(|c| c.identity.login_rate_limit_per_email = 4)
        .spawn()
        .await;
    app.register("lin@example.com", "lin").await;
    let ok = app.login("LIN@example.com", PASSWORD).await;
    assert!(ok["errors"].is_null(), "{ok}");

    let wrong = app
        .login("lin@example.com", "not the password at all")
        .await;
    let unknown = app.login("nobody@example.com", PASSWORD).await;
    assert_eq!(
        error_of(&wrong),
        ("UNAUTHENTICATED".into(), "invalid_credentials".into())
    );
    assert_eq!(error_of(&wrong), error_of(&unknown));
    assert_eq!(
        wrong["errors"][0]["message"],
        unknown["errors"][0]["message"]
    );

    // Four attempts per minute for one address: the fifth is refused even with the right password.
    for _ in 0..2 {
        app.login("lin@example.com", "still wrong").await;
    }
    let limited = app.login("lin@example.com", PASSWORD).await;
    assert_eq!(error_of(&limited).0, "RATE_LIMITED", "{limited}");
    assert!(
        limited["errors"][0]["extensions"]["retryAfter"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_token_ends_the_session() {
    let app = TestApp::spawn().await;
    let first = app.register("rosa@example.com", "rosa").await;

    let body = refresh(&app, &first.refresh).await;
    assert!(body["errors"].is_null(), "{body}");
    let second = Session::from_payload(&body["data"]["refreshSession"]);
    assert_ne!(second.refresh, first.refresh);
    let me = app.graphql_as(&second.access, ME, json!({})).await;
    assert_eq!(me["data"]["me"]["username"], "rosa");

    // The first token comes back: someone copied it. The whole session ends.
    let reused = refresh(&app, &first.refresh).await;
    assert_eq!(
        error_of(&reused),
        ("UNAUTHENTICATED".into(), "refresh_token_reused".into())
    );
    let after = refresh(&app, &second.refresh).await;
    assert_eq!(
        error_of(&after).0,
        "UNAUTHENTICATED",
        "the newer token died too: {after}"
    );
    let me = app.graphql_as(&second.access, ME, json!({})).await;
    assert_eq!(
        error_of(&me),
        ("UNAUTHENTICATED".into(), "session_revoked".into())
    );

    for garbage in [
        "",
        "tsr_rt_nope",
        "tsr_rt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let body = refresh(&app, garbage).await;
        assert_eq!(
            error_of(&body),
            ("UNAUTHENTICATED".into(), "refresh_token_invalid".into()),
            "{garbage}"
        );
    }
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_admit_one() {
    let app = TestApp::spawn().await;
    let session = app.register("conc@example.com", "conc").await;
    let results = join_all((0..6).map(|_| refresh(&app, &session.refresh))).await;
    let winners = results.iter().filter(|b| b["errors"].is_null()).count();
    assert!(winners <= 1, "at most one refresh may win: {results:?}");
    let refused: Vec<_> = results
        .iter()
        .filter(|b| !b["errors"].is_null())
        .map(error_of)
        .collect();
    assert!(
        refused.iter().all(|(code, _)| code == "UNAUTHENTICATED"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn tampered_expired_and_foreign_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let session = app.register("tom@example.com", "tom").await;
    let mut bytes = session.access.clone().into_bytes();
    let i = bytes.len() - 12;
    bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
    let tampered = String::from_utf8(bytes).unwrap();
    let me = app.graphql_as(&tampered, ME, json!({})).await;
    assert_eq!(
        error_of(&me),
        ("UNAUTHENTICATED".into(), "token_invalid".into()),
        "{me}"
    );

    let expired = app
        .state
        .identity
        .keys
        .mint_access(&AccessClaims {
            user_id: session.user_id.parse().unwrap(),
            session_id: uuid::Uuid::now_v7(),
            role: Role::Admin,
            expires_at: SystemTime::now() - Duration::from_secs(5),
        })
        .unwrap();
    let me = app.graphql_as(&expired, ME, json!({})).await;
    assert_eq!(
        error_of(&me),
        ("UNAUTHENTICATED".into(), "token_expired".into())
    );

    let other = TestApp::spawn().await;
    let foreign = other.register("tom@example.com", "tom").await;
    let me = app.graphql_as(&foreign.access, ME, json!({})).await;
    assert_eq!(
        error_of(&me).1,
        "token_invalid",
        "another server's key is not ours"
    );

    let response = app
        .client
        .post(app.url("/graphql"))
        .header("authorization", "Basic dG9tOnRvbQ==")
        .json(&json!({ "query": ME }))
        .send()
        .await
        .unwrap();
    let me: Value = response.json().await.unwrap();
    assert_eq!(error_of(&me).1, "unsupported_authorization");

    // A bad credential does not stop signing in again.
    let login = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&tampered)
        .json(&json!({
            "query": "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }",
            "variables": { "e": "tom@example.com", "p": PASSWORD },
        }))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert!(login["errors"].is_null(), "{login}");
}

#[tokio::test]
async fn logout_and_session_management() {
    let app = TestApp::spawn().await;
    let laptop = app.register("lou@example.com", "lou").await;
    let phone =
        Session::from_payload(&app.login("lou@example.com", PASSWORD).await["data"]["login"]);
    let tablet =
        Session::from_payload(&app.login("lou@example.com", PASSWORD).await["data"]["login"]);

    let list = app
        .graphql_as(
            &laptop.access,
            "{ me { sessions { id current } } }",
            json!({}),
        )
        .await;
    let sessions = list["data"]["me"]["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 3, "{list}");
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);

    // Revoke the phone from the laptop.
    let phone_id = {
        let list = app
            .graphql_as(
                &phone.access,
                "{ me { sessions { id current } } }",
                json!({}),
            )
            .await;
        list["data"]["me"]["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["current"] == true)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let revoke = "mutation($id: ID!) { revokeSession(id: $id) }";
    let body = app
        .graphql_as(&laptop.access, revoke, json!({ "id": phone_id }))
        .await;
    assert_eq!(body["data"]["revokeSession"], true, "{body}");
    let me = app.graphql_as(&phone.access, ME, json!({})).await;
    assert_eq!(error_of(&me).1, "session_revoked");

    // Someone else's session is not found, and unchanged.
    let stranger = app.register("sam@example.com", "sam").await;
    let list = app
        .graphql_as(
            &tablet.access,
            "{ me { sessions { id current } } }",
            json!({}),
        )
        .await;
    let tablet_id = list["data"]["me"]["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()["id"]
        .clone();
    let body = app
        .graphql_as(&stranger.access, revoke, json!({ "id": tablet_id }))
        .await;
    assert_eq!(error_of(&body).0, "NOT_FOUND");
    let me = app.graphql_as(&tablet.access, ME, json!({})).await;
    assert_eq!(me["data"]["me"]["username"], "lou");

    // logout ends this session only; logout(allSessions) the rest.
    let body = app
        .graphql_as(&tablet.access, "mutation { logout }", json!({}))
        .await;
    assert_eq!(body["data"]["logout"], true);
    assert_eq!(
        error_of(&app.graphql_as(&tablet.access, ME, json!({})).await).1,
        "session_revoked"
    );
    assert_eq!(
        app.graphql_as(&laptop.access, ME, json!({})).await["data"]["me"]["username"],
        "lou"
    );
    app.graphql_as(
        &laptop.access,
        "mutation { logout(allSessions: true) }",
        json!({}),
    )
    .await;
    assert_eq!(
        error_of(&app.graphql_as(&laptop.access, ME, json!({})).await).1,
        "session_revoked"
    );
    let dead = refresh(&app, &laptop.refresh).await;
    assert_eq!(error_of(&dead).0, "UNAUTHENTICATED");

    let anonymous = app.graphql("mutation { logout }", json!({})).await;
    assert_eq!(error_of(&anonymous).0, "UNAUTHENTICATED");
}

#[tokio::test]
async fn change_password_checks_the_old_one_and_ends_other_sessions() {
    let app = TestApp::spawn().await;
    let here = app.register("cy@example.com", "cyra").await;
    let there =
        Session::from_payload(&app.login("cy@example.com", PASSWORD).await["data"]["login"]);
    let change = "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }";

    let wrong = app
        .graphql_as(
            &here.access,
            change,
            json!({ "c": "nope nope nope", "n": "fresh-lantern-meadow-77" }),
        )
        .await;
    assert_eq!(error_of(&wrong).1, "invalid_credentials");
    let weak = app
        .graphql_as(
            &here.access,
            change,
            json!({ "c": PASSWORD, "n": "qwerty12345" }),
        )
        .await;
    assert_eq!(error_of(&weak).1, "weak_password");

    let ok = app
        .graphql_as(
            &here.access,
            change,
            json!({ "c": PASSWORD, "n": "fresh-lantern-meadow-77" }),
        )
        .await;
    assert_eq!(ok["data"]["changePassword"], true, "{ok}");
    assert_eq!(
        app.graphql_as(&here.access, ME, json!({})).await["data"]["me"]["username"],
        "cyra"
    );
    assert_eq!(
        error_of(&app.graphql_as(&there.access, ME, json!({})).await).1,
        "session_revoked"
    );
    assert_eq!(
        error_of(&app.login("cy@example.com", PASSWORD).await).1,
        "invalid_credentials"
    );
    assert!(app.login("cy@example.com", "fresh-lantern-meadow-77").await["errors"].is_null());
}

#[tokio::test]
async fn admins_manage_users_and_disabling_is_immediate() {
    let app = TestApp::builder()
        .configure(|c| c.identity.admin_emails = vec!["boss@example.com".into()])
        .spawn()
        .await;
    let boss = app.register("boss@example.com", "boss").await;
    assert_eq!(boss.role, "ADMIN", "ADMIN_EMAILS promote at registration");
    let worker = app.register("wes@example.com", "wes").await;
    assert_eq!(worker.role, "USER");

    let disable = "mutation($id: ID!) { disableUser(userId: $id) { id disabledAt } }";
    let set_role =
        "mutation($id: ID!, $r: Role!) { setUserRole(userId: $id, role: $r) { id role } }";

    // Users cannot do admin things.
    let body = app
        .graphql_as(&worker.access, disable, json!({ "id": boss.user_id }))
        .await;
    assert_eq!(error_of(&body), ("FORBIDDEN".into(), "admin_only".into()));
    let body = app
        .graphql_as(
            &worker.access,
            set_role,
            json!({ "id": worker.user_id, "r": "ADMIN" }),
        )
        .await;
    assert_eq!(error_of(&body).0, "FORBIDDEN");
    let body = app.graphql(disable, json!({ "id": boss.user_id })).await;
    assert_eq!(error_of(&body).0, "UNAUTHENTICATED");
    assert_eq!(
        app.graphql_as(&boss.access, ME, json!({})).await["data"]["me"]["role"],
        "ADMIN"
    );

    // An admin cannot lock themself out.
    let body = app
        .graphql_as(&boss.access, disable, json!({ "id": boss.user_id }))
        .await;
    assert_eq!(error_of(&body).1, "cannot_disable_self");
    let body = app
        .graphql_as(
            &boss.access,
            disable,
            json!({ "id": uuid::Uuid::new_v4().to_string() }),
        )
        .await;
    assert_eq!(error_of(&body).0, "NOT_FOUND");

    let body = app
        .graphql_as(&boss.access, disable, json!({ "id": worker.user_id }))
        .await;
    assert!(
        body["data"]["disableUser"]["disabledAt"].is_string(),
        "{body}"
    );
    let me = app.graphql_as(&worker.access, ME, json!({})).await;
    assert_eq!(error_of(&me).1, "session_revoked", "refused at once: {me}");
    let login = app.login("wes@example.com", PASSWORD).await;
    assert_eq!(
        error_of(&login),
        ("FORBIDDEN".into(), "account_disabled".into())
    );
    assert_eq!(
        error_of(&refresh(&app, &worker.refresh).await).0,
        "UNAUTHENTICATED"
    );

    // Promote someone; the change holds at once (their old token is gone).
    let carol = app.register("carol@example.com", "carol").await;
    let body = app
        .graphql_as(
            &boss.access,
            set_role,
            json!({ "id": carol.user_id, "r": "ADMIN" }),
        )
        .await;
    assert_eq!(body["data"]["setUserRole"]["role"], "ADMIN", "{body}");
    assert_eq!(
        error_of(&app.graphql_as(&carol.access, ME, json!({})).await).1,
        "session_revoked"
    );
    let carol =
        Session::from_payload(&app.login("carol@example.com", PASSWORD).await["data"]["login"]);
    assert_eq!(carol.role, "ADMIN");

    let audit = tessera::platform::audit::recent(app.state.db.conn(), 10)
        .await
        .unwrap();
    let actions: Vec<_> = audit.iter().map(|a| a.action.as_str()).collect();
    assert!(
        actions.contains(&"user.disable") && actions.contains(&"user.set_role"),
        "{actions:?}"
    );
    assert!(
        audit
            .iter()
            .all(|a| a.actor_id == Some(boss.user_id.parse().unwrap()))
    );
}

#[tokio::test]
async fn websocket_connections_authenticate_in_connection_init() {
    let app = TestApp::spawn().await;
    let session = app.register("wendy@example.com", "wendy").await;

    let mut ws = app.ws_connect("graphql-transport-ws", None).await.unwrap();
    ws_send(&mut ws, json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {}", session.access)}})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "connection_ack");
    ws_send(
        &mut ws,
        json!({"id": "1", "type": "subscribe", "payload": {"query": ME}}),
    )
    .await;
    let next = ws_next(&mut ws).await;
    assert_eq!(next["payload"]["data"]["me"]["username"], "wendy", "{next}");

    let mut ws = app.ws_connect("graphql-transport-ws", None).await.unwrap();
    ws_send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"authorization": "Bearer tsr_sat_forged"}}),
    )
    .await;
    let (code, reason) = ws_close_code(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, 4403, "{reason}");

    // Anonymous connections are fine; `me` is null there.
    let mut ws = app.ws_connect("graphql-ws", None).await.unwrap();
    ws_send(&mut ws, json!({"type": "connection_init"})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "connection_ack");
    ws_send(
        &mut ws,
        json!({"id": "1", "type": "start", "payload": {"query": ME}}),
    )
    .await;
    assert!(ws_next(&mut ws).await["payload"]["data"]["me"].is_null());
}

#[tokio::test]
async fn a_revoked_session_closes_its_websockets_on_every_instance() {
    let app = TestApp::spawn().await;
    let session = app.register("rex@example.com", "rexy").await;
    let mut ws = app.ws_signed_in(&session.access).await;
    app.graphql_as(&session.access, "mutation { logout }", json!({}))
        .await;
    let (code, reason) = ws_close_code(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(
        (code, reason.as_str()),
        (4403, "Forbidden: session_revoked")
    );

    if app.state.kv.backend() != "redis" {
        eprintln!("REDIS_URL unset: the cross-instance half needs a shared kv");
        return;
    }
    // Signed in on A, signed out through B: A's socket closes.
    let peer = app.spawn_peer().await;
    let again =
        Session::from_payload(&app.login("rex@example.com", PASSWORD).await["data"]["login"]);
    let mut ws = app.ws_signed_in(&again.access).await;
    let body = peer
        .graphql_as(&again.access, "mutation { logout }", json!({}))
        .await;
    assert_eq!(body["data"]["logout"], true, "{body}");
    let (code, _) = ws_close_code(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, 4403);
}

#[tokio::test]
async fn profiles_change_within_their_rules() {
    let app = TestApp::spawn().await;
    let pat = app.register("pat@example.com", "pat").await;
    app.register("quinn@example.com", "quinn").await;
    let update = "mutation($i: UpdateProfileInput!) { updateProfile(input: $i) { username displayName avatarUrl } }";

    let body = app
        .graphql_as(
            &pat.access,
            update,
            json!({ "i": { "displayName": "  Pat Doe ", "avatarUrl": "https://img.example.com/p.png", "username": "Patricia" } }),
        )
        .await;
    let profile = &body["data"]["updateProfile"];
    assert_eq!(profile["username"], "Patricia", "{body}");
    assert_eq!(profile["displayName"], "Pat Doe");
    assert_eq!(profile["avatarUrl"], "https://img.example.com/p.png");

    for (input, reason) in [
        (json!({ "username": "QUINN" }), "username_taken"),
        (json!({ "username": "no spaces" }), "invalid_username"),
        (
            json!({ "avatarUrl": "javascript:alert(1)" }),
            "invalid_avatar_url",
        ),
        (
            json!({ "avatarUrl": "http://img.example.com/p.png" }),
            "invalid_avatar_url",
        ),
        (
            json!({ "displayName": "x".repeat(65) }),
            "invalid_display_name",
        ),
    ] {
        let body = app
            .graphql_as(&pat.access, update, json!({ "i": input }))
            .await;
        assert_eq!(error_of(&body).1, reason, "{body}");
    }
    // Refusals changed nothing; "" clears an optional field; omitted fields stay.
    let body = app
        .graphql_as(&pat.access, update, json!({ "i": { "displayName": "" } }))
        .await;
    let profile = &body["data"]["updateProfile"];
    assert!(profile["displayName"].is_null(), "{body}");
    assert_eq!(profile["username"], "Patricia");
    assert_eq!(profile["avatarUrl"], "https://img.example.com/p.png");

    let anonymous = app
        .graphql(update, json!({ "i": { "displayName": "x" } }))
        .await;
    assert_eq!(error_of(&anonymous).0, "UNAUTHENTICATED");
}

#[tokio::test]
async fn forwarded_client_addresses_are_believed_only_from_trusted_proxies() {
    for (trusted, expected) in [(true, "203.0.113.9"), (false, "127.0.0.1")] {
        let app = TestApp::builder()
            .configure(move |c| {
                if trusted {
                    c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
                }
            })
            .spawn()
            .await;
        let body: Value = app
            .client
            .post(app.url("/graphql"))
            .header("x-forwarded-for", "203.0.113.9")
            .json(&json!({
                "query": "mutation($i: RegisterInput!) { register(input: $i) { accessToken } }",
                "variables": { "i": { "email": "fwd@example.com", "username": "fwd", "password": PASSWORD } },
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let access = body["data"]["register"]["accessToken"].as_str().unwrap();
        let sessions = app
            .graphql_as(access, "{ me { sessions { ip } } }", json!({}))
            .await;
        assert_eq!(
            sessions["data"]["me"]["sessions"][0]["ip"], expected,
            "trusted={trusted}"
        );
    }
}

#[tokio::test]
async fn racing_registrations_of_one_address_create_one_account() {
    let app = TestApp::spawn().await;
    let attempts = (0..6).map(|i| {
        app.graphql(
            "mutation($i: RegisterInput!) { register(input: $i) { user { id } } }",
            json!({ "i": { "email": "race@example.com", "username": format!("racer{i}"), "password": PASSWORD } }),
        )
    });
    let results = join_all(attempts).await;
    let winners = results.iter().filter(|b| b["errors"].is_null()).count();
    assert_eq!(winners, 1, "{results:?}");
    for body in results.iter().filter(|b| !b["errors"].is_null()) {
        assert_eq!(
            error_of(body),
            ("CONFLICT".into(), "email_taken".into()),
            "{body}"
        );
    }
    assert_eq!(user_count(&app).await, 1);

    let attempts = (0..6).map(|i| {
        app.graphql(
            "mutation($i: RegisterInput!) { register(input: $i) { user { id } } }",
            json!({ "i": { "email": format!("same-name-{i}@example.com"), "username": "samename", "password": PASSWORD } }),
        )
    });
    let results = join_all(attempts).await;
    assert_eq!(
        results.iter().filter(|b| b["errors"].is_null()).count(),
        1,
        "{results:?}"
    );
    for body in results.iter().filter(|b| !b["errors"].is_null()) {
        assert_eq!(
            error_of(body),
            ("CONFLICT".into(), "username_taken".into()),
            "{body}"
        );
    }
}

#[tokio::test]
async fn session_use_is_recorded_without_a_write_per_request() {
    let app = TestApp::builder()
        .configure(|c| c.identity.session_touch_interval = "200ms".parse().unwrap())
        .spawn()
        .await;
    let session = app.register("uma@example.com", "uma").await;
    let sessions = "{ me { sessions { refreshedAt lastUsedAt } } }";
    let before = app.graphql_as(&session.access, sessions, json!({})).await;
    let first = before["data"]["me"]["sessions"][0]["lastUsedAt"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(50)).await;
    app.graphql_as(&session.access, ME, json!({})).await;
    // Recorded by the next flush, not by the request itself.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = app.graphql_as(&session.access, sessions, json!({})).await;
        let last = now["data"]["me"]["sessions"][0]["lastUsedAt"]
            .as_str()
            .unwrap()
            .to_owned();
        if chrono::DateTime::parse_from_rfc3339(&last).unwrap()
            > chrono::DateTime::parse_from_rfc3339(&first).unwrap()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lastUsedAt never moved past {first}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
