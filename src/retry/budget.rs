//! The retry budget: retries may add at most a share of recent traffic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Slots the window is cut into.
const SLOTS: usize = 10;

/// A cap on retries shared by every clone of a service, so that retries
/// cannot multiply load on an upstream that is already failing.
///
/// Over the last `window` (default 10 s), the number of retries allowed is
///
/// ```text
/// floor(ratio × requests in the window) + min_per_second × window seconds
/// ```
///
/// with `ratio` 20 % and `min_per_second` 10 by default (Linkerd's
/// `retryBudget`). Each original request [deposits](Self::deposit) one
/// request; each retry [withdraws](Self::withdraw) one retry, and is refused
/// when the retries already in the window have reached the allowance.
/// Retries are not deposits. The window slides in ten slots of a tenth of
/// the window each: an event leaves the window when its slot does.
///
/// Lock-free: each slot is a pair of tagged atomic counters, and a withdrawal
/// is a compare-and-swap on the current slot, so concurrent withdrawals never
/// overshoot the allowance.
///
/// ```
/// use std::time::Duration;
/// use meshgate::retry::RetryBudget;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let budget = RetryBudget::new(0.2, 0, Duration::from_secs(10));
/// for _ in 0..10 {
///     budget.deposit();
/// }
/// assert!(budget.withdraw());
/// assert!(budget.withdraw());
/// assert!(!budget.withdraw(), "20 % of 10 requests is 2 retries");
/// # }
/// ```
#[derive(Debug)]
pub struct RetryBudget {
    /// Retry ratio in parts per million, so the allowance is integer math.
    ratio_ppm: u64,
    /// `min_per_second × window`, in retries.
    floor: u64,
    slot_ms: u64,
    epoch: Instant,
    requests: [AtomicU64; SLOTS],
    retries: [AtomicU64; SLOTS],
}

/// The budget slot of a service's previous deposit (see
/// [`RetryBudget::deposit_cached`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotCache {
    tick: u64,
    /// `tick % SLOTS`, so a deposit in the cached slot divides nothing.
    index: usize,
    start: Instant,
    end: Instant,
}

/// A slot's counter: the slot's tick in the high 32 bits, its count in the low.
#[inline]
fn pack(tick: u64, count: u64) -> u64 {
    (tick << 32) | count.min(u64::from(u32::MAX))
}

#[inline]
fn unpack(value: u64) -> (u64, u64) {
    (value >> 32, value & u64::from(u32::MAX))
}

impl Default for RetryBudget {
    /// 20 % of the requests plus 10 retries per second, over 10 s.
    fn default() -> Self {
        Self::new(0.2, 10, Duration::from_secs(10))
    }
}

impl RetryBudget {
    /// A budget of `ratio` (0.0 to 1.0, clamped; NaN is 0) of the requests
    /// plus `min_per_second` retries per second, over `window` (at least 10 ms).
    #[must_use]
    pub fn new(ratio: f64, min_per_second: u32, window: Duration) -> Self {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
        let window_ms = u64::try_from(window.as_millis())
            .unwrap_or(u64::MAX)
            .max(SLOTS as u64);
        Self {
            // In range: 0 ≤ ratio ≤ 1, so 0 ≤ ppm ≤ 1 000 000.
            ratio_ppm: (ratio * 1_000_000.0).round() as u64,
            floor: u64::from(min_per_second).saturating_mul(window_ms) / 1000,
            slot_ms: window_ms / SLOTS as u64,
            epoch: Instant::now(),
            requests: Default::default(),
            retries: Default::default(),
        }
    }

    #[inline]
    fn tick(&self) -> u64 {
        self.slot_at(Instant::now()).0
    }

    /// The tag of the slot `now` falls in, and the unmasked slot number.
    #[inline]
    fn slot_at(&self, now: Instant) -> (u64, u64) {
        // `as_secs × 1000 + subsec_millis` is `as_millis` without its
        // 128-bit arithmetic; it overflows only after 584 million years.
        let elapsed = now.saturating_duration_since(self.epoch);
        let ms = elapsed
            .as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(elapsed.subsec_millis()));
        let slot = ms / self.slot_ms;
        // Tags are 32 bits; they wrap after 2^32 slots, far beyond any run.
        (slot & u64::from(u32::MAX), slot)
    }

    /// Counts in `counters` over the slots still in the window at `tick`.
    fn sum(counters: &[AtomicU64; SLOTS], tick: u64) -> u64 {
        counters
            .iter()
            .map(|c| unpack(c.load(Ordering::Acquire)))
            .filter(|(t, _)| tick.wrapping_sub(*t) & u64::from(u32::MAX) < SLOTS as u64)
            .map(|(_, count)| count)
            .sum()
    }

    /// Records one original request.
    #[inline]
    pub fn deposit(&self) {
        self.deposit_in(self.tick());
    }

    /// [`deposit`](Self::deposit) for a caller that keeps `cache`, the slot
    /// of its previous deposit: while the clock is still inside that slot,
    /// two comparisons of instants replace the division of the elapsed time.
    /// Exactly the same slot as `deposit` would choose. Returns the instant
    /// read.
    #[inline]
    pub(crate) fn deposit_cached(&self, cache: &mut Option<SlotCache>) -> Instant {
        let now = Instant::now();
        let (tick, index) = match cache {
            Some(slot) if slot.start <= now && now < slot.end => (slot.tick, slot.index),
            _ => self.refresh(cache, now),
        };
        self.deposit_at(tick, index);
        now
    }

    #[cold]
    #[inline(never)]
    fn refresh(&self, cache: &mut Option<SlotCache>, now: Instant) -> (u64, usize) {
        let (tick, slot) = self.slot_at(now);
        let index = Self::index(tick);
        // Slot `n` is [epoch + n × slot_ms, epoch + (n + 1) × slot_ms) to
        // the millisecond, exactly the instants `slot_at` maps to `n`.
        let start = slot
            .checked_mul(self.slot_ms)
            .and_then(|ms| self.epoch.checked_add(Duration::from_millis(ms)));
        let end = start.and_then(|start| start.checked_add(Duration::from_millis(self.slot_ms)));
        *cache = match (start, end) {
            (Some(start), Some(end)) if start <= now => Some(SlotCache {
                tick,
                index,
                start,
                end,
            }),
            _ => None,
        };
        (tick, index)
    }

    /// The slot of `tick` in the counter arrays.
    #[inline]
    fn index(tick: u64) -> usize {
        (tick % SLOTS as u64) as usize
    }

    #[inline]
    fn deposit_in(&self, tick: u64) {
        self.deposit_at(tick, Self::index(tick));
    }

    /// Deposits in the slot of `tick`, at `index` (`tick % SLOTS`).
    #[inline]
    fn deposit_at(&self, tick: u64, index: usize) {
        let slot = &self.requests[index];
        let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |value| {
            let (t, count) = unpack(value);
            Some(if t == tick {
                pack(tick, count + 1)
            } else {
                pack(tick, 1)
            })
        });
    }

    /// Takes one retry from the budget: `true` when it fits, and the retry
    /// is then counted; `false` when the budget is spent.
    pub fn withdraw(&self) -> bool {
        let tick = self.tick();
        let allowed = self.allowance(tick);
        let slot = &self.retries[(tick % SLOTS as u64) as usize];
        loop {
            let value = slot.load(Ordering::Acquire);
            let (t, count) = unpack(value);
            let here = if t == tick { count } else { 0 };
            let elsewhere = Self::sum(&self.retries, tick) - if t == tick { count } else { 0 };
            if elsewhere + here >= allowed {
                return false;
            }
            let next = pack(tick, here + 1);
            if slot
                .compare_exchange(value, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return true;
            }
        }
    }

    fn allowance(&self, tick: u64) -> u64 {
        let requests = Self::sum(&self.requests, tick);
        requests.saturating_mul(self.ratio_ppm) / 1_000_000 + self.floor
    }

    /// Retries still allowed in the window now.
    #[must_use]
    pub fn remaining(&self) -> u64 {
        let tick = self.tick();
        self.allowance(tick)
            .saturating_sub(Self::sum(&self.retries, tick))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_allowance_is_the_ratio_of_requests_plus_the_floor() {
        let budget = RetryBudget::default();
        // No traffic: the floor alone, 10/s × 10 s.
        assert_eq!(budget.remaining(), 100);
        for _ in 0..1_000 {
            budget.deposit();
        }
        assert_eq!(budget.remaining(), 300);
        for _ in 0..300 {
            assert!(budget.withdraw());
        }
        assert!(!budget.withdraw());
        assert_eq!(budget.remaining(), 0);
        // Each further request buys 0.2 of a retry: five buy one.
        for _ in 0..4 {
            budget.deposit();
        }
        assert!(!budget.withdraw());
        budget.deposit();
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_recovers_as_the_window_slides() {
        let budget = RetryBudget::new(0.2, 0, Duration::from_secs(10));
        for _ in 0..50 {
            budget.deposit();
        }
        for _ in 0..10 {
            assert!(budget.withdraw());
        }
        assert!(!budget.withdraw(), "spent");
        // 5 s later, 25 fresh requests: 75 in the window → 15 allowed, 10 used.
        tokio::time::advance(Duration::from_secs(5)).await;
        for _ in 0..25 {
            budget.deposit();
        }
        assert_eq!(budget.remaining(), 5);
        // At 10 s the first slot leaves: 25 requests → 5 allowed, 0 used.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(budget.remaining(), 5);
        for _ in 0..5 {
            assert!(budget.withdraw());
        }
        assert!(!budget.withdraw());
        // And once everything has left, nothing is allowed without traffic.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(budget.remaining(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cached_slot_deposits_exactly_where_a_plain_deposit_does() {
        let plain = RetryBudget::new(0.2, 0, Duration::from_secs(10));
        let cached = RetryBudget::new(0.2, 0, Duration::from_secs(10));
        let mut cache = None;
        // Steps that land before, on and just after slot boundaries (1 s).
        let steps = [0, 999, 1, 1, 998, 1_000, 37, 5_000, 1, 12_345, 999, 1];
        for (i, step) in steps.into_iter().enumerate() {
            tokio::time::advance(Duration::from_millis(step)).await;
            for _ in 0..=i {
                plain.deposit();
                cached.deposit_cached(&mut cache);
            }
            let raw = |b: &RetryBudget| b.requests.each_ref().map(|c| c.load(Ordering::Relaxed));
            assert_eq!(raw(&plain), raw(&cached), "after step {i}");
            assert_eq!(plain.remaining(), cached.remaining());
        }
    }

    #[test]
    fn concurrent_withdrawals_never_overshoot() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let budget = std::sync::Arc::new(RetryBudget::new(0.0, 5, Duration::from_secs(3600)));
        let granted: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let budget = budget.clone();
                    let handle = rt.handle().clone();
                    scope.spawn(move || {
                        let _guard = handle.enter();
                        (0..10_000).filter(|_| budget.withdraw()).count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(granted, 5 * 3600);
    }
}
