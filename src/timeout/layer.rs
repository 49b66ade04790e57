use std::time::Duration;

use http::HeaderName;
use tower_layer::Layer;

use super::Timeout;

/// The default header that carries a budget in whole milliseconds.
pub const DEFAULT_BUDGET_HEADER: HeaderName = HeaderName::from_static("x-request-timeout-ms");

/// Applies a time budget to every request, with deadline propagation.
///
/// See the [module docs](crate::timeout) for the behaviour.
#[derive(Debug, Clone)]
#[must_use]
pub struct TimeoutLayer {
    timeout: Duration,
    header: HeaderName,
}

impl TimeoutLayer {
    /// A layer that gives every request at most `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            header: DEFAULT_BUDGET_HEADER,
        }
    }

    /// The header that carries a budget in whole milliseconds, read on the
    /// way in and written on the way to the inner service.
    ///
    /// Default: `x-request-timeout-ms`.
    pub fn budget_header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }

    /// This layer's own budget.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::new(inner, self.timeout, self.header.clone())
    }
}
