//! Request metrics through the [`metrics`] facade.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use metrics::{Counter, Gauge, Histogram, Label, SharedString};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::Rejection;

/// `meshgate_requests_total{route, method, status}`: finished requests, by
/// status class (`1xx` … `5xx`, or `error` when the service failed).
pub const REQUESTS_TOTAL: &str = "meshgate_requests_total";
/// `meshgate_request_duration_seconds{route, method}`: time to the response
/// head, in seconds.
pub const REQUEST_DURATION_SECONDS: &str = "meshgate_request_duration_seconds";
/// `meshgate_requests_in_flight{route}`: requests started and not yet answered.
pub const REQUESTS_IN_FLIGHT: &str = "meshgate_requests_in_flight";
/// `meshgate_cache_requests_total{route, result}`: responses that went
/// through a response cache, by its `X-Cache` verdict (`hit`, `miss`,
/// `stale`, `bypass`, `revalidated`, `other`).
pub const CACHE_REQUESTS_TOTAL: &str = "meshgate_cache_requests_total";
/// `meshgate_rejections_total{route, kind}`: responses a meshgate layer
/// answered itself, by [`RejectionKind`](crate::RejectionKind) name
/// (`rate_limited`, `circuit_open`, `timeout`, …).
pub const REJECTIONS_TOTAL: &str = "meshgate_rejections_total";

/// Records request count, latency, in-flight requests and refusals of every
/// request through it.
///
/// Metric handles are resolved through the [`metrics`] facade on first use
/// and then kept, so the recorder (for instance
/// `metrics-exporter-prometheus`) must be installed before the first request.
/// Per request the layer does no allocation: one clock read at the start and
/// one at the response head, one counter, one histogram sample, and the
/// in-flight gauge up and down.
///
/// The `route` label is fixed per layer ([`for_route`](Self::for_route)), or
/// read from the response's extensions by
/// [`route_from`](Self::route_from) — for one layer in front of a router that
/// puts the matched route there (`meshgate::routing::MatchedRoute`); then
/// each request costs one read-locked map lookup more, and responses without
/// a route (404, 405) carry the layer's fixed label. At most
/// [`MAX_ROUTES`] route labels are kept; later ones are counted as
/// `route="other"`. The in-flight gauge carries the fixed label, since the
/// route is not known before the answer.
///
/// The other labels are bounded too: `method` is one of the nine standard
/// methods or `other`, `status` a status class, and `kind` is the closed set
/// of rejection kinds.
#[derive(Debug, Clone)]
#[must_use]
pub struct MetricsLayer {
    shared: Arc<Shared>,
}

/// The most distinct `route` labels one layer keeps.
pub const MAX_ROUTES: usize = 1024;

/// Reads a route name from a response's extensions.
pub type RouteFromExtensions = fn(&http::Extensions) -> Option<&str>;

impl MetricsLayer {
    /// A layer whose metrics carry `route=""`.
    pub fn new() -> Self {
        Self::for_route("")
    }

    /// A layer whose metrics carry `route=<name>`.
    pub fn for_route(name: impl Into<SharedString>) -> Self {
        Self {
            shared: Arc::new(Shared {
                fixed: Handles::new(name.into()),
                route_from: None,
                routes: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// Takes the `route` label from each response's extensions when `read`
    /// finds one there; the fixed label otherwise.
    pub fn route_from(self, read: RouteFromExtensions) -> Self {
        Self {
            shared: Arc::new(Shared {
                fixed: Handles::new(self.shared.fixed.route.clone()),
                route_from: Some(read),
                routes: RwLock::new(HashMap::new()),
            }),
        }
    }
}

/// What every clone of one layer shares.
#[derive(Debug)]
struct Shared {
    fixed: Handles,
    route_from: Option<RouteFromExtensions>,
    routes: RwLock<HashMap<Box<str>, Arc<Handles>>>,
}

impl Shared {
    /// Runs `f` with the handles of the route named in `extensions`.
    fn with_route(&self, extensions: &http::Extensions, f: impl FnOnce(&Handles)) {
        let Some(name) = self.route_from.and_then(|read| read(extensions)) else {
            return f(&self.fixed);
        };
        let found = self
            .routes
            .read()
            .ok()
            .and_then(|routes| routes.get(name).cloned());
        let handles = found.unwrap_or_else(|| self.insert_route(name));
        f(&handles);
    }

    fn insert_route(&self, name: &str) -> Arc<Handles> {
        // A poisoned lock only means a panic elsewhere mid-insert; the map
        // itself is still whole, so keep using it.
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        if let Some(handles) = routes.get(name) {
            return Arc::clone(handles);
        }
        if routes.len() >= MAX_ROUTES {
            return Arc::clone(
                routes.entry(Box::from(OTHER_ROUTE)).or_insert_with(|| {
                    Arc::new(Handles::new(SharedString::const_str(OTHER_ROUTE)))
                }),
            );
        }
        let handles = Arc::new(Handles::new(SharedString::from(name.to_owned())));
        routes.insert(Box::from(name), Arc::clone(&handles));
        handles
    }
}

const OTHER_ROUTE: &str = "other";

impl Default for MetricsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service of a [`MetricsLayer`].
#[derive(Debug, Clone)]
pub struct RequestMetrics<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestMetrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = MetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let method = crate::classify::method_rank(request.method());
        self.shared.fixed.in_flight().increment(1.0);
        MetricsFuture {
            inner: self.inner.call(request),
            guard: InFlight {
                shared: Arc::clone(&self.shared),
                method,
                started: Instant::now(),
                done: false,
            },
        }
    }
}

pin_project! {
    /// The response future of [`RequestMetrics`].
    #[derive(Debug)]
    pub struct MetricsFuture<F> {
        #[pin]
        inner: F,
        guard: InFlight,
    }
}

impl<F, B, E> Future for MetricsFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let guard = this.guard;
        match &result {
            Ok(response) => {
                let class = usize::from(response.status().as_u16() / 100).clamp(1, 5) - 1;
                let rejection = response.extensions().get::<Rejection>();
                let shared = Arc::clone(&guard.shared);
                let cache = response.headers().get(X_CACHE).map(cache_result);
                shared.with_route(response.extensions(), |handles| {
                    if let Some(rejection) = rejection {
                        handles.rejection(rejection);
                    }
                    if let Some(result) = cache {
                        handles.cache(result);
                    }
                    guard.finish(handles, class);
                });
            }
            Err(_) => {
                let shared = Arc::clone(&guard.shared);
                guard.finish(&shared.fixed, ERROR_CLASS);
            }
        }
        Poll::Ready(result)
    }
}

/// Counts a request in flight until it is answered or dropped.
#[derive(Debug)]
struct InFlight {
    shared: Arc<Shared>,
    method: usize,
    started: Instant,
    done: bool,
}

impl InFlight {
    fn finish(&mut self, handles: &Handles, class: usize) {
        let elapsed = self.started.elapsed();
        handles.requests(self.method, class).increment(1);
        handles.duration(self.method).record(elapsed.as_secs_f64());
        self.shared.fixed.in_flight().decrement(1.0);
        self.done = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // A request dropped before its answer (client gone, outer timeout)
        // still leaves the in-flight gauge, and is counted as `dropped`.
        if !self.done {
            let fixed = &self.shared.fixed;
            fixed.requests(self.method, DROPPED_CLASS).increment(1);
            fixed.in_flight().decrement(1.0);
        }
    }
}

const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "other",
];
/// The `X-Cache` header a response cache sets (DESIGN.md's convention).
const X_CACHE: http::HeaderName = http::HeaderName::from_static("x-cache");
const CACHE_RESULTS: [&str; 6] = ["hit", "miss", "stale", "bypass", "revalidated", "other"];

fn cache_result(value: &http::HeaderValue) -> usize {
    let value = value.as_bytes();
    CACHE_RESULTS[..5]
        .iter()
        .position(|r| value.eq_ignore_ascii_case(r.as_bytes()))
        .unwrap_or(5)
}

const CLASSES: [&str; 7] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error", "dropped"];
const ERROR_CLASS: usize = 5;
const DROPPED_CLASS: usize = 6;

/// Handles resolved lazily, one slot per label combination, so the request
/// path neither allocates keys nor looks them up in the recorder's registry.
#[derive(Debug)]
struct Handles {
    route: SharedString,
    requests: [[OnceLock<Counter>; CLASSES.len()]; METHODS.len()],
    durations: [OnceLock<Histogram>; METHODS.len()],
    in_flight: OnceLock<Gauge>,
    rejections: [OnceLock<Counter>; REJECTION_SLOTS],
    cache: [OnceLock<Counter>; CACHE_RESULTS.len()],
}

/// Room for every [`RejectionKind`](crate::RejectionKind) with space to
/// grow; a kind past it takes the slow path (a registry lookup per refusal).
const REJECTION_SLOTS: usize = 64;

impl Handles {
    fn new(route: SharedString) -> Self {
        Self {
            route,
            requests: Default::default(),
            durations: Default::default(),
            in_flight: OnceLock::new(),
            rejections: std::array::from_fn(|_| OnceLock::new()),
            cache: Default::default(),
        }
    }

    fn route_label(&self) -> Label {
        Label::new("route", self.route.clone())
    }

    fn requests(&self, method: usize, class: usize) -> &Counter {
        self.requests[method][class].get_or_init(|| {
            metrics::counter!(
                REQUESTS_TOTAL,
                vec![
                    self.route_label(),
                    Label::from_static_parts("method", METHODS[method]),
                    Label::from_static_parts("status", CLASSES[class]),
                ]
            )
        })
    }

    fn duration(&self, method: usize) -> &Histogram {
        self.durations[method].get_or_init(|| {
            metrics::histogram!(
                REQUEST_DURATION_SECONDS,
                vec![
                    self.route_label(),
                    Label::from_static_parts("method", METHODS[method]),
                ]
            )
        })
    }

    fn in_flight(&self) -> &Gauge {
        self.in_flight
            .get_or_init(|| metrics::gauge!(REQUESTS_IN_FLIGHT, vec![self.route_label()]))
    }

    fn cache(&self, result: usize) {
        self.cache[result]
            .get_or_init(|| {
                metrics::counter!(
                    CACHE_REQUESTS_TOTAL,
                    vec![
                        self.route_label(),
                        Label::from_static_parts("result", CACHE_RESULTS[result]),
                    ]
                )
            })
            .increment(1);
    }

    fn rejection(&self, rejection: &Rejection) {
        let kind = rejection.kind();
        let labels = || {
            vec![
                self.route_label(),
                Label::from_static_parts("kind", kind.as_str()),
            ]
        };
        match self.rejections.get(kind as usize) {
            Some(slot) => slot
                .get_or_init(|| metrics::counter!(REJECTIONS_TOTAL, labels()))
                .increment(1),
            None => metrics::counter!(REJECTIONS_TOTAL, labels()).increment(1),
        }
    }
}
