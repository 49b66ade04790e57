//! The closed-breaker happy path against a bare `service_fn`, in the same run.
//!
//! `cargo bench --bench circuit_breaker`

use std::convert::Infallible;
use std::hint::black_box;

use criterion::{Criterion, criterion_group};
use http::{Request, Response};
use meshgate::circuit_breaker::CircuitBreakerLayer;
use tower::{Layer, Service, service_fn};

async fn ok(_: Request<()>) -> Result<Response<&'static str>, Infallible> {
    Ok(Response::new("ok"))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut bare = service_fn(ok);
    c.bench_function("circuit_breaker/service_fn", |b| {
        b.to_async(&rt).iter(|| {
            let fut = bare.call(Request::new(()));
            async move { black_box(fut.await.unwrap()) }
        })
    });
    let mut closed = CircuitBreakerLayer::new().layer(service_fn(ok));
    c.bench_function("circuit_breaker/closed", |b| {
        b.to_async(&rt).iter(|| {
            let fut = closed.call(Request::new(()));
            async move { black_box(fut.await.unwrap()) }
        })
    });
    let mut keyed = CircuitBreakerLayer::new()
        .key_by(|parts| Some(parts.uri.path().to_owned()))
        .layer(service_fn(ok));
    c.bench_function("circuit_breaker/closed_keyed", |b| {
        b.to_async(&rt).iter(|| {
            let fut = keyed.call(Request::new(()));
            async move { black_box(fut.await.unwrap()) }
        })
    });
}

/// `BREAKER_PROFILE=<service_fn|closed>:<n>` runs `n` calls of one variant
/// and exits, for instruction counts under callgrind: the difference between
/// two `n` divided by their difference is the cost of one call.
/// `closed:0` prints the size of the breaker's response future instead.
fn profile(spec: &str) {
    let (variant, n) = spec.split_once(':').expect("variant:n");
    let n: u64 = n.parse().expect("n");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        if variant == "service_fn" {
            let mut s = service_fn(ok);
            for _ in 0..n {
                black_box(s.call(Request::new(())).await.unwrap());
            }
        } else {
            let mut s = CircuitBreakerLayer::new().layer(service_fn(ok));
            if n == 0 {
                let fut = s.call(Request::new(()));
                eprintln!("future: {} bytes", std::mem::size_of_val(&fut));
            }
            for _ in 0..n {
                black_box(s.call(Request::new(())).await.unwrap());
            }
        }
    });
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(spec) = std::env::var("BREAKER_PROFILE") {
        profile(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
