//! The sliding window behind failure-rate tripping.

use std::time::Duration;

/// Number of buckets the window is cut into.
const BUCKETS: usize = 10;

/// Calls and failures over the last `window`, in ten buckets that roll over
/// with time. Old buckets are cleared as time passes, so the counts always
/// describe at most the last `window`.
#[derive(Debug)]
pub(crate) struct Window {
    bucket_ms: u64,
    /// Bucket tick (time / bucket length) of the newest bucket.
    head: u64,
    calls: [u32; BUCKETS],
    failures: [u32; BUCKETS],
}

impl Window {
    pub(crate) fn new(window: Duration) -> Self {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        Self {
            bucket_ms: (window_ms / BUCKETS as u64).max(1),
            head: 0,
            calls: [0; BUCKETS],
            failures: [0; BUCKETS],
        }
    }

    /// Records one call at `now_ms` and returns the window's
    /// `(calls, failures)` after it.
    pub(crate) fn record(&mut self, now_ms: u64, failure: bool) -> (u32, u32) {
        let tick = now_ms / self.bucket_ms;
        if tick > self.head {
            let stale = (tick - self.head).min(BUCKETS as u64);
            for step in 1..=stale {
                let i = ((self.head + step) % BUCKETS as u64) as usize;
                self.calls[i] = 0;
                self.failures[i] = 0;
            }
            self.head = tick;
        }
        let i = (self.head % BUCKETS as u64) as usize;
        self.calls[i] = self.calls[i].saturating_add(1);
        if failure {
            self.failures[i] = self.failures[i].saturating_add(1);
        }
        (
            self.calls.iter().fold(0u32, |a, c| a.saturating_add(*c)),
            self.failures.iter().fold(0u32, |a, c| a.saturating_add(*c)),
        )
    }

    pub(crate) fn clear(&mut self) {
        self.calls = [0; BUCKETS];
        self.failures = [0; BUCKETS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_roll_off_after_the_window() {
        let mut w = Window::new(Duration::from_secs(10));
        assert_eq!(w.record(0, true), (1, 1));
        assert_eq!(w.record(4_000, false), (2, 1));
        assert_eq!(w.record(9_999, true), (3, 2));
        // At 10.0 s the bucket of t=0 is gone.
        assert_eq!(w.record(10_000, false), (3, 1));
        // Far later everything is gone.
        assert_eq!(w.record(60_000, false), (1, 0));
        w.clear();
        assert_eq!(w.record(60_001, true), (1, 1));
    }
}
