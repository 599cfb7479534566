//! The split deployment: each service in its own process (`nmos-auth keys`, `identity`,
//! `client-registry`, `token-issuer`, `gateway`), reaching the others over gRPC with mutual TLS,
//! from the same config file and environment names as `nmos-auth serve`.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nmos_auth_client_registry::ClientRegistryService;
use nmos_auth_core::Config;

use crate::assembly;
use nmos_auth_core::bearer::AdminTokens;
use nmos_auth_core::db::Db;
use nmos_auth_core::grpc::{self, GrpcChannel};
use nmos_auth_core::mtls::{AuthorizeLayer, InternalTls, Service};
use nmos_auth_gateway::Check;
use nmos_auth_identity::IdentityService;
use nmos_auth_keys::KeysService;
use nmos_auth_proto::client_registry_client::ClientRegistryClient;
use nmos_auth_proto::client_registry_server::ClientRegistryServer;
use nmos_auth_proto::identity_client::IdentityClient;
use nmos_auth_proto::identity_server::IdentityServer;
use nmos_auth_proto::keys_client::KeysClient;
use nmos_auth_proto::keys_server::KeysServer;
use nmos_auth_proto::token_issuer_client::TokenIssuerClient;
use nmos_auth_proto::token_issuer_server::TokenIssuerServer;
use nmos_auth_token_issuer::{Peers, TokenIssuerService};
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::server::HealthReporter;

/// Which part of the system this process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Keys,
    Identity,
    ClientRegistry,
    TokenIssuer,
    Gateway,
}

impl Role {
    fn service(self) -> Service {
        match self {
            Role::Keys => Service::Keys,
            Role::Identity => Service::Identity,
            Role::ClientRegistry => Service::ClientRegistry,
            Role::TokenIssuer => Service::TokenIssuer,
            Role::Gateway => Service::Gateway,
        }
    }
}

/// A peer service: its gRPC service name and a channel to it.
#[derive(Clone)]
struct Peer {
    grpc_name: &'static str,
    channel: GrpcChannel,
}

impl Peer {
    /// Whether the peer reports itself serving (grpc.health.v1), within a second.
    async fn serving(&self) -> bool {
        let mut health = HealthClient::new(self.channel.clone());
        let check = health.check(HealthCheckRequest { service: self.grpc_name.to_owned() });
        matches!(
            tokio::time::timeout(Duration::from_secs(1), check).await,
            Ok(Ok(reply)) if reply.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        )
    }
}

fn connect_peer(
    config: &Config,
    tls: Option<&InternalTls>,
    service: Service,
    grpc_name: &'static str,
) -> anyhow::Result<Peer> {
    let (url, key) = match service {
        Service::Keys => (&config.keys_url, "keys_url"),
        Service::Identity => (&config.identity_url, "identity_url"),
        Service::ClientRegistry => (&config.client_registry_url, "client_registry_url"),
        Service::TokenIssuer => (&config.token_issuer_url, "token_issuer_url"),
        Service::Gateway | Service::Admin => anyhow::bail!("{} serves no gRPC", service.name()),
    };
    let url = url.as_deref().with_context(|| format!("{key} is not set: where is the {} service?", service.name()))?;
    Ok(Peer { grpc_name, channel: grpc::connect_url(url, tls.map(|t| t.client(service)))? })
}

/// The checker of administrators' bearer tokens, when they are accepted: with mutual TLS (without
/// it nothing is checked), `grpc_admin_tokens` on, `keys` (a channel to the keys service, where
/// the keys that sign them are) and `clients` (to the client registry, which says whether a
/// token's client is still an administrator's).
fn admin_tokens(
    config: &Config,
    tls: Option<&InternalTls>,
    keys: Option<GrpcChannel>,
    clients: Option<GrpcChannel>,
) -> anyhow::Result<Option<Arc<AdminTokens>>> {
    if tls.is_none() || !config.grpc_admin_tokens {
        return Ok(None);
    }
    match (keys, clients) {
        (Some(keys), Some(clients)) => Ok(Some(Arc::new(nmos_auth_core::bearer::admin_tokens(config, keys, clients)?))),
        _ => {
            tracing::warn!(
                "grpc_admin_tokens needs keys_url and client_registry_url: administrators' tokens are refused, \
                 callers need a certificate"
            );
            Ok(None)
        }
    }
}

/// A channel to the keys service or the client registry if its URL is set (for services that
/// need it only to check administrators' tokens).
fn optional_peer(config: &Config, tls: Option<&InternalTls>, service: Service) -> anyhow::Result<Option<GrpcChannel>> {
    let (set, name) = match service {
        Service::Keys => (config.keys_url.is_some(), KeysServer::<KeysService>::NAME),
        Service::ClientRegistry => {
            (config.client_registry_url.is_some(), ClientRegistryServer::<ClientRegistryService>::NAME)
        }
        _ => (false, ""),
    };
    if !set {
        return Ok(None);
    }
    Ok(Some(connect_peer(config, tls, service, name)?.channel))
}

/// Keeps this process's health up to date, by the rule that health never cascades (ARCHITECTURE.md,
/// "Health"). Liveness ([`nmos_auth_core::LIVENESS`]) is serving for as long as the process
/// runs. Readiness (`""` and `grpc_name`) is serving while the process's own database answers.
/// The peers it calls are watched too, but only for the log and the
/// `nmos_auth.dependency.up` metric: while one is down the requests that need it are answered
/// 503, and the rest (client_credentials tokens without identity, say) are still served, so
/// a peer's outage must not take this process out of service.
fn monitor_health(reporter: HealthReporter, grpc_name: &'static str, db: Option<Db>, peers: Vec<Peer>) {
    tokio::spawn(async move {
        reporter.set_service_status(nmos_auth_core::LIVENESS, ServingStatus::Serving).await;
        let mut last = None;
        let mut peers_up: Vec<Option<bool>> = vec![None; peers.len()];
        loop {
            let ready = match &db {
                Some(db) => db.ping().await.is_ok(),
                None => true,
            };
            nmos_auth_core::telemetry::dependency_up("database", ready);
            if last != Some(ready) {
                if ready {
                    tracing::info!(service = grpc_name, "ready");
                } else {
                    tracing::warn!(service = grpc_name, "not ready: its database does not answer");
                }
                let status = if ready { ServingStatus::Serving } else { ServingStatus::NotServing };
                reporter.set_service_status(grpc_name, status).await;
                reporter.set_service_status("", status).await;
                last = Some(ready);
            }
            let mut asked = tokio::task::JoinSet::new();
            for (i, peer) in peers.iter().enumerate() {
                let peer = peer.clone();
                asked.spawn(async move { (i, peer.serving().await) });
            }
            let mut answers = asked.join_all().await;
            answers.sort_by_key(|(i, _)| *i);
            for ((peer, was), (_, up)) in peers.iter().zip(peers_up.iter_mut()).zip(answers) {
                nmos_auth_core::telemetry::dependency_up(peer.grpc_name, up);
                match (*was, up) {
                    (Some(false), true) => tracing::info!(peer = peer.grpc_name, "a peer answers again"),
                    (Some(true) | None, false) => {
                        tracing::warn!(peer = peer.grpc_name, "a peer does not answer: requests that need it get 503")
                    }
                    _ => {}
                }
                *was = Some(up);
            }
            // While not ready, look again soon: readiness returns within half a second of the database.
            tokio::time::sleep(Duration::from_millis(if ready { 2000 } else { 500 })).await;
        }
    });
}

/// Asks each peer whether it is ready, every second, all at once, and keeps the answers in `seen`.
fn watch_peers(peers: Vec<(&'static str, Peer)>, seen: Arc<std::sync::RwLock<Vec<Check>>>) {
    tokio::spawn(async move {
        loop {
            let mut asked = tokio::task::JoinSet::new();
            for (i, (_, peer)) in peers.iter().enumerate() {
                let peer = peer.clone();
                asked.spawn(async move { (i, peer.serving().await) });
            }
            for (i, up) in asked.join_all().await {
                nmos_auth_core::telemetry::dependency_up(peers[i].1.grpc_name, up);
                if let Some(check) = seen.write().unwrap_or_else(|p| p.into_inner()).get_mut(i) {
                    check.up = up;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// Serves one service with health checking and reflection on `grpc_listen` (mutual TLS unless
/// `grpc_plaintext`; administrators' bearer tokens too when `tokens` is given), and health
/// alone in plain text on `health_listen` when set.
async fn serve_grpc<S>(
    config: &Config,
    tls: Option<&InternalTls>,
    tokens: Option<Arc<AdminTokens>>,
    service: S,
    health: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()>
where
    S: tower::Service<
            tonic::codegen::http::Request<tonic::body::Body>,
            Response = tonic::codegen::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(nmos_auth_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    if let Some(addr) = config.health_listen {
        let incoming = TcpIncoming::bind(addr).map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))?;
        let router = tonic::transport::Server::builder().add_service(health.clone());
        tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped(stop_rx.clone())));
    }
    // Without TLS nothing says who calls (anyone could call Keys.Sign): loopback only.
    if tls.is_none() && !config.grpc_listen.ip().is_loopback() {
        anyhow::bail!(
            "grpc_plaintext serves gRPC without authentication: grpc_listen must then be a loopback address, not {}",
            config.grpc_listen
        );
    }
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls.server(tokens.is_some())).context("the gRPC server's TLS settings")?;
    }
    let mut authorize = AuthorizeLayer::new(tls.is_some());
    if let Some(tokens) = tokens {
        authorize = authorize.with_tokens(tokens);
    }
    let incoming = TcpIncoming::bind(config.grpc_listen)
        .map_err(|e| anyhow::anyhow!("binding {}: {e}", config.grpc_listen))?
        .with_nodelay(Some(true));
    tracing::info!(addr = %config.grpc_listen, service = S::NAME, mutual_tls = tls.is_some(), "serving gRPC");
    builder
        .layer(authorize)
        .layer(grpc::ServerTelemetryLayer)
        .add_service(health)
        .add_service(reflection)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, stopped(stop_rx))
        .await?;
    Ok(())
}

/// Runs `role` until `shutdown` completes; in-flight calls are then allowed to finish.
pub async fn run(
    role: Role,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    // Key files (the key-encryption key, the cookie key) live there even with Postgres.
    crate::prepare_data_dir(&config)?;
    let tls = InternalTls::from_config(&config)?;
    let tls = tls.as_ref();
    let (reporter, health) = tonic_health::server::health_reporter();
    tracing::info!(service = role.service().name(), "starting");
    // Served until the process ends.
    if let Some(metrics) = crate::metrics_endpoint(&config, std::future::pending())? {
        tokio::spawn(async move {
            if let Err(e) = metrics.await {
                tracing::error!(error = %format!("{e:#}"), "the metrics endpoint stopped");
            }
        });
    }
    match role {
        Role::Keys => {
            let keys = assembly::keys(&config).await?;
            let db = Db::connect(&config.database_url("keys")).await?;
            let server = keys.into_server();
            let clients = optional_peer(&config, tls, Service::ClientRegistry)?;
            let tokens = admin_tokens(&config, tls, Some(grpc::in_process(server.clone())), clients)?;
            monitor_health(reporter, KeysServer::<KeysService>::NAME, Some(db), Vec::new());
            serve_grpc(&config, tls, tokens, server, health, shutdown).await
        }
        Role::Identity => {
            let identity = assembly::identity(&config).await?;
            let db = Db::connect(&config.database_url("identity")).await?;
            let keys = optional_peer(&config, tls, Service::Keys)?;
            let tokens = admin_tokens(&config, tls, keys, optional_peer(&config, tls, Service::ClientRegistry)?)?;
            monitor_health(reporter, IdentityServer::<IdentityService>::NAME, Some(db), Vec::new());
            serve_grpc(&config, tls, tokens, identity.into_server(), health, shutdown).await
        }
        Role::ClientRegistry => {
            let clients = assembly::client_registry(&config).await?;
            let db = Db::connect(&config.database_url("clients")).await?;
            let server = clients.into_server();
            let keys = optional_peer(&config, tls, Service::Keys)?;
            let tokens = admin_tokens(&config, tls, keys, Some(grpc::in_process(server.clone())))?;
            monitor_health(reporter, ClientRegistryServer::<ClientRegistryService>::NAME, Some(db), Vec::new());
            serve_grpc(&config, tls, tokens, server, health, shutdown).await
        }
        Role::TokenIssuer => {
            let keys = connect_peer(&config, tls, Service::Keys, KeysServer::<KeysService>::NAME)?;
            let clients = connect_peer(
                &config,
                tls,
                Service::ClientRegistry,
                ClientRegistryServer::<ClientRegistryService>::NAME,
            )?;
            let identity = connect_peer(&config, tls, Service::Identity, IdentityServer::<IdentityService>::NAME)?;
            let peers = Peers {
                clients: ClientRegistryClient::new(clients.channel.clone()),
                keys: KeysClient::new(keys.channel.clone()),
                identity: IdentityClient::new(identity.channel.clone()),
            };
            let issuer = assembly::token_issuer(&config, peers).await?;
            let db = Db::connect(&config.database_url("tokens")).await?;
            let tokens = admin_tokens(&config, tls, Some(keys.channel.clone()), Some(clients.channel.clone()))?;
            monitor_health(
                reporter,
                TokenIssuerServer::<TokenIssuerService>::NAME,
                Some(db),
                vec![keys, clients, identity],
            );
            serve_grpc(&config, tls, tokens, issuer.into_server(), health, shutdown).await
        }
        Role::Gateway => {
            let peers = [
                (Service::TokenIssuer, TokenIssuerServer::<TokenIssuerService>::NAME),
                (Service::ClientRegistry, ClientRegistryServer::<ClientRegistryService>::NAME),
                (Service::Keys, KeysServer::<KeysService>::NAME),
                (Service::Identity, IdentityServer::<IdentityService>::NAME),
            ]
            .into_iter()
            .map(|(service, name)| Ok((service.name(), connect_peer(&config, tls, service, name)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
            let channel = |i: usize| peers[i].1.channel.clone();
            let gateway = nmos_auth_gateway::Gateway::new(
                &config,
                TokenIssuerClient::new(channel(0)),
                ClientRegistryClient::new(channel(1)),
                KeysClient::new(channel(2)),
                IdentityClient::new(channel(3)),
            )?;
            // /readyz reports what a background task last saw, so that it answers at once
            // however slow a peer is (a probe with a short timeout must not fail for a peer).
            let seen: Vec<Check> = peers.iter().map(|(name, _)| Check { name, up: false, own: false }).collect();
            let seen = Arc::new(std::sync::RwLock::new(seen));
            watch_peers(peers, seen.clone());
            let gateway = gateway.with_readiness(Arc::new(move || {
                let checks = seen.read().unwrap_or_else(|p| p.into_inner()).clone();
                Box::pin(async move { checks })
            }));
            let listener =
                std::net::TcpListener::bind(config.listen).with_context(|| format!("binding {}", config.listen))?;
            tracing::info!(addr = %config.listen, issuer = %config.issuer()?, "the gateway is serving");
            let router = nmos_auth_gateway::router(gateway, config.max_body_bytes);
            nmos_auth_gateway::serve(&config, router, listener, shutdown).await
        }
    }
}
