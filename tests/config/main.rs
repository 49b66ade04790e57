//! Loading and validating the gateway config through `meshgate::config`:
//! the full example, the embedded default, a table of broken files, value
//! parsing, `${VAR}` expansion and secrets kept out of `Debug`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, Method};
use meshgate::config::{
    AccessLogFormat, ApiKeyDigest, AuthzAction, Balancing, ByteSize, Cidr, Config, DEFAULT_CONFIG,
    DEFAULT_CONFIG_VARS, Discovery, HashOn, HostMatch, Jitter, JwtAlgorithm, JwtKeys, KeyMaterial,
    OnRedisError, PathMatch, Percent, Protocol, RateLimitBackend, RateLimitKey, RetryOn,
    RouteAction, Scheme, Sticky, TokenSource, ValueMatch,
};

mod auth;

const EXAMPLE: &str = include_str!("../../examples/gateway.yaml");

const HS_SECRET: &str = "hs-secret-that-is-long-enough-for-hs256!";
const MOBILE_KEY: &str = "plain-mobile-key-42";
const REDIS_URL: &str = "redis://:hunter2-redis@redis.internal:6379/0";

fn example_env(name: &str) -> Option<String> {
    match name {
        "REDIS_URL" => Some(REDIS_URL.to_owned()),
        "ORDERS_ADDR" => Some("orders.internal:8443".to_owned()),
        "MOBILE_APP_KEY" => Some(MOBILE_KEY.to_owned()),
        "JWT_HS_SECRET" => Some(HS_SECRET.to_owned()),
        _ => None,
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(yaml: &str) -> Config {
    match Config::from_yaml_str_with_env(yaml, no_env) {
        Ok(config) => config,
        Err(errors) => panic!("config refused:\n{errors}"),
    }
}

/// The messages of a refused config, one per problem.
fn errors(yaml: &str) -> Vec<String> {
    errors_with_env(yaml, no_env)
}

fn errors_with_env(yaml: &str, env: impl Fn(&str) -> Option<String>) -> Vec<String> {
    match Config::from_yaml_str_with_env(yaml, env) {
        Ok(_) => panic!("config accepted:\n{yaml}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn full_example_parses_to_the_expected_values() {
    let config = Config::from_yaml_str_with_env(EXAMPLE, example_env)
        .unwrap_or_else(|e| panic!("examples/gateway.yaml refused:\n{e}"));

    // Listeners and limits.
    assert_eq!(config.listeners.len(), 2);
    let public = &config.listeners[0];
    assert_eq!(public.name, "public");
    assert_eq!(
        public.address,
        "0.0.0.0:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(public.protocols, [Protocol::Http1, Protocol::H2c]);
    assert_eq!(public.limits.max_header_bytes, ByteSize(32 * 1024));
    assert_eq!(public.limits.max_headers, 64);
    assert_eq!(public.limits.max_request_body.as_u64(), 2 * 1024 * 1024);
    assert_eq!(public.limits.header_read_timeout, secs(5));
    assert_eq!(public.limits.max_connections, 5000);
    assert_eq!(public.shutdown_timeout, secs(20));
    let internal = &config.listeners[1];
    assert_eq!(internal.protocols, [Protocol::H2c]);
    let unnamed = load("listeners: [{ address: \"127.0.0.1:1\" }, { address: \"127.0.0.1:2\" }]");
    assert_eq!(
        (
            unnamed.listeners[0].name.as_str(),
            unnamed.listeners[1].name.as_str()
        ),
        ("http", "http-1")
    );
    // Port 0 (a free port, as tests use) never clashes.
    let any_port = load(
        "listeners: [{ address: \"127.0.0.1:0\" }, { address: \"127.0.0.1:0\" }]\nadmin: { address: \"127.0.0.1:0\" }",
    );
    assert_eq!(any_port.listeners.len(), 2);
    assert_eq!(
        errors("listeners: [{ address: \"127.0.0.1:7\" }, { address: \"127.0.0.1:7\" }]"),
        ["listeners[1].address: 127.0.0.1:7 is already used by listeners[0] (line 1, column 52)"]
    );
    assert_eq!(
        internal.limits.max_request_body,
        ByteSize::mib(10),
        "default"
    );
    assert_eq!(internal.limits.header_read_timeout, secs(10), "default");
    assert_eq!(internal.shutdown_timeout, secs(30), "default");

    assert!(config.admin.enabled);
    assert_eq!(
        config.admin.address,
        "127.0.0.1:9901".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.trusted_proxies.len(), 3);
    assert!(config.trusted_proxies[0].contains("10.200.0.1".parse().unwrap()));
    assert_eq!(config.trusted_proxies[1].prefix(), 32);
    assert!(config.trusted_proxies[2].contains("fd12::1".parse().unwrap()));
    assert_eq!(config.access_log.format, AccessLogFormat::Json);
    assert_eq!(config.metrics.prefix, "gw");
    assert_eq!(config.metrics.latency_buckets, [0.001, 0.01, 0.1, 1.0]);

    let redis = config.redis.as_ref().unwrap();
    assert_eq!(redis.url.expose(), REDIS_URL);
    assert_eq!(redis.connect_timeout, ms(500));
    assert_eq!(redis.command_timeout, ms(50));
    assert_eq!(redis.key_prefix, "gw:");

    // Upstreams.
    assert_eq!(config.upstreams.len(), 7);
    let users = config.upstream("users").unwrap();
    let e = &users.endpoints;
    assert_eq!(
        (e[0].scheme, e[0].host.as_str(), e[0].port, e[0].weight),
        (Scheme::Http, "10.0.1.7", 8080, 1)
    );
    assert_eq!(
        (e[1].host.as_str(), e[1].port, e[1].weight),
        ("10.0.1.8", 8080, 3)
    );
    assert_eq!(e[2].authority(), "[fd00::9]:8080");
    assert_eq!(e[2].base_uri(), "http://[fd00::9]:8080");
    assert_eq!(users.balancing, Balancing::Weighted);
    assert_eq!(users.discovery, Discovery::Static);
    let hc = users.health_check.as_ref().unwrap();
    assert_eq!(
        (hc.path.as_str(), hc.interval, hc.timeout),
        ("/healthz", secs(5), secs(1))
    );
    assert_eq!((hc.healthy_threshold, hc.unhealthy_threshold), (2, 3));
    assert!(hc.expected_statuses.iter().any(|r| r.contains(200)));
    assert!(hc.expected_statuses.iter().any(|r| r.contains(302)));
    assert!(!hc.expected_statuses.iter().any(|r| r.contains(204)));
    let od = users.outlier_detection.unwrap();
    assert_eq!((od.consecutive_5xx, od.consecutive_gateway_errors), (5, 3));
    assert_eq!(
        (od.interval, od.base_ejection_time, od.max_ejection_time),
        (secs(10), secs(30), secs(300))
    );
    assert_eq!(od.max_ejection_percent.get(), 50.0);
    assert_eq!(od.panic_threshold.as_ratio(), 0.3);
    assert_eq!(users.pool.max_requests_per_endpoint, Some(256));
    assert_eq!(
        (users.pool.max_idle_per_endpoint, users.pool.idle_timeout),
        (16, secs(60))
    );
    assert_eq!(
        (users.timeouts.connect, users.timeouts.response),
        (secs(1), Some(secs(10)))
    );

    let v2 = config.upstream("users-v2").unwrap();
    assert_eq!(v2.discovery, Discovery::Dns { interval: secs(15) });
    assert_eq!(
        v2.balancing,
        Balancing::ConsistentHash(HashOn::Header(HeaderName::from_static("x-user-id")))
    );
    assert_eq!(v2.protocol, Protocol::H2c);
    assert_eq!(v2.timeouts.connect, secs(2), "default");
    let orders = config.upstream("orders").unwrap();
    assert_eq!(
        orders.endpoints[0].authority(),
        "orders.internal:8443",
        "from ${{ORDERS_ADDR}}"
    );
    assert_eq!(orders.balancing, Balancing::LeastRequest);
    assert_eq!(
        config.upstream("search").unwrap().balancing,
        Balancing::PeakEwma
    );
    assert_eq!(
        config.upstream("sessions").unwrap().balancing,
        Balancing::ConsistentHash(HashOn::Cookie("session".into()))
    );
    let legacy = config.upstream("legacy").unwrap();
    assert_eq!(
        (legacy.endpoints[0].scheme, legacy.endpoints[0].port),
        (Scheme::Https, 443)
    );
    assert_eq!(legacy.balancing, Balancing::Random);
    assert_eq!(
        config.upstream("geo").unwrap().balancing,
        Balancing::ConsistentHash(HashOn::ClientIp)
    );

    // Consumers, issuers, tiers.
    let mobile = config.consumer("mobile-app").unwrap();
    assert_eq!(
        (mobile.id.as_str(), mobile.tier.as_deref()),
        ("c-001", Some("pro"))
    );
    assert_eq!(
        mobile.keys,
        [
            ApiKeyDigest::of_key(MOBILE_KEY),
            ApiKeyDigest::of_key("mobile-app-key-123")
        ]
    );
    assert_eq!(mobile.metadata["team"], "mobile");
    assert_eq!(
        config.consumer("partner").unwrap().keys,
        [ApiKeyDigest::of_key("partner-key")]
    );
    assert_eq!(
        config.consumer("anonymous").unwrap().id,
        "anonymous",
        "id defaults to the name"
    );

    let corp = config.jwt_issuer("corp").unwrap();
    assert_eq!(corp.issuer, "https://auth.example.com/");
    assert_eq!(corp.audiences, ["api", "mobile"]);
    assert_eq!(corp.leeway, secs(60));
    assert_eq!(
        corp.keys,
        JwtKeys::Jwks {
            url: "https://auth.example.com/.well-known/jwks.json".into(),
            refresh_interval: secs(600),
            min_refresh_interval: secs(60),
            ca: None,
        }
    );
    assert_eq!(
        corp.claims_to_headers,
        [
            ("email".to_owned(), HeaderName::from_static("x-user-email")),
            ("sub".to_owned(), HeaderName::from_static("x-user-id"))
        ]
    );
    let internal = config.jwt_issuer("internal").unwrap();
    assert_eq!(internal.leeway, secs(30), "default");
    assert_eq!(internal.claims_to_headers.len(), 2, "default sub and roles");
    let JwtKeys::Static(keys) = &internal.keys else {
        panic!("static keys expected")
    };
    assert_eq!(
        (keys[0].kid.as_deref(), keys[0].algorithm),
        (Some("hs-1"), JwtAlgorithm::HS256)
    );
    assert!(matches!(&keys[0].material, KeyMaterial::Secret(s) if s.expose() == HS_SECRET));
    assert_eq!(keys[1].algorithm, JwtAlgorithm::ES256);
    assert!(
        matches!(&keys[1].material, KeyMaterial::Pem(p) if p.starts_with("-----BEGIN PUBLIC KEY-----\n"))
    );

    let free = config.tier("free").unwrap();
    assert_eq!(
        (free[0].limit, free[0].per, free[0].burst),
        (10, secs(1), Some(20))
    );
    assert_eq!(
        (free[1].limit, free[1].per, free[1].burst),
        (1000, secs(86_400), None)
    );
    assert_eq!(config.tier("pro").unwrap().len(), 2);

    // Routes.
    assert_eq!(config.routes.len(), 8);
    let profile = config.route("profile").unwrap();
    let meshgate::config::RouteAction::Aggregate(aggregate) = &profile.action else {
        panic!("profile aggregates: {:?}", profile.action);
    };
    assert_eq!(aggregate.deadline, Some(secs(2)));
    assert_eq!(aggregate.concurrency, 8);
    assert_eq!(aggregate.calls.len(), 2);
    assert_eq!(aggregate.calls[1].upstream, "orders");
    assert_eq!(aggregate.calls[1].uri, "/v1/orders?user={id}");
    assert_eq!(aggregate.calls[1].timeout, Some(ms(500)));
    assert!(aggregate.calls[1].optional && !aggregate.calls[0].optional);
    assert_eq!(profile.upstreams(), ["users", "orders"]);
    let route = config.route("users").unwrap();
    assert_eq!(route.priority, 10);
    let m = &route.matcher;
    assert_eq!(
        m.hosts,
        [
            HostMatch::Exact("api.example.com".into()),
            HostMatch::Wildcard(".example.com".into())
        ]
    );
    assert_eq!(
        m.paths,
        [
            PathMatch::Prefix("/api/users".into()),
            PathMatch::Template("/api/profiles/{id}".into())
        ]
    );
    assert_eq!(m.methods, [Method::GET, Method::PUT, Method::DELETE]);
    assert_eq!(m.headers[0].name, "x-client");
    let ValueMatch::Regex(re) = &m.headers[0].value else {
        panic!("regex expected")
    };
    assert!(re.is_match("ios-17"));
    assert!(!re.is_match("my-ios-17"), "anchored at the start");
    assert!(!re.is_match("ios-17x"), "anchored at the end");
    assert!(matches!(m.headers[1].value, ValueMatch::Absent));
    assert_eq!(m.query[0].name, "version");
    assert!(matches!(&m.query[0].value, ValueMatch::Exact(v) if v == "2"));
    assert_eq!(route.strip_prefix.as_deref(), Some("/api"));
    let RouteAction::Split(split) = &route.action else {
        panic!("split expected")
    };
    assert_eq!(
        split
            .backends
            .iter()
            .map(|b| (b.upstream.as_str(), b.weight))
            .collect::<Vec<_>>(),
        [("users", 90), ("users-v2", 10)]
    );
    assert_eq!(
        split.overrides[0].on,
        Sticky::Header(HeaderName::from_static("x-canary"))
    );
    assert_eq!(
        (
            split.overrides[0].value.as_str(),
            split.overrides[0].upstream.as_str()
        ),
        ("true", "users-v2")
    );
    assert_eq!(split.overrides[1].on, Sticky::Cookie("beta".into()));
    assert_eq!(
        split.sticky,
        Some(Sticky::Header(HeaderName::from_static("x-user-id")))
    );
    assert_eq!(route.upstreams(), ["users", "users-v2"]);
    assert_eq!(route.timeout, secs(5));

    let retry = route.retry.as_ref().unwrap();
    assert_eq!(retry.attempts, 3);
    assert_eq!(
        (retry.backoff.base, retry.backoff.cap, retry.backoff.jitter),
        (ms(25), ms(500), Jitter::Decorrelated)
    );
    assert_eq!(retry.per_try_timeout, Some(secs(2)));
    assert_eq!(
        retry.retry_on,
        [
            RetryOn::GatewayError,
            RetryOn::ConnectFailure,
            RetryOn::Reset,
            RetryOn::RetriableStatusCodes,
            RetryOn::RetriableHeaders
        ]
    );
    assert_eq!(retry.retriable_status_codes, [409]);
    assert_eq!(
        retry.retriable_headers,
        [HeaderName::from_static("x-retry-me")]
    );
    assert!(!retry.retry_non_idempotent);
    assert_eq!(retry.retry_after_cap, secs(2));
    assert_eq!(
        (
            retry.budget.percent.as_ratio(),
            retry.budget.min_per_second,
            retry.budget.window
        ),
        (0.2, 10, secs(10))
    );
    assert_eq!(retry.replay_body_limit, ByteSize::kib(64));

    let cb = route.circuit_breaker.unwrap();
    assert_eq!(cb.consecutive_failures, 5);
    let rate = cb.failure_rate.unwrap();
    assert_eq!(
        (rate.threshold.get(), rate.window, rate.min_calls),
        (50.0, secs(30), 20)
    );
    assert_eq!(
        (
            cb.slow_call,
            cb.open_for,
            cb.max_open_for,
            cb.half_open_probes
        ),
        (Some(secs(2)), secs(30), secs(300), 2)
    );

    let auth = route.auth.as_ref().unwrap();
    let jwt = auth.jwt.as_ref().unwrap();
    assert_eq!(jwt.issuers, ["corp", "internal"]);
    assert_eq!(jwt.required_scopes, ["users:read"]);
    assert_eq!(jwt.token_from, TokenSource::Authorization);
    let api_key = auth.api_key.as_ref().unwrap();
    assert_eq!(api_key.header, "x-api-key");
    assert_eq!(api_key.query.as_deref(), Some("api_key"));
    assert_eq!(api_key.consumers, ["mobile-app", "partner"]);
    assert_eq!(auth.policies.len(), 3);
    assert_eq!(auth.policies[0].action, AuthzAction::Deny);
    assert_eq!(auth.policies[0].methods, [Method::DELETE]);
    assert_eq!(auth.policies[1].paths, ["/api/users/*"]);

    let limit = route.rate_limit.as_ref().unwrap();
    assert_eq!(limit.key, RateLimitKey::Consumer);
    assert!(limit.tiers && limit.legacy_headers);
    assert_eq!(limit.exempt, ["mobile-app"]);
    assert_eq!(limit.max_in_flight, Some(50));
    assert_eq!(
        (limit.backend, limit.on_redis_error),
        (RateLimitBackend::Redis, OnRedisError::Local)
    );

    let cors = route.cors.as_ref().unwrap();
    assert_eq!(cors.allow_origins, ["https://app.example.com"]);
    assert_eq!(
        cors.allow_methods,
        [Method::GET, Method::PUT, Method::DELETE]
    );
    assert_eq!(
        cors.allow_headers,
        [
            HeaderName::from_static("authorization"),
            HeaderName::from_static("content-type")
        ]
    );
    assert!(cors.allow_credentials);
    assert_eq!(cors.max_age, secs(3600));

    let transform = route.transform.as_ref().unwrap();
    assert_eq!(
        transform.request.remove,
        [HeaderName::from_static("x-internal-user")]
    );
    assert_eq!(
        transform.request.rename,
        [(
            HeaderName::from_static("x-legacy-id"),
            HeaderName::from_static("x-client-id")
        )]
    );
    assert_eq!(transform.request.set[0].0, "x-gateway");
    assert_eq!(transform.request.set[0].1, "meshgate");
    assert_eq!(transform.request.add[0].0, "via-route");
    assert_eq!(
        transform.response.remove,
        [HeaderName::from_static("server")]
    );
    assert_eq!(transform.response.set[0].1, "DENY");

    let orders = config.route("orders").unwrap();
    assert!(matches!(&orders.action, RouteAction::Upstream(u) if u == "orders"));
    assert_eq!(orders.rewrite.path.as_deref(), Some("/v1/orders"));
    assert_eq!(orders.rewrite.host.as_deref(), Some("orders.internal"));
    assert_eq!(orders.timeout, secs(30), "default");
    let jwt = orders.auth.as_ref().unwrap().jwt.as_ref().unwrap();
    assert_eq!(jwt.token_from, TokenSource::Cookie("access_token".into()));
    assert_eq!(jwt.required_roles, ["orders"]);
    let limit = orders.rate_limit.as_ref().unwrap();
    assert_eq!(
        limit.key,
        RateLimitKey::Composite(vec![RateLimitKey::JwtSubject, RateLimitKey::Route])
    );
    assert_eq!(limit.quotas[1].per, secs(10));
    assert_eq!(
        (limit.backend, limit.on_redis_error),
        (RateLimitBackend::Local, OnRedisError::Allow),
        "defaults"
    );

    let search = config.route("search").unwrap();
    assert_eq!(search.matcher.paths, [PathMatch::Exact("/search".into())]);
    let cache = search.cache.as_ref().unwrap();
    assert_eq!(
        (cache.ttl, cache.max_body, cache.stale_grace),
        (secs(300), ByteSize::kib(512), secs(30))
    );
    assert_eq!(
        cache.vary_by,
        [
            HeaderName::from_static("accept-language"),
            HeaderName::from_static("accept-encoding")
        ]
    );
    assert_eq!(
        search.rate_limit.as_ref().unwrap().key,
        RateLimitKey::Header(HeaderName::from_static("x-tenant"))
    );
    let fault = search.fault.as_ref().unwrap();
    let delay = fault.delay.unwrap();
    assert_eq!((delay.percent.get(), delay.duration), (5.0, ms(100)));
    let abort = fault.abort.unwrap();
    assert_eq!((abort.percent.get(), abort.status), (0.5, 503));
    assert_eq!(
        fault.only_with_header,
        Some(HeaderName::from_static("x-chaos"))
    );

    let sessions = config.route("sessions").unwrap();
    let ip = sessions.ip_restriction.as_ref().unwrap();
    assert_eq!(
        ip.allow,
        [
            "10.0.0.0/8".parse::<Cidr>().unwrap(),
            "2001:db8::/32".parse().unwrap()
        ]
    );
    assert!(ip.deny[0].contains("10.66.1.2".parse().unwrap()));

    let legacy = config.route("legacy").unwrap();
    assert_eq!(
        legacy
            .auth
            .as_ref()
            .unwrap()
            .api_key
            .as_ref()
            .unwrap()
            .anonymous
            .as_deref(),
        Some("anonymous")
    );
    assert_eq!(
        legacy
            .auth
            .as_ref()
            .unwrap()
            .api_key
            .as_ref()
            .unwrap()
            .header,
        "x-api-key",
        "default"
    );

    let maintenance = config.route("maintenance").unwrap();
    assert_eq!(maintenance.priority, 100);
    let RouteAction::Terminate(t) = &maintenance.action else {
        panic!("terminate expected")
    };
    assert_eq!(t.status, 503);
    assert_eq!(
        t.message.as_deref(),
        Some("Billing is down for maintenance until 14:00 UTC.")
    );
    assert!(maintenance.upstreams().is_empty());
}

#[test]
fn example_file_loads_from_disk() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gateway.yaml");
    let config = Config::from_file_with_env(path, example_env).unwrap();
    assert_eq!(config.routes.len(), 8);

    let huge = std::env::temp_dir().join(format!("meshgate-huge-{}.yaml", std::process::id()));
    std::fs::write(
        &huge,
        vec![b'#'; meshgate::config::MAX_FILE_BYTES as usize + 1],
    )
    .unwrap();
    let refused = Config::from_file(&huge).unwrap_err();
    std::fs::remove_file(&huge).unwrap();
    assert_eq!(
        refused.to_string(),
        format!("{} is larger than 16MiB", huge.display())
    );

    let missing = Config::from_file("/nonexistent/gateway.yaml").unwrap_err();
    assert_eq!(missing.len(), 1);
    assert!(
        missing
            .to_string()
            .starts_with("cannot read /nonexistent/gateway.yaml: "),
        "{missing}"
    );
}

/// The demo lookup the example gateway uses for the default config.
fn demo_env(name: &str) -> Option<String> {
    let ports: HashMap<&str, u16> = [
        ("MESHGATE_DEMO_USERS_1", 41001),
        ("MESHGATE_DEMO_USERS_2", 41002),
        ("MESHGATE_DEMO_USERS_CANARY", 41003),
        ("MESHGATE_DEMO_ORDERS", 41004),
        ("MESHGATE_DEMO_FLAKY", 41005),
    ]
    .into();
    match name {
        "MESHGATE_DEMO_API_KEY" => Some("demo-key".to_owned()),
        "MESHGATE_DEMO_JWT_SECRET" => Some("x".repeat(32)),
        _ => ports.get(name).map(|port| format!("127.0.0.1:{port}")),
    }
}

#[test]
fn default_config_is_the_demo_gateway() {
    let config = Config::from_yaml_str_with_env(DEFAULT_CONFIG, demo_env).unwrap();
    assert_eq!(config.listeners.len(), 1);
    assert_eq!(
        config.listeners[0].address,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        config.admin.address,
        "127.0.0.1:9901".parse::<SocketAddr>().unwrap()
    );

    let users = config.upstream("users").unwrap();
    assert_eq!(
        users
            .endpoints
            .iter()
            .map(|e| e.authority())
            .collect::<Vec<_>>(),
        ["127.0.0.1:41001", "127.0.0.1:41002"]
    );
    assert_eq!(
        config.upstream("users-canary").unwrap().endpoints[0].port,
        41003
    );
    assert_eq!(config.upstream("orders").unwrap().endpoints[0].port, 41004);
    assert_eq!(config.upstream("flaky").unwrap().endpoints[0].port, 41005);
    assert_eq!(
        config.consumer("demo").unwrap().keys,
        [ApiKeyDigest::of_key("demo-key")]
    );

    let split = config.route("users").unwrap();
    let RouteAction::Split(split) = &split.action else {
        panic!("canary split expected")
    };
    assert_eq!(
        split.backends.iter().map(|b| b.weight).collect::<Vec<_>>(),
        [90, 10]
    );
    assert!(
        config
            .route("orders")
            .unwrap()
            .auth
            .as_ref()
            .unwrap()
            .api_key
            .is_some()
    );
    assert_eq!(
        config
            .route("limited")
            .unwrap()
            .rate_limit
            .as_ref()
            .unwrap()
            .quotas[0]
            .limit,
        5
    );
    assert_eq!(
        config.route("catalog").unwrap().cache.as_ref().unwrap().ttl,
        secs(30)
    );
    assert_eq!(
        config
            .route("flaky")
            .unwrap()
            .retry
            .as_ref()
            .unwrap()
            .attempts,
        3
    );
    assert_eq!(
        config
            .route("breaker")
            .unwrap()
            .circuit_breaker
            .unwrap()
            .consecutive_failures,
        3
    );
}

#[test]
fn default_config_names_every_missing_demo_variable() {
    let messages = errors(DEFAULT_CONFIG);
    assert_eq!(
        messages,
        [
            "upstreams[0].endpoints[0]: environment variable MESHGATE_DEMO_USERS_1 is not set (line 21, column 9)",
            "upstreams[0].endpoints[1]: environment variable MESHGATE_DEMO_USERS_2 is not set (line 22, column 9)",
            "upstreams[1].endpoints[0]: environment variable MESHGATE_DEMO_USERS_CANARY is not set (line 30, column 9)",
            "upstreams[2].endpoints[0]: environment variable MESHGATE_DEMO_ORDERS is not set (line 34, column 9)",
            "upstreams[3].endpoints[0]: environment variable MESHGATE_DEMO_FLAKY is not set (line 39, column 9)",
            "consumers[0].keys[0]: environment variable MESHGATE_DEMO_API_KEY is not set (line 45, column 9)",
            "jwt_issuers[0].keys[0].secret: environment variable MESHGATE_DEMO_JWT_SECRET is not set (line 53, column 17)",
        ]
    );
    // The documented list is the list the file uses.
    for (var, _) in DEFAULT_CONFIG_VARS {
        assert!(messages.iter().any(|m| m.contains(var)), "{var} unused");
    }
}

/// A valid config plus `extra`: a top-level section, or more items for
/// the base's `upstreams` or `consumers` when `extra` is `upstreams: [...]`
/// or `consumers: [...]`. The base takes lines 1 to 3; `extra` starts on 4.
fn with_base(extra: &str) -> String {
    let items = |section: &str| {
        extra
            .strip_prefix(&format!("{section}: ["))
            .and_then(|rest| rest.strip_suffix(']'))
            .map(|items| format!(", {items}"))
    };
    let (upstreams, consumers) = (items("upstreams"), items("consumers"));
    let rest = if upstreams.is_some() || consumers.is_some() {
        ""
    } else {
        extra
    };
    format!(
        "upstreams: [{{ name: users, endpoints: [127.0.0.1:9001] }}, {{ name: orders, endpoints: [127.0.0.1:9002] }}{}]\n\
         consumers: [{{ name: alice, keys: [2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824] }}{}]\n\
         rate_limit_tiers: {{ free: [{{ limit: 1, per: second }}] }}\n\
         {rest}\n",
        upstreams.unwrap_or_default(),
        consumers.unwrap_or_default(),
    )
}

#[test]
fn broken_configs_name_the_field() {
    let table: &[(&str, &str)] = &[
        (
            "routes: [{ name: a, upstream: users }, { name: b, upstream: users }, { name: c, upstream: pay }]",
            r#"routes[2].upstream: unknown upstream "pay" (line 4, column 91)"#,
        ),
        (
            "upstreams: [{ name: x, endpoints: [127.0.0.1:1, x:y] }]",
            r#"upstreams[2].endpoints[1]: invalid address "x:y": port "y" is not a number from 1 to 65535 (line 1, column 142)"#,
        ),
        (
            "routes:\n  - { name: a, upstream: users }\n  - name: b\n    split: { backends: [{ upstream: users, weight: 0 }, { upstream: orders, weight: 0 }] }",
            "routes[1].split: weights sum to 0 (line 7, column 12)",
        ),
        (
            "routes: [{ name: a, upstream: users }, { name: a, upstream: orders }]",
            r#"routes[1].name: duplicate route name "a" (line 4, column 48)"#,
        ),
        (
            "upstreams: [{ name: users, endpoints: [127.0.0.1:1] }]",
            r#"upstreams[2].name: duplicate upstream name "users" (line 1, column 114)"#,
        ),
        (
            "routes: [{ name: a, upstream: users, match: { headers: [{ name: x-v, regex: \"(unclosed\" }] } }]",
            r#"routes[0].match.headers[0].regex: invalid regex "(unclosed": unclosed group (line 4, column 77)"#,
        ),
        (
            "routes: [{ name: a, upstream: users, fault: { abort: { percent: 150, status: 503 } } }]",
            "routes[0].fault.abort.percent: percentage 150 is out of range 0-100 (line 4, column 65)",
        ),
        (
            "consumers: [{ name: bob, tier: gold }]",
            r#"consumers[1].tier: unknown tier "gold" (line 2, column 123)"#,
        ),
        (
            "routes: [{ name: a, upstream: users, auth: { api_key: { consumers: [carol] } } }]",
            r#"routes[0].auth.api_key.consumers[0]: unknown consumer "carol" (line 4, column 69)"#,
        ),
        (
            "routes: [{ name: a, upstream: users, auth: { jwt: { issuers: [corp] } } }]",
            r#"routes[0].auth.jwt.issuers[0]: unknown issuer "corp" (line 4, column 63)"#,
        ),
        (
            "redis: { url: \"${REDIS_URL}\" }",
            "redis.url: environment variable REDIS_URL is not set (line 4, column 15)",
        ),
        (
            "routes: [{ name: a, upstream: users, timeout: 30 }]",
            r#"routes[0].timeout: duration "30" has no unit (use ns, us, ms, s, m, h or d, e.g. "30s") (line 4, column 47)"#,
        ),
        (
            "routes: [{ name: a, upstream: users, timout: 3s }]",
            "routes[0].timout: unknown field `timout`, expected one of name, priority, match, upstream, split, terminate, aggregate, strip_prefix, rewrite, timeout, retry, circuit_breaker, cache, rate_limit, auth, cors, transform, fault, ip_restriction (line 4, column 38)",
        ),
        (
            "routes: [{ name: a, upstream: users, split: { backends: [{ upstream: orders }] } }]",
            "routes[0]: give only one of upstream, split, terminate or aggregate (line 4, column 10)",
        ),
        (
            "routes: [{ name: a }]",
            "routes[0]: needs one of upstream, split, terminate or aggregate (line 4, column 10)",
        ),
        (
            "routes: [{ name: a, upstream: users, retry: { backoff: { base: 2s, cap: 1s } } }]",
            "routes[0].retry.backoff.cap: must be at least backoff.base (line 4, column 73)",
        ),
        (
            "routes: [{ name: a, upstream: users, retry: { attempts: 0 } }]",
            "routes[0].retry.attempts: 0 is out of range 1-10 (line 4, column 57)",
        ),
        (
            "routes: [{ name: a, upstream: users, timeout: 2s, retry: { per_try_timeout: 2s } }]",
            "routes[0].retry.per_try_timeout: 2s leaves no time for a retry within the route timeout 2s (line 4, column 77)",
        ),
        (
            "routes: [{ name: a, upstream: users, strip_prefix: /v1, match: { paths: [{ prefix: /api }] } }]",
            r#"routes[0].strip_prefix: "/v1" is not a prefix of path "/api" (line 4, column 52)"#,
        ),
        (
            "routes: [{ name: a, upstream: users, rate_limit: { key: consumer, quotas: [{ limit: 1, per: minute }] } }]",
            "routes[0].rate_limit.key: key consumer needs auth.api_key on the route (line 4, column 57)",
        ),
        (
            "routes: [{ name: a, upstream: users, rate_limit: { backend: redis, quotas: [{ limit: 1, per: minute }] } }]",
            "routes[0].rate_limit.backend: redis needs the top-level redis section (line 4, column 61)",
        ),
        (
            "routes: [{ name: a, upstream: users, rate_limit: { quotas: [{ limit: 0, per: fortnight }] } }]",
            "routes[0].rate_limit.quotas[0].per: expected second, minute, hour, day or a duration: invalid duration \"fortnight\" (expected e.g. \"250ms\", \"30s\", \"5m\") (line 4, column 78)",
        ),
        (
            "routes: [{ name: a, upstream: users, cors: { allow_origins: [\"*\"], allow_credentials: true } }]",
            "routes[0].cors.allow_credentials: cannot be true with origin \"*\" (line 4, column 87)",
        ),
        (
            "trusted_proxies: [10.0.0.1/8]",
            "trusted_proxies[0]: 10.0.0.1/8 has host bits set (the network is 10.0.0.0/8) (line 4, column 19)",
        ),
        (
            "listeners: [{ address: 127.0.0.1:9901 }]",
            "admin.address: 127.0.0.1:9901 is already used by listeners[0]",
        ),
        (
            "upstreams: [{ name: h, endpoints: [a:1], health_check: { interval: 1s, timeout: 2s } }]",
            "upstreams[2].health_check.timeout: 2s is longer than the interval 1s (line 1, column 174)",
        ),
        (
            "consumers: [{ name: bob, keys: [not-a-digest-but-a-plain-key] }]",
            "consumers[1].keys[0]: expected a SHA-256 digest (64 hex digits) or a ${VAR} reference to a plain key (line 2, column 124)",
        ),
        (
            "consumers: [{ name: bob, keys: [2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824] }]",
            r#"consumers[1].keys[0]: the same key is already given to consumer "alice" (line 2, column 124)"#,
        ),
        (
            "jwt_issuers: [{ name: j, issuer: i, keys: [{ algorithm: none, secret: x }] }]",
            r#"jwt_issuers[0].keys[0].algorithm: "none" is never accepted: tokens must be signed (line 4, column 57)"#,
        ),
        (
            "jwt_issuers: [{ name: j, issuer: i, keys: [{ algorithm: HS256, secret: short }] }]",
            "jwt_issuers[0].keys[0].secret: a HS256 secret needs at least 32 bytes (line 4, column 72)",
        ),
        (
            "jwt_issuers: [{ name: j, issuer: i, keys: [{ algorithm: RS256, secret: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx, pem: \"-----BEGIN PUBLIC KEY-----\" }] }]",
            "jwt_issuers[0].keys[0].secret: RS256 uses a PEM public key, not a secret (line 4, column 72)",
        ),
        (
            "routes:\n  - name: a\n    split:\n      backends: [{ upstream: users }, { upstream: orders }]\n      overrides: [{ header: x-canary, value: \"1\", upstream: canary }]",
            r#"routes[0].split.overrides[0].upstream: "canary" is not a backend of this split (line 8, column 61)"#,
        ),
        (
            "routes: [{ name: a, upstream: users, match: { hosts: [\"a.*.com\"] } }]",
            r#"routes[0].match.hosts[0]: invalid host "a.*.com" (line 4, column 55)"#,
        ),
        (
            "routes: [{ name: a, upstream: users, match: { methods: [get] } }]",
            r#"routes[0].match.methods[0]: method "get" must be upper-case ("GET") (line 4, column 57)"#,
        ),
        (
            "routes: [{ name: a, upstream: users, match: { paths: [{ template: \"/files/{*rest}/x\" }] } }]",
            r#"routes[0].match.paths[0].template: invalid template "/files/{*rest}/x": a catch-all parameter must come last (line 4, column 67)"#,
        ),
        (
            "upstreams: [{ name: o, endpoints: [a:1], outlier_detection: { consecutive_5xx: 0 } }]",
            "upstreams[2].outlier_detection: consecutive_5xx and consecutive_gateway_errors are both 0: nothing would eject (line 1, column 154)",
        ),
        (
            "routes: [{ name: a, upstream: users, match: { paths: [{ prefix: /x }] } }, { name: b, upstream: orders, match: { paths: [{ prefix: /x }] } }]",
            r#"routes[1].match: matches the same requests as routes[0] ("a"); give one a higher priority (line 4, column 112)"#,
        ),
        (
            "upstreams: [{ name: w, endpoints: [a:1, { address: \"b:1\", weight: 2 }] }]",
            "upstreams[2].balancing: round_robin ignores endpoint weights; use weighted (line 1, column 106)",
        ),
        (
            "trusted_proxies: [10.0.0.0/8, \"::/0\"]",
            "trusted_proxies[1]: ::/0 trusts every peer, so any client could choose its own IP; list the proxies' networks (line 4, column 31)",
        ),
        (
            "metrics: { path: /healthz }",
            r#"metrics.path: "/healthz" is taken by the admin listener (line 4, column 18)"#,
        ),
        (
            "routes: [{ name: \"bad name\", upstream: users }]",
            r#"routes[0].name: invalid name "bad name" (1-64 letters, digits, '-', '_' or '.', starting with a letter or digit) (line 4, column 18)"#,
        ),
    ];
    assert!(table.len() >= 15);
    let mut mismatches = Vec::new();
    for (extra, expected) in table {
        let yaml = with_base(extra);
        let got = errors(&yaml);
        if got != [*expected] {
            mismatches.push(format!(
                "for {extra}\n  expected {expected}\n  got      {got:?}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let yaml = "
upstreams:
  - name: users
    endpoints: [127.0.0.1:1, \"bad host:80\"]
  - name: users
    endpoints: []
routes:
  - name: a
    upstream: pay
  - name: b
    split: { backends: [{ upstream: users, weight: 0 }] }
    match: { query: [{ name: q, regex: \"[\" }] }
consumers:
  - { name: c, tier: gold, keys: [\"${C_KEY}\"] }
";
    let errors = Config::from_yaml_str_with_env(yaml, no_env).unwrap_err();
    assert_eq!(
        errors.to_string(),
        [
            r#"upstreams[1].name: duplicate upstream name "users" (line 5, column 11)"#,
            r#"upstreams[0].endpoints[1]: invalid address "bad host:80": "bad host" is not an IP address or a DNS name (line 4, column 30)"#,
            "upstreams[1].endpoints: at least one endpoint is needed (line 6, column 16)",
            r#"consumers[0].tier: unknown tier "gold" (line 14, column 22)"#,
            "consumers[0].keys[0]: environment variable C_KEY is not set (line 14, column 35)",
            r#"routes[0].upstream: unknown upstream "pay" (line 9, column 15)"#,
            r#"routes[1].match.query[0].regex: invalid regex "[": unclosed character class (line 12, column 40)"#,
            "routes[1].split: weights sum to 0 (line 11, column 12)",
        ]
        .join("\n")
    );
    assert_eq!(errors.len(), 8);
    assert!(errors.iter().all(|e| e.position().is_some()));
    assert_eq!(errors.errors()[5].path(), "routes[0].upstream");
    assert_eq!(errors.errors()[5].message(), r#"unknown upstream "pay""#);
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let cases = [
        ("listner: []", "listner", (1, 1)),
        ("admin: { adress: 127.0.0.1:1 }", "admin.adress", (1, 10)),
        (
            "upstreams: [{ name: u, endpoints: [{ address: \"a:1\", wieght: 2 }] }]",
            "upstreams[0].endpoints[0].wieght",
            (1, 54),
        ),
        (
            "upstreams: [{ name: u, endpoints: [a:1], health_check: { intervl: 1s } }]",
            "upstreams[0].health_check.intervl",
            (1, 58),
        ),
        (
            "routes: [{ name: r, upstream: u, match: { hedaers: [] } }]",
            "routes[0].match.hedaers",
            (1, 43),
        ),
        (
            "routes: [{ name: r, upstream: u, retry: { budget: { ratio: 0.2 } } }]",
            "routes[0].retry.budget.ratio",
            (1, 53),
        ),
        (
            "jwt_issuers: [{ name: j, issuer: i, keys: [{ algorithm: HS256, secrte: x }] }]",
            "jwt_issuers[0].keys[0].secrte",
            (1, 64),
        ),
    ];
    for (yaml, path, (line, column)) in cases {
        let errors = Config::from_yaml_str_with_env(yaml, no_env).unwrap_err();
        assert_eq!(errors.len(), 1);
        let error = &errors.errors()[0];
        assert_eq!(error.path(), path, "for {yaml}");
        let field = path.rsplit('.').next().unwrap();
        assert!(
            error
                .message()
                .starts_with(&format!("unknown field `{field}`, expected ")),
            "{error}"
        );
        assert_eq!(error.position(), Some((line, column)), "for {yaml}");
    }

    // An unknown variant of an enum is refused the same way.
    assert_eq!(
        errors("upstreams: [{ name: u, endpoints: [a:1], balancing: least_requests }]"),
        [
            "upstreams[0].balancing: unknown variant `least_requests`, expected one of round_robin, weighted, random, least_request, peak_ewma, consistent_hash (line 1, column 53)"
        ]
    );
}

#[test]
fn yaml_syntax_errors_carry_line_and_column() {
    let errors =
        Config::from_yaml_str_with_env("routes:\n  - name: a\n    upstream: [users\n", no_env)
            .unwrap_err();
    assert_eq!(errors.len(), 1);
    let (line, column) = errors.errors()[0].position().expect("a position");
    assert!(line >= 3, "line {line}");
    assert!(column >= 1);
    assert!(
        errors
            .to_string()
            .contains(&format!("(line {line}, column {column})")),
        "{errors}"
    );

    let errors = Config::from_yaml_str_with_env("routes: [\n\t- bad\n", no_env).unwrap_err();
    assert!(errors.errors()[0].position().is_some(), "{errors}");
}

#[test]
fn durations_sizes_and_percentages_in_the_file() {
    let route = |timeout: &str| {
        Config::from_yaml_str_with_env(
            &format!("upstreams: [{{ name: u, endpoints: [a:1] }}]\nroutes: [{{ name: r, upstream: u, timeout: {timeout} }}]"),
            no_env,
        )
        .map(|c| c.routes[0].timeout)
        .map_err(|e| e.errors()[0].message().to_owned())
    };
    assert_eq!(route("250ms"), Ok(ms(250)));
    assert_eq!(route("30s"), Ok(secs(30)));
    assert_eq!(route("5m"), Ok(secs(300)));
    assert_eq!(route("1h"), Ok(secs(3600)));
    assert_eq!(route("1h30m"), Ok(secs(5400)));
    assert_eq!(route("1.5s"), Ok(ms(1500)));
    assert_eq!(route("\"2s\""), Ok(secs(2)));
    assert_eq!(route("0s"), Err("must be more than 0s".to_owned()));
    assert_eq!(route("-1s"), Err("negative duration \"-1s\"".to_owned()));
    assert_eq!(route("-3"), Err("negative duration \"-3\"".to_owned()));
    assert_eq!(
        route("1.5"),
        Err(
            "duration \"1.5\" has no unit (use ns, us, ms, s, m, h or d, e.g. \"1.5s\")".to_owned()
        )
    );
    assert_eq!(
        route("10 parsecs"),
        Err(
            "unknown unit \" parsecs\" in duration \"10 parsecs\" (use ns, us, ms, s, m, h or d)"
                .to_owned()
        )
    );
    assert_eq!(
        route("99999999999999999999h"),
        Err("duration \"99999999999999999999h\" is too large".to_owned())
    );
    assert_eq!(
        route("213503982334602d"),
        Err("duration \"213503982334602d\" is too large".to_owned())
    );

    let body = |size: &str| {
        Config::from_yaml_str_with_env(
            &format!(
                "listeners: [{{ address: 127.0.0.1:1, limits: {{ max_request_body: {size} }} }}]"
            ),
            no_env,
        )
        .map(|c| c.listeners[0].limits.max_request_body.as_u64())
        .map_err(|e| e.errors()[0].message().to_owned())
    };
    assert_eq!(body("64KiB"), Ok(65_536));
    assert_eq!(body("1MiB"), Ok(1_048_576));
    assert_eq!(body("1MB"), Ok(1_000_000));
    assert_eq!(body("4096"), Ok(4096));
    assert_eq!(body("0"), Ok(0));
    assert_eq!(body("1.5MiB"), Err("invalid size \"1.5MiB\" (expected a whole number with a unit, e.g. \"64KiB\", \"1MiB\")".to_owned()));
    assert_eq!(body("-1"), Err("negative size \"-1\"".to_owned()));
    assert_eq!(
        body("1mib"),
        Err(
            "unknown unit \"mib\" in size \"1mib\" (use B, KiB, MiB, GiB, TiB, kB, MB, GB or TB)"
                .to_owned()
        )
    );
    assert_eq!(
        body("99999999999TiB"),
        Err("size \"99999999999TiB\" is too large".to_owned())
    );

    let percent = |p: &str| {
        Config::from_yaml_str_with_env(
            &format!("upstreams: [{{ name: u, endpoints: [a:1], outlier_detection: {{ max_ejection_percent: {p} }} }}]"),
            no_env,
        )
        .map(|c| c.upstreams[0].outlier_detection.unwrap().max_ejection_percent.get())
        .map_err(|e| e.errors()[0].message().to_owned())
    };
    assert_eq!(percent("0"), Ok(0.0));
    assert_eq!(percent("100"), Ok(100.0));
    assert_eq!(percent("12.5"), Ok(12.5));
    assert_eq!(percent("\"33%\""), Ok(33.0));
    assert_eq!(
        percent("100.5"),
        Err("percentage 100.5 is out of range 0-100".to_owned())
    );
    assert_eq!(
        percent("-1"),
        Err("percentage -1 is out of range 0-100".to_owned())
    );
    assert!(percent(".nan").is_err());
    assert_eq!(
        percent("lots"),
        Err("invalid percentage \"lots\" (expected 0-100)".to_owned())
    );

    // The public parsers agree with the file.
    assert_eq!(
        "1m30s".parse::<meshgate::config::Duration>().unwrap().0,
        secs(90)
    );
    assert_eq!("64KiB".parse::<ByteSize>().unwrap(), ByteSize::kib(64));
    assert!(Percent::new(100.0).is_ok() && Percent::new(100.1).is_err());
}

#[test]
fn env_references_expand_through_the_injected_lookup() {
    let yaml = r#"
redis: { url: "redis://:${REDIS_PASS}@${REDIS_HOST}:6379/$$0" }
upstreams: [{ name: u, endpoints: ["${U_HOST}:${U_PORT}"] }]
consumers: [{ name: c, keys: ["${C_KEY}"] }]
jwt_issuers:
  - { name: j, issuer: i, jwks_url: "https://${IDP}/jwks.json" }
"#;
    let vars: HashMap<&str, &str> = [
        ("REDIS_PASS", "p4ss"),
        ("REDIS_HOST", "redis.internal"),
        ("U_HOST", "10.1.2.3"),
        ("U_PORT", "8080"),
        ("C_KEY", "the-plain-key"),
        ("IDP", "idp.example.com"),
    ]
    .into();
    let lookups = std::cell::RefCell::new(Vec::new());
    let env = |name: &str| {
        lookups.borrow_mut().push(name.to_owned());
        vars.get(name).map(|v| (*v).to_owned())
    };
    let config = Config::from_yaml_str_with_env(yaml, env).unwrap();
    assert_eq!(
        config.redis.unwrap().url.expose(),
        "redis://:p4ss@redis.internal:6379/$0"
    );
    assert_eq!(
        config.upstreams[0].endpoints[0].authority(),
        "10.1.2.3:8080"
    );
    assert_eq!(
        config.consumers[0].keys,
        [ApiKeyDigest::of_key("the-plain-key")]
    );
    assert!(
        matches!(&config.jwt_issuers[0].keys, JwtKeys::Jwks { url, .. } if url == "https://idp.example.com/jwks.json")
    );
    assert_eq!(lookups.borrow().len(), 6, "each reference looked up once");

    // Elsewhere `${...}` is plain text, never expanded (in a transform it
    // is a request template, checked at load: this one is valid).
    let config = Config::from_yaml_str_with_env(
        "upstreams: [{ name: u, endpoints: [a:1] }]\nroutes: [{ name: r, upstream: u, transform: { request: { set: { x-v: \"${header.NOT_EXPANDED}\" } } } }]",
        |_| panic!("no lookup expected"),
    )
    .unwrap();
    assert_eq!(
        config.routes[0].transform.as_ref().unwrap().request.set[0].1,
        "${header.NOT_EXPANDED}"
    );
}

#[test]
fn env_errors_name_the_variable_and_never_the_value() {
    let secret = "supersecretvalue";
    let env = |name: &str| match name {
        "SHORT" => Some(secret.to_owned()),
        "BAD_REDIS" => Some(format!("http://user:{secret}@host")),
        _ => None,
    };
    let yaml = r#"
redis: { url: "${BAD_REDIS}" }
jwt_issuers: [{ name: j, issuer: i, keys: [{ algorithm: HS512, secret: "${SHORT}" }] }]
consumers:
  - { name: c, keys: ["${MISSING_KEY}", "${UNCLOSED", "${1BAD}"] }
"#;
    let messages = errors_with_env(yaml, env);
    assert_eq!(
        messages,
        [
            "redis.url: must start with redis://, rediss:// or unix:// (line 2, column 15)",
            "consumers[0].keys[0]: environment variable MISSING_KEY is not set (line 5, column 23)",
            "consumers[0].keys[1]: unterminated ${ in value (write $$ for a literal $) (line 5, column 41)",
            "consumers[0].keys[2]: invalid environment variable reference (use ${NAME}, NAME of letters, digits and _) (line 5, column 55)",
            "jwt_issuers[0].keys[0].secret: a HS512 secret needs at least 64 bytes (line 3, column 72)",
        ]
    );
    assert!(messages.iter().all(|m| !m.contains(secret)));
}

#[test]
fn debug_of_a_config_never_prints_a_secret() {
    let config = Config::from_yaml_str_with_env(EXAMPLE, example_env).unwrap();
    let debug = format!("{config:?}");
    let pretty = format!("{config:#?}");
    for text in [&debug, &pretty] {
        assert!(!text.contains(HS_SECRET), "HMAC secret in Debug");
        assert!(!text.contains(MOBILE_KEY), "plain API key in Debug");
        assert!(!text.contains("hunter2-redis"), "Redis password in Debug");
        assert!(!text.contains("8d36ed7a4d7f1b6a"), "key digest in Debug");
    }
    assert!(debug.contains("url: ***"), "the Redis URL shows as ***");
    assert!(
        debug.contains("Secret(***)") || debug.contains("Secret(\n"),
        "{debug}"
    );
    assert!(debug.contains("sha256:***"));
    let redis = config.redis.as_ref().unwrap();
    assert_eq!(redis.url.to_string(), "***");
}

#[test]
fn listeners_default_to_loopback_8080() {
    let config = load("");
    assert_eq!(config.listeners.len(), 1);
    assert_eq!(
        config.listeners[0].address,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        config.listeners[0].protocols,
        [Protocol::Http1, Protocol::H2c]
    );
    assert!(config.admin.enabled);
    assert_eq!(config.access_log.format, AccessLogFormat::Text);
    assert!(config.routes.is_empty() && config.upstreams.is_empty());
    assert_eq!(
        errors("listeners: []"),
        ["listeners: at least one listener is needed (line 1, column 12)"]
    );
}

#[test]
fn cidrs_contain_their_addresses() {
    let config = load("trusted_proxies: [10.0.0.0/8, \"2001:db8::/32\", 127.0.0.1]");
    let [v4, v6, host] = &config.trusted_proxies[..] else {
        panic!("three CIDRs")
    };
    assert!(v4.contains("10.255.255.255".parse().unwrap()));
    assert!(!v4.contains("11.0.0.0".parse().unwrap()));
    assert!(v6.contains("2001:db8::1".parse().unwrap()));
    assert!(!v6.contains("2001:db9::1".parse().unwrap()));
    assert!(host.contains("127.0.0.1".parse().unwrap()));
    assert!(!host.contains("127.0.0.2".parse().unwrap()));
    assert_eq!(v6.to_string(), "2001:db8::/32");
}

#[test]
fn shape_errors_are_readable() {
    let cases = [
        (
            "routes: []\nroutes: []\n",
            "duplicate mapping key: routes (line 2, column 1)",
        ),
        (
            "routes:\n  - name: a\n    name: b\n",
            "routes[0]: duplicate mapping key: name (line 3, column 5)",
        ),
        (
            "routes: [{ name: r, upstream: u, priority: high }]",
            "routes[0].priority: expected a whole number (i32) (line 1, column 44)",
        ),
        (
            "upstreams: {}",
            "upstreams: expected sequence start (line 1, column 12)",
        ),
        (
            "listeners: [{ address: nope }]",
            "listeners[0].address: invalid socket address syntax (line 1, column 24)",
        ),
        (
            "routes: [{ name: r, terminate: { status: 99 } }]",
            "routes[0].terminate.status: invalid HTTP status 99 (expected 100-599) (line 1, column 42)",
        ),
        ("- a\n- b\n", "expected mapping start (line 1, column 1)"),
    ];
    for (yaml, expected) in cases {
        assert_eq!(errors(yaml), [expected], "for {yaml:?}");
    }
}

#[test]
fn anchors_and_merge_keys_share_policies() {
    let config = load(
        "
upstreams: [{ name: u, endpoints: [a:1] }]
routes:
  - name: a
    upstream: u
    match: { paths: [{ prefix: /a }] }
    retry: &retry { attempts: 4, retry_on: [5xx] }
    circuit_breaker: &breaker { consecutive_failures: 2 }
  - name: b
    upstream: u
    match: { paths: [{ prefix: /b }] }
    retry: *retry
    circuit_breaker:
      <<: *breaker
      open_for: 5s
",
    );
    let b = config.route("b").unwrap();
    assert_eq!(b.retry.as_ref().unwrap().attempts, 4);
    assert_eq!(b.retry.as_ref().unwrap().retry_on, [RetryOn::ServerError]);
    let cb = b.circuit_breaker.unwrap();
    assert_eq!((cb.consecutive_failures, cb.open_for), (2, secs(5)));
}

#[test]
fn unknown_fields_in_enum_variants_are_refused() {
    assert_eq!(
        errors("upstreams: [{ name: u, endpoints: [a:1], discovery: { dns: { intervl: 5s } } }]"),
        [
            "upstreams[0].discovery.dns.intervl: unknown field `intervl`, expected one of interval (line 1, column 62)"
        ]
    );
    let two_keys = errors(
        "upstreams: [{ name: u, endpoints: [a:1], balancing: { consistent_hash: client_ip, random: x } }]",
    );
    assert_eq!(two_keys.len(), 1);
    assert!(
        two_keys[0].starts_with("upstreams[0].balancing"),
        "{two_keys:?}"
    );
}

#[test]
fn transform_sections_parse_query_body_and_compression_with_defaults() {
    use meshgate::config::BodyValue;
    let config = Config::from_yaml_str(
        r#"
upstreams: [{ name: u, endpoints: [a:1] }]
routes:
  - name: r
    upstream: u
    transform:
      request:
        query: { remove: [debug], rename: { q: search }, set: { v: "2" }, add: { t: "${claim.tenant}" } }
        body:
          remove: [password, user.ssn]
          rename: { userName: user.name }
          add: { source: gateway, n: 3, ratio: 0.5, on: true, tags: [a, 1], meta: { k: v }, none: ~ }
      response:
        body: { replace: { status: "${route}" } }
      compression: {}
  - name: plain
    match: { paths: [{ prefix: /plain }] }
    upstream: u
    transform: { max_body: 64KiB, compression: { brotli: false, min_size: 256B } }
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let t = config.routes[0].transform.as_ref().unwrap();
    assert_eq!(t.max_body, ByteSize::mib(1));
    assert_eq!(t.request.query.remove, ["debug"]);
    assert_eq!(
        t.request.query.rename,
        [("q".to_owned(), "search".to_owned())]
    );
    assert_eq!(t.request.query.set, [("v".to_owned(), "2".to_owned())]);
    assert_eq!(t.request.body.remove, ["password", "user.ssn"]);
    let add: HashMap<_, _> = t.request.body.add.iter().cloned().collect();
    assert_eq!(add["source"], BodyValue::String("gateway".into()));
    assert_eq!(add["n"], BodyValue::Integer(3));
    assert_eq!(add["ratio"], BodyValue::Float(0.5));
    assert_eq!(add["on"], BodyValue::Bool(true));
    assert_eq!(
        add["tags"],
        BodyValue::List(vec![BodyValue::String("a".into()), BodyValue::Integer(1)])
    );
    assert!(matches!(&add["meta"], BodyValue::Map(m) if m["k"] == BodyValue::String("v".into())));
    assert_eq!(add["none"], BodyValue::Null(()));
    assert_eq!(
        t.response.body.replace,
        [("status".to_owned(), BodyValue::String("${route}".into()))]
    );
    let compression = t.compression.unwrap();
    assert!(compression.gzip && compression.brotli);
    assert_eq!(compression.min_size, ByteSize::kib(1));
    let t = config.routes[1].transform.as_ref().unwrap();
    assert_eq!(t.max_body, ByteSize::kib(64));
    let compression = t.compression.unwrap();
    assert!(compression.gzip && !compression.brotli);
    assert_eq!(compression.min_size, ByteSize(256));
}

#[test]
fn the_load_bench_configs_load_and_differ_as_described() {
    let load = |text: &str| {
        let yaml = text
            .replace("@LISTEN@", "127.0.0.1:18083")
            .replace("@UPSTREAM@", "127.0.0.1:18080");
        Config::from_yaml_str_with_env(&yaml, |name| {
            (name == "LOADTEST_KEY").then(|| "loadtest-key".to_owned())
        })
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let routing = load(include_str!("../../scripts/loadtest-routing.yaml"));
    let full = load(include_str!("../../scripts/loadtest-full.yaml"));
    let all = load(include_str!("../../scripts/loadtest-all.yaml"));
    // Routing: the header work nginx and HAProxy are given, no more.
    assert!(routing.request_id.enabled);
    assert!(!routing.trace_context.enabled);
    assert!(!routing.metrics.enabled && !routing.access_log.enabled);
    assert!(routing.routes[0].auth.is_none() && routing.routes[0].rate_limit.is_none());
    // Full: the goal's list (API key, rate limit, metrics, request id).
    assert!(full.request_id.enabled && full.metrics.enabled);
    assert!(!full.trace_context.enabled && !full.access_log.enabled);
    assert!(full.routes[0].auth.is_some() && full.routes[0].rate_limit.is_some());
    assert!(full.routes[0].retry.is_none() && full.routes[0].circuit_breaker.is_none());
    // All: every layer a proxied route can have.
    assert!(all.trace_context.enabled && all.metrics.enabled);
    assert!(all.routes[0].retry.is_some() && all.routes[0].circuit_breaker.is_some());
    assert!(all.upstreams[0].health_check.is_some());
    assert!(all.upstreams[0].outlier_detection.is_some());
}
