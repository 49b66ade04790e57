//! The gateway built from YAML, served on loopback, in front of in-process
//! upstreams: what a user of the gateway sees over real HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode as AxumStatus, Uri};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use meshgate::config::Config;
use meshgate::gateway::Gateway;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// An upstream that answers `<name> <path>` and counts its calls.
pub(crate) async fn named_upstream(name: &'static str) -> (SocketAddr, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&calls);
    let app = Router::new().fallback(move |uri: Uri| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move { format!("{name} {}", uri.path()) }
    });
    (serve(app).await, calls)
}

/// An upstream whose answers follow a script, one status per call, then 200.
async fn scripted_upstream(script: Vec<u16>) -> (SocketAddr, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .fallback(
            |State((calls, script)): State<(Arc<AtomicU64>, Arc<Vec<u16>>)>| async move {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                let code = script
                    .get(usize::try_from(n).unwrap())
                    .copied()
                    .unwrap_or(200);
                (AxumStatus::from_u16(code).unwrap(), format!("call {n}"))
            },
        )
        .with_state((Arc::clone(&calls), Arc::new(script)));
    (serve(app).await, calls)
}

async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A port nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

pub(crate) struct Running {
    addr: SocketAddr,
    admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Running {
    pub(crate) async fn start(yaml: &str) -> Running {
        Self::start_config(Config::from_yaml_str(yaml).unwrap_or_else(|e| panic!("{e}"))).await
    }

    pub(crate) async fn start_config(config: Config) -> Running {
        let gateway = Gateway::from_config(config).unwrap_or_else(|e| panic!("{e}"));
        let bound = gateway.bind().await.unwrap();
        let addr = bound.listener_addrs()[0].1;
        let admin = bound.admin_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(bound.serve(async move {
            let _ = stopped.await;
        }));
        Running {
            addr,
            admin,
            stop: Some(stop),
            task,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub(crate) async fn get(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, http::HeaderMap, String) {
        self.send(self.addr, "GET", path, headers).await
    }

    pub(crate) async fn delete(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, http::HeaderMap, String) {
        self.send(self.addr, "DELETE", path, headers).await
    }

    async fn admin(&self, path: &str) -> (StatusCode, String) {
        let (status, _, body) = self.send(self.admin, "GET", path, &[]).await;
        (status, body)
    }

    async fn send(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, http::HeaderMap, String) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .client
            .request(request.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

const LISTENERS: &str = "
listeners:
  - address: 127.0.0.1:0
    limits: { max_request_body: 1KiB, max_header_bytes: 16KiB }
admin:
  address: 127.0.0.1:0
access_log:
  enabled: false
";

#[tokio::test]
async fn routes_splits_and_answers_404() {
    let (users_1, _) = named_upstream("users-1").await;
    let (users_2, _) = named_upstream("users-2").await;
    let (canary, canary_calls) = named_upstream("canary").await;
    let yaml = format!(
        "{LISTENERS}
upstreams:
  - name: users
    endpoints: [\"{users_1}\", \"{users_2}\"]
  - name: canary
    endpoints: [\"{canary}\"]
routes:
  - name: users
    match: {{ paths: [{{ prefix: /users }}] }}
    split:
      backends:
        - {{ upstream: users, weight: 100 }}
        - {{ upstream: canary, weight: 0 }}
      overrides:
        - {{ header: x-canary, value: \"true\", upstream: canary }}
  - name: v2
    match: {{ paths: [{{ template: \"/v2/items/{{id}}\" }}], methods: [GET] }}
    strip_prefix: /v2
    upstream: users
"
    );
    let gateway = Running::start(&yaml).await;

    // Round robin over the two users instances; the canary gets nothing.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (status, headers, body) = gateway.get("/users/7", &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(headers.contains_key("x-request-id"));
        seen.push(body);
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "users-1 /users/7",
            "users-1 /users/7",
            "users-2 /users/7",
            "users-2 /users/7"
        ]
    );
    assert_eq!(canary_calls.load(Ordering::SeqCst), 0);

    let (status, _, body) = gateway.get("/users/7", &[("x-canary", "true")]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "canary /users/7"));

    let (status, _, body) = gateway.get("/v2/items/42", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.ends_with(" /items/42"), "{body}");

    let (status, headers, body) = gateway.get("/nowhere", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(body.contains("\"status\":404"), "{body}");

    let (status, headers, _) = gateway
        .send(gateway.addr, "DELETE", "/v2/items/42", &[])
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET");
    gateway.stop().await;
}

#[tokio::test]
async fn retries_cure_a_flaky_upstream_and_the_breaker_opens() {
    let (flaky, flaky_calls) = scripted_upstream(vec![503, 503]).await;
    let (broken, broken_calls) = scripted_upstream(vec![500; 100]).await;
    let yaml = format!(
        "{LISTENERS}
upstreams:
  - name: flaky
    endpoints: [\"{flaky}\"]
  - name: broken
    endpoints: [\"{broken}\"]
routes:
  - name: flaky
    match: {{ paths: [{{ prefix: /flaky }}] }}
    upstream: flaky
    retry:
      attempts: 3
      backoff: {{ base: 1ms, cap: 5ms }}
      retry_on: [5xx]
  - name: broken
    match: {{ paths: [{{ prefix: /broken }}] }}
    upstream: broken
    circuit_breaker:
      consecutive_failures: 3
      open_for: 30s
"
    );
    let gateway = Running::start(&yaml).await;

    let (status, _, body) = gateway.get("/flaky", &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "call 2"));
    assert_eq!(flaky_calls.load(Ordering::SeqCst), 3);

    for _ in 0..3 {
        let (status, _, _) = gateway.get("/broken", &[]).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    let (status, headers, body) = gateway.get("/broken", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert_eq!(
        broken_calls.load(Ordering::SeqCst),
        3,
        "the open breaker calls nobody"
    );

    // The admin page and the metrics tell the same story.
    let (status, text) = gateway.admin("/admin/status").await;
    assert_eq!(status, StatusCode::OK);
    let json: Value = serde_json::from_str(&text).unwrap();
    let breaker = &json["circuit_breakers"][0];
    assert_eq!(breaker["route"], "broken");
    assert_eq!(breaker["state"], "open");
    assert_eq!(json["retries"][0]["route"], "flaky");
    assert_eq!(json["retries"][0]["retries"], 2);
    let flaky_endpoint = &json["upstreams"][0]["endpoints"][0];
    assert_eq!(flaky_endpoint["requests"], 3);
    assert_eq!(flaky_endpoint["healthy"], true);

    let (status, metrics) = gateway.admin("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for needle in [
        r#"meshgate_requests_total{route="flaky",method="GET",status="2xx"} 1"#,
        r#"meshgate_requests_total{route="broken",method="GET",status="5xx"} 4"#,
        r#"meshgate_rejections_total{route="broken",kind="circuit_open"} 1"#,
        r#"meshgate_retries_total{route="flaky"} 2"#,
        r#"meshgate_circuit_breaker_state{route="broken",backend="broken",key=""} 1"#,
        "meshgate_request_duration_seconds_bucket{",
        "meshgate_upstream_requests_total{upstream=\"flaky\"",
        "meshgate_connections_active{listener=\"http\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
    gateway.stop().await;
}

#[tokio::test]
async fn readyz_turns_unready_when_every_endpoint_fails_its_checks() {
    let (users, _) = named_upstream("users").await;
    let dead = closed_port().await;
    let yaml = format!(
        "{LISTENERS}
upstreams:
  - name: users
    endpoints: [\"{users}\"]
  - name: dead
    endpoints: [\"{dead}\"]
    health_check: {{ path: /healthz, interval: 20ms, timeout: 10ms, unhealthy_threshold: 1 }}
routes:
  - name: users
    match: {{ paths: [{{ prefix: / }}] }}
    upstream: users
"
    );
    let gateway = Running::start(&yaml).await;
    let (status, _) = gateway.admin("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    // Poll (bounded) until the failing checks mark the endpoint down.
    let mut last = String::new();
    for _ in 0..500 {
        let (status, body) = gateway.admin("/readyz").await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            last = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let json: Value = serde_json::from_str(&last).expect("readyz turned unready");
    assert_eq!(json["ready"], false);
    assert_eq!(json["unready_upstreams"], serde_json::json!(["dead"]));
    gateway.stop().await;
}

#[tokio::test]
async fn oversized_bodies_and_heads_are_refused() {
    let (users, calls) = named_upstream("users").await;
    let yaml = format!(
        "{LISTENERS}
upstreams:
  - name: users
    endpoints: [\"{users}\"]
routes:
  - name: users
    match: {{ paths: [{{ prefix: / }}] }}
    upstream: users
"
    );
    let gateway = Running::start(&yaml).await;
    let raw = |request: String| async move {
        let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    let body = "x".repeat(2048);
    let answer = raw(format!(
        "POST / HTTP/1.1\r\nhost: a\r\nconnection: close\r\ncontent-length: 2048\r\n\r\n{body}"
    ))
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    let big = "y".repeat(20 * 1024);
    let answer = raw(format!("GET / HTTP/1.1\r\nhost: a\r\nx-big: {big}\r\n\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    gateway.stop().await;
}

#[tokio::test]
async fn shutdown_completes_the_request_in_flight() {
    let (entered_tx, mut entered) = mpsc::unbounded_channel::<()>();
    let app = Router::new().fallback(move || {
        let entered_tx = entered_tx.clone();
        async move {
            let _ = entered_tx.send(());
            tokio::time::sleep(Duration::from_millis(200)).await;
            "slow but complete"
        }
    });
    let slow = serve(app).await;
    let yaml = format!(
        "{LISTENERS}
upstreams:
  - name: slow
    endpoints: [\"{slow}\"]
routes:
  - name: slow
    match: {{ paths: [{{ prefix: / }}] }}
    upstream: slow
"
    );
    let mut gateway = Running::start(&yaml).await;
    let addr = gateway.addr;
    let client = gateway.client.clone();
    let in_flight = tokio::spawn(async move {
        let response = client
            .get(format!("http://{addr}/").parse().unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    });
    entered.recv().await.unwrap();
    let _ = gateway.stop.take().unwrap().send(());
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "slow but complete");
    gateway.task.await.unwrap().unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn configs_the_gateway_cannot_serve_are_refused_with_the_field() {
    let mut cases = vec![
        (
            "metrics: { prefix: acme }
upstreams: [{ name: a, endpoints: [\"127.0.0.1:1\"] }]
routes:
  - { name: r, match: { paths: [{ prefix: / }] }, upstream: a }",
            "metrics.prefix: a metric prefix other than `meshgate` is not supported by this build yet",
        ),
        (
            "upstreams: [{ name: a, endpoints: [\"127.0.0.1:1\"], pool: { max_requests_per_endpoint: 10 } }]
routes:
  - { name: r, match: { paths: [{ prefix: / }] }, upstream: a }",
            "upstreams[0].pool.max_requests_per_endpoint: a per-endpoint request limit is not supported by this build yet",
        ),
        (
            "upstreams: [{ name: a, endpoints: [\"127.0.0.1:1\"] }]
routes:
  - { name: r, match: { paths: [{ prefix: / }] }, upstream: a, fault: { abort: { percent: 10, status: 200 } } }",
            "routes[0].fault: ",
        ),
    ];
    if !cfg!(feature = "tls") {
        cases.push((
            "upstreams: [{ name: a, endpoints: [\"https://127.0.0.1:1\"] }]
routes:
  - { name: r, match: { paths: [{ prefix: / }] }, upstream: a }",
            "upstreams[0].endpoints[0]: TLS to upstreams (https, cargo feature `tls`) is not supported by this build yet",
        ));
    }
    for (yaml, expected) in cases {
        let config = Config::from_yaml_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let errors = Gateway::from_config(config).unwrap_err();
        assert!(
            errors.problems().iter().any(|p| p.starts_with(expected)),
            "{expected:?} not in {errors}"
        );
    }
}

/// `X-Forwarded-For` from a client is replaced unless the client is a
/// trusted proxy, in which case the gateway appends to it.
#[tokio::test]
async fn forwarded_for_is_kept_only_from_trusted_proxies() {
    let app = Router::new().fallback(|headers: axum::http::HeaderMap| async move {
        headers
            .get("x-forwarded-for")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    });
    let upstream = serve(app).await;
    for (trusted, expected) in [
        ("[]", "127.0.0.1"),
        ("[127.0.0.1/32]", "203.0.113.9, 127.0.0.1"),
    ] {
        let yaml = format!(
            "{LISTENERS}
trusted_proxies: {trusted}
upstreams:
  - name: up
    endpoints: [\"{upstream}\"]
routes:
  - name: all
    match: {{ paths: [{{ prefix: / }}] }}
    upstream: up
"
        );
        let gateway = Running::start(&yaml).await;
        let (_, _, body) = gateway
            .get("/", &[("x-forwarded-for", "203.0.113.9")])
            .await;
        assert_eq!(body, expected, "trusted_proxies: {trusted}");
        gateway.stop().await;
    }
}

/// Authentication, a rate limit and the cache, configured per route.
#[tokio::test]
async fn auth_rate_limit_and_cache_per_route() {
    let (orders, orders_calls) = named_upstream("orders").await;
    let yaml = format!(
        "{LISTENERS}
consumers:
  - name: shop
    keys: [\"${{SHOP_KEY}}\"]
upstreams:
  - name: orders
    endpoints: [\"{orders}\"]
routes:
  - name: private
    match: {{ paths: [{{ prefix: /private }}] }}
    upstream: orders
    auth: {{ api_key: {{}} }}
  - name: limited
    match: {{ paths: [{{ prefix: /limited }}] }}
    upstream: orders
    rate_limit: {{ key: client_ip, quotas: [{{ limit: 2, per: minute }}] }}
  - name: cached
    match: {{ paths: [{{ prefix: /cached }}] }}
    upstream: orders
    cache: {{ ttl: 30s }}
"
    );
    let config = Config::from_yaml_str_with_env(&yaml, |name| {
        (name == "SHOP_KEY").then(|| "k-123".to_owned())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let gateway = Running::start_config(config).await;

    let (status, headers, _) = gateway.get("/private/1", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key("www-authenticate"));
    let (status, _, _) = gateway.get("/private/1", &[("x-api-key", "wrong")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = gateway.get("/private/1", &[("x-api-key", "k-123")]).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "orders /private/1")
    );

    for _ in 0..2 {
        let (status, headers, _) = gateway.get("/limited", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers.contains_key("ratelimit"));
    }
    let (status, headers, body) = gateway.get("/limited", &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(headers.contains_key("retry-after"));
    assert!(headers["ratelimit"].to_str().unwrap().contains("r=0"));

    let before = orders_calls.load(Ordering::SeqCst);
    let (_, first, _) = gateway.get("/cached/a", &[]).await;
    let (_, second, body) = gateway.get("/cached/a", &[]).await;
    assert_eq!(first["x-cache"], "MISS");
    assert_eq!(second["x-cache"], "HIT");
    assert_eq!(body, "orders /cached/a");
    assert_eq!(orders_calls.load(Ordering::SeqCst), before + 1);

    let (_, metrics) = gateway.admin("/metrics").await;
    for needle in [
        r#"meshgate_rejections_total{route="limited",kind="rate_limited"} 1"#,
        r#"meshgate_rejections_total{route="private",kind="unauthenticated"} 2"#,
        r#"meshgate_cache_requests_total{route="cached",result="hit"} 1"#,
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
    let (_, status) = gateway.admin("/admin/status").await;
    let json: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(json["rate_limits"][0]["route"], "limited");
    assert_eq!(json["rate_limits"][0]["keys"], 1);
    assert_eq!(json["caches"][0]["route"], "cached");
    gateway.stop().await;
}

/// A limit keyed by route counts every client of the route together, which
/// needs the route's name on the request (the gateway's router puts it
/// there whenever a route has a rate limit); a limit keyed by client IP
/// counts each client on its own.
#[tokio::test]
async fn a_route_keyed_limit_counts_every_client_together() {
    let (orders, _) = named_upstream("orders").await;
    let yaml = format!(
        "{LISTENERS}
trusted_proxies: [127.0.0.1/32]
upstreams:
  - name: orders
    endpoints: [\"{orders}\"]
routes:
  - name: per-route
    match: {{ paths: [{{ prefix: /route }}] }}
    upstream: orders
    rate_limit: {{ key: route, quotas: [{{ limit: 2, per: minute }}] }}
  - name: per-client
    match: {{ paths: [{{ prefix: /client }}] }}
    upstream: orders
    rate_limit: {{ key: client_ip, quotas: [{{ limit: 2, per: minute }}] }}
"
    );
    let gateway = Running::start(&yaml).await;
    for (path, expected) in [
        (
            "/route",
            [
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::TOO_MANY_REQUESTS,
            ],
        ),
        ("/client", [StatusCode::OK; 3]),
    ] {
        let mut statuses = Vec::new();
        for client in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
            let (status, _, _) = gateway.get(path, &[("x-forwarded-for", client)]).await;
            statuses.push(status);
        }
        assert_eq!(statuses, expected, "{path}");
    }
    let (_, status) = gateway.admin("/admin/status").await;
    let json: Value = serde_json::from_str(&status).unwrap();
    let keys = |route: &str| {
        json["rate_limits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|limit| limit["route"] == route)
            .map(|limit| limit["keys"].clone())
    };
    assert_eq!(keys("per-route"), Some(Value::from(1)));
    assert_eq!(keys("per-client"), Some(Value::from(3)));
    gateway.stop().await;
}

/// An upstream that answers JSON `{"from": <name>, "path": .., "auth": ..}`.
async fn json_upstream(name: &'static str) -> SocketAddr {
    let app = Router::new().fallback(move |uri: Uri, headers: axum::http::HeaderMap| async move {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        axum::Json(serde_json::json!({
            "from": name,
            "path": uri.path_and_query().map(ToString::to_string),
            "auth": auth,
        }))
    });
    serve(app).await
}

#[tokio::test]
async fn an_aggregate_route_fans_out_to_upstreams_and_merges_their_json() {
    let users = json_upstream("users").await;
    let orders = json_upstream("orders").await;
    let down = closed_port().await;
    let yaml = format!(
        "{LISTENERS}
upstreams:
  - name: users
    endpoints: [\"{users}\"]
  - name: orders
    endpoints: [\"{orders}\"]
  - name: down
    endpoints: [\"{down}\"]
routes:
  - name: dashboard
    match: {{ paths: [{{ template: \"/dashboard/{{id}}\" }}] }}
    aggregate:
      deadline: 5s
      calls:
        - {{ key: user, upstream: users, uri: \"/users/{{id}}\" }}
        - {{ key: orders, upstream: orders, uri: \"/orders?user={{id}}&limit={{limit}}\" }}
        - {{ key: recommendations, upstream: down, uri: \"/recs/{{id}}\", optional: true }}
  - name: broken
    match: {{ paths: [{{ prefix: /broken }}] }}
    aggregate:
      calls:
        - {{ key: user, upstream: users, uri: \"/users/1\" }}
        - {{ key: gone, upstream: down, uri: \"/x\" }}
"
    );
    let gateway = Running::start(&yaml).await;

    let (status, headers, body) = gateway
        .get("/dashboard/7?limit=3", &[("authorization", "Bearer t")])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    let merged: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(merged["user"]["from"], "users");
    assert_eq!(merged["user"]["path"], "/users/7");
    // The authorization header is forwarded to the calls by default.
    assert_eq!(merged["user"]["auth"], "Bearer t");
    assert_eq!(merged["orders"]["from"], "orders");
    assert_eq!(merged["orders"]["path"], "/orders?user=7&limit=3");
    // The optional call to an upstream that is down is null with a reason.
    assert_eq!(merged["recommendations"], Value::Null);
    assert!(merged["errors"]["recommendations"].is_string(), "{body}");

    // A missing query parameter is the client's mistake.
    let (status, _, body) = gateway.get("/dashboard/7", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // A required call that fails fails the whole with a problem.
    let (status, headers, _) = gateway.get("/broken", &[]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(headers["content-type"], "application/problem+json");

    let (status, body) = gateway.admin("/admin/status").await;
    assert_eq!(status, StatusCode::OK);
    let status_json: Value = serde_json::from_str(&body).unwrap();
    let dashboard = status_json["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "dashboard")
        .unwrap();
    assert_eq!(
        dashboard["upstreams"],
        serde_json::json!(["users", "orders", "down"])
    );
    gateway.stop().await;
}

#[test]
fn aggregate_config_errors_name_the_field() {
    let yaml = "upstreams: [{ name: users, endpoints: [\"127.0.0.1:1\"] }]
routes:
  - name: a
    match: { paths: [{ prefix: /a }] }
    aggregate:
      concurrency: 0
      calls:
        - { key: x, upstream: nobody, uri: \"/x\" }
        - { key: x, upstream: users, uri: \"relative\" }
  - name: b
    match: { paths: [{ prefix: /b }] }
    upstream: users
    aggregate: { calls: [{ key: y, upstream: users, uri: /y }] }
";
    let errors = Config::from_yaml_str(yaml).unwrap_err().to_string();
    for expected in [
        "routes[0].aggregate.calls[0].upstream: unknown upstream \"nobody\"",
        "routes[0].aggregate.calls[1].key:",
        "routes[0].aggregate.calls[1].uri: \"relative\" must be a path",
        "routes[0].aggregate.concurrency: must be at least 1",
        "routes[1]: give only one of upstream, split, terminate or aggregate",
    ] {
        assert!(errors.contains(expected), "{expected}\n{errors}");
    }

    let yaml = "upstreams: [{ name: users, endpoints: [\"127.0.0.1:1\"] }]
routes:
  - name: a
    match: { paths: [{ prefix: /a }] }
    aggregate: { calls: [{ key: x, upstream: users, uri: \"/x/{id\" }] }
";
    let errors = Gateway::from_config(Config::from_yaml_str(yaml).unwrap()).unwrap_err();
    assert!(
        errors
            .problems()
            .iter()
            .any(|p| p.starts_with("routes[0].aggregate.calls[0].uri: unterminated")),
        "{errors}"
    );
}
