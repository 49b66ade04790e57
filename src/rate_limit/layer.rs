use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tower_layer::Layer;

use super::clock::Clock;
use super::key::KeyBy;
use super::quota::Verdict;
use super::quota::{Gcra, Quota};
use super::service::RateLimit;
use super::store::{Admission, LocalStore};
use crate::net::{IpNet, TrustedProxies};

/// The default bound on keys held by the local backend.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// The default interval between sweeps of stale keys.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Limits the rate of requests per key, answering `429` past a quota.
///
/// The counters live in the layer: every service it builds, and every
/// clone of those (one per connection in hyper), shares them. A builder
/// method called after the layer built a service starts a new set of
/// counters for the layers it returns. See the [module docs](super).
#[derive(Clone, Debug)]
#[must_use]
pub struct RateLimitLayer {
    settings: Settings,
    shared: Arc<OnceLock<Arc<Limiter>>>,
}

#[derive(Clone, Debug)]
struct Settings {
    key_by: KeyBy,
    trusted_proxies: TrustedProxies,
    quotas: Vec<Quota>,
    tiers: Vec<(Arc<str>, Vec<Quota>)>,
    routes: Vec<(Arc<str>, Vec<Quota>)>,
    exempt_consumers: HashSet<Arc<str>>,
    exempt_networks: Vec<IpNet>,
    max_in_flight: Option<u32>,
    legacy_headers: bool,
    max_keys: usize,
    sweep_interval: Duration,
    clock: Clock,
}

/// The outcome of [`RateLimitLayer::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Not limited: exempt, or no quota applies.
    Unlimited,
    /// Allowed and charged to every quota.
    Allowed {
        /// Requests left of the quota closest to exhaustion.
        remaining: u64,
        /// Time until that quota's whole burst is available again.
        reset: Duration,
    },
    /// Refused; nothing was charged.
    Refused {
        /// Time until every quota allows the request.
        retry_after: Duration,
    },
}

/// What every service of a layer shares.
#[derive(Debug)]
pub(crate) struct Limiter {
    pub(crate) key_by: KeyBy,
    pub(crate) trusted_proxies: TrustedProxies,
    /// Quota sets: 0 is the default, then tiers, then routes.
    pub(crate) policies: Vec<Arc<[Gcra]>>,
    /// Each quota set's name (`default`, `tier:pro`, `route:login`), for
    /// keys shared with other instances.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) policy_names: Vec<Arc<str>>,
    pub(crate) tiers: HashMap<Arc<str>, u32>,
    pub(crate) routes: HashMap<Arc<str>, u32>,
    pub(crate) exempt_consumers: HashSet<Arc<str>>,
    /// Whether tiers or exemptions need the [`ConsumerIdentity`](crate::identity::ConsumerIdentity).
    pub(crate) reads_consumer: bool,
    /// Keyed by client IP alone with the default quotas, nothing exempt
    /// and no route override: the common case, planned without the
    /// general walk.
    pub(crate) by_client_ip_only: bool,
    pub(crate) exempt_networks: Vec<IpNet>,
    pub(crate) max_in_flight: Option<u32>,
    pub(crate) legacy_headers: bool,
    pub(crate) store: Arc<LocalStore>,
}

impl RateLimitLayer {
    /// A limiter keyed by client IP enforcing every one of `quotas`. With
    /// no quota (and no tier or route that has some), requests are not
    /// limited.
    pub fn new<I: IntoIterator<Item = Quota>>(quotas: I) -> Self {
        Self {
            settings: Settings {
                key_by: KeyBy::ClientIp,
                trusted_proxies: TrustedProxies::default(),
                quotas: quotas.into_iter().collect(),
                tiers: Vec::new(),
                routes: Vec::new(),
                exempt_consumers: HashSet::new(),
                exempt_networks: Vec::new(),
                max_in_flight: None,
                legacy_headers: false,
                max_keys: DEFAULT_MAX_KEYS,
                sweep_interval: DEFAULT_SWEEP_INTERVAL,
                clock: Clock::default(),
            },
            shared: Arc::default(),
        }
    }

    /// What the limits are counted per.
    ///
    /// Default: [`KeyBy::ClientIp`].
    pub fn key_by(self, key_by: KeyBy) -> Self {
        self.configured(|s| s.key_by = key_by)
    }

    /// How the client IP is found: which proxies' forwarding header is
    /// believed (see [`crate::net`]).
    ///
    /// Default: the socket peer, no proxy trusted.
    pub fn client_ip(self, trusted_proxies: TrustedProxies) -> Self {
        self.configured(|s| s.trusted_proxies = trusted_proxies)
    }

    /// The quotas of consumers of `tier` ([`ConsumerIdentity::tier`](crate::identity::ConsumerIdentity::tier)),
    /// replacing the default quotas for them. A tier with no quota is not
    /// limited. Setting a tier twice replaces it.
    ///
    /// Default: no tier; every consumer gets the default quotas.
    pub fn tier<I: IntoIterator<Item = Quota>>(self, tier: &str, quotas: I) -> Self {
        let quotas: Vec<Quota> = quotas.into_iter().collect();
        self.configured(|s| {
            s.tiers.retain(|(name, _)| &**name != tier);
            s.tiers.push((Arc::from(tier), quotas));
        })
    }

    /// The quotas of requests on `route` ([`RouteName`](crate::identity::RouteName)),
    /// replacing the default and tier quotas there; counted apart from
    /// other routes. Setting a route twice replaces it.
    ///
    /// Default: none.
    pub fn route<I: IntoIterator<Item = Quota>>(self, route: &str, quotas: I) -> Self {
        let quotas: Vec<Quota> = quotas.into_iter().collect();
        self.configured(|s| {
            s.routes.retain(|(name, _)| &**name != route);
            s.routes.push((Arc::from(route), quotas));
        })
    }

    /// Never limits the consumer named `name`.
    ///
    /// Default: nobody is exempt.
    pub fn exempt_consumer(self, name: &str) -> Self {
        self.configured(|s| {
            s.exempt_consumers.insert(Arc::from(name));
        })
    }

    /// Never limits clients whose IP is in `network` (health checkers,
    /// internal callers).
    ///
    /// Default: nobody is exempt.
    pub fn exempt_network(self, network: IpNet) -> Self {
        self.configured(|s| s.exempt_networks.push(network))
    }

    /// Sheds load: at most `max` requests of one key in flight at once
    /// (at least 1); past it, `503` with a
    /// [`Overloaded`](crate::error::RejectionKind::Overloaded) problem at
    /// once, without queueing and without charging a quota.
    ///
    /// Default: unlimited.
    pub fn max_in_flight(self, max: u32) -> Self {
        self.configured(|s| s.max_in_flight = Some(max.max(1)))
    }

    /// Also sends the legacy `X-RateLimit-Limit`, `X-RateLimit-Remaining`
    /// and `X-RateLimit-Reset` (seconds) headers.
    ///
    /// Default: `false`.
    pub fn legacy_headers(self, on: bool) -> Self {
        self.configured(|s| s.legacy_headers = on)
    }

    /// The most keys held (at least 1). Past it, a new key makes room by
    /// forgetting the key nearest to fully replenished among a sample of 16
    /// (a stale one when the sample has one; else that key may get its
    /// burst again early). A key costs about 95 to 185 bytes with up to
    /// three quotas (held in the entry, hash-table slack included; more
    /// quotas add a small allocation), plus its text for header, consumer
    /// or composite keys: 100 000 IP keys stay under 19 MB.
    ///
    /// Default: [`DEFAULT_MAX_KEYS`] (100 000).
    pub fn max_keys(self, max: usize) -> Self {
        self.configured(|s| s.max_keys = max.max(1))
    }

    /// How often each shard of the key map is swept of stale keys (keys
    /// whose quotas are all replenished and with nothing in flight, which
    /// hold no information). A shard is swept by the first new key after
    /// the interval; [`sweep`](Self::sweep) sweeps every shard at once.
    ///
    /// Default: [`DEFAULT_SWEEP_INTERVAL`] (10 s).
    pub fn sweep_interval(self, every: Duration) -> Self {
        self.configured(|s| s.sweep_interval = every)
    }

    /// The clock the local backend measures time with: [`Clock::Tokio`]
    /// for tests under paused tokio time.
    ///
    /// Default: [`Clock::Monotonic`].
    pub fn clock(self, clock: Clock) -> Self {
        self.configured(|s| s.clock = clock)
    }

    /// How many keys the local backend holds now.
    #[must_use]
    pub fn key_count(&self) -> usize {
        self.shared.get().map_or(0, |l| l.store.len())
    }

    /// The most keys the local backend holds (the [`max_keys`](Self::max_keys)
    /// bound rounded down to a multiple of the shard count).
    #[must_use]
    pub fn key_capacity(&self) -> usize {
        self.limiter().store.capacity()
    }

    /// Checks and charges one request without calling a service: for
    /// limits on something other than a request/response exchange, such
    /// as messages on a WebSocket or a gRPC stream. Uses the layer's keys,
    /// tiers, routes, exemptions and counters; ignores
    /// [`max_in_flight`](Self::max_in_flight). Inserts the resolved
    /// [`ClientIp`](crate::net::ClientIp) into the request.
    ///
    /// ```
    /// use meshgate::rate_limit::{Decision, KeyBy, Quota, RateLimitLayer};
    ///
    /// let layer = RateLimitLayer::new([Quota::per_second(1)]).key_by(KeyBy::Global);
    /// let mut request = http::Request::new(());
    /// assert!(matches!(layer.check(&mut request), Decision::Allowed { remaining: 0, .. }));
    /// assert!(matches!(layer.check(&mut request), Decision::Refused { .. }));
    /// ```
    pub fn check<B>(&self, request: &mut http::Request<B>) -> Decision {
        let limiter = self.shared.get_or_init(|| Arc::new(self.settings.build()));
        let Some((policy, key)) = limiter.plan(request) else {
            return Decision::Unlimited;
        };
        let quotas = &limiter.policies[policy as usize];
        if quotas.is_empty() {
            return Decision::Unlimited;
        }
        let key = limiter.store.key(policy, key);
        match limiter.store.acquire(&key, quotas, None) {
            Admission::Checked(Verdict::Allowed(Some(state))) => Decision::Allowed {
                remaining: state.remaining,
                reset: Duration::from_nanos(state.reset),
            },
            Admission::Checked(Verdict::Refused { retry_after, .. }) => Decision::Refused {
                retry_after: Duration::from_nanos(retry_after),
            },
            // Non-empty quotas always give a state; no in-flight bound here.
            Admission::Checked(Verdict::Allowed(None)) | Admission::Overloaded => {
                Decision::Unlimited
            }
        }
    }

    /// Drops every stale key now (e.g. from a periodic task).
    pub fn sweep(&self) {
        if let Some(limiter) = self.shared.get() {
            limiter.store.sweep();
        }
    }

    fn configured(mut self, change: impl FnOnce(&mut Settings)) -> Self {
        change(&mut self.settings);
        self.shared = Arc::default();
        self
    }

    pub(crate) fn limiter(&self) -> Arc<Limiter> {
        Arc::clone(self.shared.get_or_init(|| Arc::new(self.settings.build())))
    }
}

impl Settings {
    fn build(&self) -> Limiter {
        let compile =
            |quotas: &[Quota]| -> Arc<[Gcra]> { quotas.iter().map(Quota::compile).collect() };
        // Policy ids are indices into `policies`, made together here.
        let mut policies = vec![compile(&self.quotas)];
        let mut policy_names: Vec<Arc<str>> = vec![Arc::from("default")];
        let mut tiers = HashMap::new();
        for (name, quotas) in &self.tiers {
            tiers.insert(Arc::clone(name), policies.len() as u32);
            policies.push(compile(quotas));
            policy_names.push(Arc::from(format!("tier:{name}")));
        }
        let mut routes = HashMap::new();
        for (name, quotas) in &self.routes {
            routes.insert(Arc::clone(name), policies.len() as u32);
            policies.push(compile(quotas));
            policy_names.push(Arc::from(format!("route:{name}")));
        }
        Limiter {
            key_by: self.key_by.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
            policies,
            policy_names,
            tiers,
            routes,
            exempt_consumers: self.exempt_consumers.clone(),
            reads_consumer: !self.tiers.is_empty() || !self.exempt_consumers.is_empty(),
            by_client_ip_only: self.key_by == KeyBy::ClientIp
                && self.tiers.is_empty()
                && self.exempt_consumers.is_empty()
                && self.exempt_networks.is_empty()
                && self.routes.is_empty(),
            exempt_networks: self.exempt_networks.clone(),
            max_in_flight: self.max_in_flight,
            legacy_headers: self.legacy_headers,
            store: Arc::new(LocalStore::new(
                self.max_keys,
                self.sweep_interval,
                self.clock,
            )),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.limiter())
    }
}
