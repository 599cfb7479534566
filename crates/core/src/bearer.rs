//! Administrators' bearer tokens at the services' gRPC APIs.
//!
//! Inside a split deployment the services know each other by their certificates
//! ([`crate::mtls`]). A caller from outside (an operator's script, a plant's automation) may
//! instead present an access token from this very server with the scope [`ADMIN_SCOPE`], which
//! only a machine client whose policy allows it can get. The services check such a token with
//! the resource-server crate, exactly as an NMOS API would, against this server's keys, which
//! they read from the keys service over its gRPC API (not over HTTP from the gateway, which
//! they may not be able to reach, and which would make them depend on it). A valid token also
//! needs its client to still be an administrator's, asked of the client registry (remembered
//! for a second): deleting the client or clearing its admin flag cuts its tokens off at once.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nmos_auth_proto::client_registry_client::ClientRegistryClient;
use nmos_auth_proto::keys_client::KeysClient;
use nmos_auth_proto::{GetClientRequest, GetJwksRequest};
use nmos_auth_resource_server::{FetchError, JwksFuture, KeyCache, KeySource, ResourceServer, Settings};

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
            let request = GetJwksRequest { document_only: true };
            let get = |mut keys: KeysClient<GrpcChannel>| async move { keys.get_jwks(request).await };
            let reply = crate::grpc::idempotent(&self.keys, get)
                .await
                .map_err(|status| FetchError::Source(format!("the keys service: {}", status.message())))?;
            serde_json::from_slice(&reply.get_ref().document)
                .map_err(|e| FetchError::Source(format!("the keys service's JWKS: {e}")))
        })
    }
}

/// Checks administrators' tokens for one service.
pub struct AdminTokens {
    tokens: ResourceServer,
    clients: ClientRegistryClient<GrpcChannel>,
    /// Whether a client is (still) an administrator's, and when that was asked.
    admins: Mutex<HashMap<String, (Instant, bool)>>,
}

/// How long the client registry's answer about a client is trusted.
const ADMIN_CHECK_TTL: Duration = Duration::from_secs(1);

/// Checks administrators' tokens: signed by this server's keys (read through `keys`, a channel
/// to the keys service), issued by it, for its own host (`aud`), still valid, and their client
/// still an administrator's (asked through `clients`, a channel to the client registry).
pub fn admin_tokens(config: &Config, keys: GrpcChannel, clients: GrpcChannel) -> anyhow::Result<AdminTokens> {
    let source = KeysServiceJwks { issuer: config.issuer()?, keys: KeysClient::new(keys) };
    // A new key is published before it signs, and an unknown kid is re-read at once (at most
    // every 5 s), so a five-minute refresh only bounds how long a removed key is trusted.
    let cache = KeyCache::from_source(Arc::new(source)).with_timing(Duration::from_secs(300), Duration::from_secs(5));
    let settings = Settings { realm: "nmos-auth".into(), ..Settings::new(config.public_host()?) };
    Ok(AdminTokens {
        tokens: ResourceServer::with_cache(Arc::new(cache), settings),
        clients: ClientRegistryClient::new(clients),
        admins: Mutex::new(HashMap::new()),
    })
}

impl AdminTokens {
    /// Whether the bearer token in `authorization` lets its holder (at `peer`) call `path`: a
    /// valid administrator's token, of a client that is still an administrator's, for a method
    /// an administrator may call. Every refusal is an audit event, never with the token.
    pub async fn authorize(
        &self,
        path: &str,
        authorization: Option<&str>,
        peer: Option<SocketAddr>,
    ) -> Result<TokenCaller, tonic::Status> {
        let peer = peer.map(|p| p.to_string()).unwrap_or_default();
        let refuse = |client_id: &str, status: tonic::Status| {
            tracing::warn!(target: "audit", event = "grpc_call_refused", method = path, client_id, peer,
                reason = status.message(), "refused a gRPC call without a certificate");
            Err(status)
        };
        if authorization.is_none() {
            let status =
                tonic::Status::unauthenticated("a client certificate, or an administrator's bearer token, is required");
            return refuse("", status);
        }
        let claims = match self.tokens.check_grpc(authorization).await {
            Ok(Some(claims)) => claims,
            // Checking is always on here (`admin_tokens`); were it off, nobody would get in.
            Ok(None) => return refuse("", tonic::Status::unauthenticated("administrators' tokens are not checked")),
            Err(status) => return refuse("", status),
        };
        let caller = TokenCaller { client_id: claims.client_id().unwrap_or_default().to_owned() };
        let denied = |why: String| refuse(&caller.client_id, tonic::Status::permission_denied(why));
        if !claims.has_scope(ADMIN_SCOPE) {
            return denied(format!("the token does not carry the scope {ADMIN_SCOPE}"));
        }
        if callers(path).is_some_and(|allowed| !allowed.contains(&Service::Admin)) {
            return denied(format!("an administrator's token may not call {path}"));
        }
        match self.still_admin(&caller.client_id).await {
            Ok(true) => {}
            Ok(false) => return denied("the token's client is no longer an administrator's".into()),
            Err(status) => return refuse(&caller.client_id, status),
        }
        tracing::info!(target: "audit", event = "grpc_admin_call", method = path, client_id = caller.client_id, peer,
            "an administrator's token called a gRPC method");
        Ok(caller)
    }

    /// Whether the client exists, is approved and its policy has the admin flag (cached for
    /// [`ADMIN_CHECK_TTL`]); UNAVAILABLE when the registry cannot say.
    async fn still_admin(&self, client_id: &str) -> Result<bool, tonic::Status> {
        let cached = self.admins.lock().unwrap_or_else(|p| p.into_inner()).get(client_id).copied();
        if let Some((_, admin)) = cached.filter(|(at, _)| at.elapsed() < ADMIN_CHECK_TTL) {
            return Ok(admin);
        }
        let get = |mut clients: ClientRegistryClient<GrpcChannel>| {
            let client_id = client_id.to_owned();
            async move { clients.get_client(GetClientRequest { client_id }).await }
        };
        let admin = match crate::grpc::idempotent(&self.clients, get).await {
            Ok(client) => {
                let client = client.into_inner();
                // Neither held for approval nor disabled: a disabled client's token stops at once.
                client.status == nmos_auth_proto::ClientStatus::Approved as i32
                    && client.policy.is_some_and(|p| p.admin)
            }
            Err(status) if status.code() == tonic::Code::NotFound => false,
            Err(status) => {
                tracing::warn!(error = status.message(), "the client registry cannot say who is an administrator");
                return Err(tonic::Status::unavailable("cannot check the token's client now; try again"));
            }
        };
        let mut admins = self.admins.lock().unwrap_or_else(|p| p.into_inner());
        admins.retain(|_, (at, _)| at.elapsed() < ADMIN_CHECK_TTL);
        admins.insert(client_id.to_owned(), (Instant::now(), admin));
        Ok(admin)
    }
}
