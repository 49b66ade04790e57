use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::layer::{Config, Refusal, Verdict};
use crate::ResponseBody;

/// The service of [`JwtLayer`](super::JwtLayer).
#[derive(Clone)]
pub struct Jwt<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> fmt::Debug for Jwt<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwt")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S> Jwt<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Jwt { inner, config }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

type BoxedFuture<B, E> = Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

pin_project! {
    /// The response future of [`Jwt`].
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        state: State<F, B, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B, E> {
        Inner {
            #[pin]
            inner: F,
        },
        Refused {
            response: Option<Response<ResponseBody<B>>>,
        },
        // Only when a JWKS must be refreshed first.
        Waiting {
            future: BoxedFuture<B, E>,
        },
    }
}

impl<F, B, E> fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { inner } => inner
                .poll(cx)
                .map(|result| result.map(|r| r.map(ResponseBody::inner))),
            StateProj::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled after completion: a caller bug, answered rather
                // than a panic.
                None => Poll::Ready(Ok(crate::error::Rejection::new(
                    crate::error::RejectionKind::BadRequest,
                )
                .into_layer_response())),
            },
            StateProj::Waiting { future } => future.as_mut().poll(cx),
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Jwt<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        let verdict = match config.token(&request) {
            Ok(Some(token)) => match config.verify(&token, true) {
                Verdict::KeyMissing => Err(token.into_owned()),
                verdict => Ok(verdict),
            },
            Ok(None) => Ok(Verdict::Refused(Refusal::Missing)),
            Err(refusal) => Ok(Verdict::Refused(refusal)),
        };
        match verdict {
            Ok(Verdict::Valid(claims)) => {
                config.forward(&mut request, claims);
                ResponseFuture {
                    state: State::Inner {
                        inner: self.inner.call(request),
                    },
                }
            }
            Ok(Verdict::Refused(refusal)) => ResponseFuture {
                state: State::Refused {
                    response: Some(config.refuse(refusal)),
                },
            },
            Ok(Verdict::KeyMissing) => ResponseFuture {
                state: State::Refused {
                    response: Some(
                        config.refuse(Refusal::Invalid("no key is known for the token's kid")),
                    ),
                },
            },
            Err(token) => {
                // The key may arrive with a JWKS refresh: wait for it on
                // the service that was made ready, leave a clone behind.
                let config = Arc::clone(&self.config);
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let future =
                    async move {
                        config.refresh_jwks().await;
                        match config.verify(&token, false) {
                            Verdict::Valid(claims) => {
                                config.forward(&mut request, claims);
                                inner
                                    .call(request)
                                    .await
                                    .map(|r| r.map(ResponseBody::inner))
                            }
                            Verdict::Refused(refusal) => Ok(config.refuse(refusal)),
                            Verdict::KeyMissing => Ok(config
                                .refuse(Refusal::Invalid("no key is known for the token's kid"))),
                        }
                    };
                ResponseFuture {
                    state: State::Waiting {
                        future: Box::pin(future),
                    },
                }
            }
        }
    }
}
