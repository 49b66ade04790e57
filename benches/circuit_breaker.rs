//! The closed-breaker happy path against a bare `service_fn`, in the same run.
//!
//! `cargo bench --bench circuit_breaker`

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use criterion::{Criterion, criterion_group};
use http::{Request, Response, StatusCode};
use meshgate::body::ResponseBody;
use meshgate::circuit_breaker::CircuitBreakerLayer;
use meshgate::classify::Outcome;
use tower::{Layer, Service, service_fn};

async fn ok(_: Request<()>) -> Result<Response<&'static str>, Infallible> {
    Ok(Response::new("ok"))
}

/// The floor: the least a closed breaker must do, written by hand around
/// the same service. Shared state behind an `Arc` (one load to admit, a
/// reference the response future keeps), the answer judged by the shared
/// classification, the failure streak reset (a load, and a store only when
/// a streak ends), the body wrapped in `ResponseBody` so that the same
/// response type can carry a refusal's 503. No generations, probes,
/// slow calls or windows.
#[derive(Default)]
struct HandBreaker {
    open: AtomicBool,
    consecutive: AtomicU32,
}

fn by_hand<S>(
    breaker: &Arc<HandBreaker>,
    inner: &mut S,
    request: Request<()>,
) -> impl Future<Output = Result<Response<ResponseBody<&'static str>>, Infallible>> + use<S>
where
    S: Service<Request<()>, Response = Response<&'static str>, Error = Infallible>,
{
    let call =
        (!breaker.open.load(Ordering::Acquire)).then(|| (Arc::clone(breaker), inner.call(request)));
    async move {
        let Some((breaker, call)) = call else {
            let mut refused = Response::new(ResponseBody::local(Default::default()));
            *refused.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            return Ok(refused);
        };
        let response = call.await?;
        if Outcome::from_response(&response).is_breaker_failure() {
            if breaker.consecutive.fetch_add(1, Ordering::AcqRel) + 1 >= 5 {
                breaker.open.store(true, Ordering::Release);
            }
        } else if breaker.consecutive.load(Ordering::Relaxed) != 0 {
            breaker.consecutive.store(0, Ordering::Relaxed);
        }
        Ok(response.map(ResponseBody::inner))
    }
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
    let hand = Arc::new(HandBreaker::default());
    let mut inner = service_fn(ok);
    c.bench_function("circuit_breaker/by_hand", |b| {
        b.to_async(&rt).iter(|| {
            let fut = by_hand(&hand, &mut inner, Request::new(()));
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

/// `BREAKER_PROFILE=<service_fn|closed|by_hand>:<n>` runs `n` calls of one variant
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
        } else if variant == "by_hand" {
            let hand = Arc::new(HandBreaker::default());
            let mut s = service_fn(ok);
            for _ in 0..n {
                black_box(by_hand(&hand, &mut s, Request::new(())).await.unwrap());
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
