//! Building a [`RateLimitLayer`] from the config model.

use std::collections::BTreeMap;
use std::fmt;

use super::{KeyBy, Quota, RateLimitLayer};
use crate::config::{Cidr, RateLimitBackend, RateLimitPolicy};
use crate::net::TrustedProxies;

/// The policy asks for the `redis` backend: build it with
/// `RateLimitLayer::redis_from_policy` (feature `redis`), which needs a
/// connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedBackend(RateLimitBackend);

impl fmt::Display for UnsupportedBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate-limit backend {:?} needs a connection: use RateLimitLayer::redis_from_policy",
            self.0
        )
    }
}

impl std::error::Error for UnsupportedBackend {}

impl RateLimitLayer {
    /// The layer a route's `rate_limit` policy describes, with the gateway's
    /// `rate_limit_tiers` (used when the policy has `tiers: true`) and
    /// `trusted_proxies`.
    ///
    /// ```
    /// use meshgate::config::{Quota, RateLimitPolicy};
    /// use meshgate::rate_limit::RateLimitLayer;
    ///
    /// let policy = RateLimitPolicy {
    ///     quotas: vec![Quota { limit: 5, per: std::time::Duration::from_secs(60), burst: None }],
    ///     ..RateLimitPolicy::default()
    /// };
    /// let layer = RateLimitLayer::from_policy(&policy, &Default::default(), &[]).unwrap();
    /// # let _ = layer;
    /// ```
    ///
    /// A policy with `backend: redis` is refused with [`UnsupportedBackend`].
    pub fn from_policy(
        policy: &RateLimitPolicy,
        tiers: &BTreeMap<String, Vec<crate::config::Quota>>,
        trusted_proxies: &[Cidr],
    ) -> Result<Self, UnsupportedBackend> {
        if policy.backend != RateLimitBackend::Local {
            return Err(UnsupportedBackend(policy.backend));
        }
        Ok(Self::from_policy_any_backend(
            policy,
            tiers,
            trusted_proxies,
        ))
    }

    /// The Redis-backed layer a policy with `backend: redis` describes, on
    /// `backend` (the connection to the config's top-level `redis`), with
    /// the policy's `on_redis_error`. A policy with `backend: local` gets
    /// Redis too: the caller chose it.
    #[cfg(feature = "redis")]
    pub fn redis_from_policy(
        policy: &RateLimitPolicy,
        tiers: &BTreeMap<String, Vec<crate::config::Quota>>,
        trusted_proxies: &[Cidr],
        backend: super::RedisBackend,
    ) -> super::RedisRateLimitLayer {
        Self::from_policy_any_backend(policy, tiers, trusted_proxies)
            .redis(backend.on_error(policy.on_redis_error.into()))
    }

    fn from_policy_any_backend(
        policy: &RateLimitPolicy,
        tiers: &BTreeMap<String, Vec<crate::config::Quota>>,
        trusted_proxies: &[Cidr],
    ) -> Self {
        let mut layer = RateLimitLayer::new(policy.quotas.iter().map(Quota::from))
            .key_by(KeyBy::from(&policy.key))
            .client_ip(TrustedProxies::new(trusted_proxies.iter().copied()))
            .legacy_headers(policy.legacy_headers);
        if policy.tiers {
            for (name, quotas) in tiers {
                layer = layer.tier(name, quotas.iter().map(Quota::from));
            }
        }
        for name in &policy.exempt {
            layer = layer.exempt_consumer(name);
        }
        if let Some(max) = policy.max_in_flight {
            layer = layer.max_in_flight(max);
        }
        layer
    }
}
