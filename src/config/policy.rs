//! Per-route policies: retry, circuit breaker, cache, rate limit, CORS,
//! transforms, fault injection, IP restriction and request termination.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use serde::Deserialize;

use super::Cidr;
use super::units::{ByteSize, Percent, duration, opt_duration, status_code, status_codes};

/// Retries of failed attempts (see `meshgate::retry`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in total, the first included; 1 to 10. Default: `3`.
    pub attempts: u32,
    /// Delay between attempts.
    pub backoff: BackoffPolicy,
    /// Time one attempt may take; a slower attempt is abandoned and may be
    /// retried. Default: none (only the route's `timeout` applies).
    #[serde(with = "opt_duration")]
    pub per_try_timeout: Option<Duration>,
    /// Which failures are retried, Istio's `retryOn`. Default:
    /// `[gateway-error, connect-failure, reset]`.
    pub retry_on: Vec<RetryOn>,
    /// Statuses retried under `retriable-status-codes`. Default: none.
    #[serde(with = "status_codes")]
    pub retriable_status_codes: Vec<u16>,
    /// Response headers whose presence makes a response retried under
    /// `retriable-headers`. Default: none.
    #[serde(deserialize_with = "super::fields::header_names")]
    pub retriable_headers: Vec<HeaderName>,
    /// Retry non-idempotent requests (POST, PATCH) too. Without it they are
    /// retried only when they carry an `Idempotency-Key` header. Default:
    /// `false`.
    pub retry_non_idempotent: bool,
    /// Longest `Retry-After` (on 429/503) that is waited for; an answer
    /// asking for longer is returned as it is. Default: `5s`.
    #[serde(with = "duration")]
    pub retry_after_cap: Duration,
    /// The retry budget shared by all requests on the route.
    pub budget: RetryBudgetPolicy,
    /// Largest request body buffered for replay; a larger body is streamed
    /// once and not retried. Default: `64KiB`.
    pub replay_body_limit: ByteSize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            backoff: BackoffPolicy::default(),
            per_try_timeout: None,
            retry_on: vec![
                RetryOn::GatewayError,
                RetryOn::ConnectFailure,
                RetryOn::Reset,
            ],
            retriable_status_codes: Vec::new(),
            retriable_headers: Vec::new(),
            retry_non_idempotent: false,
            retry_after_cap: Duration::from_secs(5),
            budget: RetryBudgetPolicy::default(),
            replay_body_limit: ByteSize::kib(64),
        }
    }
}

/// Exponential backoff between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffPolicy {
    /// First delay, doubled per retry. Default: `25ms`.
    #[serde(with = "duration")]
    pub base: Duration,
    /// Longest delay; at least `base`. Default: `1s`.
    #[serde(with = "duration")]
    pub cap: Duration,
    /// `full` (default), `decorrelated` or `none`.
    pub jitter: Jitter,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            base: Duration::from_millis(25),
            cap: Duration::from_secs(1),
            jitter: Jitter::Full,
        }
    }
}

/// How backoff delays are spread (see `meshgate::retry::Jitter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// Uniform in `[0, backoff]`.
    #[default]
    Full,
    /// Uniform in `[base, 3 × previous]`, capped.
    Decorrelated,
    /// The exponential delay itself.
    None,
}

/// A retry condition, as in Istio's `retryOn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum RetryOn {
    /// Any 5xx answer (`5xx`).
    #[serde(rename = "5xx")]
    ServerError,
    /// 502, 503 or 504 (`gateway-error`).
    #[serde(rename = "gateway-error")]
    GatewayError,
    /// The upstream could not be reached (`connect-failure`).
    #[serde(rename = "connect-failure")]
    ConnectFailure,
    /// The upstream reset the connection before answering (`reset`).
    #[serde(rename = "reset")]
    Reset,
    /// A status in `retriable_status_codes` (`retriable-status-codes`).
    #[serde(rename = "retriable-status-codes")]
    RetriableStatusCodes,
    /// A response carrying one of `retriable_headers` (`retriable-headers`).
    #[serde(rename = "retriable-headers")]
    RetriableHeaders,
}

/// The retry budget: retries may add at most `percent` of the recent
/// request rate plus `min_per_second`, over `window`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudgetPolicy {
    /// Retries allowed as a percentage of requests. Default: `20`.
    pub percent: Percent,
    /// Retries per second always allowed. Default: `10`.
    pub min_per_second: u32,
    /// The sliding window. Default: `10s`.
    #[serde(with = "duration")]
    pub window: Duration,
}

impl Default for RetryBudgetPolicy {
    fn default() -> Self {
        RetryBudgetPolicy {
            percent: Percent::new(20.0).unwrap_or_default(),
            min_per_second: 10,
            window: Duration::from_secs(10),
        }
    }
}

/// Circuit breaking for the route (see `meshgate::circuit_breaker`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakerPolicy {
    /// Failures in a row that open the breaker; at least 1. Default: `5`.
    pub consecutive_failures: u32,
    /// Also open when the failure rate over a window reaches a threshold.
    /// Default: off.
    pub failure_rate: Option<FailureRate>,
    /// Calls slower than this count as failures. Default: off.
    #[serde(with = "opt_duration")]
    pub slow_call: Option<Duration>,
    /// Open time after the first trip; grows with each trip in a row.
    /// Default: `30s`.
    #[serde(with = "duration")]
    pub open_for: Duration,
    /// Longest open time; at least `open_for`. Default: `300s`.
    #[serde(with = "duration")]
    pub max_open_for: Duration,
    /// Probe requests let through when half-open; at least 1. Default: `1`.
    pub half_open_probes: u32,
}

impl Default for CircuitBreakerPolicy {
    fn default() -> Self {
        CircuitBreakerPolicy {
            consecutive_failures: 5,
            failure_rate: None,
            slow_call: None,
            open_for: Duration::from_secs(30),
            max_open_for: Duration::from_secs(300),
            half_open_probes: 1,
        }
    }
}

/// A failure-rate trip condition.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureRate {
    /// Failure percentage that opens the breaker; above 0. Required.
    pub threshold: Percent,
    /// The sliding window. Default: `30s`.
    #[serde(default = "default_rate_window", with = "duration")]
    pub window: Duration,
    /// Fewest calls in the window before the rate is judged. Default: `20`.
    #[serde(default = "default_min_calls")]
    pub min_calls: u32,
}

fn default_rate_window() -> Duration {
    Duration::from_secs(30)
}

fn default_min_calls() -> u32 {
    20
}

/// Response caching for the route (GET and HEAD only).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CachePolicy {
    /// Freshness for responses that carry no caching headers (the origin's
    /// `Cache-Control`/`Expires` win when present). Default: `60s`.
    #[serde(with = "duration")]
    pub ttl: Duration,
    /// Request headers that make separate entries, on top of the origin's
    /// `Vary`. Default: none.
    #[serde(deserialize_with = "super::fields::header_names")]
    pub vary_by: Vec<HeaderName>,
    /// Largest body stored; larger responses pass through uncached.
    /// Default: `1MiB`.
    pub max_body: ByteSize,
    /// A stale entry may still be served this long while it is refreshed or
    /// when the origin fails. Default: `0s`.
    #[serde(with = "duration")]
    pub stale_grace: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            ttl: Duration::from_secs(60),
            vary_by: Vec::new(),
            max_body: ByteSize::mib(1),
            stale_grace: Duration::ZERO,
        }
    }
}

/// Rate limiting for the route.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitPolicy {
    /// What a limit is counted per. Default: `client_ip`.
    pub key: RateLimitKey,
    /// The quotas, all enforced; at least one unless `tiers` is on.
    pub quotas: Vec<Quota>,
    /// Use the authenticated consumer's tier (from `rate_limit_tiers`)
    /// instead of `quotas`; requests without a consumer or tier fall back to
    /// `quotas` (and are not limited when `quotas` is empty). Default:
    /// `false`.
    pub tiers: bool,
    /// Consumers never limited. Default: none.
    pub exempt: Vec<String>,
    /// Send the legacy `X-RateLimit-*` headers next to the IETF
    /// `RateLimit`/`RateLimit-Policy` ones. Default: `false`.
    pub legacy_headers: bool,
    /// Most requests in flight per key; past it `503` at once. Default:
    /// unlimited.
    pub max_in_flight: Option<u32>,
    /// `local` (default) or `redis` (needs the top-level `redis`).
    pub backend: RateLimitBackend,
    /// With `backend: redis`, what happens when Redis cannot answer.
    /// Default: `allow`.
    pub on_redis_error: OnRedisError,
}

impl Default for RateLimitPolicy {
    fn default() -> Self {
        RateLimitPolicy {
            key: RateLimitKey::ClientIp,
            quotas: Vec::new(),
            tiers: false,
            exempt: Vec::new(),
            legacy_headers: false,
            max_in_flight: None,
            backend: RateLimitBackend::Local,
            on_redis_error: OnRedisError::Allow,
        }
    }
}

/// What a rate limit is counted per: `client_ip`, `consumer`,
/// `jwt_subject`, `route`, `global`, `{ header: x-tenant }` or
/// `{ composite: [consumer, route] }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitKey {
    /// The client IP (trusted-proxy aware).
    ClientIp,
    /// The authenticated consumer's name.
    Consumer,
    /// The validated JWT's `sub`.
    JwtSubject,
    /// The route.
    Route,
    /// One counter for everything.
    Global,
    /// The value of a request header.
    #[serde(deserialize_with = "super::fields::header_name")]
    Header(HeaderName),
    /// Several keys together; not nested.
    Composite(Vec<RateLimitKey>),
}

/// Where rate-limit state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitBackend {
    /// In this process.
    #[default]
    Local,
    /// In Redis, shared by every gateway instance.
    Redis,
}

/// What a Redis-backed limit does when Redis does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnRedisError {
    /// Let the request through (counted and logged).
    #[default]
    Allow,
    /// Answer `503`.
    Deny,
    /// Fall back to a local limiter with the same quotas.
    Local,
}

/// One quota: `limit` requests per period, with an optional burst.
///
/// ```yaml
/// - { limit: 10, per: second, burst: 20 }
/// - { limit: 1000, per: minute }
/// - { limit: 50, per: 10s }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Requests allowed per period; at least 1.
    pub limit: u64,
    /// `second`, `minute`, `hour`, `day`, or a duration like `10s`.
    #[serde(deserialize_with = "quota_period")]
    pub per: Duration,
    /// Requests allowed at once above the steady rate. Default: `limit`.
    #[serde(default)]
    pub burst: Option<u64>,
}

fn quota_period<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    Ok(match text.as_str() {
        "second" => Duration::from_secs(1),
        "minute" => Duration::from_secs(60),
        "hour" => Duration::from_secs(3600),
        "day" => Duration::from_secs(86_400),
        other => other
            .parse::<super::units::Duration>()
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "expected second, minute, hour, day or a duration: {e}"
                ))
            })?
            .into(),
    })
}

/// CORS for the route; preflight requests are answered by the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsPolicy {
    /// Allowed origins (`https://app.example.com`), or `["*"]` for any.
    /// Default: none.
    pub allow_origins: Vec<String>,
    /// Allowed methods. Default: `GET, HEAD, POST`.
    #[serde(deserialize_with = "super::fields::methods")]
    pub allow_methods: Vec<Method>,
    /// Allowed request headers. Default: none (only CORS-safelisted ones).
    #[serde(deserialize_with = "super::fields::header_names")]
    pub allow_headers: Vec<HeaderName>,
    /// Response headers exposed to scripts. Default: none.
    #[serde(deserialize_with = "super::fields::header_names")]
    pub expose_headers: Vec<HeaderName>,
    /// Whether credentials are allowed; not with origin `*`. Default: `false`.
    pub allow_credentials: bool,
    /// How long a preflight answer may be cached. Default: `10m`.
    #[serde(with = "duration")]
    pub max_age: Duration,
}

impl Default for CorsPolicy {
    fn default() -> Self {
        CorsPolicy {
            allow_origins: Vec::new(),
            allow_methods: vec![Method::GET, Method::HEAD, Method::POST],
            allow_headers: Vec::new(),
            expose_headers: Vec::new(),
            allow_credentials: false,
            max_age: Duration::from_secs(600),
        }
    }
}

/// Changes to the request going upstream and to the response going back
/// (see `meshgate::transform`): headers, query parameters, JSON body
/// fields, and response compression.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Transform {
    /// Changes to the request before it goes upstream.
    pub request: HeaderTransform,
    /// Changes to the response before it goes to the client (`query` is
    /// refused here).
    pub response: HeaderTransform,
    /// Largest JSON body rewritten by `body` operations; larger bodies pass
    /// untouched (and are counted). Default: `1MiB`.
    pub max_body: ByteSize,
    /// Response compression (gzip, brotli). Default: none.
    pub compression: Option<CompressionPolicy>,
}

impl Default for Transform {
    fn default() -> Self {
        Transform {
            request: HeaderTransform::default(),
            response: HeaderTransform::default(),
            max_body: ByteSize::mib(1),
            compression: None,
        }
    }
}

/// Header operations, applied in the order remove, rename, set, add; and
/// the query and JSON body operations of the same side. Values of `set` and
/// `add` may be templates: `${request_id}`, `${client_ip}`, `${route}`,
/// `${consumer}`, `${claim.<name>}`, `${header.<name>}`, `${query.<name>}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderTransform {
    /// Headers removed (e.g. to stop clients spoofing internal headers).
    #[serde(deserialize_with = "super::fields::header_names")]
    pub remove: Vec<HeaderName>,
    /// Headers renamed, `from: to`.
    #[serde(deserialize_with = "super::fields::header_renames")]
    pub rename: Vec<(HeaderName, HeaderName)>,
    /// Headers set, replacing any value.
    #[serde(deserialize_with = "super::fields::header_map")]
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Headers appended, keeping existing values.
    #[serde(deserialize_with = "super::fields::header_map")]
    pub add: Vec<(HeaderName, HeaderValue)>,
    /// Query parameter operations (requests only).
    pub query: QueryTransform,
    /// JSON body field operations.
    pub body: BodyTransform,
}

/// Query parameter operations, applied in the order remove, rename, set,
/// add. Values are strings (quote numbers) and may be templates.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct QueryTransform {
    /// Parameters removed.
    pub remove: Vec<String>,
    /// Parameters renamed, `from: to`.
    #[serde(deserialize_with = "string_pairs")]
    pub rename: Vec<(String, String)>,
    /// Parameters set, replacing any value.
    #[serde(deserialize_with = "string_pairs")]
    pub set: Vec<(String, String)>,
    /// Parameters appended.
    #[serde(deserialize_with = "string_pairs")]
    pub add: Vec<(String, String)>,
}

/// JSON body field operations (on `application/json` bodies that are
/// objects), applied in the order remove, rename, replace, add. Fields are
/// dotted paths (`user.password`).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BodyTransform {
    /// Fields removed.
    pub remove: Vec<String>,
    /// Fields renamed, `from: to`.
    #[serde(deserialize_with = "string_pairs")]
    pub rename: Vec<(String, String)>,
    /// Fields given a value when they are present.
    #[serde(deserialize_with = "body_values")]
    pub replace: Vec<(String, BodyValue)>,
    /// Fields given a value when they are absent.
    #[serde(deserialize_with = "body_values")]
    pub add: Vec<(String, BodyValue)>,
}

impl BodyTransform {
    /// Whether there is nothing to do.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.replace.is_empty()
            && self.add.is_empty()
    }
}

/// A JSON value written into a body: YAML scalars, lists and maps. A
/// string with `${...}` is a template.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum BodyValue {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Integer(i64),
    /// A number with a fraction.
    Float(f64),
    /// A string (or template).
    String(String),
    /// A list.
    List(Vec<BodyValue>),
    /// A map.
    Map(std::collections::BTreeMap<String, BodyValue>),
    /// `null` (`~`).
    Null(()),
}

#[cfg(feature = "transform")]
impl BodyValue {
    /// The JSON form.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            BodyValue::Bool(b) => Value::Bool(*b),
            BodyValue::Integer(n) => Value::from(*n),
            BodyValue::Float(n) => {
                serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
            }
            BodyValue::String(s) => Value::String(s.clone()),
            BodyValue::List(items) => Value::Array(items.iter().map(BodyValue::to_json).collect()),
            BodyValue::Map(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
            BodyValue::Null(()) => Value::Null,
        }
    }
}

/// Response compression (gzip, brotli) by tower-http.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionPolicy {
    /// Offer gzip. Default: `true`.
    pub gzip: bool,
    /// Offer brotli. Default: `true`.
    pub brotli: bool,
    /// Smallest response compressed. Default: `1KiB`.
    pub min_size: ByteSize,
}

impl Default for CompressionPolicy {
    fn default() -> Self {
        CompressionPolicy {
            gzip: true,
            brotli: true,
            min_size: ByteSize::kib(1),
        }
    }
}

fn string_pairs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    let map = std::collections::BTreeMap::<String, String>::deserialize(d)?;
    Ok(map.into_iter().collect())
}

fn body_values<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, BodyValue)>, D::Error> {
    let map = std::collections::BTreeMap::<String, BodyValue>::deserialize(d)?;
    Ok(map.into_iter().collect())
}

/// Fault injection, Istio style: delay or abort a share of requests.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Fault {
    /// Delay a percentage of requests.
    pub delay: Option<FaultDelay>,
    /// Answer a percentage of requests with a status, without calling the
    /// upstream.
    pub abort: Option<FaultAbort>,
    /// Only requests carrying this header are subject to faults. Default:
    /// all requests.
    #[serde(deserialize_with = "opt_header_name")]
    pub only_with_header: Option<HeaderName>,
}

fn opt_header_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<HeaderName>, D::Error> {
    super::fields::header_name(d).map(Some)
}

/// An injected delay.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultDelay {
    /// Share of requests delayed.
    pub percent: Percent,
    /// The delay.
    #[serde(with = "duration")]
    pub duration: Duration,
}

/// An injected error answer.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultAbort {
    /// Share of requests aborted.
    pub percent: Percent,
    /// The status answered.
    #[serde(with = "status_code")]
    pub status: u16,
}

/// Client IP allow and deny lists (trusted-proxy aware). Deny wins; with a
/// non-empty `allow`, an address outside it is refused with `403`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct IpRestriction {
    /// Networks allowed. Default: all.
    pub allow: Vec<Cidr>,
    /// Networks refused. Default: none.
    pub deny: Vec<Cidr>,
}

/// A route that answers by itself (Kong's request termination): a status
/// and a message, e.g. during maintenance.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Terminate {
    /// The status answered. Default: `503`.
    #[serde(default = "default_terminate_status", with = "status_code")]
    pub status: u16,
    /// The message, sent as the problem document's `detail`. Default: none.
    #[serde(default)]
    pub message: Option<String>,
}

fn default_terminate_status() -> u16 {
    503
}
