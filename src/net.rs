//! IP networks, trusted proxies and the client's IP address: the one
//! implementation the proxy, the rate limiter, IP restriction, header
//! transforms and the config share.
//!
//! * [`IpNet`]: an IPv4 or IPv6 network in CIDR notation (`10.0.0.0/8`,
//!   `2001:db8::/32`) or one address. With the `config` feature it is the
//!   config's [`Cidr`](crate::config::Cidr).
//! * [`TrustedProxies`]: the networks whose forwarding headers are believed,
//!   and which header they write ([`ForwardedHeader`]); it finds the client
//!   IP of a request.
//! * [`ClientIp`]: the resolved client IP as a request extension, inserted
//!   by the layer that resolved it so inner layers reuse it.
//!
//! # The client IP rule
//!
//! The rule nginx's `real_ip_recursive` and Envoy's `xff_num_trusted_hops`
//! follow, and DESIGN.md's: the client is the socket peer
//! ([`PeerAddr`]) unless the peer is a trusted proxy. Then the forwarding
//! header is read from the right (the entry the nearest proxy appended) and
//! the first address that is not a trusted proxy is the client; what a
//! client wrote further left is never believed. If every entry read is
//! trusted, the left-most one is the client; with no header at all, the
//! trusted peer itself is.
//!
//! The client is unknown (`None`) when there is no [`PeerAddr`], or when the
//! walk reaches an entry that is not an IP address (`unknown`, an obfuscated
//! `_name`, garbage, an element without `for=`, a header line that is not
//! visible ASCII): the nearest trusted proxy did not know the client, and its
//! own address is not the client's. Layers decide what unknown means (IP
//! restriction refuses, the rate limiter counts all unknown clients
//! together). Empty list entries are skipped.
//!
//! Entries may carry a port (`192.0.2.1:4711`, `[2001:db8::1]:80`, RFC 7239
//! `"[2001:db8::1]:4711"` quoted, or an obfuscated port `_p1`). Several
//! header lines count as one comma-separated list, in order. At most 32
//! entries are read from the right, bounding the work a long client-made
//! header can cause; if all 32 are trusted, the left-most of them is the
//! client. IPv4-mapped IPv6 addresses (`::ffff:10.1.2.3`, as a dual-stack
//! socket reports IPv4 peers) are matched and reported as IPv4. Reading
//! `X-Forwarded-For` allocates nothing; `Forwarded` allocates one list of
//! the elements of a line, as its quoted values may hold commas.
//!
//! ```
//! use http::Request;
//! use meshgate::net::TrustedProxies;
//! use meshgate::peer::PeerAddr;
//!
//! let trusted = TrustedProxies::new(["10.0.0.0/8".parse().unwrap()]);
//! let mut request = Request::builder()
//!     .header("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.1.1")
//!     .body(())
//!     .unwrap();
//! request.extensions_mut().insert(PeerAddr("10.0.0.2:41000".parse().unwrap()));
//! // 10.0.0.2 and 10.1.1.1 are trusted proxies; 203.0.113.7 is the client,
//! // and the 6.6.6.6 it claims to forward for is not believed.
//! assert_eq!(
//!     trusted.client_ip(request.headers(), request.extensions()),
//!     Some("203.0.113.7".parse().unwrap())
//! );
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Arc;

use http::header::{FORWARDED, HeaderName};
use http::{Extensions, HeaderMap};

use crate::peer::PeerAddr;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The most forwarding entries read from the right of the header: bounds
/// the work a long, client-made header can cause.
const MAX_HOPS: usize = 32;

/// An IPv4 or IPv6 network: `10.0.0.0/8`, `2001:db8::/32`, or a single
/// address (`192.0.2.7`, the same as `/32` or `/128`).
///
/// Host bits past the prefix must be zero (`10.0.0.1/8` is refused: it is
/// almost always a typo for a single host or a wider network). An IPv4
/// network also contains the IPv4-mapped IPv6 form of its addresses
/// (`::ffff:10.1.2.3`), which is how a dual-stack socket reports IPv4 peers,
/// and the IPv6 network `::ffff:0:0/96` contains every IPv4 address.
///
/// With the `config` feature it deserializes from a string (it is the
/// config's [`Cidr`](crate::config::Cidr)).
///
/// ```
/// use meshgate::net::IpNet;
///
/// let net: IpNet = "10.0.0.0/8".parse().unwrap();
/// assert!(net.contains("10.20.30.40".parse().unwrap()));
/// assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
/// assert!(!net.contains("11.0.0.1".parse().unwrap()));
/// assert!("10.0.0.1/8".parse::<IpNet>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    network: IpAddr,
    prefix: u8,
}

/// Why an [`IpNet`] was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpNetError(String);

impl fmt::Display for IpNetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IpNetError {}

impl IpNet {
    /// The network `address/prefix`.
    ///
    /// # Errors
    ///
    /// When the prefix is longer than the address family or host bits are
    /// set.
    pub fn new(address: IpAddr, prefix: u8) -> Result<Self, IpNetError> {
        let max = max_prefix(address);
        if prefix > max {
            return Err(IpNetError(format!(
                "prefix length /{prefix} is longer than {max} bits"
            )));
        }
        let masked = mask(address, prefix);
        if masked != address {
            return Err(IpNetError(format!(
                "{address}/{prefix} has host bits set (the network is {masked}/{prefix})"
            )));
        }
        Ok(Self {
            network: address,
            prefix,
        })
    }

    /// A network of one address.
    #[must_use]
    pub fn host(address: IpAddr) -> Self {
        Self {
            network: address,
            prefix: max_prefix(address),
        }
    }

    /// The network address.
    #[must_use]
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits.
    #[must_use]
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in this network, IPv4-mapped IPv6 addresses
    /// included.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.network, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            (IpAddr::V6(_), IpAddr::V4(v4)) => IpAddr::V6(v4.to_ipv6_mapped()),
            _ => ip,
        };
        mask(ip, self.prefix) == self.network
    }
}

fn max_prefix(address: IpAddr) -> u8 {
    if address.is_ipv4() { 32 } else { 128 }
}

/// `ip` with the bits past `prefix` cleared.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    let prefix = u32::from(prefix);
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            IpNetError(format!(
                "invalid CIDR {s:?} (expected e.g. \"10.0.0.0/8\", \"2001:db8::/32\" or one address)"
            ))
        };
        let s = s.trim();
        match s.split_once('/') {
            Some((address, prefix)) => {
                // `u8::from_str` takes a leading `+`; a prefix is digits only.
                if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid());
                }
                let prefix = prefix.parse::<u8>().map_err(|_| invalid())?;
                Self::new(address.parse().map_err(|_| invalid())?, prefix)
            }
            None => Ok(Self::host(s.parse().map_err(|_| invalid())?)),
        }
    }
}

impl From<IpAddr> for IpNet {
    fn from(address: IpAddr) -> Self {
        Self::host(address)
    }
}

#[cfg(feature = "config")]
impl<'de> serde::Deserialize<'de> for IpNet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IpNetVisitor;

        impl serde::de::Visitor<'_> for IpNetVisitor {
            type Value = IpNet;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a network in CIDR notation, like \"10.0.0.0/8\"")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<IpNet, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_str(IpNetVisitor)
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

/// The networks of trusted proxies, whose forwarding headers are believed,
/// and the header they write; resolves a request's client IP by the
/// [module's rule](self).
///
/// The default trusts nobody: the client is the socket peer. Cloning is
/// cheap: the networks are shared behind an `Arc`.
///
/// ```
/// use meshgate::net::{ForwardedHeader, TrustedProxies};
///
/// let trusted = TrustedProxies::parse(["10.0.0.0/8", "2001:db8::/32"])
///     .unwrap()
///     .header(ForwardedHeader::Forwarded);
/// assert!(trusted.contains("::ffff:10.0.0.1".parse().unwrap()));
/// let mut headers = http::HeaderMap::new();
/// headers.insert("forwarded", "for=\"[2001:db9::1]:4711\", for=10.0.0.9".parse().unwrap());
/// assert_eq!(
///     trusted.resolve("10.0.0.2".parse().unwrap(), &headers),
///     Some("2001:db9::1".parse().unwrap())
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Arc<[IpNet]>,
    header: ForwardedHeader,
}

/// The resolved client IP of a request, as a request extension.
///
/// The rate limiter inserts the one it resolved, so inner layers (logging,
/// header transforms) reuse it instead of resolving again; an application
/// can insert it from an outer layer of its own.
/// [`TrustedProxies::client_ip`] takes it as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

impl TrustedProxies {
    /// Trusts the forwarding header of peers in `networks`.
    #[must_use]
    pub fn new(networks: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            networks: networks.into_iter().collect(),
            header: ForwardedHeader::default(),
        }
    }

    /// Parses the networks of [`new`](Self::new) from CIDR strings; a bare
    /// address is a network of one.
    ///
    /// # Errors
    ///
    /// The first string that is not a network, as [`IpNet`] parses it.
    pub fn parse<I, S>(networks: I) -> Result<Self, IpNetError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let networks = networks
            .into_iter()
            .map(|n| n.as_ref().parse::<IpNet>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(networks))
    }

    /// The header the trusted proxies write.
    ///
    /// Default: [`ForwardedHeader::XForwardedFor`].
    #[must_use]
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// The trusted networks.
    #[must_use]
    pub fn networks(&self) -> &[IpNet] {
        &self.networks
    }

    /// Whether no proxy is trusted.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|net| net.contains(ip))
    }

    /// The client IP of a request from its headers and extensions: a
    /// [`ClientIp`] already there (an outer layer resolved it) as it is,
    /// else the [`PeerAddr`] and the forwarding header by the
    /// [module's rule](self); `None` without either.
    #[must_use]
    pub fn client_ip(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<IpAddr> {
        if let Some(ClientIp(ip)) = extensions.get::<ClientIp>() {
            return Some(*ip);
        }
        self.resolve(extensions.get::<PeerAddr>()?.0.ip(), headers)
    }

    /// The client IP of a request that came from `peer` with `headers`, by
    /// the [module's rule](self); `None` when it is unknown.
    #[must_use]
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return Some(peer);
        }
        let mut walk = Walk {
            trusted: self,
            client: peer,
            read: 0,
        };
        let name = match self.header {
            ForwardedHeader::XForwardedFor => &X_FORWARDED_FOR,
            ForwardedHeader::Forwarded => &FORWARDED,
        };
        // Header lines last to first, each right to left: the right-most
        // entry of the last line is the nearest hop.
        for line in headers.get_all(name).iter().rev() {
            let line = line.to_str().ok()?;
            let step = match self.header {
                ForwardedHeader::XForwardedFor => line
                    .rsplit(',')
                    .map(|entry| walk.step(entry.trim(), parse_node))
                    .find(|step| !matches!(step, Step::Next)),
                ForwardedHeader::Forwarded => {
                    // Quoted values may hold commas, so elements are split
                    // left to right, then walked right to left.
                    let elements: Vec<&str> = split_unquoted(line, b',').collect();
                    elements
                        .into_iter()
                        .rev()
                        .map(|element| walk.step(element.trim(), forwarded_for))
                        .find(|step| !matches!(step, Step::Next))
                }
            };
            match step {
                None | Some(Step::Next) => {}
                Some(Step::Client(client)) => return Some(client),
                Some(Step::Unknown) => return None,
                Some(Step::Capped) => return Some(walk.client),
            }
        }
        Some(walk.client)
    }
}

/// The state of one walk through the forwarding entries.
struct Walk<'a> {
    trusted: &'a TrustedProxies,
    /// The left-most trusted address so far.
    client: IpAddr,
    read: usize,
}

enum Step {
    /// A trusted hop, or an empty entry: read on.
    Next,
    /// The first untrusted address: the client.
    Client(IpAddr),
    /// Not an address: the client is unknown.
    Unknown,
    /// [`MAX_HOPS`] entries read, all trusted.
    Capped,
}

impl Walk<'_> {
    fn step(&mut self, entry: &str, parse: fn(&str) -> Option<IpAddr>) -> Step {
        if self.read == MAX_HOPS {
            return Step::Capped;
        }
        self.read += 1;
        if entry.is_empty() {
            return Step::Next;
        }
        let Some(ip) = parse(entry) else {
            return Step::Unknown;
        };
        let ip = ip.to_canonical();
        if !self.trusted.contains(ip) {
            return Step::Client(ip);
        }
        self.client = ip;
        Step::Next
    }
}

/// `s` split at `sep` outside RFC 9110 quoted-strings.
fn split_unquoted(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        let mut quoted = false;
        let mut escaped = false;
        for (i, b) in s.bytes().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                _ if b == sep && !quoted => {
                    rest = Some(&s[i + 1..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

/// The `for=` node of one RFC 7239 `Forwarded` element; `None` without one.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    split_unquoted(element, b';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        let node = match value.strip_prefix('"') {
            // An address needs no escapes; a quoted value with one is not
            // an address.
            Some(quoted) => quoted.strip_suffix('"').filter(|v| !v.contains('\\'))?,
            None => value,
        };
        parse_node(node)
    })
}

/// An address as forwarding headers write it: `192.0.2.1`, `192.0.2.1:80`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`, with an obfuscated
/// port (`_p1`) where a port may stand.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return address.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (host, port) = node.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A port number, or an RFC 7239 obfuscated port (`_` and then letters,
/// digits, `.`, `_`, `-`).
fn is_port(port: &str) -> bool {
    match port.strip_prefix('_') {
        Some(obfuscated) => {
            !obfuscated.is_empty()
                && obfuscated
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        }
        None => port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok(),
    }
}

/// `ip` as text, as `Display` writes it; IPv4 (the common case) without
/// the formatting machinery, which costs several times more and grows its
/// buffer twice. For headers and templates written once per request.
#[cfg_attr(not(any(feature = "proxy", feature = "transform")), allow(dead_code))]
pub(crate) fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            push_ipv4(&mut out, v4);
            out
        }
        IpAddr::V6(v6) => v6.to_string(),
    }
}

/// Appends `ip` in dotted-decimal form.
#[cfg_attr(not(any(feature = "proxy", feature = "transform")), allow(dead_code))]
pub(crate) fn push_ipv4(out: &mut String, ip: Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn ip_text_is_the_display_form() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "192.0.2.7",
            "255.255.255.255",
            "10.0.100.1",
            "::1",
            "2001:db8::7",
            "::ffff:192.0.2.9",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
        for octet in 0..=255u8 {
            let ip = IpAddr::from([octet, 255 - octet, octet / 3, 7]);
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn headers(name: &HeaderName, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(name, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn v4_networks() {
        let n = net("192.168.0.0/16");
        assert!(n.contains(ip("192.168.255.1")));
        assert!(!n.contains(ip("192.169.0.1")));
        assert!(!n.contains(ip("2001:db8::1")));
        assert!(n.contains(ip("::ffff:192.168.1.1")));
        assert!(net("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(!net("0.0.0.0/0").contains(ip("::1")));
        let host = net("203.0.113.9");
        assert_eq!(host.prefix(), 32);
        assert_eq!(host.to_string(), "203.0.113.9/32");
        assert!(host.contains(ip("203.0.113.9")));
        assert!(!host.contains(ip("203.0.113.8")));
        assert_eq!(IpNet::from(ip("203.0.113.9")), host);
        assert_eq!(net(" 10.0.0.0/8 ").network(), ip("10.0.0.0"));
    }

    #[test]
    fn v6_networks() {
        let n = net("2001:db8::/32");
        assert!(n.contains(ip("2001:db8:ffff::1")));
        assert!(!n.contains(ip("2001:db9::1")));
        assert!(!n.contains(ip("10.0.0.1")));
        assert!(net("::/0").contains(ip("::1")));
        assert!(net("::/0").contains(ip("2001:db8::1")));
        let lo = net("::1");
        assert_eq!(lo.prefix(), 128);
        assert!(lo.contains(ip("::1")));
    }

    #[test]
    fn mapped_v4() {
        let n = net("10.0.0.0/8");
        assert!(n.contains(ip("::ffff:10.9.8.7")));
        assert!(!n.contains(ip("::ffff:11.9.8.7")));
        // The IPv6 form of the mapped range holds every IPv4 address.
        let mapped = net("::ffff:0:0/96");
        assert!(mapped.contains(ip("10.1.2.3")));
        assert!(mapped.contains(ip("::ffff:10.1.2.3")));
        assert!(!mapped.contains(ip("2001:db8::1")));
        assert!(net("::ffff:10.0.0.1").contains(ip("10.0.0.1")));
    }

    #[test]
    fn bad_networks_are_refused() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.1/8",
            "10.1.2.3/8",
            "10.0.0.0/",
            "10.0.0/8",
            "x/8",
            "ten",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            "10.0.0.1/8".parse::<IpNet>().unwrap_err().to_string(),
            "10.0.0.1/8 has host bits set (the network is 10.0.0.0/8)"
        );
        assert!(IpNet::new(ip("10.0.0.0"), 33).is_err());
        assert!(TrustedProxies::parse(["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(["ten"]).is_err());
    }

    #[test]
    fn trusted_proxies_match_by_prefix() {
        let trusted = TrustedProxies::parse(["10.0.0.0/8", "2001:db8::/32", "192.0.2.1"]).unwrap();
        assert!(trusted.contains(ip("10.200.3.4")));
        assert!(trusted.contains(ip("::ffff:10.0.0.1")));
        assert!(trusted.contains(ip("2001:db8:1::5")));
        assert!(trusted.contains(ip("192.0.2.1")));
        assert!(!trusted.contains(ip("192.0.2.2")));
        assert!(!trusted.contains(ip("11.0.0.1")));
        let all = TrustedProxies::parse(["0.0.0.0/0"]).unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!(TrustedProxies::default().is_empty());
    }

    #[test]
    fn nodes() {
        assert_eq!(parse_node("192.0.2.1"), Some(ip("192.0.2.1")));
        assert_eq!(parse_node("192.0.2.1:80"), Some(ip("192.0.2.1")));
        assert_eq!(parse_node("192.0.2.1:_p1"), Some(ip("192.0.2.1")));
        assert_eq!(parse_node("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_node("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(parse_node("[2001:db8::1]:4711"), Some(ip("2001:db8::1")));
        for bad in [
            "unknown",
            "_hidden",
            "192.0.2.1:99999",
            "192.0.2.1:",
            "192.0.2.1:+80",
            "[2001:db8::1]x",
            "[2001:db8::1]:",
            "[192.0.2.1]",
            "[2001:db8::1",
            "",
        ] {
            assert_eq!(parse_node(bad), None, "{bad:?}");
        }
        assert_eq!(
            forwarded_for("for=\"[2001:db8::1]:4711\";proto=https"),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            forwarded_for(" proto=http;For=192.0.2.60"),
            Some(ip("192.0.2.60"))
        );
        assert_eq!(
            forwarded_for("host=\"a;for=6.6.6.6\";for=192.0.2.60"),
            Some(ip("192.0.2.60"))
        );
        assert_eq!(forwarded_for("for=unknown"), None);
        assert_eq!(forwarded_for("for=\"192.0.2.1"), None);
        assert_eq!(forwarded_for("for=\"192.0.2.1\\\""), None);
        assert_eq!(forwarded_for("proto=https"), None);
    }

    #[test]
    fn quoted_commas_do_not_split_elements() {
        let parts: Vec<&str> = split_unquoted("a=1, b=\"x,\\\"y\", c", b',').collect();
        assert_eq!(parts, ["a=1", " b=\"x,\\\"y\"", " c"]);
        assert_eq!(split_unquoted("", b',').collect::<Vec<_>>(), [""]);
    }

    #[test]
    fn right_most_untrusted_x_forwarded_for_entry_wins() {
        let r = TrustedProxies::new([net("10.0.0.0/8"), net("2001:db8::/32")]);
        let table: &[(&str, &[&str], Option<&str>)] = &[
            // Untrusted peer: headers ignored.
            ("198.51.100.1", &["1.1.1.1"], Some("198.51.100.1")),
            // Trusted peer, no header: the peer.
            ("10.0.0.1", &[], Some("10.0.0.1")),
            ("10.0.0.1", &["1.1.1.1, 2.2.2.2"], Some("2.2.2.2")),
            ("10.0.0.1", &["1.1.1.1, 10.9.9.9"], Some("1.1.1.1")),
            (
                "10.0.0.2",
                &["6.6.6.6, 198.51.100.7, 10.0.0.1"],
                Some("198.51.100.7"),
            ),
            // Several lines are one list, in order.
            ("10.0.0.1", &["1.1.1.1", "10.2.2.2"], Some("1.1.1.1")),
            (
                "10.0.0.2",
                &["6.6.6.6, 198.51.100.7", "10.0.0.1:3456"],
                Some("198.51.100.7"),
            ),
            // All trusted: the left-most.
            ("10.0.0.1", &["10.3.3.3, 10.2.2.2"], Some("10.3.3.3")),
            // Ports and brackets.
            ("10.0.0.1", &["[2001:db9::1]:443"], Some("2001:db9::1")),
            ("10.0.0.1", &["203.0.113.5:999"], Some("203.0.113.5")),
            ("2001:db8::7", &["[2001:db9::2]"], Some("2001:db9::2")),
            (
                "::ffff:10.0.0.2",
                &["[2001:db9::1]:80, 2001:db8::9"],
                Some("2001:db9::1"),
            ),
            // Mapped IPv4 peers and entries are trusted as IPv4 and
            // reported as IPv4.
            ("::ffff:10.0.0.1", &["5.5.5.5"], Some("5.5.5.5")),
            ("::ffff:8.8.8.8", &["5.5.5.5"], Some("8.8.8.8")),
            ("10.0.0.1", &["::ffff:5.5.5.5"], Some("5.5.5.5")),
            // Garbage past trusted hops: unknown. Garbage further left than
            // the client is never looked at.
            ("10.0.0.1", &["unknown"], None),
            ("10.0.0.1", &["1.1.1.1, 10.0.0.9, garbage"], None),
            ("10.0.0.2", &["1.2.3.4, garbage, 10.0.0.1"], None),
            ("10.0.0.1", &["garbage, 1.1.1.1"], Some("1.1.1.1")),
            // Empty entries are skipped.
            ("10.0.0.1", &["1.1.1.1,, "], Some("1.1.1.1")),
            ("10.0.0.1", &[""], Some("10.0.0.1")),
        ];
        for (peer, xff, expected) in table {
            assert_eq!(
                r.resolve(ip(peer), &headers(&X_FORWARDED_FOR, xff)),
                expected.map(ip),
                "{peer} {xff:?}"
            );
        }
        // Trusting nobody: the peer, whatever the header says.
        assert_eq!(
            TrustedProxies::default()
                .resolve(ip("10.0.0.1"), &headers(&X_FORWARDED_FOR, &["1.1.1.1"])),
            Some(ip("10.0.0.1"))
        );
        // `Forwarded` is not read when `X-Forwarded-For` is configured.
        assert_eq!(
            r.resolve(ip("10.0.0.1"), &headers(&FORWARDED, &["for=1.1.1.1"])),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn a_non_ascii_line_is_unknown() {
        let r = TrustedProxies::new([net("10.0.0.0/8")]);
        let mut map = HeaderMap::new();
        map.append(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"1.1.1.1, \xff").unwrap(),
        );
        assert_eq!(r.resolve(ip("10.0.0.1"), &map), None);
        assert_eq!(r.resolve(ip("8.8.8.8"), &map), Some(ip("8.8.8.8")));
    }

    #[test]
    fn forwarded_elements_right_to_left() {
        let r = TrustedProxies::new([net("10.0.0.0/8")]).header(ForwardedHeader::Forwarded);
        let table: &[(&[&str], Option<&str>)] = &[
            (
                &["for=6.6.6.6, for=\"198.51.100.7:1234\";proto=https, for=10.0.0.1"],
                Some("198.51.100.7"),
            ),
            (
                &["for=6.6.6.6", "for=198.51.100.8;by=10.0.0.1"],
                Some("198.51.100.8"),
            ),
            (&["for=\"[2001:db8::1]:4711\""], Some("2001:db8::1")),
            (
                &["for=10.0.0.5;host=\"a,b\", for=10.0.0.6"],
                Some("10.0.0.5"),
            ),
            (&["for=6.6.6.6;host=\"x, for=10.0.0.9\""], Some("6.6.6.6")),
            (&["for=unknown"], None),
            (&["for=_hidden, for=10.0.0.1"], None),
            (&["proto=https"], None),
            (&["for=1.1.1.1, , "], Some("1.1.1.1")),
        ];
        for (lines, expected) in table {
            assert_eq!(
                r.resolve(ip("10.0.0.2"), &headers(&FORWARDED, lines)),
                expected.map(ip),
                "{lines:?}"
            );
        }
        // `X-Forwarded-For` is not read when `Forwarded` is configured.
        assert_eq!(
            r.resolve(ip("10.0.0.2"), &headers(&X_FORWARDED_FOR, &["5.5.5.5"])),
            Some(ip("10.0.0.2"))
        );
    }

    #[test]
    fn at_most_32_entries_are_read() {
        let r = TrustedProxies::new([net("10.0.0.0/8")]);
        let mut hops: Vec<String> = (0..40).map(|i| format!("10.0.0.{i}")).collect();
        hops[0] = "1.1.1.1".to_owned();
        let line = hops.join(", ");
        // 32 trusted entries from the right: the left-most of them.
        assert_eq!(
            r.resolve(ip("10.0.0.1"), &headers(&X_FORWARDED_FOR, &[&line])),
            Some(ip("10.0.0.8"))
        );
        // Empty entries count too.
        let commas = format!("1.1.1.1{}", ",".repeat(100));
        assert_eq!(
            r.resolve(ip("10.0.0.1"), &headers(&X_FORWARDED_FOR, &[&commas])),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn client_ip_prefers_the_extension_and_needs_a_peer() {
        let r = TrustedProxies::new([net("10.0.0.0/8")]);
        let map = headers(&X_FORWARDED_FOR, &["1.1.1.1"]);
        let mut extensions = Extensions::new();
        assert_eq!(r.client_ip(&map, &extensions), None);
        extensions.insert(PeerAddr("10.0.0.2:1".parse().unwrap()));
        assert_eq!(r.client_ip(&map, &extensions), Some(ip("1.1.1.1")));
        extensions.insert(ClientIp(ip("2.2.2.2")));
        assert_eq!(r.client_ip(&map, &extensions), Some(ip("2.2.2.2")));
    }
}
