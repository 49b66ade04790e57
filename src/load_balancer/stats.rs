//! Per-endpoint statistics: counters, the peak-EWMA latency estimate, health
//! and ejection state, and the snapshot read from them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::endpoint::Endpoint;

/// The balancer's clock: tokio time (so tests can pause it) as nanoseconds
/// since the balancer was built, which fit in an atomic.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    /// Nanoseconds since the epoch, plus 1 so that 0 can mean "never".
    pub(crate) fn now(&self) -> u64 {
        self.at(Instant::now())
    }

    pub(crate) fn at(&self, instant: Instant) -> u64 {
        u64::try_from(instant.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX - 1)
            + 1
    }
}

/// A peak-sensitive exponentially weighted moving average of latency, as
/// finagle's and linkerd's peak-EWMA balancers keep: a sample above the
/// estimate replaces it at once; samples below pull it down with weight
/// `1 - e^(-elapsed/decay)`; the first sample replaces the default
/// estimate; and it decays towards zero while no sample
/// comes, so a slow endpoint is eventually tried again.
///
/// Comparing two estimates decayed to the same instant needs no clock:
/// `estimate × e^(-(now - stamp)/decay)` orders as `ln(estimate) +
/// stamp/decay`, which every sample stores as the endpoint's
/// [`key`](Self::key).
#[derive(Debug)]
pub(crate) struct Ewma {
    /// The estimate in nanoseconds, as `f64` bits.
    estimate: AtomicU64,
    /// When the estimate was last updated (clock nanoseconds).
    stamp: AtomicU64,
    observed: AtomicBool,
    /// `ln(estimate) + stamp / decay`, as `f64` bits.
    key: AtomicU64,
}

impl Ewma {
    fn new(initial_ns: f64, now: u64, decay_ns: f64) -> Self {
        Self {
            estimate: AtomicU64::new(initial_ns.to_bits()),
            stamp: AtomicU64::new(now),
            observed: AtomicBool::new(false),
            key: AtomicU64::new(Self::key_of(initial_ns, now, decay_ns).to_bits()),
        }
    }

    fn key_of(estimate_ns: f64, stamp: u64, decay_ns: f64) -> f64 {
        // At least a nanosecond: ln(0) would be -inf for every instant answer.
        estimate_ns.max(1.0).ln() + stamp as f64 / decay_ns
    }

    /// The estimate's ordering key: of two endpoints, the one with the
    /// smaller key has the smaller decayed estimate, at any instant.
    #[inline]
    pub(crate) fn key(&self) -> f64 {
        f64::from_bits(self.key.load(Ordering::Relaxed))
    }

    /// [`fold`](Self::fold) with the key.
    #[cfg(test)]
    pub(crate) fn observe(&self, rtt_ns: f64, now: u64, decay_ns: f64) {
        self.fold(rtt_ns, now, decay_ns, true);
    }

    /// Folds in one latency sample, updating the ordering
    /// [`key`](Self::key) too when `keyed`: only a picker that compares
    /// estimates reads it, and leaving it saves a logarithm per sample.
    /// Concurrent samples may each see the same previous stamp; the
    /// estimate is still one of theirs, never torn.
    pub(crate) fn fold(&self, rtt_ns: f64, now: u64, decay_ns: f64, keyed: bool) {
        let previous = self.stamp.swap(now, Ordering::Relaxed);
        if !self.observed.swap(true, Ordering::Relaxed) {
            // The default was a guess until the first real sample.
            self.estimate.store(rtt_ns.to_bits(), Ordering::Relaxed);
            if keyed {
                self.key.store(
                    Self::key_of(rtt_ns, now, decay_ns).to_bits(),
                    Ordering::Relaxed,
                );
            }
            return;
        }
        let elapsed = now.saturating_sub(previous) as f64;
        let weight = (-elapsed / decay_ns).exp();
        let mut current = self.estimate.load(Ordering::Relaxed);
        loop {
            let estimate = f64::from_bits(current);
            let next = if rtt_ns > estimate {
                rtt_ns
            } else {
                estimate * weight + rtt_ns * (1.0 - weight)
            };
            match self.estimate.compare_exchange_weak(
                current,
                next.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if keyed {
                        self.key.store(
                            Self::key_of(next, now, decay_ns).to_bits(),
                            Ordering::Relaxed,
                        );
                    }
                    break;
                }
                Err(actual) => current = actual,
            }
        }
    }

    fn raw(&self) -> Option<f64> {
        self.observed
            .load(Ordering::Relaxed)
            .then(|| f64::from_bits(self.estimate.load(Ordering::Relaxed)))
    }
}

/// Everything the balancer knows about one endpoint. It survives set
/// updates for as long as the endpoint stays in the set.
#[derive(Debug)]
pub(crate) struct EndpointStats {
    pub(crate) requests: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    pub(crate) latency: Ewma,
    /// Active health: false after `unhealthy` failed checks in a row.
    healthy: AtomicBool,
    pub(crate) check_successes: AtomicU32,
    pub(crate) check_failures: AtomicU32,
    /// Passive outlier detection.
    pub(crate) consecutive_5xx: AtomicU32,
    pub(crate) consecutive_gateway: AtomicU32,
    /// Ejected until this clock time; 0 when not ejected.
    ejected_until: AtomicU64,
    pub(crate) times_ejected: AtomicU32,
    /// When the endpoint last came back from an ejection (clock time).
    pub(crate) returned_at: AtomicU64,
    /// The balancer's count of raised flags (unhealthy or ejected), so the
    /// pick can skip all checks while it is 0.
    flags: Arc<AtomicUsize>,
}

impl EndpointStats {
    pub(crate) fn new(
        flags: Arc<AtomicUsize>,
        default_rtt_ns: f64,
        decay_ns: f64,
        now: u64,
    ) -> Self {
        Self {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            latency: Ewma::new(default_rtt_ns, now, decay_ns),
            healthy: AtomicBool::new(true),
            check_successes: AtomicU32::new(0),
            check_failures: AtomicU32::new(0),
            consecutive_5xx: AtomicU32::new(0),
            consecutive_gateway: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            times_ejected: AtomicU32::new(0),
            returned_at: AtomicU64::new(0),
            flags,
        }
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Sets the active-health flag; returns whether it changed.
    pub(crate) fn set_healthy(&self, healthy: bool) -> bool {
        let changed = self.healthy.swap(healthy, Ordering::AcqRel) != healthy;
        if changed {
            if healthy {
                self.flags.fetch_sub(1, Ordering::AcqRel);
            } else {
                self.flags.fetch_add(1, Ordering::AcqRel);
            }
        }
        changed
    }

    /// Whether the endpoint is ejected at `now`. An ejection whose time is
    /// up is cleared here, which is how an ejected endpoint comes back.
    pub(crate) fn is_ejected(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Acquire);
        if until == 0 {
            return false;
        }
        if now < until {
            return true;
        }
        if self
            .ejected_until
            .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.flags.fetch_sub(1, Ordering::AcqRel);
            self.returned_at.store(until, Ordering::Release);
            self.consecutive_5xx.store(0, Ordering::Relaxed);
            self.consecutive_gateway.store(0, Ordering::Relaxed);
            tracing::info!(target: "meshgate::load_balancer", "an ejected endpoint is back in rotation");
        }
        false
    }

    /// Ejects until `until`. The caller holds the balancer's ejection lock
    /// and has checked that the endpoint is not ejected.
    pub(crate) fn eject(&self, until: u64) {
        if self.ejected_until.swap(until.max(1), Ordering::AcqRel) == 0 {
            self.flags.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub(crate) fn ejected_until(&self) -> u64 {
        self.ejected_until.load(Ordering::Acquire)
    }

    /// Whether requests may go here: healthy and not ejected.
    pub(crate) fn is_selectable(&self, now: u64) -> bool {
        self.is_healthy() && !self.is_ejected(now)
    }

    pub(crate) fn snapshot(&self, endpoint: &Endpoint, clock: &Clock) -> EndpointSnapshot {
        let now = clock.now();
        let until = self.ejected_until();
        let ejected_for = (until > now).then(|| Duration::from_nanos(until - now));
        EndpointSnapshot {
            endpoint: endpoint.clone(),
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            latency_ewma: self
                .latency
                .raw()
                .map(|ns| Duration::from_nanos(ns.max(0.0) as u64)),
            healthy: self.is_healthy(),
            ejected: ejected_for.is_some(),
            ejected_for,
            times_ejected: self.times_ejected.load(Ordering::Relaxed),
        }
    }
}

impl Drop for EndpointStats {
    fn drop(&mut self) {
        // An endpoint that leaves the set takes its raised flags with it.
        let raised =
            usize::from(!*self.healthy.get_mut()) + usize::from(*self.ejected_until.get_mut() != 0);
        if raised > 0 {
            self.flags.fetch_sub(raised, Ordering::AcqRel);
        }
    }
}

/// A read-only view of one endpoint, for metrics and admin pages.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointSnapshot {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Requests sent to it since it joined the set.
    pub requests: u64,
    /// Of those, how many failed (5xx, connect failure, reset, timeout, or
    /// an error from the inner service).
    pub errors: u64,
    /// Requests to it still waiting for their response.
    pub in_flight: u64,
    /// The peak-EWMA of its response latency (time to the response head),
    /// `None` before the first response.
    pub latency_ewma: Option<Duration>,
    /// Whether it passes active health checks (always true without them).
    pub healthy: bool,
    /// Whether passive outlier detection has ejected it.
    pub ejected: bool,
    /// While ejected: the time left.
    pub ejected_for: Option<Duration>,
    /// The multiplier of its current or last ejection: its ejections, less
    /// one for each outlier-detection `interval` it spent back in rotation
    /// before the last one.
    pub times_ejected: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECAY: f64 = 10e9;

    /// The estimate decayed to `now`, computed the long way.
    fn decayed(ewma: &Ewma, now: u64) -> f64 {
        let estimate = f64::from_bits(ewma.estimate.load(Ordering::Relaxed));
        let elapsed = now.saturating_sub(ewma.stamp.load(Ordering::Relaxed)) as f64;
        estimate * (-elapsed / DECAY).exp()
    }

    #[test]
    fn peak_ewma_takes_peaks_at_once_and_falls_slowly() {
        let ewma = Ewma::new(30e6, 1, DECAY);
        ewma.observe(5e6, 2, DECAY);
        assert_eq!(
            ewma.raw(),
            Some(5e6),
            "the first sample replaces the default"
        );
        ewma.observe(50e6, 1_000_000, DECAY);
        assert_eq!(ewma.raw(), Some(50e6), "a peak is taken at once");
        ewma.observe(5e6, 1_000_000_000, DECAY);
        let after = ewma.raw().unwrap();
        assert!(after < 50e6 && after > 45e6, "{after}");
    }

    /// Unkeyed samples give the same estimates and leave the key alone.
    #[test]
    fn unkeyed_samples_fold_the_same_estimate() {
        let (keyed, unkeyed) = (Ewma::new(30e6, 1, DECAY), Ewma::new(30e6, 1, DECAY));
        let initial_key = unkeyed.key();
        for (rtt, now) in [(5e6, 2), (50e6, 1_000_000), (5e6, 1_000_000_000)] {
            keyed.fold(rtt, now, DECAY, true);
            unkeyed.fold(rtt, now, DECAY, false);
            assert_eq!(keyed.raw(), unkeyed.raw());
            assert_eq!(unkeyed.key().to_bits(), initial_key.to_bits());
        }
        assert_ne!(keyed.key().to_bits(), initial_key.to_bits());
    }

    #[test]
    fn keys_order_as_the_estimates_decayed_to_any_instant() {
        let fast_but_old = Ewma::new(30e6, 1, DECAY);
        fast_but_old.observe(20e6, 1_000, DECAY);
        let slow_but_recent = Ewma::new(30e6, 1, DECAY);
        slow_but_recent.observe(40e6, 5_000_000_000, DECAY);
        for now in [5_000_000_000, 20_000_000_000, 90_000_000_000] {
            let by_key = fast_but_old.key() < slow_but_recent.key();
            let by_value = decayed(&fast_but_old, now) < decayed(&slow_but_recent, now);
            assert_eq!(by_key, by_value, "at {now}");
            let ratio = decayed(&slow_but_recent, now) / decayed(&fast_but_old, now);
            let from_keys = (slow_but_recent.key() - fast_but_old.key()).exp();
            assert!(
                (ratio - from_keys).abs() < 1e-9 * ratio,
                "{ratio} vs {from_keys}"
            );
        }
    }
}
