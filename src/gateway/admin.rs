//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `/admin/status`.
//!
//! Everything here reads snapshots the layers already keep (balancer
//! endpoint statistics, breaker states, retry counters, connection counts);
//! scraping costs the traffic path nothing.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};
use tower_service::Service;

use super::build::Built;
use super::server::Connections;
use crate::body::Body;
use crate::cache::CacheLayer;
use crate::circuit_breaker::{BreakerState, CircuitBreakerLayer};
use crate::config::Config;
use crate::error::Problem;
use crate::load_balancer::LoadBalancerLayer;
use crate::rate_limit::RateLimitLayer;
use crate::retry::RetryLayer;

/// The admin endpoints' service. Cheap to clone: one `Arc`.
#[derive(Clone, Debug)]
pub(crate) struct Admin {
    state: Arc<State>,
}

/// What an assembly (the gateway, the sidecar) shows on its admin
/// listener: the layers whose snapshots it reads, named as their metric
/// labels name them.
#[derive(Debug, Default)]
pub(crate) struct AdminParts {
    /// The Prometheus path, when metrics are on.
    pub(crate) metrics_path: Option<String>,
    /// The recorder's handle; `None` when the application installed its own.
    pub(crate) metrics: Option<PrometheusHandle>,
    /// Whether `/readyz` waits for every upstream to have an endpoint that
    /// may take traffic (the gateway); else ready once serving.
    pub(crate) ready_needs_upstreams: bool,
    /// Balancers by upstream name.
    pub(crate) upstreams: Vec<(String, LoadBalancerLayer)>,
    /// Breakers by route and backend.
    pub(crate) breakers: Vec<(String, String, CircuitBreakerLayer)>,
    /// Retry layers by route.
    pub(crate) retries: Vec<(String, RetryLayer)>,
    /// Rate limiters by route.
    pub(crate) limiters: Vec<(String, RateLimitLayer)>,
    /// Caches by route.
    pub(crate) caches: Vec<(String, CacheLayer)>,
    /// The `routes` entry of `/admin/status`.
    pub(crate) routes: Vec<Value>,
    /// Connection counts by listener name.
    pub(crate) connections: Vec<(String, Connections)>,
}

type State = AdminParts;

impl Admin {
    /// The gateway's admin service.
    pub(crate) fn new(
        config: Arc<Config>,
        built: Arc<Built>,
        metrics: Option<PrometheusHandle>,
        connections: Vec<(String, Connections)>,
    ) -> Self {
        Self::from_parts(AdminParts {
            metrics_path: config.metrics.enabled.then(|| config.metrics.path.clone()),
            metrics,
            ready_needs_upstreams: true,
            upstreams: built
                .upstreams
                .iter()
                .map(|u| (u.name.clone(), u.balancer.clone()))
                .collect(),
            breakers: built
                .breakers
                .iter()
                .map(|b| (b.route.clone(), b.backend.clone(), b.layer.clone()))
                .collect(),
            retries: built
                .retries
                .iter()
                .map(|r| (r.route.clone(), r.layer.clone()))
                .collect(),
            limiters: built.limiters.clone(),
            caches: built.caches.clone(),
            routes: route_status(&config),
            connections,
        })
    }

    /// An admin service over these parts (the sidecar's).
    pub(crate) fn from_parts(parts: AdminParts) -> Self {
        Self {
            state: Arc::new(parts),
        }
    }
}

/// The `routes` entry of the gateway's `/admin/status`.
fn route_status(config: &Config) -> Vec<Value> {
    config
        .routes
        .iter()
        .map(|route| {
            let upstreams = route.upstreams();
            json!({
                "name": route.name,
                "priority": route.priority,
                "upstreams": upstreams,
                "timeout_ms": millis(route.timeout),
                "retry": route.retry.is_some(),
                "circuit_breaker": route.circuit_breaker.is_some(),
            })
        })
        .collect()
}

impl<B> Service<Request<B>> for Admin {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let state = &self.state;
        let path = request.uri().path();
        let response = if request.method() != Method::GET && request.method() != Method::HEAD {
            problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "the admin endpoints answer GET",
            )
        } else if path == "/healthz" {
            text(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                "ok\n".to_owned(),
            )
        } else if path == "/readyz" {
            state.readiness()
        } else if state.metrics_path.as_deref() == Some(path) {
            state.metrics()
        } else if path == "/admin/status" {
            let body = serde_json::to_string_pretty(&state.status()).unwrap_or_default();
            text(StatusCode::OK, "application/json", body)
        } else {
            problem(StatusCode::NOT_FOUND, "no such admin endpoint")
        };
        ready(Ok(response))
    }
}

impl State {
    /// Ready when every upstream has an endpoint that may take traffic (or
    /// at once, when the assembly does not wait for upstreams).
    fn readiness(&self) -> Response<Body> {
        let unready: Vec<&str> = self
            .upstreams
            .iter()
            .filter(|(_, balancer)| {
                self.ready_needs_upstreams
                    && !balancer.snapshot().iter().any(|e| e.healthy && !e.ejected)
            })
            .map(|(name, _)| name.as_str())
            .collect();
        let status = if unready.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let body = json!({ "ready": unready.is_empty(), "unready_upstreams": unready });
        text(status, "application/json", body.to_string())
    }

    /// The recorder's metrics plus gauges and counters read from snapshots.
    fn metrics(&self) -> Response<Body> {
        let Some(handle) = &self.metrics else {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the application installed its own metrics recorder",
            );
        };
        let mut out = handle.render();
        self.snapshot_metrics(&mut out);
        text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            out,
        )
    }

    fn snapshot_metrics(&self, out: &mut String) {
        let mut families: Vec<(&str, &str, &str, Vec<String>)> = vec![
            (
                "meshgate_upstream_requests_total",
                "counter",
                "Requests sent to an endpoint.",
                vec![],
            ),
            (
                "meshgate_upstream_errors_total",
                "counter",
                "Failed requests to an endpoint (5xx, connect failures, resets, timeouts).",
                vec![],
            ),
            (
                "meshgate_upstream_in_flight",
                "gauge",
                "Requests to an endpoint awaiting their response head.",
                vec![],
            ),
            (
                "meshgate_upstream_latency_ewma_seconds",
                "gauge",
                "Peak-EWMA latency estimate of an endpoint.",
                vec![],
            ),
            (
                "meshgate_upstream_healthy",
                "gauge",
                "1 when the endpoint passes its active health checks.",
                vec![],
            ),
            (
                "meshgate_upstream_ejected",
                "gauge",
                "1 while outlier detection ejects the endpoint.",
                vec![],
            ),
            (
                "meshgate_circuit_breaker_state",
                "gauge",
                "Breaker state: 0 closed, 1 open, 2 half-open.",
                vec![],
            ),
            ("meshgate_retries_total", "counter", "Retries made.", vec![]),
            (
                "meshgate_retries_refused_total",
                "counter",
                "Retries not made, by reason.",
                vec![],
            ),
            (
                "meshgate_connections_active",
                "gauge",
                "Open client connections.",
                vec![],
            ),
        ];
        let mut push = |family: usize, labels: String, value: f64| {
            let line = format!("{}{{{labels}}} {value}", families[family].0);
            families[family].3.push(line);
        };
        for (name, balancer) in &self.upstreams {
            for endpoint in balancer.snapshot() {
                let labels = format!(
                    "upstream=\"{}\",endpoint=\"{}\"",
                    escape(name),
                    escape(&endpoint.endpoint.to_string())
                );
                push(0, labels.clone(), endpoint.requests as f64);
                push(1, labels.clone(), endpoint.errors as f64);
                push(2, labels.clone(), endpoint.in_flight as f64);
                if let Some(latency) = endpoint.latency_ewma {
                    push(3, labels.clone(), latency.as_secs_f64());
                }
                push(4, labels.clone(), f64::from(u8::from(endpoint.healthy)));
                push(5, labels, f64::from(u8::from(endpoint.ejected)));
            }
        }
        for (route, backend, layer) in &self.breakers {
            for snapshot in layer.snapshot() {
                let labels = format!(
                    "route=\"{}\",backend=\"{}\",key=\"{}\"",
                    escape(route),
                    escape(backend),
                    escape(snapshot.key.as_deref().unwrap_or(""))
                );
                push(6, labels, f64::from(breaker_state(snapshot.state).1));
            }
        }
        for (route, layer) in &self.retries {
            let stats = layer.stats();
            let route = escape(route);
            push(7, format!("route=\"{route}\""), stats.retries as f64);
            for (reason, count) in [
                ("budget", stats.budget_exhausted),
                ("attempts", stats.attempts_exhausted),
                ("retry_after", stats.retry_after_too_long),
                ("deadline", stats.deadline_too_close),
                ("body", stats.body_not_replayable),
            ] {
                push(
                    8,
                    format!("route=\"{route}\",reason=\"{reason}\""),
                    count as f64,
                );
            }
        }
        for (name, connections) in &self.connections {
            push(
                9,
                format!("listener=\"{}\"", escape(name)),
                connections.active() as f64,
            );
        }
        for (name, kind, help, lines) in families {
            if lines.is_empty() {
                continue;
            }
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for line in lines {
                out.push_str(&line);
                out.push('\n');
            }
        }
    }

    /// The JSON document of `/admin/status`.
    fn status(&self) -> Value {
        let routes = &self.routes;
        let upstreams: Vec<Value> = self
            .upstreams
            .iter()
            .map(|(name, balancer)| {
                let endpoints: Vec<Value> = balancer
                    .snapshot()
                    .into_iter()
                    .map(|e| {
                        json!({
                            "endpoint": e.endpoint.to_string(),
                            "healthy": e.healthy,
                            "ejected": e.ejected,
                            "ejected_for_ms": e.ejected_for.map(millis),
                            "times_ejected": e.times_ejected,
                            "requests": e.requests,
                            "errors": e.errors,
                            "in_flight": e.in_flight,
                            "latency_ewma_ms": e.latency_ewma.map(|l| l.as_secs_f64() * 1e3),
                        })
                    })
                    .collect();
                json!({ "name": name, "endpoints": endpoints })
            })
            .collect();
        let breakers: Vec<Value> = self
            .breakers
            .iter()
            .flat_map(|(route, backend, layer)| {
                layer.snapshot().into_iter().map(move |s| {
                    json!({
                        "route": route,
                        "backend": backend,
                        "key": s.key,
                        "state": breaker_state(s.state).0,
                        "consecutive_failures": s.consecutive_failures,
                        "trips": s.trips,
                        "open_remaining_ms": s.open_remaining.map(millis),
                    })
                })
            })
            .collect();
        let retries: Vec<Value> = self
            .retries
            .iter()
            .map(|(route, layer)| {
                let stats = layer.stats();
                json!({
                    "route": route,
                    "retries": stats.retries,
                    "budget_exhausted": stats.budget_exhausted,
                    "attempts_exhausted": stats.attempts_exhausted,
                    "retry_after_too_long": stats.retry_after_too_long,
                    "deadline_too_close": stats.deadline_too_close,
                    "body_not_replayable": stats.body_not_replayable,
                    "per_try_timeouts": stats.per_try_timeouts,
                    "budget_remaining": stats.budget_remaining,
                })
            })
            .collect();
        let rate_limits: Vec<Value> = self
            .limiters
            .iter()
            .map(|(route, layer)| {
                json!({ "route": route, "keys": layer.key_count(), "key_capacity": layer.key_capacity() })
            })
            .collect();
        let caches: Vec<Value> = self
            .caches
            .iter()
            .map(|(route, layer)| {
                let handle = layer.handle();
                json!({ "route": route, "entries": handle.entry_count(), "bytes": handle.weighted_size() })
            })
            .collect();
        let listeners: Vec<Value> = self
            .connections
            .iter()
            .map(|(name, c)| json!({ "name": name, "active_connections": c.active(), "max_connections": c.max() }))
            .collect();
        json!({
            "routes": routes,
            "upstreams": upstreams,
            "circuit_breakers": breakers,
            "retries": retries,
            "rate_limits": rate_limits,
            "caches": caches,
            "listeners": listeners,
        })
    }
}

fn breaker_state(state: BreakerState) -> (&'static str, u8) {
    match state {
        BreakerState::Closed => ("closed", 0),
        BreakerState::Open => ("open", 1),
        BreakerState::HalfOpen => ("half_open", 2),
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Escapes a Prometheus label value.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(Body::new(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn problem(status: StatusCode, detail: &'static str) -> Response<Body> {
    Problem::new(status)
        .with_detail(detail)
        .into_response()
        .map(Body::new)
}
