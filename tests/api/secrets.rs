//! No password, token or email reaches the logs or an error message, even at debug level,
//! through the whole sign-in life cycle. (The `log` mail transport prints mails, links and
//! codes included, on purpose: it is the development stand-in for SMTP. Here mail goes to
//! the in-memory outbox, as it goes to SMTP in production.)

use serde_json::{Value, json};

use tessera_fakes::oauth::{FakeAccount, Flavor, OAuthFake};

use crate::helpers::{BinaryServer, Browser, location};

const CLIENT_SECRET: &str = "google-client-secret-31337";

const PASSWORD: &str = "saffron-quartz-lantern-17";
const EMAIL: &str = "secretive.person@example.com";

#[tokio::test]
async fn credentials_never_reach_logs_or_errors() {
    let google = OAuthFake::start(Flavor::Oidc, "127.0.0.1:0", "google-id", CLIENT_SECRET)
        .await
        .unwrap();
    let server = BinaryServer::start(&[
        ("RUST_LOG", "debug".to_owned()),
        ("MAIL_TRANSPORT", "memory".to_owned()),
        ("GOOGLE_CLIENT_ID", "google-id".to_owned()),
        ("GOOGLE_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
        ("GOOGLE_ISSUER_URL", google.url()),
    ])
    .await;
    let mut seen = Vec::new();
    let mut remember = |body: &Value| seen.push(body.to_string());

    let register = server
        .graphql(
            "mutation($i: RegisterInput!) { register(input: $i) { accessToken refreshToken } }",
            json!({ "i": { "email": EMAIL, "username": "secretive", "password": PASSWORD } }),
        )
        .await;
    let access = register["data"]["register"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let refresh = register["data"]["register"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();

    let login =
        "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }";
    remember(
        &server
            .graphql(login, json!({ "e": EMAIL, "p": "wrong-wrong-wrong-1" }))
            .await,
    );
    remember(
        &server
            .graphql(login, json!({ "e": "ghost@example.com", "p": PASSWORD }))
            .await,
    );
    let refreshed = server
        .graphql(
            "mutation($t: String) { refreshSession(refreshToken: $t) { refreshToken } }",
            json!({ "t": refresh }),
        )
        .await;
    let refreshed_token = refreshed["data"]["refreshSession"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    // Reuse, and a weak password: both refused.
    remember(
        &server
            .graphql(
                "mutation($t: String) { refreshSession(refreshToken: $t) { refreshToken } }",
                json!({ "t": refresh }),
            )
            .await,
    );
    remember(
        &server
            .graphql(
                "mutation($i: RegisterInput!) { register(input: $i) { accessToken } }",
                json!({ "i": { "email": "weak@example.com", "username": "weakling", "password": "password1" } }),
            )
            .await,
    );
    let tampered = format!("{access}x");
    remember(
        &server
            .client
            .post(format!("{}/graphql", server.base))
            .bearer_auth(&tampered)
            .json(&json!({ "query": "{ me { id } }" }))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap(),
    );
    // A provider sign-in: its code, state and the session it yields stay out of the logs.
    google.sign_in_as(FakeAccount::new(
        "g-1",
        "provider.person@example.com",
        "provider",
    ));
    let browser = Browser::new();
    let start = browser
        .get(&format!("{}/auth/google/login", server.base))
        .await;
    let consent = browser.get(&location(&start)).await;
    let callback = location(&consent);
    let query: std::collections::HashMap<String, String> = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let done = browser.get(&callback).await;
    assert_eq!(done.status(), 303);
    let provider_session = browser
        .cookie("127.0.0.1", "tsr_access")
        .expect("signed in");
    let provider_refresh = browser
        .cookie("127.0.0.1", "tsr_refresh")
        .expect("signed in");

    let logs = server.stop().await;
    assert!(
        logs.contains("signed in with a provider"),
        "the provider sign-in was logged:\n{logs}"
    );
    assert!(
        logs.contains("user registered"),
        "debug logs were captured:\n{logs}"
    );

    for secret in [
        PASSWORD,
        "wrong-wrong-wrong-1",
        "password1",
        EMAIL,
        &access,
        &refresh,
        &refreshed_token,
        CLIENT_SECRET,
        &query["code"],
        &query["state"],
        &provider_session,
        &provider_refresh,
        "provider.person@example.com",
    ] {
        assert!(
            !logs.contains(secret),
            "a secret reached the logs: {secret}"
        );
        for body in &seen {
            assert!(!body.contains(secret), "a secret reached an error: {body}");
        }
    }
    // Parts of tokens long enough to be useful are absent too.
    assert!(!logs.contains(&access[8..40]));
    assert!(!logs.contains(&refresh[7..30]));
}
