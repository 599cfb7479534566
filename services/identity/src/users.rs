//! Users: names, argon2id passwords and rights.
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use nmos_auth_core::secret::random_bytes;

use crate::IdentityError;

/// A user name: 1 to 64 characters, no whitespace, control characters or colon (which HTTP
/// Basic credentials cannot carry, RFC 7617 §2, and which marks a machine client acting as an
/// administrator, `client:<client_id>`, so that no user can pose as one).
pub fn validate_username(username: &str) -> Result<(), IdentityError> {
    let ok = (1..=64).contains(&username.chars().count())
        && !username.chars().any(|c| c.is_whitespace() || c.is_control() || c == ':');
    if ok {
        Ok(())
    } else {
        Err(IdentityError::Invalid(
            "a username is 1 to 64 characters with no spaces, colons or control characters".into(),
        ))
    }
}

/// Passwords of 8 to 1024 bytes (the upper bound keeps hashing cost bounded).
pub fn validate_password(password: &str) -> Result<(), IdentityError> {
    if (8..=1024).contains(&password.len()) {
        Ok(())
    } else {
        Err(IdentityError::Invalid("a password is 8 to 1024 bytes long".into()))
    }
}

fn argon2() -> Argon2<'static> {
    // OWASP's argon2id recommendation: m = 19 MiB, t = 2, p = 1.
    let params = Params::new(19 * 1024, 2, 1, None).expect("static argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// At most this many argon2 computations run at once: each takes 19 MiB and a blocking thread,
/// so a flood of sign-ins or sign-ups waits (until its call's deadline) rather than taking
/// memory and threads without bound.
static HASHING: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> = std::sync::LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    std::sync::Arc::new(tokio::sync::Semaphore::new(cores))
});

/// Runs `work` (an argon2 hash or verification) on the blocking pool under [`HASHING`]. The
/// permit goes with the work, so a caller that gives up does not free it before the work ends.
pub async fn hashing<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, IdentityError> {
    let permit = HASHING.clone().acquire_owned().await.map_err(IdentityError::internal)?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
    .map_err(IdentityError::internal)
}

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(argon2().hash_password(password.as_bytes(), &salt).map_err(|e| anyhow::anyhow!("argon2: {e}"))?.to_string())
}

/// Checks a password against a stored hash. With no stored hash (unknown user) a dummy hash
/// is checked so that both cases take the same time.
pub fn verify_password(password: &str, stored: Option<&str>) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("not a password anyone has").unwrap_or_default());
    let hash = stored.unwrap_or(dummy);
    let matched = PasswordHash::new(hash)
        .map(|parsed| argon2().verify_password(password.as_bytes(), &parsed).is_ok())
        .unwrap_or(false);
    matched && stored.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_with_argon2id_and_verifies() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", Some(&hash)));
        assert!(!verify_password("wrong horse", Some(&hash)));
        assert!(!verify_password("not a password anyone has", None));
        assert!(validate_username("alice").is_ok());
        assert!(validate_username("a b").is_err());
        assert!(validate_username("").is_err());
        assert!(validate_username("client:abc").is_err(), "the form of a machine administrator");
        assert!(validate_password("short").is_err());
    }
}
