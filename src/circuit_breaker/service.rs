use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::KeyFn;
use super::breaker::{Admission, Breaker};
use super::future::ResponseFuture;
use super::keys::Breakers;
use crate::body::ResponseBody;

/// The service of [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
#[derive(Clone)]
pub struct CircuitBreaker<S> {
    inner: S,
    breakers: Arc<Breakers>,
    key: Option<KeyFn>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for CircuitBreaker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("breakers", &self.breakers)
            .finish_non_exhaustive()
    }
}

impl<S> CircuitBreaker<S> {
    pub(crate) fn new(inner: S, breakers: Arc<Breakers>, key: Option<KeyFn>) -> Self {
        Self {
            inner,
            breakers,
            key,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CircuitBreaker<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    // Always inlined, with only the closed single-breaker path here: the
    // request and the future are then built in place instead of copied
    // through each call (measured). Everything else is out of line.
    #[inline(always)]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The common case borrows the breaker: no reference count taken
        // here, and the request is not moved through a tuple.
        if let Breakers::Single(breaker) = &*self.breakers
            && let Some(permit) = breaker.admit_closed()
        {
            return ResponseFuture::guarded(self.inner.call(request), permit);
        }
        self.call_slow(request)
    }
}

impl<S> CircuitBreaker<S> {
    /// `call` for a breaker that is not closed, or a layer with one
    /// breaker per key.
    #[inline(never)]
    fn call_slow<ReqBody, ResBody>(
        &mut self,
        request: Request<ReqBody>,
    ) -> ResponseFuture<S::Future>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        let keyed = match &*self.breakers {
            Breakers::Single(breaker) => return admit(breaker, &mut self.inner, request),
            Breakers::Keyed(keyed) => keyed,
        };
        let Some(key_fn) = &self.key else {
            return ResponseFuture::unguarded(self.inner.call(request));
        };
        let (parts, body) = request.into_parts();
        let key = key_fn(&parts);
        let request = Request::from_parts(parts, body);
        match key {
            Some(key) => admit(&keyed.get(&key), &mut self.inner, request),
            None => ResponseFuture::unguarded(self.inner.call(request)),
        }
    }
}

/// Calls `inner` if `breaker` admits the request, else answers 503.
#[inline]
fn admit<S, ReqBody, ResBody>(
    breaker: &Arc<Breaker>,
    inner: &mut S,
    request: Request<ReqBody>,
) -> ResponseFuture<S::Future>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    match breaker.admit() {
        Admission::Allowed(permit) => ResponseFuture::guarded(inner.call(request), permit),
        Admission::Refused(retry_after) => {
            ResponseFuture::refused(retry_after, crate::error::is_grpc(request.headers()))
        }
    }
}
