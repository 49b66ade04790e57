//! Passive outlier detection, as Istio's `outlierDetection` (Envoy's outlier
//! detector): endpoints that keep failing real requests are ejected for a
//! while.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use super::balancer::Balancer;
use super::endpoint::EndpointState;
use crate::classify::{Failure, Outcome};

/// Settings of passive outlier detection.
///
/// An endpoint is ejected after `consecutive_5xx` failures in a row (5xx,
/// connect failure, reset, timeout, or an error from the inner service) or
/// after `consecutive_gateway_errors` gateway errors in a row (502, 503,
/// 504, connect failure, reset, timeout), whichever comes first; a success
/// or a 4xx resets both counts, and a refusal by a meshgate layer further in
/// counts as neither. It stays out for `base_ejection_time × n`, where `n`
/// counts its ejections, capped at `max_ejection_time`; `n` goes down by one
/// for each `interval` it spends back in rotation. At most
/// `max_ejection_percent` of the set is ejected at once, but at least one
/// endpoint may always be ejected when the percent is above 0.
///
/// Defaults are Istio's: 5 consecutive 5xx, gateway errors off, 10 s
/// interval, 30 s base ejection time, 300 s maximum (Envoy's), 10 %.
#[derive(Debug, Clone)]
pub struct OutlierDetection {
    pub(crate) consecutive_5xx: Option<u32>,
    pub(crate) consecutive_gateway_errors: Option<u32>,
    pub(crate) interval: Duration,
    pub(crate) base_ejection_time: Duration,
    pub(crate) max_ejection_time: Duration,
    pub(crate) max_ejection_percent: u8,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self::new()
    }
}

impl OutlierDetection {
    /// Outlier detection with Istio's defaults.
    #[must_use]
    pub fn new() -> Self {
        Self {
            consecutive_5xx: Some(5),
            consecutive_gateway_errors: None,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
        }
    }

    /// Ejects after this many failures in a row; 0 turns it off.
    ///
    /// Default: 5 (Istio's `consecutive5xxErrors`).
    #[must_use]
    pub fn consecutive_5xx(mut self, n: u32) -> Self {
        self.consecutive_5xx = (n > 0).then_some(n);
        self
    }

    /// Ejects after this many gateway errors in a row; 0 turns it off.
    ///
    /// Default: off (Istio's `consecutiveGatewayErrors`).
    #[must_use]
    pub fn consecutive_gateway_errors(mut self, n: u32) -> Self {
        self.consecutive_gateway_errors = (n > 0).then_some(n);
        self
    }

    /// How long back in rotation takes one ejection off the multiplier
    /// (at least 1 ms).
    ///
    /// Default: 10 s (Istio's `interval`).
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The first ejection's length; the `n`-th is `n` times as long.
    ///
    /// Default: 30 s (Istio's `baseEjectionTime`).
    #[must_use]
    pub fn base_ejection_time(mut self, base: Duration) -> Self {
        self.base_ejection_time = base;
        self
    }

    /// The longest ejection.
    ///
    /// Default: 300 s.
    #[must_use]
    pub fn max_ejection_time(mut self, max: Duration) -> Self {
        self.max_ejection_time = max;
        self
    }

    /// The largest share of the set ejected at once, in percent (clamped to
    /// 100); 0 never ejects.
    ///
    /// Default: 10 (Istio's `maxEjectionPercent`).
    #[must_use]
    pub fn max_ejection_percent(mut self, percent: u8) -> Self {
        self.max_ejection_percent = percent.min(100);
        self
    }

    fn may_eject(&self, ejected: usize, total: usize) -> bool {
        let percent = usize::from(self.max_ejection_percent);
        percent > 0 && (ejected == 0 || (ejected + 1) * 100 <= total * percent)
    }

    fn ejection_time(&self, times: u32) -> Duration {
        self.base_ejection_time
            .saturating_mul(times)
            .min(self.max_ejection_time)
    }
}

/// How a request ended, for outlier detection.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Observed {
    Success,
    Failure(Failure),
    /// A refusal by a layer further in: says nothing about the endpoint.
    Neutral,
}

impl Observed {
    pub(crate) fn from_outcome(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Success | Outcome::ClientError(_) => Self::Success,
            Outcome::Failure(failure) => Self::Failure(failure),
            Outcome::Refused(_) => Self::Neutral,
        }
    }
}

/// Counts an outcome and ejects the endpoint when it crosses a threshold.
pub(crate) fn observe(balancer: &Balancer, state: &EndpointState, observed: Observed) {
    let Some(detection) = balancer.outlier() else {
        return;
    };
    let stats = &state.stats;
    match observed {
        Observed::Neutral => {}
        Observed::Success => {
            // Read first: most calls succeed, and a store would bounce the
            // cache line between cores for nothing.
            if stats.consecutive_5xx.load(Ordering::Relaxed) != 0 {
                stats.consecutive_5xx.store(0, Ordering::Relaxed);
            }
            if stats.consecutive_gateway.load(Ordering::Relaxed) != 0 {
                stats.consecutive_gateway.store(0, Ordering::Relaxed);
            }
        }
        Observed::Failure(failure) => {
            let errors = stats.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
            let gateway = if failure.is_gateway_error() {
                stats.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1
            } else {
                stats.consecutive_gateway.store(0, Ordering::Relaxed);
                0
            };
            let trips = detection.consecutive_5xx.is_some_and(|n| errors >= n)
                || detection
                    .consecutive_gateway_errors
                    .is_some_and(|n| gateway >= n);
            if trips {
                try_eject(balancer, detection, state);
            }
        }
    }
}

fn try_eject(balancer: &Balancer, detection: &OutlierDetection, state: &EndpointState) {
    // One ejection decision at a time, so two endpoints failing together
    // cannot both pass the percent check. Nothing awaits under this lock.
    let _decision = balancer
        .ejection_lock()
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let now = balancer.clock().now();
    let stats = &state.stats;
    if stats.is_ejected(now) {
        return;
    }
    let set = balancer.set();
    if !set.endpoints.iter().any(|e| Arc::ptr_eq(&e.stats, stats)) {
        // It left the set while this request was in flight.
        return;
    }
    let ejected = set
        .endpoints
        .iter()
        .filter(|e| e.stats.is_ejected(now))
        .count();
    if !detection.may_eject(ejected, set.endpoints.len()) {
        tracing::debug!(target: "meshgate::load_balancer", endpoint = %state.endpoint, "outlier not ejected: max ejection percent reached");
        return;
    }
    let interval = u64::try_from(detection.interval.as_nanos())
        .unwrap_or(u64::MAX)
        .max(1);
    let mut times = stats.times_ejected.load(Ordering::Relaxed);
    let returned = stats.returned_at.load(Ordering::Acquire);
    if returned != 0 {
        let quiet = now.saturating_sub(returned) / interval;
        times = times.saturating_sub(u32::try_from(quiet).unwrap_or(u32::MAX));
    }
    let times = times.saturating_add(1);
    stats.times_ejected.store(times, Ordering::Relaxed);
    let duration = detection.ejection_time(times);
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    stats.eject(now.saturating_add(nanos));
    stats.consecutive_5xx.store(0, Ordering::Relaxed);
    stats.consecutive_gateway.store(0, Ordering::Relaxed);
    tracing::warn!(target: "meshgate::load_balancer", endpoint = %state.endpoint, ?duration, times, "ejected an outlier endpoint");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejection_share_allows_one_then_respects_the_percent() {
        let d = OutlierDetection::new().max_ejection_percent(50);
        assert!(d.may_eject(0, 1));
        assert!(d.may_eject(1, 4));
        assert!(!d.may_eject(2, 4));
        let none = OutlierDetection::new().max_ejection_percent(0);
        assert!(!none.may_eject(0, 10));
        let ten = OutlierDetection::new();
        assert!(ten.may_eject(0, 3), "at least one");
        assert!(!ten.may_eject(1, 10));
        assert!(ten.may_eject(1, 20));
    }

    #[test]
    fn ejection_time_grows_and_is_capped() {
        let d = OutlierDetection::new()
            .base_ejection_time(Duration::from_secs(30))
            .max_ejection_time(Duration::from_secs(75));
        assert_eq!(d.ejection_time(1), Duration::from_secs(30));
        assert_eq!(d.ejection_time(2), Duration::from_secs(60));
        assert_eq!(d.ejection_time(3), Duration::from_secs(75));
    }
}
