//! Who is on the other end of the connection: the [`PeerAddr`] and
//! [`PeerCertificate`] request extensions.
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

/// The certificate chain a client presented and the server verified
/// (mutual TLS), leaf first, DER-encoded, as a request extension.
///
/// A server that terminates TLS with client-certificate verification
/// inserts it into every request of the connection (the gateway server does
/// with the `tls` feature); a request without it came over plain TCP or from
/// a client that presented no certificate where one was optional. Parse the
/// leaf with an X.509 crate to read its subject or SAN (a SPIFFE ID, a
/// host name). Clones share the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    chain: std::sync::Arc<[bytes::Bytes]>,
}

impl PeerCertificate {
    /// A chain of DER certificates, leaf first; `None` when empty.
    #[must_use]
    pub fn new(chain: Vec<bytes::Bytes>) -> Option<Self> {
        if chain.is_empty() {
            return None;
        }
        Some(Self {
            chain: chain.into(),
        })
    }

    /// The client's own (leaf) certificate, DER.
    #[must_use]
    pub fn end_entity(&self) -> &[u8] {
        // `new` refuses an empty chain, so there is always a first one.
        self.chain.first().map_or(&[], |der| der.as_ref())
    }

    /// The whole chain as presented, leaf first, DER.
    #[must_use]
    pub fn chain(&self) -> &[bytes::Bytes] {
        &self.chain
    }
}
