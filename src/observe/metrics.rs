//! Request metrics through the [`metrics`] facade.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll, ready};

use foldhash::quality::RandomState;
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
///
/// Two options add labels to every metric of the layer:
/// [`label`](Self::label) a constant one (`direction="inbound"`), and
/// [`label_from_request`](Self::label_from_request) one whose value is read
/// from each request's extensions when it arrives (the peer identity of an
/// mTLS connection), with at most a given number of distinct values before
/// the rest are counted as `other`. A layer takes its dynamic label either
/// from the response ([`route_from`](Self::route_from)) or from the request,
/// not both: setting one clears the other.
#[derive(Debug, Clone)]
#[must_use]
pub struct MetricsLayer {
    shared: Arc<Shared>,
}

/// The most distinct `route` labels one layer keeps.
pub const MAX_ROUTES: usize = 1024;

/// Reads a route name from a response's extensions.
pub type RouteFromExtensions = fn(&http::Extensions) -> Option<&str>;

/// Reads a label value from a request's extensions.
pub type LabelFromExtensions = fn(&http::Extensions) -> Option<&str>;

/// What a layer is configured with; its services share the [`Shared`]
/// built from it.
#[derive(Debug, Clone)]
struct Settings {
    route_key: &'static str,
    route: SharedString,
    constants: Vec<Label>,
    route_from: Option<RouteFromExtensions>,
    request_label: Option<(&'static str, LabelFromExtensions, usize, &'static str)>,
}

impl MetricsLayer {
    /// A layer whose metrics carry `route=""`.
    pub fn new() -> Self {
        Self::for_route("")
    }

    /// A layer whose metrics carry `route=<name>`.
    pub fn for_route(name: impl Into<SharedString>) -> Self {
        Self::from_settings(Settings {
            route_key: "route",
            route: name.into(),
            constants: Vec::new(),
            route_from: None,
            request_label: None,
        })
    }

    fn from_settings(settings: Settings) -> Self {
        let mut fixed = vec![Label::new(settings.route_key, settings.route.clone())];
        fixed.extend(settings.constants.iter().cloned());
        let request_label = settings.request_label.map(|(key, read, max, absent)| {
            fixed.push(Label::from_static_parts(key, absent));
            RequestLabel {
                key,
                read,
                max: max.max(1),
                values: RwLock::new(HashMap::default()),
            }
        });
        Self {
            shared: Arc::new(Shared {
                fixed: Handles::new(fixed),
                route_from: settings.route_from,
                routes: RwLock::new(HashMap::default()),
                request_label,
                settings,
            }),
        }
    }

    /// Takes the `route` label from each response's extensions when `read`
    /// finds one there; the fixed label otherwise. Clears
    /// [`label_from_request`](Self::label_from_request).
    pub fn route_from(self, read: RouteFromExtensions) -> Self {
        let mut settings = self.shared.settings.clone();
        settings.route_from = Some(read);
        settings.request_label = None;
        Self::from_settings(settings)
    }

    /// Names the `route` label otherwise, for an assembly whose routes are
    /// something else (the sidecar names it `service`).
    ///
    /// Default: `route`.
    pub fn route_label(self, key: &'static str) -> Self {
        let mut settings = self.shared.settings.clone();
        settings.route_key = key;
        Self::from_settings(settings)
    }

    /// Adds the label `key="value"` to every metric of the layer (for
    /// instance `direction="inbound"` on a sidecar's listener). `key` must
    /// not be one of the layer's own labels (`route`, `method`, `status`,
    /// `kind`, `result`).
    ///
    /// Default: none.
    pub fn label(self, key: &'static str, value: impl Into<SharedString>) -> Self {
        let mut settings = self.shared.settings.clone();
        settings.constants.push(Label::new(key, value.into()));
        Self::from_settings(settings)
    }

    /// Adds the label `key` to every metric of the layer, its value read by
    /// `read` from each request's extensions when the request arrives
    /// (`absent` when `read` finds nothing). At most `max_values` distinct
    /// values are kept (at least 1); requests with a later new value are
    /// counted under `other`, so a peer cannot grow the metric set. Each
    /// request costs one read-locked map lookup more. Clears
    /// [`route_from`](Self::route_from).
    ///
    /// ```
    /// use meshgate::observe::MetricsLayer;
    ///
    /// #[derive(Clone)]
    /// struct Tenant(String);
    ///
    /// let layer = MetricsLayer::for_route("api")
    ///     .label("direction", "inbound")
    ///     .label_from_request(
    ///         "tenant",
    ///         |extensions| extensions.get::<Tenant>().map(|t| t.0.as_str()),
    ///         100,
    ///         "unknown",
    ///     );
    /// # let _ = layer;
    /// ```
    ///
    /// Default: none.
    pub fn label_from_request(
        self,
        key: &'static str,
        read: LabelFromExtensions,
        max_values: usize,
        absent: &'static str,
    ) -> Self {
        let mut settings = self.shared.settings.clone();
        settings.request_label = Some((key, read, max_values, absent));
        settings.route_from = None;
        Self::from_settings(settings)
    }
}

/// What every clone of one layer shares.
#[derive(Debug)]
struct Shared {
    settings: Settings,
    fixed: Handles,
    route_from: Option<RouteFromExtensions>,
    /// Keyed by a seeded fast hash: the maps are read on every request,
    /// and std's SipHash cost more than the rest of the lookup (measured);
    /// both are bounded, so a flood of names cannot grow them.
    routes: RwLock<HashMap<Box<str>, Arc<Handles>, RandomState>>,
    request_label: Option<RequestLabel>,
}

/// The label read from requests, with the handles of each value seen.
#[derive(Debug)]
struct RequestLabel {
    key: &'static str,
    read: LabelFromExtensions,
    max: usize,
    values: RwLock<HashMap<Box<str>, Arc<Handles>, RandomState>>,
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
        let labels = |route: SharedString| {
            let mut labels = vec![Label::new(self.settings.route_key, route)];
            labels.extend(self.settings.constants.iter().cloned());
            labels
        };
        if routes.len() >= MAX_ROUTES {
            return Arc::clone(routes.entry(Box::from(OTHER_ROUTE)).or_insert_with(|| {
                Arc::new(Handles::new(labels(SharedString::const_str(OTHER_ROUTE))))
            }));
        }
        let handles = Arc::new(Handles::new(labels(SharedString::from(name.to_owned()))));
        routes.insert(Box::from(name), Arc::clone(&handles));
        handles
    }

    /// The handles of the request label's value for this request, when the
    /// layer has a request label and the request a value.
    fn for_request(&self, extensions: &http::Extensions) -> Option<Arc<Handles>> {
        let label = self.request_label.as_ref()?;
        let value = (label.read)(extensions)?;
        let found = label
            .values
            .read()
            .ok()
            .and_then(|values| values.get(value).cloned());
        Some(found.unwrap_or_else(|| self.insert_value(label, value)))
    }

    fn insert_value(&self, label: &RequestLabel, value: &str) -> Arc<Handles> {
        // As in `insert_route`: a poisoned map is still whole.
        let mut values = label.values.write().unwrap_or_else(|e| e.into_inner());
        if let Some(handles) = values.get(value) {
            return Arc::clone(handles);
        }
        let labels = |value: SharedString| {
            let mut labels = vec![Label::new(
                self.settings.route_key,
                self.settings.route.clone(),
            )];
            labels.extend(self.settings.constants.iter().cloned());
            labels.push(Label::new(label.key, value));
            labels
        };
        if values.len() >= label.max {
            return Arc::clone(values.entry(Box::from(OTHER_ROUTE)).or_insert_with(|| {
                Arc::new(Handles::new(labels(SharedString::const_str(OTHER_ROUTE))))
            }));
        }
        let handles = Arc::new(Handles::new(labels(SharedString::from(value.to_owned()))));
        values.insert(Box::from(value), Arc::clone(&handles));
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
        let handles = self.shared.for_request(request.extensions());
        handles
            .as_deref()
            .unwrap_or(&self.shared.fixed)
            .in_flight()
            .increment(1.0);
        MetricsFuture {
            inner: self.inner.call(request),
            guard: InFlight {
                shared: Arc::clone(&self.shared),
                handles,
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
                let chosen = guard.handles.clone();
                let mut record = |handles: &Handles| {
                    if let Some(rejection) = rejection {
                        handles.rejection(rejection);
                    }
                    if let Some(result) = cache {
                        handles.cache(result);
                    }
                    guard.finish(handles, class);
                };
                match chosen {
                    Some(handles) => record(&handles),
                    None => shared.with_route(response.extensions(), record),
                }
            }
            Err(_) => {
                let shared = Arc::clone(&guard.shared);
                let handles = guard.handles.clone();
                guard.finish(handles.as_deref().unwrap_or(&shared.fixed), ERROR_CLASS);
            }
        }
        Poll::Ready(result)
    }
}

/// Counts a request in flight until it is answered or dropped.
#[derive(Debug)]
struct InFlight {
    shared: Arc<Shared>,
    /// The handles of the request label's value, chosen at the call.
    handles: Option<Arc<Handles>>,
    method: usize,
    started: Instant,
    done: bool,
}

impl InFlight {
    fn finish(&mut self, handles: &Handles, class: usize) {
        let elapsed = self.started.elapsed();
        handles.requests(self.method, class).increment(1);
        handles.duration(self.method).record(elapsed.as_secs_f64());
        self.handles
            .as_deref()
            .unwrap_or(&self.shared.fixed)
            .in_flight()
            .decrement(1.0);
        self.done = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // A request dropped before its answer (client gone, outer timeout)
        // still leaves the in-flight gauge, and is counted as `dropped`.
        if !self.done {
            let handles = self.handles.as_deref().unwrap_or(&self.shared.fixed);
            handles.requests(self.method, DROPPED_CLASS).increment(1);
            handles.in_flight().decrement(1.0);
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
    /// `route` and the layer's own labels, put first on every metric.
    labels: Vec<Label>,
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
    fn new(labels: Vec<Label>) -> Self {
        Self {
            labels,
            requests: Default::default(),
            durations: Default::default(),
            in_flight: OnceLock::new(),
            rejections: std::array::from_fn(|_| OnceLock::new()),
            cache: Default::default(),
        }
    }

    fn labels_with(&self, more: &[Label]) -> Vec<Label> {
        let mut labels = Vec::with_capacity(self.labels.len() + more.len());
        labels.extend(self.labels.iter().cloned());
        labels.extend(more.iter().cloned());
        labels
    }

    fn requests(&self, method: usize, class: usize) -> &Counter {
        self.requests[method][class].get_or_init(|| {
            metrics::counter!(
                REQUESTS_TOTAL,
                self.labels_with(&[
                    Label::from_static_parts("method", METHODS[method]),
                    Label::from_static_parts("status", CLASSES[class]),
                ])
            )
        })
    }

    fn duration(&self, method: usize) -> &Histogram {
        self.durations[method].get_or_init(|| {
            metrics::histogram!(
                REQUEST_DURATION_SECONDS,
                self.labels_with(&[Label::from_static_parts("method", METHODS[method])])
            )
        })
    }

    fn in_flight(&self) -> &Gauge {
        self.in_flight
            .get_or_init(|| metrics::gauge!(REQUESTS_IN_FLIGHT, self.labels.clone()))
    }

    fn cache(&self, result: usize) {
        self.cache[result]
            .get_or_init(|| {
                metrics::counter!(
                    CACHE_REQUESTS_TOTAL,
                    self.labels_with(&[Label::from_static_parts("result", CACHE_RESULTS[result])])
                )
            })
            .increment(1);
    }

    fn rejection(&self, rejection: &Rejection) {
        let kind = rejection.kind();
        let labels = || self.labels_with(&[Label::from_static_parts("kind", kind.as_str())]);
        match self.rejections.get(kind as usize) {
            Some(slot) => slot
                .get_or_init(|| metrics::counter!(REJECTIONS_TOTAL, labels()))
                .increment(1),
            None => metrics::counter!(REJECTIONS_TOTAL, labels()).increment(1),
        }
    }
}
