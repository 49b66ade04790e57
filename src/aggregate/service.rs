use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Map, Value};
use tokio::time::{Instant, timeout_at};
use tower_service::Service;

use super::call::{AggregateCall, AggregateError};
use crate::BoxError;
use crate::body::Body;
use crate::error::{Problem, Rejection, RejectionKind};

/// Builds an [`Aggregate`]; see the [module docs](crate::aggregate).
#[derive(Debug, Clone)]
#[must_use]
pub struct AggregateBuilder {
    calls: Vec<AggregateCall>,
    deadline: Duration,
    max_body: usize,
    concurrency: usize,
    forward: Vec<HeaderName>,
}

impl Default for AggregateBuilder {
    fn default() -> Self {
        Self {
            calls: Vec::new(),
            deadline: Duration::from_secs(10),
            max_body: 1024 * 1024,
            concurrency: 8,
            forward: vec![
                AUTHORIZATION,
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("traceparent"),
                HeaderName::from_static("tracestate"),
            ],
        }
    }
}

impl AggregateBuilder {
    /// Adds a call.
    pub fn call(mut self, call: AggregateCall) -> Self {
        self.calls.push(call);
        self
    }

    /// The time the whole aggregate may take; calls still running then fail
    /// with `deadline exceeded`.
    ///
    /// Default: 10 s.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The largest sub-response body read; a larger one fails its call.
    ///
    /// Default: 1 MiB.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The most calls in flight at once for one aggregate request; at least 1
    /// (0 is taken as 1).
    ///
    /// Default: 8.
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = limit.max(1);
        self
    }

    /// The request headers copied from the original request into every call.
    ///
    /// Default: `authorization`, `x-request-id`, `traceparent`, `tracestate`.
    pub fn forward_headers(mut self, headers: impl IntoIterator<Item = HeaderName>) -> Self {
        self.forward = headers.into_iter().collect();
        self
    }

    /// The aggregate, calling `inner` for every sub-request.
    ///
    /// Errors when there is no call, two calls share a key, or a key is
    /// `errors` (reserved for the failures of optional calls).
    pub fn build<S>(self, inner: S) -> Result<Aggregate<S>, AggregateError> {
        if self.calls.is_empty() {
            return Err(AggregateError(
                "an aggregate needs at least one call".into(),
            ));
        }
        for (i, call) in self.calls.iter().enumerate() {
            if call.key == "errors" {
                return Err(AggregateError("the key `errors` is reserved".into()));
            }
            if self.calls[..i].iter().any(|c| c.key == call.key) {
                return Err(AggregateError(format!("duplicate key `{}`", call.key)));
            }
        }
        Ok(Aggregate {
            inner,
            shared: Arc::new(Shared {
                calls: self.calls,
                deadline: self.deadline,
                max_body: self.max_body,
                concurrency: self.concurrency,
                forward: self.forward,
            }),
        })
    }
}

#[derive(Debug)]
struct Shared {
    calls: Vec<AggregateCall>,
    deadline: Duration,
    max_body: usize,
    concurrency: usize,
    forward: Vec<HeaderName>,
}

/// Answers one request by calling several sub-requests in parallel and
/// merging their JSON answers; see the [module docs](crate::aggregate).
///
/// Clones share the configuration behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Aggregate<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl Aggregate<()> {
    /// A builder with the defaults.
    pub fn builder() -> AggregateBuilder {
        AggregateBuilder::default()
    }
}

/// Why one call failed.
#[derive(Debug)]
enum CallError {
    Timeout,
    Deadline,
    BadParameter(String),
    Status(StatusCode),
    Upstream,
    TooLarge(usize),
    NotJson,
}

impl CallError {
    fn message(&self) -> String {
        match self {
            Self::Timeout => "timeout".into(),
            Self::Deadline => "deadline exceeded".into(),
            Self::BadParameter(why) => why.clone(),
            Self::Status(status) => format!("status {}", status.as_u16()),
            Self::Upstream => "upstream error".into(),
            Self::TooLarge(max) => format!("body larger than {max} bytes"),
            Self::NotJson => "not JSON".into(),
        }
    }

    fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout | Self::Deadline)
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type CallFuture = BoxFuture<Result<Value, CallError>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Aggregate<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Every call readies its own clone of the inner service.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shared = self.shared.clone();
        let now = Instant::now();
        let deadline = now + shared.deadline;
        // An outer `TimeoutLayer`'s deadline, when sooner, bounds the calls too.
        #[cfg(feature = "timeout")]
        let deadline = match crate::timeout::Deadline::of(&request, now) {
            Some(outer) => deadline.min(outer.instant()),
            None => deadline,
        };
        let mut headers = HeaderMap::new();
        for name in &shared.forward {
            for value in request.headers().get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        // The calls are built now, so the original request (and its body,
        // which an aggregate does not read) is not kept.
        let futures: Vec<CallFuture> = shared
            .calls
            .iter()
            .map(|call| -> CallFuture {
                match call.uri(request.uri(), request.extensions()) {
                    Ok(uri) => Box::pin(one_call(
                        self.inner.clone(),
                        uri,
                        headers.clone(),
                        call.timeout,
                        deadline,
                        shared.max_body,
                    )),
                    Err(why) => Box::pin(std::future::ready(Err(CallError::BadParameter(why)))),
                }
            })
            .collect();
        Box::pin(async move {
            let results = join_bounded(futures, shared.concurrency).await;
            Ok(merge(&shared.calls, results))
        })
    }
}

async fn one_call<S, ResBody>(
    mut service: S,
    uri: Uri,
    headers: HeaderMap,
    timeout: Option<Duration>,
    deadline: Instant,
    max_body: usize,
) -> Result<Value, CallError>
where
    S: Service<Request<Body>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    let own = timeout.map(|t| Instant::now() + t);
    let (until, on_expiry) = match own {
        Some(own) if own < deadline => (own, CallError::Timeout),
        _ => (deadline, CallError::Deadline),
    };
    let work = async {
        let mut request = Request::new(Body::empty());
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        poll_fn(|cx| service.poll_ready(cx))
            .await
            .map_err(|_| CallError::Upstream)?;
        let response = service
            .call(request)
            .await
            .map_err(|_| CallError::Upstream)?;
        if let Some(rejection) = response.extensions().get::<Rejection>()
            && matches!(
                rejection.kind(),
                RejectionKind::Timeout | RejectionKind::UpstreamTimeout
            )
        {
            return Err(CallError::Timeout);
        }
        if !response.status().is_success() {
            return Err(CallError::Status(response.status()));
        }
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > max_body) {
            return Err(CallError::TooLarge(max_body));
        }
        let bytes = Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    CallError::TooLarge(max_body)
                } else {
                    CallError::Upstream
                }
            })?
            .to_bytes();
        serde_json::from_slice(&bytes).map_err(|_| CallError::NotJson)
    };
    timeout_at(until, work).await.unwrap_or(Err(on_expiry))
}

/// Runs `futures` with at most `limit` in flight; results in input order.
async fn join_bounded<T>(futures: Vec<BoxFuture<T>>, limit: usize) -> Vec<T> {
    let total = futures.len();
    let mut pending = futures.into_iter();
    let mut running: Vec<(usize, BoxFuture<T>)> = Vec::new();
    let mut results: Vec<Option<T>> = (0..total).map(|_| None).collect();
    let mut next = 0;
    poll_fn(|cx| {
        loop {
            while running.len() < limit {
                match pending.next() {
                    Some(future) => {
                        running.push((next, future));
                        next += 1;
                    }
                    None => break,
                }
            }
            let before = running.len();
            running.retain_mut(|(index, future)| match future.as_mut().poll(cx) {
                Poll::Ready(value) => {
                    results[*index] = Some(value);
                    false
                }
                Poll::Pending => true,
            });
            if running.is_empty() && next == total {
                return Poll::Ready(());
            }
            // Slots freed: start the next calls and poll them at once.
            if running.len() == before || next == total {
                return Poll::Pending;
            }
        }
    })
    .await;
    // Every index was filled before the loop above ended.
    results.into_iter().flatten().collect()
}

fn merge(calls: &[AggregateCall], results: Vec<Result<Value, CallError>>) -> Response<Body> {
    let mut object = Map::new();
    let mut errors = Map::new();
    let mut failed_required: Option<(&str, CallError)> = None;
    for (call, result) in calls.iter().zip(results) {
        match result {
            Ok(value) => {
                object.insert(call.key.clone(), value);
            }
            Err(error) if call.required => {
                // A timeout decides the status (504) over other failures.
                let replace = match &failed_required {
                    None => true,
                    Some((_, previous)) => error.is_timeout() && !previous.is_timeout(),
                };
                if replace {
                    failed_required = Some((&call.key, error));
                }
            }
            Err(error) => {
                object.insert(call.key.clone(), Value::Null);
                errors.insert(call.key.clone(), Value::String(error.message()));
            }
        }
    }
    if let Some((key, error)) = failed_required {
        let detail = format!("required call `{key}` failed: {}", error.message());
        let response = match error {
            CallError::Timeout | CallError::Deadline => {
                Rejection::new(RejectionKind::UpstreamTimeout)
                    .with_detail(detail)
                    .into_response()
            }
            CallError::BadParameter(_) => Rejection::new(RejectionKind::BadRequest)
                .with_detail(detail)
                .into_response(),
            // Not an `UpstreamConnect`/`UpstreamReset` rejection: those tell
            // retry the request never reached a server, which is not known.
            _ => Problem::new(StatusCode::BAD_GATEWAY)
                .with_detail(detail)
                .into_response(),
        };
        return response.map(Body::new);
    }
    if !errors.is_empty() {
        object.insert("errors".into(), Value::Object(errors));
    }
    // Serialising a `Value` built from parsed JSON cannot fail.
    let bytes = serde_json::to_vec(&Value::Object(object)).unwrap_or_default();
    let mut response = Response::new(Body::new(Full::new(Bytes::from(bytes))));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
