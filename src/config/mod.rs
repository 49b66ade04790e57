//! The gateway's YAML config: a typed model, validated once at load.
//!
//! [`Config::from_yaml_str`] and [`Config::from_file`] read a file into plain
//! typed structs — durations are [`std::time::Duration`], networks are
//! [`Cidr`], regexes are compiled, references between sections are checked,
//! `${VAR}` references are expanded and API keys hashed — so that building
//! the layers from it is mechanical and request-time code never reads raw
//! config (the linkerd way: policy as data, behaviour as stacks).
//!
//! # The file
//!
//! | section | what |
//! | --- | --- |
//! | `listeners` | [`Listener`]s: address, protocols, [`Limits`]. Default: one on `127.0.0.1:8080`. |
//! | `admin` | [`Admin`] listener, default `127.0.0.1:9901`. |
//! | `trusted_proxies` | [`Cidr`]s whose `X-Forwarded-For`/`Forwarded` are believed. |
//! | `request_id`, `trace_context` | [`RequestIdHeader`] (on, `x-request-id`), [`TraceContextHeaders`] (on). |
//! | `access_log`, `metrics` | [`AccessLog`] (`text`/`json`), [`Metrics`]. |
//! | `redis` | [`Redis`] for cluster-wide rate limits. |
//! | `upstreams` | [`Upstream`]s: endpoints, discovery, balancing, health, outliers, pool. |
//! | `routes` | [`Route`]s: matcher, destination (upstream, split, terminate, [`Aggregation`]) and policies. |
//! | `consumers` | API clients ([`Consumer`]) with SHA-256 key digests, a tier and groups. |
//! | `jwt_issuers` | [`JwtIssuer`]s: a JWKS URL (`https` with an optional private CA, `jwks_ca`) or static keys bound to an algorithm. |
//! | `rate_limit_tiers` | Named sets of [`Quota`]s a consumer's tier selects. |
//!
//! `examples/gateway.yaml` in the repository uses every section;
//! [`DEFAULT_CONFIG`] is what the example gateway runs without arguments.
//!
//! Values: durations are written with a unit (`250ms`, `30s`, `5m`, `1h`,
//! see [`Duration`]), sizes as [`ByteSize`] (`64KiB`, `1MiB`), percentages
//! 0–100 ([`Percent`]). Unknown fields are refused everywhere.
//!
//! The section types implement `Deserialize` so the loader can read them,
//! but only [`Config`]'s loaders check references, ranges and the
//! environment: read configs through them.
//!
//! # Errors
//!
//! Loading returns every problem found, each with the path of its field, as
//! [`ConfigErrors`], whose `Display` writes one per line:
//!
//! ```text
//! upstreams[0].endpoints[1]: invalid address "x:y": port "y" is not a number from 1 to 65535 (line 4, column 30)
//! routes[1].split: weights sum to 0 (line 19, column 7)
//! routes[2].upstream: unknown upstream "pay" (line 27, column 15)
//! ```
//!
//! Syntax errors, unknown fields and malformed values (a duration without
//! unit, a percentage of 150) stop parsing at the first one. A file that
//! parses is then validated as a whole: duplicate names, unknown
//! references, addresses, regexes, ranges and `${VAR}`s that are not set
//! are all reported together. Each problem carries the line and column of
//! its field, or of the nearest enclosing one the file has when the field
//! was left to its default.
//!
//! # Secrets and the environment
//!
//! `${VAR}` is expanded (at load, never later) only where a secret or an
//! address may come from the environment: `consumers[].keys[]`,
//! `jwt_issuers[].keys[].secret`, `jwt_issuers[].jwks_url`, `redis.url` and
//! `upstreams[].endpoints[]`. `$$` is a literal `$`. A variable that is not
//! set is an error naming the variable and the field; its value is never
//! printed. Secrets are held as [`Secret`] (`Debug` and `Display` print
//! `***`) and plain API keys are hashed at load into [`ApiKeyDigest`]s, so
//! `{:?}` of a whole [`Config`] shows no secret. Tests and embedders pass
//! their own lookup with [`Config::from_yaml_str_with_env`] instead of
//! changing the process environment.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use meshgate::config::{Config, RouteAction};
//!
//! let yaml = r#"
//! upstreams:
//!   - name: users
//!     endpoints: ["127.0.0.1:9001", "${USERS_2}"]
//! routes:
//!   - name: users
//!     match: { paths: [{ prefix: /users }] }
//!     upstream: users
//!     timeout: 2s
//! "#;
//! let env = |name: &str| (name == "USERS_2").then(|| "127.0.0.1:9002".to_owned());
//! let config = Config::from_yaml_str_with_env(yaml, env).unwrap();
//! assert_eq!(config.routes[0].timeout, Duration::from_secs(2));
//! assert_eq!(config.upstream("users").unwrap().endpoints[1].port, 9002);
//! assert!(matches!(&config.routes[0].action, RouteAction::Upstream(u) if u == "users"));
//!
//! let errors = Config::from_yaml_str("routes: [{ name: a, upstream: pay }]").unwrap_err();
//! assert_eq!(
//!     errors.to_string(),
//!     r#"routes[0].upstream: unknown upstream "pay" (line 1, column 31)"#
//! );
//! assert_eq!(errors.errors()[0].path(), "routes[0].upstream");
//! ```

mod auth;
mod error;
mod fields;
mod locate;
mod policy;
mod raw;
mod route;
mod secret;
mod server;
mod units;
mod upstream;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// A network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`) or one
/// address: [`net::IpNet`](crate::net::IpNet), which deserializes from a string.
pub use crate::net::{IpNet as Cidr, IpNetError as CidrError};
pub use auth::{
    ApiKeyAuth, AuthzAction, AuthzRule, Consumer, JwksCa, JwtAlgorithm, JwtAuth, JwtIssuer, JwtKey,
    JwtKeys, KeyMaterial, RouteAuth, TokenSource,
};
pub use error::{ConfigError, ConfigErrors};
pub use policy::{
    BackoffPolicy, BodyTransform, BodyValue, CachePolicy, CircuitBreakerPolicy, CompressionPolicy,
    CorsPolicy, FailureRate, Fault, FaultAbort, FaultDelay, HeaderTransform, IpRestriction, Jitter,
    OnRedisError, QueryTransform, Quota, RateLimitBackend, RateLimitKey, RateLimitPolicy,
    RetryBudgetPolicy, RetryOn, RetryPolicy, Terminate, Transform,
};
pub use route::{
    AggregateCallSpec, Aggregation, HeaderMatch, HostMatch, PathMatch, QueryMatch, Rewrite, Route,
    RouteAction, RouteMatch, Split, SplitBackend, SplitOverride, Sticky, ValueMatch,
};
pub use secret::{ApiKeyDigest, Secret};
pub use server::{
    AccessLog, AccessLogFormat, Admin, ClientAuthMode, Limits, Listener, ListenerTls, Metrics,
    Protocol, Redis, RequestIdHeader, TraceContextHeaders,
};
pub use units::{ByteSize, Duration, Percent, StatusRange, UnitError};
pub use upstream::{
    Balancing, Discovery, Endpoint, HashOn, HealthCheck, OutlierDetection, Pool, Scheme, Upstream,
    UpstreamTimeouts, UpstreamTls,
};

/// The config the example gateway runs when given no `--config`.
///
/// A listener on `127.0.0.1:8080`, the admin listener on `127.0.0.1:9901`,
/// and the upstreams of the in-process demo services: `users` (two
/// instances), `users-canary`, `orders` and `flaky`. Routes show a canary
/// split, an API-key-protected route, a rate-limited route, a cached route,
/// a retried flaky route and a circuit breaker.
///
/// The demo services listen on ports chosen at start-up, so the endpoints
/// are `${VAR}` references, filled in through the lookup given to
/// [`Config::from_yaml_str_with_env`]; the variables are listed in
/// [`DEFAULT_CONFIG_VARS`]. The example gateway binds its demo services
/// first, then loads this text with a lookup that answers these names with
/// their addresses (and falls back to the process environment):
///
/// ```
/// use meshgate::config::{Config, DEFAULT_CONFIG, DEFAULT_CONFIG_VARS};
///
/// // Ports the demo services got from the OS.
/// let ports = [41001, 41002, 41003, 41004, 41005];
/// let env = |name: &str| match DEFAULT_CONFIG_VARS.iter().position(|v| v.0 == name) {
///     Some(i) if i < ports.len() => Some(format!("127.0.0.1:{}", ports[i])),
///     _ => match name {
///         "MESHGATE_DEMO_API_KEY" => Some("demo-key".to_owned()),
///         "MESHGATE_DEMO_JWT_SECRET" => Some("a-demo-secret-of-at-least-32-bytes!".to_owned()),
///         _ => None,
///     },
/// };
/// let config = Config::from_yaml_str_with_env(DEFAULT_CONFIG, env).unwrap();
/// assert_eq!(config.upstream("orders").unwrap().endpoints[0].port, 41004);
/// ```
pub const DEFAULT_CONFIG: &str = include_str!("default.yaml");

/// The `${VAR}`s [`DEFAULT_CONFIG`] uses, with what each stands for. The
/// first five are the addresses (`127.0.0.1:port`) of the demo services.
pub const DEFAULT_CONFIG_VARS: [(&str, &str); 7] = [
    (
        "MESHGATE_DEMO_USERS_1",
        "address of the first `users` demo service",
    ),
    (
        "MESHGATE_DEMO_USERS_2",
        "address of the second `users` demo service",
    ),
    (
        "MESHGATE_DEMO_USERS_CANARY",
        "address of the `users-canary` demo service",
    ),
    (
        "MESHGATE_DEMO_ORDERS",
        "address of the `orders` demo service",
    ),
    (
        "MESHGATE_DEMO_FLAKY",
        "address of the `flaky` demo service (fails or stalls at times)",
    ),
    (
        "MESHGATE_DEMO_API_KEY",
        "the plain API key of the `demo` consumer, printed at start-up",
    ),
    (
        "MESHGATE_DEMO_JWT_SECRET",
        "the HS256 secret of the `demo` JWT issuer (32 bytes or more)",
    ),
];

/// The largest config file [`Config::from_file`] reads.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The gateway's configuration, validated. Build it with
/// [`Config::from_yaml_str`] or [`Config::from_file`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Client-traffic listeners; at least one.
    pub listeners: Vec<Listener>,
    /// The admin listener.
    pub admin: Admin,
    /// Peers whose forwarding headers are trusted for the client IP.
    /// Default: none (the socket address is the client IP).
    pub trusted_proxies: Vec<Cidr>,
    /// The request id.
    pub request_id: RequestIdHeader,
    /// Trace context propagation.
    pub trace_context: TraceContextHeaders,
    /// The access log.
    pub access_log: AccessLog,
    /// Metrics.
    pub metrics: Metrics,
    /// Redis, for `backend: redis` rate limits. Default: none.
    pub redis: Option<Redis>,
    /// Upstreams, in file order.
    pub upstreams: Vec<Upstream>,
    /// Routes, in file order (matching order is by priority and
    /// specificity, see [`Route`]).
    pub routes: Vec<Route>,
    /// API consumers.
    pub consumers: Vec<Consumer>,
    /// JWT issuers.
    pub jwt_issuers: Vec<JwtIssuer>,
    /// Rate-limit tiers by name.
    pub rate_limit_tiers: BTreeMap<String, Vec<Quota>>,
}

impl Config {
    /// Loads a config from YAML text, with `${VAR}` looked up in the process
    /// environment.
    pub fn from_yaml_str(yaml: &str) -> Result<Config, ConfigErrors> {
        Self::from_yaml_str_with_env(yaml, process_env)
    }

    /// Loads a config from YAML text, with `${VAR}` looked up through `env`.
    pub fn from_yaml_str_with_env(
        yaml: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let raw = parse(yaml)?;
        validate::validate(raw, &env).map_err(|errors| errors.located(yaml))
    }

    /// Loads a config file, with `${VAR}` looked up in the process
    /// environment.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigErrors> {
        Self::from_file_with_env(path, process_env)
    }

    /// Loads a config file, with `${VAR}` looked up through `env`.
    pub fn from_file_with_env(
        path: impl AsRef<Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        use std::io::Read;

        let path = path.as_ref();
        let fail = |message: String| ConfigErrors::new(vec![ConfigError::new("", message)]);
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
            .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(fail(format!(
                "{} is larger than {}",
                path.display(),
                ByteSize(MAX_FILE_BYTES)
            )));
        }
        Self::from_yaml_str_with_env(&text, env)
    }

    /// The upstream with this name.
    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.upstreams.iter().find(|u| u.name == name)
    }

    /// The route with this name.
    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// The consumer with this name.
    pub fn consumer(&self, name: &str) -> Option<&Consumer> {
        self.consumers.iter().find(|c| c.name == name)
    }

    /// The JWT issuer with this name.
    pub fn jwt_issuer(&self, name: &str) -> Option<&JwtIssuer> {
        self.jwt_issuers.iter().find(|i| i.name == name)
    }

    /// The quotas of a rate-limit tier.
    pub fn tier(&self, name: &str) -> Option<&[Quota]> {
        self.rate_limit_tiers.get(name).map(Vec::as_slice)
    }
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Reads the file's shape. The first syntax or shape error stops it, with
/// the path of the field and the line and column.
fn parse(yaml: &str) -> Result<raw::RawConfig, ConfigErrors> {
    let mut failed_at = None;
    let result = serde_saphyr::with_deserializer_from_str(yaml, |de| {
        let mut track = serde_path_to_error::Track::new();
        let tracked = serde_path_to_error::Deserializer::new(de, &mut track);
        raw::RawConfig::deserialize(tracked).inspect_err(|_| failed_at = Some(track.path()))
    });
    result.map_err(|e| {
        // A segment serde could not name (a key being read) shows as `?`.
        let path = failed_at
            .map(|p| p.to_string())
            .map(|p| p.trim_end_matches(".?").trim_end_matches('?').to_owned())
            .filter(|p| p != ".")
            .unwrap_or_default();
        let inner = e.without_snippet();
        let mut error = ConfigError::new(path, message_of(inner));
        if let Some(at) = inner.location()
            && at.line() > 0
        {
            error = error.at(at.line(), at.column());
        }
        ConfigErrors::new(vec![error])
    })
}

/// serde-saphyr's message without its own position suffix (the position is
/// kept apart, in [`ConfigError::position`]).
fn message_of(error: &serde_saphyr::Error) -> String {
    let text = error.to_string();
    let text = match text.rfind(" at line ") {
        Some(at) if text[at..].contains("column") => text[..at].to_owned(),
        _ => text,
    };
    // Speak about the file, not about the parser's options or Rust types.
    let text = text.replace(", set DuplicateKeyPolicy in Options if acceptable", "");
    let text = match text.strip_prefix("invalid ") {
        Some(ty)
            if [
                "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "usize",
            ]
            .contains(&ty) =>
        {
            format!("expected a whole number ({ty})")
        }
        _ => text,
    };
    if text.trim().is_empty() {
        "invalid YAML".to_owned()
    } else {
        text
    }
}
