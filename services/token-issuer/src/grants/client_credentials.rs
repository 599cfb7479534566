//! RFC 6749 §4.4: the client credentials grant, for confidential machine clients only.
//! The scopes it may carry are limited by an allow-list (BCP-003-02: registration, events).
use nmos_auth_core::{Access, AccessRights, ErrorCode, OAuthError, Scope};
use nmos_auth_proto as pb;

use crate::claims::Claims;
use crate::grants::Grant;
use crate::request::Params;

/// Decides the scope and claims of a client_credentials token.
pub fn authorize(client: &pb::Client, params: &Params, allowed: &Scope) -> Result<Grant, OAuthError> {
    if client.token_endpoint_auth_method == pb::TokenEndpointAuthMethod::None as i32 {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the client_credentials grant is only for confidential clients",
        ));
    }
    if !client.grant_types.iter().any(|g| g == "client_credentials") {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client is not registered for the client_credentials grant",
        ));
    }
    let registered = Scope::parse(&client.scope).map_err(OAuthError::internal)?;
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
            if !requested.is_subset_of(&registered) {
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
    // A machine client has full access to each API in its granted scope.
    let permissions = AccessRights::uniform(Access::Write).claims_for(&scope);
    let claims = Claims { subject: client.client_id.clone(), client_id: client.client_id.clone(), scope, permissions };
    Ok(Grant { claims, refresh: None })
}
