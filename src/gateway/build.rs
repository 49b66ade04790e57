//! Config → layers: the one place that turns a validated [`Config`] into
//! the stacks the gateway serves. No request logic lives here.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;

use http::{Request, Response};
use http_body_util::Limited;
use hyper::body::Incoming;
use tower::util::BoxCloneSyncService;
use tower_layer::Layer;

use crate::aggregate::{Aggregate, AggregateCall};
use crate::auth::ConsumerStore;
use crate::auth::any::JwtOrApiKeyLayer;
use crate::auth::api_key::{ApiKeyLayer, consumer_store_from_config};
use crate::auth::authz::AuthzLayer;
use crate::auth::jwt::{Jwks, JwtLayer};
use crate::body::Body;
use crate::cache::CacheLayer;
use crate::circuit_breaker::CircuitBreakerLayer;
use crate::config::{self, Config};
use crate::cors::CorsLayer;
use crate::fault::FaultLayer;
use crate::ip_restriction::IpRestrictionLayer;
use crate::load_balancer::{
    self, ConsistentHash, DnsDiscovery, HashKey, HealthCheck, LoadBalancerLayer, OutlierDetection,
    Strategy,
};
use crate::net::TrustedProxies;
use crate::proxy::{IncomingForwarded, Proxy};
use crate::rate_limit::RateLimitLayer;
use crate::retry::{Jitter, RetryLayer, RetryOn};
use crate::routing::{Backend, Route, Router, Split, boxed};
use crate::timeout::TimeoutLayer;
use crate::transform::{
    Compression, CompressionLayer, JsonBodyLayer, TransformBody, TransformLayer,
};

/// The request body the router and everything behind it sees: the
/// connection's body under the listener's size limit.
pub type GatewayBody = Limited<Incoming>;

/// A type-erased service of the gateway's stacks.
pub(crate) type Stack<B> = BoxCloneSyncService<Request<B>, Response<Body>, Infallible>;

/// Why a config could not be turned into a gateway: each problem names the
/// config field, as the config's own validation does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildErrors(Vec<String>);

impl BuildErrors {
    /// The problems, one per entry, each starting with the field's path.
    #[must_use]
    pub fn problems(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for BuildErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(problem)?;
        }
        Ok(())
    }
}

impl std::error::Error for BuildErrors {}

/// An upstream built from config: its balancer (health checks run from here)
/// in front of its pooled proxy.
#[derive(Clone, Debug)]
pub(crate) struct BuiltUpstream {
    pub(crate) name: String,
    pub(crate) balancer: LoadBalancerLayer,
    proxy: Proxy,
}

/// A route's breaker, kept for the admin status.
#[derive(Clone, Debug)]
pub(crate) struct BuiltBreaker {
    pub(crate) route: String,
    pub(crate) backend: String,
    pub(crate) layer: CircuitBreakerLayer,
}

/// A route's retry layer, kept for its statistics.
#[derive(Clone, Debug)]
pub(crate) struct BuiltRetry {
    pub(crate) route: String,
    pub(crate) layer: RetryLayer,
}

/// Everything built from one config.
#[derive(Debug)]
pub(crate) struct Built {
    pub(crate) router: Router<GatewayBody>,
    pub(crate) upstreams: Vec<BuiltUpstream>,
    pub(crate) breakers: Vec<BuiltBreaker>,
    pub(crate) retries: Vec<BuiltRetry>,
    /// Each rate-limited route's limiter, for the admin status.
    pub(crate) limiters: Vec<(String, RateLimitLayer)>,
    /// Each cached route's cache, for the admin status.
    pub(crate) caches: Vec<(String, CacheLayer)>,
}

/// An aggregate's deadline when its config sets none (the aggregate
/// layer's own default); the route's timeout caps it.
const AGGREGATE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Builds the router and its per-route stacks.
pub(crate) fn build(config: &Config) -> Result<Built, BuildErrors> {
    let mut problems = unsupported(config);
    let identities = Identities::new(config, &mut problems);
    let mut upstreams = Vec::new();
    for (i, upstream) in config.upstreams.iter().enumerate() {
        match build_upstream(upstream, &config.trusted_proxies) {
            Ok(built) => upstreams.push(built),
            Err(problem) => problems.push(format!("upstreams[{i}]{problem}")),
        }
    }
    if !problems.is_empty() {
        return Err(BuildErrors(problems));
    }

    let mut problems = Vec::new();
    let mut limiters = Vec::new();
    let mut caches = Vec::new();
    let mut breakers = Vec::new();
    let mut retries = Vec::new();
    let mut redis = RedisConnection::default();
    // The metrics layer labels by the response's `MatchedRoute`; nothing
    // else outside the router reads it.
    let mut router = Router::builder()
        .tag_requests(routes_read_their_match(config))
        .tag_responses(config.metrics.enabled);
    for (index, route) in config.routes.iter().enumerate() {
        let find = |name: &str| upstreams.iter().find(|u| u.name == name);
        let policies = match Policies::for_route(config, index, route, &identities, &mut redis) {
            Ok(policies) => {
                if let Some(limiter) = &policies.rate_limit {
                    limiters.push((route.name.clone(), limiter.clone()));
                }
                if let Some(cache) = &policies.cache {
                    caches.push((route.name.clone(), cache.clone()));
                }
                policies
            }
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        let mut stacks = RouteStacks {
            route,
            breakers: &mut breakers,
            policies: &policies,
        };
        let retry = route.retry.as_ref().map(retry_layer);
        if let Some(layer) = &retry {
            retries.push(BuiltRetry {
                route: route.name.clone(),
                layer: layer.clone(),
            });
        }
        let target = match &route.action {
            config::RouteAction::Upstream(name) => {
                // Validation guarantees the upstream exists.
                let Some(upstream) = find(name) else { continue };
                Target::One(stacks.backend(name, upstream, retry.as_ref()))
            }
            config::RouteAction::Split(split) => {
                let mut backends = Vec::new();
                for backend in &split.backends {
                    let Some(upstream) = find(&backend.upstream) else {
                        continue;
                    };
                    let service = stacks.backend(&backend.upstream, upstream, retry.as_ref());
                    backends.push((backend.upstream.clone(), backend.weight, service));
                }
                Target::Split {
                    backends,
                    config: split,
                }
            }
            config::RouteAction::Terminate(terminate) => Target::One(terminated(terminate)),
            config::RouteAction::Aggregate(aggregation) => {
                match stacks.aggregate(index, aggregation, &upstreams, retry.as_ref()) {
                    Ok(service) => Target::One(service),
                    Err(problem) => {
                        problems.push(problem);
                        continue;
                    }
                }
            }
        };
        for routed in routes_for(route, target) {
            router = router.route(routed);
        }
    }
    if !problems.is_empty() {
        return Err(BuildErrors(problems));
    }
    let router = router
        .build()
        .map_err(|error| BuildErrors(vec![format!("routes: {error}")]))?;
    Ok(Built {
        router,
        upstreams,
        breakers,
        retries,
        limiters,
        caches,
    })
}

/// Whether a layer of some route's stack reads the route from the
/// request's extensions: a rate limit (keyed or overridden by route reads
/// the `RouteName`), a transform (`${route}` and path parameters read the
/// `MatchedRoute`) or an aggregate (its calls' parameters). Without one,
/// the router leaves both off requests, which saves two inserts per
/// request.
fn routes_read_their_match(config: &Config) -> bool {
    config.routes.iter().any(|route| {
        route.rate_limit.is_some()
            || route.transform.is_some()
            || matches!(route.action, config::RouteAction::Aggregate(_))
    })
}

/// What a route sends its requests to. A split is kept in parts, since the
/// router takes a `Split` per route and a config route may become several.
enum Target<'a> {
    One(Stack<GatewayBody>),
    Split {
        backends: Vec<(String, u32, Stack<GatewayBody>)>,
        config: &'a config::Split,
    },
}

impl Target<'_> {
    fn split(
        backends: &[(String, u32, Stack<GatewayBody>)],
        config: &config::Split,
    ) -> Split<GatewayBody> {
        let mut built = Split::new();
        for (name, weight, service) in backends {
            built = built.backend(Backend::new(name.clone(), service.clone()).weight(*weight));
        }
        for over in &config.overrides {
            built = match &over.on {
                config::Sticky::Header(name) => {
                    built.override_header(name.as_str(), over.value.clone(), over.upstream.clone())
                }
                config::Sticky::Cookie(name) => {
                    built.override_cookie(name.clone(), over.value.clone(), over.upstream.clone())
                }
            };
        }
        match &config.sticky {
            Some(config::Sticky::Header(name)) => built.sticky_header(name.as_str()),
            Some(config::Sticky::Cookie(name)) => built.sticky_cookie(name.clone()),
            None => built,
        }
    }
}

/// Builds the per-backend stacks of one route.
struct RouteStacks<'a> {
    route: &'a config::Route,
    breakers: &'a mut Vec<BuiltBreaker>,
    policies: &'a Policies,
}

impl RouteStacks<'_> {
    /// A backend's stack with the route's policies. The backend part,
    /// timeout → retry → circuit breaker → balancer → proxy, is
    /// composed with concrete types and boxed once: each box costs
    /// an allocation per request for the service clone and one for the
    /// future, so the optional layers are picked by `match`, not by boxing
    /// at every level.
    fn backend(
        &mut self,
        backend: &str,
        upstream: &BuiltUpstream,
        retry: Option<&RetryLayer>,
    ) -> Stack<GatewayBody> {
        let policies = self.policies;
        let stack = match &policies.json_body {
            // JSON body transforms hand on a `TransformBody` of the
            // request body: the stack behind them is built for that type.
            Some(json) => {
                let inner = self.core::<TransformBody<GatewayBody>>(backend, upstream, retry);
                let inner = policies.fault::<TransformBody<GatewayBody>>(inner);
                boxed::<GatewayBody, _, _>(json.layer(inner))
            }
            None => {
                let inner = self.core::<GatewayBody>(backend, upstream, retry);
                policies.fault::<GatewayBody>(inner)
            }
        };
        policies.apply(stack)
    }

    /// timeout → retry → circuit breaker → balancer → proxy, for one
    /// backend, for the request body type `B`, without the route's
    /// policies: for a route's backends (which add them) and for the calls
    /// of an aggregate (whose policies apply once, to the whole).
    fn core<B>(
        &mut self,
        backend: &str,
        upstream: &BuiltUpstream,
        retry: Option<&RetryLayer>,
    ) -> Stack<B>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: Into<crate::BoxError>,
    {
        let timeout = TimeoutLayer::new(self.route.timeout);
        let balanced = upstream.balancer.layer(upstream.proxy.clone());
        match (retry, self.breaker(backend)) {
            (Some(retry), Some(breaker)) => {
                boxed::<B, _, _>(timeout.layer(retry.layer(breaker.layer(balanced))))
            }
            (Some(retry), None) => boxed::<B, _, _>(timeout.layer(retry.layer(balanced))),
            (None, Some(breaker)) => boxed::<B, _, _>(timeout.layer(breaker.layer(balanced))),
            (None, None) => boxed::<B, _, _>(timeout.layer(balanced)),
        }
    }

    /// An aggregate route: each call goes to `http://<upstream>.invalid/..`,
    /// which a host-routed inner router sends to that upstream's
    /// forwarding stack (whose balancer then puts an endpoint in the URI).
    fn aggregate(
        &mut self,
        index: usize,
        aggregation: &config::Aggregation,
        upstreams: &[BuiltUpstream],
        retry: Option<&RetryLayer>,
    ) -> Result<Stack<GatewayBody>, String> {
        let field = format!("routes[{index}].aggregate");
        let mut inner = Router::builder();
        let mut hosts: Vec<&str> = Vec::new();
        let mut builder = Aggregate::builder()
            .deadline(
                aggregation
                    .deadline
                    .unwrap_or(AGGREGATE_DEADLINE)
                    .min(self.route.timeout),
            )
            .max_body(usize::try_from(aggregation.max_body.as_u64()).unwrap_or(usize::MAX))
            .concurrency(aggregation.concurrency);
        if let Some(headers) = &aggregation.forward_headers {
            builder = builder.forward_headers(headers.iter().cloned());
        }
        for (i, spec) in aggregation.calls.iter().enumerate() {
            let host = match hosts.iter().position(|name| *name == spec.upstream) {
                Some(known) => known,
                None => {
                    // Validation guarantees the upstream exists.
                    let Some(upstream) = upstreams.iter().find(|u| u.name == spec.upstream) else {
                        return Err(format!("{field}.calls[{i}].upstream: unknown upstream"));
                    };
                    let stack = self.core::<Body>(&spec.upstream, upstream, retry);
                    inner = inner.route(
                        Route::new(spec.upstream.clone())
                            .host(format!("u{}.invalid", hosts.len()))
                            .to(stack),
                    );
                    hosts.push(&spec.upstream);
                    hosts.len() - 1
                }
            };
            let uri = format!("http://u{host}.invalid{}", spec.uri);
            let mut call = AggregateCall::new(spec.key.clone(), &uri)
                .map_err(|e| format!("{field}.calls[{i}].uri: {e}"))?;
            if let Some(timeout) = spec.timeout {
                call = call.timeout(timeout);
            }
            if spec.optional {
                call = call.optional();
            }
            builder = builder.call(call);
        }
        let inner = inner.build().map_err(|e| format!("{field}: {e}"))?;
        let aggregate = builder.build(inner).map_err(|e| format!("{field}: {e}"))?;
        let stack = self
            .policies
            .fault::<GatewayBody>(boxed::<GatewayBody, _, _>(aggregate));
        Ok(self.policies.apply(stack))
    }

    /// This route's breaker for `backend`, when it has one; recorded for the
    /// admin status. Each backend of a split gets its own breaker.
    fn breaker(&mut self, backend: &str) -> Option<CircuitBreakerLayer> {
        let layer = breaker_layer(self.route.circuit_breaker.as_ref()?);
        self.breakers.push(BuiltBreaker {
            route: self.route.name.clone(),
            backend: backend.to_owned(),
            layer: layer.clone(),
        });
        Some(layer)
    }
}

/// A route's matchers, once per path: the router holds one path per route,
/// the config a list of alternatives. The first keeps the config name, the
/// others are named `name#2`, `name#3`, …; all share one set of stacks.
fn routes_for(route: &config::Route, target: Target<'_>) -> Vec<Route<GatewayBody>> {
    let paths: Vec<Option<&config::PathMatch>> = if route.matcher.paths.is_empty() {
        vec![None]
    } else {
        route.matcher.paths.iter().map(Some).collect()
    };
    let mut out = Vec::with_capacity(paths.len());
    for (i, path) in paths.into_iter().enumerate() {
        let name = if i == 0 {
            route.name.clone()
        } else {
            format!("{}#{}", route.name, i + 1)
        };
        // Every alternative reports the config route's name, so per-route
        // limits count them together.
        let mut built = Route::new(name)
            .reported_as(route.name.clone())
            .priority(route.priority);
        for host in &route.matcher.hosts {
            built = match host {
                config::HostMatch::Exact(host) => built.host(host.clone()),
                config::HostMatch::Wildcard(suffix) => built.host(format!("*{suffix}")),
            };
        }
        built = match path {
            Some(config::PathMatch::Exact(path) | config::PathMatch::Template(path)) => {
                built.path(path.clone())
            }
            Some(config::PathMatch::Prefix(prefix)) => built.path_prefix(prefix.clone()),
            None => built,
        };
        built = built.methods(route.matcher.methods.iter().cloned());
        for header in &route.matcher.headers {
            let name = header.name.as_str();
            built = match &header.value {
                config::ValueMatch::Exact(value) => built.header(name, value.clone()),
                config::ValueMatch::Regex(regex) => built.header_regex(name, regex.as_str()),
                config::ValueMatch::Present => built.header_present(name),
                config::ValueMatch::Absent => built.header_absent(name),
            };
        }
        for query in &route.matcher.query {
            let name = query.name.clone();
            built = match &query.value {
                config::ValueMatch::Exact(value) => built.query(name, value.clone()),
                config::ValueMatch::Regex(regex) => built.query_regex(name, regex.as_str()),
                // Validation refuses `absent` for query parameters.
                config::ValueMatch::Present | config::ValueMatch::Absent => {
                    built.query_present(name)
                }
            };
        }
        if let Some(prefix) = &route.strip_prefix {
            built = built.strip_prefix(prefix.clone());
        }
        if let Some(path) = &route.rewrite.path {
            built = built.rewrite_path(path.clone());
        }
        if let Some(host) = &route.rewrite.host {
            built = built.rewrite_host(host.clone());
        }
        built = match &target {
            Target::One(service) => built.to(service.clone()),
            Target::Split { backends, config } => built.split(Target::split(backends, config)),
        };
        out.push(built);
    }
    out
}

fn build_upstream(
    upstream: &config::Upstream,
    trusted_proxies: &[config::Cidr],
) -> Result<BuiltUpstream, String> {
    // Nothing in the gateway's stack reads the `SelectedEndpoint`: the
    // proxy inside the balancer sends where the URI points, and the admin
    // status reads the balancer itself.
    let mut balancer = LoadBalancerLayer::builder()
        .strategy(strategy(&upstream.balancing))
        .tag_requests(false)
        .tag_responses(false);
    let live: Vec<&config::Endpoint> = upstream.endpoints.iter().filter(|e| e.weight > 0).collect();
    if live.is_empty() {
        return Err(".endpoints: every endpoint has weight 0 (drained)".to_owned());
    }
    match upstream.discovery {
        config::Discovery::Static => {
            for (i, endpoint) in upstream.endpoints.iter().enumerate() {
                if endpoint.weight == 0 {
                    continue;
                }
                let parsed = load_balancer::Endpoint::parse(&endpoint.base_uri())
                    .map_err(|e| format!(".endpoints[{i}]: {e}"))?
                    .with_weight(endpoint.weight);
                balancer = balancer.endpoint(parsed);
            }
        }
        config::Discovery::Dns { interval } => {
            let [endpoint] = live.as_slice() else {
                return Err(".discovery: DNS discovery takes exactly one endpoint host".to_owned());
            };
            let scheme = match endpoint.scheme {
                config::Scheme::Http => http::uri::Scheme::HTTP,
                config::Scheme::Https => http::uri::Scheme::HTTPS,
            };
            balancer = balancer.dns(
                DnsDiscovery::new(endpoint.host.clone(), endpoint.port)
                    .interval(interval)
                    .scheme(scheme)
                    .weight(endpoint.weight),
            );
        }
    }
    if let Some(check) = &upstream.health_check {
        balancer = balancer.health_check(
            HealthCheck::new(check.path.clone())
                .interval(check.interval)
                .timeout(check.timeout)
                .healthy_threshold(check.healthy_threshold)
                .unhealthy_threshold(check.unhealthy_threshold)
                .expected_statuses(check.expected_statuses.iter().map(|r| r.first..=r.last)),
        );
    }
    if let Some(outlier) = &upstream.outlier_detection {
        balancer = balancer
            .outlier_detection(
                OutlierDetection::new()
                    .consecutive_5xx(outlier.consecutive_5xx)
                    .consecutive_gateway_errors(outlier.consecutive_gateway_errors)
                    .interval(outlier.interval)
                    .base_ejection_time(outlier.base_ejection_time)
                    .max_ejection_time(outlier.max_ejection_time)
                    .max_ejection_percent(percent_u8(outlier.max_ejection_percent)),
            )
            .panic_threshold(percent_u8(outlier.panic_threshold));
    }
    let balancer = balancer.build().map_err(|e| format!(".endpoints: {e}"))?;
    // A balancer starts its health checks when first layered; do it now so
    // an upstream no route uses yet is still checked (readiness reads it).
    drop(balancer.layer(()));
    // Forwarding headers from a trusted proxy are kept and appended to;
    // from anyone else they are replaced (a client cannot forge its IP).
    let incoming = if trusted_proxies.is_empty() {
        IncomingForwarded::Replace
    } else {
        IncomingForwarded::AppendFrom(TrustedProxies::new(trusted_proxies.iter().copied()))
    };
    let proxy = Proxy::builder()
        .incoming_forwarded(incoming)
        .http2_prior_knowledge(upstream.protocol == config::Protocol::H2c)
        .connect_timeout(upstream.timeouts.connect)
        .response_timeout(upstream.timeouts.response)
        .pool_idle_timeout(upstream.pool.idle_timeout)
        .pool_max_idle_per_host(upstream.pool.max_idle_per_endpoint);
    #[cfg(feature = "tls")]
    let proxy = match &upstream.tls {
        Some(tls) => upstream_tls(proxy, tls)?,
        None => proxy,
    };
    let field = if upstream.tls.is_some() { ".tls" } else { "" };
    let proxy = proxy.build().map_err(|e| format!("{field}: {e}"))?;
    Ok(BuiltUpstream {
        name: upstream.name.clone(),
        balancer,
        proxy,
    })
}

/// The upstream's TLS settings on its proxy: the files are read now, so a
/// missing one is reported with its field.
#[cfg(feature = "tls")]
fn upstream_tls(
    mut proxy: crate::proxy::ProxyBuilder,
    tls: &config::UpstreamTls,
) -> Result<crate::proxy::ProxyBuilder, String> {
    let read = |field: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|error| format!(".tls.{field}: cannot read {}: {error}", path.display()))
    };
    if let Some(ca) = &tls.ca {
        proxy = proxy.tls_roots_pem(read("ca", ca)?);
    }
    if let (Some(certificate), Some(key)) = (&tls.certificate, &tls.key) {
        proxy = proxy.tls_client_identity(read("certificate", certificate)?, read("key", key)?);
    }
    if let Some(name) = &tls.server_name {
        proxy = proxy.tls_server_name(name.clone());
    }
    Ok(proxy.tls_http2(tls.http2))
}

fn percent_u8(percent: config::Percent) -> u8 {
    // A Percent is within 0..=100, so the cast cannot truncate.
    percent.get().round().clamp(0.0, 100.0) as u8
}

fn strategy(balancing: &config::Balancing) -> Strategy {
    match balancing {
        config::Balancing::RoundRobin => Strategy::RoundRobin,
        config::Balancing::Weighted => Strategy::WeightedRoundRobin,
        config::Balancing::Random => Strategy::Random,
        config::Balancing::LeastRequest => Strategy::LeastRequest,
        config::Balancing::PeakEwma => Strategy::peak_ewma(),
        config::Balancing::ConsistentHash(on) => {
            Strategy::ConsistentHash(ConsistentHash::new(match on {
                config::HashOn::Header(name) => HashKey::Header(name.clone()),
                config::HashOn::Cookie(name) => HashKey::Cookie(name.clone()),
                config::HashOn::ClientIp => HashKey::ClientIp,
            }))
        }
    }
}

fn retry_layer(policy: &config::RetryPolicy) -> RetryLayer {
    let mut retry_on = RetryOn::nothing();
    for condition in &policy.retry_on {
        retry_on = match condition {
            config::RetryOn::ServerError => retry_on.server_error(),
            config::RetryOn::GatewayError => retry_on.gateway_error(),
            config::RetryOn::ConnectFailure => retry_on.connect_failure(),
            config::RetryOn::Reset => retry_on.reset(),
            config::RetryOn::RetriableStatusCodes => policy
                .retriable_status_codes
                .iter()
                .filter_map(|code| http::StatusCode::from_u16(*code).ok())
                .fold(retry_on, |on, code| on.status(code)),
            config::RetryOn::RetriableHeaders => policy
                .retriable_headers
                .iter()
                .fold(retry_on, |on, name| on.header(name.clone(), None)),
        };
    }
    let jitter = match policy.backoff.jitter {
        config::Jitter::Full => Jitter::Full,
        config::Jitter::Decorrelated => Jitter::Decorrelated,
        config::Jitter::None => Jitter::None,
    };
    let layer = RetryLayer::new()
        .max_attempts(policy.attempts)
        .backoff(policy.backoff.base, policy.backoff.cap)
        .jitter(jitter)
        .retry_on(retry_on)
        .retry_non_idempotent(policy.retry_non_idempotent)
        .retry_after_cap(policy.retry_after_cap)
        .replay_limit(usize::try_from(policy.replay_body_limit.0).unwrap_or(usize::MAX))
        .budget(
            policy.budget.percent.get() / 100.0,
            policy.budget.min_per_second,
            policy.budget.window,
        );
    match policy.per_try_timeout {
        Some(timeout) => layer.per_try_timeout(timeout),
        None => layer,
    }
}

fn breaker_layer(policy: &config::CircuitBreakerPolicy) -> CircuitBreakerLayer {
    let mut layer = CircuitBreakerLayer::new()
        .consecutive_failures(policy.consecutive_failures)
        .open_for(policy.open_for)
        .max_open_for(policy.max_open_for)
        .half_open_probes(policy.half_open_probes);
    if let Some(rate) = &policy.failure_rate {
        layer = layer.failure_rate(rate.threshold.get() / 100.0, rate.window, rate.min_calls);
    }
    if let Some(slow) = policy.slow_call {
        layer = layer.slow_call(slow);
    }
    layer
}

/// A route answered by the gateway itself (Kong's `request-termination`).
fn terminated(terminate: &config::Terminate) -> Stack<GatewayBody> {
    let status = http::StatusCode::from_u16(terminate.status)
        .unwrap_or(http::StatusCode::SERVICE_UNAVAILABLE);
    let detail: Arc<str> = Arc::from(terminate.message.clone().unwrap_or_default());
    BoxCloneSyncService::new(tower::service_fn(move |_request: Request<GatewayBody>| {
        let detail = Arc::clone(&detail);
        async move {
            let mut problem = crate::error::Problem::new(status);
            if !detail.is_empty() {
                problem = problem.with_detail(detail.to_string());
            }
            Ok::<_, Infallible>(problem.into_response().map(Body::new))
        }
    }))
}

/// Config sections this build cannot honour yet. A gateway that silently
/// skipped an `auth` or `rate_limit` section would serve traffic the
/// operator meant to protect, so these refuse to start instead.
fn unsupported(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    let mut refuse = |path: String, what: &str| {
        problems.push(format!("{path}: {what} is not supported by this build yet"));
    };
    for (i, route) in config.routes.iter().enumerate() {
        if let Some(rate_limit) = &route.rate_limit
            && rate_limit.backend != config::RateLimitBackend::Local
            && !cfg!(feature = "redis")
        {
            refuse(
                format!("routes[{i}].rate_limit.backend"),
                "the Redis backend (cargo feature `redis`)",
            );
        }
    }
    for (i, upstream) in config.upstreams.iter().enumerate() {
        if upstream.pool.max_requests_per_endpoint.is_some() {
            refuse(
                format!("upstreams[{i}].pool.max_requests_per_endpoint"),
                "a per-endpoint request limit",
            );
        }
        if upstream.tls.is_some() && !cfg!(feature = "tls") {
            refuse(
                format!("upstreams[{i}].tls"),
                "TLS to upstreams (cargo feature `tls`)",
            );
        }
        for (j, endpoint) in upstream.endpoints.iter().enumerate() {
            if endpoint.scheme == config::Scheme::Https && !cfg!(feature = "tls") {
                refuse(
                    format!("upstreams[{i}].endpoints[{j}]"),
                    "TLS to upstreams (https, cargo feature `tls`)",
                );
            }
        }
    }
    for (i, issuer) in config.jwt_issuers.iter().enumerate() {
        if let config::JwtKeys::Jwks { url, ca, .. } = &issuer.keys
            && !cfg!(feature = "tls")
        {
            if url.starts_with("https://") {
                refuse(
                    format!("jwt_issuers[{i}].jwks_url"),
                    "an https JWKS URL (cargo feature `tls`)",
                );
            }
            if ca.is_some() {
                refuse(
                    format!("jwt_issuers[{i}].jwks_ca"),
                    "private JWKS roots (cargo feature `tls`)",
                );
            }
        }
    }
    for (i, listener) in config.listeners.iter().enumerate() {
        if listener.tls.is_some() && !cfg!(feature = "tls") {
            refuse(
                format!("listeners[{i}].tls"),
                "TLS listeners (cargo feature `tls`)",
            );
        }
    }
    if config.metrics.prefix != "meshgate" {
        refuse(
            "metrics.prefix".to_owned(),
            "a metric prefix other than `meshgate`",
        );
    }
    problems
}

/// Who the gateway knows, built once and shared by every route: one
/// consumer store with every consumer's key digests, and one JWKS cache per
/// issuer with a `jwks_url` (one background refresh and one unknown-`kid`
/// budget per issuer, however many routes name it).
struct Identities {
    consumers: ConsumerStore,
    jwks: HashMap<String, Jwks>,
}

impl Identities {
    /// Reads `jwks_ca` files; problems name the field.
    fn new(config: &Config, problems: &mut Vec<String>) -> Self {
        let consumers = consumer_store_from_config(&config.consumers).unwrap_or_else(|error| {
            problems.push(format!("consumers: {error}"));
            ConsumerStore::new()
        });
        let mut jwks = HashMap::new();
        for (i, issuer) in config.jwt_issuers.iter().enumerate() {
            // An issuer already refused (a feature this build lacks) is
            // not reported twice.
            let field = format!("jwt_issuers[{i}].");
            if problems.iter().any(|p| p.starts_with(&field)) {
                continue;
            }
            match Jwks::from_config(issuer) {
                Ok(Some(cache)) => {
                    jwks.insert(issuer.name.clone(), cache);
                }
                Ok(None) => {}
                // The message starts with the field (`jwks_url: `, `jwks_ca: `).
                Err(error) => problems.push(format!("{field}{error}")),
            }
        }
        Identities { consumers, jwks }
    }
}

/// The gateway's one Redis connection, opened (lazily: it connects on first
/// use) for the first route with `backend: redis` and shared by the others.
#[derive(Default)]
struct RedisConnection {
    #[cfg(feature = "redis")]
    backend: Option<crate::rate_limit::RedisBackend>,
}

#[cfg(feature = "redis")]
impl RedisConnection {
    fn backend(&mut self, config: &Config) -> Result<crate::rate_limit::RedisBackend, String> {
        if let Some(backend) = &self.backend {
            return Ok(backend.clone());
        }
        let redis = config
            .redis
            .as_ref()
            .ok_or_else(|| "`backend: redis` needs the top-level `redis` section".to_owned())?;
        // The URL may hold a password: the error names the field, not it.
        let backend = crate::rate_limit::RedisBackend::new(redis.url.expose())
            .map_err(|_| "the `redis.url` is not a valid Redis URL".to_owned())?
            .timeout(redis.command_timeout)
            .prefix(&redis.key_prefix);
        self.backend = Some(backend.clone());
        Ok(backend)
    }
}

/// A route's policy layers, built once per route so every backend of a
/// split shares their state (rate-limit counters, cache store, JWKS).
/// Outermost first: compression → IP restriction → CORS → authentication →
/// access policies → rate limit → cache → header and query transforms →
/// JSON body transforms → fault injection, then the backend's timeout →
/// retry → breaker → balancer → proxy.
#[derive(Default)]
struct Policies {
    ip_restriction: Option<IpRestrictionLayer>,
    cors: Option<CorsLayer>,
    authn: Option<Authn>,
    authz: Option<AuthzLayer>,
    rate_limit: Option<RateLimitLayer>,
    /// The same limits, counted in Redis (`backend: redis`).
    #[cfg(feature = "redis")]
    redis_limit: Option<crate::rate_limit::RedisRateLimitLayer>,
    cache: Option<CacheLayer>,
    transform: Option<TransformLayer>,
    /// JSON body transforms, inside the header transforms.
    json_body: Option<JsonBodyLayer>,
    /// Response compression, outermost of the route's layers.
    compression: Option<CompressionLayer>,
    fault: Option<FaultLayer>,
}

/// How a route authenticates.
enum Authn {
    Jwt(JwtLayer),
    ApiKey(ApiKeyLayer),
    Either(JwtOrApiKeyLayer),
}

impl Policies {
    /// The policies of `route`, which is `config.routes[index]`; errors
    /// name it by that index.
    fn for_route(
        config: &Config,
        index: usize,
        route: &config::Route,
        identities: &Identities,
        redis: &mut RedisConnection,
    ) -> Result<Self, String> {
        let at = |section: &str, e: &dyn fmt::Display| format!("routes[{index}].{section}: {e}");
        let mut policies = Policies::default();
        if let Some(ip) = &route.ip_restriction {
            policies.ip_restriction =
                Some(IpRestrictionLayer::from_config(ip, &config.trusted_proxies));
        }
        if let Some(cors) = &route.cors {
            policies.cors = Some(crate::cors::from_config(cors).map_err(|e| at("cors", &e))?);
        }
        if let Some(auth) = &route.auth {
            let jwt = auth
                .jwt
                .as_ref()
                .map(|jwt| {
                    JwtLayer::from_config_with_jwks(jwt, &config.jwt_issuers, &identities.jwks)
                })
                .transpose()
                .map_err(|e| at("auth.jwt", &e))?;
            let key = auth
                .api_key
                .as_ref()
                .map(|key| {
                    ApiKeyLayer::from_config_with_store(
                        key,
                        &config.consumers,
                        identities.consumers.clone(),
                    )
                })
                .transpose()
                .map_err(|e| at("auth.api_key", &e))?;
            policies.authn = match (jwt, key) {
                (Some(jwt), Some(key)) => Some(Authn::Either(JwtOrApiKeyLayer::new(jwt, key))),
                (Some(jwt), None) => Some(Authn::Jwt(jwt)),
                (None, Some(key)) => Some(Authn::ApiKey(key)),
                (None, None) => None,
            };
            if !auth.policies.is_empty() {
                policies.authz = Some(AuthzLayer::from_config(&auth.policies));
            }
        }
        if let Some(limit) = &route.rate_limit {
            if limit.backend == config::RateLimitBackend::Local {
                policies.rate_limit = Some(
                    RateLimitLayer::from_policy(
                        limit,
                        &config.rate_limit_tiers,
                        &config.trusted_proxies,
                    )
                    .map_err(|e| at("rate_limit", &e))?,
                );
            } else {
                #[cfg(feature = "redis")]
                {
                    let backend = redis
                        .backend(config)
                        .map_err(|e| at("rate_limit.backend", &e))?;
                    policies.redis_limit = Some(RateLimitLayer::redis_from_policy(
                        limit,
                        &config.rate_limit_tiers,
                        &config.trusted_proxies,
                        backend,
                    ));
                }
                #[cfg(not(feature = "redis"))]
                let _ = redis;
            }
        }
        if let Some(cache) = &route.cache {
            policies.cache = Some(CacheLayer::from(cache));
        }
        if let Some(transform) = &route.transform {
            let at = |e: crate::transform::TemplateError| {
                format!("routes[{index}].transform.{}: {}", e.field(), e.message())
            };
            let layer =
                TransformLayer::from_config(transform, &config.trusted_proxies).map_err(at)?;
            policies.transform = (!layer.is_empty()).then_some(layer);
            policies.json_body =
                JsonBodyLayer::from_config(transform, &config.trusted_proxies).map_err(at)?;
            policies.compression = transform
                .compression
                .as_ref()
                .map(|c| Compression::from_config(c).layer());
        }
        if let Some(fault) = &route.fault {
            policies.fault = Some(FaultLayer::from_config(fault).map_err(|e| at("fault", &e))?);
        }
        Ok(policies)
    }

    /// Fault injection, innermost of the policies, for the request body the
    /// backend gets.
    fn fault<B>(&self, stack: Stack<B>) -> Stack<B>
    where
        B: Send + 'static,
    {
        match &self.fault {
            Some(fault) => boxed::<B, _, _>(fault.layer(stack)),
            None => stack,
        }
    }

    /// Wraps a backend's stack (fault injection and JSON body transforms
    /// already applied) in the route's other policy layers. Each layer
    /// present costs one more box; absent ones cost nothing.
    fn apply(&self, mut stack: Stack<GatewayBody>) -> Stack<GatewayBody> {
        if let Some(transform) = &self.transform {
            stack = boxed::<GatewayBody, _, _>(transform.layer(stack));
        }
        if let Some(cache) = &self.cache {
            stack = boxed::<GatewayBody, _, _>(cache.layer(stack));
        }
        if let Some(limit) = &self.rate_limit {
            stack = boxed::<GatewayBody, _, _>(limit.layer(stack));
        }
        #[cfg(feature = "redis")]
        if let Some(limit) = &self.redis_limit {
            stack = boxed::<GatewayBody, _, _>(limit.layer(stack));
        }
        if let Some(authz) = &self.authz {
            stack = boxed::<GatewayBody, _, _>(authz.layer(stack));
        }
        match &self.authn {
            Some(Authn::Jwt(jwt)) => stack = boxed::<GatewayBody, _, _>(jwt.layer(stack)),
            Some(Authn::ApiKey(key)) => stack = boxed::<GatewayBody, _, _>(key.layer(stack)),
            Some(Authn::Either(either)) => stack = boxed::<GatewayBody, _, _>(either.layer(stack)),
            None => {}
        }
        if let Some(cors) = &self.cors {
            stack = boxed::<GatewayBody, _, _>(cors.layer(stack));
        }
        if let Some(ip) = &self.ip_restriction {
            stack = boxed::<GatewayBody, _, _>(ip.layer(stack));
        }
        if let Some(compression) = &self.compression {
            stack = boxed::<GatewayBody, _, _>(compression.layer(stack));
        }
        stack
    }
}

/// Each listener's TLS acceptor (in config order), from the PEM files its
/// `tls` section names; read when the gateway is built so a missing or bad
/// file is reported with its field.
#[cfg(feature = "tls")]
pub(crate) fn listener_tls(
    config: &Config,
) -> Result<Vec<Option<crate::tls::ServerTls>>, BuildErrors> {
    let mut problems = Vec::new();
    let mut acceptors = Vec::with_capacity(config.listeners.len());
    for (i, listener) in config.listeners.iter().enumerate() {
        let Some(tls) = &listener.tls else {
            acceptors.push(None);
            continue;
        };
        let mut read = |field: &str, path: &std::path::Path| match std::fs::read(path) {
            Ok(bytes) => Some(bytes),
            Err(error) => {
                problems.push(format!(
                    "listeners[{i}].tls.{field}: cannot read {}: {error}",
                    path.display()
                ));
                None
            }
        };
        let certificate = read("certificate", &tls.certificate);
        let key = read("key", &tls.key);
        let client_ca = tls.client_ca.as_deref().map(|path| read("client_ca", path));
        let (Some(certificate), Some(key)) = (certificate, key) else {
            acceptors.push(None);
            continue;
        };
        let built = match client_ca {
            None => crate::tls::ServerTls::from_pem(&certificate, &key),
            Some(None) => {
                acceptors.push(None);
                continue;
            }
            Some(Some(ca)) => {
                let auth = match tls.client_auth {
                    config::ClientAuthMode::Required => crate::tls::ClientAuth::Required,
                    config::ClientAuthMode::Optional => crate::tls::ClientAuth::Optional,
                };
                crate::tls::ServerTls::mutual_from_pem(&certificate, &key, &ca, auth)
            }
        };
        match built {
            Ok(acceptor) => acceptors.push(Some(acceptor)),
            Err(error) => {
                problems.push(format!("listeners[{i}].tls: {error}"));
                acceptors.push(None);
            }
        }
    }
    if problems.is_empty() {
        Ok(acceptors)
    } else {
        Err(BuildErrors(problems))
    }
}
