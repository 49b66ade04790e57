use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::TransformStats;
use super::body::{Collected, Collector, TransformBody};
use super::json::JsonOps;
use super::stats::{BodyOutcome, Counters};
use super::template::{Captured, Lookup, NoVars, VarSet};

/// The default size cap of a body to rewrite: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// Adds, removes, renames and replaces fields of JSON request and response
/// bodies (Kong's `request-transformer` / `response-transformer` `json`
/// options).
///
/// A body is rewritten only when its side has operations, its
/// `content-type` is `application/json` or `application/*+json`, it has no
/// `content-encoding`, and it is a JSON object of at most
/// [`max_body`](Self::max_body) bytes. Every other body passes through
/// untouched, as Kong does, and streams: a body is only buffered when
/// operations apply to it. A body over the cap (by `content-length`, or
/// found while reading) is sent on as it came, the part already read first;
/// a body that is not a JSON object is sent on byte for byte. Both are
/// counted ([`TransformStats`], and the `meshgate_transform_bodies_total`
/// metric with the `metrics` feature). Empty bodies are not read. A
/// rewritten body gets a new `content-length` (and loses
/// `transfer-encoding`; a strong `ETag` of a response becomes weak); its
/// keys come out in sorted order. Responses to `HEAD` and responses with status 1xx, 204,
/// 206 or 304 are never rewritten.
///
/// Values may be templates ([`JsonOps`]); the request's variables are read
/// before the request is changed, and response templates see them too.
///
/// The inner service gets a [`TransformBody`] of the request body and the
/// response body comes back wrapped in one; both bodies must be `Unpin`
/// (hyper's, axum's and the crate's [`Body`](crate::Body) are).
///
/// Clones share the operations and the counters.
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use http_body_util::{BodyExt, Full};
/// use bytes::Bytes;
/// use meshgate::transform::{JsonBodyLayer, JsonOps, TransformBody};
/// use serde_json::json;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let layer = JsonBodyLayer::new()
///     .response(JsonOps::new().remove("internal").rename("n", "count"));
/// let service = layer.layer(service_fn(|_: Request<TransformBody<Full<Bytes>>>| async {
///     let body = Full::from(r#"{"n":3,"internal":"x"}"#);
///     Ok::<_, Infallible>(Response::builder().header("content-type", "application/json").body(body).unwrap())
/// }));
/// let response = service.oneshot(Request::new(Full::default())).await.unwrap();
/// assert_eq!(response.headers()["content-length"], "11");
/// let body = response.into_body().collect().await.unwrap().to_bytes();
/// assert_eq!(&body[..], br#"{"count":3}"#);
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct JsonBodyLayer {
    request: JsonOps,
    response: JsonOps,
    max_body: usize,
    client_ip: Option<crate::net::TrustedProxies>,
    counters: Arc<Counters>,
}

impl Default for JsonBodyLayer {
    fn default() -> Self {
        Self {
            request: JsonOps::new(),
            response: JsonOps::new(),
            max_body: DEFAULT_MAX_BODY,
            client_ip: None,
            counters: Arc::default(),
        }
    }
}

impl JsonBodyLayer {
    /// A layer that changes nothing until given operations.
    pub fn new() -> Self {
        Self::default()
    }

    /// The operations on JSON request bodies.
    ///
    /// Default: none.
    pub fn request(mut self, ops: JsonOps) -> Self {
        self.request = ops;
        self
    }

    /// The operations on JSON response bodies.
    ///
    /// Default: none.
    pub fn response(mut self, ops: JsonOps) -> Self {
        self.response = ops;
        self
    }

    /// The largest body that is rewritten; larger ones pass untouched.
    ///
    /// Default: 1 MiB ([`DEFAULT_MAX_BODY`]).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// How `${client_ip}` is resolved, as
    /// [`TransformLayer::client_ip`](super::TransformLayer::client_ip).
    ///
    /// Default: the socket peer.
    pub fn client_ip(mut self, resolver: crate::net::TrustedProxies) -> Self {
        self.client_ip = Some(resolver);
        self
    }

    /// What the services of this layer (and its clones) did so far.
    #[must_use]
    pub fn stats(&self) -> TransformStats {
        self.counters.snapshot()
    }

    /// Whether neither side has operations.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }

    /// The body layer of a route's `transform` section: `request.body`,
    /// `response.body` and `max_body`; `None` when neither side has body
    /// operations. `${client_ip}` trusts the config's `trusted_proxies`.
    #[cfg(feature = "config")]
    pub fn from_config(
        config: &crate::config::Transform,
        trusted_proxies: &[crate::config::Cidr],
    ) -> Result<Option<Self>, super::TemplateError> {
        let layer = Self::new()
            .request(JsonOps::from_config(&config.request.body).map_err(|e| e.at("request.body"))?)
            .response(
                JsonOps::from_config(&config.response.body).map_err(|e| e.at("response.body"))?,
            )
            .max_body(usize::try_from(config.max_body.as_u64()).unwrap_or(usize::MAX));
        let layer = layer.client_ip(crate::net::TrustedProxies::new(
            trusted_proxies.iter().copied(),
        ));
        Ok((!layer.is_empty()).then_some(layer))
    }
}

/// What every clone of a [`JsonBody`] reads.
#[derive(Debug)]
struct Shared {
    request: JsonOps,
    response: JsonOps,
    max_body: usize,
    client_ip: Option<crate::net::TrustedProxies>,
    vars: Arc<VarSet>,
    counters: Arc<Counters>,
}

impl<S> Layer<S> for JsonBodyLayer {
    type Service = JsonBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let mut vars = VarSet::new(Arc::clone(&self.counters));
        vars.add(self.request.vars());
        vars.add(self.response.vars());
        JsonBody {
            inner,
            shared: Arc::new(Shared {
                request: self.request.clone(),
                response: self.response.clone(),
                max_body: self.max_body,
                client_ip: self.client_ip.clone(),
                vars: Arc::new(vars),
                counters: Arc::clone(&self.counters),
            }),
        }
    }
}

/// Rewrites JSON request and response bodies; built by [`JsonBodyLayer`].
#[derive(Debug, Clone)]
pub struct JsonBody<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> JsonBody<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// Whether a body with these headers is a JSON document that may be
/// rewritten: a JSON media type, no content coding.
fn is_plain_json(headers: &HeaderMap) -> bool {
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let essence = v.split(';').next().unwrap_or("").trim();
            let Some((kind, sub)) = essence.split_once('/') else {
                return false;
            };
            kind.eq_ignore_ascii_case("application")
                && (sub.eq_ignore_ascii_case("json")
                    || sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case("+json"))
        });
    let encoded = headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    json && !encoded
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for JsonBody<S>
where
    S: Service<Request<TransformBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    ReqBody: http_body::Body<Data = Bytes> + Unpin,
    ResBody: http_body::Body<Data = Bytes> + Unpin,
{
    type Response = Response<TransformBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        let captured = shared
            .vars
            .capture_request(&request, shared.client_ip.as_ref());
        let response_ops = !shared.response.is_empty() && request.method() != Method::HEAD;
        let expected = content_length(request.headers());
        // An empty body (a GET, say) has nothing to rewrite.
        let mut rewrite_request = !shared.request.is_empty()
            && expected != Some(0)
            && !http_body::Body::is_end_stream(request.body())
            && is_plain_json(request.headers());
        if rewrite_request && expected.is_some_and(|n| n > shared.max_body as u64) {
            shared.counters.body(BodyOutcome::TooLarge);
            rewrite_request = false;
        }
        let state = if rewrite_request {
            // The inner service was made ready for this call; a clone takes
            // its place for the next one.
            let clone = self.inner.clone();
            let service = std::mem::replace(&mut self.inner, clone);
            let (head, body) = request.into_parts();
            State::ReadRequest {
                head: Some(head),
                body: Some(body),
                collector: Collector::new(shared.max_body, expected),
                service: Some(service),
            }
        } else {
            State::Call {
                future: self.inner.call(request.map(TransformBody::inner)),
            }
        };
        ResponseFuture {
            state,
            shared,
            captured,
            response_ops,
        }
    }
}

pin_project! {
    /// The response future of [`JsonBody`].
    pub struct ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<TransformBody<ReqBody>>>,
        ReqBody: http_body::Body,
    {
        #[pin]
        state: State<S, ReqBody, ResBody>,
        shared: Arc<Shared>,
        captured: Option<Captured>,
        response_ops: bool,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, ResBody>
    where
        S: Service<Request<TransformBody<ReqBody>>>,
        ReqBody: http_body::Body,
    {
        ReadRequest {
            head: Option<http::request::Parts>,
            body: Option<ReqBody>,
            collector: Collector,
            service: Option<S>,
        },
        Call {
            #[pin]
            future: S::Future,
        },
        ReadResponse {
            head: Option<http::response::Parts>,
            body: Option<ResBody>,
            collector: Collector,
        },
        Done,
    }
}

impl<S, ReqBody, ResBody> std::fmt::Debug for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<TransformBody<ReqBody>>>,
    ReqBody: http_body::Body,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// Rewrites a complete body: `Some(new body)` when it was a JSON object.
fn rewrite(data: &[u8], ops: &JsonOps, vars: &dyn Lookup, counters: &Counters) -> Option<Bytes> {
    let Ok(serde_json::Value::Object(mut map)) = serde_json::from_slice(data) else {
        counters.body(BodyOutcome::NotJson);
        return None;
    };
    ops.apply(&mut map, vars);
    // Serializing a map of JSON values cannot fail.
    let out = serde_json::to_vec(&map).ok()?;
    counters.body(BodyOutcome::Transformed);
    Some(Bytes::from(out))
}

fn set_length(headers: &mut HeaderMap, len: usize) {
    headers.remove(TRANSFER_ENCODING);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
}

/// A rewritten body is no longer byte-for-byte what a strong `ETag`
/// names: it becomes weak (`W/"…"`), still usable for revalidation.
fn weaken_etag(headers: &mut HeaderMap) {
    let Some(etag) = headers.get_mut(http::header::ETAG) else {
        return;
    };
    if etag.as_bytes().starts_with(b"\"") {
        let mut weak = Vec::with_capacity(etag.len() + 2);
        weak.extend_from_slice(b"W/");
        weak.extend_from_slice(etag.as_bytes());
        // The old value was valid and `W/` is visible ASCII.
        if let Ok(value) = HeaderValue::from_bytes(&weak) {
            *etag = value;
        }
    }
}

/// A response status whose body is never rewritten.
fn bodiless_or_partial(status: StatusCode) -> bool {
    status.is_informational()
        || matches!(
            status,
            StatusCode::NO_CONTENT | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
        )
}

impl<S, ReqBody, ResBody, E> Future for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<TransformBody<ReqBody>>, Response = Response<ResBody>, Error = E>,
    ReqBody: http_body::Body<Data = Bytes> + Unpin,
    ResBody: http_body::Body<Data = Bytes> + Unpin,
{
    type Output = Result<Response<TransformBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let view = this
            .captured
            .as_ref()
            .map(|captured| captured.with(&this.shared.vars));
        let vars: &dyn Lookup = match &view {
            Some(view) => view,
            None => &NoVars,
        };
        loop {
            match this.state.as_mut().project() {
                StateProj::ReadRequest {
                    head,
                    body,
                    collector,
                    service,
                } => {
                    let collected = ready!(collector.poll(body, cx));
                    let (Some(mut head), Some(mut service)) = (head.take(), service.take()) else {
                        // Both are taken together, just before the state
                        // changes: a poll after completion.
                        this.state.set(State::Done);
                        continue;
                    };
                    let body = match collected {
                        Collected::Complete { data, trailers } => {
                            match rewrite(&data, &this.shared.request, vars, &this.shared.counters)
                            {
                                Some(rewritten) => {
                                    set_length(&mut head.headers, rewritten.len());
                                    TransformBody::buffered(rewritten, trailers)
                                }
                                None => TransformBody::buffered(data, trailers),
                            }
                        }
                        Collected::TooLarge(body) => {
                            this.shared.counters.body(BodyOutcome::TooLarge);
                            body
                        }
                        Collected::Failed(body) => body,
                    };
                    let future = service.call(Request::from_parts(head, body));
                    this.state.set(State::Call { future });
                }
                StateProj::Call { future } => {
                    let response = ready!(future.poll(cx))?;
                    if !*this.response_ops
                        || bodiless_or_partial(response.status())
                        || !is_plain_json(response.headers())
                    {
                        this.state.set(State::Done);
                        return Poll::Ready(Ok(response.map(TransformBody::inner)));
                    }
                    let expected = content_length(response.headers());
                    if expected == Some(0) || http_body::Body::is_end_stream(response.body()) {
                        this.state.set(State::Done);
                        return Poll::Ready(Ok(response.map(TransformBody::inner)));
                    }
                    if expected.is_some_and(|n| n > this.shared.max_body as u64) {
                        this.shared.counters.body(BodyOutcome::TooLarge);
                        this.state.set(State::Done);
                        return Poll::Ready(Ok(response.map(TransformBody::inner)));
                    }
                    let (head, body) = response.into_parts();
                    this.state.set(State::ReadResponse {
                        head: Some(head),
                        body: Some(body),
                        collector: Collector::new(this.shared.max_body, expected),
                    });
                }
                StateProj::ReadResponse {
                    head,
                    body,
                    collector,
                } => {
                    let collected = ready!(collector.poll(body, cx));
                    let Some(mut head) = head.take() else {
                        this.state.set(State::Done);
                        continue;
                    };
                    let body = match collected {
                        Collected::Complete { data, trailers } => {
                            match rewrite(&data, &this.shared.response, vars, &this.shared.counters)
                            {
                                Some(rewritten) => {
                                    set_length(&mut head.headers, rewritten.len());
                                    weaken_etag(&mut head.headers);
                                    TransformBody::buffered(rewritten, trailers)
                                }
                                None => TransformBody::buffered(data, trailers),
                            }
                        }
                        Collected::TooLarge(body) => {
                            this.shared.counters.body(BodyOutcome::TooLarge);
                            body
                        }
                        Collected::Failed(body) => body,
                    };
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(Response::from_parts(head, body)));
                }
                // Polled after completion: a future contract violation by
                // the caller; never answer twice.
                StateProj::Done => return Poll::Pending,
            }
        }
    }
}
