//! gRPC transport of the token issuer: proto <-> domain, nothing else.
use nmos_auth_proto as pb;
use nmos_auth_proto::token_issuer_server::TokenIssuer;
use tonic::{Request, Response, Status};

use crate::TokenIssuerService;

#[tonic::async_trait]
impl TokenIssuer for TokenIssuerService {
    async fn token(&self, request: Request<pb::TokenRequest>) -> Result<Response<pb::TokenResponse>, Status> {
        Ok(Response::new(self.token(request.into_inner()).await?))
    }

    async fn authorize(
        &self,
        request: Request<pb::AuthorizeRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        Ok(Response::new(self.authorize(request.into_inner()).await?))
    }

    async fn revoke(&self, request: Request<pb::RevokeRequest>) -> Result<Response<pb::RevokeResponse>, Status> {
        self.revoke(request.into_inner()).await?;
        Ok(Response::new(pb::RevokeResponse {}))
    }

    async fn introspect(
        &self,
        request: Request<pb::IntrospectRequest>,
    ) -> Result<Response<pb::IntrospectResponse>, Status> {
        let answer = self.introspect(request.into_inner()).await?;
        Ok(Response::new(pb::IntrospectResponse { json: answer.to_string().into_bytes() }))
    }
}
