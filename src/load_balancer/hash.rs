//! Consistent hashing: a ring of virtual nodes (Karger et al., as Envoy's
//! and nginx's ring hash), weighted by giving each endpoint points in
//! proportion to its weight.
//!
//! A key goes to the first point clockwise from its hash whose endpoint may
//! take traffic. When an endpoint leaves, only the keys on its points move
//! (about `1/n` of them); every other key stays where it was. When an
//! endpoint is unhealthy or ejected its keys go to the next point's
//! endpoint, and come back when it returns.
//!
//! Hashes are FNV-1a finished with SplitMix64's mix: stable across
//! processes and versions, so every replica of a gateway maps a key to the
//! same endpoint.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{COOKIE, HeaderName};
use http::{Extensions, HeaderMap};

use super::endpoint::EndpointState;
use super::random::mix;
use super::strategy::Strategy;
use crate::peer::PeerAddr;

/// The most points a ring holds, whatever the weights: beyond it, every
/// endpoint's share is scaled down (keeping at least one point each).
pub const MAX_RING_POINTS: usize = 1 << 16;

/// Settings of [`Strategy::ConsistentHash`].
#[derive(Debug, Clone)]
pub struct ConsistentHash {
    pub(crate) key: HashKey,
    pub(crate) fallback: Box<Strategy>,
    pub(crate) points_per_weight: u32,
}

impl ConsistentHash {
    /// Hashes `key`, with the defaults below.
    #[must_use]
    pub fn new(key: HashKey) -> Self {
        Self {
            key,
            fallback: Box::new(Strategy::RoundRobin),
            points_per_weight: 100,
        }
    }

    /// The strategy for requests without the key (no such header or cookie,
    /// no [`PeerAddr`]). A consistent hash given here is taken as round
    /// robin.
    ///
    /// Default: [`Strategy::RoundRobin`].
    #[must_use]
    pub fn fallback(mut self, strategy: Strategy) -> Self {
        self.fallback = Box::new(strategy);
        self
    }

    /// Ring points (virtual nodes) per unit of weight, clamped to
    /// `1..=1000`. More points spread keys more evenly and cost memory:
    /// the ring holds at most [`MAX_RING_POINTS`].
    ///
    /// Default: 100 (about ±10 % of an even share per endpoint).
    #[must_use]
    pub fn points_per_weight(mut self, points: u32) -> Self {
        self.points_per_weight = points.clamp(1, 1000);
        self
    }
}

/// What consistent hashing hashes.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The first value of a request header (an empty value counts as none).
    Header(HeaderName),
    /// The value of a cookie, from the `Cookie` header(s).
    Cookie(String),
    /// The client's IP address, from the [`PeerAddr`] request extension.
    ClientIp,
}

impl HashKey {
    /// The key's hash for a request, `None` when the request has no key.
    pub(crate) fn hash(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<u64> {
        match self {
            Self::Header(name) => headers
                .get(name)
                .map(|v| v.as_bytes())
                .filter(|v| !v.is_empty())
                .map(hash_bytes),
            Self::Cookie(name) => cookie(headers, name).map(hash_bytes),
            Self::ClientIp => extensions.get::<PeerAddr>().map(|peer| match peer.0.ip() {
                IpAddr::V4(ip) => hash_bytes(&ip.octets()),
                IpAddr::V6(ip) => hash_bytes(&ip.octets()),
            }),
        }
    }
}

/// The value of cookie `name` (RFC 6265 `name=value` pairs split by `;`),
/// without surrounding double quotes; `None` when absent or empty.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers.get_all(COOKIE).iter().find_map(|header| {
        header.as_bytes().split(|&b| b == b';').find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (key, value) = (&pair[..eq], &pair[eq + 1..]);
            if key.trim_ascii() != name.as_bytes() {
                return None;
            }
            let value = value.trim_ascii();
            let value = value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value);
            (!value.is_empty()).then_some(value)
        })
    })
}

/// FNV-1a over `parts`, then mixed: a stable 64-bit hash.
fn hash_parts(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in *part {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    mix(hash)
}

pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    hash_parts(&[bytes])
}

/// The ring: points sorted by hash, each naming a set index.
pub(crate) struct Ring {
    points: Vec<(u64, u32)>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("points", &self.points.len())
            .finish()
    }
}

impl Ring {
    pub(crate) fn new(endpoints: &[Arc<EndpointState>], points_per_weight: u32) -> Self {
        let wanted: u64 = endpoints
            .iter()
            .map(|e| u64::from(e.endpoint.weight()) * u64::from(points_per_weight))
            .sum();
        let scale = if wanted > MAX_RING_POINTS as u64 {
            MAX_RING_POINTS as f64 / wanted as f64
        } else {
            1.0
        };
        let mut points = Vec::with_capacity(wanted.min(MAX_RING_POINTS as u64) as usize);
        for (i, e) in endpoints.iter().enumerate() {
            let Ok(index) = u32::try_from(i) else { break };
            // A point's place depends only on the endpoint's identity, so
            // other endpoints joining or leaving never move it.
            let base = hash_parts(&[
                e.endpoint.scheme().as_str().as_bytes(),
                b"://",
                e.endpoint.authority().as_str().as_bytes(),
            ]);
            let share = u64::from(e.endpoint.weight()) * u64::from(points_per_weight);
            let count = ((share as f64 * scale).round() as u64).max(1);
            for replica in 0..count {
                points.push((
                    mix(base.wrapping_add(replica.wrapping_mul(0x9E37_79B9_7F4A_7C15))),
                    index,
                ));
            }
        }
        points.sort_unstable();
        Self { points }
    }

    /// The first endpoint clockwise from `hash` that `ok` accepts.
    pub(crate) fn lookup(&self, hash: u64, ok: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.points.len();
        let start = self.points.partition_point(|&(point, _)| point < hash);
        (0..len)
            .map(|k| self.points[(start + k) % len].1 as usize)
            .find(|&i| ok(i))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.points.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn cookies_are_found_among_others_and_unquoted() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; session=\"abc\""));
        headers.append(COOKIE, HeaderValue::from_static("other=2"));
        assert_eq!(cookie(&headers, "session"), Some(&b"abc"[..]));
        assert_eq!(cookie(&headers, "other"), Some(&b"2"[..]));
        assert_eq!(cookie(&headers, "sess"), None);
        headers.insert(COOKIE, HeaderValue::from_static("session="));
        assert_eq!(cookie(&headers, "session"), None);
    }

    #[test]
    fn ring_points_follow_weights_and_lookup_skips_refused() {
        use crate::load_balancer::endpoint::{Endpoint, EndpointState};
        use crate::load_balancer::stats::EndpointStats;
        let flags = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let states: Vec<_> = [("10.0.0.1:80", 1), ("10.0.0.2:80", 3)]
            .into_iter()
            .map(|(a, w)| {
                Arc::new(EndpointState {
                    endpoint: Endpoint::parse(a).unwrap().with_weight(w),
                    stats: Arc::new(EndpointStats::new(Arc::clone(&flags), 1.0, 1.0, 1)),
                })
            })
            .collect();
        let ring = Ring::new(&states, 100);
        assert_eq!(ring.len(), 400);
        let owners: Vec<_> = ring.points.iter().map(|p| p.1).collect();
        assert_eq!(owners.iter().filter(|&&i| i == 0).count(), 100);
        for h in [0, u64::MAX / 3, u64::MAX] {
            assert_eq!(ring.lookup(h, |i| i == 1), Some(1));
        }
        assert_eq!(ring.lookup(42, |_| false), None);
        let huge = Ring::new(&states, 100_000);
        assert!(huge.len() <= MAX_RING_POINTS + 2, "{}", huge.len());
    }

    #[test]
    fn hashes_are_stable() {
        // Fixed values: a change here remaps every key of every deployment.
        assert_eq!(hash_bytes(b""), mix(0xcbf2_9ce4_8422_2325));
        assert_eq!(hash_bytes(b"user-1"), hash_bytes(b"user-1"));
        assert_ne!(hash_bytes(b"user-1"), hash_bytes(b"user-2"));
    }
}
