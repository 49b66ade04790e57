//! Three header operations (remove, rename, set a fixed value) against a bare
//! `service_fn`, in the same run; and the same with a `${client_ip}` value.
//! Requests are built outside the timed part (`iter_batched`).
//! Target: at most 100 ns over the bare service for three operations.
//!
//! Also: a JSON response body of about 1 KiB with one field removed by
//! `JsonBodyLayer` (buffer, parse, rewrite, serialize) against the same
//! body read from the bare service.
//!
//! `cargo bench --bench transform`

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group};
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use meshgate::peer::PeerAddr;
use meshgate::transform::{
    HeaderOps, HeaderTemplate, JsonBodyLayer, JsonOps, TransformBody, TransformLayer,
};
use tower::{Layer, Service, service_fn};

async fn ok(_: Request<()>) -> Result<Response<&'static str>, Infallible> {
    Ok(Response::new("ok"))
}

/// The same three operations written by hand in the service: the part of
/// the cost that is `HeaderMap`'s own, whoever does the work.
async fn by_hand(mut request: Request<()>) -> Result<Response<&'static str>, Infallible> {
    const CONSUMER: HeaderName = HeaderName::from_static("x-consumer-id");
    const VERSION: HeaderName = HeaderName::from_static("x-api-version");
    const UPSTREAM_VERSION: HeaderName = HeaderName::from_static("x-upstream-version");
    const GATEWAY: HeaderName = HeaderName::from_static("x-gateway");
    let headers = request.headers_mut();
    headers.remove(CONSUMER);
    if let Some(version) = headers.remove(VERSION) {
        headers.insert(UPSTREAM_VERSION, version);
    }
    headers.insert(GATEWAY, HeaderValue::from_static("meshgate"));
    black_box(&request);
    Ok(Response::new("ok"))
}

fn request() -> Request<()> {
    let mut request = Request::builder()
        .header("x-consumer-id", "spoofed")
        .header("x-api-version", "2")
        .header("accept", "application/json")
        .body(())
        .unwrap();
    request
        .extensions_mut()
        .insert(PeerAddr("192.0.2.7:5000".parse().unwrap()));
    request
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut bare = service_fn(ok);
    c.bench_function("transform/service_fn", |b| {
        b.to_async(&rt).iter_batched(
            request,
            |request| {
                let fut = bare.call(request);
                async move { black_box(fut.await.unwrap()) }
            },
            BatchSize::SmallInput,
        )
    });
    let mut hand = service_fn(by_hand);
    c.bench_function("transform/three_ops_by_hand", |b| {
        b.to_async(&rt).iter_batched(
            request,
            |request| {
                let fut = hand.call(request);
                async move { black_box(fut.await.unwrap()) }
            },
            BatchSize::SmallInput,
        )
    });
    let three = HeaderOps::new()
        .remove(HeaderName::from_static("x-consumer-id"))
        .rename(
            HeaderName::from_static("x-api-version"),
            HeaderName::from_static("x-upstream-version"),
        )
        .set(
            HeaderName::from_static("x-gateway"),
            HeaderTemplate::literal(HeaderValue::from_static("meshgate")),
        );
    let mut fixed = TransformLayer::new()
        .request(three.clone())
        .layer(service_fn(ok));
    c.bench_function("transform/three_ops", |b| {
        b.to_async(&rt).iter_batched(
            request,
            |request| {
                let fut = fixed.call(request);
                async move { black_box(fut.await.unwrap()) }
            },
            BatchSize::SmallInput,
        )
    });
    let mut templated = TransformLayer::new()
        .request(three.set(
            HeaderName::from_static("x-gateway"),
            "${client_ip}".parse().unwrap(),
        ))
        .layer(service_fn(ok));
    c.bench_function("transform/three_ops_client_ip", |b| {
        b.to_async(&rt).iter_batched(
            request,
            |request| {
                let fut = templated.call(request);
                async move { black_box(fut.await.unwrap()) }
            },
            BatchSize::SmallInput,
        )
    });

    let document = json_document();
    let bare_document = document.clone();
    let mut bare_json = service_fn(move |_: Request<Full<Bytes>>| {
        std::future::ready(Ok::<_, Infallible>(json_response(&bare_document)))
    });
    c.bench_function("transform/json_body_service_fn", |b| {
        b.to_async(&rt).iter_batched(
            || Request::new(Full::<Bytes>::default()),
            |request| {
                let fut = bare_json.call(request);
                async move { black_box(fut.await.unwrap().into_body().collect().await.unwrap()) }
            },
            BatchSize::SmallInput,
        )
    });
    let mut rewritten = JsonBodyLayer::new()
        .response(JsonOps::new().remove("internal"))
        .layer(service_fn(move |_: Request<TransformBody<Full<Bytes>>>| {
            std::future::ready(Ok::<_, Infallible>(json_response(&document)))
        }));
    c.bench_function("transform/json_body_remove_field", |b| {
        b.to_async(&rt).iter_batched(
            || Request::new(Full::<Bytes>::default()),
            |request| {
                let fut = rewritten.call(request);
                async move { black_box(fut.await.unwrap().into_body().collect().await.unwrap()) }
            },
            BatchSize::SmallInput,
        )
    });
}

fn json_response(document: &Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(document.clone()))
        .unwrap()
}

/// A JSON object of about 1 KiB: twenty items and one internal field.
fn json_document() -> Bytes {
    let items: Vec<_> = (0..20)
        .map(|i| serde_json::json!({"id": i, "name": format!("item {i}"), "price": 9.5}))
        .collect();
    let value = serde_json::json!({"items": items, "internal": {"node": "n7"}, "page": 1});
    Bytes::from(serde_json::to_vec(&value).unwrap())
}

/// `TRANSFORM_PROFILE=<service_fn|by_hand|three_ops>:<n>` runs `n` calls of one
/// variant and exits, for instruction counts (`perf stat -e instructions`
/// or callgrind), which a loaded machine does not blur: the difference
/// between two variants divided by `n` is the cost of the three ops (by the
/// layer, or by hand).
fn profile(spec: &str) {
    let (variant, n) = spec.split_once(':').expect("variant:n");
    let n: u64 = n.parse().expect("n");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ops = HeaderOps::new()
        .remove(HeaderName::from_static("x-consumer-id"))
        .rename(
            HeaderName::from_static("x-api-version"),
            HeaderName::from_static("x-upstream-version"),
        )
        .set(
            HeaderName::from_static("x-gateway"),
            HeaderTemplate::literal(HeaderValue::from_static("meshgate")),
        );
    rt.block_on(async {
        if variant == "service_fn" {
            let mut s = service_fn(ok);
            for _ in 0..n {
                black_box(s.call(request()).await.unwrap());
            }
        } else if variant == "by_hand" {
            let mut s = service_fn(by_hand);
            for _ in 0..n {
                black_box(s.call(request()).await.unwrap());
            }
        } else {
            let mut s = TransformLayer::new().request(ops).layer(service_fn(ok));
            for _ in 0..n {
                black_box(s.call(request()).await.unwrap());
            }
        }
    });
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(spec) = std::env::var("TRANSFORM_PROFILE") {
        profile(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
