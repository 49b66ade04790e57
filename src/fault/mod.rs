//! Fault injection, as Istio's `fault`: delay or abort a share of requests.
//!
//! [`FaultLayer`] tests how callers cope with a slow or failing service
//! without breaking the service:
//!
//! * **delay**: a share of requests waits a fixed time before the inner
//!   service is called (so an outer timeout sees it as a slow upstream);
//! * **abort**: a share of requests is answered with a chosen status and an
//!   `application/problem+json` body, and the inner service is not called.
//!
//! Both draws are independent, as in Envoy's fault filter: a request may be
//! delayed and then aborted. With [`FaultLayer::only_with_header`] only
//! requests carrying that header are subject to faults, so a tester can
//! opt in per request (`x-fault: 1`) while other traffic passes untouched.
//!
//! An abort is an ordinary error response. It carries no
//! [`Rejection`](crate::error::Rejection) on purpose: retry, circuit breaker
//! and metrics classify it by its status exactly as they would a real
//! upstream `503`, which is what fault injection is for. It does carry an
//! [`InjectedFault`] response extension for logs and tests.
//!
//! Percentages are drawn from one random generator shared by all clones of
//! the service (a lock-free SplitMix64 sequence behind an `Arc` created in
//! the layer). [`FaultLayer::seed`] makes the sequence reproducible, so a
//! test sees the same requests delayed and aborted on every run.
//!
//! # Example
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use http::{Request, Response, StatusCode};
//! use meshgate::fault::FaultLayer;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let layer = FaultLayer::new()
//!     .delay(10.0, Duration::from_millis(200))
//!     .abort(100.0, StatusCode::SERVICE_UNAVAILABLE)
//!     .only_with_header(http::HeaderName::from_static("x-fault"));
//! let service = layer.layer(service_fn(|_: Request<()>| async {
//!     Ok::<_, Infallible>(Response::new(String::from("ok")))
//! }));
//!
//! // Without the header: untouched.
//! let response = service.clone().oneshot(Request::new(())).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! // With it: aborted.
//! let request = Request::builder().header("x-fault", "1").body(()).unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(response.headers()["content-type"], "application/problem+json");
//! # }
//! ```

mod future;
mod layer;
mod rng;
mod service;

pub use future::ResponseFuture;
pub use layer::{FaultConfigError, FaultLayer};
pub use service::{Fault, InjectedFault};
