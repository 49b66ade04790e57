//! Upstream failures become responses that `classify` reads correctly, and
//! a reset mid-body is never presented as a complete response.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use meshgate::classify::{Failure, Outcome};
use meshgate::error::{Rejection, RejectionKind};
use meshgate::proxy::Proxy;
use meshgate::{Body, BoxError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use crate::support::{connect, exchange, raw_upstream, read_head, serve_proxy, upstream};

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header("host", "api.example.com")
        .body(Body::empty())
        .unwrap()
}

fn rejection(response: &Response<Body>) -> &Rejection {
    response
        .extensions()
        .get::<Rejection>()
        .expect("a Rejection extension")
}

async fn problem(response: Response<Body>) -> serde_json::Value {
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

/// An address where nothing listens: bound, then closed.
async fn closed_port() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

#[tokio::test]
async fn connection_refused_is_a_502_connect_failure() {
    let addr = closed_port().await;
    let proxy = Proxy::to(format!("http://{addr}")).unwrap();
    let response = proxy.clone().oneshot(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let kept = rejection(&response);
    assert_eq!(kept.kind(), RejectionKind::UpstreamConnect);
    assert!(kept.cause().is_some(), "the connect error is kept");
    assert_eq!(
        Outcome::from_response(&response),
        Outcome::Failure(Failure::Connect)
    );
    let json = problem(response).await;
    assert_eq!(json["status"], 502);
    assert_eq!(json["detail"], "the upstream could not be reached");
    assert!(
        !json.to_string().contains(&addr.port().to_string()),
        "{json}"
    );

    // The same through a server, as a client sees it.
    let front = serve_proxy(proxy);
    let raw = exchange(
        front,
        "GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{raw}");
    assert!(
        raw.contains("content-type: application/problem+json"),
        "{raw}"
    );

    // A gRPC caller gets UNAVAILABLE, with the same extension.
    let addr = closed_port().await;
    let request = Request::post(format!("http://{addr}/pkg.Svc/Call"))
        .header("content-type", "application/grpc")
        .body(Body::empty())
        .unwrap();
    let response = Proxy::new().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "14");
    assert_eq!(rejection(&response).kind(), RejectionKind::UpstreamConnect);
}

#[tokio::test]
async fn dns_failure_is_a_502_connect_failure() {
    // `.invalid` never resolves (RFC 6761).
    let proxy = Proxy::to("http://upstream.invalid:8080").unwrap();
    let response = proxy.oneshot(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(rejection(&response).kind(), RejectionKind::UpstreamConnect);
}

#[tokio::test]
async fn no_upstream_or_an_unsupported_one_is_a_502_and_bad_config_an_error() {
    // Boxed as the router holds its routes: `Proxy` is Clone + Send + Sync.
    let boxed: BoxCloneSyncService<Request<Body>, Response<Body>, Infallible> =
        BoxCloneSyncService::new(Proxy::new());
    let response = boxed.oneshot(get("/relative")).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(rejection(&response).kind(), RejectionKind::UpstreamConnect);
    assert_eq!(
        problem(response).await["detail"],
        "no upstream was chosen for the request"
    );

    // With `tls`, https upstreams work (tests/tls); without it they are refused.
    #[cfg(not(feature = "tls"))]
    {
        let response = Proxy::new()
            .oneshot(get("https://10.0.0.7:8443/"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert!(
            rejection(&response)
                .cause()
                .unwrap()
                .to_string()
                .contains("tls")
        );
        let error = Proxy::to("https://10.0.0.7").unwrap_err();
        assert!(error.to_string().contains("`tls` feature"), "{error}");
    }

    let connect = Request::connect("10.0.0.7:443")
        .body(Body::empty())
        .unwrap();
    let response = Proxy::to("http://127.0.0.1:9")
        .unwrap()
        .oneshot(connect)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    for bad in ["/just/a/path", "http://10.0.0.7/base", "ftp://10.0.0.7"] {
        assert!(Proxy::to(bad).is_err(), "{bad}");
    }
    assert!(Proxy::builder().via(Some("not a token")).build().is_err());
}

#[tokio::test]
async fn a_slow_upstream_is_a_504_timeout() {
    // Real time: the proxy talks to a real socket, and paused time would
    // fire the timer before the loopback connect completes.
    let (got_tx, mut got) = tokio::sync::mpsc::unbounded_channel();
    let upstream = upstream(move |_: Request<Incoming>| {
        let _ = got_tx.send(());
        std::future::pending::<Response<Body>>()
    });
    let proxy = Proxy::builder()
        .upstream(format!("http://{upstream}").parse().unwrap())
        .response_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(10), proxy.oneshot(get("/slow")))
        .await
        .expect("the proxy gives up before the test does")
        .unwrap();
    let elapsed = started.elapsed();
    assert!(got.try_recv().is_ok(), "the upstream had the request");
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(rejection(&response).kind(), RejectionKind::UpstreamTimeout);
    assert_eq!(
        Outcome::from_response(&response),
        Outcome::Failure(Failure::Timeout)
    );
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(
        problem(response).await["detail"],
        "the upstream did not answer within 300 ms"
    );
}

#[tokio::test(start_paused = true)]
async fn the_response_timeout_runs_on_tokio_time() {
    // Paused time jumps straight to the deadline: a 30 s timeout in no
    // time, measured on the tokio clock.
    let upstream = upstream(|_: Request<Incoming>| std::future::pending::<Response<Body>>());
    let proxy = Proxy::builder()
        .upstream(format!("http://{upstream}").parse().unwrap())
        .response_timeout(Duration::from_secs(30))
        .connect_timeout(None)
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let response = proxy.oneshot(get("/slow")).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(rejection(&response).kind(), RejectionKind::UpstreamTimeout);
    assert_eq!(started.elapsed(), Duration::from_secs(30));
}

#[tokio::test]
async fn a_reset_before_the_headers_is_a_502_reset() {
    let upstream = raw_upstream(|mut stream| async move {
        // Read the request, then hang up without a word.
        read_head(&mut stream).await;
    });
    let proxy = Proxy::to(format!("http://{upstream}")).unwrap();
    let response = proxy.oneshot(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(rejection(&response).kind(), RejectionKind::UpstreamReset);
    assert!(rejection(&response).cause().is_some());
    assert_eq!(
        Outcome::from_response(&response),
        Outcome::Failure(Failure::Reset)
    );
}

/// An upstream that sends `head` and `part` of the body, then hangs up.
fn truncating_upstream(head: &'static str, part: &'static [u8]) -> std::net::SocketAddr {
    raw_upstream(move |mut stream| async move {
        read_head(&mut stream).await;
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(part).await.unwrap();
        stream.flush().await.unwrap();
    })
}

#[tokio::test]
async fn a_reset_mid_body_is_a_body_error_and_a_closed_connection() {
    const LENGTH_HEAD: &str = "HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n";
    const CHUNKED_HEAD: &str = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";

    // Straight from the service: the body ends in an error.
    let upstream = truncating_upstream(LENGTH_HEAD, &[b'x'; 1000]);
    let proxy = Proxy::to(format!("http://{upstream}")).unwrap();
    let response = proxy.oneshot(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.into_body().collect().await.is_err());

    // Through a server, to an HTTP client: the client sees an error, not a
    // clean end, for a content-length and for a chunked response.
    for (head, part) in [
        (LENGTH_HEAD, &b"0123456789"[..]),
        (CHUNKED_HEAD, &b"a\r\n0123456789\r\n"[..]),
    ] {
        let upstream = truncating_upstream(head, part);
        let front = serve_proxy(Proxy::to(format!("http://{upstream}")).unwrap());
        let stream = connect(front).await;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        let response = sender.send_request(get("/")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        let mut received = Vec::new();
        let end = loop {
            match body.frame().await {
                Some(Ok(frame)) => received.extend_from_slice(&frame.into_data().unwrap()),
                Some(Err(error)) => break Err(error),
                None => break Ok(()),
            }
        };
        assert!(end.is_err(), "a truncated body ended cleanly ({head:?})");
        assert_eq!(received, b"0123456789", "{head:?}");
    }

    // And as raw bytes: the chunked answer never gets its last chunk and
    // the connection is closed.
    let upstream = truncating_upstream(CHUNKED_HEAD, b"a\r\n0123456789\r\n");
    let front = serve_proxy(Proxy::to(format!("http://{upstream}")).unwrap());
    let mut stream = connect(front).await;
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the server closes the connection")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    assert!(raw.contains("0123456789"), "{raw}");
    assert!(!raw.ends_with("0\r\n\r\n"), "presented as complete: {raw}");
}

/// A request body that fails after its first chunk, as when a client goes
/// away mid-upload.
struct FailingBody(bool);

impl http_body::Body for FailingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.0 {
            return Poll::Ready(Some(Err("client went away".into())));
        }
        self.0 = true;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"first")))))
    }
}

#[tokio::test]
async fn a_failing_request_body_is_not_the_upstreams_fault() {
    let upstream = upstream(|request: Request<Incoming>| async move {
        let _ = request.into_body().collect().await;
        Response::new(Body::from("read it all"))
    });
    let proxy = Proxy::to(format!("http://{upstream}")).unwrap();
    let request = Request::post("/upload")
        .header("host", "x")
        .body(FailingBody(false))
        .unwrap();
    let response = proxy.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        Outcome::from_response(&response),
        Outcome::Refused(RejectionKind::BadRequest)
    );
    assert!(!Outcome::from_response(&response).is_breaker_failure());
}
