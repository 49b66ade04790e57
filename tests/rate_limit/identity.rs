//! The limiter reads the identity extensions (`meshgate::identity`) that
//! the authentication layers and the router insert: stacked directly, with
//! no copy step in between, consumers get their tier's quotas, JWT subjects
//! and routes their own counters.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
use meshgate::auth::api_key::ApiKeyLayer;
use meshgate::auth::jwt::{Algorithm, Issuer, JwtKey, JwtLayer};
use meshgate::auth::{Consumer, ConsumerStore};
use meshgate::rate_limit::{Clock, KeyBy, Quota, RateLimitLayer};
use meshgate::routing::{Route, Router};
use serde_json::json;
use tower::Layer;

use super::{Upstream, from, send};

const SECRET: &[u8] = b"identity-secret-0123456789-abcdef";

fn with_key(key: &str) -> Request<()> {
    let mut request = from("192.0.2.1");
    request
        .headers_mut()
        .insert("x-api-key", key.parse().unwrap());
    request
}

#[tokio::test(start_paused = true)]
async fn api_key_consumers_get_their_tiers_quotas() {
    let store = ConsumerStore::new();
    store
        .add_key(Consumer::new("acme").with_tier("pro"), "key-acme")
        .unwrap();
    store
        .add_key(Consumer::new("beta").with_tier("free"), "key-beta")
        .unwrap();
    store.add_key(Consumer::new("gamma"), "key-gamma").unwrap();
    let upstream = Upstream::default();
    let limited = RateLimitLayer::new([Quota::per_minute(3)])
        .clock(Clock::Tokio)
        .key_by(KeyBy::Consumer)
        .tier("pro", [Quota::per_minute(2)])
        .tier("free", [Quota::per_minute(1)])
        .exempt_consumer("gamma")
        .layer(upstream.clone().service());
    let service = ApiKeyLayer::new(store).layer(limited);

    let statuses = |key: &'static str, n: usize| {
        let service = service.clone();
        async move {
            let mut out = Vec::new();
            for _ in 0..n {
                out.push(send(&service, with_key(key)).await.status().as_u16());
            }
            out
        }
    };
    assert_eq!(statuses("key-acme", 3).await, [200, 200, 429]);
    assert_eq!(statuses("key-beta", 2).await, [200, 429]);
    assert_eq!(statuses("key-gamma", 5).await, [200; 5]);
    // Unauthenticated: refused by authentication, never counted.
    assert_eq!(statuses("wrong", 1).await, [401]);
    assert_eq!(upstream.calls(), 2 + 1 + 5);
}

fn bearer(subject: &str) -> Request<()> {
    let claims = json!({ "sub": subject, "exp": get_current_timestamp() + 600 });
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let mut request = from("192.0.2.1");
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test(start_paused = true)]
async fn jwt_subjects_are_counted_apart() {
    let upstream = Upstream::default();
    let limited = RateLimitLayer::new([Quota::per_minute(1)])
        .clock(Clock::Tokio)
        .key_by(KeyBy::JwtSubject)
        .layer(upstream.clone().service());
    let jwt = JwtLayer::new(Issuer::new().key(JwtKey::hmac(Algorithm::HS256, SECRET).unwrap()));
    let service = jwt.layer(limited);
    assert_eq!(send(&service, bearer("alice")).await.status(), 200);
    assert_eq!(send(&service, bearer("alice")).await.status(), 429);
    // Same client IP, another subject: its own counter.
    assert_eq!(send(&service, bearer("bob")).await.status(), 200);
    assert_eq!(upstream.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn routes_are_counted_by_the_name_the_router_reports() {
    let upstream = Upstream::default();
    let limited = RateLimitLayer::new([Quota::per_minute(100)])
        .clock(Clock::Tokio)
        .key_by(KeyBy::Route)
        .route("orders", [Quota::per_minute(1)])
        .layer(upstream.clone().service());
    let router = Router::builder()
        .route(Route::new("orders").path("/orders").to(limited.clone()))
        // An alternative path of the same logical route shares its limit.
        .route(
            Route::new("orders#2")
                .path("/v1/orders")
                .reported_as("orders")
                .to(limited.clone()),
        )
        .route(Route::new("users").path("/users").to(limited))
        .build()
        .unwrap();
    let get = |path: &str| {
        let mut request = from("192.0.2.1");
        *request.uri_mut() = path.parse().unwrap();
        request
    };
    let status = |response: Response<_>| response.status();
    assert_eq!(status(send(&router, get("/orders")).await), StatusCode::OK);
    assert_eq!(
        status(send(&router, get("/v1/orders")).await),
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..3 {
        assert_eq!(status(send(&router, get("/users")).await), StatusCode::OK);
    }
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(
        status(send(&router, get("/v1/orders")).await),
        StatusCode::OK
    );
    assert_eq!(upstream.calls(), 5);
}
