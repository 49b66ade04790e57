use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Extensions, HeaderMap, Method, Request, Response, Uri, Version};
use tower_service::Service;

use super::budget::SlotCache;
use super::future::{ResponseFuture, Retrying};
use super::layer::Policy;
use super::policy;
use super::replay::{ReplayBody, ReplaySource};
use crate::BoxError;
use crate::body::ResponseBody;

/// The service of [`RetryLayer`](super::RetryLayer).
///
/// It calls its inner service with a `Request<`[`ReplayBody<B>`]`>` in place
/// of the caller's `Request<B>`, and keeps a clone of the inner service for
/// the retries of each request it may retry.
#[derive(Clone)]
pub struct Retry<S> {
    inner: S,
    policy: Arc<Policy>,
    /// The budget slot this service last deposited in.
    slot: Option<SlotCache>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Retry<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .finish()
    }
}

impl<S> Retry<S> {
    pub(crate) fn new(inner: S, policy: Arc<Policy>) -> Self {
        Self {
            inner,
            policy,
            slot: None,
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
}

/// A copy of a request's head, to make each retry from.
pub(crate) struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    /// `None` when the request has no headers: nothing to clone now or to
    /// drop later (an empty `HeaderMap` still costs both).
    pub(crate) headers: Option<HeaderMap>,
    pub(crate) extensions: Extensions,
}

impl Head {
    #[inline(always)]
    fn of<B>(request: &Request<B>) -> Self {
        Self {
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            headers: (!request.headers().is_empty()).then(|| request.headers().clone()),
            extensions: request.extensions().clone(),
        }
    }

    /// A request with a copy of this head and `body`.
    pub(crate) fn request<B>(&self, body: B) -> Request<B> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        if let Some(headers) = &self.headers {
            *request.headers_mut() = headers.clone();
        }
        *request.extensions_mut() = self.extensions.clone();
        request
    }
}

impl<S, B, ResBody> Service<Request<B>> for Retry<S>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>> + Clone,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<B>) -> Self::Future {
        let policy = &*self.policy;
        let now = policy.shared.budget.deposit_cached(&mut self.slot);
        let repeat_is_safe =
            policy.non_idempotent || policy::repeat_is_safe(request.method(), request.headers());
        let grpc = policy.per_try_timeout.is_some() && crate::error::is_grpc(request.headers());
        // A connect failure may be retried whatever the method, as the
        // request never left, so those requests are prepared too.
        let may_retry =
            policy.max_attempts > 1 && (repeat_is_safe || policy.retry_on.covers_connect_failure());
        if !may_retry {
            let request = request.map(|body| {
                if body.is_end_stream() {
                    ReplayBody::empty()
                } else {
                    ReplayBody::once(body)
                }
            });
            return ResponseFuture::once(self.inner.call(request), &self.policy, grpc);
        }
        // The head is copied straight into its place in the response
        // future, which then gets the inner service's future: each move of
        // them was a copy (measured).
        let mut future = ResponseFuture::retrying(
            Retrying::new(
                self.inner.clone(),
                Head::of(&request),
                None,
                Arc::clone(&self.policy),
                repeat_is_safe,
                now,
            ),
            grpc,
        );
        // `map` moves the head once, where `into_parts` and `from_parts`
        // would move it twice.
        let request = request.map(|body| match ReplaySource::new(body, policy.replay_limit) {
            Ok((replay, first)) => {
                future.set_source(replay);
                first
            }
            Err(body) => ReplayBody::once(body),
        });
        future.first_attempt(self.inner.call(request));
        future
    }
}
