use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderName;
use tower_layer::Layer;

use super::{Backoff, Jitter, Retry, RetryBudget, RetryOn, RetryStats};

/// The default most attempts, the first one included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// The largest number of attempts a layer makes, whatever is configured.
pub const MAX_ATTEMPTS_LIMIT: u32 = 10;

/// The default largest request body kept for replay: 64 KiB.
pub const DEFAULT_REPLAY_LIMIT: usize = 64 * 1024;

/// The response header that carries the number of attempts, when enabled
/// with [`RetryLayer::attempts_header`].
pub const ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-meshgate-attempts");

/// Retries failed requests with jittered backoff, within a retry budget.
///
/// The [`RetryBudget`] and the [`RetryStats`] counters live in the layer:
/// every service it builds, and every clone of those, shares them. See the
/// [module docs](crate::retry) for the behaviour.
#[derive(Debug, Clone)]
#[must_use]
pub struct RetryLayer {
    policy: Arc<Policy>,
}

/// What a layer's services read on every request.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) per_try_timeout: Option<Duration>,
    pub(crate) retry_on: RetryOn,
    pub(crate) non_idempotent: bool,
    pub(crate) retry_after_cap: Duration,
    pub(crate) replay_limit: usize,
    pub(crate) report: Report,
    pub(crate) shared: Arc<Shared>,
}

/// How the number of attempts is reported on the response.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Report {
    /// Add the `x-meshgate-attempts` header.
    pub(crate) header: bool,
    /// Insert the `Attempts` extension after a single attempt too.
    pub(crate) always_extension: bool,
}

/// The state every service of a layer shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) budget: RetryBudget,
    pub(crate) stats: Counters,
}

/// The counters behind [`RetryStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) retries: AtomicU64,
    pub(crate) budget_exhausted: AtomicU64,
    pub(crate) attempts_exhausted: AtomicU64,
    pub(crate) retry_after_too_long: AtomicU64,
    pub(crate) deadline_too_close: AtomicU64,
    pub(crate) body_not_replayable: AtomicU64,
    pub(crate) per_try_timeouts: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Default for RetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryLayer {
    /// A layer with the defaults: 3 attempts in all, full-jitter backoff
    /// from 25 ms capped at 250 ms, [`RetryOn::default`], no per-try
    /// timeout, idempotent requests only, `Retry-After` waits up to 10 s,
    /// bodies up to 64 KiB replayed, and the default [`RetryBudget`].
    pub fn new() -> Self {
        Self {
            policy: Arc::new(Policy {
                max_attempts: DEFAULT_MAX_ATTEMPTS,
                backoff: Backoff::new(Duration::from_millis(25), Duration::from_millis(250)),
                per_try_timeout: None,
                retry_on: RetryOn::default(),
                non_idempotent: false,
                retry_after_cap: Duration::from_secs(10),
                replay_limit: DEFAULT_REPLAY_LIMIT,
                report: Report::default(),
                shared: Arc::new(Shared {
                    budget: RetryBudget::default(),
                    stats: Counters::default(),
                }),
            }),
        }
    }

    fn policy(&mut self) -> &mut Policy {
        Arc::make_mut(&mut self.policy)
    }

    /// The most attempts, the first one included (1 turns retries off;
    /// clamped to 1–10).
    ///
    /// Default: 3.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.policy().max_attempts = attempts.clamp(1, MAX_ATTEMPTS_LIMIT);
        self
    }

    /// Exponential backoff between attempts, from `base` doubling up to
    /// `cap` (a `cap` below `base` is raised to it), keeping the jitter
    /// already set.
    ///
    /// Default: 25 ms to 250 ms, full jitter (Envoy's defaults).
    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        let jitter = self.policy.backoff_jitter();
        self.policy().backoff = Backoff::new(base, cap).jitter(jitter);
        self
    }

    /// How the backoff delays are spread: [`Jitter::Full`] (uniform in
    /// `[0, base × 2^n]`), [`Jitter::Decorrelated`] or [`Jitter::None`].
    ///
    /// Default: [`Jitter::Full`].
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        let policy = self.policy();
        policy.backoff = policy.backoff.jitter(jitter);
        self
    }

    /// Ends an attempt that takes longer than `timeout` with a `504`
    /// (a [`Rejection`](crate::error::Rejection) of kind
    /// [`Timeout`](crate::error::RejectionKind::Timeout)), which is retried
    /// under `gateway-error` and `5xx`.
    ///
    /// At least 1 ms (shorter is clamped).
    ///
    /// Default: none; only an outer timeout bounds an attempt.
    pub fn per_try_timeout(mut self, timeout: Duration) -> Self {
        self.policy().per_try_timeout = Some(timeout.max(Duration::from_millis(1)));
        self
    }

    /// Which outcomes are retried.
    ///
    /// Default: [`RetryOn::default`] (`gateway-error,connect-failure,reset`).
    pub fn retry_on(mut self, retry_on: RetryOn) -> Self {
        self.policy().retry_on = retry_on;
        self
    }

    /// Retries non-idempotent requests (POST, PATCH, …) too, for routes
    /// whose upstream is known to tolerate it. Without it they are retried
    /// only with an `Idempotency-Key` header, or after a connect failure.
    ///
    /// Default: off.
    pub fn retry_non_idempotent(mut self, retry: bool) -> Self {
        self.policy().non_idempotent = retry;
        self
    }

    /// The longest `Retry-After` (on a 429 or 503) waited for; a response
    /// asking for longer is returned as it is.
    ///
    /// Default: 10 s.
    pub fn retry_after_cap(mut self, cap: Duration) -> Self {
        self.policy().retry_after_cap = cap;
        self
    }

    /// The largest request body kept for replay. A longer body is streamed
    /// once and its request is not retried.
    ///
    /// Default: 64 KiB.
    pub fn replay_limit(mut self, bytes: usize) -> Self {
        self.policy().replay_limit = bytes;
        self
    }

    /// Adds an `x-meshgate-attempts` header with the number of attempts to
    /// every response.
    ///
    /// Default: off (the [`Attempts`](super::Attempts) extension is there
    /// after a retry either way).
    pub fn attempts_header(mut self, enabled: bool) -> Self {
        self.policy().report.header = enabled;
        self
    }

    /// Inserts the [`Attempts`](super::Attempts) extension on responses
    /// answered by their first attempt too, at the cost of allocating the
    /// response's extension map on the happy path (about as much again as
    /// the rest of the layer, measured).
    ///
    /// Default: off; [`Attempts::of`](super::Attempts::of) reads a missing
    /// extension as 1 attempt.
    pub fn always_record_attempts(mut self, enabled: bool) -> Self {
        self.policy().report.always_extension = enabled;
        self
    }

    /// Replaces the retry budget: retries may add `ratio` of the requests
    /// plus `min_per_second` per second, over `window` (see
    /// [`RetryBudget::new`]). The new budget, and fresh [`RetryStats`], are
    /// shared by the services built from here on.
    ///
    /// Default: 20 %, 10 per second, over 10 s.
    pub fn budget(mut self, ratio: f64, min_per_second: u32, window: Duration) -> Self {
        self.policy().shared = Arc::new(Shared {
            budget: RetryBudget::new(ratio, min_per_second, window),
            stats: Counters::default(),
        });
        self
    }

    /// The counters of every service built by this layer.
    #[must_use]
    pub fn stats(&self) -> RetryStats {
        let c = &self.policy.shared.stats;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        RetryStats {
            retries: get(&c.retries),
            budget_exhausted: get(&c.budget_exhausted),
            attempts_exhausted: get(&c.attempts_exhausted),
            retry_after_too_long: get(&c.retry_after_too_long),
            deadline_too_close: get(&c.deadline_too_close),
            body_not_replayable: get(&c.body_not_replayable),
            per_try_timeouts: get(&c.per_try_timeouts),
            budget_remaining: self.policy.shared.budget.remaining(),
        }
    }
}

impl Policy {
    fn backoff_jitter(&self) -> Jitter {
        self.backoff.jitter_kind()
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(inner, Arc::clone(&self.policy))
    }
}
