//! Behaviour of `meshgate::circuit_breaker` through its public API, tick by
//! tick under paused time.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use meshgate::circuit_breaker::{BreakerState, CircuitBreakerLayer, StateChange};
use meshgate::error::{Rejection, RejectionKind};
use tower::{Layer, Service, ServiceExt, service_fn};

/// An upstream whose status can be changed and whose calls are counted.
#[derive(Clone, Default)]
struct Upstream {
    status: Arc<AtomicU16>,
    calls: Arc<AtomicUsize>,
}

impl Upstream {
    fn answering(status: u16) -> Self {
        let upstream = Self::default();
        upstream.set(status);
        upstream
    }

    fn set(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn service(
        &self,
    ) -> impl Service<
        Request<()>,
        Response = Response<String>,
        Error = Infallible,
        Future = impl Future<Output = Result<Response<String>, Infallible>> + Send,
    > + Clone
    + Send {
        let this = self.clone();
        service_fn(move |_: Request<()>| {
            this.calls.fetch_add(1, Ordering::SeqCst);
            let status = this.status.load(Ordering::SeqCst);
            async move {
                let mut response = Response::new(String::new());
                *response.status_mut() = StatusCode::from_u16(status).unwrap();
                Ok::<_, Infallible>(response)
            }
        })
    }
}

async fn status<S, B>(service: &S) -> StatusCode
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible> + Clone,
{
    service
        .clone()
        .oneshot(Request::new(()))
        .await
        .unwrap()
        .status()
}

fn recorder() -> (
    Arc<Mutex<Vec<StateChange>>>,
    impl Fn(&StateChange) + Send + Sync,
) {
    let changes = Arc::new(Mutex::new(Vec::new()));
    let sink = changes.clone();
    (changes, move |c: &StateChange| {
        sink.lock().unwrap().push(c.clone())
    })
}

#[tokio::test(start_paused = true)]
async fn trips_after_five_consecutive_5xx_and_answers_503_without_calling() {
    let upstream = Upstream::answering(500);
    let layer = CircuitBreakerLayer::new();
    let service = layer.layer(upstream.service());
    for _ in 0..5 {
        assert_eq!(status(&service).await, 500);
    }
    assert_eq!(upstream.calls(), 5);

    let response = service.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.calls(), 5, "the inner service is not called");
    assert_eq!(response.headers()["retry-after"], "30");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let kind = response.extensions().get::<Rejection>().unwrap().kind();
    assert_eq!(kind, RejectionKind::CircuitOpen);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["status"], 503);

    // Retry-After counts down with the time left open, rounded up.
    tokio::time::advance(Duration::from_millis(20_500)).await;
    let response = service.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.headers()["retry-after"], "10");
    let snapshot = &layer.snapshot()[0];
    assert_eq!(snapshot.state, BreakerState::Open);
    assert_eq!(snapshot.trips, 1);
    assert_eq!(snapshot.open_remaining, Some(Duration::from_millis(9_500)));
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_count_and_client_errors_do_not_count() {
    let upstream = Upstream::answering(503);
    let service = CircuitBreakerLayer::new().layer(upstream.service());
    for _ in 0..4 {
        assert_eq!(status(&service).await, 503);
    }
    upstream.set(200);
    assert_eq!(status(&service).await, 200);
    upstream.set(404);
    for _ in 0..10 {
        assert_eq!(status(&service).await, 404);
    }
    upstream.set(502);
    for _ in 0..4 {
        assert_eq!(status(&service).await, 502);
    }
    assert_eq!(upstream.calls(), 19, "never tripped");
    assert_eq!(status(&service).await, 502);
    assert_eq!(status(&service).await, 503, "the fifth in a row tripped it");
    assert_eq!(upstream.calls(), 20);
}

#[tokio::test(start_paused = true)]
async fn half_opens_after_the_open_time_and_closes_on_probe_success() {
    let (changes, observer) = recorder();
    let upstream = Upstream::answering(500);
    let layer = CircuitBreakerLayer::new()
        .open_for(Duration::from_secs(10))
        .on_state_change(observer);
    let service = layer.layer(upstream.service());
    for _ in 0..5 {
        status(&service).await;
    }
    tokio::time::advance(Duration::from_millis(9_999)).await;
    assert_eq!(status(&service).await, 503);
    assert_eq!(upstream.calls(), 5);

    tokio::time::advance(Duration::from_millis(1)).await;
    upstream.set(200);
    assert_eq!(status(&service).await, 200, "the probe goes through");
    assert_eq!(layer.snapshot()[0].state, BreakerState::Closed);
    assert_eq!(layer.snapshot()[0].trips, 0);
    assert_eq!(status(&service).await, 200);

    let changes = changes.lock().unwrap();
    let seen: Vec<_> = changes.iter().map(|c| (c.from, c.to, c.open_for)).collect();
    assert_eq!(
        seen,
        [
            (
                BreakerState::Closed,
                BreakerState::Open,
                Some(Duration::from_secs(10))
            ),
            (BreakerState::Open, BreakerState::HalfOpen, None),
            (BreakerState::HalfOpen, BreakerState::Closed, None),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_probe_failure_reopens_for_longer_up_to_the_cap() {
    let upstream = Upstream::answering(500);
    let layer = CircuitBreakerLayer::new()
        .open_for(Duration::from_secs(10))
        .max_open_for(Duration::from_secs(25));
    let service = layer.layer(upstream.service());
    for _ in 0..5 {
        status(&service).await;
    }
    // Trip 1: 10 s. The probe fails: trip 2, 20 s.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(status(&service).await, 500);
    let response = service.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "20");
    tokio::time::advance(Duration::from_millis(19_999)).await;
    assert_eq!(status(&service).await, 503);
    // Trip 3 would be 30 s; the cap keeps it at 25 s.
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(status(&service).await, 500);
    let snapshot = &layer.snapshot()[0];
    assert_eq!(snapshot.trips, 3);
    assert_eq!(snapshot.open_remaining, Some(Duration::from_secs(25)));
    assert_eq!(upstream.calls(), 7);
}

#[tokio::test(start_paused = true)]
async fn concurrent_requests_in_half_open_get_exactly_one_probe_through() {
    let calls = Arc::new(AtomicUsize::new(0));
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let gate = Arc::new(tokio::sync::Notify::new());
    let (counter, fail, wait) = (calls.clone(), failing.clone(), gate.clone());
    let inner = service_fn(move |_: Request<()>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let (fail, wait) = (fail.clone(), wait.clone());
        async move {
            let mut response = Response::new(());
            if fail.load(Ordering::SeqCst) {
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            } else {
                wait.notified().await;
            }
            Ok::<_, Infallible>(response)
        }
    });
    let layer = CircuitBreakerLayer::new().open_for(Duration::from_secs(1));
    let service = layer.layer(inner);
    for _ in 0..5 {
        status(&service).await;
    }
    failing.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(1)).await;

    let probe = tokio::spawn(service.clone().oneshot(Request::new(())));
    tokio::task::yield_now().await;
    let mut others = Vec::new();
    for _ in 0..8 {
        others.push(tokio::spawn(service.clone().oneshot(Request::new(()))));
    }
    for other in others {
        assert_eq!(other.await.unwrap().unwrap().status(), 503);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        6,
        "five failures and one probe"
    );
    assert_eq!(layer.snapshot()[0].state, BreakerState::HalfOpen);
    gate.notify_one();
    assert_eq!(probe.await.unwrap().unwrap().status(), 200);
    assert_eq!(layer.snapshot()[0].state, BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_gives_its_slot_back() {
    let upstream = Upstream::answering(500);
    let slow = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (inner_upstream, is_slow) = (upstream.service(), slow.clone());
    let inner = service_fn(move |request: Request<()>| {
        let call = inner_upstream.clone().oneshot(request);
        let is_slow = is_slow.load(Ordering::SeqCst);
        async move {
            if is_slow {
                std::future::pending::<()>().await;
            }
            call.await
        }
    });
    let service = CircuitBreakerLayer::new()
        .open_for(Duration::from_secs(1))
        .layer(inner);
    for _ in 0..5 {
        status(&service).await;
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    slow.store(true, Ordering::SeqCst);
    let cancelled = tokio::time::timeout(
        Duration::from_millis(10),
        service.clone().oneshot(Request::new(())),
    )
    .await;
    assert!(cancelled.is_err(), "the probe was cancelled");
    slow.store(false, Ordering::SeqCst);
    upstream.set(200);
    assert_eq!(status(&service).await, 200, "a new probe may go");
}

#[tokio::test(start_paused = true)]
async fn trips_on_the_failure_rate_over_the_window() {
    let upstream = Upstream::default();
    let layer = CircuitBreakerLayer::new()
        .consecutive_failures(100)
        .failure_rate(0.5, Duration::from_secs(10), 10);
    let service = layer.layer(upstream.service());
    // Alternating, so never two failures in a row; nine calls: under the
    // minimum volume.
    for i in 0..9 {
        upstream.set(if i % 2 == 0 { 200 } else { 500 });
        status(&service).await;
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    assert_eq!(layer.snapshot()[0].state, BreakerState::Closed);
    upstream.set(500);
    assert_eq!(status(&service).await, 500);
    // 10 calls, 5 failures: 50 %.
    assert_eq!(layer.snapshot()[0].state, BreakerState::Open);

    // A failure share under the threshold never trips, however long it runs.
    let upstream = Upstream::default();
    let layer = CircuitBreakerLayer::new()
        .consecutive_failures(100)
        .failure_rate(0.5, Duration::from_secs(10), 4);
    let service = layer.layer(upstream.service());
    for i in 0..20 {
        upstream.set(if i % 4 == 0 { 500 } else { 200 });
        status(&service).await;
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(layer.snapshot()[0].state, BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_count_as_failures_when_configured() {
    let inner = service_fn(|_: Request<()>| async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok::<_, Infallible>(Response::new(()))
    });
    let layer = CircuitBreakerLayer::new()
        .consecutive_failures(2)
        .slow_call(Duration::from_millis(250));
    let service = layer.layer(inner);
    assert_eq!(status(&service).await, 200);
    assert_eq!(status(&service).await, 200);
    assert_eq!(status(&service).await, 503);
}

#[tokio::test(start_paused = true)]
async fn service_errors_count_as_failures() {
    let inner = service_fn(|_: Request<()>| async {
        Err::<Response<()>, _>(std::io::Error::other("connection reset"))
    });
    let service = CircuitBreakerLayer::new()
        .consecutive_failures(1)
        .layer(inner);
    assert!(service.clone().oneshot(Request::new(())).await.is_err());
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), 503);
}

#[tokio::test(start_paused = true)]
async fn keyed_breakers_are_independent_and_bounded() {
    let upstream = Upstream::answering(500);
    let layer = CircuitBreakerLayer::new()
        .consecutive_failures(2)
        .max_keys(3)
        .key_by(|parts| {
            parts
                .headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        });
    let service = layer.layer(upstream.service());
    let call = |host: &'static str| {
        let service = service.clone();
        async move {
            let request = Request::builder().header("host", host).body(()).unwrap();
            service.oneshot(request).await.unwrap().status()
        }
    };
    assert_eq!(call("a").await, 500);
    assert_eq!(call("a").await, 500);
    assert_eq!(call("a").await, 503, "a is open");
    assert_eq!(call("b").await, 500, "b has its own breaker");

    // A flood of fresh keys stays within the bound and keeps a's open breaker.
    for i in 0..1000 {
        let host: &'static str = Box::leak(format!("flood-{i}").into_boxed_str());
        call(host).await;
    }
    let snapshot = layer.snapshot();
    assert!(snapshot.len() <= 3, "{}", snapshot.len());
    assert!(
        snapshot
            .iter()
            .any(|b| b.key.as_deref() == Some("a") && b.state == BreakerState::Open)
    );
    assert_eq!(call("a").await, 503);

    // Requests without a key go through unguarded.
    let calls = upstream.calls();
    for _ in 0..5 {
        assert_eq!(status(&service).await, 500);
    }
    assert_eq!(upstream.calls(), calls + 5);
}

#[tokio::test(start_paused = true)]
async fn stale_outcomes_from_before_a_trip_are_ignored() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let (wait, counter) = (gate.clone(), calls.clone());
    let inner = service_fn(move |_: Request<()>| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let wait = wait.clone();
        async move {
            let mut response = Response::new(());
            if n == 0 {
                // The first call is slow and ends in success after the trip.
                wait.notified().await;
            } else {
                *response.status_mut() = StatusCode::BAD_GATEWAY;
            }
            Ok::<_, Infallible>(response)
        }
    });
    let layer = CircuitBreakerLayer::new()
        .consecutive_failures(2)
        .open_for(Duration::from_secs(5));
    let service = layer.layer(inner);
    let slow = tokio::spawn(service.clone().oneshot(Request::new(())));
    tokio::task::yield_now().await;
    assert_eq!(status(&service).await, 502);
    assert_eq!(status(&service).await, 502);
    assert_eq!(layer.snapshot()[0].state, BreakerState::Open);
    gate.notify_one();
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
    assert_eq!(
        layer.snapshot()[0].state,
        BreakerState::Open,
        "not closed by a stale success"
    );
}

#[tokio::test(start_paused = true)]
async fn grpc_callers_get_unavailable_while_open() {
    let upstream = Upstream::answering(503);
    let service = CircuitBreakerLayer::new()
        .consecutive_failures(1)
        .layer(upstream.service());
    assert_eq!(status(&service).await, 503);
    let request = Request::builder()
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "14");
    assert!(response.headers().contains_key("retry-after"));
    let kind = response.extensions().get::<Rejection>().unwrap().kind();
    assert_eq!(kind, RejectionKind::CircuitOpen);
    assert_eq!(upstream.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn works_inside_an_axum_router() {
    use axum::Router;
    use axum::routing::get;

    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app: Router = Router::new()
        .route(
            "/flaky",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { StatusCode::INTERNAL_SERVER_ERROR }
            }),
        )
        .route_layer(CircuitBreakerLayer::new().consecutive_failures(3));
    for _ in 0..3 {
        let response = app
            .clone()
            .oneshot(
                Request::get("/flaky")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
    }
    let response = app
        .oneshot(
            Request::get("/flaky")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}
