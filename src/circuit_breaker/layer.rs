use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use tower_layer::Layer;

use super::keys::Breakers;
use super::{BreakerSnapshot, CircuitBreaker, Config, FailureRate, KeyFn, StateChange};

/// The default bound on per-key breakers.
pub const DEFAULT_MAX_KEYS: usize = 1024;

/// Stops calling an inner service that keeps failing.
///
/// The breakers live in the layer: every service it builds, and every clone
/// of those, shares them. See the [module docs](crate::circuit_breaker).
#[derive(Clone)]
#[must_use]
pub struct CircuitBreakerLayer {
    config: Config,
    key: Option<KeyFn>,
    max_keys: usize,
    shared: Arc<std::sync::OnceLock<Arc<Breakers>>>,
}

impl std::fmt::Debug for CircuitBreakerLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("config", &self.config)
            .field("keyed", &self.key.is_some())
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

impl Default for CircuitBreakerLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl CircuitBreakerLayer {
    /// A layer with one breaker and the defaults.
    pub fn new() -> Self {
        Self {
            config: Config::default(),
            key: None,
            max_keys: DEFAULT_MAX_KEYS,
            shared: Arc::default(),
        }
    }

    /// Trips after this many failures in a row (at least 1).
    ///
    /// Default: 5, as Istio's `consecutive5xxErrors`.
    pub fn consecutive_failures(self, n: u32) -> Self {
        self.configured(|layer| layer.config.consecutive_failures = n.max(1))
    }

    /// Also trips when, over the last `window`, at least `min_calls` calls
    /// were made and the share of failures reached `threshold` (0.0 to 1.0,
    /// clamped).
    ///
    /// Default: off.
    pub fn failure_rate(self, threshold: f64, window: Duration, min_calls: u32) -> Self {
        self.configured(|layer| {
            layer.config.failure_rate = Some(FailureRate {
                threshold: if threshold.is_nan() {
                    1.0
                } else {
                    threshold.clamp(0.0, 1.0)
                },
                window,
                min_calls: min_calls.max(1),
            });
        })
    }

    /// Counts a successful call that took longer than `threshold` as a failure.
    ///
    /// Default: off.
    pub fn slow_call(self, threshold: Duration) -> Self {
        self.configured(|layer| layer.config.slow_call = Some(threshold))
    }

    /// How long the breaker stays open after its first trip; each further
    /// trip in a row stays open that much longer (`base × trips`).
    ///
    /// Default: 30 s, as Istio's `baseEjectionTime`.
    pub fn open_for(self, base: Duration) -> Self {
        self.configured(|layer| layer.config.base_open = base)
    }

    /// The longest the breaker stays open.
    ///
    /// Default: 300 s.
    pub fn max_open_for(self, max: Duration) -> Self {
        self.configured(|layer| layer.config.max_open = max)
    }

    /// How many probe calls half-open lets through (at least 1); that many
    /// successes close the breaker, one failure reopens it.
    ///
    /// Default: 1.
    pub fn half_open_probes(self, n: u32) -> Self {
        self.configured(|layer| layer.config.half_open_probes = n.max(1))
    }

    /// One breaker per key instead of one for the layer: `key` names the
    /// breaker for a request (its host, endpoint or route); `None` lets the
    /// request through unguarded.
    pub fn key_by<F>(self, key: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.configured(|layer| layer.key = Some(Arc::new(key)))
    }

    /// The most per-key breakers kept (at least 1); past it, the least
    /// recently used closed breaker of a sample is dropped.
    ///
    /// Default: 1024.
    pub fn max_keys(self, max_keys: usize) -> Self {
        self.configured(|layer| layer.max_keys = max_keys.max(1))
    }

    /// Called on every state change, outside any lock.
    pub fn on_state_change<F>(self, observer: F) -> Self
    where
        F: Fn(&StateChange) + Send + Sync + 'static,
    {
        self.configured(|layer| layer.config.observer = Some(Arc::new(observer)))
    }

    /// The state of every breaker of this layer, for metrics and admin pages.
    #[must_use]
    pub fn snapshot(&self) -> Vec<BreakerSnapshot> {
        self.shared
            .get()
            .map(|breakers| breakers.all().iter().map(|b| b.snapshot()).collect())
            .unwrap_or_default()
    }

    /// Applies a change of configuration. Breakers already built keep the
    /// old configuration, so the changed layer starts a set of its own.
    fn configured(mut self, change: impl FnOnce(&mut Self)) -> Self {
        change(&mut self);
        self.shared = Arc::default();
        self
    }

    fn breakers(&self) -> Arc<Breakers> {
        Arc::clone(self.shared.get_or_init(|| {
            Arc::new(Breakers::new(
                Arc::new(self.config.clone()),
                self.key.is_some(),
                self.max_keys,
            ))
        }))
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, self.breakers(), self.key.clone())
    }
}
