//! Load shedding: at most N requests of a key in flight, 503 at once past it.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response};
use meshgate::error::{Rejection, RejectionKind};
use meshgate::rate_limit::{Clock, Quota, RateLimitLayer};
use tokio::sync::Semaphore;
use tower::{Layer, ServiceExt, service_fn};

use super::from;

#[tokio::test(start_paused = true)]
async fn load_shedding_answers_503_at_once() {
    // Each inner call waits for a permit the test hands out.
    let gate = Arc::new(Semaphore::new(0));
    let inner_gate = gate.clone();
    let service = RateLimitLayer::new([Quota::per_minute(100)])
        .clock(Clock::Tokio)
        .max_in_flight(2)
        .layer(service_fn(move |_: Request<()>| {
            let gate = inner_gate.clone();
            async move {
                gate.acquire().await.unwrap().forget();
                Ok::<_, Infallible>(Response::new(String::new()))
            }
        }));
    let first = tokio::spawn(service.clone().oneshot(from("192.0.2.1")));
    let second = tokio::spawn(service.clone().oneshot(from("192.0.2.1")));
    // Let both reach the inner service (bounded: they only need polling).
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let shed = service.clone().oneshot(from("192.0.2.1")).await.unwrap();
    assert_eq!(shed.status(), 503);
    assert_eq!(
        shed.extensions().get::<Rejection>().map(Rejection::kind),
        Some(RejectionKind::Overloaded)
    );
    // Another client is not affected.
    let other = tokio::spawn(service.clone().oneshot(from("192.0.2.2")));
    gate.add_permits(1);
    let done = first.await.unwrap().unwrap();
    assert_eq!(done.status(), 200);
    // One slot free again: the next request of the first client goes in;
    // the shed request charged no quota (r counts 3 allowed so far).
    let third = tokio::spawn(service.clone().oneshot(from("192.0.2.1")));
    gate.add_permits(3);
    assert_eq!(second.await.unwrap().unwrap().status(), 200);
    let third = third.await.unwrap().unwrap();
    assert_eq!(third.status(), 200);
    assert_eq!(third.headers()["ratelimit"], "\"minute\";r=97;t=2");
    assert_eq!(other.await.unwrap().unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_request_frees_its_slot() {
    let service = RateLimitLayer::new([])
        .clock(Clock::Tokio)
        .max_in_flight(1)
        .layer(service_fn(|_: Request<()>| async {
            std::future::pending::<()>().await;
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let pending = tokio::spawn(service.clone().oneshot(from("192.0.2.1")));
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        service
            .clone()
            .oneshot(from("192.0.2.1"))
            .await
            .unwrap()
            .status(),
        503
    );
    pending.abort();
    assert!(pending.await.unwrap_err().is_cancelled());
    let again = tokio::spawn(service.clone().oneshot(from("192.0.2.1")));
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!again.is_finished(), "the slot was not freed");
    again.abort();
}
