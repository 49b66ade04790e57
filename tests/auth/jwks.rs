use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode as AxumStatus;
use axum::routing::get;
use bytes::Bytes;
use http::StatusCode;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use meshgate::auth::jwt::{Algorithm, Issuer, Jwks, JwksDocument, JwtLayer};
use serde_json::json;
use tokio::sync::Notify;

use crate::jwt::{RSA_PRIVATE, assert_invalid, bearer, call, now, sign};

const EC_PRIVATE: &[u8] = include_bytes!("fixtures/ec_private.pem");

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap()
}

fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(EC_PRIVATE).unwrap()
}

fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

fn set(keys: Vec<Jwk>) -> String {
    serde_json::to_string(&JwkSet { keys }).unwrap()
}

fn token(alg: Algorithm, kid: &str, key: &EncodingKey) -> String {
    sign(
        alg,
        Some(kid),
        &json!({"sub": "u", "exp": now() + 600}),
        key,
    )
}

/// The in-process JWKS server's state: the document, a failure switch,
/// and how many requests it served.
#[derive(Default)]
struct Server {
    body: Mutex<String>,
    fail: AtomicBool,
    hits: AtomicUsize,
}

async fn serve_jwks(
    State(server): State<Arc<Server>>,
) -> (AxumStatus, [(&'static str, &'static str); 1], String) {
    server.hits.fetch_add(1, Ordering::SeqCst);
    if server.fail.load(Ordering::SeqCst) {
        return (
            AxumStatus::INTERNAL_SERVER_ERROR,
            [("cache-control", "no-store")],
            "oops".into(),
        );
    }
    let body = server.body.lock().unwrap().clone();
    (AxumStatus::OK, [("cache-control", "max-age=300")], body)
}

async fn start(server: Arc<Server>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/.well-known/jwks.json", get(serve_jwks))
        .with_state(server);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/.well-known/jwks.json")
}

#[tokio::test]
async fn http_jwks_rotation_on_unknown_kid_and_failure_keeps_keys() {
    let server = Arc::new(Server::default());
    *server.body.lock().unwrap() = set(vec![jwk(&rsa(), Algorithm::RS256, "k1")]);
    let url = start(Arc::clone(&server)).await;
    let jwks = Jwks::new(&url)
        .unwrap()
        .min_refresh_interval(Duration::from_millis(1));
    let layer = JwtLayer::new(Issuer::new().jwks(jwks.clone()));

    // First use fetches the set.
    let k1 = token(Algorithm::RS256, "k1", &rsa());
    assert_eq!(call(&layer, bearer(&k1)).await.status, StatusCode::OK);
    assert_eq!(jwks.keys().len(), 1);

    // The issuer rotates to an EC key: the unknown kid triggers a refresh.
    *server.body.lock().unwrap() = set(vec![jwk(&ec(), Algorithm::ES256, "k2")]);
    let k2 = token(Algorithm::ES256, "k2", &ec());
    // Polls a condition, bounded: the min interval is 1 ms of real time.
    let mut ok = false;
    for _ in 0..1000 {
        if call(&layer, bearer(&k2)).await.status == StatusCode::OK {
            ok = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(ok, "the rotated key was not picked up");
    // k1 is gone from the set now.
    assert_invalid(&layer, &k1, "no key is known for the token's kid").await;

    // The server fails: the last good set is kept.
    server.fail.store(true, Ordering::SeqCst);
    let before = jwks.fetch_count();
    assert_eq!(jwks.refresh().await, 1);
    assert_eq!(jwks.fetch_count(), before + 1);
    assert_eq!(call(&layer, bearer(&k2)).await.status, StatusCode::OK);
    // So is a set with no usable key.
    server.fail.store(false, Ordering::SeqCst);
    *server.body.lock().unwrap() =
        r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"HS256"}]}"#.into();
    jwks.refresh().await;
    assert_eq!(call(&layer, bearer(&k2)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn http_flood_of_random_kids_does_not_amplify() {
    let server = Arc::new(Server::default());
    *server.body.lock().unwrap() = set(vec![jwk(&rsa(), Algorithm::RS256, "k1")]);
    let url = start(Arc::clone(&server)).await;
    let jwks = Jwks::new(&url)
        .unwrap()
        .min_refresh_interval(Duration::from_secs(60));
    let layer = JwtLayer::new(Issuer::new().jwks(jwks.clone()));
    assert_eq!(jwks.refresh().await, 1);
    let hits = server.hits.load(Ordering::SeqCst);

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let layer = layer.clone();
        tasks.spawn(async move {
            let forged = token(Algorithm::ES256, &format!("random-{i}"), &ec());
            call(&layer, bearer(&forged)).await.status
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::UNAUTHORIZED);
    }
    // The set was fetched less than a minute ago: no fetch at all.
    assert_eq!(server.hits.load(Ordering::SeqCst), hits);
    assert_eq!(jwks.fetch_count(), 1);
}

/// A fetcher in memory, for paused time: counts calls, serves `body` with
/// `max_age`, and can be held until released.
#[derive(Default)]
struct Memory {
    body: Mutex<String>,
    max_age: Mutex<Option<Duration>>,
    calls: AtomicUsize,
    hold: AtomicBool,
    release: Notify,
}

fn memory_jwks(memory: &Arc<Memory>) -> Jwks {
    let memory = Arc::clone(memory);
    Jwks::with_fetcher("http://idp.test/jwks".parse().unwrap(), move |_uri| {
        let memory = Arc::clone(&memory);
        async move {
            memory.calls.fetch_add(1, Ordering::SeqCst);
            if memory.hold.load(Ordering::SeqCst) {
                memory.release.notified().await;
            }
            Ok(JwksDocument {
                body: Bytes::from(memory.body.lock().unwrap().clone()),
                max_age: *memory.max_age.lock().unwrap(),
            })
        }
    })
}

#[tokio::test(start_paused = true)]
async fn background_refresh_honours_max_age_within_bounds() {
    let memory = Arc::new(Memory::default());
    *memory.body.lock().unwrap() = set(vec![jwk(&ec(), Algorithm::ES256, "k1")]);
    *memory.max_age.lock().unwrap() = Some(Duration::from_secs(120));
    let jwks = memory_jwks(&memory)
        .min_refresh_interval(Duration::from_secs(30))
        .max_refresh_interval(Duration::from_secs(600));
    assert_eq!(jwks.refresh().await, 1);
    // The background task joins that first fetch, then waits max-age.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let first = jwks.fetch_count();
    assert_eq!(first, 1);
    tokio::time::sleep(Duration::from_secs(110)).await;
    assert_eq!(jwks.fetch_count(), first);
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(jwks.fetch_count(), first + 1);

    // A max-age above the upper bound is cut to it.
    *memory.max_age.lock().unwrap() = Some(Duration::from_secs(86_400));
    tokio::time::sleep(Duration::from_secs(125)).await;
    assert_eq!(jwks.fetch_count(), first + 2);
    // (t = 250 s; the last fetch was at 240 s, the next is at 840 s.)
    tokio::time::sleep(Duration::from_secs(580)).await;
    assert_eq!(jwks.fetch_count(), first + 2);
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(jwks.fetch_count(), first + 3);

    // A tiny max-age is raised to the lower bound (30 s). t = 850 s; the
    // fetch at 1 440 s reads max-age 1 s, so the next is at 1 470 s.
    *memory.max_age.lock().unwrap() = Some(Duration::from_secs(1));
    tokio::time::sleep(Duration::from_secs(605)).await;
    assert_eq!(jwks.fetch_count(), first + 4);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(jwks.fetch_count(), first + 4);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(jwks.fetch_count(), first + 5);
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_share_one_fetch_and_floods_wait_for_the_interval() {
    let memory = Arc::new(Memory::default());
    *memory.body.lock().unwrap() = set(vec![jwk(&ec(), Algorithm::ES256, "k1")]);
    let jwks = memory_jwks(&memory)
        .min_refresh_interval(Duration::from_secs(30))
        .refresh_interval(Duration::from_secs(3600));
    let layer = JwtLayer::new(Issuer::new().jwks(jwks.clone()));
    assert_eq!(jwks.refresh().await, 1);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let base = memory.calls.load(Ordering::SeqCst);

    // Within the interval: a flood of 1 000 unknown kids fetches nothing.
    let flood = |tag: &'static str| {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..1000 {
            let layer = layer.clone();
            tasks.spawn(async move {
                let t = token(Algorithm::ES256, &format!("{tag}-{i}"), &ec());
                call(&layer, bearer(&t)).await.status
            });
        }
        tasks
    };
    let mut tasks = flood("a");
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(memory.calls.load(Ordering::SeqCst), base);

    // After the interval, with the fetch held open: 1 000 concurrent
    // misses wait on one fetch.
    tokio::time::sleep(Duration::from_secs(31)).await;
    memory.hold.store(true, Ordering::SeqCst);
    *memory.body.lock().unwrap() = set(vec![
        jwk(&ec(), Algorithm::ES256, "k1"),
        jwk(&ec(), Algorithm::ES256, "b-7"),
    ]);
    let mut tasks = flood("b");
    // Bounded wait for the one fetch to start.
    for _ in 0..1000 {
        if memory.calls.load(Ordering::SeqCst) > base {
            break;
        }
        tokio::task::yield_now().await;
    }
    for _ in 0..1000 {
        tokio::task::yield_now().await;
    }
    assert_eq!(memory.calls.load(Ordering::SeqCst), base + 1);
    memory.hold.store(false, Ordering::SeqCst);
    memory.release.notify_waiters();
    let mut ok = 0;
    while let Some(status) = tasks.join_next().await {
        if status.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    // The one kid the new set holds got through after the shared fetch.
    assert_eq!(ok, 1);
    assert_eq!(memory.calls.load(Ordering::SeqCst), base + 1);
}
