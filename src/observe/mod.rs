//! Observability layers: request ids, trace-context propagation, request
//! metrics and the access log.
//!
//! * [`RequestIdLayer`] keeps a valid incoming `x-request-id`, replaces one
//!   that is too long or holds anything but visible ASCII, generates one
//!   (a random UUID v4) when there is none, forwards it to the inner service,
//!   puts a [`RequestId`] in the request extensions (unless
//!   [`tag_requests(false)`](RequestIdLayer::tag_requests)), and echoes it
//!   on the response. It rejects nothing.
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
///
/// One look-up per byte, of both its digits, and no bounds checks in the
/// loop (ids are hexed on every request).
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    static PAIRS: [[u8; 2]; 256] = {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut pairs = [[0; 2]; 256];
        let mut i = 0;
        while i < 256 {
            pairs[i] = [DIGITS[i >> 4], DIGITS[i & 0x0f]];
            i += 1;
        }
        pairs
    };
    debug_assert_eq!(out.len(), 2 * bytes.len());
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&PAIRS[usize::from(*byte)]);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_two_lower_case_digits_per_byte() {
        let bytes: Vec<u8> = (0..=255).collect();
        let mut out = vec![0; 512];
        super::hex_into(&bytes, &mut out);
        let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }
}
