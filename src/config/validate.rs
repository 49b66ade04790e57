//! From the file's shape to the typed model, collecting every problem with
//! the path of its field.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use regex::RegexBuilder;

use super::Config;
use super::auth::{
    ApiKeyAuth, AuthzRule, Consumer, JwksCa, JwtIssuer, JwtKey, JwtKeys, KeyMaterial, RouteAuth,
};
use super::error::{ConfigErrors, Problems};
use super::policy::{
    BodyValue, CachePolicy, CircuitBreakerPolicy, CorsPolicy, Fault, HeaderTransform,
    IpRestriction, Quota, RateLimitBackend, RateLimitKey, RateLimitPolicy, RetryOn, RetryPolicy,
    Transform,
};
use super::raw::{
    RawConfig, RawConsumer, RawEndpoint, RawJwtIssuer, RawMatch, RawRedis, RawRoute, RawSplit,
    RawUpstream, RawValueMatch,
};
use super::route::{
    Aggregation, HeaderMatch, HostMatch, PathMatch, QueryMatch, Rewrite, Route, RouteAction,
    RouteMatch, Split, SplitBackend, SplitOverride, Sticky, ValueMatch,
};
use super::secret::{ApiKeyDigest, EnvLookup, Secret, expand, has_reference};
use super::server::{Listener, Metrics, Redis};
use super::upstream::{
    Balancing, Discovery, Endpoint, HashOn, HealthCheck, OutlierDetection, Scheme, Upstream,
    UpstreamTls,
};

/// The route timeout when a route sets none.
pub(crate) const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers a request id must not be written into: framing, hop-by-hop,
/// routing and trace context ones, whose values the id would replace.
const NOT_FOR_IDS: [&str; 13] = [
    "connection",
    "content-length",
    "content-type",
    "host",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "traceparent",
    "tracestate",
];

/// The most an endpoint or split weight may be.
const MAX_WEIGHT: u32 = 10_000;

struct Validator<'a> {
    problems: Problems,
    env: EnvLookup<'a>,
    /// `request_id.enabled`: templates may read `${request_id}`.
    request_id: bool,
}

pub(crate) fn validate(raw: RawConfig, env: EnvLookup<'_>) -> Result<Config, ConfigErrors> {
    let mut v = Validator {
        problems: Problems::default(),
        env,
        request_id: raw.request_id.enabled,
    };
    let listeners = v.listeners(raw.listeners);
    if raw.admin.enabled
        && raw.admin.address.port() != 0
        && let Some(i) = listeners
            .iter()
            .position(|l| l.address == raw.admin.address)
    {
        v.push(
            "admin.address",
            format!("{} is already used by listeners[{i}]", raw.admin.address),
        );
    }
    for (i, cidr) in raw.trusted_proxies.iter().enumerate() {
        if cidr.prefix() == 0 {
            v.push(
                format!("trusted_proxies[{i}]"),
                format!("{cidr} trusts every peer, so any client could choose its own IP; list the proxies' networks"),
            );
        }
    }
    let id_header = raw.request_id.header.as_str();
    if NOT_FOR_IDS.contains(&id_header) {
        v.push(
            "request_id.header",
            format!(
                "{id_header} has a meaning of its own in HTTP or tracing; choose another header"
            ),
        );
    }
    v.metrics(&raw.metrics);
    let redis = raw.redis.map(|r| v.redis(r));

    let mut tiers = BTreeMap::new();
    for (name, quotas) in raw.rate_limit_tiers {
        let path = format!("rate_limit_tiers.{name}");
        v.name(&path, &name);
        if quotas.is_empty() {
            v.push(&path, "a tier needs at least one quota");
        }
        v.quotas(&path, &quotas);
        tiers.insert(name, quotas);
    }

    let upstreams = v.upstreams(raw.upstreams);
    let consumers = v.consumers(raw.consumers, &tiers);
    let jwt_issuers = v.issuers(raw.jwt_issuers);
    let known = Known {
        upstreams: upstreams.iter().map(|u| u.name.as_str()).collect(),
        consumers: consumers.iter().map(|c| c.name.as_str()).collect(),
        groups: consumers
            .iter()
            .flat_map(|c| c.groups.iter().map(String::as_str))
            .collect(),
        issuers: jwt_issuers.iter().map(|i| i.name.as_str()).collect(),
        has_tiers: !tiers.is_empty(),
        has_redis: redis.is_some(),
    };
    let routes = v.routes(raw.routes, &known);

    let config = Config {
        listeners,
        admin: raw.admin,
        trusted_proxies: raw.trusted_proxies,
        request_id: raw.request_id,
        trace_context: raw.trace_context,
        access_log: raw.access_log,
        metrics: raw.metrics,
        redis,
        upstreams,
        routes,
        consumers,
        jwt_issuers,
        rate_limit_tiers: tiers,
    };
    v.problems.into_result(config)
}

/// Names that references may point at.
struct Known<'a> {
    upstreams: HashSet<&'a str>,
    consumers: HashSet<&'a str>,
    /// Every group some consumer is in.
    groups: HashSet<&'a str>,
    issuers: HashSet<&'a str>,
    has_tiers: bool,
    has_redis: bool,
}

impl Validator<'_> {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(path, message);
    }

    /// Checks a name used as a reference, label or metric value.
    fn name(&mut self, path: &str, name: &str) {
        let valid = name.len() <= 64
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid {
            self.push(
                path,
                format!(
                    "invalid name {name:?} (1-64 letters, digits, '-', '_' or '.', starting with a letter or digit)"
                ),
            );
        }
    }

    /// Checks names are unique in a list; reports each repeat.
    fn unique<'n>(&mut self, what: &str, names: impl Iterator<Item = (String, &'n str)>) {
        let mut seen = HashSet::new();
        for (path, name) in names {
            if !seen.insert(name) {
                self.push(path, format!("duplicate {what} name {name:?}"));
            }
        }
    }

    fn positive(&mut self, path: impl Into<String>, d: Duration) {
        if d.is_zero() {
            self.push(path, "must be more than 0s");
        }
    }

    fn at_least_one(&mut self, path: impl Into<String>, n: u64) {
        if n == 0 {
            self.push(path, "must be at least 1");
        }
    }

    /// Expands `${VAR}` references; on failure reports it and gives `None`.
    fn expand(&mut self, path: &str, template: &str) -> Option<String> {
        match expand(template, self.env) {
            Ok(value) => Some(value),
            Err(e) => {
                self.push(path, e.to_string());
                None
            }
        }
    }

    fn listeners(&mut self, listeners: Option<Vec<Listener>>) -> Vec<Listener> {
        let Some(mut listeners) = listeners else {
            return vec![Listener::default_listener()];
        };
        for (i, l) in listeners.iter_mut().enumerate() {
            if l.name.is_empty() {
                l.name = if i == 0 {
                    "http".to_owned()
                } else {
                    format!("http-{i}")
                };
            }
        }
        if listeners.is_empty() {
            self.push("listeners", "at least one listener is needed");
        }
        self.unique(
            "listener",
            listeners
                .iter()
                .enumerate()
                .map(|(i, l)| (format!("listeners[{i}].name"), l.name.as_str())),
        );
        let mut addresses = HashMap::new();
        for (i, l) in listeners.iter().enumerate() {
            let path = format!("listeners[{i}]");
            self.name(&format!("{path}.name"), &l.name);
            // Port 0 asks the OS for a free port: never a clash.
            if l.address.port() != 0
                && let Some(first) = addresses.insert(l.address, i)
            {
                addresses.insert(l.address, first);
                self.push(
                    format!("{path}.address"),
                    format!("{} is already used by listeners[{first}]", l.address),
                );
            }
            if l.protocols.is_empty() {
                self.push(
                    format!("{path}.protocols"),
                    "at least one protocol is needed",
                );
            }
            let distinct: HashSet<_> = l.protocols.iter().collect();
            if distinct.len() != l.protocols.len() {
                self.push(format!("{path}.protocols"), "a protocol is listed twice");
            }
            let limits = &l.limits;
            if limits.max_header_bytes.as_u64() < 1024 {
                self.push(
                    format!("{path}.limits.max_header_bytes"),
                    "must be at least 1KiB",
                );
            }
            self.at_least_one(
                format!("{path}.limits.max_headers"),
                limits.max_headers as u64,
            );
            self.at_least_one(
                format!("{path}.limits.max_connections"),
                limits.max_connections as u64,
            );
            self.positive(
                format!("{path}.limits.header_read_timeout"),
                limits.header_read_timeout,
            );
        }
        listeners
    }

    fn metrics(&mut self, m: &Metrics) {
        if !m.path.starts_with('/') {
            self.push("metrics.path", format!("{:?} must start with '/'", m.path));
        } else if ["/healthz", "/readyz", "/admin/status"].contains(&m.path.as_str()) {
            self.push(
                "metrics.path",
                format!("{:?} is taken by the admin listener", m.path),
            );
        }
        let valid_prefix = m
            .prefix
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && m.prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid_prefix {
            self.push(
                "metrics.prefix",
                format!(
                    "invalid metric prefix {:?} (letters, digits and '_', not starting with a digit)",
                    m.prefix
                ),
            );
        }
        let increasing = m.latency_buckets.windows(2).all(|w| w[0] < w[1]);
        let finite = m.latency_buckets.iter().all(|b| b.is_finite() && *b > 0.0);
        if m.latency_buckets.is_empty() || !increasing || !finite {
            self.push(
                "metrics.latency_buckets",
                "must be positive numbers of seconds in increasing order",
            );
        }
    }

    fn redis(&mut self, r: RawRedis) -> Redis {
        let expanded = self.expand("redis.url", &r.url);
        let valid = |u: &str| {
            ["redis://", "rediss://", "unix://"]
                .iter()
                .any(|s| u.len() > s.len() && u.starts_with(s))
        };
        let url = expanded.clone().unwrap_or_default();
        if expanded.is_some_and(|u| !valid(&u)) {
            // The URL may hold a password: never echo it.
            self.push(
                "redis.url",
                "must start with redis://, rediss:// or unix://",
            );
        }
        self.positive("redis.connect_timeout", r.connect_timeout);
        self.positive("redis.command_timeout", r.command_timeout);
        Redis {
            url: Secret::new(url),
            connect_timeout: r.connect_timeout,
            command_timeout: r.command_timeout,
            key_prefix: r.key_prefix,
        }
    }

    fn quotas(&mut self, path: &str, quotas: &[Quota]) {
        for (i, q) in quotas.iter().enumerate() {
            let path = format!("{path}[{i}]");
            self.at_least_one(format!("{path}.limit"), q.limit);
            self.positive(format!("{path}.per"), q.per);
            if let Some(burst) = q.burst {
                self.at_least_one(format!("{path}.burst"), burst);
            }
        }
    }

    fn upstreams(&mut self, raw: Vec<RawUpstream>) -> Vec<Upstream> {
        self.unique(
            "upstream",
            raw.iter()
                .enumerate()
                .map(|(i, u)| (format!("upstreams[{i}].name"), u.name.as_str())),
        );
        raw.into_iter()
            .enumerate()
            .map(|(i, u)| self.upstream(&format!("upstreams[{i}]"), u))
            .collect()
    }

    fn upstream(&mut self, path: &str, u: RawUpstream) -> Upstream {
        self.name(&format!("{path}.name"), &u.name);
        if u.endpoints.is_empty() {
            self.push(
                format!("{path}.endpoints"),
                "at least one endpoint is needed",
            );
        }
        let endpoints: Vec<Endpoint> = u
            .endpoints
            .iter()
            .enumerate()
            .filter_map(|(j, e)| self.endpoint(&format!("{path}.endpoints[{j}]"), e))
            .collect();
        if !u.endpoints.is_empty()
            && u.endpoints.iter().map(|e| u64::from(e.weight)).sum::<u64>() == 0
        {
            self.push(format!("{path}.endpoints"), "weights sum to 0");
        }
        let mut weights = u.endpoints.iter().map(|e| e.weight);
        let first = weights.next();
        if u.balancing == Balancing::RoundRobin && weights.any(|w| Some(w) != first) {
            self.push(
                format!("{path}.balancing"),
                "round_robin ignores endpoint weights; use weighted",
            );
        }
        if let Discovery::Dns { interval } = u.discovery {
            self.positive(format!("{path}.discovery.dns.interval"), interval);
        }
        if let Balancing::ConsistentHash(HashOn::Cookie(name)) = &u.balancing {
            self.cookie_name(&format!("{path}.balancing.consistent_hash.cookie"), name);
        }
        if let Some(h) = &u.health_check {
            self.health_check(&format!("{path}.health_check"), h);
        }
        if let Some(o) = &u.outlier_detection {
            self.outlier(&format!("{path}.outlier_detection"), o);
        }
        if u.pool.max_requests_per_endpoint == Some(0) {
            self.push(
                format!("{path}.pool.max_requests_per_endpoint"),
                "must be at least 1",
            );
        }
        self.positive(format!("{path}.timeouts.connect"), u.timeouts.connect);
        if let Some(response) = u.timeouts.response {
            self.positive(format!("{path}.timeouts.response"), response);
        }
        if let Some(tls) = &u.tls {
            self.upstream_tls(path, tls, &endpoints);
        }
        Upstream {
            name: u.name,
            endpoints,
            discovery: u.discovery,
            balancing: u.balancing,
            health_check: u.health_check,
            outlier_detection: u.outlier_detection,
            pool: u.pool,
            protocol: u.protocol,
            timeouts: u.timeouts,
            tls: u.tls,
        }
    }

    fn upstream_tls(&mut self, path: &str, tls: &UpstreamTls, endpoints: &[Endpoint]) {
        match (&tls.certificate, &tls.key) {
            (Some(_), None) => self.push(
                format!("{path}.tls.key"),
                "a client certificate needs its key",
            ),
            (None, Some(_)) => self.push(
                format!("{path}.tls.certificate"),
                "a key needs its client certificate",
            ),
            _ => {}
        }
        if let Some(name) = &tls.server_name
            && !valid_server_name(name)
        {
            self.push(
                format!("{path}.tls.server_name"),
                format!("{name:?} is neither a DNS name nor an IP address"),
            );
        }
        if !endpoints.is_empty() && endpoints.iter().all(|e| e.scheme != Scheme::Https) {
            self.push(
                format!("{path}.tls"),
                "no endpoint is https, so TLS settings would not apply",
            );
        }
    }

    fn endpoint(&mut self, path: &str, e: &RawEndpoint) -> Option<Endpoint> {
        if e.weight > MAX_WEIGHT {
            self.push(
                format!("{path}.weight"),
                format!("weight {} is above {MAX_WEIGHT}", e.weight),
            );
        }
        let address = self.expand(path, &e.address)?;
        match parse_endpoint(&address) {
            Ok((scheme, host, port)) => Some(Endpoint {
                scheme,
                host,
                port,
                weight: e.weight,
            }),
            Err(reason) => {
                self.push(path, format!("invalid address {address:?}: {reason}"));
                None
            }
        }
    }

    fn health_check(&mut self, path: &str, h: &HealthCheck) {
        if !h.path.starts_with('/') {
            self.push(
                format!("{path}.path"),
                format!("{:?} must start with '/'", h.path),
            );
        }
        self.positive(format!("{path}.interval"), h.interval);
        self.positive(format!("{path}.timeout"), h.timeout);
        if h.timeout > h.interval {
            self.push(
                format!("{path}.timeout"),
                format!(
                    "{} is longer than the interval {}",
                    super::Duration(h.timeout),
                    super::Duration(h.interval)
                ),
            );
        }
        self.at_least_one(
            format!("{path}.healthy_threshold"),
            h.healthy_threshold.into(),
        );
        self.at_least_one(
            format!("{path}.unhealthy_threshold"),
            h.unhealthy_threshold.into(),
        );
        if h.expected_statuses.is_empty() {
            self.push(
                format!("{path}.expected_statuses"),
                "at least one status is needed",
            );
        }
    }

    fn outlier(&mut self, path: &str, o: &OutlierDetection) {
        if o.consecutive_5xx == 0 && o.consecutive_gateway_errors == 0 {
            self.push(
                path,
                "consecutive_5xx and consecutive_gateway_errors are both 0: nothing would eject",
            );
        }
        self.positive(format!("{path}.interval"), o.interval);
        self.positive(format!("{path}.base_ejection_time"), o.base_ejection_time);
        if o.max_ejection_time < o.base_ejection_time {
            self.push(
                format!("{path}.max_ejection_time"),
                "must be at least base_ejection_time",
            );
        }
    }

    fn cookie_name(&mut self, path: &str, name: &str) {
        // RFC 6265: a cookie name is an HTTP token.
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            self.push(path, format!("invalid cookie name {name:?}"));
        }
    }

    fn consumers(
        &mut self,
        raw: Vec<RawConsumer>,
        tiers: &BTreeMap<String, Vec<Quota>>,
    ) -> Vec<Consumer> {
        self.unique(
            "consumer",
            raw.iter()
                .enumerate()
                .map(|(i, c)| (format!("consumers[{i}].name"), c.name.as_str())),
        );
        let mut owners: HashMap<ApiKeyDigest, String> = HashMap::new();
        let mut consumers = Vec::with_capacity(raw.len());
        for (i, c) in raw.into_iter().enumerate() {
            let path = format!("consumers[{i}]");
            self.name(&format!("{path}.name"), &c.name);
            if let Some(tier) = &c.tier
                && !tiers.contains_key(tier)
            {
                self.push(format!("{path}.tier"), format!("unknown tier {tier:?}"));
            }
            let mut groups: Vec<String> = Vec::with_capacity(c.groups.len());
            for (j, group) in c.groups.into_iter().enumerate() {
                let group_path = format!("{path}.groups[{j}]");
                self.name(&group_path, &group);
                if groups.contains(&group) {
                    self.push(group_path, format!("duplicate group {group:?}"));
                } else {
                    groups.push(group);
                }
            }
            let mut keys = Vec::new();
            for (j, key) in c.keys.iter().enumerate() {
                let key_path = format!("{path}.keys[{j}]");
                let digest = if has_reference(key) {
                    match self.expand(&key_path, key) {
                        Some(plain) if plain.is_empty() => {
                            self.push(&key_path, "the key is empty");
                            None
                        }
                        Some(plain) => Some(ApiKeyDigest::of_key(&plain)),
                        None => None,
                    }
                } else {
                    let digest = ApiKeyDigest::from_hex(key.trim());
                    if digest.is_none() {
                        // The text may be a plain key pasted by mistake: never echo it.
                        self.push(
                            &key_path,
                            "expected a SHA-256 digest (64 hex digits) or a ${VAR} reference to a plain key",
                        );
                    }
                    digest
                };
                let Some(digest) = digest else { continue };
                if let Some(owner) = owners.get(&digest) {
                    self.push(
                        &key_path,
                        format!("the same key is already given to consumer {owner:?}"),
                    );
                } else {
                    owners.insert(digest, c.name.clone());
                }
                keys.push(digest);
            }
            consumers.push(Consumer {
                id: c.id.unwrap_or_else(|| c.name.clone()),
                name: c.name,
                tier: c.tier,
                groups,
                keys,
                metadata: c.metadata,
            });
        }
        self.unique(
            "consumer id",
            consumers
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("consumers[{i}].id"), c.id.as_str())),
        );
        consumers
    }

    fn issuers(&mut self, raw: Vec<RawJwtIssuer>) -> Vec<JwtIssuer> {
        self.unique(
            "issuer",
            raw.iter()
                .enumerate()
                .map(|(i, c)| (format!("jwt_issuers[{i}].name"), c.name.as_str())),
        );
        raw.into_iter()
            .enumerate()
            .map(|(i, r)| self.issuer(&format!("jwt_issuers[{i}]"), r))
            .collect()
    }

    fn issuer(&mut self, path: &str, r: RawJwtIssuer) -> JwtIssuer {
        self.name(&format!("{path}.name"), &r.name);
        if r.issuer.trim().is_empty() {
            self.push(format!("{path}.issuer"), "must not be empty");
        }
        if r.jwks_ca.is_some() && r.jwks_url.is_none() {
            self.push(format!("{path}.jwks_ca"), "only used with jwks_url");
        }
        let keys = match (&r.jwks_url, r.keys.is_empty()) {
            (Some(_), false) => {
                self.push(path, "give either jwks_url or keys, not both");
                JwtKeys::Static(Vec::new())
            }
            (None, true) => {
                self.push(path, "needs jwks_url or keys");
                JwtKeys::Static(Vec::new())
            }
            (Some(url), true) => {
                let url_path = format!("{path}.jwks_url");
                let expanded = self.expand(&url_path, url);
                let valid = |u: &str| {
                    ["https://", "http://"]
                        .iter()
                        .any(|s| u.len() > s.len() && u.starts_with(s))
                };
                if expanded.as_deref().is_some_and(|u| !valid(u)) {
                    self.push(&url_path, "must be an http:// or https:// URL");
                }
                let url = expanded.unwrap_or_default();
                let ca = r
                    .jwks_ca
                    .as_deref()
                    .and_then(|ca| self.jwks_ca(&format!("{path}.jwks_ca"), ca, &url));
                self.positive(
                    format!("{path}.jwks_refresh_interval"),
                    r.jwks_refresh_interval,
                );
                self.positive(
                    format!("{path}.jwks_min_refresh_interval"),
                    r.jwks_min_refresh_interval,
                );
                if r.jwks_min_refresh_interval > r.jwks_refresh_interval {
                    self.push(
                        format!("{path}.jwks_min_refresh_interval"),
                        "must not be longer than jwks_refresh_interval",
                    );
                }
                JwtKeys::Jwks {
                    url,
                    refresh_interval: r.jwks_refresh_interval,
                    min_refresh_interval: r.jwks_min_refresh_interval,
                    ca,
                }
            }
            (None, false) => JwtKeys::Static(self.jwt_keys(path, r.keys)),
        };
        let claims_to_headers = match r.claims_to_headers {
            None => vec![
                ("sub".to_owned(), HeaderName::from_static("x-user-id")),
                ("roles".to_owned(), HeaderName::from_static("x-user-roles")),
            ],
            Some(map) => map
                .into_iter()
                .filter_map(
                    |(claim, header)| match HeaderName::from_bytes(header.as_bytes()) {
                        Ok(name) => Some((claim, name)),
                        Err(_) => {
                            self.push(
                                format!("{path}.claims_to_headers.{claim}"),
                                format!("invalid header name {header:?}"),
                            );
                            None
                        }
                    },
                )
                .collect(),
        };
        JwtIssuer {
            name: r.name,
            issuer: r.issuer,
            audiences: r.audiences,
            keys,
            leeway: r.leeway,
            claims_to_headers,
        }
    }

    /// `jwks_ca`: PEM text when it holds a PEM block, else a file path
    /// (read when the gateway is built); only for an `https` URL.
    fn jwks_ca(&mut self, path: &str, ca: &str, url: &str) -> Option<JwksCa> {
        if url.starts_with("http://") {
            self.push(path, "only used with an https:// jwks_url");
        }
        let ca = ca.trim();
        if ca.is_empty() {
            self.push(path, "must not be empty (a PEM bundle or the path of one)");
            None
        } else if ca.starts_with("-----BEGIN ") {
            if !ca.contains("-----BEGIN CERTIFICATE-----") {
                self.push(
                    path,
                    "the PEM holds no certificate (expected -----BEGIN CERTIFICATE-----)",
                );
            }
            Some(JwksCa::Pem(ca.to_owned()))
        } else {
            Some(JwksCa::File(ca.into()))
        }
    }

    fn jwt_keys(&mut self, path: &str, raw: Vec<super::raw::RawJwtKey>) -> Vec<JwtKey> {
        let mut kids = HashSet::new();
        let mut keys = Vec::new();
        for (j, k) in raw.into_iter().enumerate() {
            let path = format!("{path}.keys[{j}]");
            if let Some(kid) = &k.kid
                && !kids.insert(kid.clone())
            {
                self.push(format!("{path}.kid"), format!("duplicate kid {kid:?}"));
            }
            let algorithm = match k.algorithm.0 {
                Ok(alg) => alg,
                Err(name) => {
                    let message = if name.eq_ignore_ascii_case("none") {
                        "\"none\" is never accepted: tokens must be signed".to_owned()
                    } else {
                        format!(
                            "unknown algorithm {name:?} (expected HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA)"
                        )
                    };
                    self.push(format!("{path}.algorithm"), message);
                    continue;
                }
            };
            let material = if algorithm.is_hmac() {
                if k.pem.is_some() {
                    self.push(
                        format!("{path}.pem"),
                        format!("{algorithm:?} uses a secret, not a PEM key"),
                    );
                }
                let Some(secret) = &k.secret else {
                    self.push(path, format!("{algorithm:?} needs a secret"));
                    continue;
                };
                let secret_path = format!("{path}.secret");
                let Some(secret) = self.expand(&secret_path, secret) else {
                    continue;
                };
                if secret.len() < algorithm.min_secret_len() {
                    self.push(
                        secret_path,
                        format!(
                            "a {algorithm:?} secret needs at least {} bytes",
                            algorithm.min_secret_len()
                        ),
                    );
                }
                KeyMaterial::Secret(Secret::new(secret))
            } else {
                if k.secret.is_some() {
                    self.push(
                        format!("{path}.secret"),
                        format!("{algorithm:?} uses a PEM public key, not a secret"),
                    );
                }
                let Some(pem) = k.pem else {
                    self.push(path, format!("{algorithm:?} needs a pem public key"));
                    continue;
                };
                if !pem.trim_start().starts_with("-----BEGIN ") {
                    self.push(
                        format!("{path}.pem"),
                        "not a PEM block (expected -----BEGIN PUBLIC KEY-----)",
                    );
                }
                KeyMaterial::Pem(pem)
            };
            keys.push(JwtKey {
                kid: k.kid,
                algorithm,
                material,
            });
        }
        keys
    }

    fn routes(&mut self, raw: Vec<RawRoute>, known: &Known<'_>) -> Vec<Route> {
        self.unique(
            "route",
            raw.iter()
                .enumerate()
                .map(|(i, r)| (format!("routes[{i}].name"), r.name.as_str())),
        );
        let routes: Vec<Route> = raw
            .into_iter()
            .enumerate()
            .map(|(i, r)| self.route(&format!("routes[{i}]"), r, known))
            .collect();
        // Only on otherwise valid routes: a matcher with a dropped (invalid)
        // condition would look wider than it is.
        if self.problems.is_empty() {
            self.overlapping_routes(&routes);
        }
        routes
    }

    /// Two routes with the same priority and the same conditions would be
    /// chosen between arbitrarily: refuse the later one. (Routes with header
    /// or query conditions are left alone: comparing regexes is not worth
    /// it.)
    fn overlapping_routes(&mut self, routes: &[Route]) {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, route) in routes.iter().enumerate() {
            let m = &route.matcher;
            if !m.headers.is_empty() || !m.query.is_empty() {
                continue;
            }
            let sorted = |mut items: Vec<String>| {
                items.sort();
                items.dedup();
                items.join(",")
            };
            let key = format!(
                "{}|{}|{}|{}",
                route.priority,
                sorted(m.hosts.iter().map(|h| format!("{h:?}")).collect()),
                sorted(m.paths.iter().map(|p| format!("{p:?}")).collect()),
                sorted(m.methods.iter().map(ToString::to_string).collect()),
            );
            if let Some(first) = seen.get(&key) {
                self.push(
                    format!("routes[{i}].match"),
                    format!(
                        "matches the same requests as routes[{first}] ({:?}); give one a higher priority",
                        routes[*first].name
                    ),
                );
            } else {
                seen.insert(key, i);
            }
        }
    }

    fn route(&mut self, path: &str, r: RawRoute, known: &Known<'_>) -> Route {
        self.name(&format!("{path}.name"), &r.name);
        let matcher = self.matcher(&format!("{path}.match"), r.matcher);
        let given = [
            r.upstream.is_some(),
            r.split.is_some(),
            r.terminate.is_some(),
            r.aggregate.is_some(),
        ];
        let action = match given.iter().filter(|given| **given).count() {
            0 => {
                self.push(path, "needs one of upstream, split, terminate or aggregate");
                RouteAction::Upstream(String::new())
            }
            2.. => {
                self.push(
                    path,
                    "give only one of upstream, split, terminate or aggregate",
                );
                RouteAction::Upstream(String::new())
            }
            _ => {
                if let Some(upstream) = r.upstream {
                    self.known_upstream(&format!("{path}.upstream"), &upstream, known);
                    RouteAction::Upstream(upstream)
                } else if let Some(split) = r.split {
                    RouteAction::Split(self.split(&format!("{path}.split"), split, known))
                } else if let Some(aggregate) = r.aggregate {
                    self.aggregation(&format!("{path}.aggregate"), &aggregate, known);
                    RouteAction::Aggregate(aggregate)
                } else if let Some(terminate) = r.terminate {
                    RouteAction::Terminate(terminate)
                } else {
                    RouteAction::Upstream(String::new())
                }
            }
        };
        if let Some(prefix) = &r.strip_prefix {
            self.strip_prefix(&format!("{path}.strip_prefix"), prefix, &matcher);
            if r.rewrite.path.is_some() {
                self.push(path, "strip_prefix and rewrite.path cannot both be set");
            }
        }
        if let Some(p) = &r.rewrite.path
            && !p.starts_with('/')
        {
            self.push(
                format!("{path}.rewrite.path"),
                format!("{p:?} must start with '/'"),
            );
        }
        if let Some(host) = &r.rewrite.host
            && (host.is_empty() || HeaderValue::from_str(host).is_err() || host.contains('/'))
        {
            self.push(
                format!("{path}.rewrite.host"),
                format!("invalid host {host:?}"),
            );
        }
        let timeout = r.timeout.unwrap_or(DEFAULT_ROUTE_TIMEOUT);
        if r.timeout.is_some() {
            self.positive(format!("{path}.timeout"), timeout);
        }
        if let Some(retry) = &r.retry {
            self.retry(&format!("{path}.retry"), retry, timeout);
        }
        if let Some(cb) = &r.circuit_breaker {
            self.breaker(&format!("{path}.circuit_breaker"), cb);
        }
        if let Some(cache) = &r.cache {
            self.cache(&format!("{path}.cache"), cache);
        }
        if let Some(auth) = &r.auth {
            self.auth(&format!("{path}.auth"), auth, known);
        }
        if let Some(limit) = &r.rate_limit {
            self.rate_limit(&format!("{path}.rate_limit"), limit, r.auth.as_ref(), known);
        }
        if let Some(cors) = &r.cors {
            self.cors(&format!("{path}.cors"), cors);
        }
        if let Some(fault) = &r.fault {
            self.fault(&format!("{path}.fault"), fault);
        }
        if let Some(transform) = &r.transform {
            self.transform(&format!("{path}.transform"), transform);
        }
        if let Some(ip) = &r.ip_restriction {
            self.ip_restriction(&format!("{path}.ip_restriction"), ip);
        }
        Route {
            name: r.name,
            priority: r.priority,
            matcher,
            action,
            strip_prefix: r.strip_prefix,
            rewrite: Rewrite {
                path: r.rewrite.path,
                host: r.rewrite.host,
            },
            timeout,
            retry: r.retry,
            circuit_breaker: r.circuit_breaker,
            cache: r.cache,
            rate_limit: r.rate_limit,
            auth: r.auth,
            cors: r.cors,
            transform: r.transform,
            fault: r.fault,
            ip_restriction: r.ip_restriction,
        }
    }

    fn matcher(&mut self, path: &str, m: RawMatch) -> RouteMatch {
        let mut hosts = Vec::new();
        for (i, host) in m.hosts.iter().enumerate() {
            match parse_host_match(host) {
                Some(h) => hosts.push(h),
                None => self.push(
                    format!("{path}.hosts[{i}]"),
                    format!("invalid host {host:?}"),
                ),
            }
        }
        for (i, p) in m.paths.iter().enumerate() {
            let (kind, text) = match p {
                PathMatch::Exact(t) => ("exact", t),
                PathMatch::Prefix(t) => ("prefix", t),
                PathMatch::Template(t) => ("template", t),
            };
            let at = format!("{path}.paths[{i}].{kind}");
            if !text.starts_with('/') {
                self.push(at, format!("{text:?} must start with '/'"));
            } else if let PathMatch::Template(t) = p
                && let Err(reason) = check_template(t)
            {
                self.push(at, format!("invalid template {t:?}: {reason}"));
            }
        }
        let mut methods = Vec::new();
        for (i, name) in m.methods.iter().enumerate() {
            match super::fields::parse_method::<serde::de::value::Error>(name) {
                Ok(method) => methods.push(method),
                Err(e) => self.push(format!("{path}.methods[{i}]"), e.to_string()),
            }
        }
        let mut headers = Vec::new();
        for (i, h) in m.headers.iter().enumerate() {
            let at = format!("{path}.headers[{i}]");
            let name = match HeaderName::from_bytes(h.name.as_bytes()) {
                Ok(name) => Some(name),
                Err(_) => {
                    self.push(
                        format!("{at}.name"),
                        format!("invalid header name {:?}", h.name),
                    );
                    None
                }
            };
            let value = self.value_match(&at, h);
            if let (Some(name), Some(value)) = (name, value) {
                headers.push(HeaderMatch { name, value });
            }
        }
        let mut query = Vec::new();
        for (i, q) in m.query.iter().enumerate() {
            let at = format!("{path}.query[{i}]");
            if q.name.is_empty() {
                self.push(format!("{at}.name"), "must not be empty");
            }
            if let Some(value) = self.value_match(&at, q) {
                query.push(QueryMatch {
                    name: q.name.clone(),
                    value,
                });
            }
        }
        RouteMatch {
            hosts,
            paths: m.paths,
            methods,
            headers,
            query,
        }
    }

    fn value_match(&mut self, path: &str, m: &RawValueMatch) -> Option<ValueMatch> {
        let given = usize::from(m.exact.is_some())
            + usize::from(m.regex.is_some())
            + usize::from(m.present.is_some())
            + usize::from(m.absent.is_some());
        if given != 1 {
            self.push(path, "give exactly one of exact, regex, present or absent");
            return None;
        }
        if let Some(exact) = &m.exact {
            return Some(ValueMatch::Exact(exact.clone()));
        }
        if let Some(pattern) = &m.regex {
            // Anchored: the whole value must match, as in Envoy.
            return match RegexBuilder::new(&format!("^(?:{pattern})$"))
                .size_limit(1 << 20)
                .build()
            {
                Ok(re) => Some(ValueMatch::Regex(re)),
                Err(e) => {
                    let reason = match e {
                        regex::Error::CompiledTooBig(_) => {
                            "the compiled regex is too big".to_owned()
                        }
                        other => other
                            .to_string()
                            .lines()
                            .last()
                            .unwrap_or_default()
                            .trim()
                            .trim_start_matches("error: ")
                            .to_owned(),
                    };
                    self.push(
                        format!("{path}.regex"),
                        format!("invalid regex {pattern:?}: {reason}"),
                    );
                    None
                }
            };
        }
        match (m.present, m.absent) {
            (Some(true), None) => Some(ValueMatch::Present),
            (None, Some(true)) => Some(ValueMatch::Absent),
            _ => {
                self.push(path, "present and absent can only be true");
                None
            }
        }
    }

    fn strip_prefix(&mut self, path: &str, prefix: &str, matcher: &RouteMatch) {
        if !prefix.starts_with('/') || prefix.len() < 2 || prefix.ends_with('/') {
            self.push(
                path,
                format!("{prefix:?} must start with '/', not end with '/', and not be just \"/\""),
            );
            return;
        }
        for p in &matcher.paths {
            let text = match p {
                PathMatch::Exact(t) | PathMatch::Prefix(t) | PathMatch::Template(t) => t,
            };
            let under = text == prefix
                || text
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'));
            if !under {
                self.push(path, format!("{prefix:?} is not a prefix of path {text:?}"));
            }
        }
    }

    fn known_upstream(&mut self, path: &str, upstream: &str, known: &Known<'_>) {
        if !known.upstreams.contains(upstream) {
            self.push(path, format!("unknown upstream {upstream:?}"));
        }
    }

    fn aggregation(&mut self, path: &str, a: &Aggregation, known: &Known<'_>) {
        if a.calls.is_empty() {
            self.push(format!("{path}.calls"), "at least one call is needed");
        }
        self.unique(
            "call key",
            a.calls
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("{path}.calls[{i}].key"), c.key.as_str())),
        );
        for (i, call) in a.calls.iter().enumerate() {
            let at = format!("{path}.calls[{i}]");
            if call.key.is_empty() {
                self.push(format!("{at}.key"), "must not be empty");
            }
            self.known_upstream(&format!("{at}.upstream"), &call.upstream, known);
            // Placeholders are checked when the gateway builds the call.
            if !call.uri.starts_with('/') {
                self.push(
                    format!("{at}.uri"),
                    format!("{:?} must be a path starting with '/'", call.uri),
                );
            }
            if let Some(timeout) = call.timeout {
                self.positive(format!("{at}.timeout"), timeout);
            }
        }
        if let Some(deadline) = a.deadline {
            self.positive(format!("{path}.deadline"), deadline);
        }
        if a.concurrency == 0 {
            self.push(format!("{path}.concurrency"), "must be at least 1");
        }
        if a.max_body.as_u64() == 0 {
            self.push(format!("{path}.max_body"), "must be at least 1 byte");
        }
    }

    fn split(&mut self, path: &str, s: RawSplit, known: &Known<'_>) -> Split {
        if s.backends.is_empty() {
            self.push(format!("{path}.backends"), "at least one backend is needed");
        }
        let mut seen = HashSet::new();
        for (i, b) in s.backends.iter().enumerate() {
            self.known_upstream(
                &format!("{path}.backends[{i}].upstream"),
                &b.upstream,
                known,
            );
            if !seen.insert(b.upstream.as_str()) {
                self.push(
                    format!("{path}.backends[{i}].upstream"),
                    format!("upstream {:?} is listed twice", b.upstream),
                );
            }
            if b.weight > MAX_WEIGHT {
                self.push(
                    format!("{path}.backends[{i}].weight"),
                    format!("weight {} is above {MAX_WEIGHT}", b.weight),
                );
            }
        }
        if !s.backends.is_empty()
            && s.backends.iter().map(|b| u64::from(b.weight)).sum::<u64>() == 0
        {
            self.push(path, "weights sum to 0");
        }
        let mut overrides = Vec::new();
        for (i, o) in s.overrides.iter().enumerate() {
            let at = format!("{path}.overrides[{i}]");
            if !seen.contains(o.upstream.as_str()) {
                self.push(
                    format!("{at}.upstream"),
                    format!("{:?} is not a backend of this split", o.upstream),
                );
            }
            let on = match (&o.header, &o.cookie) {
                (Some(h), None) => match HeaderName::from_bytes(h.as_bytes()) {
                    Ok(name) => Some(Sticky::Header(name)),
                    Err(_) => {
                        self.push(format!("{at}.header"), format!("invalid header name {h:?}"));
                        None
                    }
                },
                (None, Some(c)) => {
                    self.cookie_name(&format!("{at}.cookie"), c);
                    Some(Sticky::Cookie(c.clone()))
                }
                _ => {
                    self.push(&at, "give exactly one of header or cookie");
                    None
                }
            };
            if let Some(on) = on {
                overrides.push(SplitOverride {
                    on,
                    value: o.value.clone(),
                    upstream: o.upstream.clone(),
                });
            }
        }
        if let Some(Sticky::Cookie(c)) = &s.sticky {
            self.cookie_name(&format!("{path}.sticky.cookie"), c);
        }
        Split {
            backends: s
                .backends
                .into_iter()
                .map(|b| SplitBackend {
                    upstream: b.upstream,
                    weight: b.weight,
                })
                .collect(),
            overrides,
            sticky: s.sticky,
        }
    }

    fn retry(&mut self, path: &str, r: &RetryPolicy, route_timeout: Duration) {
        if !(1..=10).contains(&r.attempts) {
            self.push(
                format!("{path}.attempts"),
                format!("{} is out of range 1-10", r.attempts),
            );
        }
        self.positive(format!("{path}.backoff.base"), r.backoff.base);
        if r.backoff.cap < r.backoff.base {
            self.push(
                format!("{path}.backoff.cap"),
                "must be at least backoff.base",
            );
        }
        if let Some(per_try) = r.per_try_timeout {
            self.positive(format!("{path}.per_try_timeout"), per_try);
            if per_try >= route_timeout {
                self.push(
                    format!("{path}.per_try_timeout"),
                    format!(
                        "{} leaves no time for a retry within the route timeout {}",
                        super::Duration(per_try),
                        super::Duration(route_timeout)
                    ),
                );
            }
        }
        if r.retry_on.is_empty() {
            self.push(
                format!("{path}.retry_on"),
                "at least one condition is needed",
            );
        }
        let has = |c| r.retry_on.contains(&c);
        match (
            has(RetryOn::RetriableStatusCodes),
            r.retriable_status_codes.is_empty(),
        ) {
            (true, true) => self.push(
                format!("{path}.retriable_status_codes"),
                "retry_on has retriable-status-codes but no codes are listed",
            ),
            (false, false) => self.push(
                format!("{path}.retry_on"),
                "retriable_status_codes are listed but retry_on lacks retriable-status-codes",
            ),
            _ => {}
        }
        match (
            has(RetryOn::RetriableHeaders),
            r.retriable_headers.is_empty(),
        ) {
            (true, true) => self.push(
                format!("{path}.retriable_headers"),
                "retry_on has retriable-headers but no headers are listed",
            ),
            (false, false) => self.push(
                format!("{path}.retry_on"),
                "retriable_headers are listed but retry_on lacks retriable-headers",
            ),
            _ => {}
        }
        self.positive(format!("{path}.budget.window"), r.budget.window);
    }

    fn breaker(&mut self, path: &str, cb: &CircuitBreakerPolicy) {
        self.at_least_one(
            format!("{path}.consecutive_failures"),
            cb.consecutive_failures.into(),
        );
        if let Some(rate) = &cb.failure_rate {
            if rate.threshold.get() <= 0.0 {
                self.push(
                    format!("{path}.failure_rate.threshold"),
                    "must be more than 0",
                );
            }
            self.positive(format!("{path}.failure_rate.window"), rate.window);
            self.at_least_one(
                format!("{path}.failure_rate.min_calls"),
                rate.min_calls.into(),
            );
        }
        if let Some(slow) = cb.slow_call {
            self.positive(format!("{path}.slow_call"), slow);
        }
        self.positive(format!("{path}.open_for"), cb.open_for);
        if cb.max_open_for < cb.open_for {
            self.push(format!("{path}.max_open_for"), "must be at least open_for");
        }
        self.at_least_one(
            format!("{path}.half_open_probes"),
            cb.half_open_probes.into(),
        );
    }

    fn cache(&mut self, path: &str, c: &CachePolicy) {
        self.positive(format!("{path}.ttl"), c.ttl);
        self.at_least_one(format!("{path}.max_body"), c.max_body.as_u64());
    }

    fn rate_limit(
        &mut self,
        path: &str,
        r: &RateLimitPolicy,
        auth: Option<&RouteAuth>,
        known: &Known<'_>,
    ) {
        if r.quotas.is_empty() && !r.tiers {
            self.push(format!("{path}.quotas"), "at least one quota is needed");
        }
        self.quotas(&format!("{path}.quotas"), &r.quotas);
        if r.tiers && !known.has_tiers {
            self.push(format!("{path}.tiers"), "no rate_limit_tiers are defined");
        }
        let has_api_key = auth.is_some_and(|a| a.api_key.is_some());
        let has_jwt = auth.is_some_and(|a| a.jwt.is_some());
        if r.tiers && !has_api_key {
            self.push(
                format!("{path}.tiers"),
                "tiers need auth.api_key on the route",
            );
        }
        let keys: Vec<&RateLimitKey> = match &r.key {
            RateLimitKey::Composite(parts) => {
                if parts.is_empty() {
                    self.push(
                        format!("{path}.key.composite"),
                        "at least one key is needed",
                    );
                }
                if parts
                    .iter()
                    .any(|p| matches!(p, RateLimitKey::Composite(_)))
                {
                    self.push(
                        format!("{path}.key.composite"),
                        "composite keys cannot be nested",
                    );
                }
                parts.iter().collect()
            }
            key => vec![key],
        };
        for key in keys {
            match key {
                RateLimitKey::Consumer if !has_api_key => self.push(
                    format!("{path}.key"),
                    "key consumer needs auth.api_key on the route",
                ),
                RateLimitKey::JwtSubject if !has_jwt => self.push(
                    format!("{path}.key"),
                    "key jwt_subject needs auth.jwt on the route",
                ),
                _ => {}
            }
        }
        for (i, name) in r.exempt.iter().enumerate() {
            if !known.consumers.contains(name.as_str()) {
                self.push(
                    format!("{path}.exempt[{i}]"),
                    format!("unknown consumer {name:?}"),
                );
            }
        }
        if r.max_in_flight == Some(0) {
            self.push(format!("{path}.max_in_flight"), "must be at least 1");
        }
        if r.backend == RateLimitBackend::Redis && !known.has_redis {
            self.push(
                format!("{path}.backend"),
                "redis needs the top-level redis section",
            );
        }
    }

    fn auth(&mut self, path: &str, a: &RouteAuth, known: &Known<'_>) {
        if a.jwt.is_none() && a.api_key.is_none() && a.policies.is_empty() {
            self.push(path, "set jwt, api_key or policies");
        }
        if let Some(jwt) = &a.jwt {
            if jwt.issuers.is_empty() {
                self.push(
                    format!("{path}.jwt.issuers"),
                    "at least one issuer is needed",
                );
            }
            for (i, name) in jwt.issuers.iter().enumerate() {
                if !known.issuers.contains(name.as_str()) {
                    self.push(
                        format!("{path}.jwt.issuers[{i}]"),
                        format!("unknown issuer {name:?}"),
                    );
                }
            }
        }
        if let Some(ApiKeyAuth {
            query,
            consumers,
            anonymous,
            ..
        }) = &a.api_key
        {
            if query.as_deref() == Some("") {
                self.push(format!("{path}.api_key.query"), "must not be empty");
            }
            for (i, name) in consumers.iter().enumerate() {
                if !known.consumers.contains(name.as_str()) {
                    self.push(
                        format!("{path}.api_key.consumers[{i}]"),
                        format!("unknown consumer {name:?}"),
                    );
                }
            }
            if let Some(name) = anonymous
                && !known.consumers.contains(name.as_str())
            {
                self.push(
                    format!("{path}.api_key.anonymous"),
                    format!("unknown consumer {name:?}"),
                );
            }
        }
        for (i, rule) in a.policies.iter().enumerate() {
            self.authz_rule(&format!("{path}.policies[{i}]"), rule, known);
        }
    }

    fn authz_rule(&mut self, path: &str, rule: &AuthzRule, known: &Known<'_>) {
        for (i, name) in rule.consumers.iter().enumerate() {
            if !known.consumers.contains(name.as_str()) {
                self.push(
                    format!("{path}.consumers[{i}]"),
                    format!("unknown consumer {name:?}"),
                );
            }
        }
        for (i, group) in rule.groups.iter().enumerate() {
            if !known.groups.contains(group.as_str()) {
                self.push(
                    format!("{path}.groups[{i}]"),
                    format!("unknown group {group:?} (no consumer is in it)"),
                );
            }
        }
        for (name, values) in &rule.headers {
            let field = format!("{path}.headers.{name}");
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.push(&field, format!("invalid header name {name:?}"));
            }
            if values.is_empty() {
                self.push(field, "at least one value is needed (\"*\" for any)");
            }
        }
        for (name, values) in &rule.claims {
            if values.is_empty() {
                self.push(
                    format!("{path}.claims.{name}"),
                    "at least one value is needed (\"*\" for any)",
                );
            }
        }
        for (i, p) in rule.paths.iter().enumerate() {
            let glob_ok =
                p == "*" || (p.starts_with('/') && !p.trim_end_matches('*').contains('*'));
            if !glob_ok {
                self.push(
                    format!("{path}.paths[{i}]"),
                    format!("invalid path {p:?} (an exact path, \"/prefix/*\" or \"*\")"),
                );
            }
        }
    }

    fn cors(&mut self, path: &str, c: &CorsPolicy) {
        if c.allow_origins.is_empty() {
            self.push(
                format!("{path}.allow_origins"),
                "at least one origin is needed",
            );
        }
        let any = c.allow_origins.iter().any(|o| o == "*");
        for (i, origin) in c.allow_origins.iter().enumerate() {
            if origin == "*" {
                continue;
            }
            let valid = origin.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https")
                    && !rest.is_empty()
                    && !rest.contains(['/', '?', '#', ' '])
            });
            if !valid {
                self.push(
                    format!("{path}.allow_origins[{i}]"),
                    format!("invalid origin {origin:?} (expected \"*\" or scheme://host[:port])"),
                );
            }
        }
        if any && c.allow_credentials {
            self.push(
                format!("{path}.allow_credentials"),
                "cannot be true with origin \"*\"",
            );
        }
    }

    fn transform(&mut self, path: &str, t: &Transform) {
        if !self.request_id {
            for (side, h) in [("request", &t.request), ("response", &t.response)] {
                for field in reads_request_id(h) {
                    self.push(
                        format!("{path}.{side}.{field}"),
                        "reads ${request_id}, but request_id.enabled is false",
                    );
                }
            }
        }
        let query = &t.response.query;
        if !(query.remove.is_empty()
            && query.rename.is_empty()
            && query.set.is_empty()
            && query.add.is_empty())
        {
            self.push(
                format!("{path}.response.query"),
                "query parameters exist only on requests",
            );
        }
        if t.max_body.as_u64() == 0 {
            self.push(format!("{path}.max_body"), "must be more than 0B");
        }
        if let Some(compression) = &t.compression
            && !compression.gzip
            && !compression.brotli
        {
            self.push(
                format!("{path}.compression"),
                "turn on gzip, brotli or both (or remove the section)",
            );
        }
        // Templates are parsed as the gateway will build them, so a bad one
        // is reported at load with its field.
        #[cfg(feature = "transform")]
        {
            let headers = crate::transform::TransformLayer::from_config(t, &[]).err();
            let bodies = crate::transform::JsonBodyLayer::from_config(t, &[]).err();
            for error in headers.into_iter().chain(bodies) {
                self.push(format!("{path}.{}", error.field()), error.message());
            }
        }
    }

    fn fault(&mut self, path: &str, f: &Fault) {
        if f.delay.is_none() && f.abort.is_none() {
            self.push(path, "set delay, abort or both");
        }
        if let Some(delay) = &f.delay {
            self.positive(format!("{path}.delay.duration"), delay.duration);
        }
    }

    fn ip_restriction(&mut self, path: &str, ip: &IpRestriction) {
        if ip.allow.is_empty() && ip.deny.is_empty() {
            self.push(path, "set allow, deny or both");
        }
    }
}

/// Parses `host:port`, `[v6]:port` or `http(s)://host[:port][/]`.
fn parse_endpoint(text: &str) -> Result<(Scheme, String, u16), String> {
    let (scheme, authority, default_port) = match text.split_once("://") {
        Some((scheme, rest)) => {
            let scheme = match scheme.to_ascii_lowercase().as_str() {
                "http" => Scheme::Http,
                "https" => Scheme::Https,
                other => return Err(format!("unsupported scheme {other:?} (use http or https)")),
            };
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            if rest.contains(['/', '?', '#']) {
                return Err("an endpoint URL has no path or query".to_owned());
            }
            if rest.contains('@') {
                return Err("an endpoint URL has no user info".to_owned());
            }
            let port = if scheme == Scheme::Https { 443 } else { 80 };
            (scheme, rest, Some(port))
        }
        None => (Scheme::Http, text, None),
    };
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| "unclosed '[' in an IPv6 address".to_owned())?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{v6:?} is not an IPv6 address"));
        }
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err("unexpected text after ']'".to_owned()),
        };
        (v6.to_owned(), port)
    } else {
        match authority.split_once(':') {
            Some((_, rest)) if rest.contains(':') => {
                return Err("an IPv6 address needs brackets, like [::1]:8080".to_owned());
            }
            Some((host, port)) => (host.to_ascii_lowercase(), Some(port)),
            None => (authority.to_ascii_lowercase(), None),
        }
    };
    let port = match (port, default_port) {
        (Some(port), _) => match port.parse::<u16>() {
            Ok(0) => return Err("port 0 is not a port to connect to".to_owned()),
            Ok(port) => port,
            Err(_) => return Err(format!("port {port:?} is not a number from 1 to 65535")),
        },
        (None, Some(default)) => default,
        (None, None) => return Err("a port is needed (host:port)".to_owned()),
    };
    if host.parse::<IpAddr>().is_err() && !is_dns_name(&host) {
        return Err(format!("{host:?} is not an IP address or a DNS name"));
    }
    Ok((scheme, host, port))
}

/// A DNS name: dot-separated labels of letters, digits and inner hyphens.
fn is_dns_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn parse_host_match(host: &str) -> Option<HostMatch> {
    let lower = host.to_ascii_lowercase();
    if let Some(suffix) = lower.strip_prefix("*.") {
        return is_dns_name(suffix).then(|| HostMatch::Wildcard(format!(".{suffix}")));
    }
    let valid = is_dns_name(&lower)
        || lower.parse::<IpAddr>().is_ok()
        || lower
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .is_some_and(|v| v.parse::<std::net::Ipv6Addr>().is_ok());
    valid.then_some(HostMatch::Exact(lower))
}

/// The fields of `h` whose templates read `${request_id}`, as
/// `set.<header>`, `query.add.<param>`, `body.replace.<field>`.
fn reads_request_id(h: &HeaderTransform) -> Vec<String> {
    const VAR: &str = "${request_id}";
    fn in_body(value: &BodyValue) -> bool {
        match value {
            BodyValue::String(s) => s.contains(VAR),
            BodyValue::List(items) => items.iter().any(in_body),
            BodyValue::Map(map) => map.values().any(in_body),
            _ => false,
        }
    }
    let headers = [("set", &h.set), ("add", &h.add)]
        .into_iter()
        .flat_map(|(op, pairs)| {
            pairs
                .iter()
                .filter(|(_, value)| {
                    value
                        .as_bytes()
                        .windows(VAR.len())
                        .any(|w| w == VAR.as_bytes())
                })
                .map(move |(name, _)| format!("{op}.{name}"))
        });
    let query = [("set", &h.query.set), ("add", &h.query.add)]
        .into_iter()
        .flat_map(|(op, pairs)| {
            pairs
                .iter()
                .filter(|(_, value)| value.contains(VAR))
                .map(move |(name, _)| format!("query.{op}.{name}"))
        });
    let body = [("replace", &h.body.replace), ("add", &h.body.add)]
        .into_iter()
        .flat_map(|(op, pairs)| {
            pairs
                .iter()
                .filter(|(_, value)| in_body(value))
                .map(move |(name, _)| format!("body.{op}.{name}"))
        });
    headers.chain(query).chain(body).collect()
}

/// Checks a `matchit` template: `{name}` parameters and a final `{*rest}`.
fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err("'}' without '{'".to_owned());
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or("'{' without '}'")?;
        let name = &after[..close];
        let (catch_all, name) = match name.strip_prefix('*') {
            Some(n) => (true, n),
            None => (false, name),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("invalid parameter name {name:?}"));
        }
        rest = &after[close + 1..];
        if catch_all && !rest.is_empty() {
            return Err("a catch-all parameter must come last".to_owned());
        }
    }
    Ok(())
}

/// A DNS name (letters, digits, hyphens, dots; labels of 1–63 bytes) or an
/// IP address, as SNI and certificate checks take it.
fn valid_server_name(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let ok = |s: &str| parse_endpoint(s).unwrap();
        assert_eq!(ok("10.0.0.7:8080"), (Scheme::Http, "10.0.0.7".into(), 8080));
        assert_eq!(ok("Users.svc:80"), (Scheme::Http, "users.svc".into(), 80));
        assert_eq!(ok("http://a.b"), (Scheme::Http, "a.b".into(), 80));
        assert_eq!(ok("https://a.b/"), (Scheme::Https, "a.b".into(), 443));
        assert_eq!(ok("[::1]:9000"), (Scheme::Http, "::1".into(), 9000));
        assert_eq!(ok("http://[::1]"), (Scheme::Http, "::1".into(), 80));
        for bad in [
            "x:y",
            "host",
            "::1:80",
            "ftp://a:1",
            "http://a/b",
            "a:0",
            "a:70000",
            "[::1",
            "-a:1",
            "a..b:1",
            "http://u@a:1",
            "",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(
            parse_host_match("*.Example.com"),
            Some(HostMatch::Wildcard(".example.com".into()))
        );
        assert_eq!(
            parse_host_match("api.example.com"),
            Some(HostMatch::Exact("api.example.com".into()))
        );
        for bad in ["*", "a.*.com", "*.", "exa mple.com", "api.example.com:80"] {
            assert_eq!(parse_host_match(bad), None, "{bad:?} parsed");
        }
    }

    #[test]
    fn templates() {
        assert!(check_template("/users/{id}").is_ok());
        assert!(check_template("/files/{*rest}").is_ok());
        assert!(check_template("/a/{x}/b/{y_2}").is_ok());
        for bad in ["/{", "/}", "/{}", "/{*a}/b", "/{a-b}"] {
            assert!(check_template(bad).is_err(), "{bad:?} accepted");
        }
    }
}
