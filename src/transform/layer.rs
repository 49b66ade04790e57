use std::sync::Arc;

use tower_layer::Layer;

use super::{HeaderOps, Transform};

/// Adds, sets, removes and renames request and response headers.
///
/// See the [module docs](crate::transform).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct TransformLayer {
    pub(crate) request: Arc<HeaderOps>,
    pub(crate) response: Arc<HeaderOps>,
    #[cfg(feature = "ip-restriction")]
    pub(crate) client_ip: Option<crate::net::TrustedProxies>,
}

impl TransformLayer {
    /// A layer that changes nothing until given operations.
    pub fn new() -> Self {
        Self::default()
    }

    /// The operations on the request before the inner service sees it.
    ///
    /// Default: none.
    pub fn request(mut self, ops: HeaderOps) -> Self {
        self.request = Arc::new(ops);
        self
    }

    /// The operations on the response of the inner service.
    ///
    /// Default: none.
    pub fn response(mut self, ops: HeaderOps) -> Self {
        self.response = Arc::new(ops);
        self
    }

    /// How `${client_ip}` is resolved: with trusted proxies, the right-most
    /// untrusted `X-Forwarded-For` entry (see
    /// [`TrustedProxies`](crate::net::TrustedProxies)).
    ///
    /// Default: the socket peer ([`PeerAddr`](crate::peer::PeerAddr)).
    #[cfg(feature = "ip-restriction")]
    pub fn client_ip(mut self, resolver: crate::net::TrustedProxies) -> Self {
        self.client_ip = Some(resolver);
        self
    }

    /// The layer for a route's `transform` section of the gateway config.
    ///
    /// Errors when a value is a template with an unknown or unterminated
    /// variable.
    #[cfg(feature = "config")]
    pub fn from_config(config: &crate::config::Transform) -> Result<Self, super::TemplateError> {
        Ok(Self::new()
            .request(HeaderOps::from_config(&config.request)?)
            .response(HeaderOps::from_config(&config.response)?))
    }
}

impl<S> Layer<S> for TransformLayer {
    type Service = Transform<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Transform::new(inner, self.clone())
    }
}
