//! One module per OAuth grant.
pub mod authorization_code;
pub mod client_credentials;
pub mod password;
pub mod refresh_token;

use nmos_auth_core::{ErrorCode, OAuthError};

use crate::claims::Claims;

/// What a grant decided: the access token's claims, and a refresh token to return with it.
pub struct Grant {
    pub claims: Claims,
    /// A refresh token, and the family it belongs to.
    pub refresh: Option<(String, String)>,
    /// The digest of the authorization code exchanged, if any.
    pub code_digest: Option<Vec<u8>>,
}

/// A user's grant must still carry some right: a user whose rights to every approved API were
/// withdrawn gets no token (rather than one with an empty scope).
fn some_right_left(claims: &Claims) -> Result<(), OAuthError> {
    if claims.scope.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidGrant,
            "the user no longer has rights to any of the approved APIs",
        ));
    }
    Ok(())
}
