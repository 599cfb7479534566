//! `nmos-auth serve`: every service in one process. Each service gets its own gRPC server on
//! a loopback port, and services reach each other only through gRPC clients, exactly as
//! they do when they run as separate processes.
#![forbid(unsafe_code)]

pub mod assembly;
pub mod devca;
pub mod operators;
pub mod split;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use nmos_auth_client_registry::ClientRegistryService;
use nmos_auth_core::Config;
use nmos_auth_core::config::InternalTransport;
use nmos_auth_core::grpc::{self, GrpcChannel};
use nmos_auth_identity::IdentityService;
use nmos_auth_keys::KeysService;
use nmos_auth_proto::client_registry_client::ClientRegistryClient;
use nmos_auth_proto::identity_client::IdentityClient;
use nmos_auth_proto::keys_client::KeysClient;
use nmos_auth_proto::token_issuer_client::TokenIssuerClient;
use nmos_auth_token_issuer::{Peers, TokenIssuerService};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;

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
    /// Where each internal gRPC service listens, with the loopback transport.
    pub grpc: Option<GrpcAddrs>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
}

/// The Prometheus endpoint (`GET /metrics`) when `metrics_listen` is set: bound now, so that a
/// port in use stops the start, and served by the future returned until `shutdown`.
pub fn metrics_endpoint(
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Option<impl Future<Output = anyhow::Result<()>> + Send + 'static>> {
    use axum::http::header::CONTENT_TYPE;
    let Some(addr) = config.metrics_listen else {
        return Ok(None);
    };
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr} (metrics_listen)"))?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tracing::info!(addr = %listener.local_addr()?, "serving Prometheus metrics at /metrics");
    let scrape =
        || async { ([(CONTENT_TYPE, nmos_auth_core::metrics::CONTENT_TYPE)], nmos_auth_core::metrics::render().await) };
    let router = axum::Router::new().route("/metrics", axum::routing::get(scrape));
    Ok(Some(
        async move { axum::serve(listener, router).with_graceful_shutdown(shutdown).await.context("serving metrics") },
    ))
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    // A dropped sender also means stop.
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Serves one gRPC service on a fresh loopback port until the stop signal.
fn spawn_grpc(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    stop: &watch::Receiver<bool>,
    router: tonic::transport::server::Router<
        tower::layer::util::Stack<grpc::ServerTelemetryLayer, tower::layer::util::Identity>,
    >,
) -> anyhow::Result<SocketAddr> {
    let incoming = TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?.with_nodelay(Some(true));
    let addr = incoming.local_addr()?;
    let stop = stopped(stop.clone());
    tasks.spawn(async move {
        router.serve_with_incoming_shutdown(incoming, stop).await?;
        Ok(())
    });
    Ok(addr)
}

/// Prepares the data directory: created if missing, private to this user.
pub fn prepare_data_dir(config: &Config) -> anyhow::Result<()> {
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

/// Serves the administrative services on the admin socket (`operators::admin_socket`, mode
/// 0600 in the private data directory) until the stop signal, for `nmos-auth admin` on this
/// machine: its changes then go through the running services (a client's policy applies to its
/// next token, not a cache period later). Callers there are local operators.
fn serve_admin_socket(
    config: &Config,
    identity: &Arc<IdentityService>,
    clients: &Arc<ClientRegistryService>,
    keys: &Arc<KeysService>,
    token_issuer: &Arc<TokenIssuerService>,
    tasks: &mut JoinSet<anyhow::Result<()>>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = operators::admin_socket(config);
    // One left by a process that is gone (a running one on the same data would be a mistake).
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let router = tonic::transport::Server::builder()
        .layer(nmos_auth_core::operator::LocalOperatorLayer)
        .layer(grpc::ServerTelemetryLayer)
        .add_service(identity.clone().into_server())
        .add_service(clients.clone().into_server())
        .add_service(keys.clone().into_server())
        .add_service(token_issuer.clone().into_server());
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let stop = stopped(stop.clone());
    tasks.spawn(async move {
        let served = router.serve_with_incoming_shutdown(incoming, stop).await;
        let _ = std::fs::remove_file(&path);
        Ok(served?)
    });
    Ok(())
}

/// Keeps `nmos_auth_dependency_up{dependency="database"}` up to date: 1 while every service's
/// database answers (split processes do the same for their own database).
fn watch_databases(databases: Arc<Vec<(&'static str, nmos_auth_core::db::Db)>>, stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let watching = async {
            loop {
                let mut up = true;
                for (_, db) in databases.iter() {
                    up &= db.ping().await.is_ok();
                }
                nmos_auth_core::telemetry::dependency_up("database", up);
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        };
        tokio::select! {
            () = watching => {}
            () = stopped(stop) => {}
        }
    });
}

/// Opens every service's store (running migrations) in the order they depend on each other.
pub async fn open_services(
    config: &Config,
) -> anyhow::Result<(Arc<KeysService>, Arc<IdentityService>, Arc<ClientRegistryService>)> {
    config.validate()?;
    prepare_data_dir(config)?;
    let keys = Arc::new(KeysService::open(config).await.context("keys service")?);
    let identity = Arc::new(IdentityService::open(config).await.context("identity service")?);
    let clients = Arc::new(ClientRegistryService::open(config).await.context("client registry")?);
    Ok((keys, identity, clients))
}

/// Connects the services according to the configured internal transport.
struct Wiring<'a> {
    transport: InternalTransport,
    tasks: &'a mut JoinSet<anyhow::Result<()>>,
    stop: &'a watch::Receiver<bool>,
}

impl Wiring<'_> {
    /// A channel to `server`, and its loopback address when it has one.
    fn expose<S>(&mut self, server: S) -> anyhow::Result<(GrpcChannel, Option<SocketAddr>)>
    where
        S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        match self.transport {
            InternalTransport::InProcess => Ok((grpc::in_process(server), None)),
            InternalTransport::Loopback => {
                let router = tonic::transport::Server::builder().layer(grpc::ServerTelemetryLayer).add_service(server);
                let addr = spawn_grpc(self.tasks, self.stop, router)?;
                Ok((grpc::connect(addr)?, Some(addr)))
            }
        }
    }
}

impl Server {
    /// Starts every service; the gateway serves on `listener`.
    pub async fn start(config: Config, listener: std::net::TcpListener) -> anyhow::Result<Server> {
        config.validate()?;
        prepare_data_dir(&config)?;
        let keys = assembly::keys(&config).await?;
        let identity = assembly::identity(&config).await?;
        let clients = assembly::client_registry(&config).await?;
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        if let Some(metrics) = metrics_endpoint(&config, stopped(stop_rx.clone()))? {
            tasks.spawn(metrics);
        }
        let mut wiring = Wiring { transport: config.internal_transport, tasks: &mut tasks, stop: &stop_rx };
        let (keys_channel, keys_addr) = wiring.expose(keys.clone().into_server())?;
        let (identity_channel, identity_addr) = wiring.expose(identity.clone().into_server())?;
        let (clients_channel, clients_addr) = wiring.expose(clients.clone().into_server())?;
        let peers = Peers {
            clients: ClientRegistryClient::new(clients_channel),
            keys: KeysClient::new(keys_channel),
            identity: IdentityClient::new(identity_channel),
        };
        let token_issuer = assembly::token_issuer(&config, peers.clone()).await?;
        let (issuer_channel, issuer_addr) = wiring.expose(token_issuer.clone().into_server())?;
        serve_admin_socket(&config, &identity, &clients, &keys, &token_issuer, &mut tasks, &stop_rx)?;

        // Ready while every service's database answers (the services themselves are in here).
        let mut databases = Vec::new();
        for (name, db) in
            [("keys", "keys"), ("identity", "identity"), ("client-registry", "clients"), ("token-issuer", "tokens")]
        {
            databases.push((name, nmos_auth_core::db::Db::connect(&config.database_url(db)).await?));
        }
        let databases = Arc::new(databases);
        watch_databases(databases.clone(), stop_rx.clone());
        let gateway = nmos_auth_gateway::Gateway::new(
            &config,
            TokenIssuerClient::new(issuer_channel),
            peers.clients,
            peers.keys,
            peers.identity,
        )?
        .with_readiness(Arc::new(move || {
            let databases = databases.clone();
            Box::pin(async move {
                let mut checks = Vec::new();
                for (name, db) in databases.iter() {
                    checks.push(nmos_auth_gateway::Check { name, up: db.ping().await.is_ok(), own: true });
                }
                checks
            })
        }));
        let router = nmos_auth_gateway::router(gateway, config.max_body_bytes);
        let addr = listener.local_addr()?;
        let rx = stop_rx.clone();
        tasks.spawn(async move { nmos_auth_gateway::serve(&config, router, listener, stopped(rx)).await });
        let grpc = match (keys_addr, identity_addr, clients_addr, issuer_addr) {
            (Some(keys), Some(identity), Some(clients), Some(token_issuer)) => {
                Some(GrpcAddrs { keys, identity, clients, token_issuer })
            }
            _ => None,
        };
        Ok(Server { addr, identity, clients, token_issuer, grpc, stop, tasks })
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
