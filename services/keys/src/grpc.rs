//! gRPC transport of the keys service: proto <-> domain, nothing else.

use nmos_auth_proto::keys_server::Keys;
use nmos_auth_proto::{GetJwksRequest, GetJwksResponse, SignRequest, SignResponse, VerifyRequest, VerifyResponse};
use tonic::{Request, Response, Status};

use crate::KeysService;

#[tonic::async_trait]
impl Keys for KeysService {
    async fn sign(&self, request: Request<SignRequest>) -> Result<Response<SignResponse>, Status> {
        let claims = request.into_inner().claims_json;
        let (jws, kid) = KeysService::sign(self, &claims)?;
        Ok(Response::new(SignResponse { jws, kid }))
    }

    async fn get_jwks(&self, _: Request<GetJwksRequest>) -> Result<Response<GetJwksResponse>, Status> {
        Ok(Response::new(GetJwksResponse { keys: self.jwks() }))
    }

    async fn verify(&self, request: Request<VerifyRequest>) -> Result<Response<VerifyResponse>, Status> {
        let (claims_json, kid) = KeysService::verify(self, &request.into_inner().jws)?;
        Ok(Response::new(VerifyResponse { claims_json, kid }))
    }
}
