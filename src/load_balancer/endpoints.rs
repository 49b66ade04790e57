//! Endpoint sets, how they change at run time, and DNS discovery.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::LoadBalancerError;
use super::balancer::Balancer;
use super::endpoint::{Endpoint, EndpointState, MAX_WEIGHT};
use super::hash::Ring;
use super::stats::{EndpointSnapshot, EndpointStats};
use super::strategy::Picker;

/// One immutable generation of the endpoint set, swapped whole on update.
#[derive(Debug)]
pub(crate) struct EndpointSet {
    pub(crate) endpoints: Vec<Arc<EndpointState>>,
    /// Running sums of the weights, for weighted random choice.
    pub(crate) cumulative: Vec<u64>,
    pub(crate) total_weight: u64,
    /// Whether all weights are equal.
    pub(crate) uniform: bool,
    /// Smooth weighted round robin's current weights, by set index.
    pub(crate) wrr: Option<Mutex<Vec<i64>>>,
    pub(crate) ring: Option<Ring>,
}

/// What building a set needs from the balancer.
pub(crate) struct SetContext<'a> {
    pub(crate) picker: &'a Picker,
    pub(crate) flags: &'a Arc<AtomicUsize>,
    pub(crate) default_rtt_ns: f64,
    pub(crate) decay_ns: f64,
    pub(crate) now: u64,
}

impl EndpointSet {
    /// A set of `endpoints`, keeping the statistics of those already in
    /// `previous`. Duplicate targets are an error.
    pub(crate) fn build(
        endpoints: Vec<Endpoint>,
        previous: Option<&Self>,
        cx: &SetContext<'_>,
    ) -> Result<Self, LoadBalancerError> {
        let known: HashMap<(&Scheme, &Authority), &Arc<EndpointStats>> = previous
            .map(|set| {
                set.endpoints
                    .iter()
                    .map(|e| ((e.endpoint.scheme(), e.endpoint.authority()), &e.stats))
                    .collect()
            })
            .unwrap_or_default();
        let mut seen = HashMap::with_capacity(endpoints.len());
        let mut states = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let key = (endpoint.scheme().clone(), endpoint.authority().clone());
            if seen.insert(key, ()).is_some() {
                return Err(LoadBalancerError::DuplicateEndpoint(endpoint.to_string()));
            }
            let stats = known
                .get(&(endpoint.scheme(), endpoint.authority()))
                .map(|stats| Arc::clone(stats))
                .unwrap_or_else(|| {
                    Arc::new(EndpointStats::new(
                        Arc::clone(cx.flags),
                        cx.default_rtt_ns,
                        cx.decay_ns,
                        cx.now,
                    ))
                });
            states.push(Arc::new(EndpointState { endpoint, stats }));
        }
        let mut cumulative = Vec::with_capacity(states.len());
        let mut total_weight = 0u64;
        for state in &states {
            total_weight += u64::from(state.endpoint.weight().clamp(1, MAX_WEIGHT));
            cumulative.push(total_weight);
        }
        let uniform = states
            .windows(2)
            .all(|w| w[0].endpoint.weight() == w[1].endpoint.weight());
        Ok(Self {
            wrr: cx
                .picker
                .needs_wrr()
                .then(|| Mutex::new(vec![0; states.len()])),
            ring: cx
                .picker
                .ring_points()
                .filter(|_| !states.is_empty())
                .map(|points| Ring::new(&states, points)),
            endpoints: states,
            cumulative,
            total_weight,
            uniform,
        })
    }
}

/// Changes a balancer's endpoint set at run time.
///
/// An update swaps the whole set at once: requests already sent keep their
/// endpoint (a removed endpoint finishes its requests in flight), endpoints
/// that stay keep their statistics, health and ejection state, and new
/// requests see the new set. Cloning the handle is cheap; it keeps the
/// balancer (and its health-check task) alive.
#[derive(Clone)]
pub struct EndpointsHandle {
    pub(crate) balancer: Arc<Balancer>,
}

impl std::fmt::Debug for EndpointsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointsHandle")
            .field("endpoints", &self.endpoints())
            .finish()
    }
}

impl EndpointsHandle {
    /// Replaces the set. More endpoints than the balancer's bound, or the
    /// same target twice, is an error and leaves the set unchanged. An
    /// empty set is allowed: requests are then answered 503.
    pub fn update(
        &self,
        endpoints: impl IntoIterator<Item = Endpoint>,
    ) -> Result<(), LoadBalancerError> {
        self.balancer.replace(endpoints.into_iter().collect())
    }

    /// Adds `endpoint` to the set, or changes its weight when the set has
    /// it already. Past the balancer's bound it is an error and the set is
    /// unchanged.
    pub fn add(&self, endpoint: Endpoint) -> Result<(), LoadBalancerError> {
        self.balancer.modify(|endpoints| {
            match endpoints.iter_mut().find(|e| e.same_target(&endpoint)) {
                Some(existing) => *existing = endpoint,
                None => endpoints.push(endpoint),
            }
        })
    }

    /// Removes the endpoint with `endpoint`'s scheme and authority (any
    /// weight); its requests in flight finish. Returns whether it was in
    /// the set.
    pub fn remove(&self, endpoint: &Endpoint) -> bool {
        let mut removed = false;
        // Removing cannot exceed the bound or duplicate a target.
        let _ = self.balancer.modify(|endpoints| {
            let before = endpoints.len();
            endpoints.retain(|e| !e.same_target(endpoint));
            removed = endpoints.len() != before;
        });
        removed
    }

    /// The endpoints of the current set.
    #[must_use]
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.balancer.endpoints()
    }

    /// Statistics of the current set's endpoints.
    #[must_use]
    pub fn snapshot(&self) -> Vec<EndpointSnapshot> {
        self.balancer.snapshot()
    }
}

/// Endpoints from DNS: every address `host` resolves to, re-resolved at an
/// interval (with `tokio::net::lookup_host`, the system resolver, unless
/// [`resolver`](Self::resolver) gives another).
///
/// Until the first resolution succeeds the set is empty and requests are
/// answered 503. A failed or empty resolution keeps the last good set (and
/// logs a warning); endpoints that stay keep their statistics. At most the
/// balancer's `max_endpoints` addresses are kept.
#[derive(Clone)]
pub struct DnsDiscovery {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) scheme: Scheme,
    pub(crate) interval: Duration,
    pub(crate) weight: u32,
    resolver: Option<Resolver>,
}

/// A boxed resolution, as a custom resolver returns it.
pub type Resolution = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;

type Resolver = Arc<dyn Fn(&str, u16) -> Resolution + Send + Sync>;

impl std::fmt::Debug for DnsDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsDiscovery")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("scheme", &self.scheme)
            .field("interval", &self.interval)
            .field("weight", &self.weight)
            .field("custom_resolver", &self.resolver.is_some())
            .finish()
    }
}

impl DnsDiscovery {
    /// Resolves `host`, sending to `port` of each address.
    #[must_use]
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            scheme: Scheme::HTTP,
            interval: Duration::from_secs(30),
            weight: 1,
            resolver: None,
        }
    }

    /// Resolves with `resolve(host, port)` instead of the system resolver
    /// (a DNS client of your choice, a service registry, or a script in
    /// tests).
    #[must_use]
    pub fn resolver<F>(mut self, resolve: F) -> Self
    where
        F: Fn(&str, u16) -> Resolution + Send + Sync + 'static,
    {
        self.resolver = Some(Arc::new(resolve));
        self
    }

    async fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        match &self.resolver {
            Some(resolve) => resolve(&self.host, self.port).await,
            None => Ok(tokio::net::lookup_host((self.host.as_str(), self.port))
                .await?
                .collect()),
        }
    }

    /// The scheme of the resolved endpoints.
    ///
    /// Default: `http`.
    #[must_use]
    pub fn scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// How often to resolve again (at least 1 ms).
    ///
    /// Default: 30 s.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The weight of every resolved endpoint.
    ///
    /// Default: 1.
    #[must_use]
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight.clamp(1, MAX_WEIGHT);
        self
    }
}

/// Resolves at every tick until the balancer is gone or shut down.
pub(crate) async fn run_dns(
    balancer: Weak<Balancer>,
    dns: DnsDiscovery,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(dns.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = ticker.tick() => {}
        }
        let resolved = tokio::select! {
            biased;
            _ = stop.changed() => return,
            resolved = dns.resolve() => resolved,
        };
        let addrs = match resolved {
            Ok(addrs) => addrs,
            Err(error) => {
                tracing::warn!(target: "meshgate::load_balancer", host = %dns.host, %error, "DNS resolution failed; keeping the last endpoints");
                continue;
            }
        };
        let Some(balancer) = balancer.upgrade() else {
            return;
        };
        let mut endpoints: Vec<Endpoint> = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let endpoint = Endpoint::from_addr(addr)
                .with_scheme(dns.scheme.clone())
                .with_weight(dns.weight);
            if !endpoints.iter().any(|e| e.same_target(&endpoint)) {
                endpoints.push(endpoint);
            }
        }
        if endpoints.is_empty() {
            tracing::warn!(target: "meshgate::load_balancer", host = %dns.host, "DNS resolved no address; keeping the last endpoints");
            continue;
        }
        if endpoints.len() > balancer.max_endpoints() {
            tracing::warn!(target: "meshgate::load_balancer", host = %dns.host, resolved = endpoints.len(), kept = balancer.max_endpoints(), "DNS resolved more addresses than the endpoint bound");
            endpoints.truncate(balancer.max_endpoints());
        }
        let mut current = balancer.endpoints();
        let mut next = endpoints.clone();
        let order = |e: &Endpoint| e.to_string();
        current.sort_by_key(order);
        next.sort_by_key(order);
        if current != next {
            if let Err(error) = balancer.replace(endpoints) {
                tracing::warn!(target: "meshgate::load_balancer", host = %dns.host, %error, "could not apply the resolved endpoints");
            } else {
                tracing::info!(target: "meshgate::load_balancer", host = %dns.host, endpoints = next.len(), "endpoints changed");
            }
        }
    }
}

/// Applies every endpoint set sent on `updates` until the sender is gone,
/// the balancer is gone, or it is shut down. A set that cannot be used is
/// logged and skipped; the current set stays.
pub(crate) async fn run_follow(
    balancer: Weak<Balancer>,
    mut updates: watch::Receiver<Vec<Endpoint>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            changed = updates.changed() => if changed.is_err() {
                return;
            },
        }
        let endpoints = updates.borrow_and_update().clone();
        let Some(balancer) = balancer.upgrade() else {
            return;
        };
        if let Err(error) = balancer.replace(endpoints) {
            tracing::warn!(target: "meshgate::load_balancer", %error, "ignored an endpoint update");
        }
    }
}
