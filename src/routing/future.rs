//! The router's response future.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::util::Oneshot;

use super::{MatchedRoute, RouteService};
use crate::Body;

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

pin_project! {
    #[project = StateProj]
    enum State<B> {
        Called { #[pin] future: Oneshot<RouteService<B>, Request<B>> },
        Ready { response: Option<Response<Body>> },
    }
}

impl<B> RouteFuture<B> {
    pub(crate) fn called(
        future: Oneshot<RouteService<B>, Request<B>>,
        matched: Option<MatchedRoute>,
    ) -> Self {
        Self {
            state: State::Called { future },
            matched,
        }
    }

    pub(crate) fn ready(response: Response<Body>) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
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
            StateProj::Called { future } => match ready!(future.poll(cx)) {
                Ok(response) => response,
                Err(never) => match never {},
            },
            // Polled again after completion: an empty response rather than a panic.
            StateProj::Ready { response } => response.take().unwrap_or_default(),
        };
        if let Some(matched) = this.matched.take() {
            response.extensions_mut().insert(matched);
        }
        Poll::Ready(Ok(response))
    }
}
