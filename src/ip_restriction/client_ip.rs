use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::HeaderName;
use http::{HeaderMap, Request};

use super::IpNet;
use crate::peer::PeerAddr;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Resolves the client's IP address of a request, trusting
/// `X-Forwarded-For` only from configured proxies.
///
/// The rule (the one nginx's `real_ip_recursive` and Envoy's
/// `xff_num_trusted_hops` follow):
///
/// 1. Start from the socket peer ([`PeerAddr`]). If it is not a trusted
///    proxy, it is the client: whatever `X-Forwarded-For` says was written by
///    the client itself and is ignored.
/// 2. Otherwise walk `X-Forwarded-For` from the right (the entry the nearest
///    proxy appended) to the left; the first entry that is not a trusted
///    proxy is the client.
/// 3. If every entry is trusted, the left-most one is the client; with no
///    header at all, the trusted peer itself is.
///
/// The answer is `None` — unknown — when there is no [`PeerAddr`], or when
/// the walk reaches an entry that is not an IP address (`unknown`, garbage,
/// a non-ASCII header): past a trusted proxy nothing further left can be
/// believed. Entries may carry a port (`192.0.2.1:4711`, `[2001:db8::1]:80`).
/// Several `X-Forwarded-For` header lines count as one comma-separated list,
/// in order. IPv4-mapped IPv6 addresses are reported as IPv4. Nothing is
/// allocated.
///
/// Cloning is cheap: the trusted networks are shared behind an `Arc`.
///
/// ```
/// use std::net::{IpAddr, SocketAddr};
/// use http::Request;
/// use meshgate::ip_restriction::ClientIp;
/// use meshgate::peer::PeerAddr;
///
/// let resolver = ClientIp::trusting(["10.0.0.0/8".parse().unwrap()]);
/// let mut request = Request::builder()
///     .header("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.1.1")
///     .body(())
///     .unwrap();
/// request.extensions_mut().insert(PeerAddr("10.0.0.2:41000".parse().unwrap()));
/// // 10.0.0.2 and 10.1.1.1 are trusted proxies; 203.0.113.7 is the client,
/// // and the 6.6.6.6 it claims to forward for is not believed.
/// assert_eq!(resolver.resolve_request(&request), Some("203.0.113.7".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClientIp {
    trusted: Arc<[IpNet]>,
}

impl ClientIp {
    /// A resolver that trusts no proxy: the client is the socket peer.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A resolver that believes `X-Forwarded-For` from peers in `proxies`.
    #[must_use]
    pub fn trusting(proxies: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            trusted: proxies.into_iter().collect(),
        }
    }

    /// Whether `ip` is a trusted proxy.
    #[must_use]
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(ip))
    }

    /// The client address of `request`, from its [`PeerAddr`] extension and
    /// headers; see the [type docs](Self) for the rule.
    #[must_use]
    pub fn resolve_request<B>(&self, request: &Request<B>) -> Option<IpAddr> {
        let peer = request.extensions().get::<PeerAddr>()?;
        self.resolve(peer.0.ip(), request.headers())
    }

    /// The client address of a request that came from `peer` with
    /// `headers`; see the [type docs](Self) for the rule.
    #[must_use]
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        let mut client = peer.to_canonical();
        if !self.is_trusted(client) {
            return Some(client);
        }
        for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
            let text = value.to_str().ok()?;
            for entry in text.rsplit(',') {
                let entry = entry.trim();
                if entry.is_empty() {
                    continue;
                }
                client = parse_entry(entry)?.to_canonical();
                if !self.is_trusted(client) {
                    return Some(client);
                }
            }
        }
        Some(client)
    }
}

fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse().ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(X_FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn right_most_untrusted_entry_wins() {
        let r = ClientIp::trusting([
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ]);
        let table: &[(&str, &[&str], Option<&str>)] = &[
            // Untrusted peer: headers ignored.
            ("198.51.100.1", &["1.1.1.1"], Some("198.51.100.1")),
            // Trusted peer, no header: the peer.
            ("10.0.0.1", &[], Some("10.0.0.1")),
            ("10.0.0.1", &["1.1.1.1, 2.2.2.2"], Some("2.2.2.2")),
            ("10.0.0.1", &["1.1.1.1, 10.9.9.9"], Some("1.1.1.1")),
            // Several lines are one list, in order.
            ("10.0.0.1", &["1.1.1.1", "10.2.2.2"], Some("1.1.1.1")),
            // All trusted: the left-most.
            ("10.0.0.1", &["10.3.3.3, 10.2.2.2"], Some("10.3.3.3")),
            // Ports and brackets.
            ("10.0.0.1", &["[2001:db9::1]:443"], Some("2001:db9::1")),
            ("10.0.0.1", &["203.0.113.5:999"], Some("203.0.113.5")),
            ("2001:db8::7", &["[2001:db9::2]"], Some("2001:db9::2")),
            // Mapped IPv4 peers are trusted as IPv4 and reported as IPv4.
            ("::ffff:10.0.0.1", &["5.5.5.5"], Some("5.5.5.5")),
            ("::ffff:8.8.8.8", &["5.5.5.5"], Some("8.8.8.8")),
            // Garbage past trusted hops: unknown. Garbage further left than
            // the client is never looked at.
            ("10.0.0.1", &["unknown"], None),
            ("10.0.0.1", &["1.1.1.1, 10.0.0.9, garbage"], None),
            ("10.0.0.1", &["garbage, 1.1.1.1"], Some("1.1.1.1")),
            ("10.0.0.1", &["1.1.1.1,, "], Some("1.1.1.1")),
        ];
        for (peer, xff, expected) in table {
            assert_eq!(
                r.resolve(ip(peer), &headers(xff)),
                expected.map(ip),
                "{peer} {xff:?}"
            );
        }
        assert_eq!(
            ClientIp::new().resolve(ip("10.0.0.1"), &headers(&["1.1.1.1"])),
            Some(ip("10.0.0.1"))
        );
    }
}
