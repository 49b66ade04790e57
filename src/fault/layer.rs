use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, StatusCode};
use tower_layer::Layer;

use super::Fault;
use super::rng::SharedRng;

/// Injects delays and aborts into a share of requests.
///
/// See the [module docs](crate::fault). Clones of the layer, and all the
/// services it builds, draw from one shared random sequence.
#[derive(Clone)]
#[must_use]
pub struct FaultLayer {
    pub(crate) delay: Option<(f64, Duration)>,
    pub(crate) abort: Option<(f64, StatusCode)>,
    pub(crate) header: Option<HeaderName>,
    pub(crate) rng: Arc<SharedRng>,
}

impl FaultLayer {
    /// A layer that injects nothing until [`delay`](Self::delay) or
    /// [`abort`](Self::abort) is set, with an unpredictable seed.
    pub fn new() -> Self {
        Self {
            delay: None,
            abort: None,
            header: None,
            rng: Arc::new(SharedRng::new(fastrand::u64(..))),
        }
    }

    /// Delays `percent` of requests by `duration` before calling the inner
    /// service. `percent` is clamped to 0–100 (NaN counts as 0).
    ///
    /// Default: no delay.
    pub fn delay(mut self, percent: f64, duration: Duration) -> Self {
        self.delay = Some((ratio(percent), duration));
        self
    }

    /// Answers `percent` of requests with `status` and a problem+json body,
    /// without calling the inner service. `percent` is clamped to 0–100
    /// (NaN counts as 0).
    ///
    /// Default: no abort.
    pub fn abort(mut self, percent: f64, status: StatusCode) -> Self {
        self.abort = Some((ratio(percent), status));
        self
    }

    /// Only requests carrying `header` (any value) are subject to faults.
    ///
    /// Default: all requests.
    pub fn only_with_header(mut self, header: HeaderName) -> Self {
        self.header = Some(header);
        self
    }

    /// Seeds the random sequence, for reproducible tests. Layers and
    /// services cloned after this share the seeded sequence.
    ///
    /// Default: a random seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.rng = Arc::new(SharedRng::new(seed));
        self
    }

    /// The layer for a route's `fault` section of the gateway config.
    ///
    /// Errors when the abort status is not a 4xx or 5xx status.
    #[cfg(feature = "config")]
    pub fn from_config(config: &crate::config::Fault) -> Result<Self, FaultConfigError> {
        let mut layer = Self::new();
        if let Some(delay) = &config.delay {
            layer = layer.delay(delay.percent.get(), delay.duration);
        }
        if let Some(abort) = &config.abort {
            let status = StatusCode::from_u16(abort.status)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .ok_or(FaultConfigError {
                    status: abort.status,
                })?;
            layer = layer.abort(abort.percent.get(), status);
        }
        if let Some(header) = &config.only_with_header {
            layer = layer.only_with_header(header.clone());
        }
        Ok(layer)
    }
}

impl Default for FaultLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for FaultLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultLayer")
            .field("delay", &self.delay)
            .field("abort", &self.abort)
            .field("only_with_header", &self.header)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for FaultLayer {
    type Service = Fault<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Fault::new(inner, self.clone())
    }
}

/// A fault configuration that cannot be applied: the abort status is not a
/// 4xx or 5xx status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultConfigError {
    status: u16,
}

impl fmt::Display for FaultConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fault.abort.status {} is not a 4xx or 5xx status",
            self.status
        )
    }
}

impl std::error::Error for FaultConfigError {}

fn ratio(percent: f64) -> f64 {
    if percent.is_nan() {
        0.0
    } else {
        percent.clamp(0.0, 100.0) / 100.0
    }
}
