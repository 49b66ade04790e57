//! The retry happy path (first attempt succeeds, empty body) against a bare
//! `service_fn` and against `tower::retry` on the same policy, in one run.
//!
//! `cargo bench --bench retry -- --warm-up-time 1 --measurement-time 3`

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use http::{Request, Response};
use http_body_util::Empty;
use meshgate::body::ResponseBody;
use meshgate::classify::{Outcome, is_idempotent};
use meshgate::retry::{RetryBudget, RetryLayer};
use tower::retry::budget::{Budget, TpsBudget};
use tower::retry::{Policy, RetryLayer as TowerRetryLayer};
use tower::{Layer, Service, service_fn};

type Req = Request<Empty<Bytes>>;

async fn ok<B>(_: Request<B>) -> Result<Response<&'static str>, Infallible> {
    Ok(Response::new("ok"))
}

/// The same policy for tower: 3 attempts in all, retry on 502/503/504,
/// idempotent methods only, a budget of 20 % plus 10/s over 10 s.
#[derive(Clone)]
struct TowerPolicy {
    attempts_left: u32,
    budget: Arc<TpsBudget>,
}

impl<E> Policy<Req, Response<&'static str>, E> for TowerPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Req,
        result: &mut Result<Response<&'static str>, E>,
    ) -> Option<Self::Future> {
        let retriable = match result {
            Ok(response) => matches!(response.status().as_u16(), 502..=504),
            Err(_) => true,
        };
        if !retriable {
            self.budget.deposit();
            return None;
        }
        if self.attempts_left == 0
            || !meshgate::classify::is_idempotent(req.method())
            || !self.budget.withdraw()
        {
            return None;
        }
        self.attempts_left -= 1;
        Some(tokio::time::sleep(Duration::from_millis(25)))
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        let mut clone = Request::new(Empty::new());
        *clone.method_mut() = req.method().clone();
        *clone.uri_mut() = req.uri().clone();
        *clone.version_mut() = req.version();
        *clone.headers_mut() = req.headers().clone();
        *clone.extensions_mut() = req.extensions().clone();
        Some(clone)
    }
}

/// What a request keeps so that it can be made again.
// Read only by a retry, which the bench's service never causes.
#[allow(dead_code)]
struct Head {
    method: http::Method,
    uri: http::Uri,
    version: http::Version,
    headers: Option<http::HeaderMap>,
    extensions: http::Extensions,
}

/// The floor: the least the retry happy path must do, written by hand
/// around the same service. The budget deposit (a clock read and an atomic
/// add); the repeat-safety check; a copy of the head to replay (an empty
/// body needs nothing kept); the service and the budget kept for a retry
/// (the budget's reference counted); the answer judged against the retry
/// conditions (the shared classification); the body wrapped in
/// `ResponseBody` so that the same response type can carry the layer's
/// own answers. No backoff, timers, deadlines, replay body or counters.
fn by_hand<S>(
    budget: &Arc<RetryBudget>,
    inner: &mut S,
    request: Req,
) -> impl Future<Output = Result<Response<ResponseBody<&'static str>>, Infallible>> + use<S>
where
    S: Service<Req, Response = Response<&'static str>, Error = Infallible> + Clone,
{
    budget.deposit();
    let kept = is_idempotent(request.method()).then(|| {
        let head = Head {
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            headers: (!request.headers().is_empty()).then(|| request.headers().clone()),
            extensions: request.extensions().clone(),
        };
        (head, inner.clone(), Arc::clone(budget))
    });
    let call = inner.call(request);
    async move {
        let response = call.await?;
        if let Some(kept) = kept
            && Outcome::from_response(&response).failure().is_some()
        {
            // A retry would start here; the bench's service answers 200.
            black_box(kept);
        }
        Ok(response.map(ResponseBody::inner))
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut bare = service_fn(ok::<Empty<Bytes>>);
    c.bench_function("retry/service_fn", |b| {
        b.to_async(&rt).iter(|| {
            let fut = bare.call(Request::new(Empty::new()));
            async move { black_box(fut.await.unwrap()) }
        })
    });
    let policy = TowerPolicy {
        attempts_left: 2,
        budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
    };
    let mut tower_retry = TowerRetryLayer::new(policy).layer(service_fn(ok::<Empty<Bytes>>));
    c.bench_function("retry/tower_retry", |b| {
        b.to_async(&rt).iter(|| {
            let fut = tower_retry.call(Request::new(Empty::new()));
            async move { black_box(fut.await.unwrap()) }
        })
    });
    let mut meshgate = RetryLayer::new().layer(service_fn(ok));
    c.bench_function("retry/meshgate", |b| {
        b.to_async(&rt).iter(|| {
            let fut = meshgate.call(Request::new(Empty::<Bytes>::new()));
            async move { black_box(fut.await.unwrap()) }
        })
    });
    let budget = Arc::new(RetryBudget::default());
    let mut inner = service_fn(ok::<Empty<Bytes>>);
    c.bench_function("retry/by_hand", |b| {
        b.to_async(&rt).iter(|| {
            let fut = by_hand(&budget, &mut inner, Request::new(Empty::new()));
            async move { black_box(fut.await.unwrap()) }
        })
    });
    // The same with the `Attempts` extension on first-attempt answers too.
    let mut always = RetryLayer::new()
        .always_record_attempts(true)
        .layer(service_fn(ok));
    c.bench_function("retry/meshgate_always_record", |b| {
        b.to_async(&rt).iter(|| {
            let fut = always.call(Request::new(Empty::<Bytes>::new()));
            async move { black_box(fut.await.unwrap()) }
        })
    });
}

/// `RETRY_PROFILE=<service_fn|tower|meshgate|meshgate_always_record|by_hand|service_fn_headers|meshgate_headers>:<n>` runs `n` calls of one
/// variant and exits, for instruction counts under callgrind: the
/// difference between two `n` divided by their difference is the cost of one
/// call, without criterion's noise.
/// `meshgate:0` prints the size of meshgate's response future instead.
fn profile(spec: &str) {
    let (variant, n) = spec.split_once(':').expect("variant:n");
    let n: u64 = n.parse().expect("n");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    rt.block_on(async {
        match variant {
            "service_fn" => {
                let mut s = service_fn(ok::<Empty<Bytes>>);
                for _ in 0..n {
                    black_box(s.call(Request::new(Empty::new())).await.unwrap());
                }
            }
            "tower" => {
                let policy = TowerPolicy {
                    attempts_left: 2,
                    budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
                };
                let mut s = TowerRetryLayer::new(policy).layer(service_fn(ok::<Empty<Bytes>>));
                for _ in 0..n {
                    black_box(s.call(Request::new(Empty::new())).await.unwrap());
                }
            }
            "by_hand" => {
                let budget = Arc::new(RetryBudget::default());
                let mut s = service_fn(ok::<Empty<Bytes>>);
                for _ in 0..n {
                    black_box(
                        by_hand(&budget, &mut s, Request::new(Empty::new()))
                            .await
                            .unwrap(),
                    );
                }
            }
            "meshgate_headers" | "service_fn_headers" => {
                // A request with a few headers, as a browser or a client
                // library sends them.
                let request = || {
                    Request::builder()
                        .uri("http://api.example.com/v1/items?page=2")
                        .header("host", "api.example.com")
                        .header("user-agent", "bench/1.0")
                        .header("accept", "application/json")
                        .header("x-request-id", "3f2a9c1e")
                        .body(Empty::<Bytes>::new())
                        .unwrap()
                };
                if variant == "service_fn_headers" {
                    let mut s = service_fn(ok::<Empty<Bytes>>);
                    for _ in 0..n {
                        black_box(s.call(request()).await.unwrap());
                    }
                } else {
                    let mut s = RetryLayer::new().layer(service_fn(ok));
                    for _ in 0..n {
                        black_box(s.call(request()).await.unwrap());
                    }
                }
            }
            "meshgate_always_record" => {
                let mut s = RetryLayer::new()
                    .always_record_attempts(true)
                    .layer(service_fn(ok));
                for _ in 0..n {
                    black_box(s.call(Request::new(Empty::<Bytes>::new())).await.unwrap());
                }
            }
            _ => {
                let mut s = RetryLayer::new().layer(service_fn(ok));
                if n == 0 {
                    let fut = s.call(Request::new(Empty::<Bytes>::new()));
                    eprintln!("future: {} bytes", std::mem::size_of_val(&fut));
                }
                for _ in 0..n {
                    black_box(s.call(Request::new(Empty::<Bytes>::new())).await.unwrap());
                }
            }
        }
    });
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(spec) = std::env::var("RETRY_PROFILE") {
        profile(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
