//! `POST /webhooks/stripe`: verify the signature ourselves over the raw body, then let the
//! webhook crate parse the event with its types, then store it (unique event id) as a job
//! and answer 200 at once. The processor applies it (see [`super::service`]).
//!
//! The header is `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>[,v1=…]`:
//! every `v1` is compared in constant time with every configured secret (a rotation
//! header may carry the valid one anywhere), and `t` must be within 300 s of now.

use hmac::{Hmac, Mac};
use poem::{
    IntoResponse, Response, handler,
    http::{HeaderMap, StatusCode},
    web::Data,
};
use sha2::Sha256;

use crate::app::AppState;

/// Largest distance between the header's timestamp and now.
pub const TOLERANCE_S: i64 = 300;

/// Why a webhook was refused (each is a 400 with this reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MissingSignature,
    MalformedSignature,
    BadSignature,
    StaleTimestamp,
    BadPayload,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::MissingSignature => "missing_signature",
            Refusal::MalformedSignature => "malformed_signature",
            Refusal::BadSignature => "bad_signature",
            Refusal::StaleTimestamp => "stale_timestamp",
            Refusal::BadPayload => "bad_payload",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::MissingSignature => "the Stripe-Signature header is missing",
            Refusal::MalformedSignature => "the Stripe-Signature header is not t=…,v1=…",
            Refusal::BadSignature => "no v1 signature matches the body",
            Refusal::StaleTimestamp => "the signature's timestamp is more than 300 s away",
            Refusal::BadPayload => "the body is not a Stripe event",
        }
    }
}

/// A header that verified: its timestamp, the `v1` that matched and the secret it matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub timestamp: i64,
    pub v1: String,
    pub secret_index: usize,
}

/// Checks `header` against `body` with any of `secrets` at time `now` (unix seconds).
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[String],
    now: i64,
) -> Result<Verified, Refusal> {
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(Refusal::MissingSignature)?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let (name, value) = part
            .trim()
            .split_once('=')
            .ok_or(Refusal::MalformedSignature)?;
        match name {
            "t" => {
                if timestamp.is_some() {
                    return Err(Refusal::MalformedSignature);
                }
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| Refusal::MalformedSignature)?,
                );
            }
            // Well-formed v1 values only; anything else (v0, future schemes) is ignored.
            "v1" => {
                if let Ok(bytes) = hex::decode(value)
                    && bytes.len() == 32
                {
                    candidates.push((value, bytes));
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(Refusal::MalformedSignature)?;
    if candidates.is_empty() {
        return Err(Refusal::MalformedSignature);
    }
    let mut found = None;
    for (index, secret) in secrets.iter().enumerate() {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            continue;
        };
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let expected = mac.finalize().into_bytes();
        for (v1, bytes) in &candidates {
            // Every candidate is compared, matched or not, so timing says nothing.
            let equal: bool = subtle::ConstantTimeEq::ct_eq(&expected[..], bytes.as_slice()).into();
            if equal && found.is_none() {
                found = Some(Verified {
                    timestamp,
                    v1: (*v1).to_owned(),
                    secret_index: index,
                });
            }
        }
    }
    let found = found.ok_or(Refusal::BadSignature)?;
    if (now - timestamp).abs() > TOLERANCE_S {
        return Err(Refusal::StaleTimestamp);
    }
    Ok(found)
}

/// A verified event, parsed.
pub struct Parsed {
    pub id: String,
    pub kind: String,
    /// The customer the event is about, when its object names one.
    pub customer: Option<String>,
}

/// Parses a verified body with the webhook crate, handing it the one `v1` that matched.
pub fn parse(body: &str, verified: &Verified, secret: &str) -> Result<Parsed, Refusal> {
    use ::stripe_webhook::{EventObject, Webhook};
    let header = format!("t={},v1={}", verified.timestamp, verified.v1);
    let event = Webhook::construct_event_with_timestamp(body, &header, secret, verified.timestamp)
        .map_err(|e| {
            tracing::info!(error = %e, "a signed Stripe webhook did not parse");
            Refusal::BadPayload
        })?;
    let customer = match &event.data.object {
        EventObject::CheckoutSessionCompleted(s) => {
            s.customer.as_ref().map(|c| c.id().as_str().to_owned())
        }
        EventObject::CustomerSubscriptionCreated(s)
        | EventObject::CustomerSubscriptionUpdated(s)
        | EventObject::CustomerSubscriptionDeleted(s)
        | EventObject::CustomerSubscriptionPaused(s)
        | EventObject::CustomerSubscriptionResumed(s) => Some(s.customer.id().as_str().to_owned()),
        EventObject::InvoicePaid(i)
        | EventObject::InvoicePaymentFailed(i)
        | EventObject::InvoicePaymentActionRequired(i) => {
            i.customer.as_ref().map(|c| c.id().as_str().to_owned())
        }
        _ => None,
    };
    Ok(Parsed {
        id: event.id.as_str().to_owned(),
        kind: event.type_.as_str().to_owned(),
        customer,
    })
}

/// The event types that start a sync; every other verified event is stored and skipped.
pub const HANDLED: [&str; 9] = [
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.payment_action_required",
];

fn refuse(refusal: Refusal) -> Response {
    crate::graphql::error::http_error(StatusCode::BAD_REQUEST, refusal.reason(), refusal.message())
}

#[handler]
pub async fn stripe_webhook(
    Data(state): Data<&AppState>,
    headers: &HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let secrets = &state.billing.webhook_secrets;
    if secrets.is_empty() {
        return crate::graphql::error::http_error(
            StatusCode::NOT_FOUND,
            "not_configured",
            "Stripe webhooks are not configured here",
        );
    }
    let header = headers
        .get("stripe-signature")
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let now = chrono::Utc::now().timestamp();
    let verified = match verify(header, &body, secrets, now) {
        Ok(v) => v,
        Err(refusal) => {
            state.metrics.record_stripe_webhook(refusal.reason());
            return refuse(refusal);
        }
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        state.metrics.record_stripe_webhook("bad_payload");
        return refuse(Refusal::BadPayload);
    };
    let parsed = match parse(text, &verified, &secrets[verified.secret_index]) {
        Ok(p) => p,
        Err(refusal) => {
            state.metrics.record_stripe_webhook(refusal.reason());
            return refuse(refusal);
        }
    };
    match super::service::record_event(state, &parsed, text).await {
        Ok(outcome) => {
            state.metrics.record_stripe_webhook(outcome);
            poem::web::Json(serde_json::json!({ "received": true, "outcome": outcome }))
                .into_response()
        }
        Err(e) => {
            // Not stored: Stripe retries a non-2xx later.
            tracing::warn!(error = %e, event = %parsed.id, "could not store a Stripe event");
            crate::graphql::error::http_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the event could not be stored; retry later",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    const NOW: i64 = 1_800_000_000;

    fn secrets() -> Vec<String> {
        vec!["whsec_new".into(), "whsec_old".into()]
    }

    #[test]
    fn the_valid_v1_first_of_two_is_accepted() {
        let body = br#"{"id":"evt_1"}"#;
        let good = sign("whsec_new", NOW, body);
        let header = format!("t={NOW},v1={good},v1={}", "ab".repeat(32));
        let v = verify(Some(&header), body, &secrets(), NOW).unwrap();
        assert_eq!(v.v1, good);
        assert_eq!(v.secret_index, 0);
    }

    #[test]
    fn the_valid_v1_second_and_the_rotated_secret_are_accepted() {
        let body = br#"{"id":"evt_1"}"#;
        let old = sign("whsec_old", NOW, body);
        let header = format!("t={NOW},v1={},v1={old}", "ab".repeat(32));
        let v = verify(Some(&header), body, &secrets(), NOW).unwrap();
        assert_eq!((v.v1.as_str(), v.secret_index), (old.as_str(), 1));
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let body = b"{}";
        for t in [NOW - 330, NOW + 330] {
            let header = format!("t={t},v1={}", sign("whsec_new", t, body));
            assert_eq!(
                verify(Some(&header), body, &secrets(), NOW),
                Err(Refusal::StaleTimestamp)
            );
        }
        let t = NOW - 299;
        let header = format!("t={t},v1={}", sign("whsec_new", t, body));
        assert!(verify(Some(&header), body, &secrets(), NOW).is_ok());
    }

    #[test]
    fn tampered_and_empty_bodies_are_refused() {
        let body = br#"{"id":"evt_1","amount":100}"#;
        let header = format!("t={NOW},v1={}", sign("whsec_new", NOW, body));
        assert_eq!(
            verify(
                Some(&header),
                br#"{"id":"evt_1","amount":900}"#,
                &secrets(),
                NOW
            ),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(Some(&header), b"", &secrets(), NOW),
            Err(Refusal::BadSignature)
        );
        // Signed with a secret we do not hold.
        let header = format!("t={NOW},v1={}", sign("whsec_other", NOW, body));
        assert_eq!(
            verify(Some(&header), body, &secrets(), NOW),
            Err(Refusal::BadSignature)
        );
        // The signature of another timestamp.
        let header = format!("t={NOW},v1={}", sign("whsec_new", NOW - 1, body));
        assert_eq!(
            verify(Some(&header), body, &secrets(), NOW),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn missing_and_malformed_headers_are_told_apart() {
        let body = b"{}";
        assert_eq!(
            verify(None, body, &secrets(), NOW),
            Err(Refusal::MissingSignature)
        );
        assert_eq!(
            verify(Some("  "), body, &secrets(), NOW),
            Err(Refusal::MissingSignature)
        );
        let good = sign("whsec_new", NOW, body);
        for header in [
            "garbage".to_owned(),
            format!("v1={good}"),
            format!("t=abc,v1={good}"),
            format!("t={NOW}"),
            format!("t={NOW},v1=nothex"),
            format!("t={NOW},v0={good}"),
            format!("t={NOW},t={NOW},v1={good}"),
        ] {
            assert_eq!(
                verify(Some(&header), body, &secrets(), NOW),
                Err(Refusal::MalformedSignature),
                "{header}"
            );
        }
    }
}
