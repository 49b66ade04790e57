//! Client IP allow and deny lists by CIDR, trusted-proxy aware (Kong's
//! `ip-restriction`).
//!
//! [`IpRestrictionLayer`] refuses a request with `403 Forbidden`, an
//! `application/problem+json` body and a
//! [`Rejection`](crate::error::Rejection) of kind
//! [`Forbidden`](crate::error::RejectionKind::Forbidden), when its client
//! address:
//!
//! * is in a **deny** network (deny always wins), or
//! * is outside every **allow** network, when at least one is configured.
//!
//! The client address is resolved by [`TrustedProxies`](crate::net::TrustedProxies)
//! (the crate's one [rule](crate::net)): the socket peer
//! ([`PeerAddr`](crate::peer::PeerAddr)), or — only when the peer is a
//! configured trusted proxy — the right-most untrusted `X-Forwarded-For`
//! (or `Forwarded`) entry. A client that is not behind a trusted proxy
//! cannot choose its address by sending the header. Networks are
//! [`IpNet`](crate::net::IpNet)s.
//!
//! When rules are configured and the client address cannot be determined
//! (no `PeerAddr` extension in the request, or an entry that is not an
//! address, such as `unknown`, reached through trusted proxies), the request is
//! refused: the layer fails closed. A layer with no rules lets everything
//! through. gRPC requests get a trailers-only `PERMISSION_DENIED` instead
//! of the problem document.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use meshgate::ip_restriction::IpRestrictionLayer;
//! use meshgate::net::TrustedProxies;
//! use meshgate::peer::PeerAddr;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = IpRestrictionLayer::new()
//!     .allow("192.0.2.0/24".parse().unwrap())
//!     .deny("192.0.2.66".parse().unwrap())
//!     .client_ip(TrustedProxies::new(["10.0.0.0/8".parse().unwrap()]));
//! let service = layer.layer(service_fn(|_: Request<()>| async {
//!     Ok::<_, Infallible>(Response::new(String::from("ok")))
//! }));
//!
//! let from = |peer: &str, xff: &str| {
//!     let mut request = Request::builder().header("x-forwarded-for", xff).body(()).unwrap();
//!     request.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
//!     request
//! };
//! // Through the trusted proxy 10.0.0.5, the client is 192.0.2.10: allowed.
//! let response = service.clone().oneshot(from("10.0.0.5:40000", "192.0.2.10")).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! // A direct client claiming to forward for an allowed address: refused.
//! let response = service.oneshot(from("198.51.100.9:40000", "192.0.2.10")).await.unwrap();
//! assert_eq!(response.status(), StatusCode::FORBIDDEN);
//! # }
//! ```

mod layer;

pub use crate::future::ResponseFuture;
pub use layer::{IpRestriction, IpRestrictionLayer};
