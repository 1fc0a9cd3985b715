//! The ads routes outside GraphQL: `GET|POST /ads/ssv` (both SSV schemes) and
//! `GET /ads/monetag/postback`. Each answers JSON: `{"credited": n, "duplicate": bool}`, or
//! `{"error": reason, "message": …}` with a status that tells the caller whether to retry.

use std::collections::HashMap;

use poem::{
    Body, Request, Response, handler,
    http::{StatusCode, header},
    web::Data,
};

use super::{
    entity::ad_nonce,
    service::{self, Completed, Outcome, SSV_MAX_SKEW, SSV_NONCE_MAX_AGE},
    ssv,
};
use crate::{
    app::AppState,
    graphql::{ApiError, ErrorCode, RequestMeta, error::http_error},
};

/// Largest SSV body read.
const MAX_BODY: usize = 64 * 1024;

/// Failed callbacks one address may add to the failure window per minute.
pub const FAILURES_PER_ADDRESS: u32 = 5;

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(value.to_string())
}

fn refusal(err: &ApiError) -> Response {
    let status = match err.code {
        ErrorCode::BadUserInput => StatusCode::BAD_REQUEST,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable | ErrorCode::NotConfigured => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response = http_error(status, err.label(), &err.message);
    if let Some(retry) = err.retry_after {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            (retry.as_secs_f64().ceil() as u64).into(),
        );
    }
    response
}

fn done(c: &Completed) -> Response {
    json(
        StatusCode::OK,
        serde_json::json!({
            "credited": c.credited,
            "duplicate": c.outcome == Outcome::Duplicate,
        }),
    )
}

fn bad(reason: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::bad_input(reason, message)
}

fn missing(name: &str) -> ApiError {
    bad(
        "missing_parameter",
        format!("the `{name}` parameter is missing or malformed"),
    )
}

fn client_ip(req: &Request) -> Option<std::net::IpAddr> {
    req.extensions()
        .get::<RequestMeta>()
        .and_then(|m| m.client_ip)
}

/// SSV callback: Google's scheme when the query names `signature` and `key_id`, the
/// existing format otherwise.
#[handler]
pub async fn ssv_callback(req: &Request, body: Body, Data(state): Data<&AppState>) -> Response {
    let raw = req.uri().query().unwrap_or("").to_owned();
    let ip = client_ip(req);
    let result = if ssv::is_google(&raw) {
        google(state, &raw, ip).await
    } else {
        let params = match legacy_params(req, body, &raw).await {
            Ok(p) => p,
            Err(e) => {
                state
                    .metrics
                    .record_ads("ssv", e.reason.unwrap_or("bad_request"));
                return refusal(&e);
            }
        };
        legacy(state, &params, ip).await
    };
    state.metrics.record_ads(
        "ssv",
        result
            .as_ref()
            .map_or_else(ApiError::label, |c| c.outcome.as_str()),
    );
    // The failure window counts what verification said; limits and outages say nothing
    // about fraud.
    match &result {
        Ok(_) => service::record_ssv_outcome(state, true).await,
        Err(e) if matches!(e.code, ErrorCode::BadUserInput | ErrorCode::Conflict) => {
            // Anyone can send junk here: one address moves the window by a few failures a
            // minute at most, so it cannot halve everyone's cap alone.
            let key = format!(
                "ads:ssvfail:{}",
                ip.map(|i| i.to_string()).unwrap_or_default()
            );
            let counted = state
                .kv
                .rate_limit(
                    &key,
                    crate::platform::kv::RateLimit::per_minute(FAILURES_PER_ADDRESS),
                )
                .await;
            if counted.is_ok_and(|d| d.allowed) {
                service::record_ssv_outcome(state, false).await
            }
        }
        Err(_) => {}
    }
    match result {
        Ok(c) => done(&c),
        Err(e) => refusal(&e),
    }
}

async fn google(
    state: &AppState,
    raw: &str,
    ip: Option<std::net::IpAddr>,
) -> Result<Completed, ApiError> {
    let cb = ssv::parse_google(raw).map_err(missing)?;
    let get = |name: &'static str| {
        cb.params
            .get(name)
            .filter(|v| !v.is_empty() && v.len() <= 150)
            .ok_or_else(|| missing(name))
    };
    let unit = get("ad_unit")?;
    let units = &state.config.ads.ads_ssv_ad_units;
    if !units.is_empty() && !units.iter().any(|u| u == unit) {
        return Err(bad(
            "unknown_ad_unit",
            "this ad unit's rewards are not credited here",
        ));
    }
    let transaction = get("transaction_id")?;
    let user = get("user_id")?;
    let nonce = get("custom_data")?;
    let timestamp: i64 = get("timestamp")?
        .parse()
        .map_err(|_| missing("timestamp"))?;
    let now = state.ads.clock.now();
    let key = match state.ads.google_keys.key(cb.key_id, now).await {
        Ok(key) => key,
        Err(ssv::KeyError::Unknown) => {
            return Err(bad(
                "unknown_key",
                format!("no verifier key has id {}", cb.key_id),
            ));
        }
        Err(ssv::KeyError::Unavailable) => {
            return Err(ApiError::unavailable("the verifier key server")
                .with_reason("keys_unavailable")
                .with_retry_after(std::time::Duration::from_secs(60)));
        }
    };
    if !ssv::verify_ecdsa(&key, cb.signed.as_bytes(), &cb.signature) {
        return Err(bad("bad_signature", "the signature does not verify"));
    }
    let at =
        chrono::DateTime::from_timestamp_millis(timestamp).ok_or_else(|| missing("timestamp"))?;
    if (now - at).abs() > SSV_MAX_SKEW {
        return Err(bad(
            "stale_timestamp",
            "the callback's timestamp is too far from now",
        ));
    }
    let issued = issued_nonce(state, nonce, user, ip).await?;
    credit_issued(state, &issued, "gma", format!("gma:{transaction}")).await
}

/// The nonce, when it was issued to `user` recently enough; counts against the SSV rate.
async fn issued_nonce(
    state: &AppState,
    nonce: &str,
    user: &str,
    ip: Option<std::net::IpAddr>,
) -> Result<Issued, ApiError> {
    let key = format!(
        "ads:ssv:{}:{user}",
        ip.map(|i| i.to_string()).unwrap_or_default()
    );
    let decision = state
        .kv
        .rate_limit(&key, state.config.ads.ads_ssv_rate.0)
        .await?;
    if !decision.allowed {
        return Err(ApiError::rate_limited(decision.retry_after).with_reason("rate_limited"));
    }
    let unknown = || {
        ApiError::conflict(
            "unknown_nonce",
            "no ad was prepared for this user under this nonce",
        )
    };
    let user: uuid::Uuid = user.parse().map_err(|_| unknown())?;
    let (row, owner) = <ad_nonce::Entity as sea_orm::EntityTrait>::find_by_id(nonce.to_owned())
        .find_also_related(crate::identity::entity::user::Entity)
        .one(state.db.conn())
        .await?
        .ok_or_else(unknown)?;
    if row.user_id != user || (state.ads.clock.now() - row.issued_at) > SSV_NONCE_MAX_AGE {
        return Err(unknown());
    }
    let owner = owner
        .filter(|u| u.disabled_at.is_none())
        .ok_or_else(service::account_disabled)?;
    Ok(Issued {
        halved: service::is_halved(state, &owner),
        row,
    })
}

/// A nonce a callback named, and whether its user gets half the cap (read with it).
struct Issued {
    row: ad_nonce::Model,
    halved: bool,
}

/// Credits an issued nonce's reward, or answers a repeated callback for one credited
/// already without opening a transaction (`credited_at` is written only by the credit
/// that committed).
async fn credit_issued(
    state: &AppState,
    issued: &Issued,
    network: &str,
    event_id: String,
) -> Result<Completed, ApiError> {
    if issued.row.credited_at.is_some() {
        return service::unchanged(state, issued.row.user_id, Outcome::Duplicate).await;
    }
    service::credit(
        state,
        &(&issued.row).into(),
        Some(issued.halved),
        network,
        Some(event_id),
    )
    .await
}

async fn legacy_params(
    req: &Request,
    body: Body,
    raw: &str,
) -> Result<HashMap<String, String>, ApiError> {
    let mut params: HashMap<String, String> = url::form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if req.method() == poem::http::Method::POST {
        let bytes = body
            .into_bytes_limit(MAX_BODY)
            .await
            .map_err(|_| bad("bad_request", "the body is unreadable or too large"))?;
        let json = req
            .content_type()
            .is_some_and(|c| c.starts_with("application/json"));
        if json {
            let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes)
                .map_err(|_| bad("bad_request", "the body is not a JSON object"))?;
            for (k, v) in object {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    _ => continue,
                };
                params.insert(k, v);
            }
        } else {
            params.extend(
                url::form_urlencoded::parse(&bytes).map(|(k, v)| (k.into_owned(), v.into_owned())),
            );
        }
    }
    Ok(params)
}

async fn legacy(
    state: &AppState,
    p: &HashMap<String, String>,
    ip: Option<std::net::IpAddr>,
) -> Result<Completed, ApiError> {
    let ads = &state.config.ads;
    for name in ["eventId", "uid", "nonce", "amount", "duration", "sig"] {
        let longest = if name == "sig" { 1024 } else { 150 };
        if p.get(name)
            .is_none_or(|v| v.is_empty() || v.len() > longest)
        {
            return Err(missing(name));
        }
    }
    let message = ssv::legacy_message(p).ok_or_else(|| missing("eventId"))?;
    let sig = &p["sig"];
    let verified = match (&state.ads.legacy_rsa, &ads.ssv_secret) {
        (Some(key), _) => ssv::verify_rs256(key, message.as_bytes(), sig),
        (None, Some(secret)) => {
            super::ticket::hmac_hex_ok(secret.expose().as_bytes(), message.as_bytes(), sig)
        }
        (None, None) => {
            return Err(ApiError::not_configured("the SSV_SECRET callback format")
                .with_reason("scheme_not_configured"));
        }
    };
    if !verified {
        return Err(bad("bad_signature", "the signature does not verify"));
    }
    if p["amount"].parse::<i64>().ok() != Some(ads.reward_amount) {
        return Err(bad(
            "bad_amount",
            format!("the amount must be {}", ads.reward_amount),
        ));
    }
    let duration: f64 = p["duration"].parse().map_err(|_| missing("duration"))?;
    if duration < f64::from(ads.required_duration) {
        return Err(bad(
            "duration_too_short",
            format!("the ad must play for {} s", ads.required_duration),
        ));
    }
    let issued = issued_nonce(state, &p["nonce"], &p["uid"], ip).await?;
    if let Some(device) = p.get("device").filter(|d| !d.is_empty())
        && *device != issued.row.device_hash
    {
        return Err(ApiError::conflict(
            "unknown_nonce",
            "the nonce was issued to another device",
        ));
    }
    let network = p
        .get("network")
        .filter(|n| {
            !n.is_empty()
                && n.len() <= 32
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
        .map(|n| n.to_ascii_lowercase())
        .unwrap_or_else(|| "ssv".to_owned());
    credit_issued(state, &issued, &network, format!("ssv:{}", p["eventId"])).await
}

/// Monetag's postback (`ymid`, `reward_event_type` or `event_type`, `estimated_price`).
#[handler]
pub async fn monetag_postback(req: &Request, Data(state): Data<&AppState>) -> Response {
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let ip = client_ip(req).map(|i| i.to_string()).unwrap_or_default();
    let limited = state
        .kv
        .rate_limit(
            &format!("ads:postback:{ip}"),
            state.config.ads.ads_postback_rate.0,
        )
        .await;
    match limited {
        Ok(d) if !d.allowed => {
            return refusal(&ApiError::rate_limited(d.retry_after).with_reason("rate_limited"));
        }
        Err(e) => return refusal(&ApiError::from(e)),
        Ok(_) => {}
    }
    if let Some(key) = &state.config.ads.monetag_postback_key {
        let given = params.get("key").map(String::as_bytes).unwrap_or_default();
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            given,
            key.expose().as_bytes(),
        )) {
            return refusal(
                &ApiError::new(ErrorCode::Forbidden, "the postback key is missing or wrong")
                    .with_reason("bad_postback_key"),
            );
        }
    }
    let Some(ymid) = params
        .get("ymid")
        .filter(|y| !y.is_empty() && y.len() <= 64)
    else {
        return refusal(&missing("ymid"));
    };
    let event = params
        .get("reward_event_type")
        .or_else(|| params.get("event_type"))
        .map(String::as_str)
        .unwrap_or("unknown");
    let price = params.get("estimated_price").map(String::as_str);
    match service::postback(state, ymid, event, price).await {
        Ok(None) => json(
            StatusCode::OK,
            serde_json::json!({"credited": 0, "duplicate": true}),
        ),
        Ok(Some(c)) => json(
            StatusCode::OK,
            serde_json::json!({"credited": c.credited, "duplicate": false, "recorded": true}),
        ),
        Err(e) => refusal(&e),
    }
}
