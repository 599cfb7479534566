//! Browser sessions in sealed cookies (AES-256-GCM under the cookie key). A session carries a
//! CSRF token from the first page on, and once someone signs in, their name and the id of
//! their session in the identity service, which every page checks there: signing out, a
//! password change or disabling the user ends it on the server for every gateway replica,
//! whatever copy of the cookie is left.
use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nmos_auth_core::sealing::SealingKey;
use nmos_auth_core::secret::{constant_time_eq, random_token};
use serde::{Deserialize, Serialize};

/// The cookie's name. Under HTTPS it carries the `__Host-` prefix: a browser then keeps it only
/// as this host set it (Secure, `Path=/`, no `Domain`), so another host of the plant's domain
/// cannot plant a session cookie of its own choosing here (one signed in to an account of the
/// attacker's, say), which a plain name would let it do with `Domain` and a longer path.
fn cookie_name(secure: bool) -> &'static str {
    if secure { "__Host-nmos_auth_session" } else { "nmos_auth_session" }
}

/// A session lasts this long from its creation; signing in starts a new one.
const LIFETIME_SECS: i64 = nmos_auth_core::SESSION_LIFETIME_SECS;
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
    /// The signed-in user's session in the identity service.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl Session {
    /// A session nobody is signed in to (it carries the CSRF token of the sign-in form).
    pub fn anonymous() -> Session {
        Session::with(None, None)
    }

    /// The session of someone who just signed in or up: `id` is the identity service's.
    pub fn signed_in(username: String, id: String) -> Session {
        Session::with(Some(username), Some(id))
    }

    fn with(username: Option<String>, id: Option<String>) -> Session {
        let expires_at = nmos_auth_core::now_unix() + LIFETIME_SECS;
        Session { username, csrf: random_token::<24>(), expires_at, id }
    }

    /// The session of this request, if its cookie (the `secure` one, under HTTPS) is intact
    /// and current.
    pub fn from_headers(headers: &HeaderMap, key: &SealingKey, secure: bool) -> Option<Session> {
        let cookies = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok());
        let value = cookies
            .flat_map(|c| c.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == cookie_name(secure))?
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
        Ok(HeaderValue::from_str(&format!(
            "{}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={LIFETIME_SECS}{}",
            cookie_name(secure),
            URL_SAFE_NO_PAD.encode(sealed),
            if secure { "; Secure" } else { "" },
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
        let s = Session::signed_in("alice".into(), "session-id".into());
        let cookie = s.cookie(&k, true).unwrap();
        let text = cookie.to_str().unwrap();
        assert!(text.contains("HttpOnly") && text.contains("SameSite=Lax") && text.contains("Secure"));
        let value = text.split(';').next().unwrap().to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&format!("other=1; {value}")).unwrap());
        assert!(text.starts_with("__Host-nmos_auth_session="), "{text}");
        let back = Session::from_headers(&headers, &k, true).unwrap();
        assert_eq!(back.username.as_deref(), Some("alice"));
        assert_eq!(back.id.as_deref(), Some("session-id"));
        assert!(back.csrf_matches(Some(&s.csrf)));
        assert!(!back.csrf_matches(Some("forged")));
        assert!(!back.csrf_matches(None));
        assert!(Session::from_headers(&headers, &key(2), true).is_none(), "another key cannot open it");
        // Under HTTPS a cookie without the prefix, which another host could have set, is not it.
        let plain = value.replacen("__Host-", "", 1);
        headers.insert(header::COOKIE, HeaderValue::from_str(&plain).unwrap());
        assert!(Session::from_headers(&headers, &k, true).is_none());
        assert!(Session::from_headers(&headers, &k, false).is_some(), "the plain-HTTP cookie");
        let mut tampered = value.clone();
        tampered.pop();
        tampered.push(if value.ends_with('A') { 'B' } else { 'A' });
        headers.insert(header::COOKIE, HeaderValue::from_str(&tampered).unwrap());
        assert!(Session::from_headers(&headers, &k, true).is_none());
    }
}
