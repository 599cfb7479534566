//! Who makes an administrative call, as the service that owns the data sees it. An operator's
//! call carries an [`Operator`] in its request extensions, put there by the layer that
//! authenticated it: [`crate::mtls::AuthorizeLayer`] for the `admin` certificate and for an
//! administrator's bearer token, [`LocalOperatorLayer`] for `nmos-auth admin` on the server's own
//! machine. A call without one comes from another service (the gateway), which names the
//! signed-in person it acts for in the request, for the owning service to check.
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http::Request;

/// An operator: someone who administers the server itself, not a signed-in web user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operator {
    /// A tool with the `admin` certificate of the internal CA.
    Certificate,
    /// An administrator's bearer token (scope `nmos-auth:admin`) of this client.
    Token { client_id: String },
    /// `nmos-auth admin` on the server's machine: through `serve`'s admin socket in its data
    /// directory, or with the stores opened in its own process (either way, whoever can read
    /// the data directory, which holds the keys anyway).
    Local,
}

impl Operator {
    /// How the operator is named where a user name is expected (audit events, `requested_by`).
    /// User names cannot contain a colon, so no user can pose as one.
    pub fn name(&self) -> String {
        match self {
            Operator::Certificate => "operator:admin-certificate".to_owned(),
            Operator::Token { client_id } => format!("client:{client_id}"),
            Operator::Local => "operator:local".to_owned(),
        }
    }
}

/// The operator who makes `request`, if an operator makes it.
pub fn operator<T>(request: &tonic::Request<T>) -> Option<Operator> {
    request.extensions().get::<Operator>().cloned()
}

/// The administrator who makes an administrative call: an operator (whatever the request says),
/// or else the signed-in user the gateway names in the request, if an administrator; otherwise
/// PERMISSION_DENIED, saying `what` only administrators do.
pub fn administrator<T>(
    request: &tonic::Request<T>,
    requested_by: Option<&nmos_auth_proto::WebUser>,
    what: &str,
) -> Result<nmos_auth_proto::WebUser, tonic::Status> {
    let operator =
        operator(request).map(|o| nmos_auth_proto::WebUser { username: o.name(), admin: true, account_created_at: 0 });
    match operator.or_else(|| requested_by.cloned()) {
        Some(user) if user.admin => Ok(user),
        Some(_) => Err(tonic::Status::permission_denied(format!("only administrators {what}"))),
        None => {
            Err(tonic::Status::permission_denied("an administrative call must name who asks for it (requested_by)"))
        }
    }
}

/// Marks every call through it as a local operator's ([`Operator::Local`]): for `serve`'s admin
/// socket, whose file permissions say who may connect, and for the stores `nmos-auth admin`
/// opens in its own process.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalOperatorLayer;

impl<S> tower::Layer<S> for LocalOperatorLayer {
    type Service = LocalOperator<S>;

    fn layer(&self, inner: S) -> LocalOperator<S> {
        LocalOperator { inner }
    }
}

#[derive(Clone, Debug)]
pub struct LocalOperator<S> {
    inner: S,
}

impl<S> tower::Service<Request<Body>> for LocalOperator<S>
where
    S: tower::Service<Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> S::Future {
        request.extensions_mut().insert(Operator::Local);
        self.inner.call(request)
    }
}
