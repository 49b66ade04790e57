use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::Response;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::budget;
use super::service::SlotGuard;
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
        timer: Timer,
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

pin_project! {
    /// What wakes a running request at its deadline.
    #[project = TimerProj]
    pub(super) enum Timer {
        /// A tokio sleep of the request's own.
        Own {
            #[pin]
            sleep: Sleep,
        },
        /// The [`Timeout`](super::Timeout) clone's reused sleep.
        Reused {
            slot: SlotGuard,
            deadline: Instant,
        },
        /// None: the request was answered at once.
        Off,
    }
}

impl TimerProj<'_> {
    fn deadline(&self) -> Option<Instant> {
        match self {
            TimerProj::Own { sleep } => Some(sleep.deadline()),
            TimerProj::Reused { deadline, .. } => Some(**deadline),
            TimerProj::Off => None,
        }
    }

    fn poll(self, cx: &mut Context<'_>) -> Poll<()> {
        match self {
            TimerProj::Own { sleep } => sleep.poll(cx),
            TimerProj::Reused { slot, deadline } => slot.poll_deadline(*deadline, cx),
            TimerProj::Off => Poll::Pending,
        }
    }
}

impl<F> ResponseFuture<F> {
    #[inline(always)]
    pub(super) fn new(inner: F, timer: Timer, budget: Duration, grpc: bool) -> Self {
        Self {
            inner: Inner::Running { future: inner },
            timer,
            budget_ms: u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
            grpc,
        }
    }

    /// A future that answers at once.
    pub(super) fn spent(grpc: bool) -> Self {
        Self {
            inner: Inner::Spent,
            timer: Timer::Off,
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
                let timer = this.timer.project();
                // Layers the inner future calls or polls find this deadline
                // with `Deadline::of`.
                let scope = timer.deadline().map(budget::Scope::enter);
                let polled = future.poll(cx);
                drop(scope);
                if let Poll::Ready(result) = polled {
                    return Poll::Ready(result.map(|r| r.map(ResponseBody::inner)));
                }
                ready!(timer.poll(cx));
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
