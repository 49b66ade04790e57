//! Request size limits: a `413 Payload Too Large` problem for bodies over a
//! limit, without reading them into memory.
//!
//! [`RequestBodyLimitLayer`] refuses at once a request whose
//! `Content-Length` is over the limit (the inner service is not called), and
//! wraps every other body in [`http_body_util::Limited`], which fails the
//! body as soon as more than the limit has streamed through. The body is
//! never buffered here. What a failed body becomes is up to whoever reads
//! it: the [`proxy`](crate::proxy) answers `413` when it sees the limit's
//! error before the upstream answered; an axum extractor answers `413` too.
//!
//! Header count and size limits belong to the HTTP parser: see
//! `meshgate::gateway::ServerConfig` (feature `gateway`).
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use meshgate::limit::RequestBodyLimitLayer;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = RequestBodyLimitLayer::new(1024).layer(service_fn(|_req: Request<_>| async {
//!     Ok::<_, Infallible>(Response::new(String::from("stored")))
//! }));
//! let too_big = Request::post("/upload")
//!     .header("content-length", "4096")
//!     .body(String::new())
//!     .unwrap();
//! let response = service.oneshot(too_big).await.unwrap();
//! assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
//! assert_eq!(response.headers()["content-type"], "application/problem+json");
//! # }
//! ```

use std::task::{Context, Poll};

use http::header::CONTENT_LENGTH;
use http::{Request, Response};
use http_body_util::Limited;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::error::{Rejection, RejectionKind, is_grpc};
pub use crate::future::ResponseFuture;

/// Refuses request bodies larger than a limit with `413` problem+json.
///
/// See the [module docs](crate::limit).
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct RequestBodyLimitLayer {
    max: usize,
}

impl RequestBodyLimitLayer {
    /// A layer that allows bodies of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self { max }
    }
}

impl<S> Layer<S> for RequestBodyLimitLayer {
    type Service = RequestBodyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestBodyLimit {
            inner,
            max: self.max,
        }
    }
}

/// The service of a [`RequestBodyLimitLayer`]: the inner service gets the
/// body wrapped in [`Limited`].
#[derive(Debug, Clone)]
pub struct RequestBodyLimit<S> {
    inner: S,
    max: usize,
}

impl<S, B, ResBody> Service<Request<B>> for RequestBodyLimit<S>
where
    S: Service<Request<Limited<B>>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max as u64) {
            return ResponseFuture::refused(
                Rejection::new(RejectionKind::PayloadTooLarge)
                    .with_detail(format!(
                        "the request body is larger than {} bytes",
                        self.max
                    ))
                    .into_layer_response_for(is_grpc(request.headers())),
            );
        }
        let request = request.map(|body| Limited::new(body, self.max));
        ResponseFuture::inner(self.inner.call(request))
    }
}
