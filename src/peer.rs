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
/// (mutual TLS), leaf first, DER-encoded, with the leaf's subject
/// alternative names, as a request extension.
///
/// A server that terminates TLS with client-certificate verification
/// inserts it into every request of the connection (the gateway server does
/// with the `tls` feature); a request without it came over plain TCP or from
/// a client that presented no certificate where one was optional. The
/// leaf's DNS and URI SANs (a SPIFFE ID such as
/// `spiffe://cluster.local/ns/default/sa/web` is a URI SAN) are read once at
/// the handshake; parse [`end_entity`](Self::end_entity) with an X.509 crate
/// for anything else (the subject, extensions). Clones share everything.
///
/// ```
/// use bytes::Bytes;
/// use meshgate::peer::PeerCertificate;
///
/// let certificate = PeerCertificate::new(vec![Bytes::from_static(b"DER")])
///     .unwrap()
///     .with_subject_alt_names(vec![], vec!["spiffe://example.org/web".to_owned()]);
/// assert_eq!(certificate.uri_names(), ["spiffe://example.org/web"]);
/// assert!(PeerCertificate::new(Vec::new()).is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    inner: std::sync::Arc<CertificateInner>,
}

#[derive(Debug, PartialEq, Eq)]
struct CertificateInner {
    chain: Vec<bytes::Bytes>,
    dns_names: Vec<String>,
    uri_names: Vec<String>,
}

impl PeerCertificate {
    /// A chain of DER certificates, leaf first, without names; `None` when
    /// empty.
    #[must_use]
    pub fn new(chain: Vec<bytes::Bytes>) -> Option<Self> {
        if chain.is_empty() {
            return None;
        }
        Some(Self {
            inner: std::sync::Arc::new(CertificateInner {
                chain,
                dns_names: Vec::new(),
                uri_names: Vec::new(),
            }),
        })
    }

    /// The same chain with the leaf's DNS and URI subject alternative names.
    #[must_use]
    pub fn with_subject_alt_names(self, dns_names: Vec<String>, uri_names: Vec<String>) -> Self {
        Self {
            inner: std::sync::Arc::new(CertificateInner {
                chain: self.inner.chain.clone(),
                dns_names,
                uri_names,
            }),
        }
    }

    /// The client's own (leaf) certificate, DER.
    #[must_use]
    pub fn end_entity(&self) -> &[u8] {
        // `new` refuses an empty chain, so there is always a first one.
        self.inner.chain.first().map_or(&[], |der| der.as_ref())
    }

    /// The whole chain as presented, leaf first, DER.
    #[must_use]
    pub fn chain(&self) -> &[bytes::Bytes] {
        &self.inner.chain
    }

    /// The leaf's DNS subject alternative names (`client.example.com`).
    #[must_use]
    pub fn dns_names(&self) -> &[String] {
        &self.inner.dns_names
    }

    /// The leaf's URI subject alternative names (SPIFFE IDs).
    #[must_use]
    pub fn uri_names(&self) -> &[String] {
        &self.inner.uri_names
    }
}
