use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::HeaderOps;
use super::layer::TransformLayer;
use super::template::{Captured, FromRequest, Var, request_id, route};
use crate::peer::PeerAddr;

/// Applies header operations to requests and responses.
///
/// Built by [`TransformLayer`](super::TransformLayer); clones share the
/// operations behind an `Arc`. See the [module docs](crate::transform).
#[derive(Debug, Clone)]
pub struct Transform<S> {
    inner: S,
    config: TransformLayer,
    /// Precomputed at build time so the hot path does not scan templates.
    request_needs_ip: bool,
    response_captures: bool,
}

impl<S> Transform<S> {
    pub(crate) fn new(inner: S, config: TransformLayer) -> Self {
        Self {
            inner,
            request_needs_ip: config.request.uses(Var::ClientIp),
            response_captures: config.response.uses_vars(),
            config,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn client_ip<B>(&self, request: &Request<B>) -> Option<IpAddr> {
        #[cfg(feature = "ip-restriction")]
        if let Some(resolver) = &self.config.client_ip {
            return resolver.client_ip(request.headers(), request.extensions());
        }
        request
            .extensions()
            .get::<PeerAddr>()
            .map(|peer| peer.0.ip().to_canonical())
    }

    fn capture<B>(&self, request: &Request<B>) -> Captured {
        let ops = &self.config.response;
        let extensions = request.extensions();
        Captured {
            request_id: ops
                .uses(Var::RequestId)
                .then(|| request_id(extensions).map(str::to_owned))
                .flatten(),
            client_ip: ops
                .uses(Var::ClientIp)
                .then(|| self.client_ip(request))
                .flatten(),
            route: ops
                .uses(Var::Route)
                .then(|| route(extensions).map(str::to_owned))
                .flatten(),
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Transform<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // Captured before the request ops run, so the response sees what the
        // client sent (and before the inner service consumes the request).
        let captured = if self.response_captures {
            self.capture(&request)
        } else {
            Captured::default()
        };
        if !self.config.request.is_empty() {
            let client_ip = if self.request_needs_ip {
                self.client_ip(&request)
            } else {
                None
            };
            let (mut parts, body) = request.into_parts();
            let vars = FromRequest {
                extensions: &parts.extensions,
                client_ip,
            };
            self.config.request.apply(&mut parts.headers, &vars);
            request = Request::from_parts(parts, body);
        }
        let response = (!self.config.response.is_empty()).then(|| self.config.response.clone());
        ResponseFuture {
            inner: self.inner.call(request),
            response,
            captured,
        }
    }
}

pin_project! {
    /// The response future of [`Transform`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        response: Option<Arc<HeaderOps>>,
        captured: Captured,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some(ops) = this.response.take() {
            ops.apply(response.headers_mut(), &*this.captured);
        }
        Poll::Ready(Ok(response))
    }
}
