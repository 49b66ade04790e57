//! Observability layers: request ids, trace-context propagation, request
//! metrics and the access log.
//!
//! * [`RequestIdLayer`] keeps a valid incoming `x-request-id`, replaces one
//!   that is too long or holds anything but visible ASCII, generates one
//!   (a random UUID v4) when there is none, forwards it to the inner service,
//!   puts a [`RequestId`] in the request extensions, and echoes it on the
//!   response. It rejects nothing.
//! * [`TraceContextLayer`] propagates W3C Trace Context: it keeps the
//!   trace-id of a valid `traceparent`, makes a new span-id for this hop,
//!   and forwards `traceparent` (and `tracestate`). It accepts B3
//!   (`x-b3-traceid`, `x-b3-spanid`, `x-b3-sampled`) when no valid
//!   `traceparent` is present and maps it. A malformed header is replaced,
//!   never passed on. The [`TraceContext`] goes into the request extensions.
//! * [`MetricsLayer`] (feature `metrics`) records `meshgate_requests_total`,
//!   `meshgate_request_duration_seconds`, `meshgate_requests_in_flight` and
//!   `meshgate_rejections_total` through the `metrics` facade, with bounded
//!   labels and no allocation per request.
//! * [`AccessLogLayer`] emits one structured `tracing` event per request
//!   (target `meshgate::access`): method, path, status, duration, request
//!   id, peer, user agent, size and the rejection kind.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use meshgate::observe::{RequestId, RequestIdLayer, TraceContext, TraceContextLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(RequestIdLayer::new())
//!     .layer(TraceContextLayer::new())
//!     .service_fn(|request: Request<()>| async move {
//!         let id = request.extensions().get::<RequestId>().unwrap().as_str().to_owned();
//!         let trace = request.extensions().get::<TraceContext>().unwrap();
//!         assert_eq!(trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
//!         Ok::<_, Infallible>(Response::new(id))
//!     });
//!
//! let request = Request::builder()
//!     .header("x-request-id", "order-7781")
//!     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .body(())
//!     .unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.headers()["x-request-id"], "order-7781");
//! # }
//! ```

mod access_log;
#[cfg(feature = "metrics")]
mod metrics;
mod request_id;
mod trace_context;

pub use access_log::{ACCESS_LOG_TARGET, AccessLog, AccessLogFuture, AccessLogLayer};
#[cfg(feature = "metrics")]
pub use metrics::{
    CACHE_REQUESTS_TOTAL, LabelFromExtensions, MAX_ROUTES, MetricsFuture, MetricsLayer,
    REJECTIONS_TOTAL, REQUEST_DURATION_SECONDS, REQUESTS_IN_FLIGHT, REQUESTS_TOTAL, RequestMetrics,
    RouteFromExtensions,
};
pub use request_id::{
    DEFAULT_MAX_REQUEST_ID_LEN, REQUEST_ID, RequestId, RequestIdLayer, RequestIdResponseFuture,
    SetRequestId,
};
pub use trace_context::{PropagateTraceContext, TraceContext, TraceContextLayer};

/// Lower-case hex of `bytes` into `out`, which must be twice as long.
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
    }
}
