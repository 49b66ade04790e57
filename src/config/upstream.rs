//! Upstreams: endpoints, discovery, balancing, health and connection pools.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;

use super::server::Protocol;
use super::units::{Percent, StatusRange, duration, opt_duration};

/// A named set of endpoints that routes send traffic to.
///
/// ```yaml
/// upstreams:
///   - name: users
///     endpoints:
///       - 10.0.0.7:8080
///       - { address: "http://10.0.0.8:8080", weight: 3 }
///     balancing: { consistent_hash: { header: x-user-id } }
///     health_check: { path: /healthz, interval: 5s }
///     outlier_detection: { consecutive_5xx: 5 }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// Name routes refer to; unique.
    pub name: String,
    /// The endpoints; at least one. With DNS discovery each endpoint's host
    /// is re-resolved at the discovery interval.
    pub endpoints: Vec<Endpoint>,
    /// Where endpoints come from. Default: [`Discovery::Static`].
    pub discovery: Discovery,
    /// How an endpoint is picked. Default: [`Balancing::RoundRobin`].
    pub balancing: Balancing,
    /// Active health checks. Default: none (every endpoint is healthy until
    /// outlier detection ejects it).
    pub health_check: Option<HealthCheck>,
    /// Passive outlier ejection. Default: none.
    pub outlier_detection: Option<OutlierDetection>,
    /// Connection pool limits.
    pub pool: Pool,
    /// Protocol spoken to the endpoints. Default: `http1`.
    pub protocol: Protocol,
    /// Upstream timeouts.
    pub timeouts: UpstreamTimeouts,
    /// TLS towards the `https` endpoints: trusted roots, client
    /// certificate, server name. Default: none (Mozilla's roots, no client
    /// certificate, each endpoint's host as the server name).
    pub tls: Option<UpstreamTls>,
}

/// TLS settings towards an upstream's `https` endpoints.
///
/// ```yaml
/// upstreams:
///   - name: payments
///     endpoints: ["https://10.0.0.7:8443", "https://10.0.0.8:8443"]
///     tls:
///       ca: /etc/meshgate/payments-ca.pem      # instead of Mozilla's roots
///       certificate: /etc/meshgate/client.pem  # mutual TLS
///       key: /etc/meshgate/client-key.pem
///       server_name: payments.internal         # SNI and certificate name
/// ```
///
/// The files are read when the gateway is built; one that is missing or
/// does not parse is an error naming its field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTls {
    /// CA certificates (PEM) the endpoints' certificates must chain to,
    /// instead of Mozilla's roots. Default: Mozilla's roots.
    pub ca: Option<std::path::PathBuf>,
    /// Client certificate chain (PEM, leaf first) presented to endpoints
    /// that ask for one; needs `key`. Default: none.
    pub certificate: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM); needs `certificate`.
    pub key: Option<std::path::PathBuf>,
    /// Name sent as SNI and that the endpoints' certificates must cover,
    /// instead of each endpoint's host (for endpoints written as IP
    /// addresses). Default: the endpoint's host.
    pub server_name: Option<String>,
    /// Whether `h2` is offered in ALPN beside `http/1.1`. Default: `true`.
    pub http2: bool,
}

/// One endpoint of an upstream: written `host:port` or as a URL
/// `http://host:port` (`https` too), optionally with a weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http` or `https`. Default: `http`.
    pub scheme: Scheme,
    /// An IP address or a DNS name (lower-cased; IPv6 without brackets).
    pub host: String,
    /// The port; a URL without one gets 80 or 443.
    pub port: u16,
    /// Relative weight, `0` (drained) to `10000`. Default: `1`.
    pub weight: u32,
}

impl Endpoint {
    /// `host:port`, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        match self.ip() {
            Some(IpAddr::V6(_)) => format!("[{}]:{}", self.host, self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }

    /// `scheme://host:port`, the base the load balancer puts in front of a
    /// request's path.
    pub fn base_uri(&self) -> String {
        format!("{}://{}", self.scheme, self.authority())
    }

    /// The host as an IP address, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base_uri())
    }
}

/// The scheme of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scheme {
    /// Cleartext HTTP.
    #[default]
    Http,
    /// HTTP over TLS (needs the gateway's `tls` support).
    Https,
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        })
    }
}

/// Where an upstream's endpoints come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Discovery {
    /// The listed endpoints, resolved once at start-up (`discovery: static`).
    #[default]
    Static,
    /// The listed hosts are re-resolved through DNS at an interval; every
    /// address becomes an endpoint with the port and weight of its entry
    /// (`discovery: { dns: { interval: 30s } }`).
    Dns {
        /// Re-resolution interval. Default: `30s`.
        #[serde(default = "default_dns_interval", with = "duration")]
        interval: Duration,
    },
}

fn default_dns_interval() -> Duration {
    Duration::from_secs(30)
}

/// How the load balancer picks an endpoint.
///
/// Written as a name (`round_robin`, `weighted`, `random`,
/// `least_request`, `peak_ewma`) or, for consistent hashing, a map:
/// `{ consistent_hash: { header: x-user-id } }`, `{ consistent_hash: {
/// cookie: session } }` or `{ consistent_hash: client_ip }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Balancing {
    /// Each endpoint in turn. Endpoint weights must then all be equal (use
    /// `weighted` otherwise).
    #[default]
    RoundRobin,
    /// Smooth weighted round robin by endpoint weight.
    Weighted,
    /// Random, with probability proportional to weight.
    Random,
    /// Fewest requests in flight per unit of weight, of two random choices.
    LeastRequest,
    /// Lowest peak-EWMA latency × requests in flight per unit of weight, of
    /// two random choices (linkerd's defaults: 10 s decay).
    PeakEwma,
    /// A hash ring over the key: the same key reaches the same endpoint, and
    /// only about 1/n keys move when one of n endpoints leaves.
    ConsistentHash(HashOn),
}

/// What consistent hashing hashes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashOn {
    /// The value of a request header.
    #[serde(deserialize_with = "super::fields::header_name")]
    Header(HeaderName),
    /// The value of a cookie.
    Cookie(String),
    /// The client IP (trusted-proxy aware).
    ClientIp,
}

/// Active HTTP health checks, Kong style.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheck {
    /// Path requested with `GET` on each endpoint. Default: `/healthz`.
    pub path: String,
    /// Time between checks of one endpoint. Default: `10s`.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Time a check may take; at most `interval`. Default: `1s`.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Passing checks in a row that make an unhealthy endpoint healthy
    /// (Kong's `healthy.successes`). Default: `2`.
    pub healthy_threshold: u32,
    /// Failing checks in a row that make a healthy endpoint unhealthy
    /// (Kong's `unhealthy.http_failures`). Default: `3`.
    pub unhealthy_threshold: u32,
    /// Statuses that pass. Default: `["200-399"]`.
    pub expected_statuses: Vec<StatusRange>,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            path: "/healthz".to_owned(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            expected_statuses: vec![StatusRange {
                first: 200,
                last: 399,
            }],
        }
    }
}

/// Passive outlier detection, Istio style.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierDetection {
    /// 5xx answers (and connect failures, resets, timeouts) in a row that
    /// eject an endpoint; `0` turns this off. Default: `5` (Istio's
    /// `consecutive5xxErrors`).
    pub consecutive_5xx: u32,
    /// 502/503/504 answers (and connect failures, resets, timeouts) in a row
    /// that eject an endpoint; `0` turns this off. Default: `0` (Istio's
    /// `consecutiveGatewayErrors`).
    pub consecutive_gateway_errors: u32,
    /// How often ejections are reviewed. Default: `10s`.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// An ejection lasts `base_ejection_time × times ejected`. Default: `30s`.
    #[serde(with = "duration")]
    pub base_ejection_time: Duration,
    /// Cap on one ejection. Default: `300s`.
    #[serde(with = "duration")]
    pub max_ejection_time: Duration,
    /// Most endpoints ejected at once, in percent of the set (at least one
    /// endpoint may always be ejected). Default: `10`.
    pub max_ejection_percent: Percent,
    /// When fewer than this percentage of endpoints are healthy, traffic
    /// goes to all of them (Envoy's panic mode); `0` turns it off.
    /// Default: `50`.
    pub panic_threshold: Percent,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_5xx: 5,
            consecutive_gateway_errors: 0,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: Percent::new(10.0).unwrap_or_default(),
            panic_threshold: Percent::new(50.0).unwrap_or_default(),
        }
    }
}

impl Default for UpstreamTls {
    fn default() -> Self {
        UpstreamTls {
            ca: None,
            certificate: None,
            key: None,
            server_name: None,
            http2: true,
        }
    }
}

/// Limits on the connection pool to each endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pool {
    /// Most concurrent requests to one endpoint; past it a request gets
    /// `503` at once. Default: unlimited.
    pub max_requests_per_endpoint: Option<u32>,
    /// Most idle connections kept per endpoint. Default: `32`.
    pub max_idle_per_endpoint: usize,
    /// Idle connections are closed after this. Default: `90s`.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            max_requests_per_endpoint: None,
            max_idle_per_endpoint: 32,
            idle_timeout: Duration::from_secs(90),
        }
    }
}

/// Timeouts towards an upstream's endpoints. The whole request's budget is
/// the route's `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTimeouts {
    /// Time to open a connection (502 past it). Default: `2s`.
    #[serde(with = "duration")]
    pub connect: Duration,
    /// Time from sending the request to the response head (504 past it).
    /// Default: none.
    #[serde(with = "opt_duration")]
    pub response: Option<Duration>,
}

impl Default for UpstreamTimeouts {
    fn default() -> Self {
        UpstreamTimeouts {
            connect: Duration::from_secs(2),
            response: None,
        }
    }
}
