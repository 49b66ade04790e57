//! A demo service behind the meshgate layers that exist today.
//!
//! Until the gateway assembly lands (routing, proxy, YAML config), this
//! example serves a small axum app wrapped in the request-id, trace-context
//! and timeout layers, so the behaviour of each can be tried over real HTTP.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example gateway              # listens on 127.0.0.1:8080
//! cargo run --release --example gateway -- 127.0.0.1:0   # any free port
//! ```
//!
//! Then try:
//!
//! ```text
//! curl -i localhost:8080/
//! #   HTTP/1.1 200 OK, with a generated x-request-id echoed back
//! curl -i -H 'x-request-id: order-7781' localhost:8080/headers
//! #   the app sees x-request-id: order-7781, a fresh traceparent, and
//! #   x-request-timeout-ms: 2000 (the layer's budget)
//! curl -i -H 'x-request-timeout-ms: 300' 'localhost:8080/slow?ms=1000'
//! #   HTTP/1.1 504 Gateway Timeout after 300 ms, application/problem+json
//! curl -i -H 'grpc-timeout: 0S' localhost:8080/
//! #   HTTP/1.1 504 at once: the budget was already spent
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Query;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use meshgate::observe::{RequestIdLayer, TraceContextLayer};
use meshgate::timeout::TimeoutLayer;
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:8080")
        .parse()?;

    let app = Router::new()
        .route("/", get(|| async { "hello from behind meshgate\n" }))
        .route("/headers", get(echo_headers))
        .route("/slow", get(slow))
        .layer(
            ServiceBuilder::new()
                .layer(RequestIdLayer::new())
                .layer(TraceContextLayer::new())
                .layer(TimeoutLayer::new(Duration::from_secs(2))),
        );

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "meshgate demo listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// The request headers as the app sees them, after the layers.
async fn echo_headers(headers: HeaderMap) -> Json<BTreeMap<String, String>> {
    Json(
        headers
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect(),
    )
}

/// Answers after `ms` milliseconds (at most 10 s).
async fn slow(Query(query): Query<BTreeMap<String, u64>>) -> String {
    let ms = query.get("ms").copied().unwrap_or(1_000).min(10_000);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("slept {ms} ms\n")
}
