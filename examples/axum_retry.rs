//! A flaky axum app made reliable with `RetryLayer`.
//!
//! The `/flaky` route answers `503 Service Unavailable` to two calls out of
//! three (and echoes the request body on the third); `/busy` always answers
//! `503` with `Retry-After: 30`. The retry layer
//! sends a failed GET (or a POST carrying `Idempotency-Key`) again after a
//! jittered backoff, replaying its body, and reports the attempts.
//!
//! Run it:
//!
//! ```text
//! cargo run --example axum_retry                  # listens on 127.0.0.1:8081
//! cargo run --example axum_retry -- 127.0.0.1:0   # any free port
//! ```
//!
//! Then try, in this order on a fresh start:
//!
//! ```text
//! curl -i localhost:8081/flaky
//! #   HTTP/1.1 200 OK, x-meshgate-attempts: 3 (two attempts got a 503)
//! curl -i -X POST -d 'order 7781' localhost:8081/flaky
//! #   HTTP/1.1 503, x-meshgate-attempts: 1: a POST without Idempotency-Key
//! #   is not retried
//! curl -i -X POST -H 'idempotency-key: 7781' -d 'order 7781' localhost:8081/flaky
//! #   HTTP/1.1 200 OK, x-meshgate-attempts: 2, body "order 7781" (replayed)
//! curl -i localhost:8081/busy
//! #   HTTP/1.1 503 at once, x-meshgate-attempts: 1: Retry-After: 30 is
//! #   longer than the 5 s cap, so the layer does not wait for it
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use meshgate::retry::RetryLayer;

/// Two calls out of three fail; the third echoes the request body.
async fn flaky(State(calls): State<Arc<AtomicU64>>, body: Bytes) -> impl IntoResponse {
    if calls.fetch_add(1, Ordering::Relaxed) % 3 != 2 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Bytes::from_static(b"try again\n"),
        )
    } else {
        (StatusCode::OK, body)
    }
}

async fn busy() -> impl IntoResponse {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "30")],
        "busy\n",
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".to_owned())
        .parse()?;
    let retry = RetryLayer::new()
        .max_attempts(3)
        .backoff(Duration::from_millis(25), Duration::from_millis(250))
        .retry_after_cap(Duration::from_secs(5))
        .attempts_header(true);
    let app = Router::new()
        .route("/flaky", get(flaky).post(flaky))
        .route("/busy", get(busy))
        .route_layer(retry)
        .with_state(Arc::new(AtomicU64::new(0)));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
