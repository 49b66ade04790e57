//! The timeout layer in an axum app over a real loopback socket.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use meshgate::timeout::TimeoutLayer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Sends one HTTP/1.1 request and reads the whole answer (the server closes).
async fn exchange(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn a_504_problem_over_http_and_a_fast_route_untouched() {
    let app = Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route(
            "/slow",
            get(|| async {
                // Never finishes within the test's 200 ms budget.
                std::future::pending::<()>().await;
                "unreachable"
            }),
        )
        .layer(TimeoutLayer::new(Duration::from_millis(200)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let slow = exchange(
        addr,
        "GET /slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(
        slow.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"),
        "{slow}"
    );
    assert!(
        slow.contains("content-type: application/problem+json\r\n"),
        "{slow}"
    );
    assert!(
        slow.ends_with(
            r#""status":504,"detail":"the request did not complete within its 200 ms budget"}"#
        ),
        "{slow}"
    );

    let fast = exchange(
        addr,
        "GET /fast HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(fast.starts_with("HTTP/1.1 200 OK\r\n"), "{fast}");
    assert!(fast.ends_with("\r\n\r\nfast"), "{fast}");
}
