use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tower_service::Service;

use super::future::ResponseFuture;
use super::layer::FaultLayer;

/// A record, in the response extensions, of the fault injected into the
/// request (absent when none was).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InjectedFault {
    /// The delay added before the inner service was called (or before the
    /// abort answer).
    pub delayed: Option<Duration>,
    /// The status answered in place of the inner service.
    pub aborted: Option<StatusCode>,
}

/// Delays or aborts a share of requests.
///
/// Built by [`FaultLayer`](super::FaultLayer); see the
/// [module docs](crate::fault).
#[derive(Debug, Clone)]
pub struct Fault<S> {
    inner: S,
    config: FaultLayer,
}

impl<S> Fault<S> {
    pub(crate) fn new(inner: S, config: FaultLayer) -> Self {
        Self { inner, config }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Fault<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<crate::body::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        if let Some(header) = &config.header
            && !request.headers().contains_key(header)
        {
            return ResponseFuture::call(self.inner.call(request));
        }
        // Both draws are always made when configured, so that a seeded
        // sequence decides the same requests whatever the other outcome.
        let delay = config
            .delay
            .filter(|&(ratio, _)| config.rng.next_f64() < ratio)
            .map(|(_, duration)| duration);
        let abort = config
            .abort
            .filter(|&(ratio, _)| config.rng.next_f64() < ratio)
            .map(|(_, status)| status);
        match (delay, abort) {
            (None, None) => ResponseFuture::call(self.inner.call(request)),
            (None, Some(status)) => ResponseFuture::abort(status, None),
            (Some(delay), Some(status)) => ResponseFuture::delay_then_abort(delay, status),
            (Some(delay), None) => {
                // The ready service goes into the future and a fresh clone
                // takes its place, the usual tower pattern for calling later.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::delay_then_call(delay, ready, request)
            }
        }
    }
}
