//! How services reach each other. Every caller holds a gRPC client over a [`GrpcChannel`]:
//! either a real HTTP/2 connection (`connect`), or, inside one process, the callee's tonic
//! server itself (`in_process`), which keeps the protobuf encoding and the generated service
//! code but skips the sockets, the HTTP/2 framing and the thread hand-offs.
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tracing::Instrument;

use anyhow::Context;

use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::transport::Endpoint;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

/// The transport under every internal gRPC client. (A concrete error type, not a boxed
/// one: boxed errors trip the compiler's `Send` inference in the axum handlers.)
pub type GrpcChannel = BoxCloneSyncService<Request<Body>, Response<Body>, ChannelError>;

/// Why a call on a [`GrpcChannel`] failed below gRPC. What went wrong stays the error's source,
/// where tonic looks for it (a connection refused becomes UNAVAILABLE).
#[derive(Debug)]
pub enum ChannelError {
    /// The connection: refused, reset, timed out, a TLS handshake that failed.
    Transport(tonic::transport::Error),
    /// The request's own body could not be read (it is read whole to be sent again).
    Body(tonic::Status),
    /// The call's deadline passed while it could not be sent.
    TimedOut(tonic::TimeoutExpired),
    /// The peer could not be reached: a connection attempt made for another call timed out
    /// while this one waited for the same connection.
    Unreachable,
}

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChannelError::Transport(e) => write!(f, "transport error: {e}"),
            ChannelError::Body(status) => write!(f, "request body: {status}"),
            ChannelError::TimedOut(e) => write!(f, "{e}"),
            ChannelError::Unreachable => write!(f, "the peer could not be reached (a connection attempt timed out)"),
        }
    }
}

impl std::error::Error for ChannelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ChannelError::Transport(e) => Some(e),
            ChannelError::Body(status) => Some(status),
            ChannelError::TimedOut(e) => Some(e),
            ChannelError::Unreachable => None,
        }
    }
}

/// How long a caller waits for an internal call, at most. A service serving a call passes
/// what is left of that call's deadline on to the calls it makes ([`remaining`]), and every
/// callee is told its deadline (`grpc-timeout`, which tonic servers enforce), so that nobody
/// works on, or waits for, what the first caller has given up on.
pub const DEADLINE: Duration = Duration::from_secs(5);

tokio::task_local! {
    /// The deadline of the call this task is serving, from its caller's `grpc-timeout`.
    static CALL_DEADLINE: tokio::time::Instant;
}

/// What is left of the deadline of the call this task serves, or [`DEADLINE`] when it serves
/// none (an HTTP request at the gateway, a background task); never more than [`DEADLINE`].
pub fn remaining() -> Duration {
    let now = tokio::time::Instant::now();
    CALL_DEADLINE.try_with(|deadline| deadline.saturating_duration_since(now)).unwrap_or(DEADLINE).min(DEADLINE)
}

/// A `grpc-timeout` header value (gRPC over HTTP/2: at most 8 digits and a unit), as a duration.
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}
/// How long a caller waits for a connection to a peer, looking up its name and the TLS handshake
/// included (a peer that is down refuses at once; one cut off the network is silent, and on a
/// Docker network with no way out, the lookup of a name that has gone takes 20 s).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(800);

/// While calls are in flight on a connection and nothing has come from the peer for this long,
/// the caller pings it (HTTP/2 PING), and gives the connection up when no answer comes within
/// [`KEEP_ALIVE_TIMEOUT`]: a peer cut off the network (no reset, no answer, only silence) fails
/// the calls in flight within a second, rather than at their deadline, and the next call makes
/// a new connection. An idle connection is not pinged; a busy one is not either, its answers
/// are proof enough.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_millis(250);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_millis(600);

/// A long-lived HTTP/2 channel to a service, with a deadline on every call.
pub fn connect(addr: SocketAddr) -> anyhow::Result<GrpcChannel> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(DEADLINE)
        .tcp_nodelay(true)
        .connect_lazy();
    Ok(traced(ResendUnsent::new(channel, &RESEND_AFTER)))
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
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(DEADLINE)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).with_context(|| format!("TLS for {url}"))?;
    }
    // The connector of `connect_lazy`, given explicitly so that the connect timeout covers the
    // name lookup too (tonic applies it around the whole of a custom connector, but only around
    // the TCP connect of its own).
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    Ok(traced(ResendUnsent::new(endpoint.connect_with_connector_lazy(http), &RESEND_AFTER)))
}

/// When a call on `inner` (a network channel) resends a call that never reached its peer, and
/// how often: at most twice, after 50 ms and then 150 ms.
const RESEND_AFTER: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(150)];

/// Sends a call again when it failed before reaching its peer: the connection could not be
/// made (the peer is restarting), or tonic handed back the error of an earlier connection
/// attempt, which a lazy channel keeps for the next call when the call that started the
/// attempt is gone (a health check that timed out, say): the first token request after a
/// service started could fail on a peer that had been up for seconds. Nothing reached the
/// peer, so resending is safe for any call, idempotent or not. The request body (one small
/// protobuf message) is read whole first, so that it can be sent again.
///
/// A connection attempt that times out (the peer is cut off, or its name cannot be looked up)
/// fails every call then waiting for that connection at once, rather than leaving each to
/// start an attempt of its own in turn behind it, so that no call waits much more than
/// [`CONNECT_TIMEOUT`] for a peer that cannot be reached.
#[derive(Clone)]
struct ResendUnsent<S> {
    inner: S,
    /// When to send again ([`RESEND_AFTER`]).
    resend_after: &'static [Duration],
    /// Told when a connection attempt timed out.
    unreachable: std::sync::Arc<tokio::sync::Notify>,
}

impl<S> ResendUnsent<S> {
    fn new(inner: S, resend_after: &'static [Duration]) -> Self {
        ResendUnsent { inner, resend_after, unreachable: Default::default() }
    }
}

impl<S> tower::Service<Request<Body>> for ResendUnsent<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = tonic::transport::Error>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = ChannelError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, ChannelError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), ChannelError>> {
        self.inner.poll_ready(cx).map_err(ChannelError::Transport)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The service made ready goes with this call; a clone stays for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let resend_after = self.resend_after;
        let unreachable = self.unreachable.clone();
        let others_unreachable = self.unreachable.clone();
        // Connecting happens outside tonic's own timeout: the call's deadline bounds it all.
        let deadline = tokio::time::Instant::now() + remaining();
        let call = async move {
            let (parts, body) = request.into_parts();
            let body = http_body_util::BodyExt::collect(body).await.map_err(ChannelError::Body)?.to_bytes();
            let send = |parts| Request::from_parts(parts, Body::new(http_body_util::Full::new(body.clone())));
            let mut result = inner.call(send(parts.clone())).await;
            for &delay in resend_after {
                match &result {
                    Err(e) if never_sent(e) => {
                        tracing::debug!(error = %e, resend_in = ?delay, "resending a call that never reached its peer");
                        tokio::time::sleep(delay).await;
                        result = match inner.ready().await {
                            Ok(ready) => ready.call(send(parts.clone())).await,
                            Err(e) => Err(e),
                        };
                    }
                    _ => break,
                }
            }
            if let Err(e) = &result
                && connect_timed_out(e)
            {
                unreachable.notify_waiters();
            }
            result.map_err(ChannelError::Transport)
        };
        Box::pin(async move {
            let told = others_unreachable.notified();
            tokio::pin!(told);
            told.as_mut().enable();
            tokio::select! {
                biased;
                result = tokio::time::timeout_at(deadline, call) => match result {
                    Ok(result) => result,
                    Err(_) => Err(ChannelError::TimedOut(tonic::TimeoutExpired(()))),
                },
                () = told => Err(ChannelError::Unreachable),
            }
        })
    }
}

/// Whether a channel's error means the call was never sent because the connection was refused
/// or failed at once (the peer is restarting): worth sending again. A connection attempt that
/// timed out is not: the peer is unreachable, and another attempt would only make the caller
/// wait a second time.
fn never_sent(error: &tonic::transport::Error) -> bool {
    !connect_timed_out(error) && causes(error).any(|e| e.is::<tonic::ConnectError>())
}

/// Whether a connection attempt timed out ([`CONNECT_TIMEOUT`]).
fn connect_timed_out(error: &tonic::transport::Error) -> bool {
    causes(error)
        .any(|e| e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut))
}

/// An error and its sources, outermost first.
pub(crate) fn causes<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| e.source())
}

/// A channel over the Unix socket at `path` (`serve`'s admin socket), if a server answers
/// there; `None` when nobody listens (no socket, or one left by a process that is gone).
pub async fn connect_unix(path: &std::path::Path) -> Option<GrpcChannel> {
    if !path.exists() {
        return None;
    }
    let path = path.to_owned();
    let connector = tower::service_fn(move |_: tonic::codegen::http::Uri| {
        let path = path.clone();
        async move { Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
    });
    // The URI is a placeholder: the connector decides where the connection goes.
    let endpoint = Endpoint::from_static("http://admin.socket").connect_timeout(CONNECT_TIMEOUT).timeout(DEADLINE);
    let channel = endpoint.connect_with_connector(connector).await.ok()?;
    Some(traced(ResendUnsent::new(channel, &RESEND_AFTER)))
}

/// A channel that hands each call straight to a tonic server in this process.
pub fn in_process<S>(server: S) -> GrpcChannel
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    traced(ServerTelemetry { inner: server }.map_err(|never: Infallible| -> ChannelError { match never {} }))
}

/// Calls a read-only (idempotent) method of `client`, retrying at most twice, after 50 ms and
/// then 150 ms, when its connection broke at once during the call (reset, closed: the peer was
/// killed or the connection had gone stale), which may have reached the peer; a call that could not be
/// sent at all is sent again by the channel itself, whatever it is. A status the peer sent is
/// never retried, and neither is any call that changes state (registration, authentication with
/// its replay cache, token issue).
pub async fn idempotent<C, T, F, Fut>(client: &C, call: F) -> Result<T, tonic::Status>
where
    C: Clone,
    F: Fn(C) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let mut delay = Duration::from_millis(50);
    let mut attempt = 0;
    loop {
        let started = tokio::time::Instant::now();
        match call(client.clone()).await {
            // A connection that failed only after the peer had been silent for a keep-alive
            // round (cut off the network, not restarted) is not tried again: the caller gets its
            // answer (unavailable) now rather than after another connection attempt.
            Err(status) if attempt < 2 && connection_failed(&status) && started.elapsed() < KEEP_ALIVE_INTERVAL => {
                tracing::debug!(%status, retry_in = ?delay, "retrying an idempotent call");
                tokio::time::sleep(delay).await;
                delay *= 3;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// A connection that broke during the call: an error of the connection (the peer's own answers
/// have none), which is neither a connection that could not be made (the channel has sent the
/// call again already) nor the deadline.
fn connection_failed(status: &tonic::Status) -> bool {
    let Some(source) = std::error::Error::source(status) else { return false };
    if causes(source).any(|e| e.is::<tonic::ConnectError>() || e.is::<tonic::TimeoutExpired>()) {
        return false;
    }
    crate::OAuthError::from_status_detail(status).is_none()
}

/// A channel that carries the caller's trace context (W3C `traceparent`) and deadline
/// (`grpc-timeout`, unless the call set a shorter one) with every call.
fn traced<S>(channel: S) -> GrpcChannel
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = ChannelError> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    BoxCloneSyncService::new(channel.map_request(|mut request: Request<Body>| {
        crate::telemetry::inject_context(request.headers_mut());
        let headers = request.headers_mut();
        if !headers.contains_key("grpc-timeout")
            && let Ok(timeout) = format!("{}m", remaining().as_millis()).try_into()
        {
            headers.insert("grpc-timeout", timeout);
        }
        request
    }))
}

/// A tower layer for gRPC servers: each call's duration for the Prometheus metrics; and, when
/// telemetry is exported, a span per call served, continuing the caller's trace.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerTelemetryLayer;

impl<S> tower::Layer<S> for ServerTelemetryLayer {
    type Service = ServerTelemetry<S>;

    fn layer(&self, inner: S) -> ServerTelemetry<S> {
        ServerTelemetry { inner }
    }
}

/// The future of a call served through [`ServerTelemetry`].
pub type ServedFuture<E> = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

#[derive(Clone, Debug)]
pub struct ServerTelemetry<S> {
    inner: S,
}

impl<S> tower::Service<Request<Body>> for ServerTelemetry<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ServedFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The caller's deadline, for the calls this one makes in turn.
        let deadline = request
            .headers()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|timeout| tokio::time::Instant::now() + timeout.min(DEADLINE));
        let future = self.served(request);
        match deadline {
            // Enforced here as well as by tonic's server: a call handed straight to a service in
            // this process (`in_process`) meets no transport that would end it at its deadline.
            Some(deadline) => Box::pin(CALL_DEADLINE.scope(deadline, async move {
                match tokio::time::timeout_at(deadline, future).await {
                    Ok(response) => response,
                    Err(_) => {
                        Ok(tonic::Status::deadline_exceeded("the call's deadline passed before its answer").into_http())
                    }
                }
            })),
            None => future,
        }
    }
}

impl<S> ServerTelemetry<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    fn served(&mut self, request: Request<Body>) -> ServedFuture<S::Error> {
        let started = std::time::Instant::now();
        let path = request.uri().path().trim_start_matches('/').to_owned();
        // A span only when telemetry is exported; the duration always.
        let span = if crate::telemetry::enabled() {
            let (service, method) = service_and_method(&path);
            let span = tracing::debug_span!(
                "grpc.server",
                otel.name = %path,
                otel.kind = "server",
                rpc.system = "grpc",
                rpc.service = %service,
                rpc.method = %method,
            );
            crate::telemetry::continue_trace(&span, request.headers());
            span
        } else {
            tracing::Span::none()
        };
        let future = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                let response = future.await;
                let (service, method) = service_and_method(&path);
                crate::telemetry::rpc_served(service, method, started.elapsed());
                response
            }
            .instrument(span),
        )
    }
}

/// `package.Service` and `Method` of a gRPC path (without its leading slash).
fn service_and_method(path: &str) -> (&str, &str) {
    path.split_once('/').unwrap_or((path, ""))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn deadlines_pass_from_call_to_call() {
        assert_eq!(parse_grpc_timeout("5000m"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        for bad in ["", "m", "123456789m", "5x", "-5m", "5.0S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            assert_eq!(remaining(), DEADLINE, "serving no call: the whole deadline");
            let soon = tokio::time::Instant::now() + Duration::from_millis(1500);
            let left = CALL_DEADLINE.scope(soon, async { remaining() }).await;
            assert!(left <= Duration::from_millis(1500) && left > Duration::from_millis(1000), "{left:?}");
            let later = tokio::time::Instant::now() + Duration::from_secs(60);
            assert_eq!(CALL_DEADLINE.scope(later, async { remaining() }).await, DEADLINE, "never more");
        });
    }

    /// A call to a peer that is not listening yet (starting, restarting) never reaches it: it
    /// is sent again, and served once the peer is up. Any call, idempotent or not.
    #[tokio::test]
    async fn a_call_that_never_reached_its_peer_is_sent_again() {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_client::HealthClient;
        // The port is ours (bound) but refuses connections (not listening) until the peer starts.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        let channel = Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
        // The channel reports its first refused connection, and only then does the peer start.
        let refused = std::sync::Arc::new(tokio::sync::Notify::new());
        let report = refused.clone();
        let channel = channel.map_err(move |e| {
            report.notify_one();
            e
        });
        // Resent after a second, and again after two: time enough for the peer on a busy machine.
        static SLOWLY: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(2)];
        let mut client = HealthClient::new(traced(ResendUnsent::new(channel, &SLOWLY)));
        let call = tokio::spawn(async move { client.check(HealthCheckRequest::default()).await });
        refused.notified().await;

        let (reporter, health) = tonic_health::server::health_reporter();
        reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
        let incoming = tonic::transport::server::TcpIncoming::from(socket.listen(16).unwrap());
        tokio::spawn(tonic::transport::Server::builder().add_service(health).serve_with_incoming(incoming));
        let reply = call.await.unwrap();
        assert!(reply.is_ok(), "sent again once the peer was up: {reply:?}");
    }

    /// A peer that accepts connections and reads them but never answers: what a peer cut off
    /// the network looks like from here (no reset, only silence). Counts the connections.
    async fn silent_peer() -> (SocketAddr, std::sync::Arc<AtomicU32>) {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = std::sync::Arc::new(AtomicU32::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                });
            }
        });
        (addr, accepted)
    }

    fn hit_the_deadline(status: &tonic::Status) -> bool {
        causes(status).any(|e| e.is::<tonic::TimeoutExpired>())
    }

    /// A call in flight on a connection to a peer that has gone silent fails when a keep-alive
    /// ping goes unanswered, not at its deadline.
    #[tokio::test]
    async fn a_call_to_a_silent_peer_fails_before_its_deadline() {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_client::HealthClient;
        let (addr, _) = silent_peer().await;
        let mut client = HealthClient::new(connect_url(&format!("http://{addr}"), None).unwrap());
        let status = client.check(HealthCheckRequest::default()).await.unwrap_err();
        assert!(!hit_the_deadline(&status), "given up by the keep-alive, not the deadline: {status:?}");
        assert!(causes(&status).any(|e| e.to_string().contains("keep-alive")), "{status:?}");
    }

    /// Calls waiting for a connection that cannot be made (the TLS handshake is never answered)
    /// all fail when the attempt times out, rather than each making an attempt of its own in
    /// turn: eight in turn would take 6.4 s, and the last would meet their 5 s deadline.
    #[tokio::test]
    async fn calls_waiting_for_an_unreachable_peer_fail_together() {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_client::HealthClient;
        let (addr, accepted) = silent_peer().await;
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca.cert.pem()))
            .domain_name("localhost");
        let channel = connect_url(&format!("https://{addr}"), Some(tls)).unwrap();
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let mut client = HealthClient::new(channel.clone());
                tokio::spawn(async move { client.check(HealthCheckRequest::default()).await })
            })
            .collect();
        for call in calls {
            let status = call.await.unwrap().unwrap_err();
            assert!(!hit_the_deadline(&status), "failed with the attempt, not at the deadline: {status:?}");
        }
        assert!(accepted.load(Ordering::Relaxed) < 8, "not one attempt per call");
    }

    /// A call handed to a service in this process that never answers (a statement hung on a
    /// database gone silent, say) ends at the caller's deadline, as one over the network does.
    #[tokio::test]
    async fn an_in_process_call_ends_at_its_deadline() {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_client::HealthClient;
        let never = tower::service_fn(|_: Request<Body>| std::future::pending::<Result<Response<Body>, Infallible>>());
        let mut client = HealthClient::new(in_process(never));
        let started = tokio::time::Instant::now();
        let deadline = started + Duration::from_millis(300);
        let call = CALL_DEADLINE.scope(deadline, client.check(HealthCheckRequest::default()));
        let status =
            tokio::time::timeout(Duration::from_secs(10), call).await.expect("the call never ended").unwrap_err();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "not at the whole deadline: {:?}", started.elapsed());
    }

    // Real sleeps: 50 ms + 150 ms per exhausted call.
    #[tokio::test]
    async fn idempotent_calls_retry_lost_connections_only() {
        let reset = || {
            let e = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset");
            tonic::Status::from_error(Box::new(e))
        };
        let calls = AtomicU32::new(0);
        let flaky = |_: ()| {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move { if n < 2 { Err(reset()) } else { Ok(n) } }
        };
        assert_eq!(idempotent(&(), flaky).await.unwrap(), 2, "third time lucky");

        calls.store(0, Ordering::Relaxed);
        let down = |_: ()| {
            calls.fetch_add(1, Ordering::Relaxed);
            async move { Err::<(), _>(reset()) }
        };
        assert!(idempotent(&(), down).await.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 3, "at most two retries");

        let answers: [fn() -> tonic::Status; 4] = [
            || tonic::Status::from(crate::OAuthError::bare(crate::ErrorCode::InvalidClient)),
            || tonic::Status::from(crate::OAuthError::bare(crate::ErrorCode::TemporarilyUnavailable)),
            || tonic::Status::unavailable("the peer says it cannot now"),
            || tonic::Status::from_error(Box::new(tonic::TimeoutExpired(()))),
        ];
        for answer in answers {
            calls.store(0, Ordering::Relaxed);
            let refused = |_: ()| {
                calls.fetch_add(1, Ordering::Relaxed);
                async move { Err::<(), _>(answer()) }
            };
            assert!(idempotent(&(), refused).await.is_err());
            assert_eq!(calls.load(Ordering::Relaxed), 1, "final: {:?}", answer());
        }
    }
}
