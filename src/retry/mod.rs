//! Retries with jittered backoff, within a retry budget, with body replay.
//!
//! [`RetryLayer`] sends a failed request again, like Istio's `retries`:
//!
//! * **Attempts** — at most [`max_attempts`](RetryLayer::max_attempts) in
//!   all (default 3, the first included).
//! * **Backoff** — exponential from 25 ms, capped at 250 ms, with full
//!   jitter by default so that clients that failed together do not retry
//!   together; decorrelated jitter or none as options (see [`Backoff`]).
//! * **Conditions** — [`RetryOn`], Istio's `retryOn`: `5xx`,
//!   `gateway-error` (502/503/504, and timeouts, resets and connect failures
//!   on the way), `connect-failure`, `reset`, `retriable-status-codes`,
//!   `retriable-headers`. The default is `gateway-error,connect-failure,reset`.
//!   Outcomes are judged by the shared [`classify`](crate::classify), which
//!   reads a [`Rejection`](crate::error::Rejection) in the response
//!   extensions first: the proxy's 502 `UpstreamConnect` is a connect
//!   failure, its `UpstreamReset` a reset. Refusals by meshgate layers
//!   further in (an open breaker, a rate limit) are never retried. A
//!   service error counts as a reset.
//! * **Idempotency** — only idempotent requests (GET, HEAD, OPTIONS, PUT,
//!   DELETE, TRACE) are retried, and POST, PATCH and other methods only with
//!   an `Idempotency-Key` header or
//!   [`retry_non_idempotent`](RetryLayer::retry_non_idempotent). A connect
//!   failure is retried for every method: the request never left.
//! * **Per-try timeout** — optional: an attempt that runs longer is ended
//!   with a 504 ([`RejectionKind::Timeout`](crate::error::RejectionKind::Timeout))
//!   and retried like any gateway error.
//! * **`Retry-After`** — a 429 or 503 that asks to wait (delta-seconds or an
//!   HTTP-date) is retried only when the wait is at most
//!   [`retry_after_cap`](RetryLayer::retry_after_cap) (default 10 s); the
//!   wait is the larger of the backoff and `Retry-After`.
//! * **Deadline** — with the `timeout` feature, the request's deadline
//!   ([`Deadline::of`](crate::timeout::Deadline::of): that of an outer
//!   [`TimeoutLayer`](crate::timeout::TimeoutLayer), a `Deadline` in the
//!   request extensions, or else the caller's budget headers counted from
//!   when this layer was called) is respected: no retry is started whose
//!   wait would reach it.
//! * **Budget** — a [`RetryBudget`] (default 20 % of the requests plus 10
//!   retries per second, over 10 s): every original request deposits, every
//!   retry withdraws, and when it is spent the last response is returned.
//!
//! When no retry is made (or allowed), the caller gets the last attempt's
//! response unchanged, with the number of attempts in an [`Attempts`]
//! extension (read with [`Attempts::of`]; absent after a single attempt)
//! and, if enabled, an `x-meshgate-attempts` header.
//!
//! # Request bodies
//!
//! The inner service receives `Request<`[`ReplayBody<B>`]`>` for a caller's
//! `Request<B>`. The body streams to the first attempt as it arrives, and
//! what has been read is kept (as reference-counted chunks, no copy) up to
//! [`replay_limit`](RetryLayer::replay_limit), default 64 KiB, so a retry
//! can replay it byte-identical and then go on reading the original. A body
//! that grows past the limit, or announces a larger length, is streamed once
//! and its request is not retried: no body is ever held whole in memory.
//! Once no further attempt can follow, nothing more is kept.
//!
//! # Sharing and observing
//!
//! The budget and the counters live in the layer: every service it builds,
//! and every clone of those, shares them (calling
//! [`budget`](RetryLayer::budget) starts a new set for services built
//! afterwards). Each service keeps a clone of its inner service for the
//! retries of a request. Each retry, and each retry not made, is logged
//! with `tracing` at `DEBUG`; [`RetryLayer::stats`] reads the counters.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::{Arc, atomic::{AtomicU32, Ordering}};
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Empty;
//! use meshgate::retry::{Attempts, RetryLayer};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let calls = Arc::new(AtomicU32::new(0));
//! let counter = calls.clone();
//! let layer = RetryLayer::new().attempts_header(true);
//! let service = layer.layer(service_fn(move |_request: Request<_>| {
//!     // Unavailable once, then fine.
//!     let status = match counter.fetch_add(1, Ordering::SeqCst) {
//!         0 => StatusCode::SERVICE_UNAVAILABLE,
//!         _ => StatusCode::OK,
//!     };
//!     async move { Ok::<_, Infallible>(Response::builder().status(status).body(String::new()).unwrap()) }
//! }));
//!
//! let response = service.oneshot(Request::new(Empty::<Bytes>::new())).await.unwrap();
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.extensions().get::<Attempts>(), Some(&Attempts(2)));
//! assert_eq!(response.headers()["x-meshgate-attempts"], "2");
//! assert_eq!(layer.stats().retries, 1);
//! # }
//! ```

mod backoff;
mod budget;
mod future;
mod layer;
mod policy;
mod replay;
mod service;

pub use backoff::{Backoff, Delays, Jitter};
pub use budget::RetryBudget;
pub use future::ResponseFuture;
pub use layer::{
    ATTEMPTS_HEADER, DEFAULT_MAX_ATTEMPTS, DEFAULT_REPLAY_LIMIT, MAX_ATTEMPTS_LIMIT, RetryLayer,
};
pub use policy::{IDEMPOTENCY_KEY, RetryOn, UnknownCondition};
pub use replay::ReplayBody;
pub use service::Retry;

/// The number of attempts a response took, the first one included, in the
/// response extensions.
///
/// It is inserted when more than one attempt was made; a response answered
/// by its first attempt carries none unless
/// [`always_record_attempts`](RetryLayer::always_record_attempts) is on,
/// because inserting an extension allocates and would double the layer's
/// cost on the happy path. Read it with [`Attempts::of`], which counts a
/// missing one as 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attempts(pub u32);

impl Attempts {
    /// The attempts `response` took: its `Attempts` extension, else 1.
    #[must_use]
    pub fn of<B>(response: &http::Response<B>) -> u32 {
        response
            .extensions()
            .get::<Self>()
            .map_or(1, |attempts| attempts.0)
    }
}

/// A read of a [`RetryLayer`]'s counters, for metrics and admin pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RetryStats {
    /// Retries made.
    pub retries: u64,
    /// Retries not made because the budget was spent.
    pub budget_exhausted: u64,
    /// Retriable outcomes returned because the last attempt was made.
    pub attempts_exhausted: u64,
    /// Retriable outcomes returned because `Retry-After` asked for longer
    /// than the cap.
    pub retry_after_too_long: u64,
    /// Retriable outcomes returned because the wait would reach the deadline.
    pub deadline_too_close: u64,
    /// Retriable outcomes returned because the body could not be replayed.
    pub body_not_replayable: u64,
    /// Attempts ended by the per-try timeout.
    pub per_try_timeouts: u64,
    /// Retries the budget still allows now.
    pub budget_remaining: u64,
}
