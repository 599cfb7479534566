//! How services reach each other. Every caller holds a gRPC client over a [`GrpcChannel`]:
//! either a real HTTP/2 connection (`connect`), or, inside one process, the callee's tonic
//! server itself (`in_process`), which keeps the protobuf encoding and the generated service
//! code but skips the sockets, the HTTP/2 framing and the thread hand-offs.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::transport::Endpoint;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

/// The transport under every internal gRPC client. (A concrete error type, not a boxed
/// one: boxed errors trip the compiler's `Send` inference in the axum handlers.)
pub type GrpcChannel = BoxCloneSyncService<Request<Body>, Response<Body>, tonic::transport::Error>;

/// A long-lived HTTP/2 channel to a service, with a deadline on every call.
pub fn connect(addr: SocketAddr) -> anyhow::Result<GrpcChannel> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect_lazy();
    Ok(BoxCloneSyncService::new(channel))
}

/// A long-lived HTTP/2 channel to a service at `url` (`https://keys:50051`, or `host:port`),
/// over mutual TLS when `tls` is given, with a deadline on every call. The connection is made
/// on first use and re-made after a failure, so a peer that starts later or restarts is
/// reached without a restart here.
pub fn connect_url(url: &str, tls: Option<tonic::transport::ClientTlsConfig>) -> anyhow::Result<GrpcChannel> {
    let url = if url.contains("://") {
        url.to_owned()
    } else {
        format!("{}://{url}", if tls.is_some() { "https" } else { "http" })
    };
    let mut endpoint = Endpoint::from_shared(url.clone())
        .with_context(|| format!("{url:?} is not a gRPC URL"))?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).with_context(|| format!("TLS for {url}"))?;
    }
    Ok(BoxCloneSyncService::new(endpoint.connect_lazy()))
}

/// A channel that hands each call straight to a tonic server in this process.
pub fn in_process<S>(server: S) -> GrpcChannel
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    BoxCloneSyncService::new(server.map_err(|never| match never {}))
}
