//! Who is on the other end of the connection: the [`PeerAddr`] request extension.
//!
//! The server that accepts a connection (the gateway, the sidecar, or an
//! axum app through a small layer of its own) inserts the socket's remote
//! address into every request's extensions. Layers that need the client
//! address read it from there: the proxy appends it to `X-Forwarded-For` and
//! `Forwarded`, the rate limiter keys on it, consistent hashing can hash it.
//! A layer never trusts a client-supplied header for this unless it is
//! configured with trusted proxies.
//!
//! ```
//! use std::net::SocketAddr;
//! use meshgate::peer::PeerAddr;
//!
//! let mut request = http::Request::new(());
//! let addr: SocketAddr = "192.0.2.7:51000".parse().unwrap();
//! request.extensions_mut().insert(PeerAddr(addr));
//! assert_eq!(request.extensions().get::<PeerAddr>().map(|p| p.0), Some(addr));
//! ```

use std::net::SocketAddr;

/// The remote socket address of the connection a request arrived on, as a
/// request extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);
