//! The client's IP address, trusted-proxy aware.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use http::HeaderMap;
use http::header::{FORWARDED, HeaderName};

use crate::peer::PeerAddr;

/// The most forwarding hops read from the right of the header: bounds the
/// work a long, client-made header can cause.
const MAX_HOPS: usize = 32;

/// An IPv4 or IPv6 network (`10.0.0.0/8`, `2001:db8::/32`, or one address).
///
/// An IPv4 network also contains the IPv4-mapped IPv6 form of its addresses
/// (`::ffff:10.1.2.3`), as a dual-stack socket reports IPv4 peers. With the
/// `config` feature, a [`config::Cidr`](crate::config::Cidr) converts into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNetwork {
    network: IpAddr,
    prefix: u8,
}

/// Why a network was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidNetwork(String);

impl fmt::Display for InvalidNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidNetwork {}

impl IpNetwork {
    /// The network `address/prefix`; host bits past the prefix are cleared,
    /// and a prefix longer than the address family is an error.
    pub fn new(address: IpAddr, prefix: u8) -> Result<Self, InvalidNetwork> {
        let max = if address.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(InvalidNetwork(format!(
                "prefix length /{prefix} is longer than {max} bits"
            )));
        }
        Ok(Self {
            network: mask(address, prefix),
            prefix,
        })
    }

    /// Whether `ip` is in this network.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix) == self.network
            }
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6
                .to_ipv4_mapped()
                .is_some_and(|v4| mask(IpAddr::V4(v4), self.prefix) == self.network),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & m).into())
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & m).into())
        }
    }
}

impl FromStr for IpNetwork {
    type Err = InvalidNetwork;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidNetwork(format!("invalid network {s:?} (e.g. \"10.0.0.0/8\")"));
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix.parse::<u8>().map_err(|_| invalid())?)),
            None => (s.trim(), None),
        };
        let address: IpAddr = addr.parse().map_err(|_| invalid())?;
        let prefix = prefix.unwrap_or(if address.is_ipv4() { 32 } else { 128 });
        Self::new(address, prefix)
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(feature = "config")]
impl From<crate::config::Cidr> for IpNetwork {
    fn from(cidr: crate::config::Cidr) -> Self {
        Self {
            network: cidr.network(),
            prefix: cidr.prefix(),
        }
    }
}

/// Which forwarding header trusted proxies write.
///
/// Only one is read: a trusted proxy that appends to `X-Forwarded-For`
/// passes a client's own `Forwarded` header through untouched, so reading
/// both would let the client choose its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the default).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

/// Resolves the client IP of a request: [`ClientIp`].
///
/// By default (no trusted proxy) it is the socket peer
/// ([`PeerAddr`]), whatever the request's headers say. When the peer is in
/// one of the trusted networks, the forwarding header is read from the right
/// and the first address that is not trusted is the client; if every hop is
/// trusted, the left-most one. An entry that is not an IP address (`unknown`,
/// an obfuscated `_name`, garbage) stops the walk: the client is then the
/// trusted hop to its right, since nothing further left can be believed.
/// At most 32 hops are read.
///
/// A request without [`PeerAddr`] has no client IP (`None`).
///
/// ```
/// use meshgate::peer::PeerAddr;
/// use meshgate::rate_limit::ClientIpResolver;
///
/// let resolver = ClientIpResolver::new().trust("10.0.0.0/8".parse().unwrap());
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(PeerAddr("10.0.0.2:40000".parse().unwrap()));
/// request
///     .headers_mut()
///     .insert("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.1".parse().unwrap());
/// // 10.0.0.1 is trusted, 203.0.113.9 is not: it is the client; 6.6.6.6 was
/// // written by the client itself and is ignored.
/// assert_eq!(
///     resolver.resolve(request.headers(), request.extensions()),
///     Some("203.0.113.9".parse().unwrap())
/// );
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {
    trusted: Vec<IpNetwork>,
    header: ForwardedHeader,
}

/// The resolved client IP, inserted into request extensions by
/// [`RateLimitLayer`](super::RateLimitLayer) when it resolves one, so inner
/// layers (logging, IP restriction) reuse it instead of resolving again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

impl ClientIpResolver {
    /// Trusts nobody: the client IP is the socket peer.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts the forwarding header of peers in `network`.
    ///
    /// Default: no trusted network.
    #[must_use]
    pub fn trust(mut self, network: IpNetwork) -> Self {
        self.trusted.push(network);
        self
    }

    /// Trusts every network of `networks`.
    #[must_use]
    pub fn trust_all<I, N>(mut self, networks: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<IpNetwork>,
    {
        self.trusted.extend(networks.into_iter().map(Into::into));
        self
    }

    /// The header trusted proxies write.
    ///
    /// Default: [`ForwardedHeader::XForwardedFor`].
    #[must_use]
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(ip))
    }

    /// The client IP of a request from its headers and extensions; `None`
    /// without a [`PeerAddr`]. A [`ClientIp`] already in the extensions
    /// (resolved by an outer layer) is taken as it is.
    #[must_use]
    pub fn resolve(&self, headers: &HeaderMap, extensions: &http::Extensions) -> Option<IpAddr> {
        if let Some(ClientIp(ip)) = extensions.get::<ClientIp>() {
            return Some(*ip);
        }
        self.resolve_from_peer(headers, extensions)
    }

    /// [`resolve`](Self::resolve) without looking for a [`ClientIp`].
    pub(crate) fn resolve_from_peer(
        &self,
        headers: &HeaderMap,
        extensions: &http::Extensions,
    ) -> Option<IpAddr> {
        let peer = canonical(extensions.get::<PeerAddr>()?.0.ip());
        if self.trusted.is_empty() || !self.is_trusted(peer) {
            return Some(peer);
        }
        let mut client = peer;
        let name: HeaderName = match self.header {
            ForwardedHeader::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
            ForwardedHeader::Forwarded => FORWARDED,
        };
        // Header lines in order, each read right to left: the right-most
        // entry of the last line is the nearest hop.
        let lines: Vec<&str> = headers
            .get_all(&name)
            .iter()
            .map(|v| v.to_str().unwrap_or(""))
            .collect();
        let hops = lines
            .iter()
            .rev()
            .flat_map(|line| line.rsplit(','))
            .take(MAX_HOPS);
        for hop in hops {
            let parsed = match self.header {
                ForwardedHeader::XForwardedFor => parse_node(hop.trim()),
                ForwardedHeader::Forwarded => forwarded_for(hop),
            };
            let Some(ip) = parsed.map(canonical) else {
                return Some(client);
            };
            client = ip;
            if !self.is_trusted(ip) {
                return Some(ip);
            }
        }
        Some(client)
    }
}

/// IPv4-mapped IPv6 addresses as IPv4, so one client has one key.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The `for=` node of one `Forwarded` element.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        parse_node(value.trim().trim_matches('"'))
    })
}

/// An address as forwarding headers write it: `192.0.2.1`, `192.0.2.1:80`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn nodes() {
        assert_eq!(parse_node("192.0.2.1"), Some(ip("192.0.2.1")));
        assert_eq!(parse_node("192.0.2.1:80"), Some(ip("192.0.2.1")));
        assert_eq!(parse_node("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_node("[2001:db8::1]:4711"), Some(ip("2001:db8::1")));
        assert_eq!(parse_node("unknown"), None);
        assert_eq!(parse_node("_hidden"), None);
        assert_eq!(
            forwarded_for("for=\"[2001:db8::1]:4711\";proto=https"),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            forwarded_for(" proto=http;For=192.0.2.60"),
            Some(ip("192.0.2.60"))
        );
        assert_eq!(forwarded_for("for=unknown"), None);
    }

    #[test]
    fn networks() {
        let net: IpNetwork = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.1.2.3")));
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!("10.0.0.0/33".parse::<IpNetwork>().is_err());
        assert!(
            "::/0"
                .parse::<IpNetwork>()
                .unwrap()
                .contains(ip("2001:db8::1"))
        );
        assert_eq!(
            "10.1.2.3/8".parse::<IpNetwork>().unwrap().to_string(),
            "10.0.0.0/8"
        );
    }
}
