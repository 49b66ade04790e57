//! Circuit breaking: stop calling an inner service that keeps failing.
//!
//! [`CircuitBreakerLayer`] keeps a breaker that moves through three states:
//!
//! * **Closed** — calls go through. Their outcomes are judged by the shared
//!   [`classify`](crate::classify) (5xx, connect failures, resets and
//!   timeouts are failures; 4xx and local refusals are not; a service error
//!   is a failure). After `consecutive_failures` failures in a row (default
//!   5), or when the optional failure rate over a sliding window is reached
//!   with enough calls, the breaker trips. Calls slower than an optional
//!   threshold count as failures too.
//! * **Open** — calls are answered at once with `503 Service Unavailable`,
//!   an `application/problem+json` body, `Retry-After` set to the time left
//!   open (whole seconds, rounded up) and a
//!   [`Rejection`](crate::error::Rejection) of kind
//!   [`CircuitOpen`](crate::error::RejectionKind::CircuitOpen); the inner
//!   service is not called (gRPC requests get a trailers-only
//!   `grpc-status: 14`, `UNAVAILABLE`, instead). The breaker stays open for `base × trips` (the
//!   number of trips in a row), capped, like Istio's `baseEjectionTime`.
//! * **Half-open** — once the open time is up, `half_open_probes` calls
//!   (default 1) go through as probes while the others still get 503. That
//!   many probe successes close the breaker and reset the trip count; one
//!   probe failure opens it again for longer. A cancelled probe gives its
//!   slot back.
//!
//! Calls admitted before a state change do not count after it, so a slow
//! call started while closed cannot close or reopen a breaker that has since
//! moved on.
//!
//! # Sharing and bounds
//!
//! The breakers live in the layer: every service it builds and every clone
//! of those share them. By default the layer has one breaker;
//! [`key_by`](CircuitBreakerLayer::key_by) gives one per key (host, endpoint,
//! route), at most [`max_keys`](CircuitBreakerLayer::max_keys) (default
//! 1024) of them; past that, a new key evicts the least recently used of a
//! sample, preferring closed breakers. The closed path takes no lock with one
//! breaker and no failure-rate window; the window takes one short lock per
//! outcome, and keyed breakers one short map lock per call. Nothing awaits
//! while a lock is held.
//!
//! # Observing
//!
//! Every state change is logged with `tracing` at `INFO` and passed to the
//! [`on_state_change`](CircuitBreakerLayer::on_state_change) observer;
//! [`snapshot`](CircuitBreakerLayer::snapshot) reads every breaker's state.
//!
//! # Example
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use http::{Request, Response, StatusCode};
//! use meshgate::circuit_breaker::{BreakerState, CircuitBreakerLayer};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = CircuitBreakerLayer::new()
//!     .consecutive_failures(2)
//!     .open_for(Duration::from_secs(10));
//! let service = layer.layer(service_fn(|_: Request<()>| async {
//!     let mut response = Response::new(String::new());
//!     *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
//!     Ok::<_, Infallible>(response)
//! }));
//!
//! for _ in 0..2 {
//!     let response = service.clone().oneshot(Request::new(())).await.unwrap();
//!     assert_eq!(response.status(), 500);
//! }
//! let response = service.oneshot(Request::new(())).await.unwrap();
//! assert_eq!(response.status(), 503);
//! assert_eq!(response.headers()["retry-after"], "10");
//! assert_eq!(layer.snapshot()[0].state, BreakerState::Open);
//! # }
//! ```

mod breaker;
mod future;
mod keys;
mod layer;
mod service;
mod window;

use std::sync::Arc;
use std::time::Duration;

pub use future::ResponseFuture;
pub use layer::{CircuitBreakerLayer, DEFAULT_MAX_KEYS};
pub use service::CircuitBreaker;

/// The state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused with 503.
    Open,
    /// A limited number of probe calls go through.
    HalfOpen,
}

/// A state change, as given to the observer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    /// The breaker's key, for keyed breakers.
    pub key: Option<Arc<str>>,
    /// The state left.
    pub from: BreakerState,
    /// The state entered.
    pub to: BreakerState,
    /// When entering `Open`: for how long.
    pub open_for: Option<Duration>,
}

/// A read-only view of one breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerSnapshot {
    /// The breaker's key, for keyed breakers.
    pub key: Option<String>,
    /// Its state.
    pub state: BreakerState,
    /// Failures in a row while closed.
    pub consecutive_failures: u32,
    /// Trips in a row since it last closed.
    pub trips: u32,
    /// While open: the time left before half-open.
    pub open_remaining: Option<Duration>,
}

type Observer = Arc<dyn Fn(&StateChange) + Send + Sync>;

/// Names the breaker for a request; `None` leaves the request unguarded.
type KeyFn = Arc<dyn Fn(&http::request::Parts) -> Option<String> + Send + Sync>;

/// Failure-rate tripping.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FailureRate {
    threshold: f64,
    window: Duration,
    min_calls: u32,
}

/// The settings every breaker of a layer shares.
#[derive(Clone)]
pub(crate) struct Config {
    consecutive_failures: u32,
    failure_rate: Option<FailureRate>,
    slow_call: Option<Duration>,
    base_open: Duration,
    max_open: Duration,
    half_open_probes: u32,
    observer: Option<Observer>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_rate: None,
            slow_call: None,
            base_open: Duration::from_secs(30),
            max_open: Duration::from_secs(300),
            half_open_probes: 1,
            observer: None,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("consecutive_failures", &self.consecutive_failures)
            .field("failure_rate", &self.failure_rate)
            .field("slow_call", &self.slow_call)
            .field("base_open", &self.base_open)
            .field("max_open", &self.max_open)
            .field("half_open_probes", &self.half_open_probes)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}
