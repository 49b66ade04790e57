use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::Response;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::budget;
use crate::body::ResponseBody;
use crate::error::{Rejection, RejectionKind};

pin_project! {
    /// The response future of [`Timeout`](super::Timeout).
    pub struct ResponseFuture<F> {
        // A flat struct like tower's, rather than an enum of running and
        // spent: each move of an enum holding the inner future was a copy
        // more (measured).
        #[pin]
        inner: Inner<F>,
        #[pin]
        sleep: Sleep,
        // Whole milliseconds, for the message.
        budget_ms: u64,
        grpc: bool,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<F> {
        Running {
            #[pin]
            future: F,
        },
        // The budget was spent on arrival: answer at once.
        Spent,
    }
}

impl<F> ResponseFuture<F> {
    #[inline(always)]
    pub(crate) fn new(inner: F, sleep: Sleep, budget: Duration, grpc: bool) -> Self {
        Self {
            inner: Inner::Running { future: inner },
            sleep,
            budget_ms: u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
            grpc,
        }
    }

    /// A future that answers at once; `sleep` is never polled.
    pub(crate) fn spent(sleep: Sleep, grpc: bool) -> Self {
        Self {
            inner: Inner::Spent,
            sleep,
            budget_ms: 0,
            grpc,
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

    // Always inlined into the caller's poll, with the answers this layer
    // makes out of line: the response is then written in place rather
    // than copied out (measured).
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.inner.project() {
            InnerProj::Running { future } => {
                // Layers the inner future calls or polls find this deadline
                // with `Deadline::of`.
                let scope = budget::Scope::enter(this.sleep.deadline());
                let polled = future.poll(cx);
                drop(scope);
                if let Poll::Ready(result) = polled {
                    return Poll::Ready(result.map(|r| r.map(ResponseBody::inner)));
                }
                ready!(this.sleep.poll(cx));
                Poll::Ready(Ok(timed_out(*this.budget_ms, *this.grpc)))
            }
            InnerProj::Spent => Poll::Ready(Ok(spent(*this.grpc))),
        }
    }
}

/// The 504 for a request that ran past its budget; out of line so that
/// the inlined `poll` stays small.
#[cold]
#[inline(never)]
fn timed_out<B>(budget_ms: u64, grpc: bool) -> Response<ResponseBody<B>> {
    Rejection::new(RejectionKind::Timeout)
        .with_detail(format!(
            "the request did not complete within its {budget_ms} ms budget"
        ))
        .into_layer_response_for(grpc)
}

/// The 504 for a request whose budget was spent on arrival.
#[cold]
#[inline(never)]
fn spent<B>(grpc: bool) -> Response<ResponseBody<B>> {
    Rejection::new(RejectionKind::DeadlineExceeded)
        .with_detail("the request arrived with its time budget already spent")
        .into_layer_response_for(grpc)
}
