//! RFC 7009 token revocation. Revoking a refresh token revokes its family; revoking an access
//! token (a JWT this server signed, checked by the keys service) records its `jti` until it
//! expires. Unknown tokens, and tokens of other
//! clients, are answered like revoked ones (200) and left alone.
use nmos_auth_core::{ClientId, ErrorCode, OAuthError, secret};
use nmos_auth_proto as pb;
use serde_json::Value;

use crate::TokenIssuerService;
use crate::request::ClientRequest;

impl TokenIssuerService {
    /// The `jti`, `exp` and `client_id` of an access token this server signed (checked by the
    /// keys service), or `None` for anything else.
    async fn verified_access_token(&self, token: &str) -> Result<Option<(String, i64, ClientId)>, OAuthError> {
        let verify = |mut keys: nmos_auth_proto::keys_client::KeysClient<nmos_auth_core::grpc::GrpcChannel>| async move {
            keys.verify(pb::VerifyRequest { jws: token.to_owned() }).await
        };
        let verified = match nmos_auth_core::grpc::idempotent(&self.peers.keys, verify).await {
            Ok(v) => v.into_inner(),
            Err(status) if OAuthError::from_status(&status).code == ErrorCode::InvalidToken => return Ok(None),
            Err(status) => return Err(OAuthError::from_status(&status)),
        };
        let claims: Value = serde_json::from_slice(&verified.claims_json).map_err(OAuthError::internal)?;
        Ok((|| {
            Some((
                claims["jti"].as_str()?.to_owned(),
                claims["exp"].as_i64()?,
                ClientId::new(claims["client_id"].as_str()?),
            ))
        })())
    }

    pub async fn revoke(&self, request: ClientRequest) -> Result<(), OAuthError> {
        let client = self.authenticate(&request).await?;
        let params = &request.params;
        // The IS-10 RAML calls the parameter access_token; RFC 7009 calls it token.
        let token = params
            .get("token")
            .or_else(|| params.get("access_token"))
            .ok_or_else(|| OAuthError::new(ErrorCode::InvalidRequest, "token is required"))?;
        if let Some(found) = self.store.find_refresh_token(&secret::digest(token)).await? {
            if found.family.client_id == client.id {
                self.store.revoke_family(&found.family.id).await?;
                tracing::info!(target: "audit", event = "refresh_token_revoked", client_id = %client.id, username = %found.family.username, "refresh token family revoked");
            }
        } else if let Some((jti, exp, client_id)) = self.verified_access_token(token).await?
            && client_id == client.id
        {
            self.store.revoke_access_token(&jti, exp).await?;
            tracing::info!(target: "audit", event = "access_token_revoked", client_id = %client.id, jti, "access token revoked");
        }
        Ok(())
    }
}
