//! Administrators' bearer tokens at the services' gRPC APIs.
//!
//! Inside a split deployment the services know each other by their certificates
//! ([`crate::mtls`]). A caller from outside (an operator's script, a plant's automation) may
//! instead present an access token from this very server with the scope [`ADMIN_SCOPE`], which
//! only a machine client whose policy allows it can get. The services check such a token with
//! the resource-server crate, exactly as an NMOS API would, against this server's keys, which
//! they read from the keys service over its gRPC API (not over HTTP from the gateway, which
//! they may not be able to reach, and which would make them depend on it).
use std::sync::Arc;
use std::time::Duration;

use nmos_auth_proto::GetJwksRequest;
use nmos_auth_proto::keys_client::KeysClient;
use nmos_auth_resource_server::{FetchError, JwksFuture, KeyCache, KeySource, ResourceServer, Settings};
use serde_json::json;

use crate::Config;
use crate::api::ADMIN_SCOPE;
use crate::grpc::GrpcChannel;
use crate::mtls::{Service, callers};

/// In the request extensions of a gRPC call that an administrator's token authenticated:
/// the client it was issued to, which the handlers name as the caller (whatever the request
/// says), for audit and ownership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenCaller {
    pub client_id: String,
}

impl TokenCaller {
    /// How the caller appears where a user name is expected (`client:<client_id>`; user
    /// names cannot contain a colon).
    pub fn username(&self) -> String {
        format!("client:{}", self.client_id)
    }
}

/// This server's signing keys, from the keys service's `GetJwks`.
struct KeysServiceJwks {
    issuer: String,
    keys: KeysClient<GrpcChannel>,
}

impl KeySource for KeysServiceJwks {
    fn issuer(&self) -> &str {
        &self.issuer
    }

    fn jwks(&self) -> JwksFuture<'_> {
        Box::pin(async move {
            let get = |mut keys: KeysClient<GrpcChannel>| async move { keys.get_jwks(GetJwksRequest {}).await };
            let reply = crate::grpc::idempotent(&self.keys, get)
                .await
                .map_err(|status| FetchError::Source(format!("the keys service: {}", status.message())))?;
            let keys: Vec<_> = reply
                .into_inner()
                .keys
                .into_iter()
                .map(|k| json!({"kty": k.kty, "use": k.r#use, "alg": k.alg, "kid": k.kid, "n": k.n, "e": k.e}))
                .collect();
            Ok(json!({ "keys": keys }))
        })
    }
}

/// Checks administrators' tokens: signed by this server's keys (read through `keys`, a channel
/// to the keys service), issued by it, for its own host (`aud`), and still valid.
pub fn admin_tokens(config: &Config, keys: GrpcChannel) -> anyhow::Result<ResourceServer> {
    let source = KeysServiceJwks { issuer: config.issuer()?, keys: KeysClient::new(keys) };
    // A new key is published before it signs, and an unknown kid is re-read at once (at most
    // every 5 s), so a five-minute refresh only bounds how long a removed key is trusted.
    let cache = KeyCache::from_source(Arc::new(source)).with_timing(Duration::from_secs(300), Duration::from_secs(5));
    let settings = Settings { realm: "nmos-auth".into(), ..Settings::new(config.public_host()?) };
    Ok(ResourceServer::with_cache(Arc::new(cache), settings))
}

/// Whether the bearer token in `authorization` lets its holder call `path`: a valid
/// administrator's token, for a method an administrator may call.
pub async fn authorize(
    tokens: &ResourceServer,
    path: &str,
    authorization: Option<&str>,
) -> Result<TokenCaller, tonic::Status> {
    if authorization.is_none() {
        return Err(tonic::Status::unauthenticated(
            "a client certificate, or an administrator's bearer token, is required",
        ));
    }
    // Checking is always on here (`admin_tokens`); were it off, nobody would get in.
    let Some(claims) = tokens.check_grpc(authorization).await? else {
        return Err(tonic::Status::unauthenticated("administrators' tokens are not checked, so not accepted"));
    };
    let caller = TokenCaller { client_id: claims.client_id().unwrap_or_default().to_owned() };
    let refuse = |why: String| {
        tracing::warn!(target: "audit", event = "grpc_call_refused", method = path, client_id = caller.client_id,
            reason = why.as_str(), "refused a gRPC call with a bearer token");
        Err(tonic::Status::permission_denied(why))
    };
    if !claims.has_scope(ADMIN_SCOPE) {
        return refuse(format!("the token does not carry the scope {ADMIN_SCOPE}"));
    }
    if callers(path).is_some_and(|allowed| !allowed.contains(&Service::Admin)) {
        return refuse(format!("an administrator's token may not call {path}"));
    }
    tracing::info!(target: "audit", event = "grpc_admin_call", method = path, client_id = caller.client_id,
        "an administrator's token called a gRPC method");
    Ok(caller)
}
