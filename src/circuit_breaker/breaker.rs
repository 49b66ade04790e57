//! One breaker's state machine: closed → open → half-open → closed.
//!
//! The closed path is lock-free: admission is one atomic load, a success one
//! more. Transitions, which are rare, take a mutex so that the counters they
//! reset are never seen half-reset; nothing awaits while holding it.

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::window::Window;
use super::{BreakerState, Config, StateChange};

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;

fn pack(state: u64, generation: u64) -> u64 {
    (generation << 2) | state
}

fn unpack(word: u64) -> (u64, u64) {
    (word & 3, word >> 2)
}

fn state_of(bits: u64) -> BreakerState {
    match bits {
        OPEN => BreakerState::Open,
        HALF_OPEN => BreakerState::HalfOpen,
        _ => BreakerState::Closed,
    }
}

/// One circuit breaker. Shared by every clone of the service through an `Arc`.
#[derive(Debug)]
pub(crate) struct Breaker {
    config: Arc<Config>,
    key: Option<Arc<str>>,
    /// State in the low two bits, a generation above them that every
    /// transition bumps, so outcomes of calls admitted before a transition
    /// are ignored after it.
    word: AtomicU64,
    consecutive: AtomicU32,
    trips: AtomicU32,
    /// While open: milliseconds since `epoch` at which half-open begins.
    open_until: AtomicU64,
    probes_in_flight: AtomicU32,
    probe_successes: AtomicU32,
    /// Milliseconds since `epoch` of the last admission, for eviction.
    last_used: AtomicU64,
    epoch: Instant,
    /// Serialises transitions; holds the failure-rate window when enabled.
    transitions: Mutex<Option<Window>>,
}

/// What admission decided.
pub(crate) enum Admission {
    /// The call may go ahead; report its outcome through the permit.
    Allowed(Permit),
    /// The breaker is open (or half-open with every probe slot taken):
    /// answer 503, retry after this long.
    Refused(Duration),
}

impl Breaker {
    pub(crate) fn new(config: Arc<Config>, key: Option<Arc<str>>) -> Self {
        let window = config.failure_rate.map(|rate| Window::new(rate.window));
        Self {
            config,
            key,
            word: AtomicU64::new(pack(CLOSED, 0)),
            consecutive: AtomicU32::new(0),
            trips: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probes_in_flight: AtomicU32::new(0),
            probe_successes: AtomicU32::new(0),
            last_used: AtomicU64::new(0),
            epoch: Instant::now(),
            transitions: Mutex::new(window),
        }
    }

    /// Nanoseconds since `epoch`, for slow calls (good for 584 years).
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, Option<Window>> {
        // A panic under this lock cannot leave the counters inconsistent
        // beyond what the next transition resets, so poisoning is ignored.
        self.transitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn touch(&self) {
        self.last_used.store(self.now_ms(), Ordering::Relaxed);
    }

    pub(crate) fn last_used(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }

    pub(crate) fn state(&self) -> BreakerState {
        state_of(unpack(self.word.load(Ordering::Acquire)).0)
    }

    /// Decides whether a call may go ahead.
    ///
    /// The closed path is [`admit_closed`](Self::admit_closed), inlined
    /// into the caller; the rest is out of line.
    #[inline]
    pub(crate) fn admit(self: &Arc<Self>) -> Admission {
        match self.admit_closed() {
            Some(permit) => Admission::Allowed(permit),
            None => self.admit_slow(),
        }
    }

    /// The permit of a call while closed, `None` in any other state: one
    /// atomic load and the permit's reference count.
    #[inline(always)]
    pub(crate) fn admit_closed(self: &Arc<Self>) -> Option<Permit> {
        let (state, generation) = unpack(self.word.load(Ordering::Acquire));
        (state == CLOSED).then(|| self.permit(generation, false))
    }

    #[cold]
    #[inline(never)]
    fn admit_slow(self: &Arc<Self>) -> Admission {
        loop {
            let word = self.word.load(Ordering::Acquire);
            let (state, generation) = unpack(word);
            match state {
                CLOSED => return Admission::Allowed(self.permit(generation, false)),
                OPEN => {
                    let now = self.now_ms();
                    let until = self.open_until.load(Ordering::Acquire);
                    if now < until {
                        return Admission::Refused(Duration::from_millis(until - now));
                    }
                    self.half_open(generation);
                }
                _ => {
                    let taken = self.probes_in_flight.fetch_add(1, Ordering::AcqRel);
                    if taken < self.config.half_open_probes {
                        return Admission::Allowed(self.permit(generation, true));
                    }
                    self.probes_in_flight.fetch_sub(1, Ordering::AcqRel);
                    return Admission::Refused(Duration::from_secs(1));
                }
            }
        }
    }

    #[inline(always)]
    fn permit(self: &Arc<Self>, generation: u64, probe: bool) -> Permit {
        Permit {
            breaker: Some(Arc::clone(self)),
            tag: Permit::tag((generation << TAG_BITS) | if probe { PROBE } else { 0 }),
            // Read the clock only when slow calls are judged.
            started_ns: match self.config.slow_call {
                Some(_) => self.now_ns(),
                None => NOT_TIMED,
            },
        }
    }

    /// Records the outcome of a call admitted under `generation`.
    ///
    /// A success while closed with no failure-rate window is inlined: two
    /// plain loads, and a store only when a failure streak ends.
    #[inline]
    fn record(&self, generation: u64, probe: bool, failure: bool) {
        let word = self.word.load(Ordering::Acquire);
        if !failure && word == pack(CLOSED, generation) && self.config.failure_rate.is_none() {
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
            return;
        }
        self.record_slow(word, generation, probe, failure);
    }

    #[inline(never)]
    fn record_slow(&self, word: u64, generation: u64, probe: bool, failure: bool) {
        let (state, current) = unpack(word);
        if current != generation {
            // Admitted before a transition: says nothing about the new state.
            return;
        }
        match state {
            CLOSED => self.record_closed(generation, failure),
            HALF_OPEN if probe => {
                self.probes_in_flight.fetch_sub(1, Ordering::AcqRel);
                if failure {
                    self.trip(generation);
                } else {
                    let ok = self.probe_successes.fetch_add(1, Ordering::AcqRel) + 1;
                    if ok >= self.config.half_open_probes {
                        self.close(generation);
                    }
                }
            }
            _ => {}
        }
    }

    fn record_closed(&self, generation: u64, failure: bool) {
        let consecutive = if failure {
            self.consecutive.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
            0
        };
        let mut trip = failure && consecutive >= self.config.consecutive_failures;
        if let Some(rate) = self.config.failure_rate {
            let now = self.now_ms();
            let mut guard = self.lock();
            if let Some(window) = guard.as_mut() {
                let (calls, failures) = window.record(now, failure);
                trip |= failure
                    && calls >= rate.min_calls
                    && f64::from(failures) >= rate.threshold * f64::from(calls);
            }
        }
        if trip {
            self.trip(generation);
        }
    }

    /// Opens the breaker, if it is still in `generation`.
    fn trip(&self, generation: u64) {
        let change = {
            let mut guard = self.lock();
            let word = self.word.load(Ordering::Acquire);
            let (from, current) = unpack(word);
            if current != generation || from == OPEN {
                return;
            }
            let trips = self.trips.fetch_add(1, Ordering::AcqRel).saturating_add(1);
            let open_for = self
                .config
                .base_open
                .saturating_mul(trips)
                .min(self.config.max_open);
            let until = self
                .now_ms()
                .saturating_add(u64::try_from(open_for.as_millis()).unwrap_or(u64::MAX));
            self.open_until.store(until, Ordering::Release);
            self.consecutive.store(0, Ordering::Release);
            if let Some(window) = guard.as_mut() {
                window.clear();
            }
            self.word
                .store(pack(OPEN, generation.wrapping_add(1)), Ordering::Release);
            self.change(from, BreakerState::Open, Some(open_for))
        };
        self.notify(&change);
    }

    /// Moves an open breaker whose time is up to half-open.
    fn half_open(&self, generation: u64) {
        let change = {
            let _guard = self.lock();
            let word = self.word.load(Ordering::Acquire);
            if word != pack(OPEN, generation) {
                return;
            }
            self.probes_in_flight.store(0, Ordering::Release);
            self.probe_successes.store(0, Ordering::Release);
            self.word.store(
                pack(HALF_OPEN, generation.wrapping_add(1)),
                Ordering::Release,
            );
            self.change(OPEN, BreakerState::HalfOpen, None)
        };
        self.notify(&change);
    }

    /// Closes a half-open breaker whose probes succeeded.
    fn close(&self, generation: u64) {
        let change = {
            let mut guard = self.lock();
            if self.word.load(Ordering::Acquire) != pack(HALF_OPEN, generation) {
                return;
            }
            self.trips.store(0, Ordering::Release);
            self.consecutive.store(0, Ordering::Release);
            if let Some(window) = guard.as_mut() {
                window.clear();
            }
            self.word
                .store(pack(CLOSED, generation.wrapping_add(1)), Ordering::Release);
            self.change(HALF_OPEN, BreakerState::Closed, None)
        };
        self.notify(&change);
    }

    fn change(&self, from: u64, to: BreakerState, open_for: Option<Duration>) -> StateChange {
        StateChange {
            key: self.key.clone(),
            from: state_of(from),
            to,
            open_for,
        }
    }

    /// Logs a transition and tells the observer, outside the lock.
    fn notify(&self, change: &StateChange) {
        tracing::info!(
            key = change.key.as_deref().unwrap_or("-"),
            from = ?change.from,
            to = ?change.to,
            open_for_ms = change.open_for.map(|d| d.as_millis() as u64),
            "circuit breaker state change"
        );
        if let Some(observer) = &self.config.observer {
            observer(change);
        }
    }

    pub(crate) fn snapshot(&self) -> super::BreakerSnapshot {
        let state = self.state();
        let open_remaining = (state == BreakerState::Open).then(|| {
            let until = self.open_until.load(Ordering::Acquire);
            Duration::from_millis(until.saturating_sub(self.now_ms()))
        });
        super::BreakerSnapshot {
            key: self.key.as_deref().map(str::to_owned),
            state,
            consecutive_failures: self.consecutive.load(Ordering::Acquire),
            trips: self.trips.load(Ordering::Acquire),
            open_remaining,
        }
    }
}

/// `Permit::tag` bit: the call is a half-open probe.
const PROBE: u64 = 1 << 1;
/// `Permit::tag` bit: the outcome was reported (or there is no breaker).
const DONE: u64 = 1 << 2;
/// `Permit::tag` bit: always set, so that the tag is never 0 and the
/// response future can keep its state in that niche.
const SET: u64 = 1;
/// Bits of `Permit::tag` below the generation.
const TAG_BITS: u32 = 3;
/// `Permit::started_ns` when slow calls are not judged.
const NOT_TIMED: u64 = u64::MAX;

/// The right to make one call; reports its outcome to the breaker.
///
/// A permit dropped without an outcome (the call was cancelled) gives its
/// half-open probe slot back, so a cancelled probe cannot wedge the breaker.
///
/// Three words, so that the response future stays small: it is copied
/// whole on every move. The tag is never 0: the response future keeps its
/// refused state in that niche instead of a discriminant of its own.
#[derive(Debug)]
pub(crate) struct Permit {
    /// `None` for a call no breaker guards.
    breaker: Option<Arc<Breaker>>,
    /// The generation the call was admitted under, shifted left by
    /// `TAG_BITS`, with the `SET`, `PROBE` and `DONE` bits.
    tag: NonZeroU64,
    /// When the call started, in nanoseconds since the breaker's epoch, if
    /// slow calls count as failures; else `NOT_TIMED`.
    started_ns: u64,
}

impl Permit {
    #[inline(always)]
    fn tag(bits: u64) -> NonZeroU64 {
        const { assert!(NonZeroU64::MIN.get() == SET) };
        NonZeroU64::MIN | bits
    }

    /// The permit of a call no breaker guards: it records nothing.
    #[inline]
    pub(crate) fn unguarded() -> Self {
        Self {
            breaker: None,
            tag: Self::tag(DONE),
            started_ns: NOT_TIMED,
        }
    }

    /// Whether the call's outcome is still to be recorded: `false` for an
    /// unguarded call.
    #[inline(always)]
    pub(crate) fn pending(&self) -> bool {
        self.tag.get() & DONE == 0
    }

    fn generation(&self) -> u64 {
        self.tag.get() >> TAG_BITS
    }

    fn is_probe(&self) -> bool {
        self.tag.get() & PROBE != 0
    }

    /// Whether the call took longer than the slow-call threshold.
    #[inline]
    pub(crate) fn was_slow(&self) -> bool {
        if self.started_ns == NOT_TIMED {
            return false;
        }
        let Some(breaker) = &self.breaker else {
            return false;
        };
        breaker.config.slow_call.is_some_and(|threshold| {
            let took = breaker.now_ns().saturating_sub(self.started_ns);
            Duration::from_nanos(took) > threshold
        })
    }

    /// Reports the call's outcome; only the first report counts.
    #[inline]
    pub(crate) fn record(&mut self, failure: bool) {
        if self.pending() {
            self.tag |= DONE;
            if let Some(breaker) = &self.breaker {
                breaker.record(self.generation(), self.is_probe(), failure);
            }
        }
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        if self.pending()
            && self.is_probe()
            && let Some(breaker) = &self.breaker
        {
            let word = breaker.word.load(Ordering::Acquire);
            if word == pack(HALF_OPEN, self.generation()) {
                breaker.probes_in_flight.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}
