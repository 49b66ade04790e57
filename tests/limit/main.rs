//! `RequestBodyLimitLayer` on its own and in front of the proxy over
//! loopback.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, Limited};
use meshgate::error::{Rejection, RejectionKind};
use meshgate::limit::RequestBodyLimitLayer;
use tower::{Layer, ServiceExt, service_fn};

/// A body of `left` frames of 1 KiB with no length announced.
struct Chunks {
    left: usize,
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; 1024])))))
    }
}

#[tokio::test]
async fn declared_length_over_the_limit_is_refused_without_calling_the_service() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let service = RequestBodyLimitLayer::new(4096).layer(service_fn(
        move |_request: Request<Limited<Full<Bytes>>>| {
            seen.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
        },
    ));
    let request = Request::post("/upload")
        .header("content-length", "4097")
        .body(Full::new(Bytes::from(vec![0u8; 4097])))
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let rejection = response.extensions().get::<Rejection>().unwrap();
    assert_eq!(rejection.kind(), RejectionKind::PayloadTooLarge);
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // At the limit it passes.
    let request = Request::post("/upload")
        .header("content-length", "4096")
        .body(Full::new(Bytes::from(vec![0u8; 4096])))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A body with no declared length fails once it passes the limit; the
/// service reading it sees the error, not a truncated body.
#[tokio::test]
async fn streamed_body_fails_past_the_limit() {
    let service = RequestBodyLimitLayer::new(4 * 1024).layer(service_fn(
        |request: Request<Limited<Chunks>>| async move {
            let read = request.into_body().collect().await;
            let status = match read {
                Ok(body) => {
                    assert_eq!(body.to_bytes().len(), 4 * 1024);
                    StatusCode::OK
                }
                Err(error) => {
                    assert!(error.is::<http_body_util::LengthLimitError>(), "{error}");
                    StatusCode::PAYLOAD_TOO_LARGE
                }
            };
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = status;
            Ok::<_, Infallible>(response)
        },
    ));
    let fits = Request::post("/").body(Chunks { left: 4 }).unwrap();
    let response = service.clone().oneshot(fits).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let over = Request::post("/").body(Chunks { left: 5 }).unwrap();
    let response = service.oneshot(over).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

/// In front of the proxy, a chunked upload past the limit is answered 413
/// by the proxy; one under it reaches the upstream whole.
#[cfg(all(feature = "proxy", feature = "gateway"))]
#[tokio::test]
async fn proxy_answers_413_when_the_limit_cuts_an_upload() {
    use axum::Router;
    use axum::routing::post;
    use meshgate::gateway::{Server, ServerConfig};
    use meshgate::proxy::Proxy;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let app = Router::new().route(
        "/",
        post(|body: Bytes| async move { body.len().to_string() }),
    );
    tokio::spawn(async move { axum::serve(upstream, app).await });

    let proxy = Proxy::to(
        format!("http://{upstream_addr}")
            .parse::<http::Uri>()
            .unwrap(),
    )
    .unwrap();
    let stack = RequestBodyLimitLayer::new(64 * 1024).layer(proxy);
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::new())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(stack, std::future::pending()));

    // Chunked, no content-length: only the stream tells the size.
    let send = |kib: usize| async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head =
            "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        let chunk = format!("400\r\n{}\r\n", "x".repeat(1024));
        for _ in 0..kib {
            if stream.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n").await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    let answer = send(63).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(&(63 * 1024).to_string()), "{answer}");
    let answer = send(200).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
}
