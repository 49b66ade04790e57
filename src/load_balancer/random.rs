//! Seedable, lock-free randomness and weighted random choice.

use std::sync::atomic::{AtomicU64, Ordering};

use super::endpoints::EndpointSet;
use super::strategy::Candidates;

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64 over an atomic counter: every caller gets a distinct,
/// well-mixed value without a lock, and a fixed seed gives a fixed
/// sequence (on one thread).
#[derive(Debug)]
pub(crate) struct Rng(AtomicU64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(AtomicU64::new(seed))
    }

    #[inline]
    pub(crate) fn next_u64(&self) -> u64 {
        mix(self
            .0
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA))
    }

    /// A value in `0..n` (Lemire's multiply-shift; `n` > 0).
    #[inline]
    pub(crate) fn below(&self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// SplitMix64's finaliser: a bijective, avalanching mix of 64 bits.
#[inline]
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A candidate with probability proportional to its weight.
pub(crate) fn weighted<C: Candidates>(rng: &Rng, set: &EndpointSet, candidates: &C) -> usize {
    let n = candidates.len();
    if n == set.endpoints.len() {
        // All of the set: O(1) when the weights are equal, else a binary
        // search of the cumulative weights.
        if set.uniform {
            return rng.below(n);
        }
        let target = (u128::from(rng.next_u64()) * u128::from(set.total_weight)) >> 64;
        let target = target as u64;
        let i = set.cumulative.partition_point(|&sum| sum <= target);
        return i.min(n - 1);
    }
    let total: u64 = (0..n)
        .map(|k| u64::from(set.endpoints[candidates.idx(k)].endpoint.weight()))
        .sum();
    let mut target = ((u128::from(rng.next_u64()) * u128::from(total)) >> 64) as u64;
    for k in 0..n {
        let i = candidates.idx(k);
        let weight = u64::from(set.endpoints[i].endpoint.weight());
        if target < weight {
            return i;
        }
        target -= weight;
    }
    candidates.idx(n - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_a_seed_repeats() {
        let a = Rng::new(7);
        let b = Rng::new(7);
        for n in 1..50 {
            let x = a.below(n);
            assert!(x < n);
            assert_eq!(x, b.below(n));
        }
    }
}
