//! gRPC transport of the keys service: proto <-> domain, nothing else.

use nmos_auth_core::operator::{administrator, operator};
use nmos_auth_proto as pb;
use nmos_auth_proto::keys_server::Keys;
use tonic::{Request, Response, Status};

use crate::KeysService;
use crate::schedule::State;
use crate::store::StoredKey;

fn key_to_proto(key: &StoredKey, state: State) -> pb::SigningKey {
    pb::SigningKey {
        kid: key.kid.clone(),
        state: state.as_str().to_owned(),
        generation: key.generation,
        created_at: key.created_at,
        activate_at: key.activate_at,
        remove_at: key.remove_at.unwrap_or(0),
        removed_by_operator: key.removed_by_operator,
    }
}

/// Importing a key is an operator's alone: the operator's name.
fn operator_only<T>(request: &Request<T>) -> Result<String, Status> {
    match operator(request) {
        Some(operator) => Ok(operator.name()),
        None => Err(Status::permission_denied("only an operator manages the signing keys")),
    }
}

/// A failure of the key store, or of a key operation: UNAVAILABLE (with the OAuth error, as
/// every service sends it) when the database cannot be reached, else the operation's message.
fn failed(e: anyhow::Error) -> Status {
    if nmos_auth_core::error::is_unavailable(&e) {
        return nmos_auth_core::OAuthError::internal(e).into();
    }
    Status::failed_precondition(format!("{e:#}"))
}

#[tonic::async_trait]
impl Keys for KeysService {
    async fn sign(&self, request: Request<pb::SignRequest>) -> Result<Response<pb::SignResponse>, Status> {
        let claims = request.into_inner().claims_json;
        let (jws, kid) = KeysService::sign(self, &claims)?;
        Ok(Response::new(pb::SignResponse { jws, kid }))
    }

    async fn get_jwks(&self, request: Request<pb::GetJwksRequest>) -> Result<Response<pb::GetJwksResponse>, Status> {
        let crate::Jwks { document, etag } = self.jwks_document();
        let keys = if request.get_ref().document_only { Vec::new() } else { self.jwks() };
        Ok(Response::new(pb::GetJwksResponse { keys, document, etag }))
    }

    async fn verify(&self, request: Request<pb::VerifyRequest>) -> Result<Response<pb::VerifyResponse>, Status> {
        let (claims_json, kid) = KeysService::verify(self, &request.into_inner().jws)?;
        Ok(Response::new(pb::VerifyResponse { claims_json, kid }))
    }

    async fn list_keys(&self, request: Request<pb::ListKeysRequest>) -> Result<Response<pb::ListKeysResponse>, Status> {
        administrator(&request, request.get_ref().requested_by.as_ref(), "list the signing keys")?;
        let keys = self.list().await.map_err(failed)?;
        Ok(Response::new(pb::ListKeysResponse {
            keys: keys.iter().map(|(k, s)| key_to_proto(k, *s)).collect(),
            next_rotation_at: self.next_rotation(&keys).unwrap_or(0),
        }))
    }

    async fn rotate_key(&self, request: Request<pb::RotateKeyRequest>) -> Result<Response<pb::SigningKey>, Status> {
        let by = administrator(&request, request.get_ref().requested_by.as_ref(), "rotate the signing keys")?;
        let key = self.rotate(&by.username).await.map_err(failed)?;
        Ok(Response::new(key_to_proto(&key, State::Next)))
    }

    async fn remove_key(
        &self,
        request: Request<pb::RemoveKeyRequest>,
    ) -> Result<Response<pb::RemoveKeyResponse>, Status> {
        let by = administrator(&request, request.get_ref().requested_by.as_ref(), "remove signing keys")?;
        let kid = request.into_inner().kid;
        if !self.remove(&kid, &by.username).await.map_err(failed)? {
            return Err(Status::not_found(format!("no signing key {kid:?} to remove")));
        }
        Ok(Response::new(pb::RemoveKeyResponse {}))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        self.events.list_for_administrators(request).await
    }

    async fn import_key(&self, request: Request<pb::ImportKeyRequest>) -> Result<Response<pb::SigningKey>, Status> {
        let by = operator_only(&request)?;
        let r = request.into_inner();
        if r.chain.is_empty() {
            return Err(Status::invalid_argument("the key's certificate chain is required"));
        }
        let key = self.import(&r.pkcs8, r.chain, &by).await.map_err(failed)?;
        Ok(Response::new(key_to_proto(&key, State::Next)))
    }
}
