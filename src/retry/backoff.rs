//! Exponential backoff with jitter.

use std::time::Duration;

/// How the delay before each retry is spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// No jitter: `min(cap, base × 2^(n-1))`. Clients that fail together
    /// retry together; use only where there is a single client.
    None,
    /// Full jitter: uniform in `[0, min(cap, base × 2^(n-1))]`. The default:
    /// it spreads the retries of many clients that failed at the same time,
    /// which avoids the thundering herd.
    #[default]
    Full,
    /// Decorrelated jitter: uniform in `[base, 3 × previous]`, capped, where
    /// `previous` starts at `base`. Grows like exponential backoff but each
    /// delay depends on the last rather than on the attempt number.
    Decorrelated,
}

/// Exponential backoff: a base delay doubling per retry up to a cap, with
/// [`Jitter`].
///
/// ```
/// use std::time::Duration;
/// use meshgate::retry::{Backoff, Jitter};
///
/// let backoff = Backoff::new(Duration::from_millis(25), Duration::from_secs(1));
/// for (n, delay) in backoff.delays().take(5).enumerate() {
///     // Full jitter: never more than base × 2^n, nor the cap.
///     assert!(delay <= Duration::from_millis(25 << n).min(Duration::from_secs(1)));
/// }
/// let fixed: Vec<_> = backoff.jitter(Jitter::None).delays().take(3).collect();
/// assert_eq!(fixed, [Duration::from_millis(25), Duration::from_millis(50), Duration::from_millis(100)]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    jitter: Jitter,
}

impl Backoff {
    /// Backoff from `base`, never longer than `cap`, with full jitter.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            jitter: Jitter::Full,
        }
    }

    /// The jitter. Default: [`Jitter::Full`].
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The jitter in use.
    #[must_use]
    pub fn jitter_kind(&self) -> Jitter {
        self.jitter
    }

    /// The delays before retry 1, 2, 3, …: an endless iterator seeded from
    /// the thread's random source.
    pub fn delays(&self) -> Delays {
        self.delays_seeded(fastrand::u64(..))
    }

    /// The same delays from a fixed seed, for tests and reproducible runs.
    pub fn delays_seeded(&self, seed: u64) -> Delays {
        Delays {
            backoff: *self,
            retry: 0,
            previous: self.base,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// `min(cap, base × 2^(retry-1))` for retry 1, 2, 3, …
    fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }
}

/// The delays of a [`Backoff`], one per retry.
#[derive(Debug, Clone)]
pub struct Delays {
    backoff: Backoff,
    retry: u32,
    previous: Duration,
    rng: fastrand::Rng,
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.retry = self.retry.saturating_add(1);
        let delay = self.backoff.delay(self.retry, self.previous, &mut self.rng);
        self.previous = delay;
        Some(delay)
    }
}

impl Backoff {
    /// The delay before retry `retry` (1, 2, 3, …), after a delay of
    /// `previous` (`base` before the first).
    pub(crate) fn delay(
        &self,
        retry: u32,
        previous: Duration,
        rng: &mut fastrand::Rng,
    ) -> Duration {
        let uniform = |rng: &mut fastrand::Rng, low: Duration, high: Duration| {
            if high <= low {
                return low;
            }
            let span = u64::try_from((high - low).as_nanos()).unwrap_or(u64::MAX);
            low + Duration::from_nanos(rng.u64(0..=span))
        };
        match self.jitter {
            Jitter::None => self.ceiling(retry),
            Jitter::Full => uniform(rng, Duration::ZERO, self.ceiling(retry)),
            Jitter::Decorrelated => {
                let high = previous.saturating_mul(3).min(self.cap);
                uniform(rng, self.base.min(high), high)
            }
        }
    }

    /// The base delay.
    #[must_use]
    pub fn base(&self) -> Duration {
        self.base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(10);
    const CAP: Duration = Duration::from_millis(500);

    #[test]
    fn full_jitter_stays_within_bounds_and_spreads() {
        let backoff = Backoff::new(BASE, CAP);
        for seed in 0..2_000 {
            for (i, delay) in backoff.delays_seeded(seed).take(10).enumerate() {
                let ceiling = (BASE * (1 << i)).min(CAP);
                assert!(delay <= ceiling, "retry {} seed {seed}: {delay:?}", i + 1);
            }
        }
        // Over many samples the fourth delay fills its range [0, 80 ms]:
        // roughly uniform, so its mean is near 40 ms and both ends are hit.
        let fourth: Vec<Duration> = (0..10_000)
            .map(|seed| backoff.delays_seeded(seed).nth(3).unwrap())
            .collect();
        let mean = fourth.iter().sum::<Duration>() / 10_000;
        assert!(
            mean > Duration::from_millis(38) && mean < Duration::from_millis(42),
            "{mean:?}"
        );
        assert!(fourth.iter().any(|d| *d < Duration::from_millis(4)));
        assert!(fourth.iter().any(|d| *d > Duration::from_millis(76)));
    }

    #[test]
    fn decorrelated_jitter_stays_within_its_bounds() {
        let backoff = Backoff::new(BASE, CAP).jitter(Jitter::Decorrelated);
        for seed in 0..2_000 {
            let mut previous = BASE;
            for delay in backoff.delays_seeded(seed).take(12) {
                let high = (previous * 3).min(CAP);
                assert!(
                    delay >= BASE.min(high) && delay <= high,
                    "{delay:?} after {previous:?}"
                );
                previous = delay;
            }
        }
    }

    #[test]
    fn no_jitter_doubles_up_to_the_cap_and_never_overflows() {
        let delays: Vec<_> = Backoff::new(BASE, CAP)
            .jitter(Jitter::None)
            .delays_seeded(1)
            .take(8)
            .collect();
        let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 320, 500, 500]);
        let far = Backoff::new(BASE, Duration::MAX)
            .jitter(Jitter::None)
            .delays_seeded(1)
            .nth(200)
            .unwrap();
        assert!(far > Duration::from_secs(1));
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let backoff = Backoff::new(BASE, CAP);
        let a: Vec<_> = backoff.delays_seeded(7).take(5).collect();
        let b: Vec<_> = backoff.delays_seeded(7).take(5).collect();
        assert_eq!(a, b);
    }
}
