//! The router serving real HTTP/1.1 on a loopback socket, through axum.

use axum::Extension;
use axum::body::Body as AxumBody;
use axum::routing::{get, post};
use http::Method;
use meshgate::routing::{MatchedRoute, Route, Router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Sends one raw HTTP/1.1 request and reads the whole answer (the request
/// says `Connection: close`): status, lower-cased head, body.
async fn exchange(addr: std::net::SocketAddr, raw: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn serves_real_http_on_loopback() {
    let upstream: axum::Router = axum::Router::new()
        .route(
            "/hello",
            get(|Extension(route): Extension<MatchedRoute>| async move {
                format!("hello via {}", route.name())
            }),
        )
        .route("/echo", post(|body: String| async move { body }));
    let router: Router<AxumBody> = Router::builder()
        .route(
            Route::new("api")
                .host("gw.test")
                .path_prefix("/api")
                .methods([Method::GET, Method::POST])
                .strip_prefix("/api")
                .to(upstream),
        )
        .build()
        .unwrap();
    let app = axum::Router::new().fallback_service(router);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let (status, _, body) = exchange(
        addr,
        "GET /api/hello HTTP/1.1\r\nHost: GW.test:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "hello via api"));

    let (status, _, body) = exchange(
        addr,
        "POST /api/echo HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 4\r\nConnection: close\r\n\r\nping",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "ping"));

    let (status, head, body) = exchange(
        addr,
        "DELETE /api/hello HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 405);
    assert!(head.contains("\r\nallow: get, post"), "{head}");
    assert!(body.contains("\"status\":405"), "{body}");

    let (status, head, body) = exchange(
        addr,
        "GET /api/hello HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert!(body.contains("\"status\":404"), "{body}");

    server.abort();
}
