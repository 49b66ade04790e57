//! `cache` through its public API, with paused time and an in-process origin
//! that counts its calls.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use meshgate::Body;
use meshgate::cache::{CacheHandle, CacheLayer};
use tower::{Layer, Service, ServiceExt, service_fn};

type Handler = dyn Fn(&Request<Body>, usize) -> Response<Body> + Send + Sync;

/// A cache in front of an origin answering with `handler(request, n)` for
/// its `n`-th call (from 1) after `delay`.
fn cached<F>(
    layer: &CacheLayer,
    delay: Duration,
    handler: F,
) -> (
    impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static,
    Arc<AtomicUsize>,
)
where
    F: Fn(&Request<Body>, usize) -> Response<Body> + Send + Sync + 'static,
{
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let handler: Arc<Handler> = Arc::new(handler);
    let origin = service_fn(move |req: Request<Body>| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let response = handler(&req, n);
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, Infallible>(response)
        }
    });
    (layer.layer(origin), calls)
}

fn response(headers: &[(&'static str, &str)], body: impl Into<Body>) -> Response<Body> {
    let mut builder = Response::builder();
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(body.into()).unwrap()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn x_cache(&self) -> &str {
        self.headers["x-cache"].to_str().unwrap()
    }
    fn age(&self) -> u64 {
        self.headers["age"].to_str().unwrap().parse().unwrap()
    }
}

async fn send<S>(service: &S, method: Method, uri: &str, headers: &[(&'static str, &str)]) -> Answer
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = service
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

async fn get<S>(service: &S, uri: &str, headers: &[(&'static str, &str)]) -> Answer
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    send(service, Method::GET, uri, headers).await
}

const URI: &str = "http://origin.test/item";

async fn advance(secs: u64) {
    tokio::time::advance(Duration::from_secs(secs)).await;
}

#[tokio::test(start_paused = true)]
async fn miss_then_hit_with_age_advancing_then_expiry() {
    let (svc, calls) = cached(&CacheLayer::new(), Duration::ZERO, |_, n| {
        response(&[("cache-control", "max-age=60")], format!("v{n}"))
    });
    let first = get(&svc, URI, &[]).await;
    assert_eq!((first.x_cache(), &first.body[..]), ("MISS", &b"v1"[..]));
    advance(10).await;
    let hit = get(&svc, URI, &[]).await;
    assert_eq!(
        (hit.x_cache(), &hit.body[..], hit.age()),
        ("HIT", &b"v1"[..], 10)
    );
    assert_eq!(hit.headers["content-length"], "2");
    advance(49).await;
    assert_eq!(get(&svc, URI, &[]).await.age(), 59);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    advance(1).await;
    let expired = get(&svc, URI, &[]).await;
    assert_eq!((expired.x_cache(), &expired.body[..]), ("MISS", &b"v2"[..]));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn age_from_upstream_counts() {
    let (svc, _) = cached(&CacheLayer::new(), Duration::ZERO, |_, _| {
        response(&[("cache-control", "max-age=60"), ("age", "50")], "x")
    });
    get(&svc, URI, &[]).await;
    advance(5).await;
    assert_eq!(get(&svc, URI, &[]).await.age(), 55);
    advance(5).await;
    assert_eq!(get(&svc, URI, &[]).await.x_cache(), "MISS");
}

#[tokio::test(start_paused = true)]
async fn no_store_private_and_authorization_are_not_stored() {
    for (cc, auth, stored) in [
        ("max-age=60, no-store", None, false),
        ("max-age=60, private", None, false),
        ("max-age=60", Some("Bearer a"), false),
        ("max-age=60, public", Some("Bearer a"), true),
        ("s-maxage=60", Some("Bearer a"), true),
        ("max-age=60", None, true),
    ] {
        let cc = cc.to_owned();
        let (svc, calls) = cached(&CacheLayer::new(), Duration::ZERO, move |_, _| {
            response(&[("cache-control", &cc)], "x")
        });
        let headers: Vec<(&'static str, &str)> =
            auth.map(|a| ("authorization", a)).into_iter().collect();
        get(&svc, URI, &headers).await;
        let second = get(&svc, URI, &headers).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            if stored { 1 } else { 2 },
            "{auth:?}"
        );
        assert_eq!(second.x_cache(), if stored { "HIT" } else { "MISS" });
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_with_authorization_is_not_served_a_response_stored_without() {
    let (svc, calls) = cached(&CacheLayer::new(), Duration::ZERO, |_, _| {
        response(&[("cache-control", "max-age=60")], "x")
    });
    get(&svc, URI, &[]).await;
    get(&svc, URI, &[("authorization", "Bearer a")]).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn request_no_store_is_not_stored() {
    let (svc, calls) = cached(&CacheLayer::new(), Duration::ZERO, |_, _| {
        response(&[("cache-control", "max-age=60")], "x")
    });
    let bypass = get(&svc, URI, &[("cache-control", "no-store")]).await;
    assert_eq!(bypass.x_cache(), "BYPASS");
    assert_eq!(get(&svc, URI, &[]).await.x_cache(), "MISS");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn vary_on_accept_encoding_keeps_normalised_variants() {
    let (svc, calls) = cached(&CacheLayer::new(), Duration::ZERO, |req, _| {
        let enc = req
            .headers()
            .get("accept-encoding")
            .map_or("none", |v| v.to_str().unwrap())
            .to_owned();
        response(
            &[("cache-control", "max-age=60"), ("vary", "Accept-Encoding")],
            enc,
        )
    });
    assert_eq!(
        get(&svc, URI, &[("accept-encoding", "gzip, br")])
            .await
            .x_cache(),
        "MISS"
    );
    assert_eq!(
        get(&svc, URI, &[("accept-encoding", "zstd")])
            .await
            .x_cache(),
        "MISS"
    );
    let gzip = get(&svc, URI, &[("accept-encoding", "GZIP,br")]).await;
    assert_eq!((gzip.x_cache(), &gzip.body[..]), ("HIT", &b"gzip, br"[..]));
    let zstd = get(&svc, URI, &[("accept-encoding", "zstd")]).await;
    assert_eq!((zstd.x_cache(), &zstd.body[..]), ("HIT", &b"zstd"[..]));
    assert_eq!(get(&svc, URI, &[]).await.x_cache(), "MISS");
    assert_eq!(get(&svc, URI, &[]).await.x_cache(), "HIT");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn vary_star_is_never_served_and_vary_by_splits_entries() {
    let (svc, calls) = cached(&CacheLayer::new(), Duration::ZERO, |_, _| {
        response(&[("cache-control", "max-age=60"), ("vary", "*")], "x")
    });
    get(&svc, URI, &[]).await;
    get(&svc, URI, &[]).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let layer = CacheLayer::new().vary_by([http::HeaderName::from_static("x-tenant")]);
    let (svc, calls) = cached(&layer, Duration::ZERO, |req, _| {
        response(
            &[("cache-control", "max-age=60")],
            req.headers()["x-tenant"].to_str().unwrap().to_owned(),
        )
    });
    get(&svc, URI, &[("x-tenant", "a")]).await;
    let b = get(&svc, URI, &[("x-tenant", "b")]).await;
    assert_eq!((b.x_cache(), &b.body[..]), ("MISS", &b"b"[..]));
    let a = get(&svc, URI, &[("x-tenant", "a")]).await;
    assert_eq!((a.x_cache(), &a.body[..]), ("HIT", &b"a"[..]));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn only_if_cached_gets_504_without_an_entry() {
    let (svc, calls) = cached(&CacheLayer::new(), Duration::ZERO, |_, _| {
        response(&[("cache-control", "max-age=60")], "x")
    });
    let miss = get(&svc, URI, &[("cache-control", "only-if-cached")]).await;
    assert_eq!(miss.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(miss.headers["content-type"], "application/problem+json");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    get(&svc, URI, &[]).await;
    let hit = get(&svc, URI, &[("cache-control", "only-if-cached")]).await;
    assert_eq!((hit.status, hit.x_cache()), (StatusCode::OK, "HIT"));
}

#[tokio::test(start_paused = true)]
async fn request_directives() {
    let (svc, calls) = cached(&CacheLayer::new(), Duration::ZERO, |_, n| {
        response(&[("cache-control", "max-age=60")], format!("v{n}"))
    });
    get(&svc, URI, &[]).await;
    advance(30).await;
    // min-fresh asks for 40 s of freshness left; there are 30.
    assert_eq!(
        get(&svc, URI, &[("cache-control", "min-fresh=40")])
            .await
            .x_cache(),
        "MISS"
    );
    advance(30).await;
    assert_eq!(
        get(&svc, URI, &[("cache-control", "max-age=10")])
            .await
            .x_cache(),
        "MISS"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    advance(70).await;
    // Stale by 10 s: max-stale=20 accepts it, max-stale=5 does not.
    let stale = get(&svc, URI, &[("cache-control", "max-stale=20")]).await;
    assert_eq!((stale.x_cache(), &stale.body[..]), ("STALE", &b"v3"[..]));
    assert_eq!(
        get(&svc, URI, &[("cache-control", "max-stale=5")])
            .await
            .x_cache(),
        "MISS"
    );
    assert_eq!(
        get(&svc, URI, &[("pragma", "no-cache")]).await.x_cache(),
        "MISS"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_are_coalesced() {
    let (svc, calls) = cached(&CacheLayer::new(), Duration::from_millis(200), |_, n| {
        response(&[("cache-control", "max-age=60")], format!("v{n}"))
    });
    let started = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { get(&svc, URI, &[]).await })
        })
        .collect();
    let mut hits = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        assert_eq!(&answer.body[..], b"v1");
        hits += usize::from(answer.x_cache() == "HIT");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(hits, 99);
    // The waiters were woken by the leader's answer (after the origin's
    // 200 ms), not by the end of their bounded wait (5 s).
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn waiters_go_upstream_after_the_bounded_wait() {
    let layer = CacheLayer::new().coalesce_wait(Duration::from_secs(1));
    let (svc, calls) = cached(&layer, Duration::from_secs(10), |_, n| {
        response(&[("cache-control", "max-age=60")], format!("v{n}"))
    });
    let leader = {
        let svc = svc.clone();
        tokio::spawn(async move { get(&svc, URI, &[]).await })
    };
    tokio::task::yield_now().await;
    let follower = get(&svc, URI, &[]).await;
    // The follower gave up waiting after 1 s and fetched on its own.
    assert_eq!(
        (follower.x_cache(), &follower.body[..]),
        ("MISS", &b"v2"[..])
    );
    assert_eq!(leader.await.unwrap().x_cache(), "MISS");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

fn validating_origin(req: &Request<Body>, n: usize) -> Response<Body> {
    if req
        .headers()
        .get("if-none-match")
        .is_some_and(|v| v == "\"v1\"")
    {
        return response(
            &[
                ("cache-control", "max-age=10"),
                ("etag", "\"v1\""),
                ("x-refreshed", &n.to_string()),
            ],
            Body::empty(),
        );
    }
    response(
        &[("cache-control", "max-age=10"), ("etag", "\"v1\"")],
        "body",
    )
}

#[tokio::test(start_paused = true)]
async fn stale_entries_are_revalidated_and_304_merges_headers() {
    let (svc, calls) = cached(&CacheLayer::new(), Duration::ZERO, |req, n| {
        let mut r = validating_origin(req, n);
        if req.headers().contains_key("if-none-match") {
            *r.status_mut() = StatusCode::NOT_MODIFIED;
        }
        r
    });
    get(&svc, URI, &[]).await;
    advance(11).await;
    let revalidated = get(&svc, URI, &[]).await;
    assert_eq!(revalidated.status, StatusCode::OK);
    assert_eq!(revalidated.x_cache(), "REVALIDATED");
    assert_eq!(&revalidated.body[..], b"body");
    assert_eq!(revalidated.headers["x-refreshed"], "2");
    assert_eq!(revalidated.headers["content-length"], "4");
    advance(5).await;
    let hit = get(&svc, URI, &[]).await;
    assert_eq!(
        (hit.x_cache(), hit.age(), &hit.body[..]),
        ("HIT", 5, &b"body"[..])
    );
    assert_eq!(hit.headers["x-refreshed"], "2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_clients_conditional_request_gets_304_from_a_fresh_entry() {
    let (svc, calls) = cached(&CacheLayer::new(), Duration::ZERO, |_, _| {
        response(
            &[
                ("cache-control", "max-age=60"),
                ("etag", "W/\"v1\""),
                ("last-modified", "Mon, 02 Nov 2026 10:00:00 GMT"),
            ],
            "body",
        )
    });
    get(&svc, URI, &[]).await;
    let not_modified = get(&svc, URI, &[("if-none-match", "\"v0\", \"v1\"")]).await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert_eq!(not_modified.headers["etag"], "W/\"v1\"");
    assert!(not_modified.body.is_empty());
    let changed = get(&svc, URI, &[("if-none-match", "\"v0\"")]).await;
    assert_eq!(changed.status, StatusCode::OK);
    let since = get(
        &svc,
        URI,
        &[("if-modified-since", "Tue, 03 Nov 2026 10:00:00 GMT")],
    )
    .await;
    assert_eq!(since.status, StatusCode::NOT_MODIFIED);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A body of `n` chunks of 1 KiB, with no length known up front.
struct Chunks(usize);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.0 == 0 {
            return Poll::Ready(None);
        }
        self.0 -= 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; 1024])))))
    }
}

#[tokio::test(start_paused = true)]
async fn oversized_bodies_are_streamed_and_not_stored() {
    let layer = CacheLayer::new().max_body(4 * 1024);
    let (svc, calls) = cached(&layer, Duration::ZERO, |req, _| {
        let chunks = if req.uri().path() == "/big" { 16 } else { 4 };
        response(
            &[("cache-control", "max-age=60")],
            Body::new(Chunks(chunks)),
        )
    });
    for _ in 0..2 {
        let big = get(&svc, "http://origin.test/big", &[]).await;
        assert_eq!((big.x_cache(), big.body.len()), ("MISS", 16 * 1024));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    get(&svc, "http://origin.test/small", &[]).await;
    let small = get(&svc, "http://origin.test/small", &[]).await;
    assert_eq!((small.x_cache(), small.body.len()), ("HIT", 4 * 1024));
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // The first chunks reach the client before the body has ended.
    let response = svc
        .clone()
        .oneshot(
            Request::get("http://origin.test/big")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first.len(), 1024);
}

#[tokio::test(start_paused = true)]
async fn the_store_stays_within_its_byte_bound() {
    let layer = CacheLayer::new().max_bytes(64 * 1024);
    let handle = layer.handle();
    let (svc, calls) = cached(&layer, Duration::ZERO, |_, _| {
        response(&[("cache-control", "max-age=600")], Body::new(Chunks(4)))
    });
    for i in 0..100 {
        get(&svc, &format!("http://origin.test/{i}"), &[]).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 100);
    handle.run_pending_tasks().await;
    assert!(
        handle.weighted_size() <= 64 * 1024,
        "{}",
        handle.weighted_size()
    );
    assert!(
        handle.entry_count() > 0 && handle.entry_count() < 16,
        "{}",
        handle.entry_count()
    );

    let layer = CacheLayer::new().max_entries(10);
    let handle = layer.handle();
    let (svc, _) = cached(&layer, Duration::ZERO, |_, _| {
        response(&[("cache-control", "max-age=600")], "x")
    });
    for i in 0..100 {
        get(&svc, &format!("http://origin.test/{i}"), &[]).await;
    }
    handle.run_pending_tasks().await;
    assert!(handle.entry_count() <= 10, "{}", handle.entry_count());
}

#[tokio::test(start_paused = true)]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let (svc, calls) = cached(&CacheLayer::new(), Duration::from_millis(100), |_, n| {
        response(
            &[("cache-control", "max-age=1, stale-while-revalidate=30")],
            format!("v{n}"),
        )
    });
    get(&svc, URI, &[]).await;
    advance(2).await;
    let (a, b) = tokio::join!(get(&svc, URI, &[]), get(&svc, URI, &[]));
    for stale in [a, b] {
        assert_eq!((stale.x_cache(), &stale.body[..]), ("STALE", &b"v1"[..]));
    }
    // One background refresh; wait for it by polling the store.
    let mut refreshed = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let answer = get(&svc, URI, &[]).await;
        if answer.x_cache() == "HIT" {
            refreshed = Some(answer);
            break;
        }
    }
    assert_eq!(&refreshed.expect("refreshed").body[..], b"v2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_serves_stale_when_the_origin_fails() {
    let (svc, calls) = cached(&CacheLayer::new(), Duration::ZERO, |_, n| {
        if n == 1 {
            response(&[("cache-control", "max-age=1, stale-if-error=60")], "v1")
        } else {
            let mut r = response(&[], "down");
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r
        }
    });
    get(&svc, URI, &[]).await;
    advance(10).await;
    let stale = get(&svc, URI, &[]).await;
    assert_eq!(
        (stale.status, stale.x_cache(), &stale.body[..]),
        (StatusCode::OK, "STALE", &b"v1"[..])
    );
    advance(60).await;
    let failed = get(&svc, URI, &[]).await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn must_revalidate_is_never_served_stale() {
    let layer = CacheLayer::new().stale_grace(Duration::from_secs(60));
    let (svc, _) = cached(&layer, Duration::ZERO, |_, n| {
        if n == 1 {
            response(&[("cache-control", "max-age=1, must-revalidate")], "v1")
        } else {
            let mut r = response(&[], "down");
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            r
        }
    });
    get(&svc, URI, &[]).await;
    advance(5).await;
    assert_eq!(
        get(&svc, URI, &[("cache-control", "max-stale")])
            .await
            .status,
        StatusCode::BAD_GATEWAY
    );
}

#[tokio::test(start_paused = true)]
async fn unsafe_methods_invalidate_target_and_locations() {
    let (svc, calls) = cached(&CacheLayer::new(), Duration::ZERO, |req, _| {
        if req.method() == Method::POST {
            return response(
                &[
                    ("location", "/other"),
                    ("content-location", "http://elsewhere.test/item"),
                ],
                "created",
            );
        }
        response(&[("cache-control", "max-age=60")], "x")
    });
    for uri in [URI, "http://origin.test/other"] {
        get(&svc, uri, &[]).await;
    }
    let post = send(&svc, Method::POST, URI, &[]).await;
    assert!(!post.headers.contains_key("x-cache"));
    assert_eq!(get(&svc, URI, &[]).await.x_cache(), "MISS");
    assert_eq!(
        get(&svc, "http://origin.test/other", &[]).await.x_cache(),
        "MISS"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn purge_by_key_and_prefix() {
    let layer = CacheLayer::new();
    let handle = layer.handle();
    let (svc, _) = cached(&layer, Duration::ZERO, |_, _| {
        response(&[("cache-control", "max-age=60")], "x")
    });
    for path in ["/a/1", "/a/2", "/b/1"] {
        get(&svc, &format!("http://origin.test{path}"), &[]).await;
    }
    let key = CacheHandle::key(&"/b/1".parse().unwrap(), &{
        let mut h = HeaderMap::new();
        h.insert("host", "origin.test".parse().unwrap());
        h
    });
    assert_eq!(key, "http://origin.test/b/1");
    handle.purge(&key).await;
    handle.purge_prefix("http://origin.test/a/");
    for path in ["/a/1", "/a/2", "/b/1"] {
        assert_eq!(
            get(&svc, &format!("http://origin.test{path}"), &[])
                .await
                .x_cache(),
            "MISS",
            "{path}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn head_is_served_from_a_cached_get_and_ttl_applies_without_headers() {
    let layer = CacheLayer::new().default_ttl(Duration::from_secs(30));
    let (svc, calls) = cached(&layer, Duration::ZERO, |_, _| response(&[], "hello"));
    assert_eq!(send(&svc, Method::HEAD, URI, &[]).await.x_cache(), "MISS");
    get(&svc, URI, &[]).await;
    let head = send(&svc, Method::HEAD, URI, &[]).await;
    assert_eq!((head.x_cache(), head.body.len()), ("HIT", 0));
    assert_eq!(head.headers["content-length"], "5");
    advance(30).await;
    assert_eq!(get(&svc, URI, &[]).await.x_cache(), "MISS");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // A range of a HEAD is ignored (RFC 9110 §14.2: GET only).
    let head = send(&svc, Method::HEAD, URI, &[("range", "bytes=0-1")]).await;
    assert_eq!((head.status, head.x_cache()), (StatusCode::OK, "HIT"));
    assert_eq!(head.headers["content-length"], "5");
}

#[cfg(feature = "config")]
#[tokio::test(start_paused = true)]
async fn the_route_policy_configures_the_layer() {
    let policy = meshgate::config::CachePolicy {
        ttl: Duration::from_secs(5),
        ..Default::default()
    };
    let (svc, _) = cached(&CacheLayer::from(&policy), Duration::ZERO, |_, _| {
        response(&[], "x")
    });
    get(&svc, URI, &[]).await;
    advance(4).await;
    assert_eq!(get(&svc, URI, &[]).await.x_cache(), "HIT");
    advance(1).await;
    assert_eq!(get(&svc, URI, &[]).await.x_cache(), "MISS");
}

#[tokio::test(start_paused = true)]
async fn last_modified_revalidation_and_set_cookie() {
    let (svc, calls) = cached(&CacheLayer::new(), Duration::ZERO, |req, _| {
        let lm = "Mon, 02 Nov 2026 10:00:00 GMT";
        if req
            .headers()
            .get("if-modified-since")
            .is_some_and(|v| v == lm)
        {
            let mut r = response(&[("cache-control", "max-age=5")], Body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            return r;
        }
        response(
            &[("cache-control", "max-age=5"), ("last-modified", lm)],
            "body",
        )
    });
    get(&svc, URI, &[]).await;
    advance(6).await;
    let revalidated = get(&svc, URI, &[]).await;
    assert_eq!(
        (revalidated.x_cache(), &revalidated.body[..]),
        ("REVALIDATED", &b"body"[..])
    );
    assert_eq!(get(&svc, URI, &[]).await.x_cache(), "HIT");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let (svc, calls) = cached(&CacheLayer::new(), Duration::ZERO, |_, n| {
        response(
            &[
                ("cache-control", "max-age=60"),
                ("set-cookie", &format!("session={n}")),
            ],
            "x",
        )
    });
    get(&svc, URI, &[]).await;
    let second = get(&svc, URI, &[]).await;
    assert_eq!(second.headers["set-cookie"], "session=2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn other_methods_pass_through_untouched() {
    let (svc, calls) = cached(&CacheLayer::new(), Duration::ZERO, |req, _| {
        response(
            &[
                ("cache-control", "max-age=60"),
                ("x-method", req.method().as_str()),
            ],
            "x",
        )
    });
    for method in [
        Method::OPTIONS,
        Method::from_bytes(b"PURGE").unwrap(),
        Method::PUT,
    ] {
        let answer = send(&svc, method.clone(), URI, &[]).await;
        assert_eq!(answer.headers["x-method"], method.as_str());
        assert!(!answer.headers.contains_key("x-cache"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// An origin that answers like a real server: `body` for GET, headers only
/// (with the GET's length) for HEAD, and one byte range when asked.
fn ranged_origin(
    headers: &'static [(&'static str, &'static str)],
) -> impl Fn(&Request<Body>, usize) -> Response<Body> + Send + Sync + 'static {
    move |req, n| {
        let body = format!("{n}123456789");
        let mut all: Vec<(&'static str, String)> =
            headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        all.push(("content-length", body.len().to_string()));
        let range = req
            .headers()
            .get("range")
            .and_then(|r| r.to_str().unwrap().strip_prefix("bytes="))
            .and_then(|r| r.split_once('-'))
            .map(|(a, b)| (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()));
        let (status, body) = match range {
            Some((first, last)) => {
                all.retain(|(k, _)| *k != "content-length");
                all.push(("content-length", (last - first + 1).to_string()));
                all.push(("content-range", format!("bytes {first}-{last}/10")));
                (StatusCode::PARTIAL_CONTENT, body[first..=last].to_owned())
            }
            None => (StatusCode::OK, body),
        };
        let body = if req.method() == Method::HEAD {
            Body::empty()
        } else {
            Body::from(body)
        };
        let mut builder = Response::builder().status(status);
        for (k, v) in &all {
            builder = builder.header(*k, v);
        }
        builder.body(body).unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn ranges_of_a_stored_response_are_served_from_it() {
    let (svc, calls) = cached(
        &CacheLayer::new(),
        Duration::ZERO,
        ranged_origin(&[
            ("cache-control", "max-age=60"),
            ("etag", "\"v1\""),
            ("last-modified", "Mon, 02 Nov 2026 10:00:00 GMT"),
        ]),
    );
    let whole = get(&svc, URI, &[]).await;
    assert_eq!(&whole.body[..], b"1123456789");
    let hit = get(&svc, URI, &[]).await;
    assert_eq!(hit.headers["accept-ranges"], "bytes");

    let part = get(&svc, URI, &[("range", "bytes=2-5")]).await;
    assert_eq!(
        (part.status, part.x_cache(), &part.body[..]),
        (StatusCode::PARTIAL_CONTENT, "HIT", &b"2345"[..])
    );
    assert_eq!(part.headers["content-range"], "bytes 2-5/10");
    assert_eq!(part.headers["content-length"], "4");
    assert_eq!(part.headers["accept-ranges"], "bytes");
    assert_eq!(part.headers["etag"], "\"v1\"");

    let suffix = get(&svc, URI, &[("range", "bytes=-3")]).await;
    assert_eq!(
        (suffix.status, &suffix.body[..]),
        (StatusCode::PARTIAL_CONTENT, &b"789"[..])
    );
    assert_eq!(suffix.headers["content-range"], "bytes 7-9/10");
    let open = get(&svc, URI, &[("range", "bytes=8-100")]).await;
    assert_eq!(open.headers["content-range"], "bytes 8-9/10");

    let outside = get(&svc, URI, &[("range", "bytes=10-20")]).await;
    assert_eq!(outside.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(outside.headers["content-range"], "bytes */10");
    assert_eq!(outside.x_cache(), "HIT");

    // Several ranges, another unit, invalid syntax: the whole 200.
    for range in ["bytes=0-1, 4-5", "items=0-1", "bytes=5-1"] {
        let answer = get(&svc, URI, &[("range", range)]).await;
        assert_eq!(
            (answer.status, &answer.body[..]),
            (StatusCode::OK, &b"1123456789"[..]),
            "{range}"
        );
    }

    // If-Range: a strong match gets the part, anything else the whole.
    for (condition, status) in [
        ("\"v1\"", StatusCode::PARTIAL_CONTENT),
        ("\"v0\"", StatusCode::OK),
        ("W/\"v1\"", StatusCode::OK),
        ("Mon, 02 Nov 2026 10:00:00 GMT", StatusCode::PARTIAL_CONTENT),
        ("Sun, 01 Nov 2026 10:00:00 GMT", StatusCode::OK),
    ] {
        let answer = get(
            &svc,
            URI,
            &[("range", "bytes=0-0"), ("if-range", condition)],
        )
        .await;
        assert_eq!(answer.status, status, "{condition}");
    }
    // A matching If-None-Match comes before the range.
    let not_modified = get(
        &svc,
        URI,
        &[("range", "bytes=0-0"), ("if-none-match", "\"v1\"")],
    )
    .await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_range_miss_is_forwarded_and_its_part_not_stored() {
    let (svc, calls) = cached(
        &CacheLayer::new(),
        Duration::ZERO,
        ranged_origin(&[("cache-control", "max-age=60")]),
    );
    let part = get(&svc, URI, &[("range", "bytes=0-3")]).await;
    assert_eq!(
        (part.status, part.x_cache(), &part.body[..]),
        (StatusCode::PARTIAL_CONTENT, "BYPASS", &b"1123"[..])
    );
    let whole = get(&svc, URI, &[]).await;
    assert_eq!(
        (whole.status, whole.x_cache(), &whole.body[..]),
        (StatusCode::OK, "MISS", &b"2123456789"[..])
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let part = get(&svc, URI, &[("range", "bytes=1-2")]).await;
    assert_eq!(
        (part.status, part.x_cache(), &part.body[..]),
        (StatusCode::PARTIAL_CONTENT, "HIT", &b"12"[..])
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // Concurrent range misses are not coalesced onto one partial answer.
    let (svc, calls) = cached(
        &CacheLayer::new(),
        Duration::from_millis(100),
        ranged_origin(&[("cache-control", "max-age=60")]),
    );
    let (a, b) = tokio::join!(
        get(&svc, URI, &[("range", "bytes=0-1")]),
        get(&svc, URI, &[("range", "bytes=5-6")])
    );
    assert_eq!(
        (&a.body[..], a.status),
        (&b"11"[..], StatusCode::PARTIAL_CONTENT)
    );
    assert_eq!(
        (&b.body[..], b.status),
        (&b"56"[..], StatusCode::PARTIAL_CONTENT)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(get(&svc, URI, &[]).await.x_cache(), "MISS");
}

#[tokio::test(start_paused = true)]
async fn a_stale_entry_revalidated_for_a_range_serves_the_range() {
    let (svc, calls) = cached(&CacheLayer::new(), Duration::ZERO, |req, n| {
        let mut r = validating_origin(req, n);
        if req.headers().contains_key("if-none-match") {
            *r.status_mut() = StatusCode::NOT_MODIFIED;
        }
        r
    });
    get(&svc, URI, &[]).await;
    advance(11).await;
    let part = get(&svc, URI, &[("range", "bytes=1-2")]).await;
    assert_eq!(
        (part.status, part.x_cache(), &part.body[..]),
        (StatusCode::PARTIAL_CONTENT, "REVALIDATED", &b"od"[..])
    );
    assert_eq!(part.headers["content-range"], "bytes 1-2/4");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn surrogate_control_wins_over_cache_control_and_is_not_forwarded() {
    let (svc, calls) = cached(&CacheLayer::new(), Duration::ZERO, |_, n| {
        response(
            &[
                ("cache-control", "no-cache, max-age=0"),
                ("surrogate-control", "max-age=30"),
            ],
            format!("v{n}"),
        )
    });
    let miss = get(&svc, URI, &[]).await;
    assert_eq!(miss.x_cache(), "MISS");
    assert!(!miss.headers.contains_key("surrogate-control"));
    assert_eq!(miss.headers["cache-control"], "no-cache, max-age=0");
    advance(29).await;
    let hit = get(&svc, URI, &[]).await;
    assert_eq!((hit.x_cache(), &hit.body[..]), ("HIT", &b"v1"[..]));
    assert!(!hit.headers.contains_key("surrogate-control"));
    assert_eq!(hit.headers["cache-control"], "no-cache, max-age=0");
    advance(1).await;
    assert_eq!(get(&svc, URI, &[]).await.x_cache(), "MISS");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // With a Surrogate-Control max-age, Cache-Control: no-store is for the
    // clients.
    let (svc, calls) = cached(&CacheLayer::new(), Duration::ZERO, |_, _| {
        response(
            &[
                ("cache-control", "no-store"),
                ("surrogate-control", "max-age=60"),
            ],
            "x",
        )
    });
    get(&svc, URI, &[]).await;
    let hit = get(&svc, URI, &[]).await;
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(hit.headers["cache-control"], "no-store");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Surrogate-Control: no-store wins over a long Cache-Control max-age;
    // Cache-Control: private still keeps a response out.
    for (cc, sc) in [
        ("max-age=600", "no-store"),
        ("private", "max-age=600"),
        ("max-age=600", "NO-STORE, max-age=60"),
    ] {
        let (svc, calls) = cached(&CacheLayer::new(), Duration::ZERO, move |_, _| {
            response(&[("cache-control", cc), ("surrogate-control", sc)], "x")
        });
        get(&svc, URI, &[]).await;
        let second = get(&svc, URI, &[]).await;
        assert_eq!(second.x_cache(), "MISS", "{cc} / {sc}");
        assert!(!second.headers.contains_key("surrogate-control"));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    // Its max-age is shorter than Cache-Control's, and targeted directives
    // are for another surrogate.
    let (svc, _) = cached(&CacheLayer::new(), Duration::ZERO, |_, _| {
        response(
            &[
                ("cache-control", "max-age=600"),
                ("surrogate-control", "max-age=5, no-store;other-cdn"),
            ],
            "x",
        )
    });
    get(&svc, URI, &[]).await;
    advance(4).await;
    assert_eq!(get(&svc, URI, &[]).await.x_cache(), "HIT");
    advance(1).await;
    assert_eq!(get(&svc, URI, &[]).await.x_cache(), "MISS");
}

#[tokio::test(start_paused = true)]
async fn surrogate_control_stale_serving_and_revalidation() {
    let (svc, calls) = cached(&CacheLayer::new(), Duration::from_millis(10), |req, n| {
        if req.headers().contains_key("if-none-match") {
            // The 304 carries no Surrogate-Control: the stored one still counts.
            let mut r = response(&[("etag", "\"v1\""), ("x-refreshed", "yes")], Body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            return r;
        }
        response(
            &[
                ("cache-control", "no-cache"),
                ("etag", "\"v1\""),
                ("surrogate-control", "max-age=10, stale-while-revalidate=30"),
            ],
            format!("v{n}"),
        )
    });
    get(&svc, URI, &[]).await;
    advance(12).await;
    let stale = get(&svc, URI, &[]).await;
    assert_eq!((stale.x_cache(), &stale.body[..]), ("STALE", &b"v1"[..]));
    let mut refreshed = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let answer = get(&svc, URI, &[]).await;
        if answer.headers.contains_key("x-refreshed") {
            refreshed = Some(answer);
            break;
        }
    }
    let refreshed = refreshed.expect("refreshed in the background");
    assert_eq!(
        (refreshed.x_cache(), &refreshed.body[..]),
        ("HIT", &b"v1"[..])
    );
    assert!(!refreshed.headers.contains_key("surrogate-control"));
    // Still fresh by the stored Surrogate-Control after the 304.
    advance(8).await;
    assert_eq!(get(&svc, URI, &[]).await.x_cache(), "HIT");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // `max-age=N+M`: M seconds of stale-if-error.
    let (svc, _) = cached(&CacheLayer::new(), Duration::ZERO, |_, n| {
        if n == 1 {
            response(&[("surrogate-control", "max-age=1+60")], "v1")
        } else {
            let mut r = response(&[], "down");
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            r
        }
    });
    get(&svc, URI, &[]).await;
    advance(30).await;
    let stale = get(&svc, URI, &[]).await;
    assert_eq!((stale.status, stale.x_cache()), (StatusCode::OK, "STALE"));
    advance(60).await;
    assert_eq!(get(&svc, URI, &[]).await.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test(start_paused = true)]
async fn head_never_stores_a_body_less_entry() {
    let (svc, calls) = cached(
        &CacheLayer::new(),
        Duration::ZERO,
        ranged_origin(&[("cache-control", "max-age=1, stale-while-revalidate=30")]),
    );
    // A HEAD miss goes to the origin as a HEAD and is not stored.
    let head = send(&svc, Method::HEAD, URI, &[]).await;
    assert_eq!((head.x_cache(), head.body.len()), ("MISS", 0));
    let whole = get(&svc, URI, &[]).await;
    assert_eq!(
        (whole.x_cache(), &whole.body[..]),
        ("MISS", &b"2123456789"[..])
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // A HEAD that finds the entry stale is answered from it, and the
    // background refresh is a GET: the refreshed entry keeps a body.
    advance(2).await;
    let head = send(&svc, Method::HEAD, URI, &[]).await;
    assert_eq!((head.x_cache(), head.body.len()), ("STALE", 0));
    assert_eq!(head.headers["content-length"], "10");
    let mut refreshed = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let answer = get(&svc, URI, &[]).await;
        if answer.x_cache() == "HIT" {
            refreshed = Some(answer);
            break;
        }
    }
    let refreshed = refreshed.expect("refreshed in the background");
    assert_eq!(&refreshed.body[..], b"3123456789");
    assert_eq!(refreshed.headers["content-length"], "10");
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // A HEAD that needs validation goes upstream as a HEAD, stores
    // nothing, and the stored GET still answers GETs with their body.
    let (svc, calls) = cached(
        &CacheLayer::new(),
        Duration::ZERO,
        ranged_origin(&[("cache-control", "max-age=5")]),
    );
    get(&svc, URI, &[]).await;
    let head = send(&svc, Method::HEAD, URI, &[("cache-control", "no-cache")]).await;
    assert_eq!((head.x_cache(), head.body.len()), ("MISS", 0));
    let hit = get(&svc, URI, &[]).await;
    assert_eq!((hit.x_cache(), &hit.body[..]), ("HIT", &b"1123456789"[..]));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

fn http_date(offset_secs: i64) -> String {
    let now = std::time::SystemTime::now();
    let at = if offset_secs >= 0 {
        now + Duration::from_secs(offset_secs.unsigned_abs())
    } else {
        now - Duration::from_secs(offset_secs.unsigned_abs())
    };
    httpdate::fmt_http_date(at)
}

#[tokio::test(start_paused = true)]
async fn expires_and_heuristic_freshness() {
    // Expires − Date = 30 s.
    let (date, expires) = (http_date(0), http_date(30));
    let (svc, calls) = cached(&CacheLayer::new(), Duration::ZERO, move |_, _| {
        response(&[("date", &date), ("expires", &expires)], "x")
    });
    get(&svc, URI, &[]).await;
    advance(28).await;
    assert_eq!(get(&svc, URI, &[]).await.x_cache(), "HIT");
    advance(3).await;
    assert_eq!(get(&svc, URI, &[]).await.x_cache(), "MISS");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // Heuristic: 10 % of the time since Last-Modified (1 000 s → 100 s).
    let (date, modified) = (http_date(0), http_date(-1000));
    let (svc, calls) = cached(&CacheLayer::new(), Duration::ZERO, move |_, _| {
        response(&[("date", &date), ("last-modified", &modified)], "x")
    });
    get(&svc, URI, &[]).await;
    advance(95).await;
    assert_eq!(get(&svc, URI, &[]).await.x_cache(), "HIT");
    advance(10).await;
    assert_ne!(get(&svc, URI, &[]).await.x_cache(), "HIT");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

type Call = Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, std::io::Error>>>>;

/// A cache in front of an origin that answers once with `cache_control`,
/// then fails to connect (a service error).
fn failing_after_one(
    layer: CacheLayer,
    cache_control: &'static str,
) -> (impl Fn() -> Call, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let origin = service_fn(move |_: Request<Body>| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n == 1 {
                Ok(response(&[("cache-control", cache_control)], "v1"))
            } else {
                Err(std::io::Error::other("connection refused"))
            }
        }
    });
    let svc = layer.layer(origin);
    let call = move || {
        let svc = svc.clone();
        Box::pin(async move {
            svc.oneshot(Request::get(URI).body(Body::empty()).unwrap())
                .await
        }) as Call
    };
    (call, calls)
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_covers_a_failing_connection_and_the_grace_applies() {
    let (call, calls) = failing_after_one(CacheLayer::new(), "max-age=1, stale-if-error=60");
    // Stored once its body has been read.
    call().await.unwrap().into_body().collect().await.unwrap();
    advance(10).await;
    let stale = call().await.unwrap();
    assert_eq!(stale.headers()["x-cache"], "STALE");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    advance(60).await;
    assert!(call().await.is_err());

    // The gateway-side grace: stale served (refreshed in the background,
    // which fails and keeps the entry) for 60 s past freshness.
    let layer = CacheLayer::new().stale_grace(Duration::from_secs(60));
    let (call, calls) = failing_after_one(layer, "max-age=1");
    // Stored once its body has been read.
    call().await.unwrap().into_body().collect().await.unwrap();
    advance(30).await;
    let stale = call().await.unwrap();
    assert_eq!(stale.headers()["x-cache"], "STALE");
    let mut refreshed = false;
    for _ in 0..100 {
        tokio::task::yield_now().await;
        if calls.load(Ordering::SeqCst) == 2 {
            refreshed = true;
            break;
        }
    }
    assert!(refreshed, "the background refresh ran");
    assert_eq!(call().await.unwrap().headers()["x-cache"], "STALE");
    advance(31).await;
    assert!(call().await.is_err());
}

#[tokio::test(start_paused = true)]
async fn surrogate_control_targeted_at_this_cache_and_surrogate_capability() {
    for (layer, capability, fresh_for) in [
        (CacheLayer::new(), Some("meshgate=\"Surrogate/1.0\""), 600),
        (
            CacheLayer::new().surrogate_name(Some("edge-1")),
            Some("edge-1=\"Surrogate/1.0\""),
            5,
        ),
        (CacheLayer::new().surrogate_name(None), None, 5),
    ] {
        let (svc, calls) = cached(&layer, Duration::ZERO, move |req, _| {
            assert_eq!(
                req.headers()
                    .get("surrogate-capability")
                    .map(|v| v.to_str().unwrap()),
                capability
            );
            response(
                &[(
                    "surrogate-control",
                    "max-age=5, max-age=600;meshgate, no-store;other",
                )],
                "x",
            )
        });
        get(&svc, URI, &[]).await;
        advance(fresh_for - 1).await;
        assert_eq!(get(&svc, URI, &[]).await.x_cache(), "HIT", "{capability:?}");
        advance(1).await;
        assert_eq!(
            get(&svc, URI, &[]).await.x_cache(),
            "MISS",
            "{capability:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
