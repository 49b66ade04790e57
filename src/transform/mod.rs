//! Request and response transformations (Kong's `request-transformer` /
//! `response-transformer`, Envoy's `compressor`).
//!
//! Three layers, each usable alone, all built from a route's `transform`
//! section by the gateway:
//!
//! * [`TransformLayer`]: request and response **headers** ([`HeaderOps`]:
//!   remove, rename, set, add) and request **query parameters**
//!   ([`QueryOps`]). Nothing is buffered; the body type is unchanged.
//! * [`JsonBodyLayer`]: **JSON body fields** of requests and responses
//!   ([`JsonOps`]: remove, rename, replace, add, with dotted paths), with a
//!   size cap (1 MiB by default): larger, non-JSON or encoded bodies pass
//!   untouched and are counted. Only bodies an operation applies to are
//!   buffered.
//! * [`Compression`]: response **compression** (gzip, brotli) by reuse of
//!   tower-http's `CompressionLayer`, skipping small, already encoded and
//!   `no-transform` responses.
//!
//! Path rewrites are the route's job (`routing`'s `rewrite` and
//! `strip_prefix`), not repeated here.
//!
//! Values may be templates ([`HeaderTemplate`]) that reference
//! `${request_id}`, `${client_ip}`, `${route}`, `${consumer}`,
//! `${claim.<name>}`, `${header.<name>}` and `${query.<name>}`, read from
//! the request as the client sent it. A missing value writes nothing (a
//! `set` then removes the header, so a spoofed one never survives); a
//! result that is not a valid header value (CR/LF smuggled through a query
//! parameter) is dropped and counted, never a panic. Templates are parsed
//! when the layer is built; bad ones are errors then, never at request
//! time. A fixed value costs a header-value clone per request; templates
//! cost their rendering.
//!
//! The typical use at the edge is anti-spoofing: remove the internal
//! headers a client must not be able to send (`x-consumer-id`,
//! `x-client-ip`), then set them from what the gateway knows.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{HeaderName, Request, Response};
//! use meshgate::peer::PeerAddr;
//! use meshgate::transform::{HeaderOps, QueryOps, TransformLayer};
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
//!     .query(QueryOps::new().remove("debug").set("tenant", "${header.x-tenant}").unwrap())
//!     .response(HeaderOps::new().remove(HeaderName::from_static("server")));
//! let service = layer.layer(service_fn(|request: Request<()>| async move {
//!     assert!(request.headers().get("x-consumer-id").is_none());
//!     assert_eq!(request.headers()["x-client-ip"], "192.0.2.7");
//!     assert_eq!(request.uri(), "/orders?page=2&tenant=acme");
//!     let mut response = Response::new(String::new());
//!     response.headers_mut().insert("server", "internal/1.2".parse().unwrap());
//!     Ok::<_, Infallible>(response)
//! }));
//!
//! let mut request = Request::builder()
//!     .uri("/orders?debug=1&page=2")
//!     .header("x-consumer-id", "admin")
//!     .header("x-client-ip", "127.0.0.1")
//!     .header("x-tenant", "acme")
//!     .body(())
//!     .unwrap();
//! request.extensions_mut().insert(PeerAddr("192.0.2.7:5000".parse().unwrap()));
//! let response = service.oneshot(request).await.unwrap();
//! assert!(response.headers().get("server").is_none());
//! # }
//! ```

mod body;
mod compression;
mod json;
mod json_service;
mod layer;
mod ops;
mod query;
mod service;
mod stats;
mod template;

pub use body::TransformBody;
pub use compression::{Compression, CompressionLayer, CompressionPredicate};
pub use json::JsonOps;
pub use json_service::{
    DEFAULT_MAX_BODY, JsonBody, JsonBodyLayer, ResponseFuture as JsonBodyFuture,
};
pub use layer::TransformLayer;
pub use ops::HeaderOps;
pub use query::QueryOps;
pub use service::{ResponseFuture, Transform};
pub use stats::TransformStats;
pub use template::{HeaderTemplate, TemplateError};
