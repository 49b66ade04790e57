//! Load balancing: spread requests over a set of endpoints, keep sick ones
//! out of rotation.
//!
//! [`LoadBalancerLayer`] chooses an endpoint for every request, rewrites the
//! request URI to the endpoint's absolute URI (`http://10.0.0.7:8080/path?query`:
//! scheme and authority from the endpoint, path and query kept; the `Host`
//! header is left alone) and calls its inner service — in a gateway, the
//! proxy, which sends each request where its URI points. The chosen
//! [`SelectedEndpoint`] goes into the request's and the response's
//! extensions (unless
//! [`tag_requests(false)`](LoadBalancerBuilder::tag_requests) and
//! [`tag_responses(false)`](LoadBalancerBuilder::tag_responses)).
//!
//! # Endpoints
//!
//! The set comes from a static list with weights
//! ([`LoadBalancerBuilder::endpoints`]), from DNS re-resolved at an interval
//! ([`DnsDiscovery`]), or from a `tokio::sync::watch` channel
//! ([`LoadBalancerBuilder::follow`]); whoever holds an [`EndpointsHandle`]
//! ([`LoadBalancerLayer::handle`]) can swap in a new set at any time. A
//! set is immutable and swapped whole (`arc-swap`): a request in flight
//! keeps its endpoint even when that endpoint leaves, and endpoints that
//! stay keep their statistics, health and ejection state. A set holds at
//! most [`max_endpoints`](LoadBalancerBuilder::max_endpoints) endpoints
//! (default [`DEFAULT_MAX_ENDPOINTS`]).
//!
//! # Strategies
//!
//! [`Strategy::RoundRobin`] (the default), nginx's smooth
//! [`Strategy::WeightedRoundRobin`], weighted [`Strategy::Random`],
//! [`Strategy::LeastRequest`] and [`Strategy::PeakEwma`] by power of two
//! choices, and [`Strategy::ConsistentHash`] on a header, a cookie or the
//! client IP ([`HashKey`]) with a ring of virtual nodes, where a request
//! without the key falls back to another strategy (round robin by default).
//! Random choices come from a lock-free generator that
//! [`seed`](LoadBalancerBuilder::seed) makes reproducible.
//!
//! # Keeping sick endpoints out
//!
//! * **Active health checks** ([`HealthCheck`]): a `GET` on a path of every
//!   endpoint at an interval; after `unhealthy` failures in a row an
//!   endpoint gets no traffic until it passes `healthy` checks in a row.
//! * **Passive outlier detection** ([`OutlierDetection`]): real responses
//!   are classified by [`classify::Outcome::from_response`](crate::classify::Outcome::from_response),
//!   so the proxy's connect failures, resets and timeouts count with the 5xx
//!   answers; after N failures in a row an endpoint is ejected for
//!   `base_ejection_time × times ejected` (capped), never more than
//!   `max_ejection_percent` of the set at once; it comes back when its time
//!   is up.
//! * **Panic threshold** ([`LoadBalancerBuilder::panic_threshold`]): when
//!   too few endpoints may take traffic, traffic goes to all of them.
//!
//! When no endpoint may take a request (an empty set, or every endpoint
//! unhealthy or ejected with no panic threshold) the answer is
//! `503 Service Unavailable` with an `application/problem+json` body and a
//! [`Rejection`](crate::error::Rejection) of kind
//! [`NoHealthyEndpoint`](crate::error::RejectionKind::NoHealthyEndpoint),
//! and the inner service is not called (gRPC callers get `grpc-status: 14`).
//!
//! # Sharing, state and cost
//!
//! The balancer lives in the layer (behind an `Arc` created by
//! [`LoadBalancerBuilder::build`]): every service the layer builds, every
//! clone of those and every handle share the set, the statistics and the
//! strategy's state. While every endpoint is healthy and none is ejected, a
//! pick takes no lock (smooth weighted round robin excepted: one short lock)
//! and reads no clock; while some are not, a pick reads the clock once and
//! scans the set for the endpoints that may take traffic. Background tasks
//! (health checks, DNS, following a channel) are spawned on the tokio
//! runtime of the first `layer` or call and stop when the last layer,
//! service and handle are dropped, or at [`LoadBalancerLayer::shutdown`].
//! Nothing awaits while a lock is held.
//!
//! A request counts in flight, and its latency is measured, from the call
//! until the inner service's response head (or until the response future
//! is dropped); the streaming of the body is not counted. A request
//! cancelled before its response (the client went away, an outer timeout
//! fired) counts no outcome for outlier detection, but its time so far goes
//! into the latency estimate, so an endpoint that hangs does not look fast.
//! [`snapshot`](LoadBalancerLayer::snapshot) reads each endpoint's
//! requests, errors, requests in flight, latency EWMA, health and ejection.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use http_body_util::BodyExt;
//! use meshgate::load_balancer::{
//!     Endpoint, LoadBalancerLayer, OutlierDetection, SelectedEndpoint, Strategy,
//! };
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = LoadBalancerLayer::builder()
//!     .endpoint(Endpoint::parse("http://10.0.0.7:8080")?.with_weight(3))
//!     .endpoint(Endpoint::parse("http://10.0.0.8:8080")?)
//!     .strategy(Strategy::WeightedRoundRobin)
//!     .outlier_detection(OutlierDetection::new().consecutive_5xx(5))
//!     .build()?;
//!
//! // In a gateway the inner service is the proxy; here it echoes the URI.
//! let service = layer.layer(service_fn(|request: Request<()>| async move {
//!     Ok::<_, Infallible>(Response::new(request.uri().to_string()))
//! }));
//!
//! let response = service.clone().oneshot(Request::new(())).await?;
//! let chosen = response.extensions().get::<SelectedEndpoint>().unwrap();
//! assert_eq!(chosen.authority(), "10.0.0.7:8080");
//! let body = response.into_body().collect().await?.to_bytes();
//! assert_eq!(body, "http://10.0.0.7:8080/");
//!
//! // Path and query are kept; weights 3:1 send the next request to .7 too.
//! let request = Request::get("/orders?page=2").body(())?;
//! let body = service.oneshot(request).await?.into_body().collect().await?.to_bytes();
//! assert_eq!(body, "http://10.0.0.7:8080/orders?page=2");
//!
//! // Change the set at run time; 10.0.0.7 keeps its statistics.
//! layer.handle().update([
//!     Endpoint::parse("http://10.0.0.7:8080")?,
//!     Endpoint::parse("http://10.0.0.9:8080")?,
//! ])?;
//! assert_eq!(layer.snapshot()[0].requests, 2);
//! # Ok(())
//! # }
//! ```

mod balancer;
mod endpoint;
mod endpoints;
mod future;
mod hash;
mod health;
mod layer;
mod outlier;
mod p2c;
mod random;
mod round_robin;
mod service;
mod stats;
mod strategy;

use std::fmt;

pub use endpoint::{Endpoint, MAX_WEIGHT, SelectedEndpoint};
pub use endpoints::{DnsDiscovery, EndpointsHandle, Resolution};
pub use future::ResponseFuture;
pub use hash::{ConsistentHash, HashKey, MAX_RING_POINTS};
pub use health::HealthCheck;
pub use layer::{DEFAULT_MAX_ENDPOINTS, LoadBalancerBuilder, LoadBalancerLayer};
pub use outlier::OutlierDetection;
pub use service::LoadBalancer;
pub use stats::EndpointSnapshot;
pub use strategy::Strategy;

/// A load-balancer configuration or update that cannot be used.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadBalancerError {
    /// An endpoint that cannot be parsed or used.
    InvalidEndpoint(String),
    /// The same scheme and authority twice in one set.
    DuplicateEndpoint(String),
    /// More endpoints than the set's bound.
    TooManyEndpoints {
        /// The bound.
        max: usize,
        /// How many were given.
        got: usize,
    },
    /// A health check that cannot be sent.
    InvalidHealthCheck(String),
    /// Settings that exclude each other.
    Conflict(&'static str),
}

impl fmt::Display for LoadBalancerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidEndpoint(detail) => write!(f, "invalid endpoint {detail}"),
            Self::DuplicateEndpoint(endpoint) => write!(f, "endpoint {endpoint} is listed twice"),
            Self::TooManyEndpoints { max, got } => {
                write!(f, "{got} endpoints given, at most {max} allowed")
            }
            Self::InvalidHealthCheck(detail) => write!(f, "invalid health check: {detail}"),
            Self::Conflict(detail) => f.write_str(detail),
        }
    }
}

impl std::error::Error for LoadBalancerError {}
