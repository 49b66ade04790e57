use std::sync::Arc;
use std::time::Duration;

use http::Request;
use tokio::sync::watch;
use tower_layer::Layer;

use super::balancer::{Balancer, Settings};
use super::endpoint::{Endpoint, SelectedEndpoint};
use super::endpoints::{DnsDiscovery, EndpointsHandle};
use super::health::HealthCheck;
use super::outlier::OutlierDetection;
use super::stats::EndpointSnapshot;
use super::strategy::{Picker, Strategy};
use super::{LoadBalancer, LoadBalancerError};

/// The default bound on the number of endpoints in a set.
pub const DEFAULT_MAX_ENDPOINTS: usize = 1024;

/// Spreads requests over a set of endpoints.
///
/// The balancer (endpoint set, statistics, strategy state, background
/// tasks) is created with the layer: every service it builds, every clone of
/// those and every [`EndpointsHandle`] share it. See the
/// [module docs](crate::load_balancer).
#[derive(Clone)]
#[must_use]
pub struct LoadBalancerLayer {
    balancer: Arc<Balancer>,
}

impl std::fmt::Debug for LoadBalancerLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadBalancerLayer")
            .field("balancer", &self.balancer)
            .finish()
    }
}

impl LoadBalancerLayer {
    /// A round-robin balancer over a fixed list of endpoints; see
    /// [`builder`](Self::builder) for the rest.
    pub fn new(endpoints: impl IntoIterator<Item = Endpoint>) -> Result<Self, LoadBalancerError> {
        Self::builder().endpoints(endpoints).build()
    }

    /// A builder with the defaults: no endpoints, round robin, no health
    /// checks, no outlier detection, no panic threshold, at most
    /// [`DEFAULT_MAX_ENDPOINTS`] endpoints.
    pub fn builder() -> LoadBalancerBuilder {
        LoadBalancerBuilder::default()
    }

    /// A handle that changes the endpoint set at run time.
    #[must_use]
    pub fn handle(&self) -> EndpointsHandle {
        EndpointsHandle {
            balancer: Arc::clone(&self.balancer),
        }
    }

    /// The endpoints of the current set.
    #[must_use]
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.balancer.endpoints()
    }

    /// Statistics of the current set's endpoints, for metrics and admin
    /// pages.
    #[must_use]
    pub fn snapshot(&self) -> Vec<EndpointSnapshot> {
        self.balancer.snapshot()
    }

    /// Chooses an endpoint for `request` as a call would (advancing round
    /// robin), without sending anything or counting a request; `None` when
    /// no endpoint may take it.
    #[must_use]
    pub fn pick<B>(&self, request: &Request<B>) -> Option<SelectedEndpoint> {
        self.balancer
            .pick(request.headers(), request.extensions())
            .map(SelectedEndpoint)
    }

    /// Stops the health-check and DNS tasks now rather than when the last
    /// handle is dropped. The set stays as it is and keeps serving.
    pub fn shutdown(&self) {
        self.balancer.shutdown();
    }
}

impl<S> Layer<S> for LoadBalancerLayer {
    type Service = LoadBalancer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        self.balancer.ensure_started();
        LoadBalancer::new(inner, Arc::clone(&self.balancer))
    }
}

/// Builds a [`LoadBalancerLayer`]; [`build`](Self::build) checks the
/// configuration.
#[derive(Debug, Clone)]
#[must_use]
pub struct LoadBalancerBuilder {
    endpoints: Vec<Endpoint>,
    dns: Option<DnsDiscovery>,
    follow: Option<watch::Receiver<Vec<Endpoint>>>,
    strategy: Strategy,
    health: Option<HealthCheck>,
    outlier: Option<OutlierDetection>,
    panic_threshold: u8,
    max_endpoints: usize,
    seed: Option<u64>,
    tag_requests: bool,
    tag_responses: bool,
}

impl Default for LoadBalancerBuilder {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            dns: None,
            follow: None,
            strategy: Strategy::RoundRobin,
            health: None,
            outlier: None,
            panic_threshold: 0,
            max_endpoints: DEFAULT_MAX_ENDPOINTS,
            seed: None,
            tag_requests: true,
            tag_responses: true,
        }
    }
}

impl LoadBalancerBuilder {
    /// Adds endpoints to the initial set (which an [`EndpointsHandle`] can
    /// replace later).
    pub fn endpoints(mut self, endpoints: impl IntoIterator<Item = Endpoint>) -> Self {
        self.endpoints.extend(endpoints);
        self
    }

    /// Adds one endpoint to the initial set.
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// Takes the endpoints from DNS instead of a list.
    pub fn dns(mut self, dns: DnsDiscovery) -> Self {
        self.dns = Some(dns);
        self
    }

    /// Takes the endpoints from a channel: the set is the channel's current
    /// value when the balancer is built, then every value sent replaces it
    /// (as [`EndpointsHandle::update`] does; a set that cannot be used is
    /// logged and skipped). The balancer follows the channel on a task of
    /// its own, like its health checks, until the sender is dropped.
    pub fn follow(mut self, updates: watch::Receiver<Vec<Endpoint>>) -> Self {
        self.follow = Some(updates);
        self
    }

    /// How to choose an endpoint.
    ///
    /// Default: [`Strategy::RoundRobin`].
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Turns on active health checks.
    ///
    /// Default: off.
    pub fn health_check(mut self, health: HealthCheck) -> Self {
        self.health = Some(health);
        self
    }

    /// Turns on passive outlier detection.
    ///
    /// Default: off.
    pub fn outlier_detection(mut self, outlier: OutlierDetection) -> Self {
        self.outlier = Some(outlier);
        self
    }

    /// When the share of endpoints that may take traffic (healthy and not
    /// ejected) falls below this percent, traffic goes to all endpoints
    /// instead (Envoy's panic threshold, Istio's `minHealthPercent`):
    /// better some requests to a sick endpoint than all of the load on the
    /// few left. Clamped to 100; 0 turns it off, and then a set with no
    /// endpoint to take traffic answers 503.
    ///
    /// Default: 0 (off), as Istio.
    pub fn panic_threshold(mut self, percent: u8) -> Self {
        self.panic_threshold = percent.min(100);
        self
    }

    /// The most endpoints a set may hold (at least 1). A longer list or
    /// update is an error; DNS keeps the first this many addresses.
    ///
    /// Default: [`DEFAULT_MAX_ENDPOINTS`].
    pub fn max_endpoints(mut self, max: usize) -> Self {
        self.max_endpoints = max.max(1);
        self
    }

    /// Seeds the random choices (random, power of two choices), for
    /// reproducible tests.
    ///
    /// Default: a random seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Whether each request handed to the inner service carries the
    /// [`SelectedEndpoint`] in its extensions, for the layers inside the
    /// balancer. Off, a stack where nothing reads it (a proxy needs only the
    /// URI) saves the insert, and dropping it;
    /// [`tag_responses`](Self::tag_responses) is separate.
    ///
    /// Default: on.
    pub fn tag_requests(mut self, on: bool) -> Self {
        self.tag_requests = on;
        self
    }

    /// Whether each response from an endpoint carries the
    /// [`SelectedEndpoint`] in its extensions, for layers outside the
    /// balancer. Off, a stack where nothing reads it saves the insert (and
    /// the response's extension map, often its only entry); the request
    /// still carries it unless [`tag_requests`](Self::tag_requests) is off.
    ///
    /// Default: on.
    pub fn tag_responses(mut self, on: bool) -> Self {
        self.tag_responses = on;
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// Too many endpoints, the same endpoint twice, more than one source of
    /// endpoints (list, DNS, channel), or
    /// a health-check path that is not an absolute path.
    pub fn build(self) -> Result<LoadBalancerLayer, LoadBalancerError> {
        let sources = usize::from(!self.endpoints.is_empty())
            + usize::from(self.dns.is_some())
            + usize::from(self.follow.is_some());
        if sources > 1 {
            return Err(LoadBalancerError::Conflict(
                "endpoints come from one of a list, DNS or a channel",
            ));
        }
        let mut endpoints = self.endpoints;
        let follow = self.follow.map(|mut updates| {
            endpoints = updates.borrow_and_update().clone();
            updates
        });
        let health = match self.health {
            Some(health) => {
                let path = health.validated_path()?;
                Some((health, path))
            }
            None => None,
        };
        let (decay, default_rtt) = match &self.strategy {
            Strategy::PeakEwma { decay, default_rtt } => (*decay, *default_rtt),
            _ => (Duration::from_secs(10), Duration::from_millis(30)),
        };
        let settings = Settings {
            picker: Picker::new(&self.strategy),
            seed: self.seed.unwrap_or_else(|| fastrand::u64(..)),
            decay,
            default_rtt,
            panic_threshold: self.panic_threshold,
            max_endpoints: self.max_endpoints,
            outlier: self.outlier,
            health,
            dns: self.dns,
            follow,
            tag_requests: self.tag_requests,
            tag_responses: self.tag_responses,
        };
        Ok(LoadBalancerLayer {
            balancer: Arc::new(Balancer::new(settings, endpoints)?),
        })
    }
}
