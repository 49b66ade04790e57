//! The connection server: protocols, peer address, limits, shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use meshgate::gateway::{Connections, Server, ServerConfig};
use meshgate::peer::PeerAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

/// Answers with the peer address the server put in the extensions.
async fn echo_peer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let peer = request
        .extensions()
        .get::<PeerAddr>()
        .map_or_else(|| "none".to_owned(), |p| p.0.to_string());
    Ok(Response::new(Full::new(Bytes::from(peer))))
}

struct Running {
    addr: SocketAddr,
    connections: Connections,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.expect("server task")
    }
}

async fn start<S>(config: ServerConfig, service: S) -> Running
where
    S: tower::Service<Request<Incoming>, Response = Response<Full<Bytes>>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let connections = server.connections();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(service, async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        connections,
        stop: Some(stop),
        task,
    }
}

/// Sends raw bytes and reads until the server closes or `limit` bytes arrive.
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn http1_request_carries_the_peer_address() {
    let server = start(ServerConfig::new(), tower::service_fn(echo_peer)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with(&local.to_string()), "{text}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn h2c_with_prior_knowledge_is_served() {
    let server = start(ServerConfig::new(), tower::service_fn(echo_peer)).await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let response = client
        .get(format!("http://{}/", server.addr).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"127.0.0.1:"), "{body:?}");
    drop(client);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn h2c_is_refused_when_disabled() {
    let server = start(
        ServerConfig::new().http2(false),
        tower::service_fn(echo_peer),
    )
    .await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let result = client
        .get(format!("http://{}/", server.addr).parse().unwrap())
        .await;
    assert!(result.is_err(), "an HTTP/1-only server must not speak h2");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_request_head_gets_431() {
    let server = start(
        ServerConfig::new().max_header_bytes(16 * 1024),
        tower::service_fn(echo_peer),
    )
    .await;
    let big = "x".repeat(20 * 1024);
    let request = format!("GET / HTTP/1.1\r\nhost: a\r\nx-big: {big}\r\n\r\n");
    let answer = raw_exchange(server.addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");

    // Just under the limit is served.
    let fits = "x".repeat(12 * 1024);
    let request =
        format!("GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\nx-fits: {fits}\r\n\r\n");
    let answer = raw_exchange(server.addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn too_many_headers_get_431() {
    let server = start(
        ServerConfig::new().max_headers(10),
        tower::service_fn(echo_peer),
    )
    .await;
    let mut request = String::from("GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n");
    for i in 0..12 {
        request.push_str(&format!("x-h{i}: v\r\n"));
    }
    request.push_str("\r\n");
    let answer = raw_exchange(server.addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");

    let answer = raw_exchange(
        server.addr,
        b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\nx-one: v\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    server.stop().await.unwrap();
}

/// A client that connects and sends nothing, or only part of a head, is cut
/// off at the header read timeout and not before.
#[tokio::test(start_paused = true)]
async fn slow_clients_are_closed_at_the_header_read_timeout() {
    let timeout = Duration::from_secs(10);
    let server = start(
        ServerConfig::new().header_read_timeout(timeout),
        tower::service_fn(echo_peer),
    )
    .await;

    for partial in [&b""[..], b"GE", b"GET / HTTP/1.1\r\nhost: a\r\nx-slow: "] {
        let started = tokio::time::Instant::now();
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(partial).await.unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut buf))
            .await
            .expect("the server closes the connection before 60 s");
        // Closed (EOF or reset), having sent no response for an incomplete head.
        assert!(
            read.is_err() || buf.is_empty() || buf.starts_with(b"HTTP/1.1 408"),
            "{buf:?}"
        );
        assert!(
            started.elapsed() >= timeout,
            "closed after {:?} for {partial:?}",
            started.elapsed()
        );
    }
    server.stop().await.unwrap();
}

/// Past `max_connections`, a new connection waits until one closes.
#[tokio::test(start_paused = true)]
async fn max_connections_holds_new_connections_until_one_closes() {
    let server = start(
        ServerConfig::new().max_connections(1),
        tower::service_fn(echo_peer),
    )
    .await;
    let request = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";

    let mut first = TcpStream::connect(server.addr).await.unwrap();
    first.write_all(request).await.unwrap();
    let mut buf = [0u8; 12];
    first.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    assert_eq!(server.connections.active(), 1);

    // The kernel completes the handshake, but the server does not serve it.
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    second.write_all(request).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(5), second.read_exact(&mut buf)).await;
    assert!(
        waited.is_err(),
        "the second connection was served past the limit"
    );
    assert_eq!(server.connections.active(), 1);

    drop(first);
    tokio::time::timeout(Duration::from_secs(5), second.read_exact(&mut buf))
        .await
        .expect("served once the first connection closed")
        .unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    drop(second);
    server.stop().await.unwrap();
}

/// Shutdown stops accepting, lets an in-flight request finish, then returns.
#[tokio::test]
async fn graceful_shutdown_completes_the_in_flight_request() {
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let service = {
        let (started, release) = (Arc::clone(&started), Arc::clone(&release));
        tower::service_fn(move |_request: Request<Incoming>| {
            let (started, release) = (Arc::clone(&started), Arc::clone(&release));
            async move {
                started.notify_one();
                release.notified().await;
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"finished"))))
            }
        })
    };
    let mut server = start(ServerConfig::new(), service).await;
    let addr = server.addr;
    let client = tokio::spawn(raw_exchange(
        addr,
        b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    ));
    started.notified().await;

    let _ = server.stop.take().unwrap().send(());
    // The listener closes while the request is still running.
    let mut refused = false;
    for _ in 0..1_000 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused, "the server kept accepting after shutdown");
    assert!(
        !server.task.is_finished(),
        "serve returned with a request in flight"
    );

    release.notify_one();
    let answer = client.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.ends_with("finished"), "{answer}");
    server.task.await.unwrap().unwrap();
}

/// A request that outlives the shutdown timeout is cut off and serve returns.
#[tokio::test(start_paused = true)]
async fn shutdown_timeout_closes_what_remains() {
    let started = Arc::new(Notify::new());
    let service = {
        let started = Arc::clone(&started);
        tower::service_fn(move |_request: Request<Incoming>| {
            let started = Arc::clone(&started);
            async move {
                started.notify_one();
                std::future::pending::<()>().await;
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
            }
        })
    };
    let server = start(
        ServerConfig::new().shutdown_timeout(Duration::from_secs(3)),
        service,
    )
    .await;
    let addr = server.addr;
    let client = tokio::spawn(raw_exchange(addr, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"));
    started.notified().await;

    let begun = tokio::time::Instant::now();
    server.stop().await.unwrap();
    assert!(
        begun.elapsed() >= Duration::from_secs(3),
        "{:?}",
        begun.elapsed()
    );
    let answer = client.await.unwrap();
    assert!(
        answer.is_empty(),
        "no response for a request cut off: {answer}"
    );
}

/// A client connection that sends each write at once. Without `TCP_NODELAY`
/// a small write that follows another unacknowledged one waits for the
/// server's delayed ACK (real time, tens of ms), while paused test time
/// jumps straight to the next timer: the header read deadline.
async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads one HTTP/1.1 response with a `content-length` body; `None` when the
/// server closed the connection (EOF or reset) before a complete response.
async fn read_response(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .map_or(0, |n| n.trim().parse().unwrap());
            if buf.len() >= end + 4 + length {
                assert_eq!(buf.len(), end + 4 + length, "one response at a time");
                return Some(String::from_utf8(buf).unwrap());
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Waits (in paused time) until the server closes `stream`, with nothing but
/// an optional `408` sent; returns how long that took.
async fn closed_after(stream: &mut TcpStream) -> Duration {
    let started = tokio::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(600), stream.read_to_end(&mut buf))
        .await
        .expect("the server closes the connection");
    assert!(
        read.is_err() || buf.is_empty() || buf.starts_with(b"HTTP/1.1 408"),
        "{buf:?}"
    );
    started.elapsed()
}

const KEEP_ALIVE: &[u8] = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";

/// Both connection builders: HTTP/1.1 alone, and HTTP/1.1 beside h2c.
fn slowloris_configs(timeout: Duration) -> [ServerConfig; 2] {
    [
        ServerConfig::new().header_read_timeout(timeout),
        ServerConfig::new()
            .header_read_timeout(timeout)
            .http2(false),
    ]
}

/// The tokio timer wheel's resolution: a deadline fires within 1 ms.
const TICK: Duration = Duration::from_millis(2);

/// A head not finished in time closes the connection at its deadline: on the
/// first request, and on a later keep-alive request once earlier requests
/// moved the deadline later (the connection's timer, armed for an older
/// deadline, must re-arm for the current one, not close early).
#[tokio::test(start_paused = true)]
async fn an_unfinished_head_closes_the_connection_at_its_deadline() {
    let timeout = Duration::from_secs(10);
    for config in slowloris_configs(timeout) {
        let server = start(config, tower::service_fn(echo_peer)).await;

        let mut first = connect(server.addr).await;
        first
            .write_all(b"GET / HTTP/1.1\r\nhost: a\r\nx-slow")
            .await
            .unwrap();
        let waited = closed_after(&mut first).await;
        assert!(waited >= timeout && waited <= timeout + TICK, "{waited:?}");

        let mut stream = connect(server.addr).await;
        stream.write_all(KEEP_ALIVE).await.unwrap();
        assert!(
            read_response(&mut stream)
                .await
                .unwrap()
                .starts_with("HTTP/1.1 200 ")
        );
        // Two more requests, 6 s apart: each head in time, each moving the
        // deadline 6 s past the one the timer was first armed for.
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            stream.write_all(KEEP_ALIVE).await.unwrap();
            let answer = read_response(&mut stream).await.expect("served in time");
            assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        }
        // Half a head, then nothing: closed 10 s after the last response.
        stream.write_all(b"GET / HTTP/1.1\r\nho").await.unwrap();
        let waited = closed_after(&mut stream).await;
        assert!(waited >= timeout && waited <= timeout + TICK, "{waited:?}");
        server.stop().await.unwrap();
    }
}

/// A keep-alive connection that sends nothing after a response is closed
/// once the header read timeout has passed since that response.
#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_is_closed_at_the_header_read_timeout() {
    let timeout = Duration::from_secs(10);
    for config in slowloris_configs(timeout) {
        let server = start(config, tower::service_fn(echo_peer)).await;
        let mut stream = connect(server.addr).await;
        for pause in [0, 3, 9] {
            tokio::time::sleep(Duration::from_secs(pause)).await;
            stream.write_all(KEEP_ALIVE).await.unwrap();
            let answer = read_response(&mut stream).await.expect("served in time");
            assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        }
        let waited = closed_after(&mut stream).await;
        assert!(waited >= timeout && waited <= timeout + TICK, "{waited:?}");
        server.stop().await.unwrap();
    }
}

/// A head that is complete just before its deadline is served, on the
/// first request and on later ones, even when it trickles in.
#[tokio::test(start_paused = true)]
async fn a_head_that_arrives_in_time_is_served() {
    let timeout = Duration::from_secs(10);
    let just_in_time = timeout - Duration::from_millis(10);
    for config in slowloris_configs(timeout) {
        let server = start(config, tower::service_fn(echo_peer)).await;
        let mut stream = connect(server.addr).await;
        for _ in 0..3 {
            stream.write_all(b"GET / HTTP/1.1\r\nho").await.unwrap();
            tokio::time::sleep(just_in_time / 2).await;
            stream.write_all(b"st: a\r\nx-slow: 1\r\n").await.unwrap();
            tokio::time::sleep(just_in_time / 2).await;
            stream.write_all(b"\r\n").await.unwrap();
            let answer = read_response(&mut stream).await.expect("served in time");
            assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        }
        // A whole head sent just before the deadline, after an idle wait.
        tokio::time::sleep(just_in_time).await;
        stream.write_all(KEEP_ALIVE).await.unwrap();
        let answer = read_response(&mut stream).await.expect("served in time");
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        drop(stream);
        server.stop().await.unwrap();
    }
}

/// A graceful shutdown closes an idle keep-alive connection at once, and
/// lets a keep-alive connection's in-flight request finish first.
#[tokio::test(start_paused = true)]
async fn shutdown_closes_idle_keep_alive_connections_and_finishes_busy_ones() {
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let service = {
        let (started, release) = (Arc::clone(&started), Arc::clone(&release));
        tower::service_fn(move |request: Request<Incoming>| {
            let (started, release) = (Arc::clone(&started), Arc::clone(&release));
            async move {
                if request.uri().path() == "/slow" {
                    started.notify_one();
                    release.notified().await;
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
            }
        })
    };
    let mut server = start(
        ServerConfig::new().header_read_timeout(Duration::from_secs(10)),
        service,
    )
    .await;
    let mut idle = connect(server.addr).await;
    let mut busy = connect(server.addr).await;
    for stream in [&mut idle, &mut busy] {
        for _ in 0..3 {
            stream.write_all(KEEP_ALIVE).await.unwrap();
            let answer = read_response(stream).await.expect("served");
            assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        }
    }
    busy.write_all(b"GET /slow HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    started.notified().await;

    let begun = tokio::time::Instant::now();
    let _ = server.stop.take().unwrap().send(());
    // The idle connection is closed without waiting for its header timeout.
    assert_eq!(closed_after(&mut idle).await, Duration::ZERO);
    assert!(!server.task.is_finished(), "a request is still in flight");

    release.notify_one();
    let answer = read_response(&mut busy)
        .await
        .expect("the in-flight request finishes");
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(answer.ends_with("done"), "{answer}");
    assert_eq!(closed_after(&mut busy).await, Duration::ZERO);
    server.task.await.unwrap().unwrap();
    assert_eq!(begun.elapsed(), Duration::ZERO);
}
