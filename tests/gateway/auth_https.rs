//! JWT issuers configured in YAML whose JWKS is served over HTTPS by an
//! in-process server with a private CA (`jwks_ca`), end to end.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use meshgate::config::Config;
use meshgate::gateway::Gateway;
use meshgate::tls::rustls;
use serde_json::json;
use tokio::net::TcpListener;

use super::assembly::{Running, named_upstream};
use super::auth::LISTENERS;

const RSA_PRIVATE: &[u8] = include_bytes!("../auth/fixtures/rsa_private.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../auth/fixtures/ec_private.pem");

/// A JWKS served over HTTPS: the document can be swapped, requests are
/// counted.
struct JwksServer {
    body: Mutex<String>,
    hits: AtomicUsize,
}

/// Serves `server` over HTTPS on 127.0.0.1 with a new self-signed
/// certificate for 127.0.0.1; returns the URL and the certificate's PEM.
async fn https_jwks(server: Arc<JwksServer>) -> (String, String) {
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
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (server, acceptor) = (Arc::clone(&server), acceptor.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_req| {
                    server.hits.fetch_add(1, Ordering::SeqCst);
                    let body = server.body.lock().unwrap().clone();
                    async move {
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (format!("https://{addr}/jwks.json"), certified.cert.pem())
}

fn jwks(key: &EncodingKey, alg: Algorithm, kid: &str) -> String {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap()
}

fn token(key: &EncodingKey, alg: Algorithm, kid: &str, sub: &str) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    let claims = json!({
        "sub": sub, "iss": "https://idp.test/", "exp": get_current_timestamp() + 600,
    });
    encode(&header, &claims, key).unwrap()
}

/// Writes `contents` to a new file in the temp dir, named for this test.
fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("meshgate-gw-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// `jwt_issuers[].jwks_url` with `https://` and a `jwks_ca` file: tokens
/// verify with the fetched key, a rotation is picked up on the unknown
/// kid, and two routes naming the issuer share one cache (one fetch).
#[tokio::test]
async fn https_jwks_from_config_with_a_private_ca() {
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
    let server = Arc::new(JwksServer {
        body: Mutex::new(jwks(&rsa, Algorithm::RS256, "k1")),
        hits: AtomicUsize::new(0),
    });
    let (url, ca_pem) = https_jwks(Arc::clone(&server)).await;
    let ca_path = temp_file("jwks-ca.pem", &ca_pem);
    let (upstream, calls) = named_upstream("orders").await;
    let yaml = format!(
        "{LISTENERS}
jwt_issuers:
  - name: corp
    issuer: https://idp.test/
    jwks_url: \"{url}\"
    jwks_ca: \"{}\"
    jwks_refresh_interval: 1h
    jwks_min_refresh_interval: 1ms
upstreams: [{{ name: orders, endpoints: [\"{upstream}\"] }}]
routes:
  - name: a
    match: {{ paths: [{{ prefix: /a }}] }}
    upstream: orders
    auth: {{ jwt: {{ issuers: [corp] }} }}
  - name: b
    match: {{ paths: [{{ prefix: /b }}] }}
    upstream: orders
    auth: {{ jwt: {{ issuers: [corp] }} }}
",
        ca_path.display()
    );
    let gateway = Running::start(&yaml).await;

    let (status, headers, _) = gateway.get("/a", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"meshgate\"");

    let k1 = format!("Bearer {}", token(&rsa, Algorithm::RS256, "k1", "user-1"));
    let (status, _, body) = gateway.get("/a/1", &[("authorization", &k1)]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "orders /a/1"));
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    // The other route uses the same cache: no second fetch.
    let (status, _, _) = gateway.get("/b/1", &[("authorization", &k1)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        1,
        "one cache per issuer"
    );

    // The IdP rotates to an EC key; the unknown kid refreshes the set.
    *server.body.lock().unwrap() = jwks(&ec, Algorithm::ES256, "k2");
    let k2 = format!("Bearer {}", token(&ec, Algorithm::ES256, "k2", "user-2"));
    let (status, _, _) = gateway.get("/b/2", &[("authorization", &k2)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
    // The retired key is refused on either route.
    let (status, headers, _) = gateway.get("/a/3", &[("authorization", &k1)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    gateway.stop().await;
    let _ = std::fs::remove_file(ca_path);
}

/// A JWKS server whose certificate the issuer's roots do not hold gives
/// no keys: tokens are refused 401, never let through.
#[tokio::test]
async fn https_jwks_with_the_wrong_ca_refuses_tokens() {
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    let server = Arc::new(JwksServer {
        body: Mutex::new(jwks(&rsa, Algorithm::RS256, "k1")),
        hits: AtomicUsize::new(0),
    });
    let (url, _) = https_jwks(Arc::clone(&server)).await;
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (upstream, calls) = named_upstream("orders").await;
    // The CA inline, as PEM text.
    let yaml = format!(
        "{LISTENERS}
jwt_issuers:
  - name: corp
    issuer: https://idp.test/
    jwks_url: \"{url}\"
    jwks_ca: |
{}
upstreams: [{{ name: orders, endpoints: [\"{upstream}\"] }}]
routes:
  - name: a
    upstream: orders
    auth: {{ jwt: {{ issuers: [corp] }} }}
",
        other
            .cert
            .pem()
            .lines()
            .map(|l| format!("      {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let gateway = Running::start(&yaml).await;
    let k1 = format!("Bearer {}", token(&rsa, Algorithm::RS256, "k1", "user-1"));
    let (status, _, _) = gateway.get("/", &[("authorization", &k1)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        0,
        "the handshake failed"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    gateway.stop().await;
}

/// A `jwks_ca` that cannot be read or holds no usable certificate stops
/// the build, naming the issuer's field.
#[test]
fn bad_jwks_ca_is_named_at_build() {
    let garbage = temp_file(
        "garbage-ca.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    );
    let yaml = format!(
        "jwt_issuers:
  - {{ name: a, issuer: x, jwks_url: \"https://idp.test/jwks\", jwks_ca: /nonexistent/ca.pem }}
  - {{ name: b, issuer: x, jwks_url: \"https://idp.test/jwks\", jwks_ca: \"{}\" }}
upstreams: [{{ name: up, endpoints: [\"127.0.0.1:1\"] }}]
routes: [{{ name: r, upstream: up, auth: {{ jwt: {{ issuers: [a, b] }} }} }}]
",
        garbage.display()
    );
    let errors = Gateway::from_config(Config::from_yaml_str(&yaml).unwrap()).unwrap_err();
    let problems = errors.problems();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("jwt_issuers[0].jwks_ca: cannot read /nonexistent/ca.pem")),
        "{errors}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("jwt_issuers[1].jwks_ca: JWKS roots: certificate PEM")),
        "{errors}"
    );
    let _ = std::fs::remove_file(garbage);
}
