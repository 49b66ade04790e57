//! Behaviour of `meshgate::timeout` through its public API, with paused time.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use meshgate::error::{Rejection, RejectionKind};
use meshgate::timeout::{Deadline, TimeoutLayer};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

mod real_http;

/// An inner service that waits `delay`, then answers 200 with the budget
/// headers it saw recorded in `seen`.
fn recording(
    delay: Duration,
    seen: Arc<std::sync::Mutex<Vec<HeaderMap>>>,
) -> impl tower::Service<
    Request<()>,
    Response = Response<String>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<String>, Infallible>> + Send,
> + Clone {
    service_fn(move |request: Request<()>| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(request.headers().clone());
            tokio::time::sleep(delay).await;
            Ok::<_, Infallible>(Response::new("done".to_owned()))
        }
    })
}

fn header(map: &HeaderMap, name: &str) -> String {
    map.get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

async fn json_body<B>(response: Response<B>) -> serde_json::Value
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_slow_inner_service_gets_a_504_problem_with_the_rejection() {
    let seen = Arc::default();
    let service = TimeoutLayer::new(Duration::from_millis(250))
        .layer(recording(Duration::from_secs(5), seen));
    let start = Instant::now();
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let rejection = response.extensions().get::<Rejection>().unwrap();
    assert_eq!(rejection.kind(), RejectionKind::Timeout);
    let json = json_body(response).await;
    assert_eq!(json["status"], 504);
    assert_eq!(json["title"], "Gateway Timeout");
    assert_eq!(json["type"], "about:blank");
    assert!(json["detail"].as_str().unwrap().contains("250 ms"));
}

#[tokio::test(start_paused = true)]
async fn a_fast_inner_service_passes_through_untouched() {
    let seen = Arc::default();
    let service = TimeoutLayer::new(Duration::from_secs(1))
        .layer(recording(Duration::from_millis(999), seen));
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.extensions().get::<Rejection>().is_none());
    assert!(!response.body().is_local());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"done");
}

#[tokio::test(start_paused = true)]
async fn the_inner_future_is_dropped_on_timeout() {
    struct Guard(Arc<AtomicBool>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let service =
        TimeoutLayer::new(Duration::from_millis(10)).layer(service_fn(move |_: Request<()>| {
            let guard = Guard(flag.clone());
            async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                drop(guard);
                Ok::<_, Infallible>(Response::new(()))
            }
        }));
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn the_propagated_budget_decreases_across_two_stacked_hops() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let innermost = recording(Duration::ZERO, seen.clone());
    // hop 1: a 5 s budget; between the hops 1.2 s pass; hop 2: its own 30 s.
    let seen_between = seen.clone();
    let service = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(5)))
        .service(service_fn(move |request: Request<()>| {
            let seen = seen_between.clone();
            let hop2 = TimeoutLayer::new(Duration::from_secs(30)).layer(innermost.clone());
            async move {
                seen.lock().unwrap().push(request.headers().clone());
                tokio::time::sleep(Duration::from_millis(1200)).await;
                hop2.oneshot(request).await
            }
        }));
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = seen.lock().unwrap();
    assert_eq!(header(&seen[0], "x-request-timeout-ms"), "5000");
    assert_eq!(header(&seen[1], "x-request-timeout-ms"), "3800");
}

#[tokio::test(start_paused = true)]
async fn a_header_budget_from_another_process_counts_from_arrival() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let service = TimeoutLayer::new(Duration::from_secs(30))
        .layer(recording(Duration::from_millis(10), seen.clone()));
    let request = Request::builder()
        .header("x-request-timeout-ms", "4500")
        .body(())
        .unwrap();
    assert_eq!(service.oneshot(request).await.unwrap().status(), 200);
    assert_eq!(
        header(&seen.lock().unwrap()[0], "x-request-timeout-ms"),
        "4500"
    );
}

#[tokio::test(start_paused = true)]
async fn an_incoming_grpc_timeout_of_1m_caps_a_30s_layer() {
    // In gRPC, `m` is milliseconds: `1m` is one millisecond.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let service = TimeoutLayer::new(Duration::from_secs(30))
        .layer(recording(Duration::from_millis(50), seen.clone()));
    let request = Request::builder()
        .header("grpc-timeout", "1m")
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let start = Instant::now();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(1));
    // A gRPC caller gets DEADLINE_EXCEEDED the gRPC way.
    assert_grpc_deadline_exceeded(&response);
    let seen = seen.lock().unwrap();
    assert_eq!(header(&seen[0], "x-request-timeout-ms"), "1");
    assert_eq!(header(&seen[0], "grpc-timeout"), "1000000n");
}

#[tokio::test(start_paused = true)]
async fn grpc_headers_are_found_among_few_and_among_many_headers() {
    // Small header maps are scanned, large ones looked up: both find the
    // budget and the gRPC content type, wherever they are.
    for extra in [0, 3, 7, 20] {
        for grpc_by in ["grpc-timeout", "content-type"] {
            let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
            let service = TimeoutLayer::new(Duration::from_secs(30))
                .layer(recording(Duration::from_secs(5), seen.clone()));
            let mut builder = Request::builder();
            for i in 0..extra {
                builder = builder.header(format!("x-extra-{i}"), "1");
            }
            let request = match grpc_by {
                "grpc-timeout" => builder.header("grpc-timeout", "2S"),
                _ => builder
                    .header("content-type", "application/grpc+proto")
                    .header("x-request-timeout-ms", "2000"),
            }
            .body(())
            .unwrap();
            let start = Instant::now();
            let response = service.oneshot(request).await.unwrap();
            assert_eq!(start.elapsed(), Duration::from_secs(2), "{extra} {grpc_by}");
            assert_grpc_deadline_exceeded(&response);
            let seen = seen.lock().unwrap();
            assert_eq!(header(&seen[0], "x-request-timeout-ms"), "2000");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_incoming_grpc_timeout_longer_than_the_layer_does_not_extend_it() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let service = TimeoutLayer::new(Duration::from_secs(30))
        .layer(recording(Duration::from_secs(40), seen.clone()));
    let request = Request::builder()
        .header("grpc-timeout", "1M")
        .body(())
        .unwrap();
    let start = Instant::now();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(30));
    assert_grpc_deadline_exceeded(&response);
    assert_eq!(
        header(&seen.lock().unwrap()[0], "grpc-timeout"),
        "30000000u"
    );
}

fn assert_grpc_deadline_exceeded<B>(response: &Response<B>) {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert_eq!(response.headers()["grpc-status"], "4");
    assert!(response.headers().contains_key("grpc-message"));
    let kind = response.extensions().get::<Rejection>().unwrap().kind();
    assert!(matches!(
        kind,
        RejectionKind::Timeout | RejectionKind::DeadlineExceeded
    ));
}

#[tokio::test(start_paused = true)]
async fn grpc_requests_get_a_grpc_status_not_a_problem_document() {
    let seen = Arc::default();
    let service = TimeoutLayer::new(Duration::from_millis(100))
        .layer(recording(Duration::from_secs(1), seen));
    let slow = Request::builder()
        .header("content-type", "application/grpc+proto")
        .body(())
        .unwrap();
    let response = service.clone().oneshot(slow).await.unwrap();
    assert_grpc_deadline_exceeded(&response);
    assert_eq!(
        response.headers()["grpc-message"],
        "the request did not complete within its 100 ms budget"
    );
    let spent = Request::builder()
        .header("content-type", "application/grpc")
        .header("grpc-timeout", "0n")
        .body(())
        .unwrap();
    let response = service.clone().oneshot(spent).await.unwrap();
    assert_grpc_deadline_exceeded(&response);
    // grpc-web has its own framing: it keeps the problem document.
    let web = Request::builder()
        .header("content-type", "application/grpc-web")
        .body(())
        .unwrap();
    let response = service.oneshot(web).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_never_calls_the_inner_service() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let service =
        TimeoutLayer::new(Duration::from_secs(30)).layer(service_fn(move |_: Request<()>| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(http_body_util::Empty::<Bytes>::new())) }
        }));

    let mut past = Request::new(());
    past.extensions_mut()
        .insert(Deadline::at(Instant::now() - Duration::from_millis(1)));
    let requests = [
        Request::builder()
            .header("x-request-timeout-ms", "0")
            .body(())
            .unwrap(),
        past,
    ];
    for request in requests {
        let start = Instant::now();
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        let kind = response.extensions().get::<Rejection>().unwrap().kind();
        assert_eq!(kind, RejectionKind::DeadlineExceeded);
        assert_eq!(json_body(response).await["status"], 504);
    }
    // A spent gRPC budget is refused the gRPC way, also without a call.
    let grpc = Request::builder()
        .header("grpc-timeout", "0S")
        .body(())
        .unwrap();
    let start = Instant::now();
    let response = service.clone().oneshot(grpc).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_grpc_deadline_exceeded(&response);
    assert_eq!(
        response.extensions().get::<Rejection>().unwrap().kind(),
        RejectionKind::DeadlineExceeded
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn malformed_budget_headers_are_ignored_and_overwritten() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let service =
        TimeoutLayer::new(Duration::from_secs(2)).layer(recording(Duration::ZERO, seen.clone()));
    for (name, value) in [
        ("x-request-timeout-ms", "soon"),
        ("x-request-timeout-ms", "-5"),
        ("x-request-timeout-ms", "1e3"),
        ("grpc-timeout", "5x"),
        ("grpc-timeout", "123456789S"),
    ] {
        let request = Request::builder().header(name, value).body(()).unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200, "{name}: {value}");
    }
    let seen = seen.lock().unwrap();
    for headers in seen.iter() {
        assert_eq!(header(headers, "x-request-timeout-ms"), "2000");
    }
    // The malformed grpc-timeout values were replaced, not passed on.
    assert_eq!(header(&seen[3], "grpc-timeout"), "2000000u");
    assert_eq!(header(&seen[4], "grpc-timeout"), "2000000u");
}

#[tokio::test(start_paused = true)]
async fn a_custom_budget_header_and_the_deadline_in_process() {
    let service = TimeoutLayer::new(Duration::from_secs(10))
        .budget_header(http::HeaderName::from_static("x-budget"))
        .layer(service_fn(|request: Request<()>| async move {
            // The exact deadline, not the default header the caller sent.
            let deadline = Deadline::of(&request, Instant::now()).unwrap();
            let seen = format!(
                "{} {} {}",
                deadline.remaining().as_millis(),
                header(request.headers(), "x-budget"),
                header(request.headers(), "x-request-timeout-ms"),
            );
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(Bytes::from(seen))))
        }));
    let request = Request::builder()
        .header("x-budget", "700")
        .header("x-request-timeout-ms", "5")
        .body(())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    // The default header is not read when another is configured.
    assert_eq!(&body[..], b"700 700 5");
}

#[tokio::test(start_paused = true)]
async fn layers_further_in_find_the_deadline_without_an_extension() {
    let service = TimeoutLayer::new(Duration::from_secs(2)).layer(service_fn(
        |request: Request<()>| async move {
            // Nothing is stored in the request: no allocation for it.
            assert!(request.extensions().get::<Deadline>().is_none());
            let called_at = Instant::now();
            // Known in the call...
            let in_call = Deadline::of(&request, called_at).unwrap();
            // ...and in the response future, after time has passed, while
            // the header alone would count from the new instant.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let later = Deadline::of(&request, Instant::now()).unwrap();
            assert_eq!(later, in_call);
            assert_eq!(Deadline::current(), Some(in_call));
            let seen = format!("{}", later.remaining().as_millis());
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(Bytes::from(seen))))
        },
    ));
    let response = service.oneshot(Request::new(())).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"1500");
    // Outside the layer's call and future, nothing is current.
    assert_eq!(Deadline::current(), None);
}

#[tokio::test(start_paused = true)]
async fn without_a_timeout_layer_the_deadline_comes_from_the_budget_headers() {
    let start = Instant::now();
    let request = Request::builder()
        .header("x-request-timeout-ms", "800")
        .header("grpc-timeout", "500m")
        .body(())
        .unwrap();
    let deadline = Deadline::of(&request, start).unwrap();
    assert_eq!(deadline.instant(), start + Duration::from_millis(500));
    let request = Request::builder()
        .header("x-request-timeout-ms", "800")
        .body(())
        .unwrap();
    let deadline = Deadline::of(&request, start).unwrap();
    assert_eq!(deadline.instant(), start + Duration::from_millis(800));
    // A caller's extension wins over the headers.
    let mut request = request;
    let inserted = Deadline::at(start + Duration::from_millis(100));
    request.extensions_mut().insert(inserted);
    assert_eq!(Deadline::of(&request, start), Some(inserted));
    // Malformed or missing: no deadline.
    let request = Request::builder()
        .header("x-request-timeout-ms", "soon")
        .body(())
        .unwrap();
    assert_eq!(Deadline::of(&request, start), None);
    assert_eq!(Deadline::of(&Request::new(()), start), None);
}

/// An inner service that answers after as many seconds as its path says
/// (`/3`), or never (`/hang`).
fn by_path() -> impl tower::Service<
    Request<()>,
    Response = Response<String>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<String>, Infallible>> + Send,
> + Clone {
    service_fn(|request: Request<()>| async move {
        match request.uri().path()[1..].parse::<u64>() {
            Ok(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
            Err(_) => std::future::pending().await,
        }
        Ok::<_, Infallible>(Response::new("done".to_owned()))
    })
}

fn get(path: &str) -> Request<()> {
    Request::builder().uri(path).body(()).unwrap()
}

/// Calls `service` itself (not a clone) and says what came back, and when.
async fn call_timed<S, B>(service: &mut S, path: &str) -> (StatusCode, Duration)
where
    S: tower::Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    let start = Instant::now();
    let response = service
        .ready()
        .await
        .unwrap()
        .call(get(path))
        .await
        .unwrap();
    (response.status(), start.elapsed())
}

/// What a response future gave, and when, counted from `start`.
async fn timed<F, B>(future: F, start: Instant) -> (StatusCode, Duration)
where
    F: Future<Output = Result<Response<B>, Infallible>>,
{
    (future.await.unwrap().status(), start.elapsed())
}

/// One service serving requests one after another, as a keep-alive
/// connection's does, times each from its own start: a request that hangs
/// gets its 504 after its whole budget, also when the sleep it reuses was
/// armed for an earlier request's deadline, which passes first.
#[tokio::test(start_paused = true)]
async fn requests_one_after_another_are_each_timed_from_their_own_start() {
    let mut service = TimeoutLayer::new(Duration::from_secs(10)).layer(by_path());
    let start = Instant::now();
    for (path, seconds) in [("/1", 1), ("/3", 3), ("/2", 2)] {
        let answer = call_timed(&mut service, path).await;
        assert_eq!(answer, (StatusCode::OK, Duration::from_secs(seconds)));
    }
    // At 6 s; the second request's deadline, 11 s, passes while this one
    // runs, and this one's is 16 s.
    for _ in 0..2 {
        let answer = call_timed(&mut service, "/hang").await;
        assert_eq!(
            answer,
            (StatusCode::GATEWAY_TIMEOUT, Duration::from_secs(10))
        );
    }
    assert_eq!(start.elapsed(), Duration::from_secs(26));
    let answer = call_timed(&mut service, "/9").await;
    assert_eq!(answer, (StatusCode::OK, Duration::from_secs(9)));
}

/// Requests in flight together on one service are each timed: the one that
/// finds the reused sleep taken has one of its own.
#[tokio::test(start_paused = true)]
async fn requests_in_flight_together_are_each_timed() {
    let mut service = TimeoutLayer::new(Duration::from_secs(10)).layer(by_path());
    assert_eq!(call_timed(&mut service, "/1").await.0, StatusCode::OK);
    let start = Instant::now();
    let first = service.ready().await.unwrap().call(get("/hang"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = service.ready().await.unwrap().call(get("/hang"));
    let third = service.ready().await.unwrap().call(get("/4"));
    let (first, second, third) = tokio::join!(
        timed(first, start),
        timed(second, start),
        timed(third, start)
    );
    assert_eq!(
        first,
        (StatusCode::GATEWAY_TIMEOUT, Duration::from_secs(10))
    );
    assert_eq!(
        second,
        (StatusCode::GATEWAY_TIMEOUT, Duration::from_secs(12))
    );
    assert_eq!(third, (StatusCode::OK, Duration::from_secs(6)));
    // All done: the next request is timed as ever.
    let answer = call_timed(&mut service, "/hang").await;
    assert_eq!(
        answer,
        (StatusCode::GATEWAY_TIMEOUT, Duration::from_secs(10))
    );
}
