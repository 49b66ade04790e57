use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::Response;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

use super::budget;
use crate::body::ResponseBody;
use crate::error::{Rejection, RejectionKind};

pin_project! {
    /// The response future of [`Timeout`](super::Timeout).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running {
            #[pin]
            inner: F,
            #[pin]
            sleep: Sleep,
            // Whole milliseconds, for the message.
            budget_ms: u64,
            grpc: bool,
        },
        Spent {
            grpc: bool,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, deadline: Instant, budget: Duration, grpc: bool) -> Self {
        Self {
            state: State::Running {
                inner,
                sleep: sleep_until(deadline),
                budget_ms: u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
                grpc,
            },
        }
    }

    pub(crate) fn spent(grpc: bool) -> Self {
        Self {
            state: State::Spent { grpc },
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
            StateProj::Running {
                inner,
                sleep,
                budget_ms,
                grpc,
            } => {
                // Layers the inner future calls or polls find this deadline
                // with `Deadline::of`.
                let scope = budget::Scope::enter(sleep.deadline());
                let polled = inner.poll(cx);
                drop(scope);
                if let Poll::Ready(result) = polled {
                    return Poll::Ready(result.map(|r| r.map(ResponseBody::inner)));
                }
                ready!(sleep.poll(cx));
                let rejection = Rejection::new(RejectionKind::Timeout).with_detail(format!(
                    "the request did not complete within its {budget_ms} ms budget"
                ));
                Poll::Ready(Ok(rejection.into_layer_response_for(*grpc)))
            }
            StateProj::Spent { grpc } => {
                let rejection = Rejection::new(RejectionKind::DeadlineExceeded)
                    .with_detail("the request arrived with its time budget already spent");
                Poll::Ready(Ok(rejection.into_layer_response_for(*grpc)))
            }
        }
    }
}
