//! Per-request timeouts with deadline propagation.
//!
//! [`TimeoutLayer`] gives every request a time budget. A request that runs
//! past it is answered `504 Gateway Timeout` with an
//! `application/problem+json` body and a [`Rejection`](crate::error::Rejection)
//! of kind [`Timeout`](crate::error::RejectionKind::Timeout) in its
//! extensions — a response, not a service error — and the inner future is
//! dropped, which cancels the work in flight.
//!
//! # Deadline propagation
//!
//! A caller may send its own remaining budget, and the budget this layer
//! grants is the smallest of:
//!
//! * its own timeout;
//! * a `grpc-timeout` header (`1H`, `2M`, `30S`, `250m` — `m` is
//!   milliseconds, as in gRPC — `u`, `n`; at most 8 digits);
//! * a millisecond header, `x-request-timeout-ms` by default (see
//!   [`TimeoutLayer::budget_header`]);
//! * a deadline already known in this process: that of an outer
//!   `TimeoutLayer` whose future is running, or a [`Deadline`] a caller put
//!   in the request extensions.
//!
//! The remaining budget is written into the millisecond header (and into
//! `grpc-timeout` when the caller sent one) before the inner service is called, so
//! the next hop can do the same. Layers further in, in the same process,
//! read the exact deadline with [`Deadline::of`]: the layer makes it known
//! to the code it calls and polls, without storing anything in the request
//! (no allocation). Malformed budget headers are
//! ignored and overwritten, never passed on. A request whose budget is
//! already spent is answered `504` at once (kind
//! [`DeadlineExceeded`](crate::error::RejectionKind::DeadlineExceeded))
//! without calling the inner service.
//!
//! A client can only shorten its own budget this way, never lengthen it.
//!
//! A gRPC request (`content-type: application/grpc…`, or one carrying
//! `grpc-timeout`) is answered the gRPC way instead: HTTP 200, trailers-only,
//! `grpc-status: 4` (`DEADLINE_EXCEEDED`) and a `grpc-message`, with the same
//! [`Rejection`](crate::error::Rejection) extension.
//!
//! # Example
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use http::{Request, Response};
//! use meshgate::timeout::TimeoutLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new(Duration::from_secs(10)))
//!     .service_fn(|request: Request<()>| async move {
//!         // The inner service sees what is left of the budget.
//!         let budget = request.headers()["x-request-timeout-ms"].to_str().unwrap().to_owned();
//!         Ok::<_, Infallible>(Response::new(budget))
//!     });
//!
//! let request = Request::builder().header("grpc-timeout", "2S").body(()).unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 200);
//! # }
//! ```

mod budget;
mod future;
mod layer;
pub(crate) mod reused;
mod service;

pub use budget::Deadline;
pub use future::ResponseFuture;
pub use layer::{DEFAULT_BUDGET_HEADER, TimeoutLayer};
pub use service::Timeout;
