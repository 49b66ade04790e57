//! Behaviour of `meshgate::fault` through its public API: rates under a
//! seeded sequence, delays under paused time, aborts, header opt-in.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{HeaderName, Request, Response, StatusCode};
use http_body_util::BodyExt;
use meshgate::fault::{FaultLayer, InjectedFault};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

#[derive(Clone, Default)]
struct Calls(Arc<AtomicUsize>);

impl Calls {
    fn service(
        &self,
    ) -> impl Service<
        Request<()>,
        Response = Response<String>,
        Error = Infallible,
        Future = impl Future<Output = Result<Response<String>, Infallible>> + Send,
    > + Clone
    + Send {
        let calls = self.0.clone();
        service_fn(move |_: Request<()>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(String::from("upstream"))) }
        })
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

const N: usize = 10_000;

/// Asserts `count` out of `N` is within ±2 percentage points of `percent`.
fn assert_rate(count: usize, percent: f64) {
    let rate = count as f64 * 100.0 / N as f64;
    assert!(
        (rate - percent).abs() <= 2.0,
        "rate {rate}% is not within 2 points of {percent}%"
    );
}

#[tokio::test(start_paused = true)]
async fn abort_and_delay_rates_hold_over_ten_thousand_seeded_requests() {
    let calls = Calls::default();
    let delay = Duration::from_millis(150);
    let mut service = FaultLayer::new()
        .delay(10.0, delay)
        .abort(25.0, StatusCode::SERVICE_UNAVAILABLE)
        .seed(42)
        .layer(calls.service());
    let (mut aborted, mut delayed, mut both) = (0, 0, 0);
    for _ in 0..N {
        let start = Instant::now();
        let response = service
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        let elapsed = start.elapsed();
        let fault = response.extensions().get::<InjectedFault>().copied();
        let was_delayed = elapsed >= delay;
        let was_aborted = response.status() == StatusCode::SERVICE_UNAVAILABLE;
        // What the extension says is what the caller saw.
        assert_eq!(fault.and_then(|f| f.delayed).is_some(), was_delayed);
        assert_eq!(fault.and_then(|f| f.aborted).is_some(), was_aborted);
        if was_delayed {
            // Exactly the configured delay, under paused time.
            assert!(elapsed < delay + Duration::from_millis(1), "{elapsed:?}");
        }
        aborted += usize::from(was_aborted);
        delayed += usize::from(was_delayed);
        both += usize::from(was_aborted && was_delayed);
    }
    assert_rate(aborted, 25.0);
    assert_rate(delayed, 10.0);
    // Independent draws: about 2.5 % are both.
    assert_rate(both, 2.5);
    // Aborted requests never reach the upstream.
    assert_eq!(calls.count(), N - aborted);
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_faults_the_same_requests() {
    async fn pattern(seed: u64) -> Vec<bool> {
        let calls = Calls::default();
        let mut service = FaultLayer::new()
            .abort(50.0, StatusCode::BAD_GATEWAY)
            .seed(seed)
            .layer(calls.service());
        let mut out = Vec::new();
        for _ in 0..200 {
            let response = service
                .ready()
                .await
                .unwrap()
                .call(Request::new(()))
                .await
                .unwrap();
            out.push(response.status() == StatusCode::BAD_GATEWAY);
        }
        out
    }
    assert_eq!(pattern(7).await, pattern(7).await);
    assert_ne!(pattern(7).await, pattern(8).await);
}

#[tokio::test(start_paused = true)]
async fn abort_answers_problem_json_with_the_configured_status() {
    let calls = Calls::default();
    let service = FaultLayer::new()
        .abort(100.0, StatusCode::from_u16(418).unwrap())
        .layer(calls.service());
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), 418);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["status"], 418);
    assert_eq!(json["detail"], "fault injected");
    assert_eq!(calls.count(), 0);
}

#[tokio::test(start_paused = true)]
async fn delayed_requests_reach_the_upstream_only_after_the_delay() {
    let calls = Calls::default();
    let service = FaultLayer::new()
        .delay(100.0, Duration::from_secs(2))
        .layer(calls.service());
    let mut call = Box::pin(service.oneshot(Request::new(())));
    // Not called before the delay has passed.
    tokio::select! {
        _ = &mut call => panic!("answered before the delay"),
        _ = tokio::time::sleep(Duration::from_millis(1999)) => {}
    }
    assert_eq!(calls.count(), 0);
    let response = call.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.count(), 1);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"upstream");
}

#[tokio::test(start_paused = true)]
async fn only_requests_with_the_header_are_faulted() {
    let calls = Calls::default();
    let mut service = FaultLayer::new()
        .abort(100.0, StatusCode::SERVICE_UNAVAILABLE)
        .only_with_header(HeaderName::from_static("x-fault"))
        .layer(calls.service());
    for _ in 0..10 {
        let plain = service
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        assert_eq!(plain.status(), StatusCode::OK);
        assert!(plain.extensions().get::<InjectedFault>().is_none());
        let marked = Request::builder().header("x-fault", "").body(()).unwrap();
        let marked = service.ready().await.unwrap().call(marked).await.unwrap();
        assert_eq!(marked.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(calls.count(), 10);
}

#[tokio::test]
async fn out_of_range_percentages_are_clamped() {
    let calls = Calls::default();
    let mut service = FaultLayer::new()
        .abort(f64::NAN, StatusCode::SERVICE_UNAVAILABLE)
        .delay(-5.0, Duration::from_secs(3600))
        .layer(calls.service());
    for _ in 0..100 {
        let response = service
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let mut always = FaultLayer::new()
        .abort(250.0, StatusCode::SERVICE_UNAVAILABLE)
        .layer(calls.service());
    for _ in 0..100 {
        let response = always
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(calls.count(), 100);
}

#[cfg(feature = "config")]
#[test]
fn built_from_the_config_section() {
    let yaml = "delay: { percent: 5, duration: 2s }\nabort: { percent: 1.5, status: 503 }\nonly_with_header: x-chaos\n";
    let config: meshgate::config::Fault = serde_saphyr::from_str(yaml).unwrap();
    let layer = FaultLayer::from_config(&config).unwrap();
    let text = format!("{layer:?}");
    assert!(text.contains("x-chaos"), "{text}");
    assert!(text.contains("503"), "{text}");
    let mut bad = config.clone();
    bad.abort.as_mut().unwrap().status = 302;
    assert_eq!(
        FaultLayer::from_config(&bad).unwrap_err().to_string(),
        "fault.abort.status 302 is not a 4xx or 5xx status"
    );
}
