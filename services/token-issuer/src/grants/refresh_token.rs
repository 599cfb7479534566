//! RFC 6749 §6 with rotation (RFC 6819 §5.2.2.3, OAuth security BCP §4.14): each use returns a
//! new refresh token; presenting a rotated one revokes the whole family. Rotation never extends
//! the family's lifetime.
use nmos_auth_core::secret::{self, random_token};
use nmos_auth_core::{ClientId, ErrorCode, GrantType, OAuthError, Scope};

use crate::TokenIssuerService;
use crate::claims::user_claims;
use crate::domain::Client;
use crate::grants::{Grant, some_right_left};
use crate::request::Params;
use crate::store::FamilyRow;

/// Starts a family for a new authorization, if the client registered for the refresh_token
/// grant; returns its first refresh token (43 characters, 256 bits) and the family's id.
pub async fn start_family_for(
    service: &TokenIssuerService,
    client: &Client,
    username: &str,
    scope: &Scope,
    code_digest: Option<&[u8]>,
) -> Result<Option<(String, String)>, OAuthError> {
    if !client.may_use(GrantType::RefreshToken) {
        return Ok(None);
    }
    start_family(service, &client.id, username, scope, code_digest).await.map(Some)
}

async fn start_family(
    service: &TokenIssuerService,
    client_id: &ClientId,
    username: &str,
    scope: &Scope,
    code_digest: Option<&[u8]>,
) -> Result<(String, String), OAuthError> {
    let token = random_token::<32>();
    let now = nmos_auth_core::now_unix();
    let family = FamilyRow {
        id: random_token::<16>(),
        client_id: client_id.clone(),
        username: username.to_owned(),
        scope: scope.to_string(),
        code_digest: code_digest.map(<[u8]>::to_vec),
        created_at: now,
        expires_at: now + service.refresh_token_lifetime_secs,
        revoked: false,
    };
    service.store.create_family(&family, &secret::digest(&token)).await?;
    Ok((token, family.id))
}

pub async fn refresh(service: &TokenIssuerService, client: &Client, params: &Params) -> Result<Grant, OAuthError> {
    if !client.may_use(GrantType::RefreshToken) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client is not registered for the refresh_token grant",
        ));
    }
    let invalid_grant = |d: &str| OAuthError::new(ErrorCode::InvalidGrant, d);
    let presented = params
        .get("refresh_token")
        .ok_or_else(|| OAuthError::new(ErrorCode::InvalidRequest, "refresh_token is required"))?;
    let digest = secret::digest(presented);
    let found =
        service.store.find_refresh_token(&digest).await?.ok_or_else(|| invalid_grant("unknown refresh token"))?;
    let family = found.family;
    if family.client_id != client.id {
        return Err(invalid_grant("the refresh token was issued to another client"));
    }
    if found.used {
        service.store.revoke_family(&family.id).await?;
        tracing::warn!(target: "audit", event = "refresh_token_reused", client_id = %family.client_id, username = %family.username, "a rotated refresh token was presented again; its family is revoked");
        return Err(invalid_grant("the refresh token was already used"));
    }
    if family.revoked {
        return Err(invalid_grant("the refresh token has been revoked"));
    }
    if family.expires_at <= nmos_auth_core::now_unix() {
        return Err(invalid_grant("the refresh token has expired"));
    }
    let approved = Scope::parse(&family.scope).map_err(OAuthError::internal)?;
    let scope = match params.get("scope") {
        None => approved.clone(),
        Some(s) => {
            let requested = Scope::parse(s).map_err(|e| OAuthError::new(ErrorCode::InvalidScope, e.to_string()))?;
            if !requested.is_subset_of(&approved) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!("a refresh may narrow the approved scope \"{approved}\", never widen it"),
                ));
            }
            requested
        }
    };
    let user = match service.granting_user(&family.username, family.created_at).await {
        Ok(user) => user,
        // The user was deleted (whether or not the name has a new account since) or disabled:
        // the family dies. (A service that is briefly unavailable must not end everyone's
        // sessions.)
        Err(e) if e.code == ErrorCode::InvalidGrant => {
            service.store.revoke_family(&family.id).await?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    // Rights are read again at every refresh. With none left to anything approved there is no
    // token to give (the family stays: rights given back make it useful again, until it
    // expires); with rights left, but none to what this refresh narrowed the scope to, the
    // scope asked for is the problem.
    some_right_left(&user_claims(&user, &client.id, &approved))?;
    let claims = user_claims(&user, &client.id, &scope);
    if claims.scope.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("the user has no rights left to \"{scope}\"; ask for the approved scope, or part of it"),
        ));
    }
    let next = random_token::<32>();
    let rotated = service
        .store
        .rotate_refresh_token(&digest, &secret::digest(&next), &family.id, nmos_auth_core::now_unix())
        .await?;
    if !rotated {
        // Another request rotated it first: that is reuse too.
        service.store.revoke_family(&family.id).await?;
        return Err(invalid_grant("the refresh token was already used"));
    }
    let rotation = Some((digest, secret::digest(&next)));
    Ok(Grant { claims, refresh: Some((next, family.id)), code_digest: None, rotation })
}
