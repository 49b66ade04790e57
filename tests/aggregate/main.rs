//! Behaviour of `meshgate::aggregate` through its public API, with three
//! in-process services under paused time.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use meshgate::Body;
use meshgate::aggregate::{Aggregate, AggregateBuilder, AggregateCall};
use meshgate::error::{Rejection, RejectionKind};
use tokio::time::{Instant, sleep};
use tower::{BoxError, Service, ServiceExt, service_fn};

/// Three services behind one in-process "upstream", dispatched by path:
/// `/users/{id}`, `/orders?user={id}`, `/recommendations` (slow by
/// `rec_delay`). Records the headers and URIs of every call.
#[derive(Clone)]
struct Backends {
    rec_delay: Duration,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<(String, HeaderMap)>>>,
}

impl Backends {
    fn new(rec_delay: Duration) -> Self {
        Self {
            rec_delay,
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
            seen: Arc::default(),
        }
    }

    fn service(
        &self,
    ) -> impl Service<
        Request<Body>,
        Response = Response<String>,
        Error = Infallible,
        Future = impl Future<Output = Result<Response<String>, Infallible>> + Send,
    > + Clone
    + Send
    + 'static {
        let this = self.clone();
        service_fn(move |request: Request<Body>| {
            let this = this.clone();
            async move {
                let uri = request.uri().to_string();
                this.seen
                    .lock()
                    .unwrap()
                    .push((uri.clone(), request.headers().clone()));
                let now = this.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                this.max_in_flight.fetch_max(now, Ordering::SeqCst);
                let (delay, status, body) = match request.uri().path() {
                    "/users/7" => (
                        Duration::from_millis(100),
                        200,
                        r#"{"id":7,"name":"Ada"}"#.to_owned(),
                    ),
                    "/orders" => (
                        Duration::from_millis(200),
                        200,
                        format!(r#"[{{"q":"{}"}}]"#, request.uri().query().unwrap_or("")),
                    ),
                    "/recommendations" => (this.rec_delay, 200, r#"["book"]"#.to_owned()),
                    "/broken" => (Duration::ZERO, 500, "{}".to_owned()),
                    "/html" => (Duration::ZERO, 200, "<html></html>".to_owned()),
                    "/big" => (Duration::ZERO, 200, format!("\"{}\"", "x".repeat(5000))),
                    _ => (Duration::ZERO, 404, "{}".to_owned()),
                };
                sleep(delay).await;
                this.in_flight.fetch_sub(1, Ordering::SeqCst);
                let mut response = Response::new(body);
                *response.status_mut() = StatusCode::from_u16(status).unwrap();
                Ok::<_, Infallible>(response)
            }
        })
    }
}

fn dashboard(recommendations: AggregateCall) -> AggregateBuilder {
    Aggregate::builder()
        .call(AggregateCall::new("user", "/users/{id}").unwrap())
        .call(AggregateCall::new("orders", "/orders?user={id}&limit=5").unwrap())
        .call(recommendations)
}

fn rec() -> AggregateCall {
    AggregateCall::new("recommendations", "/recommendations")
        .unwrap()
        .timeout(Duration::from_secs(1))
}

async fn run<S>(service: S, uri: &str) -> (StatusCode, Option<Rejection>, String)
where
    S: Service<Request<()>, Response = Response<Body>, Error = Infallible>,
{
    let request = Request::get(uri)
        .header("authorization", "Bearer t")
        .header("cookie", "secret=1")
        .body(())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let status = response.status();
    let rejection = response.extensions().get::<Rejection>().cloned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, rejection, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test(start_paused = true)]
async fn slow_optional_call_is_null_with_an_error_and_the_rest_is_merged_exactly() {
    let backends = Backends::new(Duration::from_secs(5));
    let aggregate = dashboard(rec().optional())
        .build(backends.service())
        .unwrap();
    let start = Instant::now();
    let (status, _, body) = run(aggregate, "/dashboard?id=7").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        r#"{"errors":{"recommendations":"timeout"},"orders":[{"q":"user=7&limit=5"}],"recommendations":null,"user":{"id":7,"name":"Ada"}}"#
    );
    // Waited for the slow call's own timeout only, not its 5 s.
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn slow_required_call_fails_the_whole_with_504() {
    let backends = Backends::new(Duration::from_secs(5));
    let aggregate = dashboard(rec()).build(backends.service()).unwrap();
    let (status, rejection, body) = run(aggregate, "/dashboard?id=7").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(rejection.unwrap().kind(), RejectionKind::UpstreamTimeout);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        json["detail"],
        "required call `recommendations` failed: timeout"
    );
}

#[tokio::test(start_paused = true)]
async fn calls_run_in_parallel_up_to_the_concurrency_limit() {
    let backends = Backends::new(Duration::from_millis(300));
    let parallel = dashboard(rec()).build(backends.service()).unwrap();
    let start = Instant::now();
    let (status, _, _) = run(parallel, "/dashboard?id=7").await;
    assert_eq!(status, StatusCode::OK);
    // 100, 200 and 300 ms at once: the slowest decides.
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert_eq!(backends.max_in_flight.load(Ordering::SeqCst), 3);

    let backends = Backends::new(Duration::from_millis(300));
    let one_at_a_time = dashboard(rec())
        .concurrency(1)
        .build(backends.service())
        .unwrap();
    let start = Instant::now();
    let (status, _, _) = run(one_at_a_time, "/dashboard?id=7").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(start.elapsed(), Duration::from_millis(600));
    assert_eq!(backends.max_in_flight.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_bounds_the_whole() {
    let backends = Backends::new(Duration::from_secs(60));
    let aggregate = dashboard(
        AggregateCall::new("recommendations", "/recommendations")
            .unwrap()
            .optional(),
    )
    .deadline(Duration::from_secs(2))
    .build(backends.service())
    .unwrap();
    let start = Instant::now();
    let (status, _, body) = run(aggregate, "/dashboard?id=7").await;
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["errors"]["recommendations"], "deadline exceeded");
    assert_eq!(json["user"]["name"], "Ada");
}

#[tokio::test(start_paused = true)]
async fn parameters_and_chosen_headers_are_passed_on() {
    let backends = Backends::new(Duration::ZERO);
    let aggregate = dashboard(rec()).build(backends.service()).unwrap();
    let (status, _, _) = run(aggregate, "/dashboard?x=1&id=7").await;
    assert_eq!(status, StatusCode::OK);
    let mut seen = backends.seen.lock().unwrap().clone();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let uris: Vec<&str> = seen.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(
        uris,
        ["/orders?user=7&limit=5", "/recommendations", "/users/7"]
    );
    for (_, headers) in &seen {
        assert_eq!(headers["authorization"], "Bearer t");
        assert!(headers.get("cookie").is_none());
    }

    // A value cannot add path segments or parameters.
    let backends = Backends::new(Duration::ZERO);
    let aggregate = dashboard(rec()).build(backends.service()).unwrap();
    let (status, _, body) = run(aggregate, "/dashboard?id=7/../admin").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let uris: Vec<String> = backends
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(u, _)| u.clone())
        .collect();
    assert!(
        uris.contains(&"/users/7%2F..%2Fadmin".to_owned()),
        "{uris:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_missing_parameter_is_a_bad_request_or_an_error_entry() {
    let backends = Backends::new(Duration::ZERO);
    let aggregate = dashboard(rec()).build(backends.service()).unwrap();
    let (status, rejection, _) = run(aggregate, "/dashboard").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(rejection.unwrap().kind(), RejectionKind::BadRequest);

    let aggregate = Aggregate::builder()
        .call(
            AggregateCall::new("user", "/users/{id}")
                .unwrap()
                .optional(),
        )
        .call(rec())
        .build(backends.service())
        .unwrap();
    let (status, _, body) = run(aggregate, "/dashboard").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        r#"{"errors":{"user":"missing parameter `id`"},"recommendations":["book"],"user":null}"#
    );
}

#[tokio::test(start_paused = true)]
async fn bad_sub_responses_are_errors_of_their_call() {
    let backends = Backends::new(Duration::ZERO);
    let aggregate = Aggregate::builder()
        .call(AggregateCall::new("broken", "/broken").unwrap().optional())
        .call(AggregateCall::new("html", "/html").unwrap().optional())
        .call(AggregateCall::new("big", "/big").unwrap().optional())
        .call(
            AggregateCall::new("missing", "/nothing")
                .unwrap()
                .optional(),
        )
        .call(rec())
        .max_body(4096)
        .build(backends.service())
        .unwrap();
    let (status, _, body) = run(aggregate, "/dashboard").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        r#"{"big":null,"broken":null,"errors":{"big":"body larger than 4096 bytes","broken":"status 500","html":"not JSON","missing":"status 404"},"html":null,"missing":null,"recommendations":["book"]}"#
    );

    // A required one of them: 502, and not a rejection that tells retry the
    // request never reached a server.
    let aggregate = Aggregate::builder()
        .call(AggregateCall::new("broken", "/broken").unwrap())
        .build(backends.service())
        .unwrap();
    let (status, rejection, body) = run(aggregate, "/dashboard").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(rejection.is_none());
    assert!(
        body.contains("required call `broken` failed: status 500"),
        "{body}"
    );
}

#[tokio::test]
async fn inner_service_errors_are_call_errors() {
    let failing = service_fn(|_: Request<Body>| async {
        Err::<Response<String>, BoxError>("connection refused".into())
    });
    let aggregate = Aggregate::builder()
        .call(AggregateCall::new("a", "/a").unwrap().optional())
        .build(failing)
        .unwrap();
    let (status, _, body) = run(aggregate, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"a":null,"errors":{"a":"upstream error"}}"#);
}

#[test]
fn bad_aggregates_are_refused_when_built() {
    let ok = || AggregateCall::new("a", "/a").unwrap();
    let build = |b: AggregateBuilder| b.build(()).map(|_| ()).map_err(|e| e.to_string());
    assert_eq!(
        build(Aggregate::builder()).unwrap_err(),
        "an aggregate needs at least one call"
    );
    assert_eq!(
        build(Aggregate::builder().call(ok()).call(ok())).unwrap_err(),
        "duplicate key `a`"
    );
    assert_eq!(
        build(Aggregate::builder().call(AggregateCall::new("errors", "/e").unwrap())).unwrap_err(),
        "the key `errors` is reserved"
    );
    assert!(build(Aggregate::builder().call(ok())).is_ok());
}

#[cfg(feature = "timeout")]
#[tokio::test(start_paused = true)]
async fn an_outer_timeout_deadline_bounds_the_calls() {
    use meshgate::timeout::Deadline;
    let backends = Backends::new(Duration::from_secs(60));
    let aggregate = dashboard(
        AggregateCall::new("recommendations", "/recommendations")
            .unwrap()
            .optional(),
    )
    .build(backends.service())
    .unwrap();
    let mut request = Request::get("/dashboard?id=7").body(()).unwrap();
    request
        .extensions_mut()
        .insert(Deadline::at(Instant::now() + Duration::from_millis(1500)));
    let start = Instant::now();
    let response = aggregate.oneshot(request).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(1500));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["errors"]["recommendations"], "deadline exceeded");
}
