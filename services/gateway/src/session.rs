//! Browser sessions in sealed cookies (AES-256-GCM under the cookie key), so that gateway
//! replicas share nothing. A session carries a CSRF token from the first page on, and the
//! signed-in user once there is one.
use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nmos_auth_core::sealing::SealingKey;
use nmos_auth_core::secret::{constant_time_eq, random_token};
use serde::{Deserialize, Serialize};

const COOKIE: &str = "nmos_auth_session";
/// A session lasts this long from its creation; signing in starts a new one.
const LIFETIME_SECS: i64 = 8 * 3600;
/// Additional data binding the ciphertext to its purpose.
const AAD: &[u8] = b"nmos-auth session v1";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    /// The signed-in user.
    #[serde(rename = "u")]
    pub username: Option<String>,
    /// The CSRF token every form of this session carries.
    #[serde(rename = "c")]
    pub csrf: String,
    #[serde(rename = "e")]
    expires_at: i64,
}

impl Session {
    pub fn new(username: Option<String>) -> Session {
        Session { username, csrf: random_token::<24>(), expires_at: nmos_auth_core::now_unix() + LIFETIME_SECS }
    }

    /// The session of this request, if its cookie is intact and current.
    pub fn from_headers(headers: &HeaderMap, key: &SealingKey) -> Option<Session> {
        let cookies = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok());
        let value = cookies
            .flat_map(|c| c.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)?
            .1;
        let sealed = URL_SAFE_NO_PAD.decode(value).ok()?;
        let session: Session = serde_json::from_slice(&key.open(AAD, &sealed).ok()?).ok()?;
        (session.expires_at > nmos_auth_core::now_unix()).then_some(session)
    }

    /// Whether a submitted CSRF token is this session's (constant time).
    pub fn csrf_matches(&self, submitted: Option<&str>) -> bool {
        submitted.is_some_and(|s| constant_time_eq(s.as_bytes(), self.csrf.as_bytes()))
    }

    /// The `Set-Cookie` header that stores this session.
    pub fn cookie(&self, key: &SealingKey, secure: bool) -> anyhow::Result<HeaderValue> {
        let sealed = key.seal(AAD, &serde_json::to_vec(self)?)?;
        let secure = if secure { "; Secure" } else { "" };
        Ok(HeaderValue::from_str(&format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={LIFETIME_SECS}{secure}",
            URL_SAFE_NO_PAD.encode(sealed)
        ))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use nmos_auth_core::secret::Secret;

    fn key(byte: u8) -> SealingKey {
        SealingKey::load(Some(&Secret::new(STANDARD.encode([byte; 32]))), "/nonexistent".into(), "cookie key").unwrap()
    }

    #[test]
    fn round_trips_and_rejects_tampering() {
        let k = key(1);
        let s = Session::new(Some("alice".into()));
        let cookie = s.cookie(&k, true).unwrap();
        let text = cookie.to_str().unwrap();
        assert!(text.contains("HttpOnly") && text.contains("SameSite=Lax") && text.contains("Secure"));
        let value = text.split(';').next().unwrap().to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&format!("other=1; {value}")).unwrap());
        let back = Session::from_headers(&headers, &k).unwrap();
        assert_eq!(back.username.as_deref(), Some("alice"));
        assert!(back.csrf_matches(Some(&s.csrf)));
        assert!(!back.csrf_matches(Some("forged")));
        assert!(!back.csrf_matches(None));
        assert!(Session::from_headers(&headers, &key(2)).is_none(), "another key cannot open it");
        let mut tampered = value.clone();
        tampered.pop();
        tampered.push(if value.ends_with('A') { 'B' } else { 'A' });
        headers.insert(header::COOKIE, HeaderValue::from_str(&tampered).unwrap());
        assert!(Session::from_headers(&headers, &k).is_none());
    }
}
