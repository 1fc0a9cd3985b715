//! Sign-in providers on loopback: an OpenID Connect issuer shaped like Google's (discovery,
//! RS256 JWKS, authorization and token endpoints, userinfo), Discord's OAuth2 endpoints with
//! `GET /api/users/@me`, and GitHub's OAuth app endpoints with `GET /user` and
//! `GET /user/emails`.
//!
//! The authorization endpoint stands in for the person at the provider's consent screen:
//! it approves at once as the account set with [`OAuthFake::sign_in_as`] (or
//! `POST /_control/user`) and redirects back with a code, or with `error=access_denied`
//! after [`OAuthFake::deny_next`]. The token endpoint checks what real providers check: the
//! client's credentials (HTTP Basic or form fields), that the code is known, unused, issued
//! to this client and redirect URI, and the PKCE verifier against the S256 challenge.
//! GitHub's quirks are kept: its token endpoint answers errors with HTTP 200 and an `error`
//! field, and answers form-encoded unless asked for JSON.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use poem::{
    EndpointExt, IntoResponse, Response, Route, Server,
    http::{HeaderMap, StatusCode, header},
    web::{Data, Form, Json, Query},
};
use rsa::{Pkcs1v15Sign, RsaPrivateKey, pkcs8::DecodePrivateKey, traits::PublicKeyParts};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

const SIGNING_KEY: &str = include_str!("../keys/signing.pem");
const ROGUE_KEY: &str = include_str!("../keys/rogue.pem");
const KEY_ID: &str = "fake-key-1";
const ROTATED_KEY_ID: &str = "fake-key-2";

/// Which provider's endpoints and answers to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// OpenID Connect: `/.well-known/openid-configuration`, `/authorize`, `/token`,
    /// `/jwks`, `/userinfo`; ID tokens signed RS256.
    Oidc,
    /// `/oauth2/authorize`, `/api/oauth2/token`, `/api/users/@me`.
    Discord,
    /// `/login/oauth/authorize`, `/login/oauth/access_token`, `/user`, `/user/emails`.
    GitHub,
}

impl Flavor {
    pub fn parse(name: &str) -> Option<Flavor> {
        match name {
            "oidc" | "google" => Some(Flavor::Oidc),
            "discord" => Some(Flavor::Discord),
            "github" => Some(Flavor::GitHub),
            _ => None,
        }
    }
}

/// The account the fake provider signs in as.
#[derive(Debug, Clone, Deserialize)]
pub struct FakeAccount {
    /// Google `sub`, Discord user id, GitHub numeric id (as text).
    pub subject: String,
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    /// Discord username, GitHub login.
    pub username: String,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    /// GitHub only: further addresses on the account, as `(address, verified)`; the
    /// primary is `email`.
    #[serde(default)]
    pub other_emails: Vec<(String, bool)>,
}

impl FakeAccount {
    pub fn new(subject: &str, email: &str, username: &str) -> FakeAccount {
        FakeAccount {
            subject: subject.to_owned(),
            email: Some(email.to_owned()),
            email_verified: true,
            username: username.to_owned(),
            name: Some(format!("{username} (display)")),
            avatar_url: Some(format!("https://avatars.example/{subject}.png")),
            other_emails: Vec::new(),
        }
    }

    pub fn unverified(mut self) -> FakeAccount {
        self.email_verified = false;
        self
    }
}

/// What the next ID token gets wrong, to test the relying party's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// A nonce other than the one in the authorization request.
    WrongNonce,
    /// Signed with a key that is not in the JWKS.
    UnknownKey,
    /// Issued for another client.
    WrongAudience,
    /// Expired an hour ago.
    Expired,
}

struct Grant {
    account: FakeAccount,
    client_id: String,
    redirect_uri: String,
    challenge: Option<String>,
    nonce: Option<String>,
}

struct State {
    flavor: Flavor,
    base: String,
    client_id: String,
    client_secret: String,
    account: Mutex<FakeAccount>,
    deny_next: Mutex<bool>,
    tamper: Mutex<Option<Tamper>>,
    grants: Mutex<HashMap<String, Grant>>,
    tokens: Mutex<HashMap<String, FakeAccount>>,
    key: RsaPrivateKey,
    rogue: RsaPrivateKey,
    token_requests: Mutex<u32>,
    /// After [`OAuthFake::rotate_key`]: tokens are signed with the second key.
    rotated: Mutex<bool>,
}

/// A running fake provider; stops when dropped.
pub struct OAuthFake {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl OAuthFake {
    /// Listens on `addr` (port 0 for an ephemeral one) and accepts one client.
    pub async fn start(
        flavor: Flavor,
        addr: &str,
        client_id: &str,
        client_secret: &str,
    ) -> std::io::Result<OAuthFake> {
        let (acceptor, addr) = crate::bind_http(addr).await?;
        let key = RsaPrivateKey::from_pkcs8_pem(SIGNING_KEY).map_err(std::io::Error::other)?;
        let rogue = RsaPrivateKey::from_pkcs8_pem(ROGUE_KEY).map_err(std::io::Error::other)?;
        let state = Arc::new(State {
            flavor,
            base: format!("http://{addr}"),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            account: Mutex::new(FakeAccount::new("1001", "someone@example.com", "someone")),
            deny_next: Mutex::new(false),
            tamper: Mutex::new(None),
            grants: Mutex::default(),
            tokens: Mutex::default(),
            key,
            rogue,
            token_requests: Mutex::new(0),
            rotated: Mutex::new(false),
        });
        let routes = match flavor {
            Flavor::Oidc => Route::new()
                .at("/.well-known/openid-configuration", poem::get(discovery))
                .at("/authorize", poem::get(authorize))
                .at("/token", poem::post(token_endpoint))
                .at("/jwks", poem::get(jwks))
                .at("/userinfo", poem::get(userinfo)),
            Flavor::Discord => Route::new()
                .at("/oauth2/authorize", poem::get(authorize))
                .at("/api/oauth2/token", poem::post(token_endpoint))
                .at("/api/users/@me", poem::get(userinfo)),
            Flavor::GitHub => Route::new()
                .at("/login/oauth/authorize", poem::get(authorize))
                .at("/login/oauth/access_token", poem::post(token_endpoint))
                .at("/user", poem::get(userinfo))
                .at("/user/emails", poem::get(github_emails)),
        }
        .at("/_control/user", poem::post(control_user))
        .at("/_control/deny", poem::post(control_deny))
        .data(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(routes).await;
        });
        Ok(OAuthFake { addr, state, task })
    }

    /// The base URL: the issuer (OIDC), or the web and API base (Discord, GitHub).
    pub fn url(&self) -> String {
        self.state.base.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The account the next authorization approves as.
    pub fn sign_in_as(&self, account: FakeAccount) {
        *lock(&self.state.account) = account;
    }

    /// The next authorization is refused by "the user" (`error=access_denied`).
    pub fn deny_next(&self) {
        *lock(&self.state.deny_next) = true;
    }

    /// The next ID token is wrong in this way.
    pub fn tamper_next(&self, tamper: Tamper) {
        *lock(&self.state.tamper) = Some(tamper);
    }

    /// Rotates the signing key, as issuers do: new ID tokens are signed with a second key
    /// (a new `kid`), and the JWKS publishes both.
    pub fn rotate_key(&self) {
        *lock(&self.state.rotated) = true;
    }

    /// How many token requests arrived (accepted or not).
    pub fn token_requests(&self) -> u32 {
        *lock(&self.state.token_requests)
    }
}

impl Drop for OAuthFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn random_token(prefix: &str) -> String {
    let bytes: [u8; 24] = rand::random();
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[poem::handler]
fn discovery(Data(state): Data<&Arc<State>>) -> Json<Value> {
    let base = &state.base;
    Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "jwks_uri": format!("{base}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "claims_supported": ["sub", "email", "email_verified", "name", "picture", "nonce"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

fn jwk(key: &RsaPrivateKey, kid: &str) -> Value {
    let public = key.to_public_key();
    json!({
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
    })
}

#[poem::handler]
fn jwks(Data(state): Data<&Arc<State>>) -> Json<Value> {
    let mut keys = vec![jwk(&state.key, KEY_ID)];
    if *lock(&state.rotated) {
        keys.push(jwk(&state.rogue, ROTATED_KEY_ID));
    }
    Json(json!({ "keys": keys }))
}

#[derive(Deserialize)]
struct AuthorizeParams {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    nonce: Option<String>,
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, message.to_owned()).into_response()
}

#[poem::handler]
fn authorize(Data(state): Data<&Arc<State>>, Query(params): Query<AuthorizeParams>) -> Response {
    if params.client_id.as_deref() != Some(state.client_id.as_str()) {
        return bad_request("unknown client_id");
    }
    let Some(redirect_uri) = params.redirect_uri else {
        return bad_request("redirect_uri is required");
    };
    if params.response_type.as_deref() != Some("code") {
        return bad_request("response_type must be code");
    }
    // Google and Discord accept requests without PKCE; this fake insists, because the
    // relying party under test must always send it.
    if params.code_challenge_method.as_deref() != Some("S256") || params.code_challenge.is_none() {
        return bad_request("PKCE with S256 is required");
    }
    let Ok(mut back) = url::Url::parse(&redirect_uri) else {
        return bad_request("redirect_uri is not a URL");
    };
    if std::mem::take(&mut *lock(&state.deny_next)) {
        back.query_pairs_mut().append_pair("error", "access_denied");
    } else {
        let code = random_token("code-");
        lock(&state.grants).insert(
            code.clone(),
            Grant {
                account: lock(&state.account).clone(),
                client_id: state.client_id.clone(),
                redirect_uri: redirect_uri.clone(),
                challenge: params.code_challenge,
                nonce: params.nonce,
            },
        );
        back.query_pairs_mut().append_pair("code", &code);
    }
    if let Some(s) = &params.state {
        back.query_pairs_mut().append_pair("state", s);
    }
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, back.as_str())
        .finish()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("v={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Client credentials from HTTP Basic (each part form-urlencoded, RFC 6749 §2.3.1) or the
/// form body.
fn client_credentials(headers: &HeaderMap, form: &TokenForm) -> Option<(String, String)> {
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        return Some((percent_decode(id), percent_decode(secret)));
    }
    Some((form.client_id.clone()?, form.client_secret.clone()?))
}

/// A token-endpoint error, the way each provider sends it.
fn token_error(flavor: Flavor, code: &str, description: &str) -> Response {
    let body = json!({ "error": code, "error_description": description });
    let status = if flavor == Flavor::GitHub {
        // GitHub answers a bad or reused code with 200 and an error body.
        StatusCode::OK
    } else if code == "invalid_client" {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::BAD_REQUEST
    };
    (status, Json(body)).into_response()
}

#[poem::handler]
fn token_endpoint(
    Data(state): Data<&Arc<State>>,
    headers: &HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    *lock(&state.token_requests) += 1;
    let flavor = state.flavor;
    match client_credentials(headers, &form) {
        Some((id, secret)) if id == state.client_id && secret == state.client_secret => {}
        _ => return token_error(flavor, "invalid_client", "client authentication failed"),
    }
    if form.grant_type.as_deref() != Some("authorization_code") {
        return token_error(flavor, "unsupported_grant_type", "only authorization_code");
    }
    // A code is consumed by its first presentation, right or wrong.
    let Some(grant) = form.code.and_then(|c| lock(&state.grants).remove(&c)) else {
        return token_error(flavor, "invalid_grant", "unknown or used code");
    };
    if grant.client_id != state.client_id
        || form.redirect_uri.as_deref() != Some(grant.redirect_uri.as_str())
    {
        return token_error(flavor, "invalid_grant", "redirect_uri mismatch");
    }
    let verified = match (&grant.challenge, &form.code_verifier) {
        (Some(challenge), Some(verifier)) => {
            URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == *challenge
        }
        (None, None) => true,
        _ => false,
    };
    if !verified {
        return token_error(flavor, "invalid_grant", "PKCE verification failed");
    }
    let access_token = random_token("at-");
    lock(&state.tokens).insert(access_token.clone(), grant.account.clone());
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": 3600,
    });
    match flavor {
        Flavor::Oidc => {
            body["scope"] = json!("openid email profile");
            body["id_token"] = json!(id_token(state, &grant));
        }
        Flavor::Discord => body["scope"] = json!("identify email"),
        Flavor::GitHub => {
            body["scope"] = json!("read:user,user:email");
            let wants_json = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/json"));
            if !wants_json {
                let form = format!(
                    "access_token={access_token}&scope=read%3Auser%2Cuser%3Aemail&token_type=bearer"
                );
                return form
                    .with_content_type("application/x-www-form-urlencoded")
                    .into_response();
            }
        }
    }
    Json(body).into_response()
}

fn id_token(state: &State, grant: &Grant) -> String {
    let tamper = lock(&state.tamper).take();
    let now = now();
    let account = &grant.account;
    let mut claims = json!({
        "iss": state.base,
        "sub": account.subject,
        "aud": grant.client_id,
        "iat": now,
        "exp": now + 3600,
        "email": account.email,
        "email_verified": account.email_verified,
        "name": account.name,
        "picture": account.avatar_url,
    });
    if let Some(nonce) = &grant.nonce {
        claims["nonce"] = json!(nonce);
    }
    match tamper {
        Some(Tamper::WrongNonce) => claims["nonce"] = json!("not-the-nonce-you-sent"),
        Some(Tamper::WrongAudience) => claims["aud"] = json!("someone-else"),
        Some(Tamper::Expired) => {
            claims["iat"] = json!(now - 7200);
            claims["exp"] = json!(now - 3600);
        }
        Some(Tamper::UnknownKey) | None => {}
    }
    let rotated = *lock(&state.rotated);
    let kid = if rotated { ROTATED_KEY_ID } else { KEY_ID };
    let header = json!({ "alg": "RS256", "typ": "JWT", "kid": kid });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    // After a rotation the second key signs (and is published); before it, signing with
    // the second key is the "unknown key" tampering.
    let key = if rotated || tamper == Some(Tamper::UnknownKey) {
        &state.rogue
    } else {
        &state.key
    };
    let digest = Sha256::digest(signing_input.as_bytes());
    let signature = key
        .sign(Pkcs1v15Sign::new::<Sha256>(), &digest)
        .expect("RSA signing with a valid key");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn bearer_account(state: &State, headers: &HeaderMap) -> Option<FakeAccount> {
    let header = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("token "))?;
    lock(&state.tokens).get(token.trim()).cloned()
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "message": "401: Unauthorized" })),
    )
        .into_response()
}

#[poem::handler]
fn userinfo(Data(state): Data<&Arc<State>>, headers: &HeaderMap) -> Response {
    let Some(account) = bearer_account(state, headers) else {
        return unauthorized();
    };
    if state.flavor == Flavor::GitHub
        && headers.get(header::USER_AGENT).is_none_or(|v| v.is_empty())
    {
        // GitHub refuses API requests without a User-Agent.
        return (StatusCode::FORBIDDEN, "User-Agent header is required").into_response();
    }
    let body = match state.flavor {
        Flavor::Oidc => json!({
            "sub": account.subject,
            "email": account.email,
            "email_verified": account.email_verified,
            "name": account.name,
            "picture": account.avatar_url,
        }),
        // Discord: `id`, not `sub`; `avatar` is a hash; `verified` covers the email.
        Flavor::Discord => json!({
            "id": account.subject,
            "username": account.username,
            "global_name": account.name,
            "avatar": account.avatar_url.as_ref().map(|_| "a1b2c3d4"),
            "email": account.email,
            "verified": account.email_verified,
            "discriminator": "0",
        }),
        // GitHub: numeric id; `email` is the public address, often null.
        Flavor::GitHub => json!({
            "id": account.subject.parse::<u64>().unwrap_or(0),
            "login": account.username,
            "name": account.name,
            "avatar_url": account.avatar_url,
            "email": Value::Null,
        }),
    };
    Json(body).into_response()
}

#[poem::handler]
fn github_emails(Data(state): Data<&Arc<State>>, headers: &HeaderMap) -> Response {
    let Some(account) = bearer_account(state, headers) else {
        return unauthorized();
    };
    let mut emails: Vec<Value> = account
        .other_emails
        .iter()
        .map(|(email, verified)| {
            json!({ "email": email, "primary": false, "verified": verified, "visibility": null })
        })
        .collect();
    if let Some(email) = &account.email {
        emails.push(json!({
            "email": email,
            "primary": true,
            "verified": account.email_verified,
            "visibility": "private",
        }));
    }
    Json(Value::Array(emails)).into_response()
}

#[poem::handler]
fn control_user(Data(state): Data<&Arc<State>>, Json(account): Json<FakeAccount>) -> StatusCode {
    *lock(&state.account) = account;
    StatusCode::NO_CONTENT
}

#[poem::handler]
fn control_deny(Data(state): Data<&Arc<State>>) -> StatusCode {
    *lock(&state.deny_next) = true;
    StatusCode::NO_CONTENT
}
