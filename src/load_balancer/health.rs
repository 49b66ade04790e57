//! Active health checks: an HTTP `GET` on a path of every endpoint at an
//! interval, as Kong's active health checks.

use std::ops::RangeInclusive;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderMap, Request, Uri};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::LoadBalancerError;
use super::balancer::Balancer;
use super::endpoint::EndpointState;

/// Settings of active health checks.
///
/// Every `interval` the balancer sends `GET <path>` to each `http` endpoint
/// of its set, `concurrency` at a time, each with its own `timeout`, on a
/// fresh connection (with `User-Agent: meshgate-health-check` and the
/// endpoint as `Host`). A check passes when
/// a response head with an expected status arrives in time; a connect
/// failure, a timeout or another status fails it. After `unhealthy` failed
/// checks in a row an endpoint gets no traffic; after `healthy` passed
/// checks in a row it gets traffic again. Endpoints start healthy, as in
/// Kong. Endpoints with the `https` scheme are not checked (the checker
/// speaks plain HTTP/1.1) and stay healthy.
///
/// The checks run on one task the balancer spawns, on the tokio runtime of
/// the first `layer` or call. It stops when the last
/// [`LoadBalancerLayer`](super::LoadBalancerLayer), service and
/// [`EndpointsHandle`](super::EndpointsHandle) of the balancer are dropped,
/// or at [`LoadBalancerLayer::shutdown`](super::LoadBalancerLayer::shutdown).
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub(crate) path: String,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) healthy: u32,
    pub(crate) unhealthy: u32,
    pub(crate) expected: Vec<RangeInclusive<u16>>,
    pub(crate) concurrency: usize,
    pub(crate) headers: HeaderMap,
}

impl HealthCheck {
    /// Checks `GET path` (for example `/healthz`), with the defaults below.
    /// A path that does not start with `/` is reported when the balancer is
    /// built.
    #[must_use]
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            healthy: 2,
            unhealthy: 3,
            expected: vec![200..=399],
            concurrency: 10,
            headers: HeaderMap::new(),
        }
    }

    /// How often to check (at least 1 ms).
    ///
    /// Default: 10 s.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How long a check may take, connecting included.
    ///
    /// Default: 1 s.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Passed checks in a row that bring an unhealthy endpoint back (at
    /// least 1).
    ///
    /// Default: 2 (Kong's `healthy.successes`).
    #[must_use]
    pub fn healthy_threshold(mut self, n: u32) -> Self {
        self.healthy = n.max(1);
        self
    }

    /// Failed checks in a row (bad status, connect failure or timeout) that
    /// take an endpoint out (at least 1).
    ///
    /// Default: 3 (Kong's `unhealthy.http_failures`, counting timeouts and
    /// connect failures too).
    #[must_use]
    pub fn unhealthy_threshold(mut self, n: u32) -> Self {
        self.unhealthy = n.max(1);
        self
    }

    /// How many checks run at once (at least 1); the others of a round
    /// wait their turn.
    ///
    /// Default: 10 (Kong's `concurrency`).
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Sends `name: value` with every check (replacing an earlier value of
    /// the same name), for example a `Host` the endpoint expects in place of
    /// its address, or a token.
    ///
    /// Default: none besides `User-Agent: meshgate-health-check`.
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// The statuses that pass a check.
    ///
    /// Default: `200..=399`.
    #[must_use]
    pub fn expected_statuses(
        mut self,
        statuses: impl IntoIterator<Item = RangeInclusive<u16>>,
    ) -> Self {
        self.expected = statuses.into_iter().collect();
        self
    }

    pub(crate) fn validated_path(&self) -> Result<PathAndQuery, LoadBalancerError> {
        let invalid = |why: &str| {
            LoadBalancerError::InvalidHealthCheck(format!("path {:?}: {why}", self.path))
        };
        if !self.path.starts_with('/') {
            return Err(invalid("must start with '/'"));
        }
        if self.expected.is_empty() {
            return Err(LoadBalancerError::InvalidHealthCheck(
                "no expected status".to_owned(),
            ));
        }
        PathAndQuery::try_from(self.path.as_str()).map_err(|e| invalid(&e.to_string()))
    }

    fn is_expected(&self, status: u16) -> bool {
        self.expected.iter().any(|range| range.contains(&status))
    }
}

type HealthClient = Client<HttpConnector, Empty<Bytes>>;

/// Checks every endpoint at every tick until the balancer is gone or shut
/// down.
pub(crate) async fn run(
    balancer: Weak<Balancer>,
    config: HealthCheck,
    path: PathAndQuery,
    mut stop: watch::Receiver<bool>,
) {
    let config = Arc::new(config);
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(config.timeout));
    connector.set_nodelay(true);
    // A fresh connection per check, as Kong's checker: a check proves the
    // endpoint still accepts connections, and no idle connection is kept
    // to an endpoint that has left the set.
    let client: HealthClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector);
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = ticker.tick() => {}
        }
        // Only the set is held across the checks, never the balancer, so
        // dropping the last handle ends this task.
        let set = match balancer.upgrade() {
            Some(balancer) => balancer.set(),
            None => return,
        };
        let mut waiting = set
            .endpoints
            .iter()
            .filter(|state| state.endpoint.scheme() == &Scheme::HTTP)
            .cloned()
            .collect::<Vec<_>>()
            .into_iter();
        drop(set);
        let spawn = |checks: &mut JoinSet<_>, state: Arc<EndpointState>| {
            let (client, config, path) = (client.clone(), Arc::clone(&config), path.clone());
            checks.spawn(async move {
                let passed = check(&client, &state, &config, path).await;
                (state, passed)
            });
        };
        let mut checks = JoinSet::new();
        for state in waiting.by_ref().take(config.concurrency) {
            spawn(&mut checks, state);
        }
        loop {
            tokio::select! {
                biased;
                // Dropping the JoinSet aborts the checks still running.
                _ = stop.changed() => return,
                next = checks.join_next() => match next {
                    Some(done) => {
                        if let Ok((state, passed)) = done {
                            apply(&state, passed, &config);
                        }
                        if let Some(state) = waiting.next() {
                            spawn(&mut checks, state);
                        }
                    }
                    None => break,
                },
            }
        }
    }
}

async fn check(
    client: &HealthClient,
    state: &EndpointState,
    config: &HealthCheck,
    path: PathAndQuery,
) -> bool {
    let uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(state.endpoint.authority().clone())
        .path_and_query(path)
        .build();
    let Ok(mut request) = uri.and_then(|uri| {
        Request::get(uri)
            .header(http::header::USER_AGENT, "meshgate-health-check")
            .body(Empty::new())
    }) else {
        return false;
    };
    for (name, value) in &config.headers {
        request.headers_mut().insert(name, value.clone());
    }
    match tokio::time::timeout(config.timeout, client.request(request)).await {
        Ok(Ok(response)) => config.is_expected(response.status().as_u16()),
        Ok(Err(error)) => {
            tracing::debug!(target: "meshgate::load_balancer", endpoint = %state.endpoint, %error, "health check failed");
            false
        }
        Err(_) => {
            tracing::debug!(target: "meshgate::load_balancer", endpoint = %state.endpoint, "health check timed out");
            false
        }
    }
}

/// Counts one check. The checker task is the only writer of these counts.
fn apply(state: &EndpointState, passed: bool, config: &HealthCheck) {
    let stats = &state.stats;
    if passed {
        stats.check_failures.store(0, Ordering::Relaxed);
        let streak = stats.check_successes.fetch_add(1, Ordering::Relaxed) + 1;
        if !stats.is_healthy() && streak >= config.healthy && stats.set_healthy(true) {
            tracing::info!(target: "meshgate::load_balancer", endpoint = %state.endpoint, "endpoint passes health checks again");
        }
    } else {
        stats.check_successes.store(0, Ordering::Relaxed);
        let streak = stats.check_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if stats.is_healthy() && streak >= config.unhealthy && stats.set_healthy(false) {
            tracing::warn!(target: "meshgate::load_balancer", endpoint = %state.endpoint, "endpoint fails health checks; no traffic until it passes");
        }
    }
}
