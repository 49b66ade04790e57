//! Three header operations (remove, rename, set a fixed value) against a bare
//! `service_fn`, in the same run; the same three written by hand on
//! `http::HeaderMap` (the floor any layer pays): with `const` names, and
//! with names held at run time as configurable code must (an insert then
//! clones a name); the layer with names parsed at run time as the gateway
//! config builds them; the same with a `${client_ip}` value; and the three
//! on the response side (against a bare service answering the same
//! headers, and by hand). Requests are built outside the timed part
//! (`iter_batched`).
//! Target: at most 100 ns over the bare service for three operations.
//!
//! On a loaded machine prefer `TRANSFORM_PROFILE` (see [`profile`]):
//! instruction counts under callgrind, or `TRANSFORM_PROFILE=wall:1000`
//! for the fastest of 200 interleaved rounds.
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

/// The names and value of [`by_hand`] held at run time, as any configurable
/// code holds them.
struct HandOps {
    consumer: HeaderName,
    version: HeaderName,
    upstream_version: HeaderName,
    gateway: HeaderName,
    meshgate: HeaderValue,
}

static HAND_OPS: std::sync::LazyLock<HandOps> = std::sync::LazyLock::new(|| HandOps {
    consumer: HeaderName::from_static("x-consumer-id"),
    version: HeaderName::from_static("x-api-version"),
    upstream_version: HeaderName::from_static("x-upstream-version"),
    gateway: HeaderName::from_static("x-gateway"),
    meshgate: HeaderValue::from_static("meshgate"),
});

/// [`by_hand`] with the names by reference: the map takes owned names, so
/// an insert clones one, and the set clones the value.
async fn by_hand_runtime(mut request: Request<()>) -> Result<Response<&'static str>, Infallible> {
    let ops = &*HAND_OPS;
    let headers = request.headers_mut();
    headers.remove(&ops.consumer);
    if let Some(version) = headers.remove(&ops.version) {
        headers.insert(&ops.upstream_version, version);
    }
    headers.insert(&ops.gateway, ops.meshgate.clone());
    black_box(&request);
    Ok(Response::new("ok"))
}

/// What an upstream might answer: a header to hide, one to rename.
async fn upstream(_: Request<()>) -> Result<Response<&'static str>, Infallible> {
    let mut response = Response::new("ok");
    let headers = response.headers_mut();
    headers.insert("server", HeaderValue::from_static("upstream/1.0"));
    headers.insert("x-internal-node", HeaderValue::from_static("n7"));
    Ok(response)
}

/// [`upstream`] with the three response operations written by hand.
async fn upstream_by_hand(request: Request<()>) -> Result<Response<&'static str>, Infallible> {
    const SERVER: HeaderName = HeaderName::from_static("server");
    const NODE: HeaderName = HeaderName::from_static("x-internal-node");
    const SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");
    const GATEWAY: HeaderName = HeaderName::from_static("x-gateway");
    let mut response = upstream(request).await?;
    let headers = response.headers_mut();
    headers.remove(SERVER);
    if let Some(node) = headers.remove(NODE) {
        headers.insert(SERVED_BY, node);
    }
    headers.insert(GATEWAY, HeaderValue::from_static("meshgate"));
    Ok(response)
}

/// The three operations of the issue: remove, rename, set a fixed value.
fn three_ops(remove: &'static str, from: &'static str, to: &'static str) -> HeaderOps {
    let meshgate = HeaderTemplate::literal(HeaderValue::from_static("meshgate"));
    three_ops_with(remove, from, to, meshgate)
}

fn three_ops_with(
    remove: &'static str,
    from: &'static str,
    to: &'static str,
    value: HeaderTemplate,
) -> HeaderOps {
    HeaderOps::new()
        .remove(HeaderName::from_static(remove))
        .rename(HeaderName::from_static(from), HeaderName::from_static(to))
        .set(HeaderName::from_static("x-gateway"), value)
}

/// [`request_ops`] with the set value `${client_ip}`.
fn request_ops_client_ip() -> HeaderOps {
    let client_ip = "${client_ip}".parse().unwrap();
    three_ops_with(
        "x-consumer-id",
        "x-api-version",
        "x-upstream-version",
        client_ip,
    )
}

/// [`request_ops`] with names and value parsed at run time, as the gateway
/// config builds them (reference-counted bytes rather than static ones).
fn request_ops_parsed() -> HeaderOps {
    let name = |s: &str| HeaderName::from_bytes(s.as_bytes()).unwrap();
    HeaderOps::new()
        .remove(name("x-consumer-id"))
        .rename(name("x-api-version"), name("x-upstream-version"))
        .set(
            name("x-gateway"),
            HeaderTemplate::literal(HeaderValue::from_str("meshgate").unwrap()),
        )
}

fn request_ops() -> HeaderOps {
    three_ops("x-consumer-id", "x-api-version", "x-upstream-version")
}

fn response_ops() -> HeaderOps {
    three_ops("server", "x-internal-node", "x-served-by")
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
    let mut hand_runtime = service_fn(by_hand_runtime);
    c.bench_function("transform/three_ops_by_hand_runtime", |b| {
        b.to_async(&rt).iter_batched(
            request,
            |request| {
                let fut = hand_runtime.call(request);
                async move { black_box(fut.await.unwrap()) }
            },
            BatchSize::SmallInput,
        )
    });
    let mut fixed = TransformLayer::new()
        .request(request_ops())
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
    // Three operations, the set one `${client_ip}` (not a fourth set).
    let mut templated = TransformLayer::new()
        .request(request_ops_client_ip())
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

    let mut parsed = TransformLayer::new()
        .request(request_ops_parsed())
        .layer(service_fn(ok));
    c.bench_function("transform/three_ops_parsed", |b| {
        b.to_async(&rt).iter_batched(
            request,
            |request| {
                let fut = parsed.call(request);
                async move { black_box(fut.await.unwrap()) }
            },
            BatchSize::SmallInput,
        )
    });
    let mut response_three = TransformLayer::new()
        .response(response_ops())
        .layer(service_fn(upstream));
    c.bench_function("transform/response_three_ops", |b| {
        b.to_async(&rt).iter_batched(
            request,
            |request| {
                let fut = response_three.call(request);
                async move { black_box(fut.await.unwrap()) }
            },
            BatchSize::SmallInput,
        )
    });
    let mut response_bare = service_fn(upstream);
    c.bench_function("transform/response_service_fn", |b| {
        b.to_async(&rt).iter_batched(
            request,
            |request| {
                let fut = response_bare.call(request);
                async move { black_box(fut.await.unwrap()) }
            },
            BatchSize::SmallInput,
        )
    });
    let mut response_hand = service_fn(upstream_by_hand);
    c.bench_function("transform/response_three_ops_by_hand", |b| {
        b.to_async(&rt).iter_batched(
            request,
            |request| {
                let fut = response_hand.call(request);
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

/// `TRANSFORM_PROFILE=<variant>:<n>` runs `n` calls of one variant and
/// exits, for instruction counts (callgrind), which a loaded machine does
/// not blur: the difference between two variants divided by `n` is the cost
/// of the three ops (by the layer, or by hand). Variants: `service_fn`,
/// `by_hand`, `by_hand_runtime`, `empty_layer` (a layer with no ops: the
/// wrapper alone), `three_ops`, `three_ops_parsed`, `three_ops_client_ip`
/// (request side);
/// `response_service_fn`, `response_by_hand`, `response_three_ops` (a bare
/// [`upstream`], the same with the ops by hand, the layer with the three
/// response ops).
///
/// `TRANSFORM_PROFILE=wall:<n>` times every variant instead, interleaved,
/// in 200 rounds of `n` calls on requests built before each round, and
/// prints the fastest round and the median per call: the fastest round is
/// the one least disturbed by other processes on a shared machine.
fn profile(spec: &str) {
    let (variant, n) = spec.split_once(':').expect("variant:n");
    let n: usize = n.parse().expect("n");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut service_fn_ = service_fn(ok);
    let mut by_hand_ = service_fn(by_hand);
    let mut by_hand_runtime_ = service_fn(by_hand_runtime);
    let mut empty_layer = TransformLayer::new().layer(service_fn(ok));
    let mut three_ops_ = TransformLayer::new()
        .request(request_ops())
        .layer(service_fn(ok));
    let mut three_ops_parsed = TransformLayer::new()
        .request(request_ops_parsed())
        .layer(service_fn(ok));
    let mut three_ops_client_ip = TransformLayer::new()
        .request(request_ops_client_ip())
        .layer(service_fn(ok));
    let mut response_service_fn = service_fn(upstream);
    let mut response_by_hand = service_fn(upstream_by_hand);
    let mut response_three_ops = TransformLayer::new()
        .response(response_ops())
        .layer(service_fn(upstream));
    rt.block_on(async {
        match variant {
            "service_fn" => calls(&mut service_fn_, n).await,
            "by_hand" => calls(&mut by_hand_, n).await,
            "by_hand_runtime" => calls(&mut by_hand_runtime_, n).await,
            "empty_layer" => calls(&mut empty_layer, n).await,
            "three_ops" => calls(&mut three_ops_, n).await,
            "three_ops_parsed" => calls(&mut three_ops_parsed, n).await,
            "three_ops_client_ip" => calls(&mut three_ops_client_ip, n).await,
            "response_service_fn" => calls(&mut response_service_fn, n).await,
            "response_by_hand" => calls(&mut response_by_hand, n).await,
            "response_three_ops" => calls(&mut response_three_ops, n).await,
            "wall" => {
                let names = [
                    "service_fn",
                    "by_hand",
                    "by_hand_runtime",
                    "empty_layer",
                    "three_ops",
                    "three_ops_parsed",
                    "three_ops_client_ip",
                    "response_service_fn",
                    "response_by_hand",
                    "response_three_ops",
                ];
                let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
                for _ in 0..200 {
                    times[0].push(timed(&mut service_fn_, n).await);
                    times[1].push(timed(&mut by_hand_, n).await);
                    times[2].push(timed(&mut by_hand_runtime_, n).await);
                    times[3].push(timed(&mut empty_layer, n).await);
                    times[4].push(timed(&mut three_ops_, n).await);
                    times[5].push(timed(&mut three_ops_parsed, n).await);
                    times[6].push(timed(&mut three_ops_client_ip, n).await);
                    times[7].push(timed(&mut response_service_fn, n).await);
                    times[8].push(timed(&mut response_by_hand, n).await);
                    times[9].push(timed(&mut response_three_ops, n).await);
                }
                for (name, times) in names.iter().zip(&mut times) {
                    times.sort_by(f64::total_cmp);
                    println!(
                        "{name:<20} fastest {:6.1} ns  median {:6.1} ns",
                        times[0],
                        times[times.len() / 2]
                    );
                }
            }
            other => panic!("unknown variant {other}"),
        }
    });
}

async fn calls<S>(service: &mut S, n: usize)
where
    S: Service<Request<()>, Response = Response<&'static str>, Error = Infallible>,
{
    for _ in 0..n {
        black_box(service.call(request()).await.unwrap());
    }
}

/// Nanoseconds per call over `n` calls on requests built beforehand.
async fn timed<S>(service: &mut S, n: usize) -> f64
where
    S: Service<Request<()>, Response = Response<&'static str>, Error = Infallible>,
{
    let requests: Vec<_> = (0..n).map(|_| request()).collect();
    let start = std::time::Instant::now();
    for request in requests {
        black_box(service.call(request).await.unwrap());
    }
    start.elapsed().as_nanos() as f64 / n as f64
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
