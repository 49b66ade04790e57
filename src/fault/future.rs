use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::time::{Sleep, sleep};
use tower_service::Service;

use super::service::InjectedFault;
use crate::body::ResponseBody;
use crate::error::Problem;

pin_project! {
    /// The response future of [`Fault`](super::Fault).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
        delayed: Option<Duration>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Call {
            #[pin]
            future: S::Future,
        },
        Delay {
            #[pin]
            sleep: Sleep,
            // `None` once called; `service` and `request` are taken together.
            service: Option<S>,
            request: Option<Request<B>>,
            abort: Option<StatusCode>,
        },
        Abort {
            status: StatusCode,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn call(future: S::Future) -> Self {
        Self {
            state: State::Call { future },
            delayed: None,
        }
    }

    pub(crate) fn abort(status: StatusCode, delayed: Option<Duration>) -> Self {
        Self {
            state: State::Abort { status },
            delayed,
        }
    }

    pub(crate) fn delay_then_abort(delay: Duration, status: StatusCode) -> Self {
        Self {
            state: State::Delay {
                sleep: sleep(delay),
                service: None,
                request: None,
                abort: Some(status),
            },
            delayed: Some(delay),
        }
    }

    pub(crate) fn delay_then_call(delay: Duration, service: S, request: Request<B>) -> Self {
        Self {
            state: State::Delay {
                sleep: sleep(delay),
                service: Some(service),
                request: Some(request),
                abort: None,
            },
            delayed: Some(delay),
        }
    }
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("delayed", &self.delayed)
            .finish_non_exhaustive()
    }
}

fn aborted<B>(status: StatusCode, delayed: Option<Duration>) -> Response<ResponseBody<B>> {
    let mut response = Problem::new(status)
        .with_detail("fault injected")
        .into_response()
        .map(ResponseBody::local);
    response.extensions_mut().insert(InjectedFault {
        delayed,
        aborted: Some(status),
    });
    response
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Call { future } => {
                    let mut response = ready!(future.poll(cx))?.map(ResponseBody::inner);
                    if let Some(delayed) = *this.delayed {
                        response.extensions_mut().insert(InjectedFault {
                            delayed: Some(delayed),
                            aborted: None,
                        });
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Delay {
                    sleep,
                    service,
                    request,
                    abort,
                } => {
                    ready!(sleep.poll(cx));
                    let next = match (service.take(), request.take()) {
                        (Some(mut service), Some(request)) => State::Call {
                            future: service.call(request),
                        },
                        // Built without a service only to abort afterwards.
                        _ => State::Abort {
                            status: abort.unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                        },
                    };
                    this.state.set(next);
                }
                StateProj::Abort { status } => {
                    return Poll::Ready(Ok(aborted(*status, *this.delayed)));
                }
            }
        }
    }
}
