//! Mailed proofs: email verification (link and code), password reset, sign-in codes. The
//! in-memory outbox stands in for SMTP; links and codes are read from the mails as a person
//! would.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};
use tessera::{identity::entity::one_time_code, platform::mail::OutgoingMail};

use crate::helpers::{PASSWORD, Session, TestApp, error_of};

fn mails_to(app: &TestApp, to: &str) -> Vec<OutgoingMail> {
    app.state
        .mailer
        .outbox()
        .into_iter()
        .filter(|m| m.to == to)
        .collect()
}

fn token_in(mail: &OutgoingMail) -> String {
    let start = mail.text.find("token=").expect("a link with a token") + "token=".len();
    mail.text[start..]
        .split(|c: char| c.is_whitespace())
        .next()
        .unwrap()
        .to_owned()
}

fn code_in(mail: &OutgoingMail) -> String {
    mail.text
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .expect("a six-digit code")
        .to_owned()
}

async fn verify(app: &TestApp, token: &str, bearer: Option<&str>) -> Value {
    let query = "mutation($t: String!) { verifyEmail(token: $t) { emailVerified } }";
    match bearer {
        Some(b) => app.graphql_as(b, query, json!({ "t": token })).await,
        None => app.graphql(query, json!({ "t": token })).await,
    }
}

#[tokio::test]
async fn registration_mails_a_single_use_link_and_code() {
    let app = TestApp::spawn().await;
    let session = app.register("vera@example.com", "vera").await;
    let mails = mails_to(&app, "vera@example.com");
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(
        mail.text.contains("/verify-email?token=tsr_ev_"),
        "{}",
        mail.text
    );
    assert!(
        mail.html.contains("href=\"http://localhost:"),
        "{}",
        mail.html
    );
    let token = token_in(mail);
    let code = code_in(mail);

    // A code needs a signed-in user; a wrong link does nothing.
    assert_eq!(
        error_of(&verify(&app, &code, None).await).1,
        "sign_in_required"
    );
    assert_eq!(
        error_of(&verify(&app, "tsr_ev_forged", None).await).1,
        "invalid_token"
    );

    let body = verify(&app, &token, None).await;
    assert_eq!(body["data"]["verifyEmail"]["emailVerified"], true, "{body}");
    assert_eq!(
        error_of(&verify(&app, &token, None).await).1,
        "invalid_token",
        "single use"
    );
    assert_eq!(
        error_of(&verify(&app, &code, Some(&session.access)).await).1,
        "invalid_token",
        "the sibling code closed with the link"
    );
}

#[tokio::test]
async fn verification_by_code_for_the_signed_in_user() {
    let app = TestApp::spawn().await;
    let session = app.register("cody@example.com", "cody").await;
    let mail = app
        .graphql_as(
            &session.access,
            "mutation { requestEmailVerification }",
            json!({}),
        )
        .await;
    assert_eq!(mail["data"]["requestEmailVerification"], true);
    let mails = mails_to(&app, "cody@example.com");
    assert_eq!(mails.len(), 2, "registration mail and the new one");
    let code = code_in(&mails[1]);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(
        error_of(&verify(&app, wrong, Some(&session.access)).await).1,
        "invalid_token"
    );
    // The older mail's code was replaced by the new one.
    let old = code_in(&mails[0]);
    if old != code {
        assert_eq!(
            error_of(&verify(&app, &old, Some(&session.access)).await).1,
            "invalid_token"
        );
    }
    let body = verify(&app, &code, Some(&session.access)).await;
    assert_eq!(body["data"]["verifyEmail"]["emailVerified"], true, "{body}");
    let me = app
        .graphql_as(&session.access, "{ me { emailVerified } }", json!({}))
        .await;
    assert_eq!(me["data"]["me"]["emailVerified"], true);
}

#[tokio::test]
async fn password_reset_is_single_use_expires_and_ends_sessions() {
    let app = TestApp::spawn().await;
    let session = app.register("rita@example.com", "rita").await;
    let request = "mutation($e: String!) { requestPasswordReset(email: $e) }";
    let reset = "mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) }";

    // Unknown and known addresses get the same answer; only the known one gets mail.
    let unknown = app
        .graphql(request, json!({ "e": "nobody@example.com" }))
        .await;
    let known = app
        .graphql(request, json!({ "e": "RITA@example.com" }))
        .await;
    assert_eq!(unknown, known);
    assert_eq!(known["data"]["requestPasswordReset"], true);
    assert!(mails_to(&app, "nobody@example.com").is_empty());
    let mail = mails_to(&app, "rita@example.com").pop().unwrap();
    assert_eq!(mail.subject, "Reset your password");
    let token = token_in(&mail);
    assert!(token.starts_with("tsr_pr_"));

    let weak = app
        .graphql(reset, json!({ "t": token, "p": "letmein123" }))
        .await;
    assert_eq!(error_of(&weak).1, "weak_password");
    let forged = app
        .graphql(
            reset,
            json!({ "t": "tsr_pr_nope", "p": "new-meadow-falcon-52" }),
        )
        .await;
    assert_eq!(error_of(&forged).1, "invalid_token");

    let ok = app
        .graphql(reset, json!({ "t": token, "p": "new-meadow-falcon-52" }))
        .await;
    assert_eq!(ok["data"]["resetPassword"], true, "{ok}");
    let me = app
        .graphql_as(&session.access, "{ me { id } }", json!({}))
        .await;
    assert_eq!(error_of(&me).1, "session_revoked", "every session ended");
    let again = app
        .graphql(reset, json!({ "t": token, "p": "other-meadow-falcon-53" }))
        .await;
    assert_eq!(error_of(&again).1, "invalid_token", "single use");
    assert_eq!(
        error_of(&app.login("rita@example.com", PASSWORD).await).1,
        "invalid_credentials"
    );
    assert!(app.login("rita@example.com", "new-meadow-falcon-52").await["errors"].is_null());

    // An expired link is refused.
    app.graphql(request, json!({ "e": "rita@example.com" }))
        .await;
    let token = token_in(&mails_to(&app, "rita@example.com").pop().unwrap());
    one_time_code::Entity::update_many()
        .col_expr(
            one_time_code::Column::ExpiresAt,
            Expr::value(chrono::Utc::now() - chrono::Duration::minutes(1)),
        )
        .filter(one_time_code::Column::Purpose.eq("reset_password"))
        .exec(app.state.db.conn())
        .await
        .unwrap();
    let late = app
        .graphql(reset, json!({ "t": token, "p": "late-meadow-falcon-54" }))
        .await;
    assert_eq!(error_of(&late).1, "invalid_token");
}

async fn request_code(app: &TestApp, email: &str) -> Value {
    app.graphql(
        "mutation($e: String!) { requestLoginCode(email: $e) }",
        json!({ "e": email }),
    )
    .await
}

async fn login_with_code(app: &TestApp, email: &str, code: &str) -> Value {
    app.graphql(
        "mutation($e: String!, $c: String!) { loginWithCode(email: $e, code: $c) { user { id username emailVerified } accessToken refreshToken } }",
        json!({ "e": email, "c": code }),
    )
    .await
}

/// Signs in (or up) with a mailed code, which proves the address.
pub async fn sign_in_with_code(app: &TestApp, email: &str) -> Session {
    assert_eq!(
        request_code(app, email).await["data"]["requestLoginCode"],
        true
    );
    let code = code_in(mails_to(app, email).last().expect("a code mail"));
    let body = login_with_code(app, email, &code).await;
    assert!(body["errors"].is_null(), "{body}");
    Session::from_payload(&body["data"]["loginWithCode"])
}

#[tokio::test]
async fn login_codes_create_accounts_and_die_after_five_wrong_tries() {
    let app = TestApp::spawn().await;
    assert_eq!(
        request_code(&app, "Newbie@Example.com").await["data"]["requestLoginCode"],
        true
    );
    let code = code_in(&mails_to(&app, "newbie@example.com").pop().unwrap());

    let body = login_with_code(&app, "newbie@example.com", &code).await;
    assert!(body["errors"].is_null(), "{body}");
    let user = &body["data"]["loginWithCode"]["user"];
    assert_eq!(
        user["emailVerified"], true,
        "receiving the code proves the address"
    );
    assert_eq!(user["username"], "newbie");
    let first_id = user["id"].clone();
    let again = login_with_code(&app, "newbie@example.com", &code).await;
    assert_eq!(error_of(&again).1, "invalid_code", "single use");

    // The next code signs in the same account.
    request_code(&app, "newbie@example.com").await;
    let code = code_in(&mails_to(&app, "newbie@example.com").pop().unwrap());
    let wrong = if code == "123456" { "654321" } else { "123456" };
    for _ in 0..5 {
        let body = login_with_code(&app, "newbie@example.com", wrong).await;
        assert_eq!(error_of(&body).1, "invalid_code");
    }
    let exhausted = login_with_code(&app, "newbie@example.com", &code).await;
    assert_eq!(
        error_of(&exhausted).1,
        "code_exhausted",
        "dead after five wrong attempts"
    );

    request_code(&app, "newbie@example.com").await;
    let code = code_in(&mails_to(&app, "newbie@example.com").pop().unwrap());
    let body = login_with_code(&app, "newbie@example.com", &code).await;
    assert_eq!(
        body["data"]["loginWithCode"]["user"]["id"], first_id,
        "{body}"
    );
    let session = Session::from_payload(&body["data"]["loginWithCode"]);
    assert!(session.access.starts_with("tsr_sat_"));

    // Garbage is refused without touching anything.
    for (email, code) in [
        ("not-an-email", "123456"),
        ("newbie@example.com", "12ab56"),
        ("newbie@example.com", "1234567"),
    ] {
        assert_eq!(
            error_of(&login_with_code(&app, email, code).await).1,
            "invalid_code"
        );
    }
}

#[tokio::test]
async fn code_requests_answer_alike_and_are_rate_limited() {
    let app = TestApp::builder()
        .configure(|c| c.identity.login_rate_limit_per_email = 3)
        .spawn()
        .await;
    app.register("known@example.com", "known").await;
    let known = request_code(&app, "known@example.com").await;
    let unknown = request_code(&app, "unknown@example.com").await;
    assert_eq!(known, unknown);
    for _ in 0..2 {
        request_code(&app, "known@example.com").await;
    }
    let limited = request_code(&app, "known@example.com").await;
    assert_eq!(error_of(&limited).0, "RATE_LIMITED", "{limited}");
}

#[tokio::test]
async fn mail_links_open_pages_that_call_the_mutations() {
    let app = TestApp::spawn().await;
    for (path, mutation) in [
        ("/verify-email", "verifyEmail"),
        ("/reset-password", "resetPassword"),
    ] {
        let response = app
            .client
            .get(app.url(&format!("{path}?token=tsr_x")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert_eq!(response.headers()["referrer-policy"], "no-referrer");
        let html = response.text().await.unwrap();
        assert!(html.contains(mutation), "{path} calls {mutation}");
    }
}
