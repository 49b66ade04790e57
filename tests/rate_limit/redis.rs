//! The Redis backend against a real `redis-server` on a free loopback port
//! ([`RedisServer`]).

use std::time::Duration;

use http::StatusCode;
use meshgate::error::{Rejection, RejectionKind};
use meshgate::rate_limit::{OnRedisError, Quota, RateLimitLayer, RedisBackend};
use tower::Layer;

use super::redis_server::RedisServer;
use super::{Upstream, from, send};

#[tokio::test]
async fn two_gateways_share_one_limit() {
    let redis = RedisServer::start();
    let limits = RateLimitLayer::new([Quota::per_minute(100)]);
    let upstream = Upstream::default();
    let a = limits
        .redis(RedisBackend::new(&redis.url()).unwrap().prefix("two"))
        .layer(upstream.clone().service());
    let b = RateLimitLayer::new([Quota::per_minute(100)])
        .redis(RedisBackend::new(&redis.url()).unwrap().prefix("two"))
        .layer(upstream.clone().service());
    let mut allowed = 0;
    for i in 0..300 {
        let service = if i % 2 == 0 { &a } else { &b };
        let response = send(service, from("192.0.2.1")).await;
        match response.status() {
            StatusCode::OK => {
                allowed += 1;
                assert_eq!(
                    response.headers()["ratelimit-policy"],
                    "\"minute\";q=100;w=60"
                );
            }
            StatusCode::TOO_MANY_REQUESTS => {
                let retry: u64 = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=60).contains(&retry), "retry-after {retry}");
            }
            other => panic!("request {i}: {other}"),
        }
    }
    // One more may have been replenished (one per 600 ms) during the run.
    assert!((100..=101).contains(&allowed), "{allowed} allowed");
    assert_eq!(upstream.calls(), allowed);
    // Another client has its own counter.
    assert_eq!(send(&a, from("192.0.2.2")).await.status(), 200);
}

#[tokio::test]
async fn redis_down_fails_open_closed_or_local_then_recovers() {
    let mut redis = RedisServer::start();
    let layer = |on_error| {
        RateLimitLayer::new([Quota::per_minute(2)])
            .redis(
                RedisBackend::new(&redis.url())
                    .unwrap()
                    .prefix(&format!("down-{on_error:?}"))
                    .timeout(Duration::from_millis(200))
                    .on_error(on_error),
            )
            .layer(Upstream::default().service())
    };
    let open = layer(OnRedisError::Allow);
    let closed = layer(OnRedisError::Deny);
    let local = layer(OnRedisError::Local);
    for service in [&open, &closed, &local] {
        let response = send(service, from("192.0.2.1")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["ratelimit"], "\"minute\";r=1;t=30");
    }

    redis.kill();
    for _ in 0..5 {
        let response = send(&open, from("192.0.2.1")).await;
        assert_eq!(response.status(), 200, "fail open");
        assert!(response.headers().get("ratelimit").is_none());
        let response = send(&closed, from("192.0.2.1")).await;
        assert_eq!(response.status(), 503, "fail closed");
        assert_eq!(
            response
                .extensions()
                .get::<Rejection>()
                .map(Rejection::kind),
            Some(RejectionKind::Overloaded)
        );
    }
    // The local fallback has its own counters: 2 a minute.
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(send(&local, from("192.0.2.1")).await.status().as_u16());
        }
        v
    };
    assert_eq!(statuses, [200, 200, 429]);

    // Back up (empty): the Redis counters apply again once each
    // connection has reconnected in the background.
    redis.spawn();
    let first = until_redis_answers(&closed).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["ratelimit"], "\"minute\";r=1;t=30");
    assert_eq!(send(&closed, from("192.0.2.1")).await.status(), 200);
    assert_eq!(send(&closed, from("192.0.2.1")).await.status(), 429);
    let first = until_redis_answers(&open).await;
    assert_eq!(first.headers()["ratelimit"], "\"minute\";r=1;t=30");
}

/// Polls (bounded) until a response carries Redis' `RateLimit` header.
async fn until_redis_answers<S, B>(service: &S) -> http::Response<B>
where
    S: tower::Service<
            http::Request<()>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone,
{
    for _ in 0..200 {
        let response = send(service, from("192.0.2.1")).await;
        if response.headers().contains_key("ratelimit") {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no recovery within 5 s of Redis coming back");
}
