//! The edge gateway: serves the IS-10 HTTP routes and turns each request into a gRPC call
//! to the service that owns the rule. It holds no OAuth logic and no state of its own.
#![forbid(unsafe_code)]

mod http;
mod metadata;
mod oauth;
mod pages;
mod session;
mod web;

/// The parsers of request bodies and headers, for the fuzz targets.
#[cfg(feature = "fuzzing")]
pub use http::{Authorization, authorization, parse_form, parse_multipart};

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use nmos_auth_core::Config;
use nmos_auth_core::grpc::GrpcChannel;
use nmos_auth_core::sealing::SealingKey;
use nmos_auth_proto::client_registry_client::ClientRegistryClient;
use nmos_auth_proto::identity_client::IdentityClient;
use nmos_auth_proto::keys_client::KeysClient;
use nmos_auth_proto::token_issuer_client::TokenIssuerClient;
use serde_json::{Value, json};
use tower_http::cors::{Any, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

/// The gateway's handles on the services, and the documents it serves as they are.
#[derive(Clone)]
pub struct Gateway {
    pub token_issuer: TokenIssuerClient<GrpcChannel>,
    pub clients: ClientRegistryClient<GrpcChannel>,
    pub keys: KeysClient<GrpcChannel>,
    pub identity: IdentityClient<GrpcChannel>,
    metadata: Arc<Value>,
    cookie_key: Arc<SealingKey>,
    /// Session cookies get `Secure` when browsers reach the server over https.
    secure_cookies: bool,
    /// The scopes offered on the client registration page.
    scopes: Vec<String>,
    /// Legacy grants offered on the client registration page (when switched on).
    legacy: nmos_auth_core::config::LegacyGrants,
    /// What `/readyz` checks: the services this gateway needs, however they are reached.
    readiness: Option<Readiness>,
    /// Proxies whose `X-Forwarded-For` is believed (`trusted_proxies`).
    trusted_proxies: Arc<[ipnet::IpNet]>,
}

/// One dependency as `/readyz` reports it.
#[derive(Clone, Copy, Debug)]
pub struct Check {
    pub name: &'static str,
    /// Whether it answers now.
    pub up: bool,
    /// Whether it is this process's own (the one-process server's databases): only those make
    /// the process unready. Peers are reported and never gate readiness: the gateway answers
    /// each route's 503 itself while the service behind it is down (health never cascades).
    pub own: bool,
}

/// Checks of each dependency.
pub type Readiness = Arc<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = Vec<Check>> + Send>> + Send + Sync>;

impl Gateway {
    pub fn new(
        config: &Config,
        token_issuer: TokenIssuerClient<GrpcChannel>,
        clients: ClientRegistryClient<GrpcChannel>,
        keys: KeysClient<GrpcChannel>,
        identity: IdentityClient<GrpcChannel>,
    ) -> anyhow::Result<Gateway> {
        let metadata = metadata::authorization_server_metadata(
            &config.issuer()?,
            &config.scopes()?.to_string(),
            config.legacy_grants(),
        );
        Ok(Gateway {
            token_issuer,
            clients,
            keys,
            identity,
            metadata: Arc::new(metadata),
            cookie_key: Arc::new(config.cookie_key()?),
            secure_cookies: config.public_base()?.starts_with("https://"),
            scopes: config.scopes()?.apis().iter().map(|api| api.as_str().to_owned()).collect(),
            legacy: config.legacy_grants(),
            readiness: None,
            trusted_proxies: config.trusted_proxies()?.into(),
        })
    }

    /// Whom a request came from ([`client_address`] with `trusted_proxies`).
    pub fn client_address(&self, peer: std::net::SocketAddr, headers: &axum::http::HeaderMap) -> std::net::IpAddr {
        client_address(&self.trusted_proxies, peer, headers)
    }

    /// Sets what `/readyz` checks (by default nothing: always ready once serving).
    pub fn with_readiness(mut self, readiness: Readiness) -> Gateway {
        self.readiness = Some(readiness);
        self
    }
}

/// `GET /healthz`: the process serves HTTP (liveness).
async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "alive"}))
}

/// `GET /readyz`: 200 while this process can answer (its own dependencies answer), else 503;
/// the body names every dependency, up or down.
async fn readyz(axum::extract::State(gateway): axum::extract::State<Gateway>) -> impl IntoResponse {
    let checks = match &gateway.readiness {
        Some(check) => check().await,
        None => Vec::new(),
    };
    let ready = checks.iter().all(|c| c.up || !c.own);
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": checks.iter().map(|c| (c.name.to_string(), json!(if c.up { "up" } else { "down" })))
            .collect::<serde_json::Map<_, _>>(),
    });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body))
}

/// NMOS-style error body for paths and methods that do not exist.
fn nmos_error(status: StatusCode, message: &str) -> axum::response::Response {
    (status, Json(json!({"code": status.as_u16(), "error": message, "debug": null}))).into_response()
}

async fn not_found(uri: Uri) -> impl IntoResponse {
    nmos_error(StatusCode::NOT_FOUND, &format!("{} not found", uri.path()))
}

async fn method_not_allowed() -> impl IntoResponse {
    nmos_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

/// Each request's duration, by route, for the Prometheus metrics; and, when telemetry is
/// exported, a span per request (continuing the caller's W3C trace context, if any).
async fn observe(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use tracing::Instrument;
    let started = std::time::Instant::now();
    // A route the router matched (a pattern, never the path a caller wrote).
    let route = request.extensions().get::<axum::extract::MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", |p| p.as_str());
    let method = known_method(request.method());
    let span = if nmos_auth_core::telemetry::enabled() {
        let span = tracing::debug_span!(
            "http.request",
            otel.name = %format!("{method} {route}"),
            otel.kind = "server",
            http.request.method = %method,
            http.route = %route,
            http.response.status_code = tracing::field::Empty,
        );
        nmos_auth_core::telemetry::continue_trace(&span, request.headers());
        span
    } else {
        tracing::Span::none()
    };
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    nmos_auth_core::telemetry::http_request_served(route, method, status, started.elapsed());
    response
}

/// The method's name when it is one the routes answer, `other` for anything a caller made up.
fn known_method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Every route, with CORS, body limits and request telemetry.
pub fn router(gateway: Gateway, max_body_bytes: usize) -> Router {
    const V: &str = nmos_auth_core::AUTH_API_BASE;
    const WELL_KNOWN: &str = "/.well-known/oauth-authorization-server";
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS, Method::HEAD])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
        .max_age(std::time::Duration::from_secs(21600));
    // HSTS (RFC 6797) only where browsers reach this server over https: sent over http it
    // would be ignored at best, and would lock a plain-http plant out at worst.
    let hsts = gateway.secure_cookies.then(|| HeaderValue::from_static("max-age=31536000"));
    Router::new()
        .route("/", get(metadata::root))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/x-nmos", get(metadata::x_nmos))
        .route("/x-nmos/", get(metadata::x_nmos))
        .route("/x-nmos/auth", get(metadata::auth))
        .route("/x-nmos/auth/", get(metadata::auth))
        .route(V, get(metadata::auth_version))
        .route(&format!("{V}/"), get(metadata::auth_version))
        .route(WELL_KNOWN, get(metadata::metadata))
        .route(&format!("{WELL_KNOWN}{V}"), get(metadata::metadata))
        .route(&format!("{V}/jwks"), get(metadata::jwks))
        .route(&format!("{V}/jwks/"), get(metadata::jwks))
        .route(&format!("{V}/certs"), get(metadata::certs))
        .route(&format!("{V}/certs/"), get(metadata::certs))
        .route("/certs", get(metadata::certs))
        .route(&format!("{V}/token"), post(oauth::token))
        .route(&format!("{V}/register"), post(oauth::register))
        .route(
            &format!("{V}/register/{{client_id}}"),
            get(oauth::read_client).put(oauth::update_client).delete(oauth::delete_client),
        )
        .route(&format!("{V}/revoke"), post(oauth::revoke))
        .route(&format!("{V}/introspect"), post(oauth::introspect))
        .route(&format!("{V}/authorize"), get(web::authorize_page).post(web::authorize_decision))
        .route(&format!("{V}/signin"), get(web::signin_page).post(web::signin))
        .route(&format!("{V}/signup"), get(web::signup_page).post(web::signup))
        .route(&format!("{V}/signout"), post(web::signout))
        .route(&format!("{V}/home"), get(web::home))
        .route(&format!("{V}/style.css"), get(pages::stylesheet))
        .route(&format!("{V}/register-client"), get(web::register_client_page).post(web::register_client))
        .route(&format!("{V}/delete-client"), post(web::delete_client))
        .route(&format!("{V}/users"), get(web::users_page))
        .route(&format!("{V}/pending"), get(web::pending_page).post(web::decide_pending))
        .route(&format!("{V}/users/add"), post(web::add_user))
        .route(&format!("{V}/users/change"), post(web::change_user))
        .route(&format!("{V}/admin"), get(web::overview))
        .route(&format!("{V}/admin/clients"), get(web::clients_page))
        .route(&format!("{V}/admin/clients/{{client_id}}"), get(web::client_page).post(web::client_action))
        .route(&format!("{V}/admin/keys"), get(web::keys_page).post(web::keys_action))
        .route(&format!("{V}/admin/audit"), get(web::audit_page))
        .route(&format!("{V}/admin/audit.csv"), get(web::audit_csv))
        // The seed's documented routes (nmos-auth-server README) for its existing users.
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/authorize", get(web::authorize_page).post(web::authorize_decision))
        .route("/oauth/revoke", post(oauth::revoke))
        .route("/signup", get(web::signup_page).post(web::signup))
        .route("/create_client", get(web::register_client_page).post(web::register_client))
        .route_layer(axum::middleware::from_fn(observe))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(gateway)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        // No response is to be sniffed into another type, nor leak its URL (a code, a state)
        // to the next site in a Referer header.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(SetResponseHeaderLayer::if_not_present(header::STRICT_TRANSPORT_SECURITY, hsts))
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("access-control-allow-origin"),
            HeaderValue::from_static("*"),
        ))
        .layer(cors)
}

/// Serves the router on an already bound listener, over TLS when the config has a
/// certificate, until `shutdown` completes; in-flight requests are then allowed to finish.
pub async fn serve(
    config: &Config,
    router: Router,
    listener: std::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
    });
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = RustlsConfig::from_pem_file(cert, key)
                .await
                .with_context(|| format!("loading the TLS certificate {} and key {}", cert.display(), key.display()))?;
            let acceptor = RustlsAcceptor::new(tls).acceptor(NoDelayAcceptor::new());
            axum_server::from_tcp(listener)?.acceptor(acceptor).handle(handle).serve(service).await?;
        }
        _ => {
            axum_server::from_tcp(listener)?.acceptor(NoDelayAcceptor::new()).handle(handle).serve(service).await?;
        }
    }
    Ok(())
}

/// Whom a request came from: its connection's address, or, when that is one of the `trusted`
/// proxies, the last address in `X-Forwarded-For` that is not one. Each proxy appends the
/// address it was reached from, so, read from the right, the entries past the first untrusted
/// one could have been written by anyone.
fn client_address(
    trusted: &[ipnet::IpNet],
    peer: std::net::SocketAddr,
    headers: &axum::http::HeaderMap,
) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.ip().to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    let forwarded = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
    let hops: Vec<&str> = forwarded.flat_map(|v| v.split(',')).map(str::trim).collect();
    for hop in hops.into_iter().rev() {
        // A malformed entry ends the walk: the last address read stands.
        let Ok(ip) = hop.parse::<std::net::IpAddr>().map(|ip| ip.to_canonical()) else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::client_address;
    use axum::http::{HeaderMap, HeaderValue};

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.42.0.0/16".parse().unwrap(), "192.0.2.7/32".parse().unwrap()];
        let from = |peer: &str, forwarded: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in forwarded {
                headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
            }
            client_address(&trusted, peer.parse().unwrap(), &headers).to_string()
        };
        // Straight from a client, whatever it claims.
        assert_eq!(from("198.51.100.1:5000", &["203.0.113.9"]), "198.51.100.1");
        // Through the ingress: the address it was reached from.
        assert_eq!(from("10.42.1.5:5000", &["203.0.113.9"]), "203.0.113.9");
        // A client's own forged entry is to the left of what the proxy appended.
        assert_eq!(from("10.42.1.5:5000", &["1.2.3.4, 203.0.113.9"]), "203.0.113.9");
        // Through two trusted proxies, in one header or two.
        assert_eq!(from("10.42.1.5:5000", &["203.0.113.9, 192.0.2.7"]), "203.0.113.9");
        assert_eq!(from("10.42.1.5:5000", &["203.0.113.9", "192.0.2.7"]), "203.0.113.9");
        // No header, or garbage in it: the last address that could be read.
        assert_eq!(from("10.42.1.5:5000", &[]), "10.42.1.5");
        assert_eq!(from("10.42.1.5:5000", &["203.0.113.9, not-an-address"]), "10.42.1.5");
        // IPv4 seen through an IPv6 socket is still IPv4.
        assert_eq!(from("[::ffff:10.42.1.5]:5000", &["::ffff:203.0.113.9"]), "203.0.113.9");
    }
}
