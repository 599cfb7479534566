//! `nmos-auth serve`: every service in one process. Each service gets its own gRPC server on
//! a loopback port, and services reach each other only through gRPC clients, exactly as
//! they do when they run as separate processes.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nmos_auth_client_registry::ClientRegistryService;
use nmos_auth_core::Config;
use nmos_auth_identity::IdentityService;
use nmos_auth_keys::KeysService;
use nmos_auth_proto::client_registry_client::ClientRegistryClient;
use nmos_auth_proto::keys_client::KeysClient;
use nmos_auth_proto::token_issuer_client::TokenIssuerClient;
use nmos_auth_token_issuer::{Peers, TokenIssuerService};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::{Channel, Endpoint};

/// The loopback addresses of the internal gRPC services.
#[derive(Clone, Copy, Debug)]
pub struct GrpcAddrs {
    pub keys: SocketAddr,
    pub identity: SocketAddr,
    pub clients: SocketAddr,
    pub token_issuer: SocketAddr,
}

/// A running one-process server.
pub struct Server {
    /// The gateway's listen address.
    pub addr: SocketAddr,
    /// The services, for admin commands and tests in the same process.
    pub identity: Arc<IdentityService>,
    pub clients: Arc<ClientRegistryService>,
    pub token_issuer: Arc<TokenIssuerService>,
    /// Where each internal gRPC service listens (loopback).
    pub grpc: GrpcAddrs,
    stop: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    // A dropped sender also means stop.
    let _ = rx.wait_for(|stop| *stop).await;
}

/// A long-lived HTTP/2 channel to a service, with a deadline on every call.
fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect_lazy())
}

/// Serves one gRPC service on a fresh loopback port until the stop signal.
fn spawn_grpc(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    stop: &watch::Receiver<bool>,
    router: tonic::transport::server::Router,
) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(
        tokio::net::TcpListener::from_std(listener)?,
    );
    let stop = stopped(stop.clone());
    tasks.spawn(async move {
        router.serve_with_incoming_shutdown(incoming, stop).await?;
        Ok(())
    });
    Ok(addr)
}

/// Prepares the data directory: created if missing, private to this user.
fn prepare_data_dir(config: &Config) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = &config.data_dir;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
    } else if std::fs::metadata(dir)?.permissions().mode() & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), "the data directory is accessible to other users; chmod 700 it");
    }
    Ok(())
}

/// Opens every service's store (running migrations) in the order they depend on each other.
pub async fn open_services(
    config: &Config,
) -> anyhow::Result<(
    Arc<KeysService>,
    Arc<IdentityService>,
    Arc<ClientRegistryService>,
)> {
    config.validate()?;
    prepare_data_dir(config)?;
    let keys = Arc::new(KeysService::open(config).await.context("keys service")?);
    let identity = Arc::new(
        IdentityService::open(config)
            .await
            .context("identity service")?,
    );
    let clients = Arc::new(
        ClientRegistryService::open(config)
            .await
            .context("client registry")?,
    );
    Ok((keys, identity, clients))
}

impl Server {
    /// Starts every service; the gateway serves on `listener`.
    pub async fn start(config: Config, listener: std::net::TcpListener) -> anyhow::Result<Server> {
        let (keys, identity, clients) = open_services(&config).await?;
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();

        let server = || tonic::transport::Server::builder().tcp_nodelay(true);

        let keys_addr = spawn_grpc(
            &mut tasks,
            &stop_rx,
            server().add_service(keys.into_server()),
        )?;
        let identity_addr = spawn_grpc(
            &mut tasks,
            &stop_rx,
            server().add_service(identity.clone().into_server()),
        )?;
        let clients_addr = spawn_grpc(
            &mut tasks,
            &stop_rx,
            server().add_service(clients.clone().into_server()),
        )?;
        tracing::debug!(%keys_addr, %identity_addr, %clients_addr, "internal gRPC services listening on loopback");

        let peers = Peers {
            clients: ClientRegistryClient::new(channel(clients_addr)?),
            keys: KeysClient::new(channel(keys_addr)?),
        };
        let token_issuer = Arc::new(
            TokenIssuerService::open(&config, peers.clone())
                .await
                .context("token issuer")?,
        );
        let issuer_addr = spawn_grpc(
            &mut tasks,
            &stop_rx,
            server().add_service(token_issuer.clone().into_server()),
        )?;

        let gateway = nmos_auth_gateway::Gateway::new(
            &config,
            TokenIssuerClient::new(channel(issuer_addr)?),
            peers.clients,
            peers.keys,
        )?;
        let router = nmos_auth_gateway::router(gateway, config.max_body_bytes);
        let addr = listener.local_addr()?;
        let rx = stop_rx.clone();
        tasks.spawn(async move {
            nmos_auth_gateway::serve(&config, router, listener, stopped(rx)).await
        });
        let grpc = GrpcAddrs {
            keys: keys_addr,
            identity: identity_addr,
            clients: clients_addr,
            token_issuer: issuer_addr,
        };
        Ok(Server {
            addr,
            identity,
            clients,
            token_issuer,
            grpc,
            stop,
            tasks,
        })
    }

    /// Waits until a service stops (an error) or the server is shut down.
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        while let Some(result) = self.tasks.join_next().await {
            result??;
            if !*self.stop.borrow() {
                anyhow::bail!("a service stopped unexpectedly");
            }
        }
        Ok(())
    }

    /// Stops accepting work, lets in-flight requests finish, and waits for every service.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.wait().await
    }
}
