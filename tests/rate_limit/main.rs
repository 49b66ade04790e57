//! Behaviour of `meshgate::rate_limit` through its public API, under paused
//! time (on `Clock::Tokio`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use meshgate::error::{Rejection, RejectionKind};
use meshgate::identity::{ConsumerIdentity, RouteName};
use meshgate::net::ClientIp;
use meshgate::peer::PeerAddr;
use meshgate::rate_limit::{Clock, Decision, KeyBy, Quota, RateLimitLayer};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt, service_fn};

mod client_ip;
mod clock;
#[cfg(all(feature = "auth", feature = "routing"))]
mod identity;
mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
#[path = "../common/redis_server.rs"]
mod redis_server;
mod shedding;

/// An inner service that counts its calls and echoes the `ClientIp` it saw.
#[derive(Clone, Default)]
struct Upstream {
    calls: Arc<AtomicUsize>,
}

impl Upstream {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn service(
        self,
    ) -> impl Service<
        Request<()>,
        Response = Response<String>,
        Error = Infallible,
        Future = impl Future<Output = Result<Response<String>, Infallible>> + Send,
    > + Clone
    + Send {
        let calls = self.calls.clone();
        service_fn(move |request: Request<()>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let seen = request
                .extensions()
                .get::<ClientIp>()
                .map(|ip| ip.0.to_string())
                .unwrap_or_default();
            async move { Ok::<_, Infallible>(Response::new(seen)) }
        })
    }
}

fn from(peer: &str) -> Request<()> {
    let mut request = Request::new(());
    let addr = SocketAddr::new(peer.parse().unwrap(), 40000);
    request.extensions_mut().insert(PeerAddr(addr));
    request
}

fn consumer(name: &str, tier: Option<&str>) -> Request<()> {
    let mut request = from("192.0.2.1");
    let mut c = ConsumerIdentity::new(name);
    if let Some(tier) = tier {
        c = c.with_tier(tier);
    }
    request.extensions_mut().insert(c);
    request
}

async fn send<S, B>(service: &S, request: Request<()>) -> Response<B>
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible> + Clone,
{
    service.clone().oneshot(request).await.unwrap()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
        .to_str()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn burst_then_steady_rate() {
    let upstream = Upstream::default();
    let service = RateLimitLayer::new([Quota::per_second(10).burst(20)])
        .clock(Clock::Tokio)
        .layer(upstream.clone().service());
    for i in 0..20 {
        let response = send(&service, from("192.0.2.1")).await;
        assert_eq!(response.status(), 200, "request {i} of the burst");
    }
    let refused = send(&service, from("192.0.2.1")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(refused.headers(), "retry-after"), "1");
    assert_eq!(upstream.calls(), 20);

    // Then one request per 100 ms.
    for _ in 0..5 {
        advance(Duration::from_millis(99)).await;
        assert_eq!(send(&service, from("192.0.2.1")).await.status(), 429);
        advance(Duration::from_millis(1)).await;
        assert_eq!(send(&service, from("192.0.2.1")).await.status(), 200);
        assert_eq!(send(&service, from("192.0.2.1")).await.status(), 429);
    }
    assert_eq!(upstream.calls(), 25);
    // Another client has its own burst.
    assert_eq!(send(&service, from("192.0.2.2")).await.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn minute_quota_exhausted_while_second_quota_has_room() {
    let upstream = Upstream::default();
    let service = RateLimitLayer::new([Quota::per_second(10), Quota::per_minute(15)])
        .clock(Clock::Tokio)
        .layer(upstream.clone().service());
    for _ in 0..10 {
        assert_eq!(send(&service, from("192.0.2.1")).await.status(), 200);
    }
    advance(Duration::from_secs(1)).await;
    for _ in 0..5 {
        assert_eq!(send(&service, from("192.0.2.1")).await.status(), 200);
    }
    // The second quota has 5 left; the minute quota (one per 4 s, 15 at
    // once) is spent until 64 s, 60 s ahead of now is the most allowed.
    let refused = send(&service, from("192.0.2.1")).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(refused.headers(), "retry-after"), "3");
    assert_eq!(
        header(refused.headers(), "ratelimit-policy"),
        "\"minute\";q=15;w=60"
    );
    assert_eq!(
        header(refused.headers(), "ratelimit"),
        "\"minute\";r=0;t=59"
    );

    // Refused requests charged nothing: just short of 3 s it is still
    // refused (Retry-After rounds 1 ms up to 1 s), at 3 s it is allowed.
    advance(Duration::from_millis(2_999)).await;
    let refused = send(&service, from("192.0.2.1")).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(refused.headers(), "retry-after"), "1");
    advance(Duration::from_millis(1)).await;
    let allowed = send(&service, from("192.0.2.1")).await;
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        header(allowed.headers(), "ratelimit"),
        "\"minute\";r=0;t=60"
    );
    assert_eq!(upstream.calls(), 16);
}

#[tokio::test(start_paused = true)]
async fn headers_match_the_draft_syntax() {
    let service = RateLimitLayer::new([Quota::per_second(100), Quota::per_minute(3)])
        .clock(Clock::Tokio)
        .legacy_headers(true)
        .layer(Upstream::default().service());
    let expected = [("\"minute\";r=2;t=20", "2"), ("\"minute\";r=1;t=40", "1")];
    for (ratelimit, remaining) in expected {
        let response = send(&service, from("192.0.2.1")).await;
        let h = response.headers();
        // The minute quota is the closest to exhaustion.
        assert_eq!(header(h, "ratelimit-policy"), "\"minute\";q=3;w=60");
        assert_eq!(header(h, "ratelimit"), ratelimit);
        assert_eq!(header(h, "x-ratelimit-limit"), "3");
        assert_eq!(header(h, "x-ratelimit-remaining"), remaining);
        assert!(h.get("retry-after").is_none());
    }
    advance(Duration::from_millis(500)).await;
    let response = send(&service, from("192.0.2.1")).await;
    assert_eq!(
        header(response.headers(), "ratelimit"),
        "\"minute\";r=0;t=60"
    );
    assert_eq!(header(response.headers(), "x-ratelimit-reset"), "60");

    let refused = send(&service, from("192.0.2.1")).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(header(refused.headers(), "retry-after"), "20");
    assert_eq!(
        header(refused.headers(), "ratelimit"),
        "\"minute\";r=0;t=60"
    );
    assert_eq!(
        refused.extensions().get::<Rejection>().map(Rejection::kind),
        Some(RejectionKind::RateLimited)
    );
    let body = refused.into_body().collect().await.unwrap().to_bytes();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["status"], 429);
    assert_eq!(problem["title"], "Too Many Requests");

    // Without legacy headers there are none; a named quota keeps its name.
    let service = RateLimitLayer::new([Quota::new(50, Duration::from_secs(10)).named("burst")])
        .clock(Clock::Tokio)
        .layer(Upstream::default().service());
    let response = send(&service, from("192.0.2.1")).await;
    assert!(response.headers().get("x-ratelimit-limit").is_none());
    assert_eq!(
        header(response.headers(), "ratelimit-policy"),
        "\"burst\";q=50;w=10"
    );
    assert_eq!(
        header(response.headers(), "ratelimit"),
        "\"burst\";r=49;t=1"
    );
}

#[tokio::test(start_paused = true)]
async fn stacked_limiters_show_the_tighter_limit() {
    let stacked = |outer: u64, inner: u64| {
        let inner = RateLimitLayer::new([Quota::per_minute(inner).named("inner")])
            .clock(Clock::Tokio)
            .layer(Upstream::default().service());
        RateLimitLayer::new([Quota::per_minute(outer).named("outer")])
            .clock(Clock::Tokio)
            .layer(inner)
    };
    // The inner limiter has fewer requests left: its headers stay.
    let response = send(&stacked(100, 3), from("192.0.2.1")).await;
    assert_eq!(
        header(response.headers(), "ratelimit"),
        "\"inner\";r=2;t=20"
    );
    assert_eq!(
        header(response.headers(), "ratelimit-policy"),
        "\"inner\";q=3;w=60"
    );
    // The outer one has: its headers replace the inner's.
    let response = send(&stacked(3, 100), from("192.0.2.1")).await;
    assert_eq!(
        header(response.headers(), "ratelimit"),
        "\"outer\";r=2;t=20"
    );
    assert_eq!(
        header(response.headers(), "ratelimit-policy"),
        "\"outer\";q=3;w=60"
    );
    assert_eq!(response.headers().get_all("ratelimit").iter().count(), 1);
}

#[tokio::test(start_paused = true)]
async fn grpc_requests_get_resource_exhausted() {
    let service = RateLimitLayer::new([Quota::per_minute(1)])
        .clock(Clock::Tokio)
        .layer(Upstream::default().service());
    let grpc = || {
        let mut request = from("192.0.2.1");
        request
            .headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        request
    };
    assert_eq!(send(&service, grpc()).await.status(), 200);
    let refused = send(&service, grpc()).await;
    assert_eq!(refused.status(), 200);
    assert_eq!(refused.headers()["grpc-status"], "8");
    assert_eq!(refused.headers()["retry-after"], "60");
}

#[tokio::test(start_paused = true)]
async fn tiers_give_free_and_pro_consumers_different_limits() {
    let upstream = Upstream::default();
    let service = RateLimitLayer::new([Quota::per_minute(1)])
        .clock(Clock::Tokio)
        .key_by(KeyBy::Consumer)
        .tier("free", [Quota::per_minute(2)])
        .tier("pro", [Quota::per_minute(5)])
        .layer(upstream.clone().service());
    let allowed = |name: &'static str, tier: Option<&'static str>| {
        let service = service.clone();
        async move {
            let mut n = 0;
            while send(&service, consumer(name, tier)).await.status() == 200 {
                n += 1;
                assert!(n <= 10, "{name} is not limited");
            }
            n
        }
    };
    assert_eq!(allowed("alice", Some("free")).await, 2);
    assert_eq!(
        allowed("bob", Some("free")).await,
        2,
        "consumers are counted apart"
    );
    assert_eq!(allowed("carol", Some("pro")).await, 5);
    // No tier, or a tier the layer does not know: the default quotas.
    assert_eq!(allowed("dave", None).await, 1);
    assert_eq!(allowed("erin", Some("platinum")).await, 1);
    let response = send(&service, consumer("frank", Some("pro"))).await;
    assert_eq!(
        header(response.headers(), "ratelimit-policy"),
        "\"minute\";q=5;w=60"
    );
}

#[tokio::test(start_paused = true)]
async fn anonymous_requests_fall_back_to_the_client_ip() {
    let service = RateLimitLayer::new([Quota::per_minute(1)])
        .clock(Clock::Tokio)
        .key_by(KeyBy::Consumer)
        .layer(Upstream::default().service());
    assert_eq!(send(&service, from("192.0.2.1")).await.status(), 200);
    assert_eq!(send(&service, from("192.0.2.1")).await.status(), 429);
    assert_eq!(send(&service, from("192.0.2.2")).await.status(), 200);
    // The consumer "192.0.2.3" is not the client 192.0.2.3.
    let mut named = from("192.0.2.3");
    named
        .extensions_mut()
        .insert(ConsumerIdentity::new("192.0.2.3"));
    assert_eq!(send(&service, named).await.status(), 200);
    assert_eq!(send(&service, from("192.0.2.3")).await.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn route_overrides_and_exemptions() {
    let upstream = Upstream::default();
    let service = RateLimitLayer::new([Quota::per_minute(3)])
        .clock(Clock::Tokio)
        .key_by(KeyBy::Consumer)
        .tier("pro", [Quota::per_minute(100)])
        .route("login", [Quota::per_minute(1)])
        .exempt_consumer("monitor")
        .exempt_network("10.0.0.0/8".parse().unwrap())
        .layer(upstream.clone().service());
    let on_route = |request: Request<()>, route: &str| {
        let mut request = request;
        request.extensions_mut().insert(RouteName(Arc::from(route)));
        request
    };
    // The login route's quota applies even to pro consumers.
    let r = send(&service, on_route(consumer("alice", Some("pro")), "login")).await;
    assert_eq!(r.status(), 200);
    let r = send(&service, on_route(consumer("alice", Some("pro")), "login")).await;
    assert_eq!(r.status(), 429);
    // Other routes are counted apart, with the tier's quotas.
    for _ in 0..10 {
        let r = send(&service, on_route(consumer("alice", Some("pro")), "orders")).await;
        assert_eq!(r.status(), 200);
    }
    // Exempt consumers and networks are never limited and get no headers.
    for _ in 0..10 {
        let r = send(&service, consumer("monitor", None)).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("ratelimit").is_none());
        assert_eq!(send(&service, from("10.1.2.3")).await.status(), 200);
    }
}

#[tokio::test(start_paused = true)]
async fn header_composite_and_global_keys() {
    let tenant = |t: &str, peer: &str| {
        let mut request = from(peer);
        request.headers_mut().insert("x-tenant", t.parse().unwrap());
        request
    };
    let service = RateLimitLayer::new([Quota::per_minute(1)])
        .clock(Clock::Tokio)
        .key_by(KeyBy::Header("x-tenant".parse().unwrap()))
        .layer(Upstream::default().service());
    assert_eq!(send(&service, tenant("a", "192.0.2.1")).await.status(), 200);
    assert_eq!(send(&service, tenant("a", "192.0.2.2")).await.status(), 429);
    assert_eq!(send(&service, tenant("b", "192.0.2.1")).await.status(), 200);

    let service = RateLimitLayer::new([Quota::per_minute(1)])
        .clock(Clock::Tokio)
        .key_by(KeyBy::Composite(vec![
            KeyBy::Header("x-tenant".parse().unwrap()),
            KeyBy::ClientIp,
        ]))
        .layer(Upstream::default().service());
    assert_eq!(send(&service, tenant("a", "192.0.2.1")).await.status(), 200);
    assert_eq!(send(&service, tenant("a", "192.0.2.2")).await.status(), 200);
    assert_eq!(send(&service, tenant("a", "192.0.2.1")).await.status(), 429);

    let service = RateLimitLayer::new([Quota::per_minute(2)])
        .clock(Clock::Tokio)
        .key_by(KeyBy::Global)
        .layer(Upstream::default().service());
    assert_eq!(send(&service, from("192.0.2.1")).await.status(), 200);
    assert_eq!(send(&service, from("192.0.2.2")).await.status(), 200);
    assert_eq!(send(&service, from("192.0.2.3")).await.status(), 429);
}

#[tokio::test(start_paused = true)]
async fn clones_and_services_of_one_layer_share_counters() {
    let layer = RateLimitLayer::new([Quota::per_minute(2)]).clock(Clock::Tokio);
    let a = layer.layer(Upstream::default().service());
    let b = layer.clone().layer(Upstream::default().service());
    assert_eq!(send(&a, from("192.0.2.1")).await.status(), 200);
    assert_eq!(send(&b, from("192.0.2.1")).await.status(), 200);
    assert_eq!(send(&a.clone(), from("192.0.2.1")).await.status(), 429);
    assert_eq!(layer.key_count(), 1);
    // `check` counts against the same counters.
    assert_eq!(
        layer.check(&mut from("192.0.2.1")),
        Decision::Refused {
            retry_after: Duration::from_secs(30)
        }
    );
    assert_eq!(
        layer.check(&mut from("192.0.2.9")),
        Decision::Allowed {
            remaining: 1,
            reset: Duration::from_secs(30)
        }
    );
    assert_eq!(send(&b, from("192.0.2.9")).await.status(), 200);
    assert_eq!(send(&b, from("192.0.2.9")).await.status(), 429);
}

#[tokio::test(start_paused = true)]
async fn no_quota_means_no_limit() {
    let service = RateLimitLayer::new([])
        .clock(Clock::Tokio)
        .layer(Upstream::default().service());
    for _ in 0..100 {
        let response = send(&service, from("192.0.2.1")).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("ratelimit").is_none());
    }
}
