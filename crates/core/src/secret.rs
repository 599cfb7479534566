//! Random credentials, their digests and constant-time comparison.
use aws_lc_rs::{constant_time, digest, rand};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Fills a buffer from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The system RNG failing means the machine cannot do cryptography at all.
    rand::fill(&mut buf).expect("the system random number generator failed");
    buf
}

/// A random URL-safe token carrying `N` bytes (8·N bits) of entropy.
pub fn random_token<const N: usize>() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<N>())
}

/// A random identifier of lower-case hex digits carrying `N` bytes of entropy: safe in URLs,
/// shells and command lines (it never starts with `-`, unlike base64url).
pub fn random_id<const N: usize>() -> String {
    random_bytes::<N>().iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 digest: the stored form of high-entropy secrets (client secrets, access tokens
/// for registration). Human passwords use argon2id instead.
pub fn digest(secret: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, secret.as_bytes()).as_ref().to_vec()
}

/// The digest as lowercase hex, for a TEXT column that is looked up by it.
pub fn digest_hex(secret: &str) -> String {
    digest(secret).iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares a presented secret with a stored digest in constant time.
pub fn verify_digest(secret: &str, stored: &[u8]) -> bool {
    constant_time_eq(&digest(secret), stored)
}

/// Byte equality whose time does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_long() {
        let a = random_token::<32>();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token::<32>());
        assert!(verify_digest(&a, &digest(&a)));
        assert!(!verify_digest("other", &digest(&a)));
        let id = random_id::<16>();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}

/// A configuration secret (key-encryption key, database URL with a password) that never
/// shows up in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}
