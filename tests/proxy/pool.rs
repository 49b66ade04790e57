//! Clones of a `Proxy` share one connection pool.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use meshgate::Body;
use meshgate::proxy::Proxy;
use tower::ServiceExt;

#[tokio::test]
async fn clones_share_one_pool_and_reuse_connections() {
    let (addr, accepted, _closed) = counting_upstream(b"pooled");
    let proxy = Proxy::to(format!("http://{addr}")).unwrap();
    for _ in 0..10 {
        // A fresh clone each time (`get` clones), as hyper makes one per
        // connection. Reading the body to its end hands the connection
        // back to the pool.
        let body = get(&proxy).await.into_body().collect().await.unwrap();
        assert_eq!(body.to_bytes(), "pooled");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // A proxy built separately has its own pool.
    let other = Proxy::to(format!("http://{addr}")).unwrap();
    get(&other).await.into_body().collect().await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// An upstream that counts the connections it accepted and reports each
/// one's end on the returned channel; `body` is what every answer carries.
fn counting_upstream(
    body: &'static [u8],
) -> (
    std::net::SocketAddr,
    Arc<AtomicUsize>,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let accepted = Arc::new(AtomicUsize::new(0));
    let (closed_tx, closed_rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = crate::support::listener();
    let addr = listener.local_addr().unwrap();
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let closed = closed_tx.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_: Request<Incoming>| async move {
                    Ok::<_, Infallible>(Response::new(Body::from(bytes::Bytes::from_static(body))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                let _ = closed.send(());
            });
        }
    });
    (addr, accepted, closed_rx)
}

/// A raw upstream that answers `200 ok` to the first request head of each
/// connection, before reading any body, and counts connections; then it
/// closes the connection (without saying so in the answer), or with
/// `keep_open` reads whatever else comes until the peer closes.
fn answering_upstream(keep_open: bool) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let addr = crate::support::raw_upstream(move |mut stream| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            crate::support::read_head(&mut stream).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            if keep_open {
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            } else {
                let _ = stream.shutdown().await;
            }
        }
    });
    (addr, accepted)
}

async fn get(proxy: &Proxy) -> Response<Body> {
    let response = proxy
        .clone()
        .oneshot(
            Request::get("/")
                .header("host", "x")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response
}

#[tokio::test]
async fn a_body_dropped_before_its_end_takes_its_connection_with_it() {
    static BIG: [u8; 1 << 20] = [b'x'; 1 << 20];
    let (addr, accepted, mut closed) = counting_upstream(&BIG);
    let proxy = Proxy::to(format!("http://{addr}")).unwrap();
    let response = get(&proxy).await;
    // Only the head was read: the connection is mid-message.
    drop(response);
    // Its connection closes, and the next request needs a new one.
    tokio::time::timeout(std::time::Duration::from_secs(10), closed.recv())
        .await
        .expect("the half-read connection is closed");
    let body = get(&proxy).await.into_body().collect().await.unwrap();
    assert_eq!(body.to_bytes().len(), BIG.len());
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // Read to its end, it is kept.
    get(&proxy).await.into_body().collect().await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn at_most_max_idle_connections_per_endpoint_are_kept() {
    let (addr, accepted, mut closed) = counting_upstream(b"ok");
    let proxy = Proxy::builder()
        .upstream(format!("http://{addr}").parse().unwrap())
        .pool_max_idle_per_host(2)
        .build()
        .unwrap();
    // Five exchanges at once need five connections.
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(get(&proxy).await);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
    for response in held {
        response.into_body().collect().await.unwrap();
    }
    // Three of them were closed rather than kept.
    for _ in 0..3 {
        tokio::time::timeout(std::time::Duration::from_secs(10), closed.recv())
            .await
            .expect("connections past the idle bound are closed");
    }
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(get(&proxy).await);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 8, "two reused, three new");
}

#[tokio::test]
async fn connections_idle_past_the_timeout_are_closed() {
    let (addr, accepted, mut closed) = counting_upstream(b"ok");
    let proxy = Proxy::builder()
        .upstream(format!("http://{addr}").parse().unwrap())
        .pool_idle_timeout(std::time::Duration::from_millis(200))
        .build()
        .unwrap();
    get(&proxy).await.into_body().collect().await.unwrap();
    // The sweep closes it, with no request coming.
    tokio::time::timeout(std::time::Duration::from_secs(10), closed.recv())
        .await
        .expect("the idle connection is closed after the idle timeout");
    get(&proxy).await.into_body().collect().await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_upstream_that_closes_kept_alive_connections_costs_no_failed_request() {
    // Answers one request per connection, without `connection: close`,
    // then closes: the pool keeps a connection that is already dead.
    let (addr, accepted) = answering_upstream(false);
    let proxy = Proxy::to(format!("http://{addr}")).unwrap();
    for round in 1..=5 {
        let body = get(&proxy).await.into_body().collect().await.unwrap();
        assert_eq!(body.to_bytes(), "ok", "round {round}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
}

/// A request body that sends one chunk, then never ends.
struct Stalled(bool);

impl http_body::Body for Stalled {
    type Data = bytes::Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Infallible>>> {
        if self.0 {
            return std::task::Poll::Pending;
        }
        self.0 = true;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from_static(
            b"part",
        )))))
    }
}

#[tokio::test]
async fn a_request_never_waits_behind_another_clients_unfinished_upload() {
    // Answers every request at once, before reading its body, and keeps
    // the connection open, reading whatever comes.
    let (addr, accepted) = answering_upstream(true);
    let proxy = Proxy::to(format!("http://{addr}")).unwrap();
    // The response ends while the connection is still sending a body
    // whose upload stalls.
    let response = proxy
        .clone()
        .oneshot(
            Request::post("/upload")
                .header("host", "x")
                .body(Body::new(Stalled(false)))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.unwrap();
    // The next request goes out on another connection at once.
    let answered = tokio::time::timeout(std::time::Duration::from_secs(5), get(&proxy))
        .await
        .expect("the request is not queued behind the stalled upload");
    answered.into_body().collect().await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}
