//! Behaviour of `meshgate::retry` through its public API, tick by tick
//! under paused time.

mod axum_router;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty, Full};
use meshgate::BoxError;
use meshgate::error::{Rejection, RejectionKind};
use meshgate::retry::{Attempts, Jitter, ReplayBody, RetryLayer, RetryOn};
use meshgate::timeout::{Deadline, TimeoutLayer};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

/// What the upstream does on one call.
#[derive(Clone, Debug)]
enum Reply {
    /// Reads the body, then answers this status.
    Status(u16),
    /// Reads the body, then answers this status with these headers.
    Headers(u16, Vec<(&'static str, String)>),
    /// Answers this status without reading the body.
    Early(u16),
    /// Answers like the proxy does for a failure on the way upstream.
    Reject(RejectionKind),
    /// Waits, then answers this status.
    Slow(Duration, u16),
    /// Answers this status at once and goes on reading the body a little
    /// later, as a connection still sending the request would.
    Detached(u16),
}

/// One call the upstream saw.
#[derive(Clone, Debug)]
struct Call {
    at: Instant,
    method: Method,
    body: Result<Bytes, String>,
}

/// An upstream that answers from a script (then `fallback`) and records calls.
#[derive(Clone)]
struct Upstream {
    script: Arc<Mutex<VecDeque<Reply>>>,
    fallback: Reply,
    calls: Arc<Mutex<Vec<Call>>>,
    /// What a `Detached` reply's late read of the body got.
    late: Arc<Mutex<Option<Result<usize, String>>>>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl Upstream {
    fn new(script: impl IntoIterator<Item = Reply>, fallback: Reply) -> Self {
        Self {
            script: Arc::new(Mutex::new(script.into_iter().collect())),
            fallback,
            calls: Arc::default(),
            late: Arc::default(),
        }
    }

    fn always(reply: Reply) -> Self {
        Self::new([], reply)
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    fn service<B>(
        &self,
    ) -> impl Service<
        Request<ReplayBody<B>>,
        Response = Response<String>,
        Error = Infallible,
        Future = BoxFuture<Result<Response<String>, Infallible>>,
    > + Clone
    + Send
    + Sync
    + 'static
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let this = self.clone();
        tower::service_fn(move |request: Request<ReplayBody<B>>| {
            let this = this.clone();
            let at = Instant::now();
            let reply = this
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| this.fallback.clone());
            Box::pin(async move {
                let method = request.method().clone();
                let body = if let Reply::Detached(_) = reply {
                    let late = this.late.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        let result = request.into_body().collect().await;
                        *late.lock().unwrap() = Some(
                            result
                                .map(|c| c.to_bytes().len())
                                .map_err(|e| e.to_string()),
                        );
                    });
                    Ok(Bytes::new())
                } else if matches!(reply, Reply::Early(_)) {
                    Ok(Bytes::new())
                } else {
                    match request.into_body().collect().await {
                        Ok(collected) => Ok(collected.to_bytes()),
                        Err(error) => Err(error.to_string()),
                    }
                };
                this.calls.lock().unwrap().push(Call { at, method, body });
                let response = match reply {
                    Reply::Status(status) | Reply::Early(status) | Reply::Detached(status) => {
                        respond(status, Vec::new())
                    }
                    Reply::Headers(status, headers) => respond(status, headers),
                    Reply::Reject(kind) => {
                        let mut response = respond(kind.status().as_u16(), Vec::new());
                        response.extensions_mut().insert(Rejection::new(kind));
                        response
                    }
                    Reply::Slow(delay, status) => {
                        tokio::time::sleep(delay).await;
                        respond(status, Vec::new())
                    }
                };
                Ok::<_, Infallible>(response)
            }) as BoxFuture<_>
        })
    }
}

fn respond(status: u16, headers: Vec<(&'static str, String)>) -> Response<String> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder.body(format!("status {status}")).unwrap()
}

/// A body that arrives in chunks, pending once before each, with no length
/// announced: what a client streaming a request looks like.
struct Trickle {
    frames: VecDeque<Bytes>,
    ready: bool,
}

impl Trickle {
    fn new(data: &Bytes, chunk: usize) -> Self {
        Self {
            frames: data.chunks(chunk).map(Bytes::copy_from_slice).collect(),
            ready: false,
        }
    }
}

impl Body for Trickle {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if !self.ready {
            self.ready = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.ready = false;
        Poll::Ready(self.frames.pop_front().map(|data| Ok(Frame::data(data))))
    }
}

fn pattern(len: usize) -> Bytes {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn get() -> Request<Empty<Bytes>> {
    Request::new(Empty::new())
}

fn request(method: Method) -> Request<Empty<Bytes>> {
    Request::builder()
        .method(method)
        .body(Empty::new())
        .unwrap()
}

/// Lets spawned tasks run without letting paused time move.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// A layer without backoff surprises: no jitter, 10 ms base.
fn fixed() -> RetryLayer {
    RetryLayer::new()
        .backoff(Duration::from_millis(10), Duration::from_secs(1))
        .jitter(Jitter::None)
}

#[tokio::test(start_paused = true)]
async fn a_gateway_error_is_retried_after_the_backoff_tick_by_tick() {
    let upstream = Upstream::new([Reply::Status(503), Reply::Status(502)], Reply::Status(200));
    let layer = fixed().attempts_header(true);
    let service = layer.layer(upstream.service());
    let start = Instant::now();
    let task = tokio::spawn(service.oneshot(get()));
    settle().await;
    assert_eq!(upstream.count(), 1, "first attempt at once");
    tokio::time::advance(Duration::from_millis(9)).await;
    settle().await;
    assert_eq!(upstream.count(), 1, "backing off 10 ms");
    tokio::time::advance(Duration::from_millis(1)).await;
    settle().await;
    assert_eq!(upstream.count(), 2, "second attempt at 10 ms");
    tokio::time::advance(Duration::from_millis(19)).await;
    settle().await;
    assert_eq!(upstream.count(), 2, "backing off 20 ms");
    tokio::time::advance(Duration::from_millis(1)).await;
    settle().await;
    assert_eq!(upstream.count(), 3);
    let response = task.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(Attempts::of(&response), 3);
    assert_eq!(response.extensions().get::<Attempts>(), Some(&Attempts(3)));
    assert_eq!(response.headers()["x-meshgate-attempts"], "3");
    let at: Vec<_> = upstream.calls().iter().map(|c| c.at - start).collect();
    assert_eq!(
        at,
        [
            Duration::ZERO,
            Duration::from_millis(10),
            Duration::from_millis(30)
        ]
    );
    assert_eq!(layer.stats().retries, 2);
}

#[tokio::test(start_paused = true)]
async fn a_first_attempt_success_is_passed_through() {
    let upstream = Upstream::always(Reply::Status(200));
    let layer = RetryLayer::new().attempts_header(true);
    let response = layer
        .layer(upstream.service())
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(Attempts::of(&response), 1);
    assert_eq!(response.headers()["x-meshgate-attempts"], "1");
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "status 200"
    );
    assert_eq!(upstream.count(), 1);
    assert_eq!(layer.stats().retries, 0);
    assert_eq!(response_extension_after_one_attempt(false).await, None);
    assert_eq!(
        response_extension_after_one_attempt(true).await,
        Some(Attempts(1))
    );
}

async fn response_extension_after_one_attempt(always: bool) -> Option<Attempts> {
    let upstream = Upstream::always(Reply::Status(200));
    let response = RetryLayer::new()
        .always_record_attempts(always)
        .layer(upstream.service())
        .oneshot(get())
        .await
        .unwrap();
    response.extensions().get::<Attempts>().copied()
}

/// The gaps between attempts of many requests, under paused time.
async fn gaps(layer: &RetryLayer, requests: usize) -> Vec<Vec<Duration>> {
    let mut all = Vec::new();
    for _ in 0..requests {
        let upstream = Upstream::always(Reply::Status(503));
        let response = layer
            .layer(upstream.service())
            .oneshot(get())
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        let calls = upstream.calls();
        all.push(calls.windows(2).map(|w| w[1].at - w[0].at).collect());
    }
    all
}

#[tokio::test(start_paused = true)]
async fn full_jitter_delays_stay_within_bounds_over_many_samples() {
    let base = Duration::from_millis(10);
    let layer = RetryLayer::new()
        .max_attempts(5)
        .backoff(base, Duration::from_millis(50))
        .budget(1.0, 10_000, Duration::from_secs(10));
    let samples = gaps(&layer, 400).await;
    for gaps in &samples {
        assert_eq!(gaps.len(), 4);
        for (i, gap) in gaps.iter().enumerate() {
            let ceiling = (base * (1 << i)).min(Duration::from_millis(50));
            assert!(*gap <= ceiling, "retry {}: {gap:?} > {ceiling:?}", i + 1);
        }
    }
    // Spread over the whole range, not stuck at one end: the third delay is
    // uniform in [0, 40 ms], so its mean is near 20 ms and both ends are hit.
    let third: Vec<Duration> = samples.iter().map(|g| g[2]).collect();
    let mean = third.iter().sum::<Duration>() / third.len() as u32;
    assert!(
        mean > Duration::from_millis(17) && mean < Duration::from_millis(23),
        "{mean:?}"
    );
    assert!(third.iter().any(|d| *d < Duration::from_millis(4)));
    assert!(third.iter().any(|d| *d > Duration::from_millis(36)));
    assert_eq!(layer.stats().retries, 1600);
}

#[tokio::test(start_paused = true)]
async fn decorrelated_jitter_delays_stay_within_bounds() {
    let base = Duration::from_millis(10);
    let cap = Duration::from_millis(200);
    let layer = RetryLayer::new()
        .max_attempts(6)
        .backoff(base, cap)
        .jitter(Jitter::Decorrelated)
        .budget(1.0, 10_000, Duration::from_secs(10));
    for gaps in gaps(&layer, 300).await {
        let mut previous = base;
        for gap in gaps {
            let high = (previous * 3).min(cap);
            assert!(gap >= base && gap <= high, "{gap:?} after {previous:?}");
            previous = gap;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn attempts_stop_at_the_maximum() {
    let upstream = Upstream::always(Reply::Status(503));
    let layer = fixed().max_attempts(4).attempts_header(true);
    let response = layer
        .layer(upstream.service())
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(Attempts::of(&response), 4);
    assert_eq!(response.headers()["x-meshgate-attempts"], "4");
    assert_eq!(upstream.count(), 4);
    let stats = layer.stats();
    assert_eq!((stats.retries, stats.attempts_exhausted), (3, 1));

    // The default is 3 in all; 1 turns retries off.
    let upstream = Upstream::always(Reply::Status(503));
    let _ = RetryLayer::new()
        .layer(upstream.service())
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(upstream.count(), 3);
    let upstream = Upstream::always(Reply::Status(503));
    let _ = fixed()
        .max_attempts(1)
        .layer(upstream.service())
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(upstream.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn post_is_retried_only_with_an_idempotency_key_or_an_opt_in() {
    let post = |key: Option<&str>| {
        let mut builder = Request::builder().method(Method::POST);
        if let Some(key) = key {
            builder = builder.header("idempotency-key", key);
        }
        builder.body(Full::new(Bytes::from("order"))).unwrap()
    };

    let upstream = Upstream::new([Reply::Status(503)], Reply::Status(201));
    let response = fixed()
        .layer(upstream.service())
        .oneshot(post(None))
        .await
        .unwrap();
    assert_eq!(response.status(), 503, "not retried");
    assert_eq!(upstream.count(), 1);

    let upstream = Upstream::new([Reply::Status(503)], Reply::Status(201));
    let response = fixed()
        .layer(upstream.service())
        .oneshot(post(Some("5f1c")))
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "retried with a key");
    let calls = upstream.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.method == Method::POST));
    assert!(calls.iter().all(|c| c.body.as_deref() == Ok(&b"order"[..])));

    let upstream = Upstream::new([Reply::Status(503)], Reply::Status(201));
    let response = fixed()
        .retry_non_idempotent(true)
        .layer(upstream.service())
        .oneshot(post(None))
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "retried when the route opts in");

    // PATCH like POST; PUT and DELETE are idempotent.
    for (method, retried) in [
        (Method::PATCH, false),
        (Method::PUT, true),
        (Method::DELETE, true),
        (Method::HEAD, true),
        (Method::OPTIONS, true),
        (Method::TRACE, true),
    ] {
        let upstream = Upstream::new([Reply::Status(503)], Reply::Status(200));
        let _ = fixed()
            .layer(upstream.service())
            .oneshot(request(method.clone()))
            .await
            .unwrap();
        assert_eq!(upstream.count(), 1 + usize::from(retried), "{method}");
    }

    // A connect failure is retried whatever the method: nothing was sent.
    let upstream = Upstream::new(
        [Reply::Reject(RejectionKind::UpstreamConnect)],
        Reply::Status(201),
    );
    let response = fixed()
        .layer(upstream.service())
        .oneshot(post(None))
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(upstream.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_streamed_10_kib_body_is_replayed_byte_identical() {
    let data = pattern(10 * 1024);
    let upstream = Upstream::new([Reply::Status(503)], Reply::Status(200));
    let layer = fixed();
    let request = Request::builder()
        .method(Method::PUT)
        .body(Trickle::new(&data, 1000))
        .unwrap();
    let response = layer
        .layer(upstream.service())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let calls = upstream.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].body.as_ref().unwrap(), &data, "first attempt");
    assert_eq!(calls[1].body.as_ref().unwrap(), &data, "replayed");
}

#[tokio::test(start_paused = true)]
async fn a_body_the_first_attempt_did_not_read_is_read_by_the_retry() {
    let data = pattern(10 * 1024);
    let upstream = Upstream::new([Reply::Early(503)], Reply::Status(200));
    let request = Request::builder()
        .method(Method::PUT)
        .body(Trickle::new(&data, 1000))
        .unwrap();
    let response = fixed()
        .layer(upstream.service())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.calls()[1].body.as_ref().unwrap(), &data);
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_still_reading_the_body_is_cut_off_by_the_retry() {
    // 100 KiB: the failed attempt would pass the 64 KiB limit during the
    // backoff if it could go on reading.
    let data = pattern(100 * 1024);
    let upstream = Upstream::new([Reply::Detached(503)], Reply::Status(200));
    let request = Request::builder()
        .method(Method::PUT)
        .body(Trickle::new(&data, 4 * 1024))
        .unwrap();
    let response = fixed()
        .layer(upstream.service())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let calls = upstream.calls();
    assert_eq!(
        calls[1].body.as_ref().unwrap(),
        &data,
        "the retry got it all"
    );
    let late = upstream.late.lock().unwrap().clone().unwrap();
    assert!(late.unwrap_err().contains("superseded"));
}

#[tokio::test(start_paused = true)]
async fn a_1_mib_body_is_sent_once_and_not_retried() {
    let data = pattern(1024 * 1024);
    // Streamed, with no length announced: it passes the limit on the way.
    let upstream = Upstream::new([Reply::Status(503)], Reply::Status(200));
    let layer = fixed();
    let request = Request::builder()
        .method(Method::PUT)
        .body(Trickle::new(&data, 16 * 1024))
        .unwrap();
    let response = layer
        .layer(upstream.service())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 503, "not retried");
    let calls = upstream.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].body.as_ref().unwrap(), &data, "sent whole, once");
    assert_eq!(layer.stats().body_not_replayable, 1);

    // Announced: never buffered at all.
    let upstream = Upstream::new([Reply::Status(503)], Reply::Status(200));
    let request = Request::builder()
        .method(Method::PUT)
        .body(Full::new(data.clone()))
        .unwrap();
    let response = layer
        .layer(upstream.service())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(upstream.count(), 1);
    assert_eq!(upstream.calls()[0].body.as_ref().unwrap(), &data);

    // The limit is configurable: 1 MiB fits under 2 MiB.
    let upstream = Upstream::new([Reply::Status(503)], Reply::Status(200));
    let request = Request::builder()
        .method(Method::PUT)
        .body(Trickle::new(&data, 64 * 1024))
        .unwrap();
    let response = fixed()
        .replay_limit(2 * 1024 * 1024)
        .layer(upstream.service())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.calls()[1].body.as_ref().unwrap(), &data);
}

#[tokio::test(start_paused = true)]
async fn the_budget_refuses_once_spent_and_recovers_after_the_window() {
    // No ratio, a floor of 1 retry per second over 10 s: 10 retries.
    let upstream = Upstream::always(Reply::Status(503));
    let layer = fixed()
        .max_attempts(2)
        .budget(0.0, 1, Duration::from_secs(10));
    let service = layer.layer(upstream.service());
    for _ in 0..10 {
        service.clone().oneshot(get()).await.unwrap();
    }
    assert_eq!(upstream.count(), 20, "ten retried");
    assert_eq!(layer.stats().budget_remaining, 0);
    let response = service.clone().oneshot(get()).await.unwrap();
    assert_eq!(response.status(), 503, "the last response");
    assert_eq!(Attempts::of(&response), 1);
    assert_eq!(upstream.count(), 21, "not retried");
    assert_eq!(layer.stats().budget_exhausted, 1);

    // Still spent just before the window has slid past the retries...
    tokio::time::advance(Duration::from_millis(9_800)).await;
    service.clone().oneshot(get()).await.unwrap();
    assert_eq!(upstream.count(), 22);
    assert_eq!(layer.stats().budget_exhausted, 2);
    // ...and back once it has.
    tokio::time::advance(Duration::from_millis(200)).await;
    assert_eq!(layer.stats().budget_remaining, 10);
    service.clone().oneshot(get()).await.unwrap();
    assert_eq!(upstream.count(), 24, "retried again");
    assert_eq!(layer.stats().retries, 11);
}

#[tokio::test(start_paused = true)]
async fn every_request_deposits_and_every_retry_withdraws() {
    // Half the requests, no floor: the first request alone buys no retry
    // (floor(0.5 × 1) = 0), the second buys one.
    let upstream = Upstream::always(Reply::Status(503));
    let layer = fixed()
        .max_attempts(2)
        .budget(0.5, 0, Duration::from_secs(10));
    let service = layer.layer(upstream.service());
    service.clone().oneshot(get()).await.unwrap();
    assert_eq!(upstream.count(), 1);
    service.clone().oneshot(get()).await.unwrap();
    assert_eq!(upstream.count(), 3, "2 requests → 1 retry");
    service.clone().oneshot(get()).await.unwrap();
    assert_eq!(upstream.count(), 4, "3 requests → still 1");
    service.clone().oneshot(get()).await.unwrap();
    assert_eq!(
        upstream.count(),
        6,
        "4 requests → 2; retries are no deposits"
    );
    // Clones and other services of the same layer share the budget.
    let other = layer.layer(upstream.service());
    other.oneshot(get()).await.unwrap();
    assert_eq!(upstream.count(), 7, "5 requests → still 2");
    let stats = layer.stats();
    assert_eq!((stats.retries, stats.budget_exhausted), (2, 3));
}

#[tokio::test(start_paused = true)]
async fn retry_after_over_the_cap_is_not_waited_for() {
    let upstream = Upstream::new(
        [Reply::Headers(503, vec![("retry-after", "30".into())])],
        Reply::Status(200),
    );
    let layer = fixed().retry_after_cap(Duration::from_secs(10));
    let start = Instant::now();
    let response = layer
        .layer(upstream.service())
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "30");
    assert_eq!(start.elapsed(), Duration::ZERO, "answered at once");
    assert_eq!(upstream.count(), 1);
    assert_eq!(layer.stats().retry_after_too_long, 1);
}

#[tokio::test(start_paused = true)]
async fn retry_after_under_the_cap_is_waited_for_exactly() {
    let upstream = Upstream::new(
        [Reply::Headers(503, vec![("retry-after", "2".into())])],
        Reply::Status(200),
    );
    let service = fixed().layer(upstream.service());
    let task = tokio::spawn(service.oneshot(get()));
    settle().await;
    assert_eq!(upstream.count(), 1);
    tokio::time::advance(Duration::from_millis(1_999)).await;
    settle().await;
    assert_eq!(upstream.count(), 1, "Retry-After beats the 10 ms backoff");
    tokio::time::advance(Duration::from_millis(1)).await;
    settle().await;
    assert_eq!(upstream.count(), 2, "retried at 2 s");
    assert_eq!(task.await.unwrap().unwrap().status(), 200);

    // A 429 too, when its status is retriable; the backoff wins when longer.
    let upstream = Upstream::new(
        [Reply::Headers(429, vec![("retry-after", "0".into())])],
        Reply::Status(200),
    );
    let layer = fixed()
        .backoff(Duration::from_millis(300), Duration::from_secs(1))
        .retry_on(RetryOn::default().status(StatusCode::TOO_MANY_REQUESTS));
    let start = Instant::now();
    let response = layer
        .layer(upstream.service())
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.calls()[1].at - start, Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn retry_after_as_an_http_date() {
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3));
    let upstream = Upstream::new(
        [Reply::Headers(503, vec![("retry-after", date)])],
        Reply::Status(200),
    );
    let start = Instant::now();
    let response = fixed()
        .layer(upstream.service())
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The date has whole seconds: the wait is in (2 s, 3 s].
    let waited = upstream.calls()[1].at - start;
    assert!(
        waited > Duration::from_secs(2) && waited <= Duration::from_secs(3),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn no_wait_reaches_the_deadline() {
    // Retry-After under the cap but past the deadline an outer timeout set.
    let upstream = Upstream::new(
        [Reply::Headers(503, vec![("retry-after", "2".into())])],
        Reply::Status(200),
    );
    let layer = fixed();
    let service = TimeoutLayer::new(Duration::from_secs(1)).layer(layer.layer(upstream.service()));
    let start = Instant::now();
    let response = service.oneshot(get()).await.unwrap();
    assert_eq!(response.status(), 503, "the upstream's answer, not a 504");
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(upstream.count(), 1);
    assert_eq!(layer.stats().deadline_too_close, 1);

    // A backoff that fits is waited for.
    let upstream = Upstream::new([Reply::Status(503)], Reply::Status(200));
    let mut request = get();
    request
        .extensions_mut()
        .insert(Deadline::at(Instant::now() + Duration::from_millis(11)));
    let response = fixed()
        .layer(upstream.service())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // One that does not fit is not.
    let upstream = Upstream::new([Reply::Status(503)], Reply::Status(200));
    let mut request = get();
    request
        .extensions_mut()
        .insert(Deadline::at(Instant::now() + Duration::from_millis(10)));
    let response = fixed()
        .layer(upstream.service())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(upstream.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_from_the_budget_header_alone_is_respected() {
    // No TimeoutLayer in this process: the caller's budget header is the
    // deadline, counted from when the retry layer was called.
    let with_budget = |millis: &str| {
        Request::builder()
            .header("x-request-timeout-ms", millis)
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    // A 10 ms backoff fits in 11 ms...
    let upstream = Upstream::new([Reply::Status(503)], Reply::Status(200));
    let layer = fixed();
    let response = layer
        .layer(upstream.service())
        .oneshot(with_budget("11"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.count(), 2);
    // ...not in 10 ms.
    let upstream = Upstream::new([Reply::Status(503)], Reply::Status(200));
    let layer = fixed();
    let response = layer
        .layer(upstream.service())
        .oneshot(with_budget("10"))
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(upstream.count(), 1);
    assert_eq!(layer.stats().deadline_too_close, 1);
    // The budget counts from the call, not from the decision: after a slow
    // first attempt of 5 ms, a 10 ms backoff no longer fits in 14 ms.
    let upstream = Upstream::new(
        [Reply::Slow(Duration::from_millis(5), 503)],
        Reply::Status(200),
    );
    let layer = fixed();
    let response = layer
        .layer(upstream.service())
        .oneshot(with_budget("14"))
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(upstream.count(), 1);
    assert_eq!(layer.stats().deadline_too_close, 1);
}

#[tokio::test(start_paused = true)]
async fn an_outer_timeout_bounds_the_retries_after_time_has_passed() {
    // The outer layer's exact deadline, not its header counted afresh: the
    // first attempt takes 995 ms of the 1 s, so a 10 ms backoff does not fit.
    let upstream = Upstream::new(
        [Reply::Slow(Duration::from_millis(995), 503)],
        Reply::Status(200),
    );
    let layer = fixed();
    let service = TimeoutLayer::new(Duration::from_secs(1)).layer(layer.layer(upstream.service()));
    let response = service.oneshot(get()).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(upstream.count(), 1);
    assert_eq!(layer.stats().deadline_too_close, 1);
}

#[tokio::test(start_paused = true)]
async fn the_per_try_timeout_ends_a_slow_attempt_and_the_retry_succeeds() {
    let upstream = Upstream::new(
        [Reply::Slow(Duration::from_secs(30), 200)],
        Reply::Status(200),
    );
    let layer = fixed().per_try_timeout(Duration::from_millis(100));
    let service = layer.layer(upstream.service());
    let task = tokio::spawn(service.oneshot(get()));
    settle().await;
    assert_eq!(upstream.count(), 1);
    tokio::time::advance(Duration::from_millis(100)).await;
    settle().await;
    assert_eq!(layer.stats().per_try_timeouts, 1, "ended at 100 ms");
    tokio::time::advance(Duration::from_millis(9)).await;
    settle().await;
    assert_eq!(upstream.count(), 1, "backing off");
    tokio::time::advance(Duration::from_millis(1)).await;
    settle().await;
    assert_eq!(upstream.count(), 2, "the retry at 110 ms");
    let response = task.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(Attempts::of(&response), 2);
    assert_eq!(layer.stats().per_try_timeouts, 1);

    // Without retries left, the timeout is the answer: a 504 problem.
    let upstream = Upstream::always(Reply::Slow(Duration::from_secs(30), 200));
    let layer = fixed()
        .max_attempts(1)
        .per_try_timeout(Duration::from_millis(100));
    let start = Instant::now();
    let response = layer
        .layer(upstream.service())
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(response.status(), 504);
    assert_eq!(
        response.extensions().get::<Rejection>().unwrap().kind(),
        RejectionKind::Timeout
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(layer.stats().per_try_timeouts, 1);

    // A gRPC caller gets DEADLINE_EXCEEDED the gRPC way.
    let upstream = Upstream::always(Reply::Slow(Duration::from_secs(30), 200));
    let request = Request::builder()
        .method(Method::POST)
        .header("content-type", "application/grpc")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = layer
        .layer(upstream.service())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["grpc-status"], "4");
}

/// The attempts a GET takes against an upstream answering `first` once.
async fn attempts_after(retry_on: RetryOn, first: Reply) -> usize {
    let upstream = Upstream::new([first], Reply::Status(200));
    let _ = fixed()
        .retry_on(retry_on)
        .layer(upstream.service())
        .oneshot(get())
        .await
        .unwrap();
    upstream.count()
}

#[tokio::test(start_paused = true)]
async fn conditions_gateway_error_versus_5xx() {
    let gateway = || RetryOn::nothing().gateway_error();
    let any = || RetryOn::nothing().server_error();
    for status in [502, 503, 504] {
        assert_eq!(attempts_after(gateway(), Reply::Status(status)).await, 2);
        assert_eq!(attempts_after(any(), Reply::Status(status)).await, 2);
    }
    for status in [500, 501, 505] {
        assert_eq!(attempts_after(gateway(), Reply::Status(status)).await, 1);
        assert_eq!(attempts_after(any(), Reply::Status(status)).await, 2);
    }
    for status in [400, 404, 429] {
        assert_eq!(attempts_after(any(), Reply::Status(status)).await, 1);
    }
    // Failures the proxy reports: under gateway-error and 5xx, and under
    // their own names.
    for kind in [
        RejectionKind::UpstreamConnect,
        RejectionKind::UpstreamReset,
        RejectionKind::UpstreamTimeout,
    ] {
        assert_eq!(attempts_after(gateway(), Reply::Reject(kind)).await, 2);
        assert_eq!(attempts_after(any(), Reply::Reject(kind)).await, 2);
    }
    let connect = || RetryOn::nothing().connect_failure();
    let reset = || RetryOn::nothing().reset();
    let connect_failure = || Reply::Reject(RejectionKind::UpstreamConnect);
    let upstream_reset = || Reply::Reject(RejectionKind::UpstreamReset);
    assert_eq!(attempts_after(connect(), connect_failure()).await, 2);
    assert_eq!(attempts_after(connect(), upstream_reset()).await, 1);
    assert_eq!(attempts_after(connect(), Reply::Status(503)).await, 1);
    assert_eq!(attempts_after(reset(), upstream_reset()).await, 2);
    assert_eq!(attempts_after(reset(), connect_failure()).await, 1);
    // Refusals of meshgate layers further in are never retried.
    assert_eq!(
        attempts_after(any(), Reply::Reject(RejectionKind::CircuitOpen)).await,
        1
    );
}

#[tokio::test(start_paused = true)]
async fn conditions_retriable_status_codes_and_headers() {
    let codes = RetryOn::parse("retriable-status-codes", [409, 500]).unwrap();
    assert_eq!(attempts_after(codes.clone(), Reply::Status(409)).await, 2);
    assert_eq!(attempts_after(codes.clone(), Reply::Status(500)).await, 2);
    assert_eq!(attempts_after(codes.clone(), Reply::Status(503)).await, 1);
    assert_eq!(attempts_after(codes, Reply::Status(200)).await, 1);

    let headers = RetryOn::parse("retriable-headers", [])
        .unwrap()
        .header("x-upstream-busy".parse().unwrap(), None)
        .header(
            "x-state".parse().unwrap(),
            Some(HeaderValue::from_static("draining")),
        );
    let with = |headers: Vec<(&'static str, String)>| Reply::Headers(200, headers);
    assert_eq!(
        attempts_after(headers.clone(), with(vec![("x-upstream-busy", "1".into())])).await,
        2
    );
    assert_eq!(
        attempts_after(headers.clone(), with(vec![("x-state", "draining".into())])).await,
        2
    );
    assert_eq!(
        attempts_after(headers.clone(), with(vec![("x-state", "ready".into())])).await,
        1
    );
    assert_eq!(attempts_after(headers, with(vec![])).await, 1);
}

#[tokio::test(start_paused = true)]
async fn a_service_error_is_retried_as_a_reset() {
    let calls = Arc::new(Mutex::new(0u32));
    let counter = calls.clone();
    let service = fixed().layer(tower::service_fn(
        move |_: Request<ReplayBody<Empty<Bytes>>>| {
            let n = {
                let mut calls = counter.lock().unwrap();
                *calls += 1;
                *calls
            };
            async move {
                if n == 1 {
                    Err::<Response<String>, &str>("connection reset")
                } else {
                    Ok(Response::new(String::new()))
                }
            }
        },
    ));
    let response = service.clone().oneshot(get()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(*calls.lock().unwrap(), 2);
    // Not retried for a POST: the error is passed on.
    *calls.lock().unwrap() = 0;
    let error = service.oneshot(request(Method::POST)).await.unwrap_err();
    assert_eq!(error, "connection reset");
}

#[tokio::test(start_paused = true)]
async fn concurrent_clones_share_one_budget() {
    // 100 requests at once against a failing upstream, 10 retries allowed.
    let upstream = Upstream::always(Reply::Slow(Duration::from_millis(5), 503));
    let layer = fixed()
        .max_attempts(2)
        .budget(0.0, 1, Duration::from_secs(10));
    let service = layer.layer(upstream.service());
    let tasks: Vec<_> = (0..100)
        .map(|_| tokio::spawn(service.clone().oneshot(get())))
        .collect();
    let mut attempts = 0;
    for task in tasks {
        let response = task.await.unwrap().unwrap();
        assert_eq!(response.status(), 503);
        attempts += Attempts::of(&response);
    }
    assert_eq!(attempts, 110);
    assert_eq!(upstream.count(), 110);
    let stats = layer.stats();
    assert_eq!((stats.retries, stats.budget_exhausted), (10, 90));
}

#[cfg(feature = "circuit-breaker")]
#[tokio::test(start_paused = true)]
async fn an_open_breaker_further_in_is_not_retried() {
    use meshgate::circuit_breaker::CircuitBreakerLayer;

    let upstream = Upstream::always(Reply::Status(503));
    let layer = fixed().max_attempts(3);
    let service = layer.layer(
        CircuitBreakerLayer::new()
            .consecutive_failures(2)
            .layer(upstream.service()),
    );
    // Attempts 1 and 2 reach the upstream and trip the breaker; attempt 3
    // is refused by it, and that refusal is the answer.
    let response = service.clone().oneshot(get()).await.unwrap();
    assert_eq!(upstream.count(), 2);
    assert_eq!(Attempts::of(&response), 3);
    assert_eq!(
        response.extensions().get::<Rejection>().unwrap().kind(),
        RejectionKind::CircuitOpen
    );
    // While open, a request is refused once, not retried.
    let response = service.oneshot(get()).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(Attempts::of(&response), 1);
    assert_eq!(upstream.count(), 2);
}
