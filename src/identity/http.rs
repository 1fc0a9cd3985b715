//! Identity's plain HTTP routes: the pages that mail links open (`/verify-email`,
//! `/reset-password`: the app's pages when it is built, small static pages that call the
//! matching mutation when it is not; either way never stored, no referrer, the token removed
//! from the address bar), and the provider round trip (`/auth/{provider}/login`, `/auth/{provider}/callback`).

use std::time::Duration;

use poem::{
    IntoResponse, Request, Response, handler,
    http::{StatusCode, header},
    web::{Data, Html, Path, Query},
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use url::Url;

use super::{
    auth::{self, Auth},
    external::{self, Outcome, Purpose},
    oauth::{AuthProviderKind, OAuthError},
    service::{self, IdentityError},
    tokens,
};
use crate::{
    app::AppState,
    graphql::{ErrorCode, RequestMeta, error::http_error},
};

const VERIFY_EMAIL: &str = include_str!("pages/verify-email.html");
const RESET_PASSWORD: &str = include_str!("pages/reset-password.html");

fn page(html: &'static str) -> Response {
    Html(html)
        .with_header("cache-control", "no-store")
        .with_header("referrer-policy", "no-referrer")
        .with_header("x-frame-options", "DENY")
        .into_response()
}

/// The app's page for a mail link when an app is built; this small one otherwise.
async fn link_page(state: &AppState, fallback: &'static str) -> Response {
    match crate::platform::spa::index(state, true).await {
        Some(app) => app.with_header("x-frame-options", "DENY").into_response(),
        None => page(fallback),
    }
}

#[handler]
pub async fn verify_email_page(Data(state): Data<&AppState>) -> Response {
    link_page(state, VERIFY_EMAIL).await
}

#[handler]
pub async fn reset_password_page(Data(state): Data<&AppState>) -> Response {
    link_page(state, RESET_PASSWORD).await
}

/// The cookie that ties a provider round trip to the browser that started it, so a callback
/// URL carried to another browser (login CSRF) is refused.
const STATE_COOKIE: &str = "tsr_oauth";
/// How long a started sign-in may take at the provider.
const STATE_TTL: Duration = Duration::from_secs(600);

/// What the callback needs, kept server-side under the state (single use).
#[derive(Serialize, Deserialize)]
struct Pending {
    provider: String,
    redirect_uri: String,
    pkce_verifier: String,
    nonce: Option<String>,
    purpose: Purpose,
    redirect_to: String,
}

fn state_key(state: &AppState, value: &str) -> String {
    format!(
        "oauth:state:{}",
        state.identity.keys.hmac("oauth-state", &[value.as_bytes()])
    )
}

fn meta_of(req: &Request) -> RequestMeta {
    req.extensions()
        .get::<RequestMeta>()
        .cloned()
        .unwrap_or_else(|| RequestMeta {
            request_id: String::new(),
            peer: None,
            client_ip: None,
            user_agent: None,
            authorization: None,
            cookies: None,
            client: None,
        })
}

fn refusal(status: StatusCode, reason: &str, message: &str) -> Response {
    let mut response = http_error(status, reason, message);
    response.headers_mut().append(
        header::CACHE_CONTROL,
        poem::http::HeaderValue::from_static("no-store"),
    );
    response
}

/// Where a finished sign-in may send the browser: a path on this site, or a URL on an
/// allowed origin (PUBLIC_URL's and CORS_ALLOWED_ORIGINS). Anything else would make us an
/// open redirect.
fn allowed_redirect(state: &AppState, raw: Option<&str>) -> Option<String> {
    let raw = raw.unwrap_or("/");
    if raw.len() > 2048 || raw.chars().any(|c| c.is_control() || c == '\\') {
        return None;
    }
    if raw.starts_with('/') {
        // `//host` is another site to a browser.
        return (!raw.starts_with("//")).then(|| raw.to_owned());
    }
    let url = Url::parse(raw).ok()?;
    let origin = url.origin().ascii_serialization();
    state
        .allowed_origins
        .contains(&origin)
        .then(|| url.to_string())
}

/// `target` with `key=value` added to its query (target is a path or an absolute URL).
fn with_query(target: &str, key: &str, value: &str) -> String {
    let base = Url::parse("http://relative.invalid/").expect("static URL");
    let Ok(mut url) = base.join(target) else {
        return target.to_owned();
    };
    url.query_pairs_mut().append_pair(key, value);
    if url.host_str() == Some("relative.invalid") {
        url[url::Position::BeforePath..].to_owned()
    } else {
        url.to_string()
    }
}

fn redirect(location: &str, cookies: impl IntoIterator<Item = String>) -> Response {
    let mut builder = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, location)
        .header(header::CACHE_CONTROL, "no-store")
        .header("referrer-policy", "no-referrer");
    for cookie in cookies {
        builder = builder.header(header::SET_COOKIE, cookie);
    }
    builder.finish()
}

fn callback_uri(state: &AppState, kind: AuthProviderKind) -> String {
    let base = state.config.public_url();
    format!(
        "{}/auth/{}/callback",
        base.as_str().trim_end_matches('/'),
        kind.slug()
    )
}

/// The provider named in the path, if it is configured (a refusal otherwise).
fn configured_provider(state: &AppState, slug: &str) -> Result<AuthProviderKind, Box<Response>> {
    match AuthProviderKind::parse(slug) {
        Some(kind) if state.identity.providers.configured().contains(&kind) => Ok(kind),
        Some(kind) => Err(Box::new(refusal(
            StatusCode::NOT_FOUND,
            "provider_not_configured",
            &format!("{} sign-in is not configured on this server", kind.label()),
        ))),
        None => Err(Box::new(refusal(
            StatusCode::NOT_FOUND,
            "unknown_provider",
            "there is no such sign-in provider",
        ))),
    }
}

#[derive(Deserialize)]
struct LoginParams {
    redirect_to: Option<String>,
}

/// `GET /auth/{provider}/login[?redirect_to=…]`: starts a provider round trip. A signed-in
/// browser links the provider account to itself; otherwise this signs in (or up).
#[handler]
pub async fn oauth_login(
    req: &Request,
    Path(slug): Path<String>,
    Query(params): Query<LoginParams>,
    Data(state): Data<&AppState>,
) -> Response {
    let kind = match configured_provider(state, &slug) {
        Ok(kind) => kind,
        Err(response) => return *response,
    };
    let meta = meta_of(req);
    if let Err(e) = service::limit_ip(state, "oauth", &meta).await {
        return service_refusal(e);
    }
    let Some(redirect_to) = allowed_redirect(state, params.redirect_to.as_deref()) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "redirect_not_allowed",
            "redirect_to must be a path on this site or an allowed origin",
        );
    };
    let purpose = match auth::authenticate(state, &meta).await {
        Auth::Viewer(viewer) => Purpose::Link {
            user_id: viewer.user_id,
        },
        _ => Purpose::Login,
    };
    let state_value = tokens::random_urlsafe(32);
    let redirect_uri = callback_uri(state, kind);
    let started = match state
        .identity
        .providers
        .authorize(kind, &redirect_uri, &state_value)
        .await
    {
        Ok(started) => started,
        Err(e) => return provider_refusal(&e),
    };
    let pending = Pending {
        provider: kind.slug().to_owned(),
        redirect_uri,
        pkce_verifier: started.pkce_verifier,
        nonce: started.nonce,
        purpose,
        redirect_to,
    };
    let value = serde_json::to_vec(&pending).expect("plain struct serializes");
    if let Err(e) = state
        .kv
        .set(&state_key(state, &state_value), &value, Some(STATE_TTL))
        .await
    {
        return service_refusal(e.into());
    }
    let cookie = auth::cookie_header(
        state,
        STATE_COOKIE,
        &state_value,
        "/auth",
        STATE_TTL.as_secs() as i64,
    );
    redirect(started.url.as_str(), [cookie])
}

fn service_refusal(err: IdentityError) -> Response {
    let api: crate::graphql::ApiError = err.into();
    let status = match api.code {
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    let reason = api.reason.unwrap_or(match api.code {
        ErrorCode::RateLimited => "rate_limited",
        ErrorCode::Unavailable => "unavailable",
        _ => "internal",
    });
    let mut response = refusal(status, reason, &api.message);
    if let Some(retry) = api.retry_after
        && let Ok(value) = poem::http::HeaderValue::from_str(&retry.as_secs().max(1).to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn provider_refusal(err: &OAuthError) -> Response {
    match err {
        OAuthError::NotConfigured(_) => {
            refusal(StatusCode::NOT_FOUND, err.reason(), &err.to_string())
        }
        OAuthError::Provider(detail) => {
            tracing::warn!(error = %detail, "sign-in provider failed");
            refusal(
                StatusCode::BAD_GATEWAY,
                err.reason(),
                "the sign-in provider could not be reached; try again",
            )
        }
        OAuthError::Rejected { .. } => {
            refusal(StatusCode::BAD_REQUEST, err.reason(), &err.to_string())
        }
    }
}

#[derive(Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /auth/{provider}/callback`: the provider sends the browser back here. The state
/// must be one we issued (single use, ten minutes), for this provider, to this browser;
/// then the code is exchanged with the PKCE verifier and, for OIDC, the ID token's nonce
/// checked. Success sets the session cookies (or links) and returns to `redirect_to`;
/// a failure after the state checks returns there with `auth_error=<reason>`.
#[handler]
pub async fn oauth_callback(
    req: &Request,
    Path(slug): Path<String>,
    Query(params): Query<CallbackParams>,
    Data(state): Data<&AppState>,
) -> Response {
    let clear_state = auth::cookie_header(state, STATE_COOKIE, "", "/auth", 0);
    let refuse = |status, reason: &str, message: &str| {
        let mut response = refusal(status, reason, message);
        if let Ok(value) = poem::http::HeaderValue::from_str(&clear_state) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        response
    };
    let kind = match configured_provider(state, &slug) {
        Ok(kind) => kind,
        Err(response) => return *response,
    };
    let meta = meta_of(req);
    let Some(state_value) = params.state.as_deref().filter(|s| !s.is_empty()) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "state_missing",
            "the provider's answer has no state",
        );
    };
    let stored = match state.kv.take(&state_key(state, state_value)).await {
        Ok(stored) => stored,
        Err(e) => return service_refusal(e.into()),
    };
    let Some(pending) = stored.and_then(|v| serde_json::from_slice::<Pending>(&v).ok()) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "state_unknown",
            "this sign-in expired or was already used; start again",
        );
    };
    if pending.provider != kind.slug() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "state_mismatch",
            "this sign-in was started with another provider; start again",
        );
    }
    let bound = meta
        .cookies
        .as_deref()
        .and_then(|c| auth::cookie(c, STATE_COOKIE))
        .is_some_and(|c| bool::from(c.as_bytes().ct_eq(state_value.as_bytes())));
    if !bound {
        return refuse(
            StatusCode::BAD_REQUEST,
            "state_not_bound",
            "this sign-in was started in another browser; start again here",
        );
    }
    let back = |reason: &str| {
        redirect(
            &with_query(&pending.redirect_to, "auth_error", reason),
            [clear_state.clone()],
        )
    };
    if let Some(error) = &params.error {
        let reason = if error == "access_denied" {
            "access_denied"
        } else {
            "provider_error"
        };
        return back(reason);
    }
    let Some(code) = params.code.as_deref().filter(|c| !c.is_empty()) else {
        return back("code_missing");
    };
    let profile = match state
        .identity
        .providers
        .complete(
            kind,
            &pending.redirect_uri,
            code,
            &pending.pkce_verifier,
            pending.nonce.as_deref(),
        )
        .await
    {
        Ok(profile) => profile,
        Err(e) => {
            if let OAuthError::Provider(detail) = &e {
                tracing::warn!(error = %detail, provider = kind.slug(), "sign-in provider failed");
            }
            return back(e.reason());
        }
    };
    match external::complete(state, &profile, pending.purpose, &meta).await {
        Ok(Outcome::SignedIn(issued)) => {
            tracing::info!(user.id = %issued.user.id, provider = kind.slug(), "signed in with a provider");
            let [access, refresh] = auth::session_cookies(state, &issued);
            redirect(&pending.redirect_to, [access, refresh, clear_state.clone()])
        }
        Ok(Outcome::Linked(user)) => {
            tracing::info!(user.id = %user.id, provider = kind.slug(), "provider linked");
            redirect(
                &with_query(&pending.redirect_to, "linked", kind.slug()),
                [clear_state.clone()],
            )
        }
        Err(e) => {
            let api: crate::graphql::ApiError = e.into();
            back(api.reason.unwrap_or("internal"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_query;

    #[test]
    fn query_parameters_are_added_to_paths_and_urls() {
        assert_eq!(with_query("/", "a", "b c"), "/?a=b+c");
        assert_eq!(with_query("/x?y=1#top", "a", "b"), "/x?y=1&a=b#top");
        assert_eq!(
            with_query("https://app.example.com/after", "linked", "github"),
            "https://app.example.com/after?linked=github"
        );
    }
}
