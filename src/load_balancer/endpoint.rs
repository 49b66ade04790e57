//! One upstream endpoint: where requests go, and with what weight.

use std::fmt;
use std::net::{SocketAddr, SocketAddrV6};
use std::str::FromStr;
use std::sync::Arc;

use http::uri::{Authority, Scheme, Uri};

use super::LoadBalancerError;
use super::stats::EndpointStats;

/// The largest weight an endpoint can have; larger weights are clamped.
pub const MAX_WEIGHT: u32 = 10_000;

/// An upstream endpoint: a scheme, an authority (`host:port`) and a weight.
///
/// Two endpoints with the same scheme and authority are the same target:
/// updating the set keeps that target's statistics, health and ejection
/// state even when its weight changes.
///
/// ```
/// use meshgate::load_balancer::Endpoint;
///
/// let endpoint: Endpoint = "10.0.0.7:8080".parse().unwrap();
/// assert_eq!(endpoint.to_string(), "http://10.0.0.7:8080");
/// let endpoint = Endpoint::parse("https://api.internal:8443").unwrap().with_weight(5);
/// assert_eq!((endpoint.scheme().as_str(), endpoint.weight()), ("https", 5));
/// assert!(Endpoint::parse("http://10.0.0.7:8080/path").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    scheme: Scheme,
    authority: Authority,
    weight: u32,
}

impl Endpoint {
    /// Parses `scheme://host:port` (`http` or `https`) or a bare `host:port`
    /// (taken as `http`), with weight 1. A path other than `/`, a query or
    /// user info is an error.
    pub fn parse(s: &str) -> Result<Self, LoadBalancerError> {
        let invalid = |why: &str| LoadBalancerError::InvalidEndpoint(format!("{s:?}: {why}"));
        let parsed: Result<Uri, http::uri::InvalidUri> = if s.contains("://") {
            s.parse()
        } else {
            format!("http://{s}").parse()
        };
        let uri = parsed.map_err(|e| invalid(&e.to_string()))?;
        let parts = uri.into_parts();
        let scheme = parts.scheme.ok_or_else(|| invalid("no scheme"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(invalid("the scheme must be http or https"));
        }
        let authority = parts.authority.ok_or_else(|| invalid("no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("user info is not allowed"));
        }
        if authority.host().is_empty() {
            return Err(invalid("no host"));
        }
        if parts
            .path_and_query
            .is_some_and(|pq| pq.as_str() != "/" && !pq.as_str().is_empty())
        {
            return Err(invalid("an endpoint has no path or query"));
        }
        Ok(Self {
            scheme,
            authority,
            weight: 1,
        })
    }

    /// An `http` endpoint for a socket address, with weight 1. An IPv6
    /// scope id is dropped: it has no place in a URI authority.
    #[must_use]
    pub fn from_addr(addr: SocketAddr) -> Self {
        let addr = match addr {
            SocketAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(*v6.ip(), v6.port(), 0, 0)),
            v4 => v4,
        };
        Self {
            scheme: Scheme::HTTP,
            // `ip:port` and `[ipv6]:port` (without a scope id) are always
            // valid authorities.
            authority: Authority::try_from(addr.to_string())
                .expect("a socket address is a valid authority"),
            weight: 1,
        }
    }

    /// Sets the weight, clamped to `1..=`[`MAX_WEIGHT`]. Remove an
    /// endpoint from the set (through an
    /// [`EndpointsHandle`](super::EndpointsHandle)) to drain it.
    ///
    /// Default: 1.
    #[must_use]
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight.clamp(1, MAX_WEIGHT);
        self
    }

    /// Sets the scheme (`http` or `https`).
    #[must_use]
    pub fn with_scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// The scheme requests to this endpoint use.
    #[must_use]
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// The endpoint's `host:port`.
    #[must_use]
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The endpoint's weight.
    #[must_use]
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Whether `other` is the same target (scheme and authority), whatever
    /// the weights.
    pub(crate) fn same_target(&self, other: &Self) -> bool {
        self.scheme == other.scheme && self.authority == other.authority
    }
}

impl FromStr for Endpoint {
    type Err = LoadBalancerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Self::from_addr(addr)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endpoint({self}, weight {})", self.weight)
    }
}

/// An endpoint in a set, with the statistics it shares across set updates.
#[derive(Debug)]
pub(crate) struct EndpointState {
    pub(crate) endpoint: Endpoint,
    pub(crate) stats: Arc<EndpointStats>,
}

/// The endpoint the balancer chose for a request, in the request's (see
/// [`LoadBalancerBuilder::tag_requests`](super::LoadBalancerBuilder::tag_requests))
/// and the response's (see
/// [`LoadBalancerBuilder::tag_responses`](super::LoadBalancerBuilder::tag_responses))
/// extensions.
///
/// It keeps the endpoint alive for as long as the request runs, so a
/// request in flight is unaffected when its endpoint leaves the set.
#[derive(Clone)]
pub struct SelectedEndpoint(pub(crate) Arc<EndpointState>);

impl SelectedEndpoint {
    /// The chosen endpoint.
    #[must_use]
    pub fn endpoint(&self) -> &Endpoint {
        &self.0.endpoint
    }

    /// The chosen endpoint's `host:port`.
    #[must_use]
    pub fn authority(&self) -> &Authority {
        &self.0.endpoint.authority
    }
}

impl fmt::Debug for SelectedEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SelectedEndpoint")
            .field(&self.0.endpoint)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bare_and_absolute_forms() {
        let bare = Endpoint::parse("127.0.0.1:9000").unwrap();
        assert_eq!(bare.scheme(), &Scheme::HTTP);
        assert_eq!(bare.authority().as_str(), "127.0.0.1:9000");
        let https = Endpoint::parse("https://svc.local").unwrap();
        assert_eq!(https.to_string(), "https://svc.local");
        assert!(Endpoint::parse("http://svc.local/").is_ok());
        for bad in [
            "ftp://svc",
            "http://u:p@svc",
            "http://svc/x",
            "http://svc?q=1",
            "",
            "http://",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn weights_are_clamped_and_v6_is_bracketed() {
        let addr: SocketAddr = "[::1]:80".parse().unwrap();
        let e = Endpoint::from_addr(addr).with_weight(0);
        assert_eq!(e.authority().as_str(), "[::1]:80");
        assert_eq!(e.weight(), 1);
        assert_eq!(e.with_weight(u32::MAX).weight(), MAX_WEIGHT);
    }
}
