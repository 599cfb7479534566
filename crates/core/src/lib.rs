//! Domain types, configuration, telemetry and storage helpers that every nmos-auth service shares.
#![forbid(unsafe_code)]

pub mod api;
pub mod bearer;
pub mod capabilities;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod grpc;
pub mod housekeeping;
pub mod metrics;
pub mod mtls;
pub mod operator;
pub mod ratelimit;
pub mod sealing;
pub mod secret;
pub mod telemetry;

pub use api::{Access, AccessRights, ClientId, GrantType, NmosApi, RedirectUri, Scope};
pub use config::Config;
pub use error::{ErrorCode, OAuthError};

/// The IS-10 API version this server implements.
pub const API_VERSION: &str = "v1.0";
/// The path of the Auth API; also the path of the issuer identifier.
pub const AUTH_API_BASE: &str = "/x-nmos/auth/v1.0";

/// How long a person's sign-in on the web pages lasts (the identity service's session and
/// the gateway's cookie alike); signing in again starts a new one.
pub const SESSION_LIFETIME_SECS: i64 = 8 * 3600;

/// The grpc.health.v1 service name of a process's liveness: serving for as long as the process
/// runs, whatever its database or peers do (Kubernetes liveness probes, container health
/// checks). Readiness is the server's own status (`""`) and its service's name.
pub const LIVENESS: &str = "liveness";

/// A key of the keys service's `GetJwks` as an RFC 7517 JWK (with `x5c` when it has a chain).
pub fn jwk_json(k: &nmos_auth_proto::Jwk) -> serde_json::Value {
    let mut jwk = serde_json::json!({"kty": k.kty, "use": k.r#use, "alg": k.alg, "kid": k.kid, "n": k.n, "e": k.e});
    if !k.x5c.is_empty() {
        jwk["x5c"] = serde_json::json!(k.x5c);
    }
    jwk
}

/// The JWKS document (RFC 7517 §5) of `keys`, as the JWKS route serves it.
pub fn jwks_document(keys: &[nmos_auth_proto::Jwk]) -> Vec<u8> {
    let keys: Vec<serde_json::Value> = keys.iter().map(jwk_json).collect();
    serde_json::json!({ "keys": keys }).to_string().into_bytes()
}

/// A strong HTTP entity tag (quoted) for a document: 96 bits of its SHA-256.
pub fn etag(document: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, document);
    format!("\"{}\"", digest.as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Whether what a user of some name did at `done_at` (a registration, a grant; Unix seconds) is
/// the doing of the account of that name created at `account_created_at`. A name is free again
/// once its account is deleted, so what is older than the account was another account's; accounts
/// are dated to the second, so the same second counts as this account's.
pub fn done_by_account(account_created_at: i64, done_at: i64) -> bool {
    done_at >= account_created_at
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
