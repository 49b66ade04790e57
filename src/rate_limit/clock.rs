//! The clock the local backend reads, once per check.

/// The clock the local backend measures time with.
///
/// The default, [`Clock::Monotonic`], is the fastest monotonic clock the
/// machine has. [`Clock::Tokio`] follows tokio's clock instead, so tests
/// that pause and advance time (`#[tokio::test(start_paused = true)]`,
/// `tokio::time::advance`) drive the limiter; the limits, the counters
/// and the headers are the same with either.
///
/// ```
/// use meshgate::rate_limit::{Clock, Quota, RateLimitLayer};
///
/// // In a test under paused tokio time:
/// let layer = RateLimitLayer::new([Quota::per_second(10)]).clock(Clock::Tokio);
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Clock {
    /// The CPU's invariant time-stamp counter, scaled to nanoseconds
    /// (through `quanta`, as `governor` does), or the OS monotonic clock
    /// where the counter is not usable. Calibrated once per process, on
    /// the first layer built with it (a busy loop of a few milliseconds,
    /// at most 200 ms). Does not see paused tokio time. The default.
    #[default]
    Monotonic,
    /// [`tokio::time::Instant::now`]: follows paused and advanced time
    /// when tokio's `test-util` feature is on (it then also checks the
    /// runtime's clock on every read), else the same as
    /// [`std::time::Instant::now`].
    Tokio,
}

/// A [`Clock`] started at an epoch: reads nanoseconds since then.
#[derive(Debug)]
pub(crate) enum Epoch {
    Monotonic {
        clock: quanta::Clock,
        /// The raw counter at the epoch.
        start: u64,
    },
    Tokio(tokio::time::Instant),
}

impl Epoch {
    pub(crate) fn start(clock: Clock) -> Self {
        match clock {
            Clock::Monotonic => {
                let clock = quanta::Clock::new();
                let start = clock.raw();
                Self::Monotonic { clock, start }
            }
            Clock::Tokio => Self::Tokio(tokio::time::Instant::now()),
        }
    }

    /// Nanoseconds since the epoch; never goes below 0.
    #[inline(always)]
    pub(crate) fn now(&self) -> u64 {
        match self {
            // The raw read then one multiply and shift; 0 if the counter
            // reads below the start (counters of two cores a few cycles
            // apart).
            Self::Monotonic { clock, start } => clock.delta_as_nanos(*start, clock.raw()),
            Self::Tokio(epoch) => {
                let elapsed = tokio::time::Instant::now().saturating_duration_since(*epoch);
                elapsed
                    .as_secs()
                    .saturating_mul(1_000_000_000)
                    .saturating_add(u64::from(elapsed.subsec_nanos()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn monotonic_counts_real_nanoseconds() {
        let epoch = Epoch::start(Clock::Monotonic);
        let wall = std::time::Instant::now();
        let first = epoch.now();
        // Polls until 2 ms of wall time passed; bounded by the assertion
        // below, never by a sleep of the expected length.
        let mut last = first;
        while wall.elapsed() < Duration::from_millis(2) {
            let now = epoch.now();
            assert!(now >= last, "went back from {last} to {now}");
            last = now;
        }
        let counted = epoch.now() - first;
        let elapsed = wall.elapsed();
        assert!(counted >= 1_500_000, "{counted} ns in {elapsed:?}");
        assert!(
            u128::from(counted) <= elapsed.as_nanos() + 1_000_000,
            "{counted} ns in {elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_follows_paused_time_and_monotonic_does_not() {
        let tokio = Epoch::start(Clock::Tokio);
        let monotonic = Epoch::start(Clock::Monotonic);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(tokio.now(), 3_600_000_000_000);
        assert!(monotonic.now() < 3_600_000_000_000);
    }
}
