use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::Response;
use http::header::{HeaderValue, RETRY_AFTER};
use pin_project_lite::pin_project;

use super::breaker::Permit;
use crate::body::ResponseBody;
use crate::classify::Outcome;
use crate::error::{Rejection, RejectionKind};

pin_project! {
    /// The response future of [`CircuitBreaker`](super::CircuitBreaker).
    pub struct ResponseFuture<F> {
        #[pin]
        call: Call<F>,
    }
}

pin_project! {
    // Two variants only, the permit beside the inner future: the refused
    // state then lives in the permit's never-zero tag and the future needs
    // no discriminant of its own. The future is copied whole on each move,
    // and a few bytes over 256 made each copy cost twice as much
    // (measured).
    #[project = CallProj]
    enum Call<F> {
        Running {
            #[pin]
            inner: F,
            // Unguarded for a call no breaker guards (a keyed layer whose
            // key function gave no key).
            permit: Permit,
        },
        Refused {
            retry_after: Duration,
            grpc: bool,
        },
    }
}

impl<F> ResponseFuture<F> {
    #[inline(always)]
    pub(crate) fn guarded(inner: F, permit: Permit) -> Self {
        Self {
            call: Call::Running { inner, permit },
        }
    }

    #[inline]
    pub(crate) fn unguarded(inner: F) -> Self {
        Self::guarded(inner, Permit::unguarded())
    }

    #[inline]
    pub(crate) fn refused(retry_after: Duration, grpc: bool) -> Self {
        Self {
            call: Call::Refused { retry_after, grpc },
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

    // Always inlined into the caller's poll, with the refusal out of line:
    // the response is then written in place rather than copied out
    // (measured).
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().call.project() {
            CallProj::Running { inner, permit } => {
                let result = ready!(inner.poll(cx));
                if permit.pending() {
                    let failure = match &result {
                        Ok(response) => {
                            Outcome::from_response(response).is_breaker_failure()
                                || permit.was_slow()
                        }
                        Err(_) => true,
                    };
                    permit.record(failure);
                }
                Poll::Ready(result.map(|r| r.map(ResponseBody::inner)))
            }
            CallProj::Refused { retry_after, grpc } => {
                Poll::Ready(Ok(refusal(*retry_after, *grpc)))
            }
        }
    }
}

/// The 503 of an open breaker, out of line so that the inlined `poll` stays
/// small.
#[cold]
#[inline(never)]
fn refusal<B>(retry_after: Duration, grpc: bool) -> Response<ResponseBody<B>> {
    let mut response = Rejection::new(RejectionKind::CircuitOpen)
        .with_detail("the upstream is failing; the circuit breaker is open")
        .into_layer_response_for(grpc);
    // Whole seconds, rounded up, never 0.
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An inner future with no niche to lend, as most are; its words are
    /// there for their size only.
    #[allow(dead_code)]
    struct Plain([u64; 29]);

    impl Future for Plain {
        type Output = Result<Response<()>, ()>;

        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            Poll::Ready(Ok(Response::new(())))
        }
    }

    #[test]
    fn the_future_is_the_inner_one_and_a_permit_with_no_discriminant() {
        assert_eq!(
            std::mem::size_of::<ResponseFuture<Plain>>(),
            std::mem::size_of::<Plain>() + std::mem::size_of::<Permit>(),
        );
        assert_eq!(std::mem::size_of::<Permit>(), 24);
    }
}
