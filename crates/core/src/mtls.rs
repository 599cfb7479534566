//! Mutual TLS between the services of a split deployment, and who may call what.
//!
//! Every service holds a certificate from one CA whose DNS name says which service it is
//! (`token-issuer.nmos-auth.internal`), used both as its server certificate and as its client
//! certificate. Callers check the server's certificate against that name, not against the
//! address they dialled, so the same certificates work on loopback, in compose and in
//! Kubernetes. Servers require a client certificate from the CA (rustls refuses the handshake
//! otherwise) and then [`Authorize`] lets through only the callers a method is meant for. Where
//! administrators' bearer tokens are accepted ([`crate::bearer`]), a caller may leave out the
//! certificate (one from another CA still fails the handshake) and present such a token, for
//! the methods an administrator may call.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::Context as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::Config;
use crate::bearer::AdminTokens;
use crate::operator::Operator;

/// The DNS domain of the service identities in the internal certificates.
pub const INTERNAL_DOMAIN: &str = "nmos-auth.internal";

/// The parts of the system, as their certificates name them. `Admin` is an operator's tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Keys,
    Identity,
    ClientRegistry,
    TokenIssuer,
    Gateway,
    Admin,
}

impl Service {
    pub const ALL: [Service; 6] = [
        Service::Keys,
        Service::Identity,
        Service::ClientRegistry,
        Service::TokenIssuer,
        Service::Gateway,
        Service::Admin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Keys => "keys",
            Service::Identity => "identity",
            Service::ClientRegistry => "client-registry",
            Service::TokenIssuer => "token-issuer",
            Service::Gateway => "gateway",
            Service::Admin => "admin",
        }
    }

    /// The DNS name in its certificate.
    pub fn dns_name(self) -> String {
        format!("{}.{INTERNAL_DOMAIN}", self.name())
    }
}

/// Which services may call a gRPC method, by its path (`/package.Service/Method`). `None`:
/// any peer with a certificate from the CA (health checks and reflection).
pub fn callers(path: &str) -> Option<&'static [Service]> {
    use Service::*;
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    Some(match (service, method) {
        ("grpc.health.v1.Health", _)
        | ("grpc.reflection.v1.ServerReflection", _)
        | ("grpc.reflection.v1alpha.ServerReflection", _) => return None,
        // Only the token issuer mints tokens.
        ("nmos.auth.v1.Keys", "Sign") => &[TokenIssuer],
        ("nmos.auth.v1.Keys", "Verify") => &[TokenIssuer, Admin],
        // The public keys; the other services check administrators' tokens with them.
        ("nmos.auth.v1.Keys", "GetJwks") => &[Gateway, TokenIssuer, Identity, ClientRegistry, Admin],
        // Listing, rotating and removing keys: operators, and administrators on the pages
        // (the keys service checks the one the gateway names). Importing: operators only.
        ("nmos.auth.v1.Keys", "ListKeys" | "RotateKey" | "RemoveKey" | "ListEvents") => &[Gateway, Admin],
        ("nmos.auth.v1.Keys", _) => &[Admin],
        ("nmos.auth.v1.Identity", "GetUser" | "VerifyPassword") => &[Gateway, TokenIssuer, Admin],
        // People's web sessions are the gateway's alone: nobody else starts one for a user.
        ("nmos.auth.v1.Identity", "StartSession" | "CheckSession" | "EndSession") => &[Gateway],
        ("nmos.auth.v1.Identity", _) => &[Gateway, Admin],
        ("nmos.auth.v1.ClientRegistry", "AuthenticateClient") => &[TokenIssuer],
        // The other services ask whether an administrator's token's client is still one.
        ("nmos.auth.v1.ClientRegistry", "GetClient") => &[Gateway, TokenIssuer, Keys, Identity, Admin],
        ("nmos.auth.v1.ClientRegistry", _) => &[Gateway, Admin],
        ("nmos.auth.v1.TokenIssuer", "Token" | "Authorize") => &[Gateway],
        ("nmos.auth.v1.TokenIssuer", _) => &[Gateway, Admin],
        _ => &[],
    })
}

/// The service a (CA-verified) certificate names, among `candidates`.
fn identify(cert: &CertificateDer<'_>, candidates: &[Service]) -> Option<Service> {
    let cert = webpki::EndEntityCert::try_from(cert).ok()?;
    candidates.iter().copied().find(|service| {
        ServerName::try_from(service.dns_name()).is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
    })
}

/// Whether the peer that presented `certs` may call `path`; the service it is, when that
/// decided it.
pub fn authorize(path: &str, certs: Option<&[CertificateDer<'static>]>) -> Result<Option<Service>, tonic::Status> {
    let Some(leaf) = certs.and_then(|c| c.first()) else {
        return Err(tonic::Status::unauthenticated("a client certificate is required"));
    };
    match callers(path) {
        None => Ok(None),
        Some(allowed) => match identify(leaf, allowed) {
            Some(service) => Ok(Some(service)),
            None => {
                let who = identify(leaf, &Service::ALL).map_or("an unnamed peer", Service::name);
                tracing::warn!(method = path, caller = who, "refused a gRPC call the caller may not make");
                Err(tonic::Status::permission_denied(format!("{who} may not call {path}")))
            }
        },
    }
}

/// This service's certificates for mutual TLS.
pub struct InternalTls {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl InternalTls {
    /// From `grpc_ca`, `grpc_cert` and `grpc_key`; `None` only when `grpc_plaintext` is set.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<InternalTls>> {
        let read = |path: &std::path::Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
        match (&config.grpc_ca, &config.grpc_cert, &config.grpc_key) {
            (Some(ca), Some(cert), Some(key)) => {
                Ok(Some(InternalTls { ca: read(ca)?, cert: read(cert)?, key: read(key)? }))
            }
            (None, None, None) if config.grpc_plaintext => {
                tracing::warn!("internal gRPC without TLS (grpc_plaintext): for development only");
                Ok(None)
            }
            (None, None, None) => anyhow::bail!(
                "internal gRPC needs mutual TLS: set grpc_ca, grpc_cert and grpc_key (`nmos-auth dev-ca` makes \
                 them), or grpc_plaintext = true for development"
            ),
            _ => anyhow::bail!("grpc_ca, grpc_cert and grpc_key must be set together"),
        }
    }

    pub fn from_pem(ca: Vec<u8>, cert: Vec<u8>, key: Vec<u8>) -> InternalTls {
        InternalTls { ca, cert, key }
    }

    /// Requires a client certificate from the CA; with `certificate_optional`, a client may
    /// present none (and must then authenticate with a bearer token), but one it presents must
    /// still be from the CA.
    pub fn server(&self, certificate_optional: bool) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
            .client_auth_optional(certificate_optional)
    }

    /// Presents this service's certificate and expects `peer`'s.
    pub fn client(&self, peer: Service) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key))
            .domain_name(peer.dns_name())
    }
}

/// A tower layer for a tonic server: refuses, before any handler runs, calls from peers the
/// method is not meant for ([`callers`]). Off (everything passes) only without TLS.
#[derive(Clone)]
pub struct AuthorizeLayer {
    enforce: bool,
    tokens: Option<Arc<AdminTokens>>,
}

impl AuthorizeLayer {
    pub fn new(enforce: bool) -> AuthorizeLayer {
        AuthorizeLayer { enforce, tokens: None }
    }

    /// Also lets a caller without a certificate in with an administrator's bearer token
    /// ([`AdminTokens::authorize`]); the handlers find a [`crate::bearer::TokenCaller`] in the
    /// request.
    pub fn with_tokens(self, tokens: Arc<AdminTokens>) -> AuthorizeLayer {
        AuthorizeLayer { tokens: Some(tokens), ..self }
    }
}

impl<S> tower::Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize { inner, enforce: self.enforce, tokens: self.tokens.clone() }
    }
}

#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    enforce: bool,
    tokens: Option<Arc<AdminTokens>>,
}

impl<S> tower::Service<Request<Body>> for Authorize<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if !self.enforce {
            return Box::pin(self.inner.call(request));
        }
        let connection = request.extensions().get::<TlsConnectInfo<TcpConnectInfo>>();
        let peer = connection.and_then(|info| info.get_ref().remote_addr());
        let certs = connection.and_then(|info| info.peer_certs());
        if let (Some(tokens), None) = (&self.tokens, certs.as_ref().filter(|c| !c.is_empty())) {
            let tokens = tokens.clone();
            // The service that was made ready goes with this call; the clone waits for the next.
            let fresh = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, fresh);
            let mut request = request;
            return Box::pin(async move {
                let path = request.uri().path().to_owned();
                let authorization =
                    request.headers().get(tonic::codegen::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
                match tokens.authorize(&path, authorization.map(str::to_owned).as_deref(), peer).await {
                    Ok(caller) => {
                        request.extensions_mut().insert(Operator::Token { client_id: caller.client_id });
                        inner.call(request).await
                    }
                    Err(status) => Ok(status.into_http()),
                }
            });
        }
        match authorize(request.uri().path(), certs.as_deref().map(Vec::as_slice)) {
            Ok(caller) => {
                let mut request = request;
                if caller == Some(Service::Admin) {
                    request.extensions_mut().insert(Operator::Certificate);
                }
                Box::pin(self.inner.call(request))
            }
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_issuer_signs() {
        assert_eq!(callers("/nmos.auth.v1.Keys/Sign"), Some(&[Service::TokenIssuer][..]));
        assert!(!callers("/nmos.auth.v1.TokenIssuer/Token").unwrap().contains(&Service::Admin));
        assert_eq!(callers("/grpc.health.v1.Health/Check"), None);
        assert_eq!(callers("/something.Else/Method"), Some(&[][..]));
        for method in ["StartSession", "CheckSession", "EndSession"] {
            let path = format!("/nmos.auth.v1.Identity/{method}");
            assert_eq!(callers(&path), Some(&[Service::Gateway][..]), "people's sessions are the gateway's");
        }
        assert!(callers("/nmos.auth.v1.Identity/EndUserSessions").unwrap().contains(&Service::Admin));
        assert!(authorize("/grpc.health.v1.Health/Check", None).is_err(), "a certificate is always needed");
        assert_eq!(callers("/nmos.auth.v1.Keys/ImportKey"), Some(&[Service::Admin][..]), "imports are operators'");
        assert!(callers("/nmos.auth.v1.Keys/RotateKey").unwrap().contains(&Service::Gateway));
    }
}
