//! Request metrics through the [`metrics`] facade.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use http::{Method, Request, Response};
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
/// Per request the layer does no allocation and no map lookup: one clock
/// read at the start and one at the response head, one counter, one
/// histogram sample, and the in-flight gauge up and down.
///
/// Labels are bounded: `route` is fixed per layer (give each route's stack
/// its own layer), `method` is one of the nine standard methods or `other`,
/// `status` is a status class, and `kind` is the closed set of rejection
/// kinds.
#[derive(Debug, Clone)]
#[must_use]
pub struct MetricsLayer {
    handles: Arc<Handles>,
}

impl MetricsLayer {
    /// A layer whose metrics carry `route=""`.
    pub fn new() -> Self {
        Self::for_route("")
    }

    /// A layer whose metrics carry `route=<name>`.
    pub fn for_route(name: impl Into<SharedString>) -> Self {
        Self {
            handles: Arc::new(Handles::new(name.into())),
        }
    }
}

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
            handles: Arc::clone(&self.handles),
        }
    }
}

/// The service of a [`MetricsLayer`].
#[derive(Debug, Clone)]
pub struct RequestMetrics<S> {
    inner: S,
    handles: Arc<Handles>,
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
        let method = method_index(request.method());
        self.handles.in_flight().increment(1.0);
        MetricsFuture {
            inner: self.inner.call(request),
            guard: InFlight {
                handles: Arc::clone(&self.handles),
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
        let class = match &result {
            Ok(response) => {
                if let Some(rejection) = response.extensions().get::<Rejection>() {
                    guard.handles.rejection(rejection);
                }
                usize::from(response.status().as_u16() / 100).clamp(1, 5) - 1
            }
            Err(_) => ERROR_CLASS,
        };
        guard.finish(class);
        Poll::Ready(result)
    }
}

/// Counts a request in flight until it is answered or dropped.
#[derive(Debug)]
struct InFlight {
    handles: Arc<Handles>,
    method: usize,
    started: Instant,
    done: bool,
}

impl InFlight {
    fn finish(&mut self, class: usize) {
        let elapsed = self.started.elapsed();
        self.handles.requests(self.method, class).increment(1);
        self.handles
            .duration(self.method)
            .record(elapsed.as_secs_f64());
        self.handles.in_flight().decrement(1.0);
        self.done = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // A request dropped before its answer (client gone, outer timeout)
        // still leaves the in-flight gauge, and is counted as `dropped`.
        if !self.done {
            self.handles
                .requests(self.method, DROPPED_CLASS)
                .increment(1);
            self.handles.in_flight().decrement(1.0);
        }
    }
}

const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "other",
];
const CLASSES: [&str; 7] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error", "dropped"];
const ERROR_CLASS: usize = 5;
const DROPPED_CLASS: usize = 6;

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::CONNECT => 5,
        Method::OPTIONS => 6,
        Method::TRACE => 7,
        Method::PATCH => 8,
        _ => 9,
    }
}

/// Handles resolved lazily, one slot per label combination, so the request
/// path neither allocates keys nor looks them up in the recorder's registry.
#[derive(Debug)]
struct Handles {
    route: SharedString,
    requests: [[OnceLock<Counter>; CLASSES.len()]; METHODS.len()],
    durations: [OnceLock<Histogram>; METHODS.len()],
    in_flight: OnceLock<Gauge>,
    rejections: [OnceLock<Counter>; REJECTION_SLOTS],
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
