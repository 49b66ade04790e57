//! Request and response header transformations (Kong's
//! `request-transformer` / `response-transformer`).
//!
//! [`TransformLayer`] applies a [`HeaderOps`] to each request before the
//! inner service sees it, and another to each response before it goes back.
//! Operations run in the order remove, rename, set, add. Values are
//! [`HeaderTemplate`]s and may reference `${request_id}`, `${client_ip}`
//! and `${route}`, resolved from the request's extensions (see
//! [`HeaderTemplate`] for where each comes from and what happens when one is
//! missing); response templates see the request's values.
//!
//! The typical use at the edge is anti-spoofing: remove the internal
//! headers a client must not be able to send (`x-consumer-id`,
//! `x-client-ip`), then set them from what the gateway knows.
//!
//! Templates are parsed when the layer is built; bad ones are errors then,
//! never at request time. A fixed value costs a header-value clone per
//! request. Nothing is buffered: bodies pass through untouched.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{HeaderName, Request, Response};
//! use meshgate::peer::PeerAddr;
//! use meshgate::transform::{HeaderOps, TransformLayer};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = TransformLayer::new()
//!     .request(
//!         HeaderOps::new()
//!             .remove(HeaderName::from_static("x-consumer-id"))
//!             .set(HeaderName::from_static("x-client-ip"), "${client_ip}".parse().unwrap()),
//!     )
//!     .response(HeaderOps::new().remove(HeaderName::from_static("server")));
//! let service = layer.layer(service_fn(|request: Request<()>| async move {
//!     assert!(request.headers().get("x-consumer-id").is_none());
//!     assert_eq!(request.headers()["x-client-ip"], "192.0.2.7");
//!     let mut response = Response::new(String::new());
//!     response.headers_mut().insert("server", "internal/1.2".parse().unwrap());
//!     Ok::<_, Infallible>(response)
//! }));
//!
//! let mut request = Request::builder()
//!     .header("x-consumer-id", "admin")
//!     .header("x-client-ip", "127.0.0.1")
//!     .body(())
//!     .unwrap();
//! request.extensions_mut().insert(PeerAddr("192.0.2.7:5000".parse().unwrap()));
//! let response = service.oneshot(request).await.unwrap();
//! assert!(response.headers().get("server").is_none());
//! # }
//! ```

mod layer;
mod ops;
mod service;
mod template;

pub use layer::TransformLayer;
pub use ops::HeaderOps;
pub use service::{ResponseFuture, Transform};
pub use template::{HeaderTemplate, TemplateError};
