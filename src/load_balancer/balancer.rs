//! The state every clone of a balancer shares: the endpoint set, the
//! strategy, and the background tasks.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::uri::PathAndQuery;
use http::{Extensions, HeaderMap};
use tokio::sync::watch;
use tokio::time::Instant;

use super::LoadBalancerError;
use super::endpoint::{Endpoint, EndpointState};
use super::endpoints::{DnsDiscovery, EndpointSet, SetContext};
use super::health::{self, HealthCheck};
use super::outlier::{self, Observed, OutlierDetection};
use super::random::Rng;
use super::stats::{Clock, EndpointSnapshot};
use super::strategy::{All, PickContext, Picker, Subset};

/// Settings fixed when the balancer is built.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) picker: Picker,
    pub(crate) seed: u64,
    pub(crate) decay: Duration,
    pub(crate) default_rtt: Duration,
    pub(crate) panic_threshold: u8,
    pub(crate) max_endpoints: usize,
    pub(crate) outlier: Option<OutlierDetection>,
    pub(crate) health: Option<(HealthCheck, PathAndQuery)>,
    pub(crate) dns: Option<DnsDiscovery>,
    pub(crate) follow: Option<watch::Receiver<Vec<Endpoint>>>,
    pub(crate) tag_requests: bool,
    pub(crate) tag_responses: bool,
}

pub(crate) struct Balancer {
    set: ArcSwap<EndpointSet>,
    picker: Picker,
    rng: Rng,
    clock: Clock,
    /// Raised flags (unhealthy, ejected) across endpoints: while 0, a pick
    /// checks nothing and reads no clock.
    flags: Arc<AtomicUsize>,
    decay_ns: f64,
    default_rtt_ns: f64,
    panic_threshold: u8,
    max_endpoints: usize,
    outlier: Option<OutlierDetection>,
    ejection: Mutex<()>,
    updates: Mutex<()>,
    health: Option<(HealthCheck, PathAndQuery)>,
    dns: Option<DnsDiscovery>,
    follow: Option<watch::Receiver<Vec<Endpoint>>>,
    started: AtomicBool,
    stop: watch::Sender<bool>,
    /// Whether requests carry the [`SelectedEndpoint`](super::SelectedEndpoint).
    pub(crate) tag_requests: bool,
    /// Whether responses carry the [`SelectedEndpoint`](super::SelectedEndpoint).
    pub(crate) tag_responses: bool,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer")
            .field("endpoints", &self.endpoints())
            .field("strategy", &self.picker)
            .field("panic_threshold", &self.panic_threshold)
            .field("max_endpoints", &self.max_endpoints)
            .field("outlier", &self.outlier)
            .field("health", &self.health.as_ref().map(|(config, _)| config))
            .field("dns", &self.dns)
            .field("follows_a_channel", &self.follow.is_some())
            .finish_non_exhaustive()
    }
}

impl Balancer {
    pub(crate) fn new(
        settings: Settings,
        endpoints: Vec<Endpoint>,
    ) -> Result<Self, LoadBalancerError> {
        if endpoints.len() > settings.max_endpoints {
            return Err(LoadBalancerError::TooManyEndpoints {
                max: settings.max_endpoints,
                got: endpoints.len(),
            });
        }
        let clock = Clock::new();
        let flags = Arc::new(AtomicUsize::new(0));
        let default_rtt_ns = settings.default_rtt.as_nanos() as f64;
        // A zero decay would divide by zero: a nanosecond is the floor.
        let decay_ns = (settings.decay.as_nanos() as f64).max(1.0);
        let set = EndpointSet::build(
            endpoints,
            None,
            &SetContext {
                picker: &settings.picker,
                flags: &flags,
                default_rtt_ns,
                decay_ns,
                now: clock.now(),
            },
        )?;
        Ok(Self {
            set: ArcSwap::from_pointee(set),
            picker: settings.picker,
            rng: Rng::new(settings.seed),
            clock,
            flags,
            decay_ns,
            default_rtt_ns,
            panic_threshold: settings.panic_threshold,
            max_endpoints: settings.max_endpoints,
            outlier: settings.outlier,
            ejection: Mutex::new(()),
            updates: Mutex::new(()),
            health: settings.health,
            dns: settings.dns,
            follow: settings.follow,
            started: AtomicBool::new(false),
            stop: watch::Sender::new(false),
            tag_requests: settings.tag_requests,
            tag_responses: settings.tag_responses,
        })
    }

    /// Chooses an endpoint for a request; `None` when no endpoint may take it.
    #[inline]
    pub(crate) fn pick(
        &self,
        headers: &HeaderMap,
        extensions: &Extensions,
    ) -> Option<Arc<EndpointState>> {
        let set = self.set.load();
        let n = set.endpoints.len();
        if n == 0 {
            return None;
        }
        let cx = PickContext {
            rng: &self.rng,
            headers,
            extensions,
        };
        if self.flags.load(Ordering::Acquire) == 0 {
            let i = self.picker.pick(&cx, &set, &All(n));
            return set.endpoints.get(i).cloned();
        }
        // Some endpoint is unhealthy or ejected (perhaps one no longer in
        // the set): choose among those that may take traffic.
        let now = self.clock.now();
        let list: Vec<usize> = (0..n)
            .filter(|&i| set.endpoints[i].stats.is_selectable(now))
            .collect();
        let panic =
            self.panic_threshold > 0 && list.len() * 100 < n * usize::from(self.panic_threshold);
        let i = if panic || list.len() == n {
            self.picker.pick(&cx, &set, &All(n))
        } else if list.is_empty() {
            return None;
        } else {
            self.picker.pick(&cx, &set, &Subset(list))
        };
        set.endpoints.get(i).cloned()
    }

    /// Counts a finished request: errors, latency, outlier detection.
    pub(crate) fn record(&self, state: &EndpointState, observed: Observed, start: Instant) {
        if matches!(observed, Observed::Failure(_)) {
            state.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.record_latency(state, start);
        outlier::observe(self, state, observed);
    }

    /// Folds the time since `start` into the endpoint's latency estimate.
    pub(crate) fn record_latency(&self, state: &EndpointState, start: Instant) {
        // One clock read gives both the latency and the sample's time.
        let end = Instant::now();
        let rtt = end.saturating_duration_since(start).as_nanos();
        state.stats.latency.fold(
            u64::try_from(rtt).unwrap_or(u64::MAX) as f64,
            self.clock.at(end),
            self.decay_ns,
            self.picker.reads_latency(),
        );
    }

    /// Replaces the endpoint set, keeping the state of endpoints that stay.
    pub(crate) fn replace(&self, endpoints: Vec<Endpoint>) -> Result<(), LoadBalancerError> {
        self.modify(|current| *current = endpoints)
    }

    /// Changes the endpoint list of the current set with `change` and
    /// swaps in the result, keeping the state of endpoints that stay.
    pub(crate) fn modify(
        &self,
        change: impl FnOnce(&mut Vec<Endpoint>),
    ) -> Result<(), LoadBalancerError> {
        // Serialised so that two updates cannot both build on the same
        // previous set and drop each other's statistics or changes.
        let _update = self.updates.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = self.set.load_full();
        let mut endpoints: Vec<Endpoint> = previous
            .endpoints
            .iter()
            .map(|e| e.endpoint.clone())
            .collect();
        change(&mut endpoints);
        if endpoints.len() > self.max_endpoints {
            return Err(LoadBalancerError::TooManyEndpoints {
                max: self.max_endpoints,
                got: endpoints.len(),
            });
        }
        let next = EndpointSet::build(
            endpoints,
            Some(&previous),
            &SetContext {
                picker: &self.picker,
                flags: &self.flags,
                default_rtt_ns: self.default_rtt_ns,
                decay_ns: self.decay_ns,
                now: self.clock.now(),
            },
        )?;
        self.set.store(Arc::new(next));
        Ok(())
    }

    pub(crate) fn set(&self) -> Arc<EndpointSet> {
        self.set.load_full()
    }

    pub(crate) fn endpoints(&self) -> Vec<Endpoint> {
        self.set
            .load()
            .endpoints
            .iter()
            .map(|e| e.endpoint.clone())
            .collect()
    }

    pub(crate) fn snapshot(&self) -> Vec<EndpointSnapshot> {
        self.set
            .load()
            .endpoints
            .iter()
            .map(|e| e.stats.snapshot(&e.endpoint, &self.clock))
            .collect()
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    pub(crate) fn outlier(&self) -> Option<&OutlierDetection> {
        self.outlier.as_ref()
    }

    pub(crate) fn ejection_lock(&self) -> &Mutex<()> {
        &self.ejection
    }

    pub(crate) fn max_endpoints(&self) -> usize {
        self.max_endpoints
    }

    /// Spawns the health-check, DNS and update-channel tasks, once, on the current tokio
    /// runtime; without one, a later call tries again.
    #[inline]
    pub(crate) fn ensure_started(self: &Arc<Self>) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        self.start();
    }

    #[cold]
    fn start(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some((config, path)) = &self.health {
            runtime.spawn(health::run(
                Arc::downgrade(self),
                config.clone(),
                path.clone(),
                self.stop.subscribe(),
            ));
        }
        if let Some(dns) = &self.dns {
            runtime.spawn(super::endpoints::run_dns(
                Arc::downgrade(self),
                dns.clone(),
                self.stop.subscribe(),
            ));
        }
        if let Some(updates) = &self.follow {
            runtime.spawn(super::endpoints::run_follow(
                Arc::downgrade(self),
                updates.clone(),
                self.stop.subscribe(),
            ));
        }
    }

    /// Stops the background tasks for good.
    pub(crate) fn shutdown(&self) {
        self.started.store(true, Ordering::Release);
        self.stop.send_replace(true);
    }
}
