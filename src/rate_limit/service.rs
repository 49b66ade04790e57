use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::future::ResponseFuture;
use super::headers::HeaderInfo;
use super::key::{IpSource, Key};
use super::layer::Limiter;
use super::quota::Verdict;
use super::store::{Admission, InFlight};
use crate::body::ResponseBody;
use crate::identity::{ConsumerIdentity, RouteName};
use crate::net::ClientIp;
use crate::peer::PeerAddr;

/// The service of [`RateLimitLayer`](super::RateLimitLayer).
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<Limiter>,
}

impl<S> RateLimit<S> {
    pub(crate) fn new(inner: S, limiter: Arc<Limiter>) -> Self {
        Self { inner, limiter }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl Limiter {
    /// What limits a request: `None` when it is not limited (exempt, or no
    /// quota and no in-flight bound), else its quota set and key. Inserts
    /// the [`ClientIp`] it resolved into the request.
    #[inline(always)]
    pub(crate) fn plan<B>(&self, request: &mut Request<B>) -> Option<(u32, Key)> {
        if self.by_client_ip_only {
            // What `plan_any` does for this configuration, with one
            // extension look-up when the client IP is known.
            if self.policies[0].is_empty() && self.max_in_flight.is_none() {
                return None;
            }
            if let Some(given) = request.extensions().get::<ClientIp>() {
                return Some((0, Key::Ip(given.0)));
            }
            return Some((0, self.resolve_client_ip(request)));
        }
        self.plan_any(request)
    }

    /// The key of a request keyed by client IP that carries no
    /// [`ClientIp`] yet; inserts the one it resolves.
    fn resolve_client_ip<B>(&self, request: &mut Request<B>) -> Key {
        let ip = request
            .extensions()
            .get::<PeerAddr>()
            .and_then(|peer| self.trusted_proxies.resolve(peer.0.ip(), request.headers()));
        match ip {
            Some(addr) => {
                request.extensions_mut().insert(ClientIp(addr));
                Key::Ip(addr)
            }
            None => Key::UnknownClient,
        }
    }

    /// [`plan`](Self::plan) for any configuration.
    #[inline(never)]
    fn plan_any<B>(&self, request: &mut Request<B>) -> Option<(u32, Key)> {
        let ip = IpSource::new(&self.trusted_proxies);
        let consumer = if self.reads_consumer {
            request.extensions().get::<ConsumerIdentity>()
        } else {
            None
        };
        if let Some(consumer) = consumer
            && self.exempt_consumers.contains(&consumer.name)
        {
            return None;
        }
        if !self.exempt_networks.is_empty()
            && let Some(addr) = ip.ip(request)
            && self.exempt_networks.iter().any(|n| n.contains(addr))
        {
            return None;
        }
        // A route override beats a tier, which beats the default quotas.
        let route_policy = if self.routes.is_empty() {
            None
        } else {
            request
                .extensions()
                .get::<RouteName>()
                .and_then(|r| self.routes.get(&r.0))
                .copied()
        };
        let tier_policy = || {
            consumer
                .and_then(|c| c.tier.as_ref())
                .and_then(|t| self.tiers.get(t).copied())
        };
        let policy = route_policy.or_else(tier_policy).unwrap_or(0);
        if self.policies[policy as usize].is_empty() && self.max_in_flight.is_none() {
            return None;
        }
        let key = self.key_by.key(request, &ip);
        if let Some(addr) = ip.newly_resolved() {
            request.extensions_mut().insert(ClientIp(addr));
        }
        Some((policy, key))
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let limiter = &*self.limiter;
        let Some((policy, key)) = limiter.plan(&mut request) else {
            return ResponseFuture::passthrough(self.inner.call(request));
        };
        let quotas = &limiter.policies[policy as usize];
        let key = limiter.store.key(policy, key);
        let info = |state| HeaderInfo {
            quotas: Arc::clone(quotas),
            state,
            legacy: limiter.legacy_headers,
        };
        match limiter.store.acquire(&key, quotas, limiter.max_in_flight) {
            Admission::Checked(Verdict::Allowed(state)) => {
                let permit = limiter
                    .max_in_flight
                    .map(|_| InFlight::new(Arc::clone(&limiter.store), key));
                ResponseFuture::allowed(self.inner.call(request), state.map(info), permit)
            }
            Admission::Checked(Verdict::Refused { retry_after, state }) => ResponseFuture::refused(
                info(state),
                retry_after,
                crate::error::is_grpc(request.headers()),
            ),
            Admission::Overloaded => {
                ResponseFuture::overloaded(crate::error::is_grpc(request.headers()))
            }
        }
    }
}
