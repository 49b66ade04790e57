//! Routes: what requests they match, where they go, and their policies.

use std::time::Duration;

use http::{HeaderName, Method};
use regex::Regex;
use serde::Deserialize;

use super::auth::RouteAuth;
use super::policy::{
    CachePolicy, CircuitBreakerPolicy, CorsPolicy, Fault, IpRestriction, RateLimitPolicy,
    RetryPolicy, Terminate, Transform,
};

/// A route: a matcher, a destination, and the policies of its stack.
///
/// Routes are tried by `priority` (higher first), then most specific
/// first. The stack per route is timeout → retry → circuit breaker → load
/// balancer → proxy, with auth, rate limit and cache in front.
#[derive(Debug, Clone)]
pub struct Route {
    /// Unique name, in logs and metrics.
    pub name: String,
    /// Tie-breaker between matching routes, higher first. Default: `0`.
    pub priority: i32,
    /// What requests the route takes (`match:` in the file). Default: all.
    pub matcher: RouteMatch,
    /// Where matched requests go.
    pub action: RouteAction,
    /// Prefix removed from the path before the request goes upstream
    /// (`/api/users/7` → `/users/7` with `/api`). Default: none.
    pub strip_prefix: Option<String>,
    /// Path and host rewrites. Default: none.
    pub rewrite: Rewrite,
    /// Budget of the whole request, retries included. Default: `30s`.
    pub timeout: Duration,
    /// Retries. Default: none.
    pub retry: Option<RetryPolicy>,
    /// Circuit breaker. Default: none.
    pub circuit_breaker: Option<CircuitBreakerPolicy>,
    /// Response cache. Default: none.
    pub cache: Option<CachePolicy>,
    /// Rate limit. Default: none.
    pub rate_limit: Option<RateLimitPolicy>,
    /// Authentication and authorization. Default: none (open).
    pub auth: Option<RouteAuth>,
    /// CORS. Default: none.
    pub cors: Option<CorsPolicy>,
    /// Header transforms. Default: none.
    pub transform: Option<Transform>,
    /// Fault injection. Default: none.
    pub fault: Option<Fault>,
    /// Client IP allow/deny lists. Default: none.
    pub ip_restriction: Option<IpRestriction>,
}

impl Route {
    /// The names of the upstreams this route can send to.
    pub fn upstreams(&self) -> Vec<&str> {
        match &self.action {
            RouteAction::Upstream(name) => vec![name.as_str()],
            RouteAction::Split(split) => {
                split.backends.iter().map(|b| b.upstream.as_str()).collect()
            }
            RouteAction::Terminate(_) => Vec::new(),
            RouteAction::Aggregate(aggregate) => {
                let mut names: Vec<&str> = Vec::new();
                for call in &aggregate.calls {
                    if !names.contains(&call.upstream.as_str()) {
                        names.push(&call.upstream);
                    }
                }
                names
            }
        }
    }
}

/// Where a route sends its requests: exactly one of `upstream`, `split`,
/// `terminate` or `aggregate` in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction {
    /// One upstream, by name.
    Upstream(String),
    /// Several upstreams, weighted.
    Split(Split),
    /// Answered by the gateway itself.
    Terminate(Terminate),
    /// Answered by several calls to upstreams, their JSON merged
    /// (Backend-for-Frontend fan-out).
    Aggregate(Aggregation),
}

/// A route answered by parallel `GET` calls to upstreams whose JSON
/// answers are merged into one object under each call's key (see
/// [`aggregate`](crate::aggregate) for the behaviour).
///
/// ```yaml
/// routes:
///   - name: dashboard
///     match: { paths: [{ template: "/dashboard/{id}" }] }
///     aggregate:
///       deadline: 2s
///       calls:
///         - { key: user, upstream: users, uri: "/users/{id}" }
///         - { key: orders, upstream: orders, uri: "/orders?user={id}", timeout: 500ms, optional: true }
/// ```
///
/// Each call goes through its upstream's balancer and proxy with the
/// route's timeout, retry and circuit breaker; the route's auth, rate
/// limit, cache and other policies apply once, to the aggregate request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregation {
    /// The calls; at least one, keys unique.
    pub calls: Vec<AggregateCallSpec>,
    /// Time for the whole aggregate. Default: `10s` (and never more than
    /// the route's `timeout`).
    #[serde(default, with = "super::units::opt_duration")]
    pub deadline: Option<Duration>,
    /// Largest JSON answer read from one call. Default: `1MiB`.
    #[serde(default = "default_aggregate_max_body")]
    pub max_body: super::units::ByteSize,
    /// Calls in flight at once. Default: `8`.
    #[serde(default = "default_aggregate_concurrency")]
    pub concurrency: usize,
    /// Request headers copied to every call. Default: `authorization`,
    /// `x-request-id`, `traceparent`, `tracestate`.
    #[serde(default, deserialize_with = "super::fields::opt_header_names")]
    pub forward_headers: Option<Vec<HeaderName>>,
}

fn default_aggregate_max_body() -> super::units::ByteSize {
    super::units::ByteSize::mib(1)
}

fn default_aggregate_concurrency() -> usize {
    8
}

/// One call of an [`Aggregation`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateCallSpec {
    /// Where the call's JSON goes in the merged object.
    pub key: String,
    /// The upstream called, by name.
    pub upstream: String,
    /// Path and query, with `{name}` placeholders filled from the route's
    /// path parameters, then the request's query parameters.
    pub uri: String,
    /// The call's own timeout. Default: none (the deadline).
    #[serde(default, with = "super::units::opt_duration")]
    pub timeout: Option<Duration>,
    /// A failed optional call gives `null` (and a message under
    /// `errors.<key>`) instead of failing the whole. Default: `false`.
    #[serde(default)]
    pub optional: bool,
}

/// What requests a route matches. Every condition given must hold; a list
/// holds when any entry matches, except `headers` and `query`, whose
/// entries must all hold.
#[derive(Debug, Clone, Default)]
pub struct RouteMatch {
    /// Hosts (the `Host` header or `:authority`, port ignored). Default: any.
    pub hosts: Vec<HostMatch>,
    /// Paths. Default: any (`prefix: /`).
    pub paths: Vec<PathMatch>,
    /// Methods. Default: any.
    pub methods: Vec<Method>,
    /// Header conditions; all must hold.
    pub headers: Vec<HeaderMatch>,
    /// Query parameter conditions; all must hold.
    pub query: Vec<QueryMatch>,
}

/// A host condition: `api.example.com` or `*.example.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// This host exactly (lower-case).
    Exact(String),
    /// Any host ending with this suffix, which starts with a dot
    /// (`*.example.com` → `.example.com`): one or more labels before it.
    Wildcard(String),
}

/// A path condition.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathMatch {
    /// This path exactly (`exact: /healthz`).
    Exact(String),
    /// This path and everything under it, on segment boundaries
    /// (`prefix: /api` matches `/api` and `/api/x`, not `/apix`).
    Prefix(String),
    /// A `matchit` template with parameters (`template: /users/{id}`,
    /// `template: /files/{*rest}`).
    Template(String),
}

/// A header condition.
#[derive(Debug, Clone)]
pub struct HeaderMatch {
    /// The header.
    pub name: HeaderName,
    /// What its value must be.
    pub value: ValueMatch,
}

/// A query parameter condition.
#[derive(Debug, Clone)]
pub struct QueryMatch {
    /// The parameter name.
    pub name: String,
    /// What its value must be.
    pub value: ValueMatch,
}

/// A condition on a header or query value.
#[derive(Debug, Clone)]
pub enum ValueMatch {
    /// Equal to this.
    Exact(String),
    /// The whole value matches this regular expression (it is anchored at
    /// both ends at load).
    Regex(Regex),
    /// Present, with any value.
    Present,
    /// Absent.
    Absent,
}

/// Rewrites applied before the request goes upstream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rewrite {
    /// Replaces the matched path prefix (or the whole path of an exact
    /// match), like Istio's `rewrite.uri`. Default: none.
    pub path: Option<String>,
    /// Replaces the `Host` header. Default: none (the client's is kept).
    pub host: Option<String>,
}

/// A weighted split between upstreams (canary, blue-green, A/B).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The backends; weights sum to more than 0.
    pub backends: Vec<SplitBackend>,
    /// Overrides checked first: a request with the header or cookie value
    /// goes to that backend regardless of weights.
    pub overrides: Vec<SplitOverride>,
    /// Keep a client on one backend by hashing a header or cookie.
    /// Default: none (each request is weighted independently).
    pub sticky: Option<Sticky>,
}

/// One backend of a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitBackend {
    /// The upstream, by name.
    pub upstream: String,
    /// Relative weight. Default: `1`.
    pub weight: u32,
}

/// A split override: `{ header: x-canary, value: "true", upstream: users-v2 }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitOverride {
    /// Where the value is read.
    pub on: Sticky,
    /// The value that selects the backend.
    pub value: String,
    /// The backend selected (one of the split's upstreams).
    pub upstream: String,
}

/// A request value: a header or a cookie.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sticky {
    /// A request header (`{ header: x-user-id }`).
    #[serde(deserialize_with = "super::fields::header_name")]
    Header(HeaderName),
    /// A cookie (`{ cookie: session }`).
    Cookie(String),
}
