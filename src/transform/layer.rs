use std::sync::Arc;

use tower_layer::Layer;

use super::ops::PreparedOps;
use super::stats::Counters;
use super::template::VarSet;
use super::{HeaderOps, QueryOps, Transform, TransformStats};

/// Adds, sets, removes and renames request and response headers and
/// request query parameters.
///
/// See the [module docs](crate::transform). Clones (and the services they
/// build) share the operations and the [`TransformStats`] counters.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct TransformLayer {
    request: HeaderOps,
    query: QueryOps,
    response: HeaderOps,
    client_ip: Option<crate::net::TrustedProxies>,
    counters: Arc<Counters>,
}

/// What every clone of a [`Transform`] service reads, built once per
/// `layer` call: the operations and what the hot path needs to know about
/// them, so a request never scans the templates.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) request: PreparedOps,
    pub(crate) query: QueryOps,
    pub(crate) response: PreparedOps,
    pub(crate) client_ip: Option<crate::net::TrustedProxies>,
    /// Every variable of every template (empty when all values are
    /// fixed), and the layer's counters.
    pub(crate) vars: Arc<VarSet>,
    /// Whether any template has a variable: without one, a request is not
    /// read for them at all.
    pub(crate) captures: bool,
}

impl TransformLayer {
    /// A layer that changes nothing until given operations.
    pub fn new() -> Self {
        Self::default()
    }

    /// The header operations on the request before the inner service sees
    /// it.
    ///
    /// Default: none.
    pub fn request(mut self, ops: HeaderOps) -> Self {
        self.request = ops;
        self
    }

    /// The query parameter operations on the request.
    ///
    /// Default: none.
    pub fn query(mut self, ops: QueryOps) -> Self {
        self.query = ops;
        self
    }

    /// The header operations on the response of the inner service.
    ///
    /// Default: none.
    pub fn response(mut self, ops: HeaderOps) -> Self {
        self.response = ops;
        self
    }

    /// How `${client_ip}` is resolved: with trusted proxies, the right-most
    /// untrusted `X-Forwarded-For` entry (see
    /// [`TrustedProxies`](crate::net::TrustedProxies)).
    ///
    /// Default: the socket peer ([`PeerAddr`](crate::peer::PeerAddr)).
    pub fn client_ip(mut self, resolver: crate::net::TrustedProxies) -> Self {
        self.client_ip = Some(resolver);
        self
    }

    /// What the services of this layer (and its clones) did so far.
    #[must_use]
    pub fn stats(&self) -> TransformStats {
        self.counters.snapshot()
    }

    /// The header and query layer for a route's `transform` section of the
    /// gateway config (`request.body`, `response.body` and `compression`
    /// are other layers: [`JsonBodyLayer`](super::JsonBodyLayer),
    /// [`Compression`](super::Compression)). `${client_ip}` trusts the
    /// config's top-level `trusted_proxies`.
    ///
    /// Errors when a value is a template with an unknown or unterminated
    /// variable.
    #[cfg(feature = "config")]
    pub fn from_config(
        config: &crate::config::Transform,
        trusted_proxies: &[crate::config::Cidr],
    ) -> Result<Self, super::TemplateError> {
        let layer = Self::new()
            .request(HeaderOps::from_config(&config.request).map_err(|e| e.at("request"))?)
            .query(QueryOps::from_config(&config.request.query).map_err(|e| e.at("request.query"))?)
            .response(HeaderOps::from_config(&config.response).map_err(|e| e.at("response"))?);
        let layer = layer.client_ip(crate::net::TrustedProxies::new(
            trusted_proxies.iter().copied(),
        ));
        Ok(layer)
    }

    /// Whether the layer changes nothing (a route's section had only body
    /// or compression settings).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.query.is_empty() && self.response.is_empty()
    }

    pub(crate) fn shared(&self) -> Shared {
        let mut vars = VarSet::new(Arc::clone(&self.counters));
        vars.add(self.request.vars());
        vars.add(self.query.vars());
        vars.add(self.response.vars());
        Shared {
            request: self.request.prepare(),
            query: self.query.clone(),
            response: self.response.prepare(),
            client_ip: self.client_ip.clone(),
            captures: !vars.is_empty(),
            vars: Arc::new(vars),
        }
    }
}

impl<S> Layer<S> for TransformLayer {
    type Service = Transform<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Transform::new(inner, Arc::new(self.shared()))
    }
}
