//! One structured access-log event per request, through [`tracing`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::{CONTENT_LENGTH, USER_AGENT};
use http::{Method, Request, Response, Uri, Version};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::RequestId;
use crate::error::Rejection;
use crate::peer::PeerAddr;

/// The `tracing` target of access-log events, for filtering them
/// (`RUST_LOG=meshgate::access=info`) or routing them to their own writer.
pub const ACCESS_LOG_TARGET: &str = "meshgate::access";

/// Emits one `INFO` event per request under the target
/// [`ACCESS_LOG_TARGET`] when the response head is ready.
///
/// Fields: `method`, `path` (without the query unless
/// [`with_query`](Self::with_query) is set, since queries often carry
/// tokens), `version`, `status`, `duration_ms`, `request_id` (from
/// [`RequestId`], so put this layer inside the request-id layer), `peer` (from
/// [`PeerAddr`]), `user_agent`, `bytes` (the response `content-length`, when
/// known), `rejection` (the [`RejectionKind`](crate::RejectionKind) name when
/// a meshgate layer answered) and `error` when the service failed. Whether
/// the event is written as text or JSON is the subscriber's choice
/// (`tracing-subscriber`'s `fmt` or `fmt().json()`). A request dropped before
/// its answer is logged with `status = 0` and `dropped = true`; a service
/// error with `status = 0` and the error's text.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct AccessLogLayer {
    with_query: bool,
}

impl AccessLogLayer {
    /// A layer that logs paths without their query.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the query string is logged with the path. Default: false.
    pub fn with_query(mut self, with_query: bool) -> Self {
        self.with_query = with_query;
        self
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessLog {
            inner,
            with_query: self.with_query,
        }
    }
}

/// The service of an [`AccessLogLayer`].
#[derive(Debug, Clone)]
pub struct AccessLog<S> {
    inner: S,
    with_query: bool,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AccessLog<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = AccessLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // Only what the event needs is copied, and only when it is enabled.
        let entry = tracing::enabled!(target: ACCESS_LOG_TARGET, tracing::Level::INFO).then(|| {
            Box::new(Entry {
                method: request.method().clone(),
                uri: request.uri().clone(),
                version: request.version(),
                request_id: request.extensions().get::<RequestId>().cloned(),
                peer: request.extensions().get::<PeerAddr>().copied(),
                user_agent: request
                    .headers()
                    .get(USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                with_query: self.with_query,
                started: Instant::now(),
            })
        });
        AccessLogFuture {
            inner: self.inner.call(request),
            entry,
        }
    }
}

/// What is known of a request when it starts.
#[derive(Debug)]
struct Entry {
    method: Method,
    uri: Uri,
    version: Version,
    request_id: Option<RequestId>,
    peer: Option<PeerAddr>,
    user_agent: Option<String>,
    with_query: bool,
    started: Instant,
}

impl Entry {
    fn log(&self, status: u16, bytes: Option<u64>, rejection: Option<&str>, error: Option<&str>) {
        let dropped = status == 0 && error.is_none();
        let path = if self.with_query {
            self.uri.path_and_query().map_or("/", |pq| pq.as_str())
        } else {
            self.uri.path()
        };
        let duration_ms = self.started.elapsed().as_secs_f64() * 1_000.0;
        tracing::info!(
            target: ACCESS_LOG_TARGET,
            method = %self.method,
            path,
            version = ?self.version,
            status,
            duration_ms,
            request_id = self.request_id.as_ref().map(RequestId::as_str),
            peer = self.peer.map(|p| tracing::field::display(p.0)),
            user_agent = self.user_agent.as_deref(),
            bytes,
            rejection,
            error,
            dropped,
        );
    }
}

pin_project! {
    /// The response future of [`AccessLog`].
    #[derive(Debug)]
    pub struct AccessLogFuture<F> {
        #[pin]
        inner: F,
        entry: Option<Box<Entry>>,
    }

    impl<F> PinnedDrop for AccessLogFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(entry) = this.project().entry.take() {
                entry.log(0, None, None, None);
            }
        }
    }
}

impl<F, B, E> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: std::fmt::Display,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Some(entry) = this.entry.take() {
            match &result {
                Ok(response) => {
                    let bytes = response
                        .headers()
                        .get(CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok()?.parse().ok());
                    let rejection = response
                        .extensions()
                        .get::<Rejection>()
                        .map(|r| r.kind().as_str());
                    entry.log(response.status().as_u16(), bytes, rejection, None);
                }
                Err(error) => entry.log(0, None, None, Some(&error.to_string())),
            }
        }
        Poll::Ready(result)
    }
}
