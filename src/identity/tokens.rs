//! Session credentials.
//!
//! - The access token is a biscuit (`tsr_sat_` + base64url) signed with the root key: user
//!   id, role and session id as authority facts and an expiry check. It is verified offline
//!   (no database round trip) and lives for ACCESS_TOKEN_TTL; revocation of its session is
//!   checked separately (see `auth`).
//! - The refresh token is opaque (`tsr_rt_` + 32 random bytes, base64url). Only its HMAC is
//!   stored; presenting an already-rotated one revokes the whole family.
//! - The prefixes let secret scanners recognise leaked credentials.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use biscuit_auth::{
    AuthorizerBuilder, AuthorizerLimits, Biscuit, KeyPair, PrivateKey, PublicKey, builder::Term,
};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use uuid::Uuid;

use super::{Role, config::IdentityConfig};

pub const ACCESS_PREFIX: &str = "tsr_sat_";
pub const REFRESH_PREFIX: &str = "tsr_rt_";

/// The keys of the identity domain. `Debug` shows only the public key.
pub struct AuthKeys {
    root: Arc<KeyPair>,
    public: PublicKey,
    secret: Vec<u8>,
}

impl std::fmt::Debug for AuthKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthKeys {{ public: {} }}", self.public)
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredKeys {
    token_key: String,
    secret: String,
}

impl AuthKeys {
    /// Keys from the configuration, or from (or newly into) `data_dir/identity-keys.json`.
    pub fn load(config: &IdentityConfig, data_dir: &Path) -> anyhow::Result<Self> {
        let (token_key, secret) = match (&config.auth_token_key, &config.auth_secret) {
            (Some(key), Some(secret)) => (key.expose().to_owned(), secret.expose().to_owned()),
            _ => {
                let stored = load_or_create(&data_dir.join("identity-keys.json"))?;
                (
                    config
                        .auth_token_key
                        .as_ref()
                        .map_or(stored.token_key, |k| k.expose().to_owned()),
                    config
                        .auth_secret
                        .as_ref()
                        .map_or(stored.secret, |s| s.expose().to_owned()),
                )
            }
        };
        let private: PrivateKey = token_key
            .parse()
            .map_err(|_| anyhow::anyhow!("AUTH_TOKEN_KEY is not an Ed25519 private key"))?;
        let root = KeyPair::from(&private);
        let secret = hex::decode(&secret).context("AUTH_SECRET is not hex")?;
        Ok(Self {
            public: root.public(),
            root: Arc::new(root),
            secret,
        })
    }

    /// Fresh random keys, for tests.
    pub fn generate() -> Self {
        let root = KeyPair::new();
        let mut secret = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        Self {
            public: root.public(),
            root: Arc::new(root),
            secret,
        }
    }

    /// HMAC-SHA256 of `parts` (length-prefixed, so no two inputs collide) under the server
    /// secret and a domain tag, as hex.
    pub fn hmac(&self, domain: &str, parts: &[&[u8]]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(domain.as_bytes());
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// Mints an access token.
    pub fn mint_access(&self, claims: &AccessClaims) -> Result<String, biscuit_auth::error::Token> {
        let expires = claims
            .expires_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut params = std::collections::HashMap::new();
        params.insert("user".to_owned(), Term::Str(claims.user_id.to_string()));
        params.insert(
            "session".to_owned(),
            Term::Str(claims.session_id.to_string()),
        );
        params.insert(
            "role".to_owned(),
            Term::Str(claims.role.as_str().to_owned()),
        );
        params.insert("exp".to_owned(), Term::Date(expires));
        let token = Biscuit::builder()
            .code_with_params(
                "user({user}); session({session}); role({role}); expires({exp}); check if time($t), $t < {exp};",
                params,
                Default::default(),
            )?
            .build(&self.root)?;
        Ok(format!("{ACCESS_PREFIX}{}", token.to_base64()?))
    }

    /// Verifies an access token offline: signature, a single authority block, expiry.
    pub fn verify_access(&self, token: &str, now: SystemTime) -> Result<AccessClaims, TokenError> {
        let body = token
            .strip_prefix(ACCESS_PREFIX)
            .ok_or(TokenError::Malformed)?;
        let biscuit = Biscuit::from_base64(body, self.public).map_err(|_| TokenError::Invalid)?;
        // Session tokens are never attenuated or extended by third parties.
        if biscuit.block_count() != 1 {
            return Err(TokenError::Invalid);
        }
        // Only our own authority block is accepted (above), so the rules run are fixed and
        // tiny: the fact and iteration limits bound them. The time limit is wall-clock, so a
        // thread descheduled mid-check on a busy machine ran past a 20 ms budget and a
        // valid session was refused as invalid (the user was signed out); it is now only a
        // backstop.
        let limits = AuthorizerLimits {
            max_facts: 64,
            max_iterations: 16,
            max_time: Duration::from_secs(1),
        };
        let now_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut params = std::collections::HashMap::new();
        params.insert("now".to_owned(), Term::Date(now_secs));
        let mut authorizer = AuthorizerBuilder::new()
            .code_with_params(
                "time({now}); allow if user($u), session($s), role($r);",
                params,
                Default::default(),
            )
            .map(|b| b.set_limits(limits.clone()))
            .and_then(|b| b.build(&biscuit))
            .map_err(|_| TokenError::Invalid)?;
        if let Err(e) = authorizer.authorize() {
            return Err(match e {
                biscuit_auth::error::Token::FailedLogic(_) => TokenError::Expired,
                _ => TokenError::Invalid,
            });
        }
        let mut one = |rule: &str| -> Result<String, TokenError> {
            let found: Vec<(String,)> = authorizer
                .query_with_limits(rule, limits.clone())
                .map_err(|_| TokenError::Invalid)?;
            match found.as_slice() {
                [(value,)] => Ok(value.clone()),
                _ => Err(TokenError::Invalid),
            }
        };
        let user_id = one("u($u) <- user($u)")?
            .parse()
            .map_err(|_| TokenError::Invalid)?;
        let session_id = one("s($s) <- session($s)")?
            .parse()
            .map_err(|_| TokenError::Invalid)?;
        let role = Role::parse(&one("r($r) <- role($r)")?).ok_or(TokenError::Invalid)?;
        let expires: Vec<(SystemTime,)> = authorizer
            .query_with_limits("e($e) <- expires($e)", limits.clone())
            .map_err(|_| TokenError::Invalid)?;
        let [(expires_at,)] = expires.as_slice() else {
            return Err(TokenError::Invalid);
        };
        Ok(AccessClaims {
            user_id,
            session_id,
            role,
            expires_at: *expires_at,
        })
    }
}

fn load_or_create(path: &Path) -> anyhow::Result<StoredKeys> {
    load_or_create_json(
        path,
        "identity key",
        || {
            let root = KeyPair::new();
            let mut secret = vec![0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut secret);
            StoredKeys {
                token_key: root.private().to_prefixed_string(),
                secret: hex::encode(secret),
            }
        },
        "generated development identity keys; set AUTH_TOKEN_KEY and AUTH_SECRET in production",
    )
}

/// Reads the development secrets file at `path`, or creates it (owner-only) from `make`
/// and logs `warning`: generated secrets are for a single development server.
pub(crate) fn load_or_create_json<T: serde::Serialize + serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
    make: impl FnOnce() -> T,
    warning: &str,
) -> anyhow::Result<T> {
    if let Ok(text) = std::fs::read_to_string(path) {
        return serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid {what} file", path.display()));
    }
    let stored = make();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    write_private(path, serde_json::to_string_pretty(&stored)?.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tracing::warn!(path = %path.display(), "{warning}");
    Ok(stored)
}

#[cfg(unix)]
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub role: Role,
    /// When the token stops being valid (whole seconds).
    pub expires_at: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token is invalid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
}

impl TokenError {
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Malformed | TokenError::Invalid => "token_invalid",
            TokenError::Expired => "token_expired",
        }
    }
}

/// A new random refresh token.
pub fn new_refresh_token() -> String {
    format!("{REFRESH_PREFIX}{}", random_urlsafe(32))
}

/// `len` random bytes from the OS, base64url without padding.
pub fn random_urlsafe(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `token` has the shape of a refresh token (so garbage is refused before any I/O).
pub fn looks_like_refresh_token(token: &str) -> bool {
    token
        .strip_prefix(REFRESH_PREFIX)
        .is_some_and(|body| body.len() == 43 && URL_SAFE_NO_PAD.decode(body).is_ok())
}

/// Access tokens already verified, by SHA-256 of the token, for up to [`VerifiedCache::TTL`].
///
/// Verifying a biscuit (an Ed25519 signature and a Datalog run) costs far more than the rest
/// of a small request; a client sends the same token many times in a row. The cache holds
/// only tokens that verified, never past their own expiry, and revocation is still checked
/// on every request, so a cached token grants nothing a fresh check would refuse.
pub struct VerifiedCache {
    entries:
        std::sync::Mutex<std::collections::HashMap<[u8; 32], (AccessClaims, std::time::Instant)>>,
}

impl VerifiedCache {
    pub const TTL: Duration = Duration::from_secs(30);
    const CAPACITY: usize = 10_000;

    pub fn new() -> Self {
        Self {
            entries: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn key(token: &str) -> [u8; 32] {
        use sha2::Digest;
        Sha256::digest(token.as_bytes()).into()
    }

    /// Claims of `token` if it verified in the last 30 s and has not expired since.
    pub fn get(&self, token: &str, now: SystemTime) -> Option<AccessClaims> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (claims, at) = entries.get(&Self::key(token))?;
        (at.elapsed() < Self::TTL && claims.expires_at > now).then(|| claims.clone())
    }

    pub fn put(&self, token: &str, claims: &AccessClaims) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= Self::CAPACITY {
            entries.retain(|_, (_, at)| at.elapsed() < Self::TTL);
            if entries.len() >= Self::CAPACITY {
                entries.clear();
            }
        }
        entries.insert(
            Self::key(token),
            (claims.clone(), std::time::Instant::now()),
        );
    }
}

impl Default for VerifiedCache {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(ttl: Duration) -> AccessClaims {
        AccessClaims {
            user_id: Uuid::new_v4(),
            session_id: Uuid::new_v4(),
            role: Role::Admin,
            expires_at: SystemTime::now() + ttl,
        }
    }

    #[test]
    fn access_tokens_round_trip_and_expire() {
        let keys = AuthKeys::generate();
        let minted = claims(Duration::from_secs(60));
        let token = keys.mint_access(&minted).unwrap();
        assert!(token.starts_with(ACCESS_PREFIX));
        let now = SystemTime::now();
        let verified = keys.verify_access(&token, now).unwrap();
        assert_eq!(verified.user_id, minted.user_id);
        assert_eq!(verified.session_id, minted.session_id);
        assert_eq!(verified.role, Role::Admin);
        let whole_seconds = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(
            whole_seconds(verified.expires_at),
            whole_seconds(minted.expires_at)
        );
        assert_eq!(
            keys.verify_access(&token, now + Duration::from_secs(61)),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn foreign_tampered_and_malformed_tokens_are_refused() {
        let keys = AuthKeys::generate();
        let token = keys.mint_access(&claims(Duration::from_secs(60))).unwrap();
        let other = AuthKeys::generate();
        assert_eq!(
            other.verify_access(&token, SystemTime::now()),
            Err(TokenError::Invalid)
        );

        let mut tampered = token.clone().into_bytes();
        let i = tampered.len() - 10;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(
            keys.verify_access(&tampered, SystemTime::now()),
            Err(TokenError::Invalid)
        );

        assert_eq!(
            keys.verify_access("Bearer x", SystemTime::now()),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            keys.verify_access(&format!("{ACCESS_PREFIX}!!!"), SystemTime::now()),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn attenuated_tokens_are_refused() {
        let keys = AuthKeys::generate();
        let token = keys.mint_access(&claims(Duration::from_secs(60))).unwrap();
        let biscuit =
            Biscuit::from_base64(token.strip_prefix(ACCESS_PREFIX).unwrap(), keys.public).unwrap();
        let narrowed = biscuit
            .append(
                biscuit_auth::builder::BlockBuilder::new()
                    .code("check if true;")
                    .unwrap(),
            )
            .unwrap();
        let narrowed = format!("{ACCESS_PREFIX}{}", narrowed.to_base64().unwrap());
        assert_eq!(
            keys.verify_access(&narrowed, SystemTime::now()),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn the_verified_cache_never_outlives_a_token() {
        let cache = VerifiedCache::new();
        let now = SystemTime::now();
        let live = claims(Duration::from_secs(60));
        cache.put("a", &live);
        assert_eq!(cache.get("a", now), Some(live));
        assert_eq!(cache.get("b", now), None);
        let dying = claims(Duration::from_secs(1));
        cache.put("c", &dying);
        assert_eq!(
            cache.get("c", now + Duration::from_secs(2)),
            None,
            "expired since"
        );
    }

    #[test]
    fn refresh_tokens_are_random_and_recognisable() {
        let a = new_refresh_token();
        let b = new_refresh_token();
        assert_ne!(a, b);
        assert!(looks_like_refresh_token(&a));
        assert!(!looks_like_refresh_token("tsr_rt_short"));
        assert!(!looks_like_refresh_token(&a.replace(REFRESH_PREFIX, "x_")));
    }

    #[test]
    fn hmac_is_keyed_and_unambiguous() {
        let keys = AuthKeys::generate();
        assert_eq!(
            keys.hmac("d", &[b"ab", b"c"]),
            keys.hmac("d", &[b"ab", b"c"])
        );
        assert_ne!(
            keys.hmac("d", &[b"ab", b"c"]),
            keys.hmac("d", &[b"a", b"bc"])
        );
        assert_ne!(keys.hmac("d", &[b"x"]), keys.hmac("e", &[b"x"]));
        assert_ne!(
            keys.hmac("d", &[b"x"]),
            AuthKeys::generate().hmac("d", &[b"x"])
        );
    }
}
