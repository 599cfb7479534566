//! One module per OAuth grant.
pub mod authorization_code;
pub mod client_credentials;
pub mod password;
pub mod refresh_token;

use crate::claims::Claims;

/// What a grant decided: the access token's claims, and a refresh token to return with it.
pub struct Grant {
    pub claims: Claims,
    /// A refresh token, and the family it belongs to.
    pub refresh: Option<(String, String)>,
}
