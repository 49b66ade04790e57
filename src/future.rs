//! The response future of layers that either call the inner service or
//! answer the request themselves.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use http::Response;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::error::{Rejection, RejectionKind};

/// What [`call_if_ready`] did with a request.
pub(crate) enum CallNow<F, R, E> {
    /// The service was ready: its future.
    Called(F),
    /// The service was not ready: the request back, for the caller to
    /// drive readiness with its task's own waker (a `Oneshot`).
    NotReady(R),
    /// The service's readiness check failed.
    Failed(E),
}

/// Calls `service` with `request` when it is ready at once. Readiness is
/// polled with a noop waker: a caller that gets the request back polls it
/// again with its task's waker, which replaces the noop one, so nothing
/// waits on a wake-up that never comes. Inlined so that the request moves
/// straight into the call (measured on the router's and the gateway
/// connection's paths).
#[inline(always)]
pub(crate) fn call_if_ready<S, R>(service: &mut S, request: R) -> CallNow<S::Future, R, S::Error>
where
    S: Service<R>,
{
    match service.poll_ready(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(())) => CallNow::Called(service.call(request)),
        Poll::Ready(Err(error)) => CallNow::Failed(error),
        Poll::Pending => CallNow::NotReady(request),
    }
}

pin_project! {
    /// The response future of a layer that either passes the request on
    /// (the inner service's future, its body wrapped in
    /// [`ResponseBody::inner`]) or refuses it with a response it made when
    /// the request came in (a problem+json [`Rejection`]).
    ///
    /// `F` is the inner service's future, `B` its response body.
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Inner {
            #[pin]
            inner: F,
        },
        Refused {
            response: Option<Response<ResponseBody<B>>>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    /// Passes the request on: resolves with the inner future's output.
    pub(crate) fn inner(inner: F) -> Self {
        Self {
            state: State::Inner { inner },
        }
    }

    /// Refuses the request: resolves with `response` at once.
    pub(crate) fn refused(response: Response<ResponseBody<B>>) -> Self {
        Self {
            state: State::Refused {
                response: Some(response),
            },
        }
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Inner { .. } => "inner",
            State::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { inner } => inner
                .poll(cx)
                .map(|result| result.map(|r| r.map(ResponseBody::inner))),
            StateProj::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled again after completion: a caller bug, answered
                // with a 400 problem rather than a panic.
                None => Poll::Ready(Ok(Rejection::new(RejectionKind::BadRequest)
                    .with_detail("the response was already taken")
                    .into_layer_response())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::{Ready, ready};

    use super::*;

    type Inner = Ready<Result<Response<&'static str>, Infallible>>;

    fn poll(
        future: &mut Pin<Box<ResponseFuture<Inner, &'static str>>>,
    ) -> Response<ResponseBody<&'static str>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(response)) => response,
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => panic!("a ready future is pending"),
        }
    }

    #[test]
    fn inner_or_refused() {
        let mut inner = Box::pin(ResponseFuture::inner(ready(Ok(Response::new("hello")))));
        let response = poll(&mut inner);
        assert!(!response.body().is_local());
        assert_eq!(response.status(), 200);

        let refusal = Rejection::new(RejectionKind::Forbidden).into_layer_response();
        let mut refused = Box::pin(ResponseFuture::<Inner, _>::refused(refusal));
        let response = poll(&mut refused);
        assert_eq!(response.status(), 403);
        assert!(response.body().is_local());
        assert!(format!("{refused:?}").contains("refused"));
        // Polled again: an answer, not a panic.
        assert_eq!(poll(&mut refused).status(), 400);
    }
}
