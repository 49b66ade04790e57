//! The retry layer inside an axum `Router`, whose services have
//! `Error = Infallible`: in process, and behind a real socket.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::routing::{get, put};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use meshgate::retry::RetryLayer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

/// Fails the first call of each request with 503, then echoes the body.
async fn flaky(State(calls): State<Arc<AtomicUsize>>, body: Bytes) -> (StatusCode, Bytes) {
    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
        (StatusCode::SERVICE_UNAVAILABLE, Bytes::from_static(b"busy"))
    } else {
        (StatusCode::OK, body)
    }
}

fn app(calls: Arc<AtomicUsize>) -> Router {
    Router::new()
        .route("/echo", put(flaky).post(flaky))
        .route("/down", get(|| async { StatusCode::BAD_GATEWAY }))
        .route_layer(
            RetryLayer::new()
                .backoff(Duration::from_millis(1), Duration::from_millis(5))
                .attempts_header(true),
        )
        .with_state(calls)
}

/// A compile-time check that the stack keeps axum's contract.
fn assert_infallible<S>(_: &S)
where
    S: tower::Service<Request<Body>, Error = Infallible>,
{
}

#[tokio::test(start_paused = true)]
async fn inside_a_router_in_process() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(calls.clone());
    assert_infallible(&app);
    let request = Request::put("/echo").body(Body::from("payload")).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-meshgate-attempts"], "2");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"payload");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let response = app
        .oneshot(Request::get("/down").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(response.headers()["x-meshgate-attempts"], "3");
}

#[tokio::test]
async fn behind_a_real_socket_with_a_streamed_body() {
    let calls = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app(calls)).await.unwrap();
    });
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // A chunked POST with an Idempotency-Key, sent in three writes.
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nhost: test\r\nidempotency-key: a1\r\n\
              transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    for chunk in ["hello ", "streamed ", "world"] {
        let frame = format!("{:x}\r\n{chunk}\r\n", chunk.len());
        stream.write_all(frame.as_bytes()).await.unwrap();
        stream.flush().await.unwrap();
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers")
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("x-meshgate-attempts: 2"), "{answer}");
    assert!(answer.ends_with("hello streamed world"), "{answer}");
    server.abort();
}
