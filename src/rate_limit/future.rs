use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::headers::{HeaderInfo, retry_after};
use super::store::InFlight;
use crate::body::ResponseBody;
use crate::error::{Rejection, RejectionKind};

pin_project! {
    /// The response future of [`RateLimit`](super::RateLimit).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Allowed {
            #[pin]
            inner: F,
            headers: Option<HeaderInfo>,
            // Released when the response head is ready or the future is
            // dropped, whichever comes first.
            permit: Option<InFlight>,
        },
        Refused {
            headers: HeaderInfo,
            retry_after: u64,
            grpc: bool,
        },
        Overloaded {
            grpc: bool,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn allowed(inner: F, headers: Option<HeaderInfo>, permit: Option<InFlight>) -> Self {
        Self {
            state: State::Allowed {
                inner,
                headers,
                permit,
            },
        }
    }

    pub(crate) fn passthrough(inner: F) -> Self {
        Self::allowed(inner, None, None)
    }

    pub(crate) fn refused(headers: HeaderInfo, retry_after: u64, grpc: bool) -> Self {
        Self {
            state: State::Refused {
                headers,
                retry_after,
                grpc,
            },
        }
    }

    pub(crate) fn overloaded(grpc: bool) -> Self {
        Self {
            state: State::Overloaded { grpc },
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
            StateProj::Allowed {
                inner,
                headers,
                permit,
            } => {
                let result = ready!(inner.poll(cx));
                drop(permit.take());
                Poll::Ready(result.map(|response| {
                    let mut response = response.map(ResponseBody::inner);
                    if let Some(headers) = headers {
                        headers.apply(response.headers_mut());
                    }
                    response
                }))
            }
            StateProj::Refused {
                headers,
                retry_after: wait,
                grpc,
            } => {
                let mut response = Rejection::new(RejectionKind::RateLimited)
                    .with_detail("too many requests: a rate limit is exhausted; retry later")
                    .into_layer_response_for(*grpc);
                headers.apply(response.headers_mut());
                retry_after(response.headers_mut(), *wait);
                Poll::Ready(Ok(response))
            }
            StateProj::Overloaded { grpc } => {
                Poll::Ready(Ok(Rejection::new(RejectionKind::Overloaded)
                    .with_detail("too many requests in flight for this client; retry later")
                    .into_layer_response_for(*grpc)))
            }
        }
    }
}
