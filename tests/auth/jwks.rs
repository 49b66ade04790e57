use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use meshgate::auth::jwt::{Algorithm, Issuer, Jwks, JwksDocument, JwtLayer};
use serde_json::json;
use tokio::net::TcpListener;
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

fn answer(server: &Server) -> http::Response<Full<Bytes>> {
    server.hits.fetch_add(1, Ordering::SeqCst);
    let (status, cache_control, body) = if server.fail.load(Ordering::SeqCst) {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "no-store",
            "oops".to_owned(),
        )
    } else {
        let body = server.body.lock().unwrap().clone();
        (StatusCode::OK, "max-age=300", body)
    };
    http::Response::builder()
        .status(status)
        .header("cache-control", cache_control)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// How the test server is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Http,
    #[cfg(feature = "tls")]
    Https,
}

/// A running JWKS server on 127.0.0.1: its URL and, over HTTPS, the PEM
/// of its self-signed certificate (the root a client must trust).
struct Running {
    url: String,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    ca_pem: String,
}

/// A TLS server configuration (nothing without the `tls` feature).
#[cfg(feature = "tls")]
type TlsConfig = Arc<meshgate::tls::rustls::ServerConfig>;
#[cfg(not(feature = "tls"))]
type TlsConfig = Infallible;

/// Serves `server` on 127.0.0.1 port 0, over HTTP/1.1, in TLS when
/// `tls` holds a server configuration.
async fn serve(server: Arc<Server>, tls: Option<TlsConfig>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    #[cfg(feature = "tls")]
    let acceptor = tls.clone().map(tokio_rustls::TlsAcceptor::from);
    #[cfg(not(feature = "tls"))]
    let _ = &tls;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let server = Arc::clone(&server);
            #[cfg(feature = "tls")]
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let response = answer(&server);
                    async move { Ok::<_, Infallible>(response) }
                });
                let http = hyper::server::conn::http1::Builder::new();
                #[cfg(feature = "tls")]
                if let Some(acceptor) = acceptor {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                    return;
                }
                let _ = http.serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    format!("{scheme}://{addr}/.well-known/jwks.json")
}

/// A self-signed certificate for 127.0.0.1 (an IP SAN) and the server
/// configuration presenting it.
#[cfg(feature = "tls")]
fn certificate() -> (String, Arc<meshgate::tls::rustls::ServerConfig>) {
    use meshgate::tls::rustls;
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let chain = meshgate::tls::certificates_from_pem(certified.cert.pem().as_bytes()).unwrap();
    let key = meshgate::tls::private_key_from_pem(certified.signing_key.serialize_pem().as_bytes())
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    (certified.cert.pem(), Arc::new(config))
}

/// Starts the JWKS server in `scheme`.
async fn start_jwks(server: Arc<Server>, https: bool) -> Running {
    if !https {
        return Running {
            url: serve(server, None).await,
            ca_pem: String::new(),
        };
    }
    #[cfg(feature = "tls")]
    {
        let (ca_pem, config) = certificate();
        Running {
            url: serve(server, Some(config)).await,
            ca_pem,
        }
    }
    #[cfg(not(feature = "tls"))]
    unreachable!("https needs the tls feature")
}

/// The client side of `scheme`: plain, or trusting the server's own
/// certificate.
async fn start(server: Arc<Server>, scheme: Scheme) -> (Running, Jwks) {
    let running = start_jwks(server, scheme != Scheme::Http).await;
    let jwks = match scheme {
        Scheme::Http => Jwks::new(&running.url).unwrap(),
        #[cfg(feature = "tls")]
        Scheme::Https => Jwks::with_roots_pem(&running.url, running.ca_pem.as_bytes()).unwrap(),
    };
    (running, jwks)
}

/// Rotation picked up on an unknown kid; a failed fetch or an unusable
/// set keeps the last good keys.
async fn rotation_on_unknown_kid_and_failure_keeps_keys(scheme: Scheme) {
    let server = Arc::new(Server::default());
    *server.body.lock().unwrap() = set(vec![jwk(&rsa(), Algorithm::RS256, "k1")]);
    let (_running, jwks) = start(Arc::clone(&server), scheme).await;
    let jwks = jwks.min_refresh_interval(Duration::from_millis(1));
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
    let hits = server.hits.load(Ordering::SeqCst);
    assert_eq!(jwks.refresh().await, 1);
    assert_eq!(jwks.fetch_count(), before + 1);
    assert_eq!(server.hits.load(Ordering::SeqCst), hits + 1, "it was asked");
    assert_eq!(call(&layer, bearer(&k2)).await.status, StatusCode::OK);
    // So is a set with no usable key.
    server.fail.store(false, Ordering::SeqCst);
    *server.body.lock().unwrap() =
        r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"HS256"}]}"#.into();
    jwks.refresh().await;
    assert_eq!(call(&layer, bearer(&k2)).await.status, StatusCode::OK);
}

/// 1 000 random kids within the interval fetch nothing.
async fn flood_of_random_kids_does_not_amplify(scheme: Scheme) {
    let server = Arc::new(Server::default());
    *server.body.lock().unwrap() = set(vec![jwk(&rsa(), Algorithm::RS256, "k1")]);
    let (_running, jwks) = start(Arc::clone(&server), scheme).await;
    let jwks = jwks.min_refresh_interval(Duration::from_secs(60));
    let layer = JwtLayer::new(Issuer::new().jwks(jwks.clone()));
    assert_eq!(jwks.refresh().await, 1);
    let hits = server.hits.load(Ordering::SeqCst);
    assert_eq!(hits, 1);

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
    // The good key still passes.
    let k1 = token(Algorithm::RS256, "k1", &rsa());
    assert_eq!(call(&layer, bearer(&k1)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn http_jwks_rotation_on_unknown_kid_and_failure_keeps_keys() {
    rotation_on_unknown_kid_and_failure_keeps_keys(Scheme::Http).await;
}

#[tokio::test]
async fn http_flood_of_random_kids_does_not_amplify() {
    flood_of_random_kids_does_not_amplify(Scheme::Http).await;
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn https_jwks_rotation_on_unknown_kid_and_failure_keeps_keys() {
    rotation_on_unknown_kid_and_failure_keeps_keys(Scheme::Https).await;
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn https_flood_of_random_kids_does_not_amplify() {
    flood_of_random_kids_does_not_amplify(Scheme::Https).await;
}

/// A server whose certificate is not trusted gives no keys: the handshake
/// fails (Mozilla's roots do not hold a self-signed test certificate, nor
/// does another CA), the request is refused 401, and a trusted client
/// still works against the same server.
#[cfg(feature = "tls")]
#[tokio::test]
async fn https_jwks_with_an_untrusted_certificate_gives_no_keys() {
    let server = Arc::new(Server::default());
    *server.body.lock().unwrap() = set(vec![jwk(&rsa(), Algorithm::RS256, "k1")]);
    let running = start_jwks(Arc::clone(&server), true).await;
    let k1 = token(Algorithm::RS256, "k1", &rsa());

    let other_ca = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    for jwks in [
        Jwks::new(&running.url).unwrap(),
        Jwks::with_roots_pem(&running.url, other_ca.cert.pem().as_bytes()).unwrap(),
    ] {
        assert_eq!(jwks.refresh().await, 0);
        assert_eq!(jwks.fetch_count(), 1);
        let layer = JwtLayer::new(Issuer::new().jwks(jwks));
        assert_invalid(&layer, &k1, "no key is known for the token's kid").await;
    }
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        0,
        "no request got through"
    );

    let trusted = Jwks::with_roots_pem(&running.url, running.ca_pem.as_bytes()).unwrap();
    assert_eq!(trusted.refresh().await, 1);
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

/// Without the `tls` feature an https JWKS URL is refused when it is
/// built, with the reason.
#[cfg(not(feature = "tls"))]
#[test]
fn https_jwks_needs_the_tls_feature() {
    let error = Jwks::new("https://idp.test/jwks").unwrap_err();
    assert!(error.to_string().contains("`tls` cargo feature"), "{error}");
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
