//! One-time setup codes for the first administrator: 80 random bits, written for a person to
//! type (Crockford's base32, no I, L, O or U, in groups of four), kept only as digests.
use nmos_auth_core::secret;

/// How long a code is good for (seconds): a code left in an old log stops working. The server
/// makes a new one at each start, and every [`RENEW_SECS`] while it has no users.
pub const LIFETIME_SECS: i64 = 24 * 3600;
/// How often a server without users makes (and logs) a new code, so that a good one is always
/// in the recent log.
pub const RENEW_SECS: u64 = 12 * 3600;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new code, such as `7K2D-QX9M-4RTB-0HZC`.
pub fn new_code() -> String {
    let bytes = secret::random_bytes::<10>();
    let bits = bytes.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
    let chars: Vec<char> = (0..16).rev().map(|i| char::from(ALPHABET[((bits >> (i * 5)) & 31) as usize])).collect();
    chars.chunks(4).map(|group| group.iter().collect::<String>()).collect::<Vec<_>>().join("-")
}

/// The digest a code is stored and looked up as: separators, spaces and case do not matter,
/// nor the letters a person may read for digits.
pub fn digest(code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect();
    secret::digest_hex(&normal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_fresh_and_typed_forgivingly() {
        let code = new_code();
        assert_eq!(code.len(), 19, "{code}");
        assert!(code.chars().all(|c| c == '-' || ALPHABET.contains(&(c as u8))), "{code}");
        assert_ne!(code, new_code());
        let typed = code.to_lowercase().replace('-', " ").replace('0', "o").replace('1', "l");
        assert_eq!(digest(&typed), digest(&code));
        assert_ne!(digest(""), digest(&code));
    }
}
