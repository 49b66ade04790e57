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
    let accepted = Arc::new(AtomicUsize::new(0));
    let listener = crate::support::listener();
    let addr = listener.local_addr().unwrap();
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Body::from("pooled")))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    let proxy = Proxy::to(format!("http://{addr}")).unwrap();
    for _ in 0..10 {
        // A fresh clone each time, as hyper makes one per connection.
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
        // Reading the body to its end hands the connection back to the pool.
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "pooled");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // A proxy built separately has its own pool.
    let other = Proxy::to(format!("http://{addr}")).unwrap();
    let response = other
        .oneshot(
            Request::get("/")
                .header("host", "x")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    response.into_body().collect().await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}
