//! How an operator's tool (`nmos-auth admin`) reaches the services that own the data. Every
//! administrative operation is an RPC of the owning service, checked there; the tool is a gRPC
//! client of those RPCs, over one of three paths:
//!
//! - the split deployment (the config names the services' URLs) with a certificate given
//!   (`--grpc-cert`, `--grpc-key`: the `admin` one of the internal CA): mutual TLS;
//! - a running `serve`: its admin socket (`admin.sock` in the data directory, mode 0600), so
//!   that a change goes through the running services and applies at once;
//! - otherwise (nothing running; a container of the split deployment entered without the
//!   admin certificate; or services on plain-text gRPC, where no caller can be told from
//!   another and so none is an operator): the stores opened in this process, behind the same
//!   services. Running services then see a change to a client within a second (their caches),
//!   and opening the keys store needs the key-encryption key.
//!
//! On the last two the caller is a local operator (whoever can read the data directory or the
//! database, which hold the keys anyway).
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use nmos_auth_client_registry::ClientRegistryService;
use nmos_auth_core::Config;
use nmos_auth_core::grpc::{self, GrpcChannel};
use nmos_auth_core::mtls::{InternalTls, Service};
use nmos_auth_core::operator::LocalOperatorLayer;
use nmos_auth_identity::IdentityService;
use nmos_auth_keys::KeysService;
use nmos_auth_proto::client_registry_client::ClientRegistryClient;
use nmos_auth_proto::identity_client::IdentityClient;
use nmos_auth_proto::keys_client::KeysClient;
use nmos_auth_proto::token_issuer_client::TokenIssuerClient;
use nmos_auth_token_issuer::{Peers, TokenIssuerService};
use tower::Layer;

/// The services' administrative clients.
pub struct Operators {
    pub identity: IdentityClient<GrpcChannel>,
    pub clients: ClientRegistryClient<GrpcChannel>,
    /// Only when asked for: opening the keys store in-process needs the key-encryption key.
    pub keys: Option<KeysClient<GrpcChannel>>,
    /// Only when asked for (a client's refresh tokens); opened in-process, it needs the keys
    /// as a peer.
    pub token_issuer: Option<TokenIssuerClient<GrpcChannel>>,
}

/// A channel to `server` in this process, whose calls are a local operator's.
fn local<S>(server: S) -> GrpcChannel
where
    S: tower::Service<
            tonic::codegen::http::Request<tonic::body::Body>,
            Response = tonic::codegen::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    grpc::in_process(LocalOperatorLayer.layer(server))
}

/// `serve`'s admin socket in the data directory.
pub fn admin_socket(config: &Config) -> PathBuf {
    config.data_dir.join("admin.sock")
}

/// Whether the config describes the split deployment (where the services are).
fn split(config: &Config) -> bool {
    config.keys_url.is_some()
        || config.identity_url.is_some()
        || config.client_registry_url.is_some()
        || config.token_issuer_url.is_some()
}

/// Which services a command needs beyond identity and the client registry (opening them
/// in-process needs more: the key-encryption key for the keys; the keys, as a peer, for the
/// token issuer).
#[derive(Clone, Copy, Debug, Default)]
pub struct Needs {
    pub keys: bool,
    pub token_issuer: bool,
}

/// The operator's clients, by the first path that applies (see the module's documentation).
pub async fn connect(config: &Config, needs: Needs) -> anyhow::Result<Operators> {
    if split(config) && config.grpc_cert.is_some() {
        let tls = InternalTls::from_config(config)?;
        let channel = |url: &Option<String>, key: &str, service: Service| {
            let url = url
                .as_deref()
                .with_context(|| format!("{key} is not set: where is the {} service?", service.name()))?;
            grpc::connect_url(url, tls.as_ref().map(|t| t.client(service)))
        };
        let keys = needs.keys.then(|| channel(&config.keys_url, "keys_url", Service::Keys)).transpose()?;
        let token_issuer = needs
            .token_issuer
            .then(|| channel(&config.token_issuer_url, "token_issuer_url", Service::TokenIssuer))
            .transpose()?;
        return Ok(Operators {
            identity: IdentityClient::new(channel(&config.identity_url, "identity_url", Service::Identity)?),
            clients: ClientRegistryClient::new(channel(
                &config.client_registry_url,
                "client_registry_url",
                Service::ClientRegistry,
            )?),
            keys: keys.map(KeysClient::new),
            token_issuer: token_issuer.map(TokenIssuerClient::new),
        });
    }
    if let Some(channel) = grpc::connect_unix(&admin_socket(config)).await {
        return Ok(Operators {
            identity: IdentityClient::new(channel.clone()),
            clients: ClientRegistryClient::new(channel.clone()),
            keys: Some(KeysClient::new(channel.clone())),
            token_issuer: Some(TokenIssuerClient::new(channel)),
        });
    }
    if split(config) && config.grpc_plaintext {
        eprintln!(
            "nmos-auth: the services' gRPC is plain text, where no caller is an operator: working on the stores \
             directly"
        );
    } else if split(config) {
        eprintln!(
            "nmos-auth: no --grpc-cert: working on the stores directly (give the admin certificate to go through \
             the services)"
        );
    }
    config.validate()?;
    crate::prepare_data_dir(config)?;
    let identity = Arc::new(IdentityService::open(config).await.context("identity store")?);
    let clients = Arc::new(ClientRegistryService::open(config).await.context("client registry")?);
    let identity = IdentityClient::new(local(identity.into_server()));
    let clients = ClientRegistryClient::new(local(clients.into_server()));
    if !needs.keys && !needs.token_issuer {
        return Ok(Operators { identity, clients, keys: None, token_issuer: None });
    }
    let keys = Arc::new(KeysService::open(config).await.context("keys store")?);
    let keys = KeysClient::new(local(keys.into_server()));
    let token_issuer = match needs.token_issuer {
        true => {
            let peers = Peers { clients: clients.clone(), keys: keys.clone(), identity: identity.clone() };
            let issuer = Arc::new(TokenIssuerService::open(config, peers).await.context("token store")?);
            Some(TokenIssuerClient::new(local(issuer.into_server())))
        }
        false => None,
    };
    Ok(Operators { identity, clients, keys: Some(keys), token_issuer })
}
