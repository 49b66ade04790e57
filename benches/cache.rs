//! A cache hit through the layer against a bare `service_fn` returning the
//! same body and against a raw moka future-cache `get` of the same entry,
//! and a miss (the origin answers `no-store`, so every call goes upstream),
//! in the same run.
//!
//! `cargo bench --bench cache`

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

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();

    let moka: moka::future::Cache<String, Arc<Bytes>> = moka::future::Cache::new(1000);
    rt.block_on(moka.insert(
        "http://origin.test/item".to_owned(),
        Arc::new(Bytes::from_static(BODY)),
    ));
    c.bench_function("cache/raw_moka_get", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(moka.get("http://origin.test/item").await) })
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
