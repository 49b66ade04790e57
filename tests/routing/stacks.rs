//! Each route holds its own stack: layers attach per route, and their
//! refusals come back through the router unchanged.
#![cfg(all(feature = "timeout", feature = "circuit-breaker"))]

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use meshgate::circuit_breaker::CircuitBreakerLayer;
use meshgate::error::{Rejection, RejectionKind};
use meshgate::routing::{MatchedRoute, Route, Router};
use meshgate::timeout::TimeoutLayer;
use tower::{ServiceBuilder, ServiceExt, service_fn};

#[tokio::test(start_paused = true)]
async fn timeout_and_breaker_attach_per_route() {
    let hang = service_fn(|_: Request<String>| async {
        std::future::pending::<()>().await;
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let fail = service_fn(|_: Request<String>| async {
        let mut response = Response::new(String::from("boom"));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        Ok::<_, Infallible>(response)
    });
    let router = Router::builder()
        .route(
            Route::new("slow")
                .path_prefix("/slow")
                .to(ServiceBuilder::new()
                    .layer(TimeoutLayer::new(Duration::from_millis(250)))
                    .service(hang)),
        )
        .route(
            Route::new("flaky")
                .path_prefix("/flaky")
                .to(ServiceBuilder::new()
                    .layer(CircuitBreakerLayer::new().consecutive_failures(2))
                    .service(fail)),
        )
        .build()
        .unwrap();
    let call = |path: &'static str| {
        let router = router.clone();
        async move {
            router
                .oneshot(Request::get(path).body(String::new()).unwrap())
                .await
                .unwrap()
        }
    };

    let response = call("/slow/x").await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        response.extensions().get::<Rejection>().unwrap().kind(),
        RejectionKind::Timeout
    );
    assert_eq!(
        response.extensions().get::<MatchedRoute>().unwrap().name(),
        "slow"
    );

    assert_eq!(
        call("/flaky").await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        call("/flaky").await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let response = call("/flaky").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.extensions().get::<Rejection>().unwrap().kind(),
        RejectionKind::CircuitOpen
    );
    // The other route's stack is its own: still timing out, not open.
    assert_eq!(call("/slow").await.status(), StatusCode::GATEWAY_TIMEOUT);
}
