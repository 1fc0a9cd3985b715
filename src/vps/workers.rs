//! The worker protocol over plain HTTP: `POST /workers/heartbeat`, `GET /workers/jobs`
//! (long poll) and `POST /workers/events`.
//!
//! Every request is signed with the worker's secret: `X-Tessera-Worker` (key id),
//! `X-Tessera-Timestamp` (Unix seconds), `X-Tessera-Nonce` (16 to 64 random characters from
//! `[A-Za-z0-9_-]`) and `X-Tessera-Signature` (hex HMAC-SHA256 over
//! `METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\n` followed by the raw body). The nonce makes two
//! identical reports sent within one second (a retry) two different requests, so the replay
//! guard refuses only true copies. Checked in this order, each
//! refusal a 401 `{"error": reason}` that changes nothing: headers present
//! (`missing_signature`), timestamp within 300 s (`stale_timestamp`), key known
//! (`unknown_worker`), signature (`bad_signature`, compared in constant time), worker not
//! disabled (`worker_disabled`), signature not seen before in the window (`replayed`).

use std::time::Duration;

use hmac::{Hmac, Mac};
use poem::{
    Body, Request, Response, handler,
    http::StatusCode,
    web::{Data, Query},
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use sha2::Sha256;

use super::{
    WorkerStatus,
    entity::worker,
    service::{self, VpsError},
};
use crate::{app::AppState, graphql::error::http_error};

pub const KEY_HEADER: &str = "x-tessera-worker";
pub const TIMESTAMP_HEADER: &str = "x-tessera-timestamp";
pub const NONCE_HEADER: &str = "x-tessera-nonce";
pub const SIGNATURE_HEADER: &str = "x-tessera-signature";
/// Largest clock difference accepted, in seconds.
pub const WINDOW_SECS: i64 = 300;
/// Largest request body.
const MAX_BODY: usize = 256 * 1024;
/// Longest long poll, in seconds.
const MAX_WAIT_SECS: u64 = 30;

/// What a request's signature covers.
pub struct Signed<'a> {
    pub method: &'a str,
    /// Path and query, as sent.
    pub path: &'a str,
    pub timestamp: i64,
    pub nonce: &'a str,
    pub body: &'a [u8],
}

/// The signature of a request: hex HMAC-SHA256 over method, path and query, timestamp,
/// nonce and body.
pub fn signature(secret: &str, request: &Signed<'_>) -> String {
    hex::encode(mac(secret, request).finalize().into_bytes())
}

/// A fresh nonce for one request.
pub fn nonce() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

fn mac(secret: &str, request: &Signed<'_>) -> Hmac<Sha256> {
    let Signed {
        method,
        path,
        timestamp,
        nonce,
        body,
    } = *request;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(method.as_bytes());
    mac.update(b"\n");
    mac.update(path.as_bytes());
    mac.update(b"\n");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b"\n");
    mac.update(nonce.as_bytes());
    mac.update(b"\n");
    mac.update(body);
    mac
}

fn refuse(reason: &str, message: &str) -> Response {
    http_error(StatusCode::UNAUTHORIZED, reason, message)
}

/// Checks a request's signature; the worker it came from and the signed timestamp (Unix
/// seconds), or the refusal to send.
async fn authenticate(
    state: &AppState,
    req: &Request,
    body: &[u8],
) -> Result<(worker::Model, i64), Response> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let (Some(key_id), Some(timestamp), Some(nonce), Some(given)) = (
        header(KEY_HEADER),
        header(TIMESTAMP_HEADER),
        header(NONCE_HEADER),
        header(SIGNATURE_HEADER),
    ) else {
        return Err(refuse(
            "missing_signature",
            "sign the request: X-Tessera-Worker, X-Tessera-Timestamp, X-Tessera-Nonce and X-Tessera-Signature",
        ));
    };
    if !(16..=64).contains(&nonce.len())
        || !nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    {
        return Err(refuse(
            "missing_signature",
            "X-Tessera-Nonce must be 16 to 64 characters from A-Z, a-z, 0-9, '-' and '_'",
        ));
    }
    let Ok(timestamp) = timestamp.parse::<i64>() else {
        return Err(refuse(
            "stale_timestamp",
            "the timestamp must be Unix seconds",
        ));
    };
    if (chrono::Utc::now().timestamp() - timestamp).abs() > WINDOW_SECS {
        return Err(refuse(
            "stale_timestamp",
            "the timestamp is more than 300 s from the server's clock",
        ));
    }
    let found = worker::Entity::find()
        .filter(worker::Column::KeyId.eq(key_id))
        .one(state.db.conn())
        .await;
    let row = match found {
        Ok(Some(row)) => row,
        Ok(None) => return Err(refuse("unknown_worker", "no worker has this key id")),
        Err(e) => {
            tracing::warn!(error = %e, "worker lookup failed");
            return Err(http_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the database cannot answer now; try again",
            ));
        }
    };
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let Ok(given_bytes) = hex::decode(given) else {
        return Err(refuse("bad_signature", "the signature is not hex"));
    };
    let expected = mac(
        &row.secret,
        &Signed {
            method: req.method().as_str(),
            path,
            timestamp,
            nonce,
            body,
        },
    );
    if expected.verify_slice(&given_bytes).is_err() {
        return Err(refuse("bad_signature", "the signature does not match"));
    }
    if row.status == WorkerStatus::Disabled.as_str() {
        return Err(refuse("worker_disabled", "this worker is disabled"));
    }
    // A signature is good once: the window is ±300 s, so remember it for 600 s.
    let seen = state
        .kv
        .set_nx(
            &format!("workers:sig:{}", given.to_ascii_lowercase()),
            b"",
            Duration::from_secs(2 * WINDOW_SECS as u64),
        )
        .await;
    match seen {
        Ok(true) => Ok((row, timestamp)),
        Ok(false) => Err(refuse(
            "replayed",
            "this request was already received; sign each request anew",
        )),
        Err(e) => {
            tracing::warn!(error = %e, "replay guard unavailable: refusing worker request");
            Err(http_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the replay guard cannot answer now; try again",
            ))
        }
    }
}

/// Reads the body (bounded) and authenticates: the worker, the body, and when the worker
/// signed it.
async fn signed(
    state: &AppState,
    req: &Request,
    body: Body,
) -> Result<(worker::Model, bytes::Bytes, chrono::DateTime<chrono::Utc>), Response> {
    let body = body.into_bytes_limit(MAX_BODY).await.map_err(|_| {
        http_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the body is larger than 256 KiB",
        )
    })?;
    let (worker, timestamp) = authenticate(state, req, &body).await?;
    // Within the window (checked above), so always a valid time.
    let signed_at = chrono::DateTime::from_timestamp(timestamp, 0).unwrap_or_else(chrono::Utc::now);
    Ok((worker, body, signed_at))
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(serde_json::to_vec(value).unwrap_or_default())
}

/// The JSON body, or the 400 refusal saying what is wrong with it.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(http_error(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            &format!("the body is not the expected JSON: {e}"),
        ))
    })
}

fn service_error(err: VpsError) -> Response {
    match err {
        VpsError::Invalid { reason, message } => {
            http_error(StatusCode::BAD_REQUEST, reason, &message)
        }
        VpsError::Conflict { reason, message } => {
            http_error(StatusCode::CONFLICT, reason, &message)
        }
        VpsError::NotFound(_) => http_error(
            StatusCode::NOT_FOUND,
            "unknown_session",
            "no such session on this worker",
        ),
        other => {
            tracing::error!(error = %other, "worker request failed");
            http_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the server cannot apply this now; try again",
            )
        }
    }
}

/// `POST /workers/heartbeat` `{"capacity": n, "sessions": [ids held]}` →
/// `{"status": "online|draining", "teardown": [ids that ended here]}`.
#[handler]
pub async fn heartbeat(req: &Request, body: Body, Data(state): Data<&AppState>) -> Response {
    let (worker, body, signed_at) = match signed(state, req, body).await {
        Ok(signed) => signed,
        Err(refusal) => return refusal,
    };
    let beat: service::Heartbeat = match parse(&body) {
        Ok(beat) => beat,
        Err(refusal) => return *refusal,
    };
    match service::heartbeat(state, &worker, beat, signed_at).await {
        Ok((status, teardown)) => json(
            StatusCode::OK,
            &serde_json::json!({ "status": status, "teardown": teardown }),
        ),
        Err(e) => service_error(e),
    }
}

#[derive(serde::Deserialize)]
pub struct JobsQuery {
    /// Seconds to wait for a job when none is waiting (0 to 30; default 25).
    wait: Option<u64>,
}

/// `GET /workers/jobs?wait=25` → `{"jobs": [...]}`, as soon as there is one or when the
/// wait is over.
#[handler]
pub async fn jobs(
    req: &Request,
    body: Body,
    Query(query): Query<JobsQuery>,
    Data(state): Data<&AppState>,
) -> Response {
    let (worker, _, _) = match signed(state, req, body).await {
        Ok(signed) => signed,
        Err(refusal) => return refusal,
    };
    let wait = Duration::from_secs(query.wait.unwrap_or(25).min(MAX_WAIT_SECS));
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribe before looking, so a job added in between still wakes us.
    let mut wake = state
        .kv
        .subscribe(&service::jobs_channel(worker.id))
        .await
        .ok();
    loop {
        match service::claim_jobs(state, &worker).await {
            Ok(found) if !found.is_empty() => {
                return json(StatusCode::OK, &serde_json::json!({ "jobs": found }));
            }
            Ok(_) => {}
            Err(e) => return service_error(e),
        }
        let now = tokio::time::Instant::now();
        if now >= deadline || state.shutdown.is_cancelled() {
            return json(StatusCode::OK, &serde_json::json!({ "jobs": [] }));
        }
        // Look again when woken, and at least every 2 s (a wake-up may be lost).
        let nap = (deadline - now).min(Duration::from_secs(2));
        let woken = async {
            match wake.as_mut() {
                Some(stream) => {
                    use futures_util::StreamExt;
                    stream.next().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep(nap) => {}
            _ = state.shutdown.cancelled() => {}
        }
    }
}

/// `POST /workers/events` `{"sessionId", "step", "status", "message"?, "connection"?}` →
/// `{"applied", "seq", "sessionStatus"}`.
#[handler]
pub async fn events(req: &Request, body: Body, Data(state): Data<&AppState>) -> Response {
    let (worker, body, _) = match signed(state, req, body).await {
        Ok(signed) => signed,
        Err(refusal) => return refusal,
    };
    let report: service::StepReport = match parse(&body) {
        Ok(report) => report,
        Err(refusal) => return *refusal,
    };
    match service::report_step(state, &worker, report).await {
        Ok(outcome) => json(StatusCode::OK, &outcome),
        Err(e) => service_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_every_part() {
        let sign = |secret, method, path, timestamp, nonce, body: &[u8]| {
            signature(
                secret,
                &Signed {
                    method,
                    path,
                    timestamp,
                    nonce,
                    body,
                },
            )
        };
        let n = "0123456789abcdef";
        let base = sign("s3cret", "POST", "/workers/events", 1_700_000_000, n, b"{}");
        assert_eq!(base.len(), 64);
        assert_eq!(
            base,
            sign("s3cret", "POST", "/workers/events", 1_700_000_000, n, b"{}")
        );
        for other in [
            sign(
                "s3cret!",
                "POST",
                "/workers/events",
                1_700_000_000,
                n,
                b"{}",
            ),
            sign("s3cret", "GET", "/workers/events", 1_700_000_000, n, b"{}"),
            sign("s3cret", "POST", "/workers/event", 1_700_000_000, n, b"{}"),
            sign("s3cret", "POST", "/workers/events", 1_700_000_001, n, b"{}"),
            sign(
                "s3cret",
                "POST",
                "/workers/events",
                1_700_000_000,
                "0123456789abcdeg",
                b"{}",
            ),
            sign(
                "s3cret",
                "POST",
                "/workers/events",
                1_700_000_000,
                n,
                b"{ }",
            ),
        ] {
            assert_ne!(base, other);
        }
    }
}
