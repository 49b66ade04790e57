use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::error::{Rejection, RejectionKind, is_grpc};
use crate::future::ResponseFuture;
use crate::net::{IpNet, TrustedProxies};

/// Refuses requests by client IP with `403` problem+json.
///
/// See the [module docs](crate::ip_restriction).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct IpRestrictionLayer {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    client_ip: TrustedProxies,
}

impl IpRestrictionLayer {
    /// A layer with no rules (everything passes) that trusts no proxy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a network to the allow list; with any allow network, addresses
    /// outside all of them are refused.
    ///
    /// Default: none (all addresses allowed unless denied).
    pub fn allow(mut self, network: IpNet) -> Self {
        self.allow.push(network);
        self
    }

    /// Adds a network to the deny list; deny wins over allow.
    ///
    /// Default: none.
    pub fn deny(mut self, network: IpNet) -> Self {
        self.deny.push(network);
        self
    }

    /// How the client address is resolved: which proxies' forwarding
    /// header is believed.
    ///
    /// Default: no trusted proxy, the socket peer only.
    pub fn client_ip(mut self, client_ip: TrustedProxies) -> Self {
        self.client_ip = client_ip;
        self
    }

    /// The layer for a route's `ip_restriction` section of the gateway
    /// config, with the config's top-level `trusted_proxies`.
    #[cfg(feature = "config")]
    pub fn from_config(
        config: &crate::config::IpRestriction,
        trusted_proxies: &[crate::config::Cidr],
    ) -> Self {
        Self {
            allow: config.allow.clone(),
            deny: config.deny.clone(),
            client_ip: TrustedProxies::new(trusted_proxies.iter().copied()),
        }
    }
}

impl<S> Layer<S> for IpRestrictionLayer {
    type Service = IpRestriction<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IpRestriction {
            inner,
            rules: Arc::new(Rules {
                allow: self.allow.clone(),
                deny: self.deny.clone(),
            }),
            client_ip: self.client_ip.clone(),
        }
    }
}

#[derive(Debug)]
struct Rules {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl Rules {
    fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    fn admits(&self, ip: IpAddr) -> bool {
        !self.deny.iter().any(|net| net.contains(ip))
            && (self.allow.is_empty() || self.allow.iter().any(|net| net.contains(ip)))
    }
}

/// The service of an [`IpRestrictionLayer`].
///
/// Clones share the rules behind an `Arc`.
#[derive(Debug, Clone)]
pub struct IpRestriction<S> {
    inner: S,
    rules: Arc<Rules>,
    client_ip: TrustedProxies,
}

impl<S> IpRestriction<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for IpRestriction<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if !self.rules.is_empty() {
            let admitted = self
                .client_ip
                .client_ip(request.headers(), request.extensions())
                .is_some_and(|ip| self.rules.admits(ip));
            if !admitted {
                return ResponseFuture::refused(
                    Rejection::new(RejectionKind::Forbidden)
                        .with_detail("the client address is not allowed")
                        .into_layer_response_for(is_grpc(request.headers())),
                );
            }
        }
        ResponseFuture::inner(self.inner.call(request))
    }
}
