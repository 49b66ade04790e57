//! An allowed request through `RateLimitLayer` against a bare `service_fn`,
//! in the same run: one key, and 10 000 keys in turn.
//!
//! `cargo bench --bench rate_limit`

use std::convert::Infallible;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use criterion::{Criterion, criterion_group};
use http::{Request, Response};
use meshgate::peer::PeerAddr;
use meshgate::rate_limit::{Quota, RateLimitLayer};
use tower::{Layer, Service, service_fn};

async fn ok(_: Request<()>) -> Result<Response<&'static str>, Infallible> {
    Ok(Response::new("ok"))
}

fn request(i: u32) -> Request<()> {
    let mut request = Request::new(());
    let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::new(ip, 40000)));
    request
}

/// Quotas no benchmark run can exhaust, so every request is allowed.
fn layer() -> RateLimitLayer {
    RateLimitLayer::new([
        Quota::per_second(1_000_000_000).burst(1_000_000_000),
        Quota::per_minute(u64::MAX / 2),
    ])
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut bare = service_fn(ok);
    c.bench_function("rate_limit/service_fn", |b| {
        b.to_async(&rt).iter(|| {
            let fut = bare.call(request(1));
            async move { black_box(fut.await.unwrap()) }
        })
    });
    let mut one_key = layer().layer(service_fn(ok));
    c.bench_function("rate_limit/allowed_one_key", |b| {
        b.to_async(&rt).iter(|| {
            let fut = one_key.call(request(1));
            async move { black_box(fut.await.unwrap()) }
        })
    });
    let mut many_keys = layer().layer(service_fn(ok));
    let mut i = 0u32;
    c.bench_function("rate_limit/allowed_10k_keys", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % 10_000;
            let fut = many_keys.call(request(i));
            async move { black_box(fut.await.unwrap()) }
        })
    });
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
