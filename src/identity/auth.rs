//! Who is asking: the viewer behind a request's access token (Bearer header, session cookie,
//! or a WebSocket's `connection_init`), and the guards resolvers use.
//!
//! The hot path needs no database: the token is verified offline and the session's
//! revocation marker is one kv lookup (in-process by default, Redis when shared).

use std::time::SystemTime;

use async_graphql::Context;
use uuid::Uuid;

use super::{Role, service::IssuedSession};
use crate::{
    app::AppState,
    graphql::{ApiError, ErrorCode, RequestMeta},
    platform::kv::KvError,
};

pub const ACCESS_COOKIE: &str = "tsr_access";
pub const REFRESH_COOKIE: &str = "tsr_refresh";

/// A signed-in user, as their access token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub user_id: Uuid,
    pub role: Role,
    /// The session (refresh-token family) the token belongs to.
    pub session_id: Uuid,
}

/// The outcome of authenticating a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    Anonymous,
    Viewer(Viewer),
    /// A credential was presented and refused; `reason` says why (`token_expired`, …).
    Refused(&'static str),
    /// The revocation state could not be read; fail closed.
    Unavailable,
}

/// Proof that the viewer is an admin; privileged services take it.
#[derive(Debug, Clone, Copy)]
pub struct Admin<'a>(&'a Viewer);

impl Admin<'_> {
    pub fn user_id(&self) -> Uuid {
        self.0.user_id
    }
}

fn revoked_key(family: Uuid) -> String {
    format!("auth:revoked:{family}")
}

/// Marks sessions revoked for as long as any access token of theirs can live.
/// and tells every instance, so that open WebSockets of those sessions close.
pub async fn mark_revoked(state: &AppState, families: &[Uuid]) -> Result<(), KvError> {
    let ttl = state.config.identity.access_token_ttl.0 + std::time::Duration::from_secs(60);
    for family in families {
        state.kv.set(&revoked_key(*family), b"1", Some(ttl)).await?;
        state
            .kv
            .publish(REVOKED_CHANNEL, family.to_string().as_bytes())
            .await?;
    }
    Ok(())
}

/// Pub/sub channel carrying revoked session (family) ids between instances.
pub const REVOKED_CHANNEL: &str = "auth.revoked";

/// What this instance learns about revocations, fanned out to its WebSockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    Session(Uuid),
    /// Messages may have been lost: every connection re-checks its own session.
    Resync,
}

/// Whether `family` is revoked now (fail closed when the store cannot answer).
pub async fn is_revoked(state: &AppState, family: Uuid) -> bool {
    !matches!(state.kv.get(&revoked_key(family)).await, Ok(None))
}

/// Relays the revocation channel to this instance's connections until shutdown.
pub async fn relay_revocations(state: AppState) {
    use futures_util::StreamExt;
    loop {
        let mut subscription = match state.kv.subscribe(REVOKED_CHANNEL).await {
            Ok(subscription) => subscription,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to revocations; retrying");
                tokio::select! {
                    _ = state.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                }
            }
        };
        // Anything revoked while we were not subscribed is caught by a re-check.
        let _ = state.revocations.send(Revocation::Resync);
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                delivery = subscription.next() => match delivery {
                    Some(crate::platform::kv::Delivery::Message(payload)) => {
                        if let Some(family) = std::str::from_utf8(&payload).ok().and_then(|s| s.parse().ok()) {
                            let _ = state.revocations.send(Revocation::Session(family));
                        }
                    }
                    Some(crate::platform::kv::Delivery::Gap) => {
                        let _ = state.revocations.send(Revocation::Resync);
                    }
                    None => break,
                },
            }
        }
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

/// Checks an access token (without "Bearer ").
pub async fn verify_token(state: &AppState, token: &str) -> Auth {
    let now = SystemTime::now();
    let claims = match state.identity.verified.get(token, now) {
        Some(claims) => claims,
        None => match state.identity.keys.verify_access(token, now) {
            Ok(claims) => {
                state.identity.verified.put(token, &claims);
                claims
            }
            Err(e) => return Auth::Refused(e.reason()),
        },
    };
    match state.kv.get(&revoked_key(claims.session_id)).await {
        Ok(Some(_)) => Auth::Refused("session_revoked"),
        Ok(None) => {
            state.identity.touch(claims.session_id);
            Auth::Viewer(Viewer {
                user_id: claims.user_id,
                role: claims.role,
                session_id: claims.session_id,
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read session revocations");
            Auth::Unavailable
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value; `None` for any other scheme.
fn secure_cookies(state: &AppState) -> bool {
    state
        .config
        .identity
        .cookie_secure
        .unwrap_or_else(|| state.config.public_url().scheme() == "https")
}

/// A `Set-Cookie` value for one of our HttpOnly, SameSite=Lax cookies.
pub fn cookie_header(
    state: &AppState,
    name: &str,
    value: &str,
    path: &str,
    max_age: i64,
) -> String {
    let secure = if secure_cookies(state) {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

/// The two session cookies for a new session. The refresh cookie only travels to the
/// GraphQL endpoint.
pub fn session_cookies(state: &AppState, issued: &IssuedSession) -> [String; 2] {
    let now = chrono::Utc::now();
    let refresh_age = (issued.refresh_expires_at - now).num_seconds().max(0);
    // The access cookie stays as long as the session can be refreshed, past its token's
    // own expiry: a request then carries the expired token and is told `token_expired`
    // (the cue to refresh), where a vanished cookie would look like nobody signed in.
    [
        cookie_header(state, ACCESS_COOKIE, &issued.access_token, "/", refresh_age),
        cookie_header(
            state,
            REFRESH_COOKIE,
            &issued.refresh_token,
            "/graphql",
            refresh_age,
        ),
    ]
}

/// Headers that delete both session cookies.
pub fn cleared_session_cookies(state: &AppState) -> [String; 2] {
    [
        cookie_header(state, ACCESS_COOKIE, "", "/", 0),
        cookie_header(state, REFRESH_COOKIE, "", "/graphql", 0),
    ]
}

pub fn bearer_token(header: &str) -> Option<&str> {
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
}

/// Authenticates an HTTP request: the Bearer header wins over the cookie.
pub async fn authenticate(state: &AppState, meta: &RequestMeta) -> Auth {
    let token = match meta.authorization.as_deref() {
        Some(header) => match bearer_token(header) {
            Some(token) => token,
            None => return Auth::Refused("unsupported_authorization"),
        },
        None => match meta
            .cookies
            .as_deref()
            .and_then(|c| cookie(c, ACCESS_COOKIE))
        {
            Some(token) => token,
            None => return Auth::Anonymous,
        },
    };
    verify_token(state, token).await
}

/// Guards for resolvers.
pub trait AuthContextExt {
    /// The signed-in viewer, or UNAUTHENTICATED with the reason a credential was refused.
    fn viewer(&self) -> Result<&Viewer, ApiError>;
    /// The viewer if an admin, FORBIDDEN otherwise.
    fn admin(&self) -> Result<Admin<'_>, ApiError>;
    /// The viewer, if any (anonymous access allowed).
    fn viewer_opt(&self) -> Option<&Viewer>;
    /// The viewer if they are `owner` or an admin; FORBIDDEN otherwise.
    fn owner_or_admin(&self, owner: Uuid) -> Result<&Viewer, ApiError> {
        let viewer = self.viewer()?;
        if viewer.user_id == owner || viewer.role == Role::Admin {
            Ok(viewer)
        } else {
            Err(ApiError::forbidden())
        }
    }
}

impl AuthContextExt for Context<'_> {
    fn viewer(&self) -> Result<&Viewer, ApiError> {
        match self.data_opt::<Auth>() {
            Some(Auth::Viewer(viewer)) => Ok(viewer),
            Some(Auth::Refused(reason)) => Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "your session is not valid; refresh it or sign in again",
            )
            .with_reason(reason)),
            Some(Auth::Unavailable) => Err(ApiError::unavailable("sign-in checks")),
            Some(Auth::Anonymous) | None => Err(ApiError::unauthenticated()),
        }
    }

    fn admin(&self) -> Result<Admin<'_>, ApiError> {
        let viewer = self.viewer()?;
        if viewer.role == Role::Admin {
            Ok(Admin(viewer))
        } else {
            Err(ApiError::forbidden().with_reason("admin_only"))
        }
    }

    fn viewer_opt(&self) -> Option<&Viewer> {
        match self.data_opt::<Auth>() {
            Some(Auth::Viewer(viewer)) => Some(viewer),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let header = "a=1; tsr_access=tok; tsr_access_x=no";
        assert_eq!(cookie(header, ACCESS_COOKIE), Some("tok"));
        assert_eq!(cookie(header, "a"), Some("1"));
        assert_eq!(cookie(header, "b"), None);
    }
}
