//! The one place where failures become client-facing GraphQL errors.
//!
//! Every error a client sees carries `extensions.code`, one of the codes in shared/API.md.
//! Domains convert their own error enums into [`ApiError`]; anything else that reaches a
//! resolver's `?` is treated as INTERNAL by [`normalize`]: logged once with its message, and
//! replaced by an opaque one, so no database or driver detail leaks.

use std::time::Duration;

use async_graphql::{ErrorExtensions, ServerError, Value};

/// The stable `extensions.code` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthenticated,
    Forbidden,
    BadUserInput,
    NotFound,
    Conflict,
    InsufficientFunds,
    RateLimited,
    NotConfigured,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::InsufficientFunds => "INSUFFICIENT_FUNDS",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::NotConfigured => "NOT_CONFIGURED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

/// A failure a client may see. Build it with the constructors; convert with `?`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    /// For people.
    pub message: String,
    /// Stable snake_case detail a client may act on (`ticket_expired`, `daily_cap_user`, …).
    pub reason: Option<&'static str>,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            reason: None,
            retry_after: None,
        }
    }

    /// The reason, or else the code: a metric label for the refusal.
    pub fn label(&self) -> &'static str {
        self.reason.unwrap_or(self.code.as_str())
    }

    pub fn with_reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    pub fn unauthenticated() -> Self {
        Self::new(ErrorCode::Unauthenticated, "sign in first")
    }

    pub fn forbidden() -> Self {
        Self::new(ErrorCode::Forbidden, "you are not allowed to do this")
    }

    pub fn bad_input(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadUserInput, message).with_reason(reason)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn conflict(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message).with_reason(reason)
    }

    pub fn rate_limited(retry_after: Duration) -> Self {
        Self::new(ErrorCode::RateLimited, "too many requests; try again later")
            .with_retry_after(retry_after)
    }

    pub fn not_configured(what: &str) -> Self {
        Self::new(
            ErrorCode::NotConfigured,
            format!("{what} is not configured on this server"),
        )
    }

    pub fn unavailable(what: &str) -> Self {
        Self::new(
            ErrorCode::Unavailable,
            format!("{what} is unavailable; try again shortly"),
        )
    }

    /// An unexpected failure: logged here, once, with its full chain; the client learns nothing.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl ErrorExtensions for ApiError {
    fn extend(&self) -> async_graphql::Error {
        async_graphql::Error::new(self.message.clone()).extend_with(|_, e| {
            e.set("code", self.code.as_str());
            if let Some(reason) = self.reason {
                e.set("reason", reason);
            }
            if let Some(retry_after) = self.retry_after {
                e.set("retryAfter", retry_after.as_secs_f64().ceil() as u64);
            }
        })
    }
}

impl From<crate::platform::kv::KvError> for ApiError {
    fn from(err: crate::platform::kv::KvError) -> Self {
        tracing::warn!(error = %err, "kv store failed");
        ApiError::unavailable("a shared store").with_retry_after(Duration::from_secs(5))
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        if let Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) = err.sql_err() {
            return ApiError::conflict("already_exists", "this already exists");
        }
        ApiError::internal(err)
    }
}

fn code_of(err: &ServerError) -> Option<&str> {
    match err.extensions.as_ref()?.get("code")? {
        Value::String(code) => Some(code),
        _ => None,
    }
}

/// Gives every error a code. Errors without a path were raised before execution (parse,
/// validation, limits) and are the client's; errors from execution without a code are
/// unexpected and become INTERNAL.
pub fn normalize(err: &mut ServerError) {
    if code_of(err).is_some() {
        return;
    }
    // `?` on an ApiError goes through async-graphql's blanket `From<Display>`, which keeps
    // the ApiError as the source: give it its code here.
    if let Some(api) = err.source::<ApiError>().cloned() {
        let extensions = err.extensions.get_or_insert_with(Default::default);
        extensions.set("code", api.code.as_str());
        if let Some(reason) = api.reason {
            extensions.set("reason", reason);
        }
        if let Some(retry_after) = api.retry_after {
            extensions.set("retryAfter", retry_after.as_secs_f64().ceil() as u64);
        }
        return;
    }
    let extensions = err.extensions.get_or_insert_with(Default::default);
    if err.path.is_empty() || err.message.starts_with("Failed to parse") {
        let reason = match err.message.as_str() {
            "Query is nested too deep." => "query_too_deep",
            "Query is too complex." => "query_too_complex",
            m if m.starts_with("Failed to parse") => "invalid_value",
            _ => "invalid_query",
        };
        extensions.set("code", ErrorCode::BadUserInput.as_str());
        extensions.set("reason", reason);
    } else {
        tracing::error!(error = %err.message, path = ?err.path, "unhandled resolver error");
        extensions.set("code", ErrorCode::Internal.as_str());
        err.message = "internal error".to_owned();
    }
}

/// A refusal on a plain HTTP route: `{"error": reason, "message": …}`.
pub fn http_error(status: poem::http::StatusCode, reason: &str, message: &str) -> poem::Response {
    let body = serde_json::json!({ "error": reason, "message": message });
    poem::Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_carry_code_reason_and_retry() {
        let err = ApiError::rate_limited(Duration::from_millis(1500)).with_reason("slow_down");
        let ext = err.extend().extensions.unwrap();
        assert_eq!(ext.get("code"), Some(&Value::from("RATE_LIMITED")));
        assert_eq!(ext.get("reason"), Some(&Value::from("slow_down")));
        assert_eq!(ext.get("retryAfter"), Some(&Value::from(2u64)));
    }

    #[test]
    fn unexpected_errors_become_opaque() {
        let mut err = ServerError::new("connection refused by 10.0.0.3", None);
        err.path = vec![async_graphql::PathSegment::Field("serverInfo".into())];
        normalize(&mut err);
        assert_eq!(err.message, "internal error");
        assert_eq!(code_of(&err), Some("INTERNAL"));

        let mut err = ServerError::new("Query is nested too deep.", None);
        normalize(&mut err);
        assert_eq!(code_of(&err), Some("BAD_USER_INPUT"));
        assert_eq!(err.message, "Query is nested too deep.");

        // An ApiError raised with `?` keeps its code through the blanket conversion.
        let raised: async_graphql::Error = ApiError::not_found("session").into();
        let mut err = raised.into_server_error(async_graphql::Pos::default());
        err.path = vec![async_graphql::PathSegment::Field("vpsSession".into())];
        normalize(&mut err);
        assert_eq!(code_of(&err), Some("NOT_FOUND"));
        assert_eq!(err.message, "session not found");
    }
}
