//! A route that accepts a JWT **or** an API key.
//!
//! [`JwtOrApiKeyLayer`] sends a request that carries a bearer token to the
//! JWT check and one that carries an API key to the key check (the token
//! wins when both are present). A request with neither runs as the API-key
//! layer's anonymous consumer when it has one; else it gets `401` with both
//! challenges (`WWW-Authenticate: Bearer realm="meshgate"` and
//! `Key realm="meshgate"`). A credential that is present but wrong is
//! refused by its own layer: there is no fall-through to the other scheme.
//! The identity headers of both schemes (`X-User-ID`, `X-Consumer-*`, …)
//! are removed from every request first, so one scheme's caller cannot
//! spoof the other's.
//!
//! ```
//! use meshgate::auth::any::JwtOrApiKeyLayer;
//! use meshgate::auth::api_key::ApiKeyLayer;
//! use meshgate::auth::jwt::{Algorithm, Issuer, JwtKey, JwtLayer};
//! use meshgate::auth::ConsumerStore;
//!
//! let jwt = JwtLayer::new(Issuer::new().key(
//!     JwtKey::hmac(Algorithm::HS256, b"0123456789abcdef0123456789abcdef").unwrap(),
//! ));
//! let layer = JwtOrApiKeyLayer::new(jwt, ApiKeyLayer::new(ConsumerStore::new()));
//! # let _ = layer;
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::WWW_AUTHENTICATE;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::api_key::{ApiKey, ApiKeyLayer};
use super::jwt::{Jwt, JwtLayer};
use crate::ResponseBody;
use crate::error::{Rejection, RejectionKind};

/// Accepts a JWT or an API key. See the [module docs](self).
#[derive(Debug, Clone)]
#[must_use]
pub struct JwtOrApiKeyLayer {
    jwt: JwtLayer,
    api_key: ApiKeyLayer,
}

impl JwtOrApiKeyLayer {
    /// Either of these two checks.
    pub fn new(jwt: JwtLayer, api_key: ApiKeyLayer) -> Self {
        JwtOrApiKeyLayer { jwt, api_key }
    }
}

impl<S: Clone> Layer<S> for JwtOrApiKeyLayer {
    type Service = JwtOrApiKey<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtOrApiKey {
            jwt: self.jwt.layer(inner.clone()),
            api_key: self.api_key.layer(inner),
            layers: self.clone(),
        }
    }
}

/// The service of [`JwtOrApiKeyLayer`].
#[derive(Clone)]
pub struct JwtOrApiKey<S> {
    jwt: Jwt<S>,
    api_key: ApiKey<S>,
    layers: JwtOrApiKeyLayer,
}

impl<S> fmt::Debug for JwtOrApiKey<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtOrApiKey")
            .field("layers", &self.layers)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// The response future of [`JwtOrApiKey`].
    pub struct ResponseFuture<J, K, B> {
        #[pin]
        state: State<J, K, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<J, K, B> {
        Jwt { #[pin] future: J },
        ApiKey { #[pin] future: K },
        Refused { response: Option<Response<ResponseBody<B>>> },
    }
}

impl<J, K, B> fmt::Debug for ResponseFuture<J, K, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<J, K, B, E> Future for ResponseFuture<J, K, B>
where
    J: Future<Output = Result<Response<ResponseBody<B>>, E>>,
    K: Future<Output = Result<Response<ResponseBody<B>>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Jwt { future } => future.poll(cx),
            StateProj::ApiKey { future } => future.poll(cx),
            StateProj::Refused { response } => Poll::Ready(Ok(response.take().unwrap_or_else(
                // Polled after completion: a caller bug, answered rather
                // than a panic.
                || Rejection::new(RejectionKind::BadRequest).into_layer_response(),
            ))),
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for JwtOrApiKey<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<
        <Jwt<S> as Service<Request<ReqBody>>>::Future,
        <ApiKey<S> as Service<Request<ReqBody>>>::Future,
        ResBody,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Either may take the request, so both must be ready.
        ready!(Service::<Request<ReqBody>>::poll_ready(&mut self.jwt, cx))?;
        Service::<Request<ReqBody>>::poll_ready(&mut self.api_key, cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // Each scheme removes only its own identity headers: remove the
        // other's too, so a request that passes one cannot spoof the other.
        self.layers
            .jwt
            .strip_identity_headers(request.headers_mut());
        self.layers
            .api_key
            .strip_identity_headers(request.headers_mut());
        let state = if self.layers.jwt.presents_token(&request) {
            State::Jwt {
                future: self.jwt.call(request),
            }
        } else if self.layers.api_key.presents_key(&request) || self.layers.api_key.has_anonymous()
        {
            State::ApiKey {
                future: self.api_key.call(request),
            }
        } else {
            let mut response = Rejection::new(RejectionKind::Unauthenticated)
                .with_detail("a bearer token or an API key is required")
                .into_layer_response();
            let headers = response.headers_mut();
            headers.append(WWW_AUTHENTICATE, self.layers.jwt.challenge());
            headers.append(WWW_AUTHENTICATE, self.layers.api_key.challenge());
            State::Refused {
                response: Some(response),
            }
        };
        ResponseFuture { state }
    }
}
