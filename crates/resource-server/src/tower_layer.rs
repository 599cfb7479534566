//! A tower layer for HTTP services (axum or any other): refuses requests whose token does not
//! allow them, and gives the others' handlers the [`Claims`](crate::Claims).
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::ResourceServer;

/// Wraps a service so that only requests the token allows reach it.
#[derive(Clone)]
pub struct RequireTokenLayer {
    server: ResourceServer,
}

impl RequireTokenLayer {
    /// Checks requests with `server`.
    pub fn new(server: ResourceServer) -> RequireTokenLayer {
        RequireTokenLayer { server }
    }
}

impl<S> tower::Layer<S> for RequireTokenLayer {
    type Service = RequireToken<S>;

    fn layer(&self, inner: S) -> RequireToken<S> {
        RequireToken { inner, server: self.server.clone() }
    }
}

/// The wrapped service (see [`RequireTokenLayer`]).
#[derive(Clone)]
pub struct RequireToken<S> {
    inner: S,
    server: ResourceServer,
}

impl<S, B, R> tower::Service<http::Request<B>> for RequireToken<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: From<String>,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was made ready serves this request (tower's contract).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let server = self.server.clone();
        Box::pin(async move {
            let authorization = request.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            let uri = request.uri().clone();
            match server.check(request.method(), uri.path(), authorization, uri.query()).await {
                Ok(claims) => {
                    if let Some(claims) = claims {
                        request.extensions_mut().insert(claims);
                    }
                    inner.call(request).await
                }
                Err(denied) => Ok(denied.response()),
            }
        })
    }
}
