//! Access-token biscuits: minting, offline verification, and per-request authorization.
//!
//! A token is `tsr_at_` + base64url biscuit (the prefix is optional on input, so a holder
//! may pass the `biscuit` CLI's output straight back). Its authority block says
//! `token_id`, `user`, `scope("proxy")`, `expires` and checks the expiry; holders may append
//! blocks with more checks (`time`, `method`, `path`, `protocol`, `host`), never widen it.
//! Root keys carry ids (`root_key_id`) so they can be rotated.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use biscuit_auth::{AuthorizerBuilder, AuthorizerLimits, Biscuit, KeyPair, PrivateKey, PublicKey};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::config::AccessConfig;
use crate::platform::FastMap;

pub const PREFIX: &str = "tsr_at_";

/// Limits for every authorization of a holder's token (P20: set on the builder); the time
/// is `ACCESS_TOKEN_CHECK_TIME`.
fn limits(max_time: Duration) -> AuthorizerLimits {
    AuthorizerLimits {
        max_facts: 256,
        max_iterations: 64,
        max_time,
    }
}

/// Parses `ID:ed25519-private/HEX[,…]` (a bare key is id 1).
pub fn parse_root_keys(text: &str) -> Result<Vec<(u32, KeyPair)>, String> {
    let mut keys = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, key) = match entry.split_once(':') {
            Some((id, key)) if !id.starts_with("ed25519") => (
                id.parse::<u32>()
                    .map_err(|_| format!("'{id}' is not a key id"))?,
                key,
            ),
            _ => (1, entry),
        };
        let private: PrivateKey = key
            .parse()
            .map_err(|_| "each key must be ed25519-private/<64 hex>".to_owned())?;
        if keys.iter().any(|(k, _)| *k == id) {
            return Err(format!("key id {id} appears twice"));
        }
        keys.push((id, KeyPair::from(&private)));
    }
    if keys.is_empty() {
        return Err("no key given".into());
    }
    Ok(keys)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredKeys {
    root_keys: String,
    assertion_secret: String,
}

/// What a verified token says, before the per-request checks.
#[derive(Debug, Clone)]
pub struct Verified {
    pub biscuit: Arc<Biscuit>,
    pub token_id: Uuid,
    pub user_id: Uuid,
    pub expires_at: SystemTime,
    /// Hex of the authority block's revocation id (the row's key).
    pub revocation_id: Arc<str>,
    /// SHA-256 of the token as presented (what caches key on).
    pub digest: [u8; 32],
}

/// Why a token is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Invalid,
    Expired,
    Revoked,
    /// A check a holder added does not pass for this request.
    Forbidden,
    /// The checks did not finish within their time budget (a loaded machine, not the
    /// token's fault): try again.
    Busy,
}

/// One proxied request, as facts for the authorizer.
pub struct RequestFacts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// `http` or `websocket`.
    pub protocol: &'a str,
    pub host: &'a str,
}

pub struct AccessKeys {
    /// (id, key); the first signs.
    keys: Vec<(u32, KeyPair)>,
    /// HMAC-SHA256 keyed with ACCESS_PROXY_ASSERTION_SECRET, cloned for each assertion:
    /// keying hashes two blocks, which a clone does not repeat.
    pub assertion_mac: Hmac<Sha256>,
    cache: Mutex<FastMap<[u8; 32], (Verified, Instant)>>,
    /// (token, method, path, protocol, host) → allowed, for [`AUTHORIZED_TTL`].
    authorized: Mutex<FastMap<[u8; 32], (bool, Instant)>>,
    /// Time budget of one token's checks.
    check_time: Duration,
}

/// How long the outcome of a token's checks for one request shape is reused. Holder checks
/// on `time` are therefore honoured to within this much.
const AUTHORIZED_TTL: Duration = Duration::from_secs(1);

impl std::fmt::Debug for AccessKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccessKeys {{ public: {} }}", self.public_key())
    }
}

/// How long a signature check is reused.
const VERIFIED_TTL: Duration = Duration::from_secs(30);
const CACHE_CAPACITY: usize = 10_000;

impl AccessKeys {
    pub fn load(config: &AccessConfig, data_dir: &Path) -> anyhow::Result<Self> {
        let (keys, secret) = match (
            &config.access_token_root_key,
            &config.access_proxy_assertion_secret,
        ) {
            (Some(keys), Some(secret)) => (
                keys.expose().to_owned(),
                secret.expose().as_bytes().to_vec(),
            ),
            _ => {
                let stored = load_or_create(&data_dir.join("access-keys.json"))?;
                (
                    config
                        .access_token_root_key
                        .as_ref()
                        .map_or(stored.root_keys, |k| k.expose().to_owned()),
                    config
                        .access_proxy_assertion_secret
                        .as_ref()
                        .map_or(stored.assertion_secret.into_bytes(), |s| {
                            s.expose().as_bytes().to_vec()
                        }),
                )
            }
        };
        Ok(Self {
            keys: parse_root_keys(&keys).map_err(anyhow::Error::msg)?,
            assertion_mac: Hmac::new_from_slice(&secret).expect("HMAC takes any key"),
            cache: Mutex::default(),
            authorized: Mutex::default(),
            check_time: config.access_token_check_time.0,
        })
    }

    /// The public key of the signing root key, as `ed25519/<hex>`.
    pub fn public_key(&self) -> String {
        self.keys[0].1.public().to_string()
    }

    pub fn signing_key_id(&self) -> u32 {
        self.keys[0].0
    }

    /// Mints a token; returns it and the hex revocation id of its authority block.
    pub fn mint(
        &self,
        token_id: Uuid,
        user_id: Uuid,
        expires_at: SystemTime,
    ) -> Result<(String, String), biscuit_auth::error::Token> {
        let (key_id, key) = &self.keys[0];
        // Whole seconds, as the token states them.
        let exp = UNIX_EPOCH
            + Duration::from_secs(
                expires_at
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs(),
            );
        // Parsed when this crate is compiled, not on every purchase.
        let biscuit = biscuit_auth::macros::biscuit!(
            r#"token_id({id}); user({user}); scope("proxy"); expires({exp});
            check if time($t), $t < {exp};"#,
            id = token_id.to_string(),
            user = user_id.to_string(),
            exp = exp,
        )
        .root_key_id(*key_id)
        .build(key)?;
        let revocation = biscuit
            .revocation_identifiers()
            .first()
            .map(hex::encode)
            .unwrap_or_default();
        Ok((format!("{PREFIX}{}", biscuit.to_base64()?), revocation))
    }

    fn root(&self, id: Option<u32>) -> Result<PublicKey, biscuit_auth::error::Format> {
        let id = id.unwrap_or(1);
        self.keys
            .iter()
            .find(|(k, _)| *k == id)
            .map(|(_, key)| key.public())
            .ok_or(biscuit_auth::error::Format::UnknownPublicKey)
    }

    /// Checks the signature (cached by SHA-256 of the token for 30 s) and reads the
    /// authority facts. Expiry and revocation are checked by the caller.
    pub fn verify(&self, token: &str) -> Result<Verified, Refusal> {
        let body = token.trim();
        let body = body.strip_prefix(PREFIX).unwrap_or(body);
        if body.is_empty() || body.len() > 16 * 1024 {
            return Err(Refusal::Invalid);
        }
        let key: [u8; 32] = Sha256::digest(body.as_bytes()).into();
        if let Some((verified, at)) = self.lock().get(&key)
            && at.elapsed() < VERIFIED_TTL
        {
            return Ok(verified.clone());
        }
        let verified = self.verify_uncached(body, key)?;
        let mut cache = self.lock();
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, (_, at)| at.elapsed() < VERIFIED_TTL);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(key, (verified.clone(), Instant::now()));
        Ok(verified)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FastMap<[u8; 32], (Verified, Instant)>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn verify_uncached(&self, body: &str, digest: [u8; 32]) -> Result<Verified, Refusal> {
        let biscuit =
            Biscuit::from_base64(body, |id| self.root(id)).map_err(|_| Refusal::Invalid)?;
        // Third-party blocks are not accepted (P21).
        if biscuit.external_public_keys().iter().any(Option::is_some) {
            return Err(Refusal::Invalid);
        }
        let mut authorizer = AuthorizerBuilder::new()
            .set_limits(limits(self.check_time))
            .build(&biscuit)
            .map_err(|_| Refusal::Invalid)?;
        // Running out of time is the machine's doing, not the token's.
        let refused = |e: biscuit_auth::error::Token| match e {
            biscuit_auth::error::Token::RunLimit(biscuit_auth::error::RunLimit::Timeout) => {
                Refusal::Busy
            }
            _ => Refusal::Invalid,
        };
        let mut one = |rule: &str| -> Result<String, Refusal> {
            let found: Vec<(String,)> = authorizer
                .query_with_limits(rule, limits(self.check_time))
                .map_err(refused)?;
            match found.as_slice() {
                [(value,)] => Ok(value.clone()),
                _ => Err(Refusal::Invalid),
            }
        };
        let token_id = one("t($t) <- token_id($t)")?
            .parse()
            .map_err(|_| Refusal::Invalid)?;
        let user_id = one("u($u) <- user($u)")?
            .parse()
            .map_err(|_| Refusal::Invalid)?;
        let expires: Vec<(SystemTime,)> = authorizer
            .query_with_limits("e($e) <- expires($e)", limits(self.check_time))
            .map_err(refused)?;
        let [(expires_at,)] = expires.as_slice() else {
            return Err(Refusal::Invalid);
        };
        let revocation_id = biscuit
            .revocation_identifiers()
            .first()
            .map(hex::encode)
            .ok_or(Refusal::Invalid)?;
        Ok(Verified {
            biscuit: Arc::new(biscuit),
            token_id,
            user_id,
            expires_at: *expires_at,
            revocation_id: revocation_id.into(),
            digest,
        })
    }

    /// Runs every check in the token (ours and the holder's) against this request; the
    /// outcome for the same token and request shape is reused for a second.
    pub fn authorize(
        &self,
        verified: &Verified,
        request: &RequestFacts<'_>,
    ) -> Result<(), Refusal> {
        if verified.expires_at <= SystemTime::now() {
            return Err(Refusal::Expired);
        }
        let mut hasher = Sha256::new();
        hasher.update(verified.digest);
        for part in [request.method, request.path, request.protocol, request.host] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        let key: [u8; 32] = hasher.finalize().into();
        {
            let authorized = self.authorized.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((allowed, at)) = authorized.get(&key)
                && at.elapsed() < AUTHORIZED_TTL
            {
                return if *allowed {
                    Ok(())
                } else {
                    Err(Refusal::Forbidden)
                };
            }
        }
        let outcome = self.authorize_uncached(verified, request);
        let allowed = match outcome {
            Ok(()) => true,
            Err(Refusal::Forbidden) => false,
            Err(other) => return Err(other),
        };
        let mut authorized = self.authorized.lock().unwrap_or_else(|e| e.into_inner());
        if authorized.len() >= CACHE_CAPACITY {
            authorized.retain(|_, (_, at)| at.elapsed() < AUTHORIZED_TTL);
            if authorized.len() >= CACHE_CAPACITY {
                authorized.clear();
            }
        }
        authorized.insert(key, (allowed, Instant::now()));
        outcome
    }

    fn authorize_uncached(
        &self,
        verified: &Verified,
        request: &RequestFacts<'_>,
    ) -> Result<(), Refusal> {
        let mut authorizer = biscuit_auth::macros::authorizer!(
            r#"method({method}); path({path}); protocol({protocol}); host({host});
            allow if scope("proxy");"#,
            method = request.method,
            path = request.path,
            protocol = request.protocol,
            host = request.host,
        )
        .time()
        .set_limits(limits(self.check_time))
        .build(&verified.biscuit)
        .map_err(|_| Refusal::Invalid)?;
        match authorizer.authorize() {
            Ok(_) => Ok(()),
            Err(biscuit_auth::error::Token::FailedLogic(_)) => Err(Refusal::Forbidden),
            Err(biscuit_auth::error::Token::RunLimit(biscuit_auth::error::RunLimit::Timeout)) => {
                Err(Refusal::Busy)
            }
            Err(biscuit_auth::error::Token::RunLimit(_)) => Err(Refusal::Forbidden),
            Err(_) => Err(Refusal::Invalid),
        }
    }

    /// Forgets cached verifications (after a revocation or a pub/sub gap).
    pub fn forget(&self) {
        self.lock().clear();
        self.authorized
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

fn load_or_create(path: &Path) -> anyhow::Result<StoredKeys> {
    crate::identity::tokens::load_or_create_json(
        path,
        "access key",
        || StoredKeys {
            root_keys: format!("1:{}", KeyPair::new().private().to_prefixed_string()),
            assertion_secret: crate::identity::tokens::random_urlsafe(32),
        },
        "generated development access-token keys; set ACCESS_TOKEN_ROOT_KEY and ACCESS_PROXY_ASSERTION_SECRET in production",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> AccessKeys {
        AccessKeys {
            keys: vec![(3, KeyPair::new()), (1, KeyPair::new())],
            assertion_mac: Hmac::new_from_slice(b"secret").unwrap(),
            cache: Mutex::default(),
            authorized: Mutex::default(),
            check_time: Duration::from_millis(25),
        }
    }

    fn facts<'a>(method: &'a str, path: &'a str, protocol: &'a str) -> RequestFacts<'a> {
        RequestFacts {
            method,
            path,
            protocol,
            host: "example.com",
        }
    }

    #[test]
    fn minted_tokens_verify_and_holders_can_only_narrow_them() {
        let keys = keys();
        let (id, user) = (Uuid::now_v7(), Uuid::now_v7());
        let (token, revocation) = keys
            .mint(id, user, SystemTime::now() + Duration::from_secs(3600))
            .unwrap();
        let verified = keys.verify(&token).unwrap();
        assert_eq!((verified.token_id, verified.user_id), (id, user));
        assert_eq!(&*verified.revocation_id, revocation);
        assert_eq!(verified.biscuit.root_key_id(), Some(3));
        keys.authorize(&verified, &facts("POST", "/any", "websocket"))
            .unwrap();

        // A holder appends checks; the attenuated token keeps the same authority
        // revocation id, and its checks hold.
        let narrowed = verified
            .biscuit
            .append(
                biscuit_auth::builder::BlockBuilder::new()
                    .code(
                        r#"check if method("GET"); check if path($p), $p.starts_with("/reports/"); check if protocol("http");"#,
                    )
                    .unwrap(),
            )
            .unwrap()
            .to_base64()
            .unwrap();
        let v = keys.verify(&narrowed).unwrap();
        assert_eq!(&*v.revocation_id, revocation);
        keys.authorize(&v, &facts("GET", "/reports/q3", "http"))
            .unwrap();
        for (method, path, protocol) in [
            ("POST", "/reports/q3", "http"),
            ("GET", "/admin", "http"),
            ("GET", "/reports/q3", "websocket"),
        ] {
            assert_eq!(
                keys.authorize(&v, &facts(method, path, protocol)),
                Err(Refusal::Forbidden),
                "{method} {path} {protocol}"
            );
        }
        // A block claiming facts of the authority block changes nothing.
        let forged = verified
            .biscuit
            .append(
                biscuit_auth::builder::BlockBuilder::new()
                    .code(r#"user("someone-else"); scope("admin");"#)
                    .unwrap(),
            )
            .unwrap()
            .to_base64()
            .unwrap();
        assert_eq!(keys.verify(&forged).unwrap().user_id, user);
    }

    #[test]
    fn tampered_foreign_and_expired_tokens_are_refused() {
        let keys = keys();
        let (token, _) = keys
            .mint(
                Uuid::now_v7(),
                Uuid::now_v7(),
                SystemTime::now() + Duration::from_secs(60),
            )
            .unwrap();
        let mut tampered = token.clone().into_bytes();
        let i = tampered.len() - 10;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            keys.verify(std::str::from_utf8(&tampered).unwrap()).err(),
            Some(Refusal::Invalid)
        );
        let other = self::keys();
        assert_eq!(other.verify(&token).err(), Some(Refusal::Invalid));
        assert_eq!(keys.verify("").err(), Some(Refusal::Invalid));

        let (old, _) = keys
            .mint(
                Uuid::now_v7(),
                Uuid::now_v7(),
                SystemTime::now() - Duration::from_secs(1),
            )
            .unwrap();
        let v = keys.verify(&old).unwrap();
        assert_eq!(
            keys.authorize(&v, &facts("GET", "/", "http")),
            Err(Refusal::Expired)
        );
        // The prefix is optional.
        assert!(keys.verify(token.strip_prefix(PREFIX).unwrap()).is_ok());
    }

    #[test]
    fn root_keys_parse_with_ids() {
        let key = KeyPair::new().private().to_prefixed_string();
        assert_eq!(parse_root_keys(&key).unwrap()[0].0, 1);
        let two = format!(
            "7:{key},2:{}",
            KeyPair::new().private().to_prefixed_string()
        );
        let parsed = parse_root_keys(&two).unwrap();
        assert_eq!(parsed.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [7, 2]);
        assert!(parse_root_keys("x:nope").is_err());
        assert!(parse_root_keys(&format!("1:{key},1:{key}")).is_err());
    }
}
