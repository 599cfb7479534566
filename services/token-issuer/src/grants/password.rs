//! RFC 6749 §4.3, the resource owner password credentials grant: legacy, off by default
//! (IS-10 discourages it), kept so that the seed's documented examples still work. Password
//! guesses are throttled by the identity service exactly as on the sign-in page, and every
//! failure gives the same answer.
use nmos_auth_core::{ErrorCode, GrantType, NmosApi, OAuthError, Scope};
use nmos_auth_proto as pb;

use crate::TokenIssuerService;
use crate::claims::user_claims;
use crate::domain::{Client, User};
use crate::grants::{Grant, refresh_token};
use crate::request::Params;

pub async fn authorize(
    service: &TokenIssuerService,
    client: &Client,
    params: &Params,
    client_address: &str,
) -> Result<Grant, OAuthError> {
    if !client.may_use(GrantType::Password) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client is not registered for the password grant",
        ));
    }
    let (Some(username), Some(password)) = (params.get("username"), params.get("password")) else {
        return Err(OAuthError::new(ErrorCode::InvalidRequest, "username and password are required"));
    };
    let request = pb::VerifyPasswordRequest {
        username: username.to_owned(),
        password: password.to_owned(),
        client_address: client_address.to_owned(),
    };
    let user = match service.peers.identity.clone().verify_password(request).await {
        Ok(user) => User::from_proto(user.into_inner()),
        Err(status) => {
            return Err(match status.code() {
                tonic::Code::Unauthenticated => OAuthError::new(ErrorCode::InvalidGrant, "wrong username or password"),
                tonic::Code::ResourceExhausted => OAuthError::new(ErrorCode::InvalidGrant, status.message()),
                _ => OAuthError::from_status(&status),
            });
        }
    };
    let registered = client.scope.clone();
    // Legacy clients send scopes such as "profile": values that name no NMOS API are ignored.
    let named = Scope::from_apis(params.get("scope").unwrap_or("").split(' ').filter_map(NmosApi::parse));
    let requested = if named.is_empty() { registered.clone() } else { named.intersect(&registered) };
    let claims = user_claims(&user, &client.id, &requested);
    if claims.scope.is_empty() {
        return Err(OAuthError::new(ErrorCode::InvalidScope, "the user has no rights to the requested APIs"));
    }
    let refresh = refresh_token::start_family_for(service, client, &user.username, &claims.scope, None).await?;
    Ok(Grant { claims, refresh, code_digest: None, rotation: None })
}
