use std::task::{Context, Poll};
use std::time::Duration;

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Request, Response};
use tokio::time::Instant;
use tower_service::Service;

use super::budget::{self, Deadline};
use super::future::ResponseFuture;
use crate::body::ResponseBody;

/// The `grpc-timeout` request header (gRPC over HTTP/2).
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// Ends requests that run past their budget with a 504 problem response.
///
/// Built by [`TimeoutLayer`](super::TimeoutLayer); see the
/// [module docs](crate::timeout).
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    timeout: Duration,
    header: HeaderName,
    /// `timeout` already formatted for both headers: most requests carry no
    /// budget of their own, and then the remaining budget is exactly
    /// `timeout`, so the hot path clones these instead of formatting.
    own_millis: HeaderValue,
    own_grpc: HeaderValue,
}

impl<S> Timeout<S> {
    pub(crate) fn new(inner: S, timeout: Duration, header: HeaderName) -> Self {
        Self {
            inner,
            timeout,
            header,
            own_millis: budget::format_millis(timeout),
            own_grpc: budget::format_grpc_timeout(timeout),
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The budget of a request: the smallest of this layer's own timeout, the
    /// time left before a [`Deadline`] already in the extensions, and the
    /// budgets in the request headers. Also says whether the request carried
    /// `grpc-timeout`, which is then rewritten too.
    fn budget<B>(&self, request: &Request<B>, now: Instant) -> (Duration, bool) {
        let mut budget = self.timeout;
        if let Some(outer) = request.extensions().get::<Deadline>() {
            budget = budget.min(outer.instant().saturating_duration_since(now));
        }
        let headers = request.headers();
        if let Some(millis) = headers.get(&self.header).and_then(budget::parse_millis) {
            budget = budget.min(millis);
        }
        let grpc = headers.get(GRPC_TIMEOUT);
        if let Some(incoming) = grpc.and_then(budget::parse_grpc_timeout) {
            budget = budget.min(incoming);
        }
        (budget, grpc.is_some())
    }

    /// Writes the remaining budget for the inner service: always in the
    /// millisecond header, and in `grpc-timeout` when the caller sent one.
    fn propagate(&self, headers: &mut HeaderMap, budget: Duration, has_grpc_timeout: bool) {
        let own = budget == self.timeout;
        if has_grpc_timeout {
            let value = if own {
                self.own_grpc.clone()
            } else {
                budget::format_grpc_timeout(budget)
            };
            headers.insert(GRPC_TIMEOUT, value);
        }
        let value = if own {
            self.own_millis.clone()
        } else {
            budget::format_millis(budget)
        };
        headers.insert(self.header.clone(), value);
    }
}

/// About thirty years on: far enough to never fire, near enough to not
/// overflow the timer.
fn far_future(now: Instant) -> Instant {
    now + Duration::from_secs(86_400 * 365 * 30)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Timeout<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let now = Instant::now();
        let (budget, has_grpc_timeout) = self.budget(&request, now);
        // gRPC callers are answered with a gRPC status, not a problem document.
        let is_grpc = has_grpc_timeout || crate::error::is_grpc(request.headers());
        if budget.is_zero() {
            return ResponseFuture::spent(is_grpc);
        }
        // `checked_add` because a configured `Duration::MAX` must not panic.
        let deadline = now.checked_add(budget).unwrap_or_else(|| far_future(now));
        self.propagate(request.headers_mut(), budget, has_grpc_timeout);
        request.extensions_mut().insert(Deadline::at(deadline));
        ResponseFuture::new(self.inner.call(request), deadline, budget, is_grpc)
    }
}
