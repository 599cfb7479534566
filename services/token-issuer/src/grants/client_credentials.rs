//! RFC 6749 §4.4: the client credentials grant, for confidential machine clients only.
//! The scopes it may carry are limited by an allow-list (BCP-003-02: registration, events),
//! or by the client's own policy, which an administrator sets along with the path lists of
//! its claims and its tokens' audience.
use nmos_auth_core::api::ADMIN_SCOPE;
use nmos_auth_core::{Access, AccessRights, ErrorCode, GrantType, OAuthError, Scope};
use serde_json::{Map, Value, json};

use crate::claims::Claims;
use crate::domain::Client;
use crate::grants::Grant;
use crate::request::Params;

/// Decides the scope and claims of a client_credentials token.
pub fn authorize(client: &Client, params: &Params, default_allowed: &Scope) -> Result<Grant, OAuthError> {
    let policy = client.policy.as_ref();
    let allowed = policy.map_or(default_allowed, |p| &p.scope);
    if client.public {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the client_credentials grant is only for confidential clients",
        ));
    }
    if !client.may_use(GrantType::ClientCredentials) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client is not registered for the client_credentials grant",
        ));
    }
    if let Some(requested) = params.get("scope").filter(|s| s.split(' ').any(|word| word == ADMIN_SCOPE)) {
        return administrator(client, requested);
    }
    let registered = &client.scope;
    let scope = match params.get("scope") {
        Some(requested) => {
            let requested =
                Scope::parse(requested).map_err(|e| OAuthError::new(ErrorCode::InvalidScope, e.to_string()))?;
            if !requested.is_subset_of(allowed) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!("the client_credentials grant may only carry the scopes \"{allowed}\""),
                ));
            }
            if !requested.is_subset_of(registered) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!("this client is registered for the scopes \"{registered}\" only"),
                ));
            }
            requested
        }
        None => registered.intersect(allowed),
    };
    if scope.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "no scope was requested, and none can be granted by default",
        ));
    }
    // A machine client has full access to each API in its granted scope, unless its policy
    // lists the paths.
    let mut permissions = AccessRights::uniform(Access::Write).claims_for(&scope);
    for (api, read, write) in policy.map(|p| p.paths.as_slice()).unwrap_or_default() {
        if scope.contains(*api) {
            let mut object = Map::new();
            if !read.is_empty() {
                object.insert("read".into(), json!(read));
            }
            if !write.is_empty() {
                object.insert("write".into(), json!(write));
            }
            permissions.insert(api.claim_name(), Value::Object(object));
        }
    }
    let audience = policy.map(|p| p.audience.clone()).filter(|a| !a.is_empty());
    let claims = Claims {
        subject: client.id.to_string(),
        client_id: client.id.clone(),
        scope,
        permissions,
        audience,
        admin: false,
    };
    Ok(Grant { claims, refresh: None, code_digest: None, rotation: None })
}

/// An administrator's token, for a client whose policy allows it: asked for on its own, so
/// that no token is good both at this server's services and at an NMOS API.
fn administrator(client: &Client, requested: &str) -> Result<Grant, OAuthError> {
    if requested.split(' ').any(|word| !word.is_empty() && word != ADMIN_SCOPE) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("{ADMIN_SCOPE} is requested on its own, without NMOS API scopes"),
        ));
    }
    if !client.policy.as_ref().is_some_and(|p| p.admin) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("this client may not get the scope {ADMIN_SCOPE}"),
        ));
    }
    let claims = Claims {
        subject: client.id.to_string(),
        client_id: client.id.clone(),
        scope: Scope::default(),
        permissions: Map::new(),
        audience: None,
        admin: true,
    };
    Ok(Grant { claims, refresh: None, code_digest: None, rotation: None })
}
