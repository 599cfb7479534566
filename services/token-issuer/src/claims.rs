//! The IS-10 access token claims set (IS-10 §4.4, is-10.md §1.12).
use nmos_auth_core::api::ADMIN_SCOPE;
use nmos_auth_core::{ClientId, Scope};
use serde_json::{Map, Value, json};

use crate::domain::User;

/// What every token carries, whoever asked for it.
pub struct TokenPolicy {
    /// Byte-identical to the metadata `issuer`.
    pub issuer: String,
    /// Always serialised as a JSON array (IS-10 requires one).
    pub audience: Vec<String>,
    pub lifetime_secs: i64,
    /// The `aud` of an administrator's token: this server's own host name, never the NMOS
    /// audience.
    pub admin_audience: String,
}

pub struct Claims {
    pub subject: String,
    pub client_id: ClientId,
    pub scope: Scope,
    /// The `x-nmos-<api>` objects; never empty ones.
    pub permissions: Map<String, Value>,
    /// An `aud` for this token instead of the server's (a client's policy).
    pub audience: Option<Vec<String>>,
    /// An administrator's token ([`ADMIN_SCOPE`], for this server's own services): no NMOS
    /// scope or claims, and this server as its audience.
    pub admin: bool,
}

impl Claims {
    /// The `scope` claim.
    pub fn scope_string(&self) -> String {
        if self.admin { ADMIN_SCOPE.to_owned() } else { self.scope.to_string() }
    }
}

impl TokenPolicy {
    /// The claims set as JSON, and its `jti`.
    pub fn claims_json(&self, claims: Claims, now: i64) -> (Vec<u8>, String) {
        let jti = nmos_auth_core::secret::random_token::<16>();
        let audience = match (&claims.audience, claims.admin) {
            (_, true) => std::slice::from_ref(&self.admin_audience),
            (Some(audience), false) => audience.as_slice(),
            (None, false) => self.audience.as_slice(),
        };
        let mut object = json!({
            "iss": self.issuer,
            "sub": claims.subject,
            "aud": audience,
            "exp": now + self.lifetime_secs,
            "iat": now,
            "jti": jti,
            "client_id": claims.client_id,
            "scope": claims.scope_string(),
        });
        if let Value::Object(map) = &mut object {
            map.extend(claims.permissions);
        }
        (object.to_string().into_bytes(), jti)
    }
}

/// A user's token: the requested scope narrowed to the APIs the user has rights to, with one
/// `x-nmos-<api>` claim per API carrying exactly those rights.
pub fn user_claims(user: &User, client_id: &ClientId, requested: &Scope) -> Claims {
    let scope = user.rights.grantable(requested);
    Claims {
        subject: user.username.clone(),
        client_id: client_id.clone(),
        permissions: user.rights.claims_for(&scope),
        scope,
        audience: None,
        admin: false,
    }
}
