//! private_key_jwt client authentication (RFC 7523 §2.2 and §3): the client signs a short-lived
//! JWT with its own key; we check it against the keys it registered, inline or at its jwks_uri.
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use nmos_auth_core::{ErrorCode, OAuthError};
use serde::Deserialize;

use crate::metadata::ClientMetadata;
use crate::store::ClientStore;

/// The signature algorithms accepted: `capabilities::ASSERTION_ALGORITHMS`, which the metadata
/// announces.
fn accepted(alg: Algorithm) -> bool {
    nmos_auth_core::capabilities::ASSERTION_ALGORITHMS.iter().any(|name| name.parse() == Ok(alg))
}
/// Assertions may not be valid for longer than this.
const MAX_LIFETIME_SECS: i64 = 300;
const LEEWAY_SECS: u64 = 30;
/// A client's fetched JWKS is used this long ...
const JWKS_TTL: Duration = Duration::from_secs(300);
/// ... and fetched again for an unknown kid, but never more often than this.
const REFETCH_FLOOR: Duration = Duration::from_secs(10);
const MAX_JWKS_BYTES: usize = 64 * 1024;

fn invalid_client(description: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClient, description)
}

#[derive(Deserialize)]
struct AssertionClaims {
    exp: i64,
    jti: Option<String>,
}

/// The `sub` of an assertion, unverified: which client it claims to be (checked later).
pub fn claimed_client(assertion: &str) -> Option<String> {
    let payload = assertion.split('.').nth(1)?;
    let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims["sub"].as_str().map(str::to_owned)
}

pub struct AssertionVerifier {
    http: reqwest::Client,
    /// Accepted `aud` values: the token, revocation and introspection endpoints and the issuer.
    audiences: Vec<String>,
    fetched: Mutex<HashMap<String, (Instant, Arc<JwkSet>)>>,
}

impl AssertionVerifier {
    pub fn new(issuer: &str, ca_bundle: Option<&Path>) -> anyhow::Result<AssertionVerifier> {
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = ca_bundle {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).context("parsing the jwks_ca_bundle")? {
                http = http.add_root_certificate(cert);
            }
        }
        let audiences = ["token", "revoke", "introspect"]
            .iter()
            .map(|e| format!("{issuer}/{e}"))
            .chain([issuer.to_owned()])
            .collect();
        Ok(AssertionVerifier { http: http.build()?, audiences, fetched: Mutex::new(HashMap::new()) })
    }

    /// Drops the keys fetched for a client (its registration changed or is gone).
    pub fn forget(&self, client_id: &str) {
        self.fetched.lock().unwrap_or_else(|p| p.into_inner()).remove(client_id);
    }

    /// Checks `assertion` for `client_id`; every failure is `invalid_client`.
    pub async fn verify(
        &self,
        client_id: &str,
        metadata: &ClientMetadata,
        assertion: &str,
        store: &dyn ClientStore,
    ) -> Result<(), OAuthError> {
        let header = jsonwebtoken::decode_header(assertion)
            .map_err(|_| invalid_client("the client assertion is not a signed JWT"))?;
        if !accepted(header.alg) {
            let algorithms = nmos_auth_core::capabilities::ASSERTION_ALGORITHMS.join(", ");
            return Err(invalid_client(format!("client assertions must be signed with one of {algorithms}")));
        }
        let jwk = self.key(client_id, metadata, header.kid.as_deref()).await?;
        // A key that names its algorithm (RFC 7517 §4.4) is good for that one only.
        if let Some(alg) = jwk.common.key_algorithm
            && alg.to_string().parse::<Algorithm>().ok() != Some(header.alg)
        {
            return Err(invalid_client(format!(
                "the client's key is for {alg}, and the assertion is signed {:?}",
                header.alg
            )));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| invalid_client("the client's key cannot be used"))?;
        let mut validation = Validation::new(header.alg);
        // RFC 7523 §3 item 6: an assertion with `nbf` must not be used before that time.
        validation.validate_nbf = true;
        validation.set_audience(&self.audiences);
        validation.set_issuer(&[client_id]);
        validation.sub = Some(client_id.to_owned());
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        validation.leeway = LEEWAY_SECS;
        let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation)
            .map_err(|e| invalid_client(format!("the client assertion is not valid: {e}")))?
            .claims;
        if claims.exp > nmos_auth_core::now_unix() + MAX_LIFETIME_SECS {
            return Err(invalid_client("the client assertion is valid for too long (at most 5 minutes)"));
        }
        let jti =
            claims.jti.filter(|j| !j.is_empty()).ok_or_else(|| invalid_client("the client assertion has no jti"))?;
        // Kept for as long as the assertion passes the `exp` check, which allows the leeway.
        let refused_after = claims.exp.saturating_add(LEEWAY_SECS as i64);
        if !store.remember_assertion(client_id, &jti, refused_after).await? {
            return Err(invalid_client("the client assertion was already used"));
        }
        Ok(())
    }

    /// The client's key with `kid` (or its only key, when the assertion names none).
    async fn key(&self, client_id: &str, metadata: &ClientMetadata, kid: Option<&str>) -> Result<Jwk, OAuthError> {
        let pick = |set: &JwkSet| match kid {
            Some(kid) => set.find(kid).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        };
        if let Some(inline) = &metadata.jwks {
            let set: JwkSet = serde_json::from_value(inline.clone()).map_err(OAuthError::internal)?;
            return pick(&set).ok_or_else(|| invalid_client("no registered key matches the assertion's kid"));
        }
        let uri = metadata.jwks_uri.as_deref().ok_or_else(|| invalid_client("the client registered no keys"))?;
        let cached = self.fetched.lock().unwrap_or_else(|p| p.into_inner()).get(client_id).cloned();
        if let Some((at, set)) = &cached
            && at.elapsed() < JWKS_TTL
            && let Some(jwk) = pick(set)
        {
            return Ok(jwk);
        }
        if let Some((at, set)) = &cached
            && at.elapsed() < REFETCH_FLOOR
        {
            return pick(set)
                .ok_or_else(|| invalid_client("no key at the client's jwks_uri matches the assertion's kid"));
        }
        let set = Arc::new(self.fetch(uri).await?);
        self.fetched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(client_id.to_owned(), (Instant::now(), set.clone()));
        pick(&set).ok_or_else(|| invalid_client("no key at the client's jwks_uri matches the assertion's kid"))
    }

    async fn fetch(&self, uri: &str) -> Result<JwkSet, OAuthError> {
        let unreachable = |e: &dyn std::fmt::Display| {
            tracing::warn!(jwks_uri = uri, error = %e, "cannot fetch a client's JWKS");
            invalid_client("the client's jwks_uri cannot be read")
        };
        let mut response = self.http.get(uri).send().await.map_err(|e| unreachable(&e))?;
        if !response.status().is_success() {
            return Err(unreachable(&response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| unreachable(&e))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err(unreachable(&"the JWKS is larger than 64 KiB"));
            }
        }
        serde_json::from_slice(&body).map_err(|e| unreachable(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announced_algorithms_are_the_ones_accepted() {
        for name in nmos_auth_core::capabilities::ASSERTION_ALGORITHMS {
            let alg: Algorithm = name.parse().unwrap_or_else(|_| panic!("{name} is an algorithm"));
            assert!(accepted(alg), "{name}");
        }
        for refused in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512, Algorithm::EdDSA] {
            assert!(!accepted(refused), "{refused:?}");
        }
    }
}
