//! Power of two choices (Mitzenmacher): two distinct random candidates, the
//! cheaper one wins. Nearly as good as scanning for the cheapest, in O(1),
//! and it never herds every request onto one endpoint.
//!
//! Weights bias the draw, not the comparison: each candidate is drawn with
//! probability proportional to its weight, and on a tie the first drawn
//! wins, so idle endpoints share sequential traffic by weight while under
//! load the less loaded one still wins.

use super::endpoints::EndpointSet;
use super::random::{self, Rng};
use super::strategy::Candidates;

/// How many weighted draws may land on the first candidate again before
/// the second is drawn uniformly among the others.
const REDRAWS: usize = 4;

/// `cheaper(a, b)`: whether set index `b` costs less than `a`.
#[inline]
pub(crate) fn pick<C: Candidates>(
    rng: &Rng,
    set: &EndpointSet,
    candidates: &C,
    cheaper: impl Fn(usize, usize) -> bool,
) -> usize {
    let n = candidates.len();
    if n == 1 {
        return candidates.idx(0);
    }
    let (a, b) = if set.uniform {
        let a = rng.below(n);
        let mut b = rng.below(n - 1);
        if b >= a {
            b += 1;
        }
        (candidates.idx(a), candidates.idx(b))
    } else {
        let a = random::weighted(rng, set, candidates);
        let b = (0..REDRAWS)
            .map(|_| random::weighted(rng, set, candidates))
            .find(|&b| b != a)
            .unwrap_or_else(|| {
                // Any other candidate, from a random start.
                let start = rng.below(n);
                (0..n)
                    .map(|k| candidates.idx((start + k) % n))
                    .find(|&b| b != a)
                    .unwrap_or(a)
            });
        (a, b)
    };
    if cheaper(a, b) { b } else { a }
}
