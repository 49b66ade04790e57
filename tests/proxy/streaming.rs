//! 100 MiB each way through the proxy, streamed, with the bytes in flight
//! measured.
//!
//! The bodies are generated on demand, one 62 KiB chunk per poll, and
//! checked byte for byte at the other end. "In flight" is what the producer
//! has handed out minus what the consumer has received: everything held by
//! hyper, the proxy and the sockets in between. A proxy that buffered a
//! body would hold all 100 MiB at some point; the tests assert that no more
//! than `MAX_IN_FLIGHT` (16 MiB) ever is; 1 to 6 MiB is what runs show.
//! The test sockets have 128 KiB buffers; the proxy's own upstream
//! connection keeps the kernel defaults (Linux autotunes its send buffer
//! up to 4 MiB), which is most of it and why the bound has room. What this proves: the proxy holds a
//! bounded window of the body, not the body. It does not measure the
//! process's memory.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use meshgate::Body;
use meshgate::proxy::Proxy;
use tokio::sync::oneshot;

use crate::support::{connect, serve_proxy, upstream};

const TOTAL: u64 = 100 * 1024 * 1024;
/// A multiple of the pattern's period, so every full chunk is the same bytes.
const CHUNK: usize = 251 * 256;
const MAX_IN_FLIGHT: u64 = 16 * 1024 * 1024;

/// Byte `n` of a body is `n % 251`: a shift, a loss or a duplicate shows.
fn pattern() -> &'static Bytes {
    static PATTERN: OnceLock<Bytes> = OnceLock::new();
    PATTERN.get_or_init(|| {
        (0..CHUNK)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>()
            .into()
    })
}

/// Producer and consumer counts, shared by both ends.
#[derive(Default)]
struct Flow {
    produced: AtomicU64,
    consumed: AtomicU64,
    max_in_flight: AtomicU64,
}

impl Flow {
    fn consume(&self, offset: &mut u64, data: &[u8]) {
        let mut rest = data;
        while !rest.is_empty() {
            let start = (*offset % 251) as usize;
            let len = rest.len().min(CHUNK - start);
            assert_eq!(
                &rest[..len],
                &pattern()[start..start + len],
                "corrupt at byte {offset}"
            );
            rest = &rest[len..];
            *offset += len as u64;
        }
        self.consumed.fetch_add(data.len() as u64, Ordering::SeqCst);
    }
}

/// A body of `TOTAL` pattern bytes, made one chunk per poll.
struct PatternBody {
    remaining: u64,
    flow: Arc<Flow>,
}

impl http_body::Body for PatternBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let len = self.remaining.min(CHUNK as u64);
        self.remaining -= len;
        let flow = &self.flow;
        let produced = flow.produced.fetch_add(len, Ordering::SeqCst) + len;
        let in_flight = produced - flow.consumed.load(Ordering::SeqCst);
        flow.max_in_flight.fetch_max(in_flight, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(pattern().slice(..len as usize)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// A body that waits for one message.
struct LaterBody(Option<oneshot::Receiver<Bytes>>);

impl http_body::Body for LaterBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let Some(rx) = self.0.as_mut() else {
            return Poll::Ready(None);
        };
        let message = std::task::ready!(Pin::new(rx).poll(cx));
        self.0 = None;
        Poll::Ready(message.ok().map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// An HTTP/1.1 client connection to `addr` with small socket buffers.
async fn client(addr: std::net::SocketAddr) -> hyper::client::conn::http1::SendRequest<Body> {
    let stream = connect(addr).await;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_upload_streams_through_with_bounded_memory() {
    let flow = Arc::new(Flow::default());
    let upstream_flow = Arc::clone(&flow);
    // The upstream answers at once and reads the body afterwards, so the
    // client sees the response before its upload ends, if nothing buffers.
    let upstream = upstream(move |request: Request<Incoming>| {
        let flow = Arc::clone(&upstream_flow);
        async move {
            let (tx, rx) = oneshot::channel();
            tokio::spawn(async move {
                let mut body = request.into_body();
                let mut offset = 0;
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame.unwrap().into_data() {
                        flow.consume(&mut offset, &data);
                    }
                }
                let _ = tx.send(Bytes::from(format!("received {offset}")));
            });
            Response::new(Body::new(LaterBody(Some(rx))))
        }
    });
    let proxy = serve_proxy(Proxy::to(format!("http://{upstream}")).unwrap());

    let mut sender = client(proxy).await;
    let request = Request::post("/upload")
        .header("host", "upload.example.com")
        .body(Body::new(PatternBody {
            remaining: TOTAL,
            flow: Arc::clone(&flow),
        }))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let produced_at_headers = flow.produced.load(Ordering::SeqCst);
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        produced_at_headers < TOTAL,
        "the response arrived only after the whole upload ({produced_at_headers} bytes)"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, format!("received {TOTAL}"));
    assert_eq!(flow.consumed.load(Ordering::SeqCst), TOTAL);
    let max = flow.max_in_flight.load(Ordering::SeqCst);
    eprintln!(
        "upload: response after {} KiB sent; at most {} KiB in flight",
        produced_at_headers / 1024,
        max / 1024
    );
    assert!(max <= MAX_IN_FLIGHT, "{max} bytes were in flight at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_download_streams_through_with_bounded_memory() {
    let flow = Arc::new(Flow::default());
    let upstream_flow = Arc::clone(&flow);
    let upstream = upstream(move |_: Request<Incoming>| {
        let flow = Arc::clone(&upstream_flow);
        async move {
            Response::new(Body::new(PatternBody {
                remaining: TOTAL,
                flow,
            }))
        }
    });
    let proxy = serve_proxy(Proxy::to(format!("http://{upstream}")).unwrap());

    let mut sender = client(proxy).await;
    let request = Request::get("/download")
        .header("host", "download.example.com")
        .body(Body::empty())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-length"],
        TOTAL.to_string().as_str()
    );
    let mut body = response.into_body();
    let mut offset = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            flow.consume(&mut offset, &data);
        }
    }
    assert_eq!(offset, TOTAL);
    let max = flow.max_in_flight.load(Ordering::SeqCst);
    eprintln!("download: at most {} KiB in flight", max / 1024);
    assert!(max <= MAX_IN_FLIGHT, "{max} bytes were in flight at once");
}
