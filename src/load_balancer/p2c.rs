//! Power of two choices (Mitzenmacher): two distinct random candidates, the
//! cheaper one wins. Nearly as good as scanning for the cheapest, in O(1),
//! and it never herds every request onto one endpoint.

use super::random::Rng;
use super::strategy::Candidates;

/// `cheaper(a, b)`: whether set index `b` costs less than `a`.
#[inline]
pub(crate) fn pick<C: Candidates>(
    rng: &Rng,
    candidates: &C,
    cheaper: impl Fn(usize, usize) -> bool,
) -> usize {
    let n = candidates.len();
    if n == 1 {
        return candidates.idx(0);
    }
    let a = rng.below(n);
    let mut b = rng.below(n - 1);
    if b >= a {
        b += 1;
    }
    let (a, b) = (candidates.idx(a), candidates.idx(b));
    if cheaper(a, b) { b } else { a }
}
