//! The timeout layer's happy path against tower's `TimeoutLayer` and a bare
//! `service_fn`, in the same run.
//!
//! `cargo bench --bench timeout`
//!
//! Three shapes of request, each measured for all three services:
//!
//! * `empty`: `Request::new(())` built inside the timed loop — the shape of
//!   the baseline. meshgate's layer pays here for allocating the
//!   header map (it forwards the budget header) and the extensions map (it
//!   inserts a `Deadline`), which tower's layer does not do.
//! * `headers`: a request with `host`, `user-agent` and `accept`, built
//!   outside the timed region.
//! * `stacked`: the `headers` request behind `RequestIdLayer`, as in a real
//!   stack, where the extensions map already exists.
//!
//! A fourth service, `tower_forward`, is the floor of what the issue asks
//! for written by hand: tower's `TimeoutLayer` plus the one thing it does
//! not do that deadline propagation must, writing the (precomputed)
//! remaining budget into `x-request-timeout-ms` for the inner service.
//!
//! `TIMEOUT_PROFILE` (see `profile`) runs one variant for callgrind.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group};
use http::{HeaderName, HeaderValue, Request, Response};
use meshgate::observe::RequestIdLayer;
use tower::{Layer, Service, service_fn};

fn request_with_headers() -> Request<()> {
    Request::builder()
        .uri("/orders/17")
        .header("host", "api.example.com")
        .header("user-agent", "bench/1.0")
        .header("accept", "application/json")
        .body(())
        .unwrap()
}

/// Writes a precomputed budget header, then calls the inner service: the
/// header work of deadline propagation done by hand, for the floor.
#[derive(Clone)]
struct ForwardBudget<S> {
    inner: S,
    name: HeaderName,
    value: HeaderValue,
}

impl<S: Service<Request<()>>> Service<Request<()>> for ForwardBudget<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<()>) -> Self::Future {
        request
            .headers_mut()
            .insert(self.name.clone(), self.value.clone());
        self.inner.call(request)
    }
}

/// tower's timeout with the budget header written by hand (see the module
/// docs).
fn tower_forward(
    budget: Duration,
) -> impl Service<Request<()>, Response = Response<&'static str>, Error = tower::BoxError> + Clone {
    ForwardBudget {
        inner: tower::timeout::TimeoutLayer::new(budget).layer(service_fn(ok)),
        name: meshgate::timeout::DEFAULT_BUDGET_HEADER,
        value: HeaderValue::from(u64::try_from(budget.as_millis()).unwrap()),
    }
}

async fn ok(_: Request<()>) -> Result<Response<&'static str>, Infallible> {
    Ok(Response::new("ok"))
}

/// Benchmarks `service` under `name` in the three shapes.
fn shapes<S, B>(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, service: S)
where
    S: Service<Request<()>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    let mut svc = service.clone();
    c.bench_function(&format!("timeout/empty/{name}"), |b| {
        b.to_async(rt).iter(|| {
            let fut = svc.call(Request::new(()));
            async move { black_box(fut.await.unwrap()) }
        })
    });
    with_headers(c, rt, &format!("timeout/headers/{name}"), service.clone());
    let stacked = RequestIdLayer::new().layer(service);
    with_headers(c, rt, &format!("timeout/stacked/{name}"), stacked);
}

/// Benchmarks `svc` on requests with headers built outside the timed region.
fn with_headers<S, B>(c: &mut Criterion, rt: &tokio::runtime::Runtime, id: &str, mut svc: S)
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    c.bench_function(id, |b| {
        b.to_async(rt).iter_batched(
            request_with_headers,
            |req| {
                let fut = svc.call(req);
                async move { black_box(fut.await.unwrap()) }
            },
            BatchSize::SmallInput,
        )
    });
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let budget = Duration::from_secs(30);
    shapes(c, &rt, "service_fn", service_fn(ok));
    shapes(
        c,
        &rt,
        "tower",
        tower::timeout::TimeoutLayer::new(budget).layer(service_fn(ok)),
    );
    shapes(c, &rt, "tower_forward", tower_forward(budget));
    shapes(
        c,
        &rt,
        "meshgate",
        meshgate::timeout::TimeoutLayer::new(budget).layer(service_fn(ok)),
    );
}

/// `TIMEOUT_PROFILE=<service_fn|tower|tower_forward|meshgate|build>[-headers|-stacked]:<n>`
/// runs `n` calls of one variant and exits, for instruction counts under
/// callgrind: the difference between two `n` divided by their difference
/// is the cost of one call. Plain variants use the `empty` shape,
/// `-headers` and `-stacked` the `headers` and `stacked` ones (the request
/// is built in the loop here, the same for every variant; `build` only
/// builds and drops the requests, to subtract).
fn profile(spec: &str) {
    let (variant, n) = spec.split_once(':').expect("variant:n");
    let n: u64 = n.parse().expect("n");
    let (variant, headers) = match variant.strip_suffix("-headers") {
        Some(variant) => (variant, true),
        None => (variant, false),
    };
    let (variant, stacked) = match variant.strip_suffix("-stacked") {
        Some(variant) => (variant, true),
        None => (variant, false),
    };
    let headers = headers || stacked;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let budget = Duration::from_secs(30);
    rt.block_on(async {
        match variant {
            // Only builds and drops the requests: what the criterion bench
            // leaves out of its timed region, to subtract.
            "build" => {
                for _ in 0..n {
                    black_box(if headers {
                        request_with_headers()
                    } else {
                        Request::new(())
                    });
                }
            }
            "service_fn" => run(service_fn(ok), n, headers, stacked).await,
            "tower_forward" => run(tower_forward(budget), n, headers, stacked).await,
            "tower" => {
                let s = tower::timeout::TimeoutLayer::new(budget).layer(service_fn(ok));
                run(s, n, headers, stacked).await;
            }
            _ => {
                let s = meshgate::timeout::TimeoutLayer::new(budget).layer(service_fn(ok));
                run(s, n, headers, stacked).await;
            }
        }
    });
}

/// Runs `n` calls of `s`, behind `RequestIdLayer` when `stacked`.
async fn run<S>(s: S, n: u64, headers: bool, stacked: bool)
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
    RequestIdLayer: Layer<S>,
    <RequestIdLayer as Layer<S>>::Service: Service<Request<()>>,
    <<RequestIdLayer as Layer<S>>::Service as Service<Request<()>>>::Error: std::fmt::Debug,
{
    if stacked {
        calls(RequestIdLayer::new().layer(s), n, headers).await;
    } else {
        calls(s, n, headers).await;
    }
}

async fn calls<S>(mut s: S, n: u64, headers: bool)
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    for _ in 0..n {
        let request = if headers {
            request_with_headers()
        } else {
            Request::new(())
        };
        black_box(s.call(request).await.unwrap());
    }
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(spec) = std::env::var("TIMEOUT_PROFILE") {
        profile(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
