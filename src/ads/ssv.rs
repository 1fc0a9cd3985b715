//! Server-side verification callbacks, one route and two schemes.
//!
//! - Google (AdMob / Ad Manager): the query string is signed with ECDSA P-256 / SHA-256;
//!   the signed content is the raw query up to `&signature=`, the signature a base64url DER
//!   value, the key named by `key_id` among Google's published verifier keys (cached here
//!   for at most 24 h, refetched on an unknown id at most once a minute).
//! - The existing format: `eventId, uid, nonce, amount, duration, sig, …` by GET, or POST as
//!   JSON or a form, signed with HMAC-SHA256 (`SSV_SECRET`) or RS256 (`PUBLIC_KEY_PATH`).

use std::{collections::HashMap, sync::RwLock, time::Duration};

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use chrono::{DateTime, Utc};
use p256::ecdsa::VerifyingKey;
use p256::pkcs8::DecodePublicKey;
use url::Url;

/// How long fetched Google keys are trusted.
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Least time between two fetches caused by an unknown key id.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// Why a key could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    Unknown,
    /// The key server could not be reached and no cached key has this id.
    Unavailable,
}

#[derive(Default)]
struct KeySet {
    by_id: HashMap<u64, VerifyingKey>,
    fetched_at: Option<DateTime<Utc>>,
    attempted_at: Option<DateTime<Utc>>,
}

/// Google's verifier keys, fetched lazily and cached.
pub struct GoogleKeys {
    url: Url,
    client: reqwest::Client,
    set: RwLock<KeySet>,
    fetching: tokio::sync::Mutex<()>,
}

#[derive(serde::Deserialize)]
struct KeyFile {
    keys: Vec<KeyEntry>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyEntry {
    key_id: u64,
    #[serde(default)]
    pem: Option<String>,
    #[serde(default)]
    base64: Option<String>,
}

/// Parses a `verifier-keys.json` document: key id → key. Entries it cannot read are skipped.
pub fn parse_keys(body: &[u8]) -> Result<HashMap<u64, VerifyingKey>, String> {
    let file: KeyFile = serde_json::from_slice(body).map_err(|e| format!("not a key file: {e}"))?;
    let mut out = HashMap::new();
    for entry in file.keys {
        let key = entry
            .base64
            .as_deref()
            .and_then(|b| STANDARD.decode(b.trim()).ok())
            .and_then(|der| VerifyingKey::from_public_key_der(&der).ok())
            .or_else(|| {
                entry
                    .pem
                    .as_deref()
                    .and_then(|p| VerifyingKey::from_public_key_pem(p).ok())
            });
        match key {
            Some(key) => {
                out.insert(entry.key_id, key);
            }
            None => tracing::warn!(key_id = entry.key_id, "unreadable SSV verifier key skipped"),
        }
    }
    Ok(out)
}

impl GoogleKeys {
    pub fn new(url: Url, client: reqwest::Client) -> Self {
        Self {
            url,
            client,
            set: RwLock::new(KeySet::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    fn cached(&self, id: u64, now: DateTime<Utc>) -> (Option<VerifyingKey>, bool, bool) {
        let set = self.set.read().unwrap_or_else(|e| e.into_inner());
        let fresh = set
            .fetched_at
            .is_some_and(|t| (now - t).to_std().unwrap_or_default() < KEYS_MAX_AGE);
        let may_refetch = set
            .attempted_at
            .is_none_or(|t| (now - t).to_std().unwrap_or_default() >= REFETCH_INTERVAL);
        (set.by_id.get(&id).copied(), fresh, may_refetch)
    }

    /// The key with this id: from the cache while it is fresh, else fetched. `now` is the
    /// ads clock.
    pub async fn key(&self, id: u64, now: DateTime<Utc>) -> Result<VerifyingKey, KeyError> {
        let (key, fresh, may_refetch) = self.cached(id, now);
        match key {
            Some(key) if fresh => return Ok(key),
            None if fresh && !may_refetch => return Err(KeyError::Unknown),
            _ => {}
        }
        let _one_fetch = self.fetching.lock().await;
        // Another caller may have fetched while this one waited.
        let (key, fresh, may_refetch) = self.cached(id, now);
        match key {
            Some(key) if fresh => return Ok(key),
            None if fresh && !may_refetch => return Err(KeyError::Unknown),
            _ => {}
        }
        let fetched = self.fetch().await;
        let mut set = self.set.write().unwrap_or_else(|e| e.into_inner());
        set.attempted_at = Some(now);
        match fetched {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), url = %self.url, "SSV verifier keys fetched");
                set.by_id = keys;
                set.fetched_at = Some(now);
                set.by_id.get(&id).copied().ok_or(KeyError::Unknown)
            }
            Err(e) => {
                tracing::warn!(error = %e, url = %self.url, "SSV verifier keys could not be fetched");
                // A stale key still verifies better than none while Google is unreachable.
                set.by_id.get(&id).copied().ok_or(KeyError::Unavailable)
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<u64, VerifyingKey>, String> {
        let response = self
            .client
            .get(self.url.clone())
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("key server answered {}", response.status()));
        }
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        parse_keys(&body)
    }
}

/// A Google callback, split: the signed content and the parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleCallback<'a> {
    pub signed: &'a str,
    pub signature: String,
    pub key_id: u64,
    pub params: HashMap<String, String>,
}

/// Whether a raw query is in Google's scheme (it names `signature` and `key_id`).
pub fn is_google(raw_query: &str) -> bool {
    raw_query.contains("signature=") && raw_query.contains("key_id=")
}

/// Splits a Google callback; `Err(parameter)` names the first one missing or malformed.
/// The parameters come from the signed part only, and after it stand exactly `signature`
/// and `key_id`: anything appended past the signature is refused, never read (a repeated
/// name there would otherwise override a signed value).
pub fn parse_google(raw_query: &str) -> Result<GoogleCallback<'_>, &'static str> {
    let at = raw_query.find("&signature=").ok_or("signature")?;
    let signed = &raw_query[..at];
    let params: HashMap<String, String> = url::form_urlencoded::parse(signed.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let tail: Vec<(String, String)> = url::form_urlencoded::parse(&raw_query.as_bytes()[at + 1..])
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let [(sig_name, signature), (key_name, key_id)] = tail.as_slice() else {
        return Err("key_id");
    };
    if sig_name != "signature" || signature.is_empty() {
        return Err("signature");
    }
    if key_name != "key_id" || params.contains_key("signature") || params.contains_key("key_id") {
        return Err("key_id");
    }
    let key_id = key_id.parse().map_err(|_| "key_id")?;
    Ok(GoogleCallback {
        signed,
        signature: signature.clone(),
        key_id,
        params,
    })
}

/// Checks an ECDSA P-256 / SHA-256 signature (base64url DER, padded or not).
pub fn verify_ecdsa(key: &VerifyingKey, signed: &[u8], signature: &str) -> bool {
    let Ok(der) = URL_SAFE_NO_PAD.decode(signature.trim().trim_end_matches('=')) else {
        return false;
    };
    let point = key.to_encoded_point(false);
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_ASN1,
        point.as_bytes(),
    )
    .verify(signed, &der)
    .is_ok()
}

/// The content the existing format signs.
pub fn legacy_message(p: &HashMap<String, String>) -> Option<String> {
    let get = |k: &str| p.get(k).map(String::as_str);
    let mut m = format!(
        "eventId={}|uid={}|nonce={}|amount={}|duration={}",
        get("eventId")?,
        get("uid")?,
        get("nonce")?,
        get("amount")?,
        get("duration")?
    );
    if let Some(placement) = get("placement").filter(|v| !v.is_empty()) {
        m.push_str(&format!("|placement={placement}"));
    }
    if let Some(device) = get("device").filter(|v| !v.is_empty()) {
        m.push_str(&format!("|device={device}"));
    }
    Some(m)
}

/// An RS256 (PKCS#1 v1.5, SHA-256) verifier for the existing format.
pub fn load_rsa(
    path: &std::path::Path,
) -> anyhow::Result<rsa::pkcs1v15::VerifyingKey<sha2::Sha256>> {
    use anyhow::Context;
    use rsa::pkcs1::DecodeRsaPublicKey;
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read PUBLIC_KEY_PATH {}", path.display()))?;
    let key = rsa::RsaPublicKey::from_public_key_pem(&pem)
        .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(&pem))
        .map_err(|e| anyhow::anyhow!("PUBLIC_KEY_PATH is not an RSA public key: {e}"))?;
    Ok(rsa::pkcs1v15::VerifyingKey::new(key))
}

/// Checks an RS256 signature (base64url, padded or not).
pub fn verify_rs256(
    key: &rsa::pkcs1v15::VerifyingKey<sha2::Sha256>,
    message: &[u8],
    signature: &str,
) -> bool {
    let Ok(raw) = URL_SAFE_NO_PAD.decode(signature.trim().trim_end_matches('=')) else {
        return false;
    };
    let Ok(sig) = rsa::pkcs1v15::Signature::try_from(raw.as_slice()) else {
        return false;
    };
    rsa::signature::Verifier::verify(key, message, &sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::{Signature, SigningKey, signature::Signer};

    #[test]
    fn google_content_is_the_query_before_the_signature() {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let signed =
            "ad_network=1&custom_data=n%201&key_id_x=2&timestamp=5&transaction_id=t&user_id=u";
        let sig: Signature = key.sign(signed.as_bytes());
        let q = format!(
            "{signed}&signature={}&key_id=42",
            URL_SAFE_NO_PAD.encode(sig.to_der().as_bytes())
        );
        assert!(is_google(&q));
        let cb = parse_google(&q).unwrap();
        assert_eq!(cb.signed, signed);
        assert_eq!(cb.key_id, 42);
        assert_eq!(cb.params["custom_data"], "n 1");
        assert!(verify_ecdsa(
            key.verifying_key(),
            cb.signed.as_bytes(),
            &cb.signature
        ));
        let other = SigningKey::random(&mut rand::rngs::OsRng);
        assert!(!verify_ecdsa(
            other.verifying_key(),
            cb.signed.as_bytes(),
            &cb.signature
        ));
        assert!(!verify_ecdsa(
            key.verifying_key(),
            b"user_id=v",
            &cb.signature
        ));
        assert!(!verify_ecdsa(
            key.verifying_key(),
            cb.signed.as_bytes(),
            "not base64!"
        ));
        // Nothing after key_id is read: an appended user_id cannot override the signed one.
        assert_eq!(
            parse_google(&format!("{q}&user_id=attacker")).unwrap_err(),
            "key_id"
        );
        assert_eq!(parse_google("a=1&key_id=2"), Err("signature"));
        assert_eq!(
            parse_google("a=1&signature=x&key_id=z").unwrap_err(),
            "key_id"
        );
    }

    #[test]
    fn key_files_are_read_by_der_or_pem() {
        use p256::pkcs8::{EncodePublicKey, LineEnding};
        let a = SigningKey::random(&mut rand::rngs::OsRng);
        let b = SigningKey::random(&mut rand::rngs::OsRng);
        let der = a.verifying_key().to_public_key_der().unwrap();
        let pem = b.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
        let body = serde_json::json!({"keys": [
            {"keyId": 1, "base64": STANDARD.encode(der.as_bytes())},
            {"keyId": 2, "pem": pem},
            {"keyId": 3, "pem": "garbage"},
        ]});
        let keys = parse_keys(body.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[&1], *a.verifying_key());
        assert_eq!(keys[&2], *b.verifying_key());
        assert!(parse_keys(b"<html>").is_err());
    }

    #[test]
    fn the_legacy_message_appends_placement_and_device_when_present() {
        let mut p: HashMap<String, String> = [
            ("eventId", "e"),
            ("uid", "u"),
            ("nonce", "n"),
            ("amount", "5"),
            ("duration", "31"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            legacy_message(&p).unwrap(),
            "eventId=e|uid=u|nonce=n|amount=5|duration=31"
        );
        p.insert("device".into(), "d".into());
        p.insert("placement".into(), "earn".into());
        assert_eq!(
            legacy_message(&p).unwrap(),
            "eventId=e|uid=u|nonce=n|amount=5|duration=31|placement=earn|device=d"
        );
        p.remove("nonce");
        assert_eq!(legacy_message(&p), None);
    }
}
