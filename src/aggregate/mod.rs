//! Request aggregation (Backend-for-Frontend fan-out): one request answered
//! by several sub-requests in parallel, their JSON merged into one object.
//!
//! An [`Aggregate`] is a service, not a layer: it is the end of a route.
//! For each request it makes one `GET` per [`AggregateCall`] through its
//! inner service (typically the proxy or load balancer stack, or any
//! in-process service), with
//!
//! * the call's URI template filled from the original request's route
//!   parameters and query (`/orders?user={id}`), values percent-encoded;
//! * chosen headers copied from the original request (default:
//!   `authorization`, `x-request-id`, `traceparent`, `tracestate`);
//! * at most [`concurrency`](AggregateBuilder::concurrency) calls in flight
//!   (default 8), each with its own timeout, all within one deadline
//!   (default 10 s, or sooner when the request's deadline is earlier: an
//!   outer [`TimeoutLayer`](crate::timeout::TimeoutLayer)'s, read with
//!   [`Deadline::of`](crate::timeout::Deadline::of), feature `timeout`).
//!
//! Each answer must be a `2xx` with a JSON body of at most
//! [`max_body`](AggregateBuilder::max_body) bytes (default 1 MiB); anything
//! else — a timeout, another status, a bigger or non-JSON body, a missing
//! parameter — fails that call, never the process. The answer is `200
//! application/json` with each call's JSON under its key (keys in
//! alphabetical order). A failed **optional** call has `null` under its key
//! and a message under `errors.<key>`. A failed **required** call (the
//! default) fails the whole: `504` problem+json
//! ([`UpstreamTimeout`](crate::error::RejectionKind::UpstreamTimeout)) when
//! it timed out, `400` ([`BadRequest`](crate::error::RejectionKind::BadRequest))
//! for a missing parameter, else a `502` problem. The original request's
//! body is not read.
//!
//! Sub-requests are driven inside the response future (no task is
//! spawned): dropping it cancels them all.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use http_body_util::BodyExt;
//! use meshgate::Body;
//! use meshgate::aggregate::{Aggregate, AggregateCall};
//! use tower::{ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let backend = service_fn(|request: Request<Body>| async move {
//!     let json = match request.uri().path() {
//!         "/users/7" => r#"{"name":"Ada"}"#.to_owned(),
//!         _ => format!(r#"["{}"]"#, request.uri().query().unwrap_or("")),
//!     };
//!     Ok::<_, Infallible>(Response::new(json))
//! });
//! let dashboard = Aggregate::builder()
//!     .call(AggregateCall::new("user", "/users/{id}").unwrap())
//!     .call(AggregateCall::new("orders", "/orders?user={id}").unwrap().optional())
//!     .build(backend)
//!     .unwrap();
//! let response = dashboard.oneshot(Request::get("/dashboard?id=7").body(()).unwrap()).await.unwrap();
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(&body[..], br#"{"orders":["user=7"],"user":{"name":"Ada"}}"#);
//! # }
//! ```

mod call;
mod service;

pub use call::{AggregateCall, AggregateError};
pub use service::{Aggregate, AggregateBuilder};
