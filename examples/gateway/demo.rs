//! The demo upstreams the gateway starts when it runs its default config:
//! small axum services on loopback, in the same process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

/// A running demo service.
pub struct Demo {
    pub addr: SocketAddr,
}

/// Starts `users` (instance `n`), answering with who it is and what it saw.
pub async fn echo(service: &'static str, instance: u32) -> std::io::Result<Demo> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .fallback(move |uri: Uri, headers: HeaderMap| async move {
            Json(describe(service, instance, &uri, &headers))
        });
    serve(app).await
}

/// Starts the flaky service: under `/flaky` two requests in three fail
/// with 503 (a retry cures them); under `/breaker` every request fails with
/// 500 unless `?ok=1`; `?ms=N` delays the answer.
pub async fn flaky() -> std::io::Result<Demo> {
    let calls = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .fallback(handle_flaky)
        .with_state(calls);
    serve(app).await
}

#[derive(serde::Deserialize)]
struct FlakyQuery {
    ms: Option<u64>,
    ok: Option<u8>,
}

async fn handle_flaky(
    State(calls): State<Arc<AtomicU64>>,
    Query(query): Query<FlakyQuery>,
    uri: Uri,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    if let Some(ms) = query.ms {
        tokio::time::sleep(Duration::from_millis(ms.min(30_000))).await;
    }
    let n = calls.fetch_add(1, Ordering::Relaxed);
    let status = if uri.path().starts_with("/breaker") {
        if query.ok == Some(1) {
            StatusCode::OK
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    } else if n % 3 == 2 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(describe("flaky", 1, &uri, &headers)))
}

fn describe(service: &str, instance: u32, uri: &Uri, headers: &HeaderMap) -> Value {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    json!({
        "service": service,
        "instance": instance,
        "path": uri.path_and_query().map_or("/", |pq| pq.as_str()),
        "x-request-id": header("x-request-id"),
        "x-forwarded-for": header("x-forwarded-for"),
        "traceparent": header("traceparent"),
        "x-request-timeout-ms": header("x-request-timeout-ms"),
    })
}

async fn serve(app: Router) -> std::io::Result<Demo> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Demo { addr })
}
