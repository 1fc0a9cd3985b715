//! Passwords: argon2id hashes (PHC strings) computed off the async runtime, and a strength
//! policy from zxcvbn that says why a password is refused.

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng},
};

use std::sync::{Arc, OnceLock};

use super::config::IdentityConfig;

/// Longest password accepted: argon2 would hash megabytes happily, which is a cheap DoS.
pub const MAX_LEN: usize = 256;
pub const MIN_LEN: usize = 10;

/// Hashes and verifies passwords with the configured argon2id cost.
#[derive(Clone)]
pub struct Passwords {
    argon2: Argon2<'static>,
    /// A real hash of a random password: unknown users are verified against it, so a
    /// sign-in for an address that has no account takes as long as one that has. Made on
    /// first need: hashing at start-up would cost every start its time and memory.
    dummy: Arc<OnceLock<String>>,
}

impl Passwords {
    pub fn new(config: &IdentityConfig) -> anyhow::Result<Self> {
        let params = Params::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
            None,
        )
        .map_err(|e| anyhow::anyhow!("ARGON2_MEMORY_KIB: {e}"))?;
        Ok(Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            dummy: Arc::default(),
        })
    }

    /// The PHC string of `password` (on a blocking thread).
    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let argon2 = self.argon2.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("argon2: {e}"))
        })
        .await?
    }

    /// Whether `password` matches `phc`; with `None` it checks against the dummy hash and
    /// returns false, taking the same time.
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> bool {
        let argon2 = self.argon2.clone();
        let password = password.to_owned();
        let phc = phc.map(str::to_owned);
        let dummy = Arc::clone(&self.dummy);
        tokio::task::spawn_blocking(move || {
            let real = phc.is_some();
            let phc = phc.unwrap_or_else(|| {
                dummy
                    .get_or_init(|| {
                        let salt = SaltString::generate(&mut OsRng);
                        argon2
                            .hash_password(uuid::Uuid::new_v4().to_string().as_bytes(), &salt)
                            .map(|h| h.to_string())
                            .unwrap_or_default()
                    })
                    .clone()
            });
            let Ok(parsed) = PasswordHash::new(&phc) else {
                return false;
            };
            argon2.verify_password(password.as_bytes(), &parsed).is_ok() && real
        })
        .await
        .unwrap_or(false)
    }
}

/// Why a password is refused, for people.
pub fn check_policy(password: &str, user_inputs: &[&str]) -> Result<(), String> {
    if password.chars().count() < MIN_LEN {
        return Err(format!("use at least {MIN_LEN} characters"));
    }
    if password.len() > MAX_LEN {
        return Err(format!("use at most {MAX_LEN} bytes"));
    }
    let estimate = zxcvbn::zxcvbn(password, user_inputs);
    if estimate.score() < zxcvbn::Score::Three {
        let feedback = estimate.feedback();
        let warning = feedback.and_then(|f| f.warning()).map(|w| w.to_string());
        let suggestion = feedback
            .and_then(|f| f.suggestions().first())
            .map(|s| s.to_string());
        let detail = [warning, suggestion]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        return Err(if detail.is_empty() {
            "this password is too easy to guess".to_owned()
        } else {
            format!("this password is too easy to guess: {detail}")
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_and_personal_passwords_are_refused_with_a_reason() {
        assert!(check_policy("short", &[]).unwrap_err().contains("at least"));
        let err = check_policy("password123", &[]).unwrap_err();
        assert!(err.contains("too easy to guess"), "{err}");
        assert!(
            check_policy(
                "alice.wonder2024",
                &["alice.wonder2024@example.com", "alice.wonder2024"]
            )
            .is_err()
        );
        assert!(check_policy(&"x".repeat(300), &[]).is_err());
        assert!(check_policy("correct horse battery staple tessera", &[]).is_ok());
    }

    #[tokio::test]
    async fn hashes_verify_and_unknown_users_never_match() {
        let config = crate::config::Config::from_args([
            "--argon2-memory-kib",
            "64",
            "--argon2-iterations",
            "1",
        ])
        .unwrap();
        let passwords = Passwords::new(&config.identity).unwrap();
        let phc = passwords.hash("violet kestrel orbit 42").await.unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(
            passwords
                .verify("violet kestrel orbit 42", Some(&phc))
                .await
        );
        assert!(
            !passwords
                .verify("violet kestrel orbit 43", Some(&phc))
                .await
        );
        assert!(!passwords.verify("anything", None).await);
        assert!(!passwords.verify("anything", Some("not a phc")).await);
    }
}
