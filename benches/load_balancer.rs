//! Choosing an endpoint with each strategy (10 endpoints, all healthy,
//! weighted 1 to 10 where it says so)
//! against the cheapest possible pick, and the full balanced call against a
//! bare `service_fn`, in the same run.
//!
//! `cargo bench --bench load_balancer`

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use meshgate::load_balancer::{Endpoint, HashKey, LoadBalancerLayer, Strategy};
use tower::{Layer, Service, service_fn};

async fn ok(_: Request<()>) -> Result<Response<&'static str>, Infallible> {
    Ok(Response::new("ok"))
}

/// Ten endpoints, weighted 1 to 10 or all 1.
fn endpoints(weighted: bool) -> Vec<Endpoint> {
    (1..=10)
        .map(|i| {
            Endpoint::parse(&format!("10.0.0.{i}:8080"))
                .unwrap()
                .with_weight(if weighted { i } else { 1 })
        })
        .collect()
}

fn layer(strategy: Strategy, weighted: bool) -> LoadBalancerLayer {
    LoadBalancerLayer::builder()
        .endpoints(endpoints(weighted))
        .strategy(strategy)
        .seed(1)
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let next = AtomicUsize::new(0);
    c.bench_function("load_balancer/pick/baseline_counter", |b| {
        b.iter(|| black_box(next.fetch_add(1, Ordering::Relaxed) % 10))
    });
    let request = Request::builder()
        .header("x-user", "user-1234")
        .body(())
        .unwrap();
    for (name, strategy, weighted) in [
        ("round_robin", Strategy::RoundRobin, false),
        ("weighted_round_robin", Strategy::WeightedRoundRobin, true),
        ("random", Strategy::Random, false),
        ("random_weighted", Strategy::Random, true),
        ("least_request_p2c", Strategy::LeastRequest, false),
        ("least_request_p2c_weighted", Strategy::LeastRequest, true),
        ("peak_ewma_p2c", Strategy::peak_ewma(), false),
        ("peak_ewma_p2c_weighted", Strategy::peak_ewma(), true),
        (
            "consistent_hash_header",
            Strategy::consistent_hash(HashKey::Header(http::HeaderName::from_static("x-user"))),
            true,
        ),
    ] {
        let layer = layer(strategy, weighted);
        c.bench_function(&format!("load_balancer/pick/{name}"), |b| {
            b.iter(|| black_box(layer.pick(black_box(&request))))
        });
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut bare = service_fn(ok);
    c.bench_function("load_balancer/call/service_fn", |b| {
        b.to_async(&rt).iter(|| {
            let fut = bare.call(Request::new(()));
            async move { black_box(fut.await.unwrap()) }
        })
    });
    for (name, strategy) in [
        ("round_robin", Strategy::RoundRobin),
        ("least_request_p2c", Strategy::LeastRequest),
        ("peak_ewma_p2c", Strategy::peak_ewma()),
    ] {
        let mut balanced = rt.block_on(async { layer(strategy, false).layer(service_fn(ok)) });
        c.bench_function(&format!("load_balancer/call/{name}"), |b| {
            b.to_async(&rt).iter(|| {
                let fut = balanced.call(Request::new(()));
                async move { black_box(fut.await.unwrap()) }
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
