//! The floor of a hyper-based HTTP/1.1 reverse proxy, for `scripts/loadtest`.
//!
//! `hyper_floor LISTEN UPSTREAM [--headers]` — e.g. `hyper_floor 127.0.0.1:18085 127.0.0.1:18080`.
//!
//! Not a gateway: the least work a proxy built on hyper and tokio can do,
//! to show how much of the load bench's gap to nginx is the HTTP stack and
//! how much is meshgate's layers. Each downstream connection gets one
//! upstream connection of its own, opened when it arrives (no pool, no
//! balancing). Requests and responses pass through as hyper parsed them:
//! no routing, no header work (nginx and HAProxy in the bench add
//! `X-Forwarded-*`, `Via` and a request id; this does not, so its figure is
//! an upper bound for anything built on hyper), no limits, no timeouts. A
//! request the upstream connection cannot carry gets a bare 502.
//!
//! With `--headers` it also does, written by hand in the fewest steps, the
//! header work the bench's nginx config does: `X-Forwarded-For`,
//! `X-Forwarded-Proto` and `X-Forwarded-Host` set, `Connection` removed,
//! `Via` added both ways, and a random 32-hex-digit `X-Request-ID` sent
//! upstream and echoed to the client. That is the floor for the load
//! bench's routing row with the same header work as nginx.
//!
//! Built with the same allocator and runtime as the example gateway, so the
//! two figures differ only by meshgate's work.

#[global_allocator]
static ALLOCATOR: allocator::Allocator = allocator::Allocator;
#[path = "support/allocator.rs"]
mod allocator;

use std::cell::Cell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use http::header::{CONNECTION, HOST, HeaderName, HeaderValue, VIA};
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

type ProxyBody = Either<Incoming, Empty<Bytes>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(listen), Some(upstream)) = (
        args.first().and_then(|a| a.parse::<SocketAddr>().ok()),
        args.get(1).and_then(|a| a.parse::<SocketAddr>().ok()),
    ) else {
        eprintln!("usage: hyper_floor LISTEN_ADDR UPSTREAM_ADDR [--headers]");
        return ExitCode::from(2);
    };
    let headers = match args.get(2).map(String::as_str) {
        None => false,
        Some("--headers") => true,
        Some(other) => {
            eprintln!("hyper_floor: unknown argument {other:?}");
            return ExitCode::from(2);
        }
    };
    // The same runtime choice as the example gateway.
    let mut builder = match std::env::var("TOKIO_WORKER_THREADS").as_deref() {
        Ok("1") => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    match builder.enable_all().build() {
        Ok(runtime) => runtime.block_on(serve(listen, upstream, headers)),
        Err(error) => {
            eprintln!("hyper_floor: cannot start the runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(listen: SocketAddr, upstream: SocketAddr, headers: bool) -> ExitCode {
    let listener = match TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("hyper_floor: cannot listen on {listen}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let work = if headers {
        " with nginx's header work"
    } else {
        ""
    };
    println!("hyper_floor listening on {listen}, upstream {upstream}{work}");
    loop {
        let Ok((downstream, peer)) = listener.accept().await else {
            continue;
        };
        let peer = headers.then_some(peer);
        tokio::spawn(connection(downstream, upstream, peer));
    }
}

/// Serves one downstream connection over one upstream connection; with
/// `peer`, doing the header work for that client address.
async fn connection(downstream: TcpStream, upstream: SocketAddr, peer: Option<SocketAddr>) {
    let _ = downstream.set_nodelay(true);
    let Ok(upstream) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let Ok((sender, client)) = hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await
    else {
        return;
    };
    let sender = Arc::new(Mutex::new(sender));
    let forwarded_for = peer.and_then(|peer| HeaderValue::try_from(peer.ip().to_string()).ok());
    let service = service_fn(move |request: Request<Incoming>| {
        forward(sender.clone(), request, forwarded_for.clone())
    });
    let server = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(downstream), service);
    // The upstream connection runs in a task of its own, as a pool's do:
    // polling both from one task (`select!`) costs more, ≈ 31 k against
    // ≈ 28 k instructions a request under callgrind, because every wake-up
    // of either polls both. It ends when `sender` is dropped with the
    // server's service.
    tokio::spawn(client);
    let _ = server.await;
}

/// Sends `request` upstream and answers with the upstream's response, or a
/// bare 502 when the upstream connection fails; with `forwarded_for`, doing
/// nginx's header work on both.
async fn forward(
    sender: Arc<Mutex<SendRequest<Incoming>>>,
    mut request: Request<Incoming>,
    forwarded_for: Option<HeaderValue>,
) -> Result<Response<ProxyBody>, Infallible> {
    let request_id = forwarded_for.map(|client| {
        let id = request_id();
        let headers = request.headers_mut();
        headers.remove(CONNECTION);
        let host = headers.get(HOST).cloned();
        headers.insert(X_FORWARDED_FOR, client);
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        if let Some(host) = host {
            headers.insert(X_FORWARDED_HOST, host);
        }
        headers.insert(VIA, VIA_VALUE);
        headers.insert(X_REQUEST_ID, id.clone());
        id
    });
    // HTTP/1.1 serves one request at a time per connection, so the lock is
    // never contended; it is held only until the request is handed over.
    let sent = {
        let mut sender = sender.lock().await;
        match sender.ready().await {
            Ok(()) => Some(sender.send_request(request)),
            Err(_) => None,
        }
    };
    let response = match sent {
        Some(response) => response.await.ok(),
        None => None,
    };
    let mut response = match response {
        Some(response) => response.map(Either::Left),
        None => {
            let mut bad_gateway = Response::new(Either::Right(Empty::new()));
            *bad_gateway.status_mut() = StatusCode::BAD_GATEWAY;
            bad_gateway
        }
    };
    if let Some(id) = request_id {
        let headers = response.headers_mut();
        headers.append(VIA, VIA_VALUE);
        headers.insert(X_REQUEST_ID, id);
    }
    Ok(response)
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const VIA_VALUE: HeaderValue = HeaderValue::from_static("1.1 hyper_floor");

thread_local! {
    static STATE: Cell<u64> = const { Cell::new(0) };
}

/// 32 hex digits from a per-thread xorshift: no better than nginx's
/// `$request_id` needs for a bench, and as cheap as an id can be.
fn request_id() -> HeaderValue {
    let mut digits = [0u8; 32];
    STATE.with(|state| {
        let mut x = state.get();
        if x == 0 {
            x = std::process::id() as u64 | 1 << 40;
        }
        for half in digits.chunks_mut(16) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for (i, digit) in half.iter_mut().enumerate() {
                *digit = b"0123456789abcdef"[(x >> (i * 4) & 15) as usize];
            }
        }
        state.set(x);
    });
    HeaderValue::from_bytes(&digits).unwrap_or(HeaderValue::from_static("0"))
}
