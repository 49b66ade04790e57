//! The balancing strategies, and what every strategy's pick is given.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Extensions, HeaderMap};

use super::endpoints::EndpointSet;
use super::hash::{ConsistentHash, HashKey};
use super::random::Rng;
use super::{p2c, random, round_robin};

/// How the balancer chooses an endpoint for a request.
///
/// Every strategy chooses among the endpoints that may take traffic now
/// (healthy and not ejected — or all of them in panic mode, see
/// [`LoadBalancerBuilder::panic_threshold`](super::LoadBalancerBuilder::panic_threshold)).
#[non_exhaustive]
#[derive(Debug, Clone)]
pub enum Strategy {
    /// Each endpoint in turn, ignoring weights.
    RoundRobin,
    /// nginx's smooth weighted round robin: weights 5, 1, 1 give
    /// `a a b a c a a`, spreading the heavy endpoint's turns out instead of
    /// sending it five requests in a row.
    WeightedRoundRobin,
    /// A random endpoint, with probability proportional to its weight.
    Random,
    /// Power of two choices: two random endpoints, drawn with probability
    /// proportional to weight; the one with fewer requests in flight wins,
    /// the first drawn on a tie (Envoy's least-request).
    LeastRequest,
    /// Power of two choices, drawn as for [`LeastRequest`](Self::LeastRequest),
    /// on peak-EWMA latency times requests in flight (plus one), as
    /// finagle's and linkerd's balancers: prefers fast endpoints and backs
    /// off from one that slows down.
    PeakEwma {
        /// How fast the latency estimate forgets: the EWMA's time constant.
        decay: Duration,
        /// The estimate an endpoint starts with before its first response.
        default_rtt: Duration,
    },
    /// Consistent hashing on a request key, so the same key keeps going to
    /// the same endpoint; see [`ConsistentHash`].
    ConsistentHash(ConsistentHash),
}

impl Strategy {
    /// [`Strategy::PeakEwma`] with linkerd's defaults: a 10 s decay and a
    /// 30 ms default latency.
    #[must_use]
    pub fn peak_ewma() -> Self {
        Self::PeakEwma {
            decay: Duration::from_secs(10),
            default_rtt: Duration::from_millis(30),
        }
    }

    /// [`Strategy::ConsistentHash`] on `key`, with round robin for requests
    /// without it and 100 ring points per unit of weight.
    #[must_use]
    pub fn consistent_hash(key: HashKey) -> Self {
        Self::ConsistentHash(ConsistentHash::new(key))
    }
}

impl Default for Strategy {
    /// Round robin.
    fn default() -> Self {
        Self::RoundRobin
    }
}

/// The endpoints a pick may choose from: all of the set, or a subset.
pub(crate) trait Candidates {
    /// At least 1: the balancer never picks from an empty set.
    fn len(&self) -> usize;
    /// The set index of the `k`-th candidate.
    fn idx(&self, k: usize) -> usize;
    /// Whether set index `i` is a candidate.
    fn contains(&self, i: usize) -> bool;
}

/// Every endpoint of the set.
pub(crate) struct All(pub(crate) usize);

impl Candidates for All {
    #[inline]
    fn len(&self) -> usize {
        self.0
    }
    #[inline]
    fn idx(&self, k: usize) -> usize {
        k
    }
    #[inline]
    fn contains(&self, _: usize) -> bool {
        true
    }
}

/// The selectable endpoints, when some are not: set indices, ascending.
pub(crate) struct Subset(pub(crate) Vec<usize>);

impl Candidates for Subset {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn idx(&self, k: usize) -> usize {
        self.0[k]
    }
    fn contains(&self, i: usize) -> bool {
        self.0.binary_search(&i).is_ok()
    }
}

/// What a pick reads besides the set.
pub(crate) struct PickContext<'a> {
    pub(crate) rng: &'a Rng,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) extensions: &'a Extensions,
}

/// A strategy with its run-time state.
#[derive(Debug)]
pub(crate) enum Picker {
    RoundRobin(AtomicUsize),
    WeightedRoundRobin,
    Random,
    LeastRequest,
    PeakEwma,
    Hash {
        key: HashKey,
        points_per_weight: u32,
        fallback: Box<Picker>,
    },
}

impl Picker {
    pub(crate) fn new(strategy: &Strategy) -> Self {
        match strategy {
            Strategy::RoundRobin => Self::RoundRobin(AtomicUsize::new(0)),
            Strategy::WeightedRoundRobin => Self::WeightedRoundRobin,
            Strategy::Random => Self::Random,
            Strategy::LeastRequest => Self::LeastRequest,
            Strategy::PeakEwma { .. } => Self::PeakEwma,
            Strategy::ConsistentHash(hash) => Self::Hash {
                key: hash.key.clone(),
                points_per_weight: hash.points_per_weight,
                fallback: Box::new(match &*hash.fallback {
                    // A hash cannot fall back on a hash: round robin instead.
                    Strategy::ConsistentHash(_) => Self::new(&Strategy::RoundRobin),
                    other => Self::new(other),
                }),
            },
        }
    }

    /// Whether sets need smooth weighted round robin's current weights.
    pub(crate) fn needs_wrr(&self) -> bool {
        match self {
            Self::WeightedRoundRobin => true,
            Self::Hash { fallback, .. } => fallback.needs_wrr(),
            _ => false,
        }
    }

    /// Whether picks compare the endpoints' latency estimates (by their
    /// [`key`](super::stats::Ewma::key)).
    pub(crate) fn reads_latency(&self) -> bool {
        match self {
            Self::PeakEwma => true,
            Self::Hash { fallback, .. } => fallback.reads_latency(),
            _ => false,
        }
    }

    /// Ring points per unit of weight, when sets need a hash ring.
    pub(crate) fn ring_points(&self) -> Option<u32> {
        match self {
            Self::Hash {
                points_per_weight, ..
            } => Some(*points_per_weight),
            _ => None,
        }
    }

    /// The set index of the chosen endpoint.
    #[inline]
    pub(crate) fn pick<C: Candidates>(
        &self,
        cx: &PickContext<'_>,
        set: &EndpointSet,
        candidates: &C,
    ) -> usize {
        match self {
            Self::RoundRobin(next) => {
                let k = next.fetch_add(1, Ordering::Relaxed) % candidates.len();
                candidates.idx(k)
            }
            Self::WeightedRoundRobin => round_robin::smooth_weighted(set, candidates),
            Self::Random => random::weighted(cx.rng, set, candidates),
            Self::LeastRequest => p2c::pick(cx.rng, set, candidates, |a, b| {
                let in_flight = |i: usize| set.endpoints[i].stats.in_flight.load(Ordering::Relaxed);
                in_flight(b) < in_flight(a)
            }),
            // decayed latency × (in flight + 1), where the ratio of two
            // decayed latencies is e^(key b - key a).
            Self::PeakEwma => p2c::pick(cx.rng, set, candidates, |a, b| {
                let (a, b) = (&set.endpoints[a].stats, &set.endpoints[b].stats);
                let load = |in_flight: &std::sync::atomic::AtomicU64| {
                    (in_flight.load(Ordering::Relaxed) + 1) as f64
                };
                (b.latency.key() - a.latency.key()).exp() * load(&b.in_flight) < load(&a.in_flight)
            }),
            Self::Hash { key, fallback, .. } => {
                let hashed = key
                    .hash(cx.headers, cx.extensions)
                    .and_then(|h| set.ring.as_ref()?.lookup(h, |i| candidates.contains(i)));
                match hashed {
                    Some(i) => i,
                    None => fallback.pick(cx, set, candidates),
                }
            }
        }
    }
}
