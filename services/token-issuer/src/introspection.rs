//! RFC 7662 token introspection for authenticated, confidential clients. Access tokens are
//! verified by the keys service and checked for expiry and revocation; refresh tokens are looked
//! up. A client learns about its own tokens only, unless an administrator's policy lets it
//! introspect others' (a resource server: RFC 7662 §4 asks the server to decide who may ask
//! about which tokens, so that introspection is no oracle for a person's username and scopes).
//! Anything else is `{"active": false}`.
use nmos_auth_core::grpc::{self, GrpcChannel};
use nmos_auth_core::{ErrorCode, OAuthError, secret};
use nmos_auth_proto as pb;
use nmos_auth_proto::keys_client::KeysClient;
use serde_json::{Map, Value, json};

use crate::TokenIssuerService;
use crate::request::ClientRequest;

/// The members of an access token that an introspection answer repeats.
const ACCESS_MEMBERS: [&str; 8] = ["scope", "client_id", "exp", "iat", "nbf", "sub", "aud", "iss"];

impl TokenIssuerService {
    pub async fn introspect(&self, request: ClientRequest) -> Result<Value, OAuthError> {
        let client = self.authenticate(&request).await?;
        let params = &request.params;
        if client.public {
            // Public clients cannot prove who they are; introspection would become a token oracle.
            return Err(OAuthError::new(ErrorCode::InvalidClient, "only confidential clients may introspect tokens"));
        }
        let token =
            params.get("token").ok_or_else(|| OAuthError::new(ErrorCode::InvalidRequest, "token is required"))?;
        let now = nmos_auth_core::now_unix();
        let inactive = json!({"active": false});

        if let Some(found) = self.store.find_refresh_token(&secret::digest(token)).await? {
            let f = found.family;
            if f.client_id != client.id || found.used || f.revoked || f.expires_at <= now {
                return Ok(inactive);
            }
            match self.granting_user(&f.username, f.created_at).await {
                Ok(_) => {}
                Err(e) if e.code == ErrorCode::InvalidGrant => return Ok(inactive),
                Err(e) => return Err(e),
            }
            return Ok(json!({
                "active": true, "token_type": "refresh_token", "client_id": f.client_id, "username": f.username,
                "sub": f.username, "scope": f.scope, "exp": f.expires_at, "iat": f.created_at,
            }));
        }

        let verify = |mut keys: KeysClient<GrpcChannel>| async move {
            keys.verify(pb::VerifyRequest { jws: token.to_owned() }).await
        };
        let verified = match grpc::idempotent(&self.peers.keys, verify).await {
            Ok(v) => v.into_inner(),
            Err(status) if OAuthError::from_status(&status).code == ErrorCode::InvalidToken => return Ok(inactive),
            Err(status) => return Err(OAuthError::from_status(&status)),
        };
        let claims: Map<String, Value> = serde_json::from_slice(&verified.claims_json).map_err(OAuthError::internal)?;
        let current = claims.get("exp").and_then(Value::as_i64).is_some_and(|exp| exp > now)
            && claims.get("nbf").and_then(Value::as_i64).is_none_or(|nbf| nbf <= now)
            && claims.get("iss").and_then(Value::as_str) == Some(self.policy.issuer.as_str());
        let issued_to_caller = claims.get("client_id").and_then(Value::as_str) == Some(client.id.as_str());
        if !issued_to_caller && !client.policy.as_ref().is_some_and(|p| p.introspect) {
            return Ok(inactive);
        }
        let jti = claims.get("jti").and_then(Value::as_str).unwrap_or_default();
        if !current || self.store.is_access_token_revoked(jti).await? {
            return Ok(inactive);
        }
        if !self.issued_to_someone_still_here(&claims).await? {
            return Ok(inactive);
        }
        let mut answer = Map::new();
        answer.insert("active".into(), json!(true));
        answer.insert("token_type".into(), json!("Bearer"));
        answer.insert("jti".into(), json!(jti));
        for member in ACCESS_MEMBERS {
            if let Some(value) = claims.get(member) {
                answer.insert(member.into(), value.clone());
            }
        }
        if let Some(sub) = claims.get("sub") {
            answer.insert("username".into(), sub.clone());
        }
        Ok(Value::Object(answer))
    }

    /// Whether the token's client still exists (and is neither held for approval nor disabled), and, for a
    /// user's token, whether the user who was issued it still exists and is enabled (not a later
    /// account of the same name): a token outlives neither.
    async fn issued_to_someone_still_here(&self, claims: &Map<String, Value>) -> Result<bool, OAuthError> {
        let client_id = claims.get("client_id").and_then(Value::as_str).unwrap_or_default();
        match self.client(client_id).await? {
            Some(client) if !client.pending && !client.disabled => {}
            _ => return Ok(false),
        }
        // A client's own token names the client as its subject; any other subject is a user.
        let subject = claims.get("sub").and_then(Value::as_str).unwrap_or_default();
        if subject == client_id {
            return Ok(true);
        }
        // A token without its issue time cannot show that it is the current account's.
        let issued_at = claims.get("iat").and_then(Value::as_i64).unwrap_or(i64::MIN);
        match self.granting_user(subject, issued_at).await {
            Ok(_) => Ok(true),
            Err(e) if e.code == ErrorCode::InvalidGrant => Ok(false),
            Err(e) => Err(e),
        }
    }
}
