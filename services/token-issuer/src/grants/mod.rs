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
    /// The digests of the refresh token presented and of its successor, for a refresh.
    pub rotation: Option<(Vec<u8>, Vec<u8>)>,
}

/// What a grant used up on its way to a token.
pub enum UsedUp {
    /// An authorization code, by its digest.
    Code(Vec<u8>),
    /// A refresh token's rotation: the digests of the token presented and of its successor.
    Rotation(Vec<u8>, Vec<u8>),
}

impl Grant {
    pub fn used_up(&self) -> Option<UsedUp> {
        match (&self.code_digest, &self.rotation) {
            (Some(code), _) => Some(UsedUp::Code(code.clone())),
            (None, Some((old, new))) => Some(UsedUp::Rotation(old.clone(), new.clone())),
            (None, None) => None,
        }
    }
}

/// Gives back what a grant used up when no token came of it because of an outage (`error`), so
/// that the client's retry succeeds rather than look like a replay, which would revoke its
/// tokens. Best effort: during a database outage this fails too, and the retry is then a replay.
pub async fn give_back(store: &dyn crate::store::TokenStore, used: UsedUp, error: &OAuthError) {
    if !matches!(error.code, ErrorCode::TemporarilyUnavailable | ErrorCode::ServerError) {
        return;
    }
    let given_back = match used {
        UsedUp::Code(code) => store.release_code(&code).await,
        UsedUp::Rotation(old, new) => store.release_rotation(&old, &new).await,
    };
    match given_back {
        Ok(true) => tracing::info!(error = %error, "no token was issued; the code or refresh token may be used again"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "could not give back a code or refresh token"),
    }
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
