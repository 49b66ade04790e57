//! The floor of a hyper-based HTTP/1.1 reverse proxy, for `scripts/loadtest`.
//!
//! `hyper_floor LISTEN UPSTREAM` — e.g. `hyper_floor 127.0.0.1:18085 127.0.0.1:18080`.
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
//! Built with the same allocator and runtime as the example gateway, so the
//! two figures differ only by meshgate's work.

#[global_allocator]
static ALLOCATOR: allocator::Allocator = allocator::Allocator;
#[path = "support/allocator.rs"]
mod allocator;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

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
        eprintln!("usage: hyper_floor LISTEN_ADDR UPSTREAM_ADDR");
        return ExitCode::from(2);
    };
    // The same runtime choice as the example gateway.
    let mut builder = match std::env::var("TOKIO_WORKER_THREADS").as_deref() {
        Ok("1") => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    match builder.enable_all().build() {
        Ok(runtime) => runtime.block_on(serve(listen, upstream)),
        Err(error) => {
            eprintln!("hyper_floor: cannot start the runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(listen: SocketAddr, upstream: SocketAddr) -> ExitCode {
    let listener = match TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("hyper_floor: cannot listen on {listen}: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("hyper_floor listening on {listen}, upstream {upstream}");
    loop {
        let Ok((downstream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(connection(downstream, upstream));
    }
}

/// Serves one downstream connection over one upstream connection.
async fn connection(downstream: TcpStream, upstream: SocketAddr) {
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
    let service = service_fn(move |request: Request<Incoming>| forward(sender.clone(), request));
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
/// bare 502 when the upstream connection fails.
async fn forward(
    sender: Arc<Mutex<SendRequest<Incoming>>>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
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
    Ok(match response {
        Some(response) => response.map(Either::Left),
        None => {
            let mut bad_gateway = Response::new(Either::Right(Empty::new()));
            *bad_gateway.status_mut() = StatusCode::BAD_GATEWAY;
            bad_gateway
        }
    })
}
