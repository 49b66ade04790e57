//! nginx's smooth weighted round robin.
//!
//! Every pick adds each candidate's weight to its current weight, chooses
//! the candidate with the largest current weight (the first on a tie) and
//! takes the total weight off the winner. Over a cycle of `Σ weights` picks
//! every endpoint gets exactly its weight, evenly spread.

use std::sync::PoisonError;

use super::endpoints::EndpointSet;
use super::strategy::Candidates;

pub(crate) fn smooth_weighted<C: Candidates>(set: &EndpointSet, candidates: &C) -> usize {
    let Some(current) = &set.wrr else {
        // Sets are built with current weights when the strategy needs them.
        return candidates.idx(0);
    };
    // The lock is held for one pass over the candidates, never across an
    // await; a panic cannot leave the weights unusable, only uneven.
    let mut current = current.lock().unwrap_or_else(PoisonError::into_inner);
    let mut total = 0i64;
    let mut best = candidates.idx(0);
    let mut best_weight = i64::MIN;
    for k in 0..candidates.len() {
        let i = candidates.idx(k);
        let weight = i64::from(set.endpoints[i].endpoint.weight());
        let Some(slot) = current.get_mut(i) else {
            continue;
        };
        *slot += weight;
        total += weight;
        if *slot > best_weight {
            best_weight = *slot;
            best = i;
        }
    }
    if let Some(slot) = current.get_mut(best) {
        *slot -= total;
    }
    best
}
