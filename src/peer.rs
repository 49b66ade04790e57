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

/// Marks a request that arrived on a TLS connection the server terminated
/// itself, as a request extension (the gateway and sidecar servers insert
/// it). The proxy then reports `https` in `X-Forwarded-Proto` and
/// `Forwarded: proto=` for this request, whatever its configured
/// `client_scheme`, so one proxy serves TLS and plain-text listeners (or a
/// permissive listener) truthfully.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TlsConnection;

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
    /// The one URI SAN parsed as a SPIFFE ID, once per connection.
    spiffe_id: Option<SpiffeId>,
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
                spiffe_id: None,
            }),
        })
    }

    /// The same chain with the leaf's DNS and URI subject alternative names.
    #[must_use]
    pub fn with_subject_alt_names(self, dns_names: Vec<String>, uri_names: Vec<String>) -> Self {
        let spiffe_id = match uri_names.as_slice() {
            [only] => only.parse().ok(),
            _ => None,
        };
        Self {
            inner: std::sync::Arc::new(CertificateInner {
                chain: self.inner.chain.clone(),
                dns_names,
                uri_names,
                spiffe_id,
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

impl PeerCertificate {
    /// The leaf's SPIFFE ID: its URI subject alternative name when that
    /// is a valid SPIFFE ID. `None` when the leaf has no URI SAN, more
    /// than one (an X.509-SVID has exactly one, so a certificate with
    /// several is not an SVID and its identity is ambiguous), or one that
    /// is not a SPIFFE ID.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use meshgate::peer::PeerCertificate;
    ///
    /// let certificate = PeerCertificate::new(vec![Bytes::from_static(b"DER")])
    ///     .unwrap()
    ///     .with_subject_alt_names(vec![], vec!["spiffe://cluster.local/ns/shop/sa/web".to_owned()]);
    /// let id = certificate.spiffe_id().unwrap();
    /// assert_eq!(id.trust_domain(), "cluster.local");
    /// assert_eq!(id.path(), "/ns/shop/sa/web");
    /// ```
    #[must_use]
    pub fn spiffe_id(&self) -> Option<&SpiffeId> {
        // Parsed once, when the names were set (once per connection).
        self.inner.spiffe_id.as_ref()
    }
}

/// A SPIFFE ID (`spiffe://<trust-domain>/<path>`), the identity of a
/// workload in a service mesh, validated as the
/// [SPIFFE ID specification](https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md)
/// asks:
///
/// * the scheme is `spiffe` (lowercase), followed by `://`;
/// * the trust domain is not empty, at most 255 bytes, of lowercase
///   letters, digits, `.`, `-` and `_` (so no port, no user info, no
///   uppercase);
/// * the path is empty or `/`-separated segments, each non-empty, neither
///   `.` nor `..`, of letters, digits, `.`, `-` and `_` (so no trailing
///   `/`, no percent-encoding, no query, no fragment);
/// * the whole ID is at most 2048 bytes.
///
/// Istio names a workload `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
///
/// ```
/// use meshgate::peer::SpiffeId;
///
/// let id: SpiffeId = "spiffe://cluster.local/ns/shop/sa/web".parse().unwrap();
/// assert_eq!(id.trust_domain(), "cluster.local");
/// assert_eq!(id.path(), "/ns/shop/sa/web");
/// assert_eq!(id.to_string(), "spiffe://cluster.local/ns/shop/sa/web");
/// assert!("spiffe://Cluster.local/web".parse::<SpiffeId>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    id: String,
    /// Where the path starts (the end of the trust domain).
    path_start: usize,
}

/// The SPIFFE ID specification's limit on a whole ID (a URI SAN).
const SPIFFE_ID_MAX_BYTES: usize = 2048;
/// The SPIFFE ID specification's limit on a trust domain name.
const TRUST_DOMAIN_MAX_BYTES: usize = 255;
const SPIFFE_SCHEME: &str = "spiffe://";

impl SpiffeId {
    /// The trust domain (`cluster.local`).
    #[must_use]
    pub fn trust_domain(&self) -> &str {
        &self.id[SPIFFE_SCHEME.len()..self.path_start]
    }

    /// The path, empty or starting with `/` (`/ns/shop/sa/web`).
    #[must_use]
    pub fn path(&self) -> &str {
        &self.id[self.path_start..]
    }

    /// The whole ID (`spiffe://cluster.local/ns/shop/sa/web`).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.id
    }
}

impl std::fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.id)
    }
}

impl AsRef<str> for SpiffeId {
    fn as_ref(&self) -> &str {
        &self.id
    }
}

impl std::str::FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(id: &str) -> Result<Self, Self::Err> {
        use SpiffeIdError as E;
        if id.is_empty() {
            return Err(E::Empty);
        }
        if id.len() > SPIFFE_ID_MAX_BYTES {
            return Err(E::TooLong);
        }
        let Some(rest) = id.strip_prefix(SPIFFE_SCHEME) else {
            return Err(E::WrongScheme);
        };
        let path_at = rest.find('/').unwrap_or(rest.len());
        let (trust_domain, path) = rest.split_at(path_at);
        if trust_domain.is_empty() {
            return Err(E::MissingTrustDomain);
        }
        if trust_domain.len() > TRUST_DOMAIN_MAX_BYTES {
            return Err(E::TrustDomainTooLong);
        }
        for byte in trust_domain.bytes() {
            match byte {
                b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => {}
                b':' => return Err(E::Port),
                b'@' => return Err(E::UserInfo),
                b'?' => return Err(E::Query),
                b'#' => return Err(E::Fragment),
                _ => return Err(E::BadTrustDomainChar),
            }
        }
        if !path.is_empty() {
            // `path` starts with the `/` that ended the trust domain.
            for segment in path[1..].split('/') {
                match segment {
                    "" => return Err(E::EmptySegment),
                    "." | ".." => return Err(E::DotSegment),
                    _ => {}
                }
                for byte in segment.bytes() {
                    match byte {
                        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => {}
                        b'?' => return Err(E::Query),
                        b'#' => return Err(E::Fragment),
                        _ => return Err(E::BadPathChar),
                    }
                }
            }
        }
        Ok(Self {
            id: id.to_owned(),
            path_start: SPIFFE_SCHEME.len() + trust_domain.len(),
        })
    }
}

impl TryFrom<&str> for SpiffeId {
    type Error = SpiffeIdError;

    fn try_from(id: &str) -> Result<Self, Self::Error> {
        id.parse()
    }
}

/// Why a string is not a [`SpiffeId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpiffeIdError {
    /// The string is empty.
    Empty,
    /// Longer than 2048 bytes.
    TooLong,
    /// It does not start with `spiffe://`.
    WrongScheme,
    /// Nothing between `spiffe://` and the path.
    MissingTrustDomain,
    /// The trust domain is longer than 255 bytes.
    TrustDomainTooLong,
    /// The trust domain has a character other than lowercase letters,
    /// digits, `.`, `-` and `_`.
    BadTrustDomainChar,
    /// A port after the trust domain.
    Port,
    /// User info (`user@`) before the trust domain.
    UserInfo,
    /// A query (`?`).
    Query,
    /// A fragment (`#`).
    Fragment,
    /// An empty path segment (`//`, or a trailing `/`).
    EmptySegment,
    /// A `.` or `..` path segment.
    DotSegment,
    /// A path character other than letters, digits, `.`, `-` and `_`
    /// (percent-encoding is not allowed either).
    BadPathChar,
}

impl std::fmt::Display for SpiffeIdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Empty => "a SPIFFE ID cannot be empty",
            Self::TooLong => "a SPIFFE ID is at most 2048 bytes",
            Self::WrongScheme => "a SPIFFE ID starts with spiffe://",
            Self::MissingTrustDomain => "the SPIFFE ID has no trust domain",
            Self::TrustDomainTooLong => "a SPIFFE trust domain is at most 255 bytes",
            Self::BadTrustDomainChar => {
                "a SPIFFE trust domain has only lowercase letters, digits, '.', '-' and '_'"
            }
            Self::Port => "a SPIFFE ID cannot have a port",
            Self::UserInfo => "a SPIFFE ID cannot have user info",
            Self::Query => "a SPIFFE ID cannot have a query",
            Self::Fragment => "a SPIFFE ID cannot have a fragment",
            Self::EmptySegment => "a SPIFFE ID path cannot have empty segments or a trailing slash",
            Self::DotSegment => "a SPIFFE ID path cannot have '.' or '..' segments",
            Self::BadPathChar => {
                "a SPIFFE ID path has only letters, digits, '.', '-', '_' and '/' separators"
            }
        })
    }
}

impl std::error::Error for SpiffeIdError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_spiffe_ids_from_the_spec() {
        for (id, trust_domain, path) in [
            ("spiffe://trustdomain", "trustdomain", ""),
            ("spiffe://trustdomain/path", "trustdomain", "/path"),
            (
                "spiffe://trustdomain/path/element",
                "trustdomain",
                "/path/element",
            ),
            (
                "spiffe://example.org/ns/prod/sa/web",
                "example.org",
                "/ns/prod/sa/web",
            ),
            (
                "spiffe://trust-domain_1.name/P.a-t_h9",
                "trust-domain_1.name",
                "/P.a-t_h9",
            ),
            ("spiffe://td/..a/.b./...", "td", "/..a/.b./..."),
        ] {
            let parsed: SpiffeId = id.parse().unwrap_or_else(|error| panic!("{id}: {error}"));
            assert_eq!(parsed.trust_domain(), trust_domain, "{id}");
            assert_eq!(parsed.path(), path, "{id}");
            assert_eq!(parsed.as_str(), id);
            assert_eq!(parsed.to_string(), id);
        }
    }

    #[test]
    fn invalid_spiffe_ids_from_the_spec() {
        use SpiffeIdError as E;
        let long_path = format!("spiffe://td/{}", "a".repeat(2048));
        let long_domain = format!("spiffe://{}", "a".repeat(256));
        for (id, error) in [
            ("", E::Empty),
            ("http://td/path", E::WrongScheme),
            ("SPIFFE://td/path", E::WrongScheme),
            ("spiffe:/td/path", E::WrongScheme),
            ("td/path", E::WrongScheme),
            ("spiffe://", E::MissingTrustDomain),
            ("spiffe:///path", E::MissingTrustDomain),
            ("spiffe://Trustdomain/path", E::BadTrustDomainChar),
            ("spiffe://td%41/path", E::BadTrustDomainChar),
            ("spiffe://td:8080/path", E::Port),
            ("spiffe://user:pass@td/path", E::Port),
            ("spiffe://user@td/path", E::UserInfo),
            ("spiffe://td?query", E::Query),
            ("spiffe://td/path?query=1", E::Query),
            ("spiffe://td/path#fragment", E::Fragment),
            ("spiffe://td/", E::EmptySegment),
            ("spiffe://td//path", E::EmptySegment),
            ("spiffe://td/path/", E::EmptySegment),
            ("spiffe://td/./path", E::DotSegment),
            ("spiffe://td/path/..", E::DotSegment),
            ("spiffe://td/pa%41th", E::BadPathChar),
            ("spiffe://td/pa th", E::BadPathChar),
            ("spiffe://td/pa$th", E::BadPathChar),
            (long_path.as_str(), E::TooLong),
            (long_domain.as_str(), E::TrustDomainTooLong),
        ] {
            assert_eq!(id.parse::<SpiffeId>(), Err(error), "{id}");
            assert!(!error.to_string().is_empty());
        }
        // Exactly at the limits is fine.
        let at_limit = format!("spiffe://td/{}", "a".repeat(2048 - "spiffe://td/".len()));
        assert_eq!(at_limit.len(), 2048);
        assert!(at_limit.parse::<SpiffeId>().is_ok());
        let domain_at_limit = format!("spiffe://{}", "a".repeat(255));
        assert!(domain_at_limit.parse::<SpiffeId>().is_ok());
    }

    #[test]
    fn a_certificate_has_a_spiffe_id_only_with_exactly_one_uri_san() {
        let chain = vec![bytes::Bytes::from_static(b"DER")];
        let with = |uris: &[&str]| {
            PeerCertificate::new(chain.clone())
                .unwrap()
                .with_subject_alt_names(
                    vec!["web.test".to_owned()],
                    uris.iter().map(|uri| (*uri).to_owned()).collect(),
                )
                .spiffe_id()
                .cloned()
        };
        assert_eq!(
            with(&["spiffe://td/web"]).map(|id| id.to_string()),
            Some("spiffe://td/web".to_owned())
        );
        assert_eq!(with(&[]), None);
        assert_eq!(with(&["spiffe://td/web", "spiffe://td/api"]), None);
        assert_eq!(with(&["https://td/web"]), None);
    }
}
