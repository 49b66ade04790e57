//! A cache hit through the layer against a bare `service_fn` returning the
//! same body and against a raw moka future-cache `get` of the same entry
//! (keyed by the URL string, and by a `u64` as the layer keys its store),
//! a hit of a `Vary: Accept-Encoding` response and a range hit, and a miss
//! (the origin answers `no-store`, so every call goes upstream), in the
//! same run.
//!
//! `cargo bench --bench cache -- --warm-up-time 1 --measurement-time 3`
//!
//! `cache/floor` is the least a correct hit can do, written by hand in the
//! bench: a moka get of the stored response (keyed by the URL string, as
//! `cache/raw_moka_get`), a copy of its headers (the same ones the layer
//! serves) with `Age` set from the stored instant, and its body; no key
//! from the request, no freshness, `Vary`, condition or range checks.
//!
//! `CACHE_PROFILE=hit` (or `hit_range`, `hit_vary`; `moka`, the raw get;
//! `moka_u64`; `floor`, the by-hand hit; `miss`, or `no_store`, the bare
//! origin of the miss) runs only that, `CACHE_PROFILE_N` (2 000 000)
//! times, outside criterion: `valgrind --tool=callgrind
//! target/release/deps/cache-… --bench`; the difference of two runs with
//! different `CACHE_PROFILE_N` is the cost per call.

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use meshgate::Body;
use meshgate::cache::CacheLayer;
use tower::{Layer, Service, service_fn};

const BODY: &[u8] = &[b'x'; 1024];

async fn cacheable(_: Request<()>) -> Result<Response<Body>, Infallible> {
    let mut response = Response::new(Body::from(Bytes::from_static(BODY)));
    response
        .headers_mut()
        .insert("cache-control", "max-age=3600".parse().unwrap());
    Ok(response)
}

async fn no_store(_: Request<()>) -> Result<Response<Body>, Infallible> {
    let mut response = Response::new(Body::from(Bytes::from_static(BODY)));
    response
        .headers_mut()
        .insert("cache-control", "no-store".parse().unwrap());
    Ok(response)
}

/// The request, cheap to build (the URI is parsed once), so the harness
/// costs little next to what is measured.
fn get() -> Request<()> {
    thread_local! {
        static URI: http::Uri = http::Uri::from_static("http://origin.test/item");
    }
    let mut request = Request::new(());
    *request.uri_mut() = URI.with(Clone::clone);
    request
}

async fn negotiated(_: Request<()>) -> Result<Response<Body>, Infallible> {
    let mut response = cacheable(Request::new(())).await?;
    response
        .headers_mut()
        .insert("vary", "accept-encoding".parse().unwrap());
    Ok(response)
}

/// Stores the answer to `request()`, then calls `n` times for hits.
async fn hits<S>(mut layer: S, request: impl Fn() -> Request<()>, n: usize)
where
    S: Service<Request<()>, Response = Response<Body>>,
    S::Error: std::fmt::Debug,
{
    let response = layer.call(get_whole(request())).await.unwrap();
    http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap();
    for _ in 0..n {
        black_box(layer.call(request()).await.unwrap());
    }
}

/// `request` without its `Range` (a range miss is not stored).
fn get_whole(mut request: Request<()>) -> Request<()> {
    request.headers_mut().remove("range");
    request
}

fn with_header(mut request: Request<()>, name: &'static str, value: &'static str) -> Request<()> {
    request
        .headers_mut()
        .insert(name, http::HeaderValue::from_static(value));
    request
}

/// A stored response for the by-hand floor: the headers a hit serves, its
/// body and when it was stored.
struct Stored {
    headers: http::HeaderMap,
    body: Bytes,
    stored_at: tokio::time::Instant,
}

/// The key of the by-hand floor, as `cache/raw_moka_get` uses it.
const KEY: &str = "http://origin.test/item";

/// A moka cache holding the response the layer serves for [`get`], as the
/// by-hand floor stores it.
async fn floor_store() -> moka::future::Cache<String, Arc<Stored>> {
    let mut layer = CacheLayer::new().layer(service_fn(cacheable));
    let response = layer.call(get()).await.unwrap();
    http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap();
    let (parts, body) = layer.call(get()).await.unwrap().into_parts();
    assert_eq!(parts.headers["x-cache"], "HIT");
    let body = http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .to_bytes();
    let store = moka::future::Cache::new(1000);
    store
        .insert(
            KEY.to_owned(),
            Arc::new(Stored {
                headers: parts.headers,
                body,
                stored_at: tokio::time::Instant::now(),
            }),
        )
        .await;
    store
}

/// The by-hand hit: the entry, a copy of its headers with `Age`, its body.
async fn floor_hit(
    store: &moka::future::Cache<String, Arc<Stored>>,
    req: Request<()>,
) -> Option<Response<Body>> {
    const AGES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    let stored = store.get(KEY).await?;
    let age = stored.stored_at.elapsed().as_secs();
    let age = match usize::try_from(age).ok().and_then(|a| AGES.get(a)) {
        Some(digits) => http::HeaderValue::from_static(digits),
        None => http::HeaderValue::from(age),
    };
    let mut response = Response::new(Body::from(stored.body.clone()));
    *response.headers_mut() = stored.headers.clone();
    // The stored headers hold an `Age` to overwrite in place (an insert
    // would first grow the exactly sized copy).
    match response.headers_mut().get_mut(http::header::AGE) {
        Some(slot) => *slot = age,
        None => {
            response.headers_mut().insert(http::header::AGE, age);
        }
    }
    drop(req);
    Some(response)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();

    let profile_n: usize = std::env::var("CACHE_PROFILE_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000_000);
    if std::env::var("CACHE_PROFILE").is_ok_and(|p| p == "moka") {
        let moka: moka::future::Cache<String, Arc<Bytes>> = moka::future::Cache::new(1000);
        rt.block_on(async {
            moka.insert(
                "http://origin.test/item".to_owned(),
                Arc::new(Bytes::from_static(BODY)),
            )
            .await;
            for _ in 0..profile_n {
                black_box(moka.get("http://origin.test/item").await);
            }
        });
        return;
    }
    if std::env::var("CACHE_PROFILE").is_ok_and(|p| p == "moka_u64") {
        let moka: moka::future::Cache<u64, Arc<Bytes>> = moka::future::Cache::new(1000);
        rt.block_on(async {
            moka.insert(0x9e37_79b9_7f4a_7c15, Arc::new(Bytes::from_static(BODY)))
                .await;
            for _ in 0..profile_n {
                black_box(moka.get(&0x9e37_79b9_7f4a_7c15).await);
            }
        });
        return;
    }
    if std::env::var("CACHE_PROFILE").is_ok_and(|p| p == "floor") {
        rt.block_on(async {
            let store = floor_store().await;
            for _ in 0..profile_n {
                black_box(floor_hit(&store, get()).await.unwrap());
            }
        });
        return;
    }
    if std::env::var("CACHE_PROFILE").is_ok_and(|p| p == "miss" || p == "no_store") {
        // A miss through the layer, or the bare origin it calls.
        let mut miss = CacheLayer::new().layer(service_fn(no_store));
        let mut bare = service_fn(no_store);
        let through = std::env::var("CACHE_PROFILE").is_ok_and(|p| p == "miss");
        rt.block_on(async {
            for _ in 0..profile_n {
                let response = if through {
                    miss.call(get()).await.unwrap()
                } else {
                    bare.call(get()).await.unwrap()
                };
                black_box(response);
            }
        });
        return;
    }
    if let Ok(profile @ ("hit" | "hit_range" | "hit_vary")) =
        std::env::var("CACHE_PROFILE").as_deref()
    {
        let request = || match profile {
            "hit_range" => with_header(get(), "range", "bytes=0-99"),
            "hit_vary" => with_header(get(), "accept-encoding", "gzip, br"),
            _ => get(),
        };
        if profile == "hit_vary" {
            let hit = CacheLayer::new().layer(service_fn(negotiated));
            rt.block_on(hits(hit, request, profile_n));
        } else {
            let hit = CacheLayer::new().layer(service_fn(cacheable));
            rt.block_on(hits(hit, request, profile_n));
        }
        return;
    }

    let moka: moka::future::Cache<String, Arc<Bytes>> = moka::future::Cache::new(1000);
    rt.block_on(moka.insert(
        "http://origin.test/item".to_owned(),
        Arc::new(Bytes::from_static(BODY)),
    ));
    c.bench_function("cache/raw_moka_get", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(moka.get("http://origin.test/item").await) })
    });
    let moka_u64: moka::future::Cache<u64, Arc<Bytes>> = moka::future::Cache::new(1000);
    rt.block_on(moka_u64.insert(0x9e37_79b9_7f4a_7c15, Arc::new(Bytes::from_static(BODY))));
    c.bench_function("cache/raw_moka_get_u64", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(moka_u64.get(&0x9e37_79b9_7f4a_7c15).await) })
    });

    let mut bare = service_fn(cacheable);
    c.bench_function("cache/service_fn", |b| {
        b.to_async(&rt).iter(|| {
            let fut = bare.call(get());
            async move { black_box(fut.await.unwrap()) }
        })
    });

    let mut hit = CacheLayer::new().layer(service_fn(cacheable));
    rt.block_on(async {
        let response = hit.call(get()).await.unwrap();
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap();
        let response = hit.call(get()).await.unwrap();
        assert_eq!(response.headers()["x-cache"], "HIT");
    });
    c.bench_function("cache/hit", |b| {
        b.to_async(&rt).iter(|| {
            let fut = hit.call(get());
            async move { black_box(fut.await.unwrap()) }
        })
    });

    let floor = rt.block_on(floor_store());
    c.bench_function("cache/floor", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(floor_hit(&floor, get()).await.unwrap()) })
    });

    let mut range = CacheLayer::new().layer(service_fn(cacheable));
    rt.block_on(async {
        let response = range.call(get()).await.unwrap();
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap();
    });
    c.bench_function("cache/hit_range", |b| {
        b.to_async(&rt).iter(|| {
            let fut = range.call(with_header(get(), "range", "bytes=0-99"));
            async move { black_box(fut.await.unwrap()) }
        })
    });

    let mut vary = CacheLayer::new().layer(service_fn(negotiated));
    rt.block_on(async {
        let response = vary
            .call(with_header(get(), "accept-encoding", "gzip, br"))
            .await
            .unwrap();
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap();
    });
    c.bench_function("cache/hit_vary", |b| {
        b.to_async(&rt).iter(|| {
            let fut = vary.call(with_header(get(), "accept-encoding", "gzip, br"));
            async move { black_box(fut.await.unwrap()) }
        })
    });

    let mut bare_miss = service_fn(no_store);
    c.bench_function("cache/service_fn_no_store", |b| {
        b.to_async(&rt).iter(|| {
            let fut = bare_miss.call(get());
            async move { black_box(fut.await.unwrap()) }
        })
    });
    let mut miss = CacheLayer::new().layer(service_fn(no_store));
    c.bench_function("cache/miss", |b| {
        b.to_async(&rt).iter(|| {
            let fut = miss.call(get());
            async move { black_box(fut.await.unwrap()) }
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
