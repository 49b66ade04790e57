use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::ResponseFuture as ClientFuture;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

use super::client;
use super::pool::SendFuture;
use super::service::{Shared, respond};
use crate::body::Body;
use crate::error::{Rejection, RejectionKind};

pin_project! {
    /// The response future of [`Proxy`](super::Proxy): resolves when the
    /// upstream's response headers arrive (or the request fails), never
    /// with an error.
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

/// The exchange in flight, on one of the proxy's two clients.
pub(crate) enum Call {
    /// hyper-util's pooled client (h2c, `https`).
    Pooled(ClientFuture),
    /// The proxy's HTTP/1.1 pool.
    Http1(SendFuture),
}

impl Call {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        shared: &Shared,
        client_upgrade: &mut Option<OnUpgrade>,
        grpc: bool,
    ) -> Poll<Response<Body>> {
        Poll::Ready(match self {
            Self::Pooled(call) => match ready!(Pin::new(call).poll(cx)) {
                Ok(response) => shared.finish(response, client_upgrade.take(), grpc),
                Err(error) => respond(client::rejection(error), grpc),
            },
            Self::Http1(call) => match ready!(call.as_mut().poll(cx)) {
                Ok(response) => shared.finish(response, client_upgrade.take(), grpc),
                Err(error) => respond(client::pool_rejection(error), grpc),
            },
        })
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Waiting {
            call: Call,
            // Armed on the first poll, so building the future needs no timer.
            #[pin]
            sleep: Option<Sleep>,
            deadline: Option<Instant>,
            shared: Arc<Shared>,
            client_upgrade: Option<OnUpgrade>,
            grpc: bool,
        },
        Ready {
            response: Option<Response<Body>>,
        },
    }
}

impl ResponseFuture {
    pub(crate) fn new(
        call: Call,
        shared: Arc<Shared>,
        client_upgrade: Option<OnUpgrade>,
        grpc: bool,
    ) -> Self {
        let deadline = shared
            .config
            .response_timeout
            .and_then(|timeout| Instant::now().checked_add(timeout));
        Self {
            state: State::Waiting {
                call,
                sleep: None,
                deadline,
                shared,
                client_upgrade,
                grpc,
            },
        }
    }

    pub(crate) fn ready(response: Response<Body>) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let response = match this.state.as_mut().project() {
            StateProj::Waiting {
                call,
                mut sleep,
                deadline,
                shared,
                client_upgrade,
                grpc,
            } => match call.poll(cx, shared, client_upgrade, *grpc) {
                Poll::Ready(response) => response,
                Poll::Pending => {
                    let Some(deadline) = *deadline else {
                        return Poll::Pending;
                    };
                    if sleep.as_mut().as_pin_mut().is_none() {
                        sleep.set(Some(sleep_until(deadline)));
                    }
                    if let Some(sleep) = sleep.as_pin_mut() {
                        ready!(sleep.poll(cx));
                    }
                    let timeout = shared.config.response_timeout.unwrap_or_default();
                    let rejection =
                        Rejection::new(RejectionKind::UpstreamTimeout).with_detail(format!(
                            "the upstream did not answer within {} ms",
                            timeout.as_millis()
                        ));
                    respond(rejection, *grpc)
                }
            },
            StateProj::Ready { response } => match response.take() {
                Some(response) => response,
                // Polled again after completing: a caller bug, answered
                // rather than panicking on the request path.
                None => respond(
                    Rejection::new(RejectionKind::UpstreamReset)
                        .with_detail("the response was already taken"),
                    false,
                ),
            },
        };
        // Dropping the client future here cancels the upstream request on
        // a timeout; a finished one has nothing left to drop.
        this.state.set(State::Ready { response: None });
        Poll::Ready(Ok(response))
    }
}
