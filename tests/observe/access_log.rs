//! `AccessLogLayer` events as a JSON log subscriber writes them.

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response};
use meshgate::error::{Rejection, RejectionKind};
use meshgate::observe::{AccessLogLayer, RequestIdLayer};
use meshgate::peer::PeerAddr;
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};

use crate::captured_log::Captured;

async fn upstream(request: Request<()>) -> Result<Response<String>, Infallible> {
    match request.uri().path() {
        "/limited" => Ok(Rejection::new(RejectionKind::RateLimited)
            .into_response()
            .map(|_| String::new())),
        "/hang" => std::future::pending().await,
        _ => {
            tokio::time::sleep(Duration::from_millis(40)).await;
            let mut response = Response::new("hello".to_owned());
            response
                .headers_mut()
                .insert("content-length", "5".parse().unwrap());
            Ok(response)
        }
    }
}

#[tokio::test(start_paused = true)]
async fn one_json_event_per_request_without_the_query() {
    let captured = Captured::default();
    let _guard = captured.set_default();

    let service = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(AccessLogLayer::new())
        .service(service_fn(upstream));

    let mut request = Request::builder()
        .uri("/users/7?token=secret")
        .header("x-request-id", "order-7781")
        .header("user-agent", "curl/8.5")
        .body(())
        .unwrap();
    request
        .extensions_mut()
        .insert(PeerAddr("192.0.2.9:4000".parse().unwrap()));
    service.clone().oneshot(request).await.unwrap();
    let limited = Request::builder().uri("/limited").body(()).unwrap();
    service.clone().oneshot(limited).await.unwrap();
    let hang = Request::builder().uri("/hang").body(()).unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(1), service.clone().oneshot(hang))
            .await
            .is_err()
    );

    let events = captured.events();
    assert_eq!(events.len(), 3, "{events:?}");
    let first = &events[0];
    assert_eq!(first["target"], "meshgate::access");
    assert_eq!(first["level"], "INFO");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/users/7", "the query stays out of the log");
    assert_eq!(first["status"], 200);
    assert_eq!(first["duration_ms"], 40.0);
    assert_eq!(first["request_id"], "order-7781");
    assert_eq!(first["peer"], "192.0.2.9:4000");
    assert_eq!(first["user_agent"], "curl/8.5");
    assert_eq!(first["bytes"], 5);
    assert_eq!(first["dropped"], false);
    assert!(
        !captured
            .events()
            .iter()
            .any(|e| e.to_string().contains("secret"))
    );

    assert_eq!(events[1]["status"], 429);
    assert_eq!(events[1]["rejection"], "rate_limited");
    assert_eq!(events[2]["path"], "/hang");
    assert_eq!(events[2]["status"], 0);
    assert_eq!(events[2]["dropped"], true);
}

#[tokio::test]
async fn query_is_logged_when_asked() {
    let captured = Captured::default();
    let _guard = captured.set_default();
    let service = AccessLogLayer::new()
        .with_query(true)
        .layer(service_fn(upstream));
    let request = Request::builder().uri("/search?q=shoes").body(()).unwrap();
    tokio::time::pause();
    service.oneshot(request).await.unwrap();
    assert_eq!(captured.events()[0]["path"], "/search?q=shoes");
}
