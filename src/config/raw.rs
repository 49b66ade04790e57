//! The file's shape, as serde reads it. Values that need the environment,
//! cross-checks or collected errors stay text here; `validate` turns this
//! into the typed model.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::Cidr;
use super::auth::{JwtAlgorithm, RouteAuth};
use super::policy::{
    CachePolicy, CircuitBreakerPolicy, CorsPolicy, Fault, IpRestriction, Quota, RateLimitPolicy,
    RetryPolicy, Terminate, Transform,
};
use super::route::Aggregation;
use super::route::{PathMatch, Sticky};
use super::server::{
    AccessLog, Admin, Listener, Metrics, Protocol, RequestIdHeader, TraceContextHeaders,
};
use super::units::{duration, opt_duration};
use super::upstream::{
    Balancing, Discovery, HealthCheck, OutlierDetection, Pool, UpstreamTimeouts, UpstreamTls,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) listeners: Option<Vec<Listener>>,
    #[serde(default)]
    pub(crate) admin: Admin,
    #[serde(default)]
    pub(crate) trusted_proxies: Vec<Cidr>,
    #[serde(default)]
    pub(crate) request_id: RequestIdHeader,
    #[serde(default)]
    pub(crate) trace_context: TraceContextHeaders,
    #[serde(default)]
    pub(crate) access_log: AccessLog,
    #[serde(default)]
    pub(crate) metrics: Metrics,
    #[serde(default)]
    pub(crate) redis: Option<RawRedis>,
    #[serde(default)]
    pub(crate) upstreams: Vec<RawUpstream>,
    #[serde(default)]
    pub(crate) routes: Vec<RawRoute>,
    #[serde(default)]
    pub(crate) consumers: Vec<RawConsumer>,
    #[serde(default)]
    pub(crate) jwt_issuers: Vec<RawJwtIssuer>,
    #[serde(default)]
    pub(crate) rate_limit_tiers: BTreeMap<String, Vec<Quota>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedis {
    pub(crate) url: String,
    #[serde(default = "default_redis_connect", with = "duration")]
    pub(crate) connect_timeout: Duration,
    #[serde(default = "default_redis_command", with = "duration")]
    pub(crate) command_timeout: Duration,
    #[serde(default = "default_key_prefix")]
    pub(crate) key_prefix: String,
}

fn default_redis_connect() -> Duration {
    Duration::from_secs(1)
}

fn default_redis_command() -> Duration {
    Duration::from_millis(100)
}

fn default_key_prefix() -> String {
    "meshgate:".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub(crate) name: String,
    pub(crate) endpoints: Vec<RawEndpoint>,
    #[serde(default)]
    pub(crate) discovery: Discovery,
    #[serde(default)]
    pub(crate) balancing: Balancing,
    #[serde(default)]
    pub(crate) health_check: Option<HealthCheck>,
    #[serde(default)]
    pub(crate) outlier_detection: Option<OutlierDetection>,
    #[serde(default)]
    pub(crate) pool: Pool,
    #[serde(default)]
    pub(crate) protocol: Protocol,
    #[serde(default)]
    pub(crate) timeouts: UpstreamTimeouts,
    #[serde(default)]
    pub(crate) tls: Option<UpstreamTls>,
}

/// `"host:port"`, `"http://host:port"`, or `{ address, weight }`.
#[derive(Debug)]
pub(crate) struct RawEndpoint {
    pub(crate) address: String,
    pub(crate) weight: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpointMap {
    address: String,
    #[serde(default = "one")]
    weight: u32,
}

fn one() -> u32 {
    1
}

impl<'de> Deserialize<'de> for RawEndpoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;

        impl<'de> Visitor<'de> for V {
            type Value = RawEndpoint;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address \"host:port\" or a map { address, weight }")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawEndpoint, E> {
                Ok(RawEndpoint {
                    address: v.to_owned(),
                    weight: 1,
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawEndpoint, A::Error> {
                let m = RawEndpointMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawEndpoint {
                    address: m.address,
                    weight: m.weight,
                })
            }
        }

        deserializer.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) priority: i32,
    #[serde(default, rename = "match")]
    pub(crate) matcher: RawMatch,
    #[serde(default)]
    pub(crate) upstream: Option<String>,
    #[serde(default)]
    pub(crate) split: Option<RawSplit>,
    #[serde(default)]
    pub(crate) terminate: Option<Terminate>,
    #[serde(default)]
    pub(crate) aggregate: Option<Aggregation>,
    #[serde(default)]
    pub(crate) strip_prefix: Option<String>,
    #[serde(default)]
    pub(crate) rewrite: RawRewrite,
    #[serde(default, with = "opt_duration")]
    pub(crate) timeout: Option<Duration>,
    #[serde(default)]
    pub(crate) retry: Option<RetryPolicy>,
    #[serde(default)]
    pub(crate) circuit_breaker: Option<CircuitBreakerPolicy>,
    #[serde(default)]
    pub(crate) cache: Option<CachePolicy>,
    #[serde(default)]
    pub(crate) rate_limit: Option<RateLimitPolicy>,
    #[serde(default)]
    pub(crate) auth: Option<RouteAuth>,
    #[serde(default)]
    pub(crate) cors: Option<CorsPolicy>,
    #[serde(default)]
    pub(crate) transform: Option<Transform>,
    #[serde(default)]
    pub(crate) fault: Option<Fault>,
    #[serde(default)]
    pub(crate) ip_restriction: Option<IpRestriction>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawMatch {
    pub(crate) hosts: Vec<String>,
    pub(crate) paths: Vec<PathMatch>,
    pub(crate) methods: Vec<String>,
    pub(crate) headers: Vec<RawValueMatch>,
    pub(crate) query: Vec<RawValueMatch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawValueMatch {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) exact: Option<String>,
    #[serde(default)]
    pub(crate) regex: Option<String>,
    #[serde(default)]
    pub(crate) present: Option<bool>,
    #[serde(default)]
    pub(crate) absent: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawRewrite {
    pub(crate) path: Option<String>,
    pub(crate) host: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSplit {
    pub(crate) backends: Vec<RawBackend>,
    #[serde(default)]
    pub(crate) overrides: Vec<RawOverride>,
    #[serde(default)]
    pub(crate) sticky: Option<Sticky>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackend {
    pub(crate) upstream: String,
    #[serde(default = "one")]
    pub(crate) weight: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOverride {
    #[serde(default)]
    pub(crate) header: Option<String>,
    #[serde(default)]
    pub(crate) cookie: Option<String>,
    pub(crate) value: String,
    pub(crate) upstream: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConsumer {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) tier: Option<String>,
    #[serde(default)]
    pub(crate) groups: Vec<String>,
    #[serde(default)]
    pub(crate) keys: Vec<String>,
    #[serde(default)]
    pub(crate) metadata: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJwtIssuer {
    pub(crate) name: String,
    pub(crate) issuer: String,
    #[serde(default)]
    pub(crate) audiences: Vec<String>,
    #[serde(default)]
    pub(crate) jwks_url: Option<String>,
    #[serde(default)]
    pub(crate) jwks_ca: Option<String>,
    #[serde(default = "default_jwks_refresh", with = "duration")]
    pub(crate) jwks_refresh_interval: Duration,
    #[serde(default = "default_jwks_min_refresh", with = "duration")]
    pub(crate) jwks_min_refresh_interval: Duration,
    #[serde(default)]
    pub(crate) keys: Vec<RawJwtKey>,
    #[serde(default = "default_leeway", with = "duration")]
    pub(crate) leeway: Duration,
    #[serde(default)]
    pub(crate) claims_to_headers: Option<BTreeMap<String, String>>,
}

fn default_jwks_refresh() -> Duration {
    Duration::from_secs(300)
}

fn default_jwks_min_refresh() -> Duration {
    Duration::from_secs(30)
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJwtKey {
    #[serde(default)]
    pub(crate) kid: Option<String>,
    pub(crate) algorithm: RawAlgorithm,
    #[serde(default)]
    pub(crate) secret: Option<String>,
    #[serde(default)]
    pub(crate) pem: Option<String>,
}

/// An algorithm name, kept as text so `none` gets its own message.
#[derive(Debug)]
pub(crate) struct RawAlgorithm(pub(crate) Result<JwtAlgorithm, String>);

impl<'de> Deserialize<'de> for RawAlgorithm {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        let alg =
            JwtAlgorithm::deserialize(de::value::StrDeserializer::<de::value::Error>::new(&name));
        Ok(RawAlgorithm(alg.map_err(|_| name)))
    }
}
