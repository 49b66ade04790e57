//! The router's response future.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::util::Oneshot;
use tower_service::Service;

use super::{MatchedRoute, RouteService};
use crate::Body;
use crate::future::{CallNow, call_if_ready};

pin_project! {
    /// The response future of [`Router`](super::Router): the route's
    /// service, or the router's own 404/405 answer. The matched route is
    /// also put in the response's extensions, unless the router was built
    /// with [`tag_responses(false)`](super::RouterBuilder::tag_responses).
    pub struct RouteFuture<B> {
        #[pin]
        state: State<B>,
        matched: Option<MatchedRoute>,
    }
}

/// The route service's own (boxed) future.
type Called<B> = <RouteService<B> as Service<Request<B>>>::Future;

pin_project! {
    #[project = StateProj]
    enum State<B> {
        Called { future: Called<B> },
        // Boxed, like `Ready`'s response: both are rare, and the future
        // of every routed request is as large as its largest state
        // (a request inside a `Oneshot` is ≈ 300 bytes), moved by each
        // layer outside (measured).
        Waiting { oneshot: Pin<Box<Oneshot<RouteService<B>, Request<B>>>> },
        Ready { response: Option<Box<Response<Body>>> },
    }
}

impl<B> RouteFuture<B> {
    /// Calls `service` at once when it is ready now (the usual case: a
    /// route's stack waits for nothing) and gives it back for the next
    /// request; else the service drives itself to readiness first, as
    /// `Oneshot` does, in the future.
    pub(crate) fn call(
        mut service: RouteService<B>,
        request: Request<B>,
        matched: Option<MatchedRoute>,
    ) -> (Self, Option<RouteService<B>>) {
        let (state, service) = match call_if_ready(&mut service, request) {
            CallNow::Called(future) => (State::Called { future }, Some(service)),
            // The `Oneshot` polls readiness again with the task's waker.
            CallNow::NotReady(request) => (
                State::Waiting {
                    oneshot: Box::pin(Oneshot::new(service, request)),
                },
                None,
            ),
            CallNow::Failed(never) => match never {},
        };
        (Self { state, matched }, service)
    }

    pub(crate) fn ready(response: Response<Body>) -> Self {
        Self {
            state: State::Ready {
                response: Some(Box::new(response)),
            },
            matched: None,
        }
    }
}

impl<B> fmt::Debug for RouteFuture<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteFuture")
            .field("matched", &self.matched)
            .finish_non_exhaustive()
    }
}

impl<B> Future for RouteFuture<B> {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.state.project() {
            StateProj::Called { future } => match ready!(future.as_mut().poll(cx)) {
                Ok(response) => response,
                Err(never) => match never {},
            },
            StateProj::Waiting { oneshot } => match ready!(oneshot.as_mut().poll(cx)) {
                Ok(response) => response,
                Err(never) => match never {},
            },
            // Polled again after completion: an empty response rather than a panic.
            StateProj::Ready { response } => response.take().map(|r| *r).unwrap_or_default(),
        };
        if let Some(matched) = this.matched.take() {
            response.extensions_mut().insert(matched);
        }
        Poll::Ready(Ok(response))
    }
}
