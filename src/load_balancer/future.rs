use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::balancer::Balancer;
use super::endpoint::SelectedEndpoint;
use super::outlier::Observed;
use crate::body::ResponseBody;
use crate::classify::{Failure, Outcome};
use crate::error::{Rejection, RejectionKind};

/// One request to an endpoint: counted in flight from the call until the
/// response head or until the future is dropped.
///
/// A request cancelled before its response (the client went away, an outer
/// timeout fired) counts no outcome, but its time so far still goes into the
/// latency estimate, as in tower's peak-EWMA: an endpoint that hangs until
/// every caller gives up must not look fast.
pub(crate) struct CallGuard {
    balancer: Arc<Balancer>,
    selected: SelectedEndpoint,
    start: Instant,
    finished: bool,
}

impl CallGuard {
    pub(crate) fn start(balancer: Arc<Balancer>, selected: SelectedEndpoint) -> Self {
        let stats = &selected.0.stats;
        stats.requests.fetch_add(1, Ordering::Relaxed);
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        Self {
            balancer,
            selected,
            start: Instant::now(),
            finished: false,
        }
    }

    /// Records the outcome; the endpoint to tag the response with, if the
    /// balancer tags responses.
    fn finish(mut self, observed: Observed) -> Option<SelectedEndpoint> {
        self.finished = true;
        self.balancer.record(&self.selected.0, observed, self.start);
        self.balancer.tag_responses.then(|| self.selected.clone())
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.balancer.record_latency(&self.selected.0, self.start);
        }
        self.selected
            .0
            .stats
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project! {
    /// The response future of [`LoadBalancer`](super::LoadBalancer).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called {
            #[pin]
            inner: F,
            guard: Option<CallGuard>,
        },
        Refused {
            rejection: Option<Rejection>,
            grpc: bool,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(inner: F, guard: CallGuard) -> Self {
        Self {
            state: State::Called {
                inner,
                guard: Some(guard),
            },
        }
    }

    pub(crate) fn unavailable(grpc: bool, empty: bool) -> Self {
        let detail = if empty {
            "the upstream has no endpoints"
        } else {
            "no healthy endpoint is available for the upstream"
        };
        Self::refused(
            Rejection::new(RejectionKind::NoHealthyEndpoint).with_detail(detail),
            grpc,
        )
    }

    pub(crate) fn bad_target(grpc: bool) -> Self {
        Self::refused(
            Rejection::new(RejectionKind::BadRequest)
                .with_detail("the request target cannot be sent upstream"),
            grpc,
        )
    }

    fn refused(rejection: Rejection, grpc: bool) -> Self {
        Self {
            state: State::Refused {
                rejection: Some(rejection),
                grpc,
            },
        }
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
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { inner, guard } => {
                let result = ready!(inner.poll(cx));
                let Some(guard) = guard.take() else {
                    // Polled again after completion: pass the result on.
                    return Poll::Ready(result.map(|r| r.map(ResponseBody::inner)));
                };
                Poll::Ready(match result {
                    Ok(mut response) => {
                        let observed = Observed::from_outcome(Outcome::from_response(&response));
                        if let Some(selected) = guard.finish(observed) {
                            response.extensions_mut().insert(selected);
                        }
                        Ok(response.map(ResponseBody::inner))
                    }
                    Err(error) => {
                        // A service error says the request did not get
                        // through: a gateway error for outlier detection.
                        guard.finish(Observed::Failure(Failure::Reset));
                        Err(error)
                    }
                })
            }
            StateProj::Refused { rejection, grpc } => {
                let rejection = rejection
                    .take()
                    .unwrap_or_else(|| Rejection::new(RejectionKind::NoHealthyEndpoint));
                Poll::Ready(Ok(rejection.into_layer_response_for(*grpc)))
            }
        }
    }
}
