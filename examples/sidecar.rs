//! Two services, each behind its own meshgate sidecar, calling each other
//! over mutual TLS with SPIFFE identities — a service mesh on loopback.
//!
//! At start-up the example makes a throw-away CA (`rcgen`) and three
//! workload certificates (each with a SPIFFE ID as URI SAN and its service
//! name as DNS SAN):
//!
//! * `web` (service A, an axum app) calls `reviews.default.svc` through its
//!   sidecar's outbound listener, in plain HTTP; the outbound accepts B's
//!   sidecar only by its SPIFFE ID (`…/sa/reviews`, Istio's secure naming);
//! * `reviews` (service B, an axum app) is behind a sidecar whose inbound
//!   listener is STRICT mTLS with an authorization policy that allows only
//!   `spiffe://mesh.example/ns/default/sa/web`; B fails its first call with
//!   a 503, once;
//! * `intruder` has a valid certificate of the same CA but is not allowed.
//!
//! Every listener is on 127.0.0.1 port 0. The example then checks, and
//! prints:
//!
//! 1. A → A's outbound → (mTLS) → B's inbound → B: `200`, after one retry
//!    by A's outbound (`x-meshgate-attempts: 2`, B saw 2 calls), and B's
//!    answer names the caller identity B's sidecar verified (the header A
//!    tried to spoof is replaced);
//! 2. intruder → its outbound → B's inbound: `403` problem+json, and B's
//!    application was not called;
//! 3. a host that names no service: `404`;
//! 4. B's admin `/metrics` counts the call with `direction="inbound"` and
//!    the caller's `peer_identity`.
//!
//! Run it (it runs to completion by itself):
//!
//! ```text
//! cargo run --example sidecar
//! ```
//!
//! Expected output (ports vary):
//!
//! ```text
//! B (reviews) app on 127.0.0.1:41859, sidecar inbound (mTLS) 127.0.0.1:38039
//! A (web) sidecar outbound 127.0.0.1:45999, intruder outbound 127.0.0.1:36721
//! [ok] A -> B: 200, attempts 2, B answered: reviews for product 7, caller spiffe://mesh.example/ns/default/sa/web
//! [ok] intruder -> B: 403 application/problem+json {"type":"about:blank","title":"Forbidden","status":403,"detail":"access denied by policy"}
//! [ok] unknown host: 404
//! [ok] B's /metrics: meshgate_requests_total{service="reviews",direction="inbound",peer_identity="spiffe://mesh.example/ns/default/sa/web",method="GET",status="2xx"} 1
//! all checks passed
//! ```
//!
//! It exits with status 0 when every check holds and 1 otherwise, so CI
//! can run it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use meshgate::auth::authz::AuthzRule;
use meshgate::retry::RetryLayer;
use meshgate::sidecar::{OutboundService, Sidecar, SidecarConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};
use tokio::net::TcpListener;

const TRUST_DOMAIN: &str = "mesh.example";
const REVIEWS: &str = "reviews.default.svc";

/// A workload certificate chain and key, PEM.
struct Workload {
    chain_pem: String,
    key_pem: String,
}

fn spiffe(sa: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/default/sa/{sa}")
}

/// A throw-away CA and a function that issues workload certificates.
fn mesh_ca() -> (String, impl Fn(&str, &str) -> Workload) {
    let ca_key = KeyPair::generate().expect("key generation");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "meshgate example CA");
    let ca = params.self_signed(&ca_key).expect("self-signed CA");
    let issuer = Issuer::new(params, ca_key);
    let issue = move |sa: &str, service: &str| {
        let key = KeyPair::generate().expect("key generation");
        let mut params = CertificateParams::new(vec![service.to_owned()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, sa);
        params
            .subject_alt_names
            .push(SanType::URI(spiffe(sa).try_into().expect("a valid URI")));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &issuer).expect("signed leaf");
        Workload {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    };
    (ca.pem(), issue)
}

fn sidecar_config(ca_pem: &str, workload: &Workload, app: SocketAddr) -> SidecarConfig {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    SidecarConfig::new()
        .certificate_pem(workload.chain_pem.clone(), workload.key_pem.clone())
        .trust_bundle_pem(ca_pem.to_owned())
        .app_addr(app)
        .inbound_addr(any)
        .outbound_addr(any)
        .admin_addr(any)
}

/// Starts a sidecar; returns (inbound, outbound, admin) addresses.
async fn start_sidecar(config: SidecarConfig) -> (SocketAddr, SocketAddr, SocketAddr) {
    let bound = Sidecar::new(config)
        .expect("a valid sidecar config")
        .bind()
        .await
        .expect("bind");
    let addrs = (
        bound.inbound_addr(),
        bound.outbound_addr(),
        bound.admin_addr(),
    );
    tokio::spawn(bound.serve(std::future::pending()));
    addrs
}

/// B: lists reviews, naming the caller its sidecar verified; the first
/// call fails with 503 (an injected failure).
async fn reviews(
    State(calls): State<Arc<AtomicUsize>>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
        return (StatusCode::SERVICE_UNAVAILABLE, "warming up".to_owned());
    }
    let caller = headers
        .get("x-meshgate-peer-identity")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("nobody");
    (
        StatusCode::OK,
        format!("reviews for product 7, caller {caller}"),
    )
}

/// An answer: status, `x-meshgate-attempts`, content type and body.
struct Answer {
    status: StatusCode,
    attempts: String,
    content_type: String,
    body: String,
}

/// A plain-HTTP call to `outbound` with `Host: host`, as an application
/// makes through its sidecar.
async fn call(outbound: SocketAddr, host: &str, spoof: Option<&str>) -> Answer {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request =
        http::Request::get(format!("http://{outbound}/reviews/7")).header("host", host);
    if let Some(identity) = spoof {
        request = request.header("x-meshgate-peer-identity", identity);
    }
    let response = match client
        .request(request.body(Empty::new()).expect("a request"))
        .await
    {
        Ok(response) => response,
        Err(error) => {
            return Answer {
                status: StatusCode::BAD_GATEWAY,
                attempts: String::new(),
                content_type: String::new(),
                body: format!("call failed: {error}"),
            };
        }
    };
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (status, attempts, content_type) = (
        response.status(),
        header("x-meshgate-attempts"),
        header("content-type"),
    );
    let body = match response.into_body().collect().await {
        Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        Err(error) => format!("body failed: {error}"),
    };
    Answer {
        status,
        attempts,
        content_type,
        body,
    }
}

#[tokio::main]
async fn main() {
    let (ca_pem, issue) = mesh_ca();
    let (web, reviewer, intruder) = (
        issue("web", "web.default.svc"),
        issue("reviews", REVIEWS),
        issue("intruder", "intruder.default.svc"),
    );

    // B: the reviews app and its sidecar, which allows only `web`.
    let b_calls = Arc::new(AtomicUsize::new(0));
    let b_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind B");
    let b_app = b_listener.local_addr().expect("B's address");
    let b_router = Router::new()
        .route("/reviews/{id}", get(reviews))
        .with_state(Arc::clone(&b_calls));
    tokio::spawn(async move { axum::serve(b_listener, b_router).await });
    let (b_inbound, _, b_admin) = start_sidecar(
        sidecar_config(&ca_pem, &reviewer, b_app)
            .service_name("reviews")
            .authorization([AuthzRule::allow().peers([spiffe("web")])]),
    )
    .await;
    println!("B (reviews) app on {b_app}, sidecar inbound (mTLS) {b_inbound}");

    // A (web) and the intruder: sidecars whose outbound knows `reviews`.
    // Their own inbound forwards to an app address they never receive on.
    let to_reviews = || {
        OutboundService::new(REVIEWS)
            .endpoint(b_inbound.to_string())
            // Secure naming: B must present the `reviews` SPIFFE ID.
            .expected_identities([spiffe("reviews")])
            .retry(RetryLayer::new().attempts_header(true))
    };
    let (_, a_outbound, _) = start_sidecar(
        sidecar_config(&ca_pem, &web, b_app)
            .service_name("web")
            .outbound_service(to_reviews()),
    )
    .await;
    let (_, intruder_outbound, _) =
        start_sidecar(sidecar_config(&ca_pem, &intruder, b_app).outbound_service(to_reviews()))
            .await;
    println!("A (web) sidecar outbound {a_outbound}, intruder outbound {intruder_outbound}");

    let mut failures = 0;
    let mut check = |ok: bool, line: String| {
        println!("[{}] {line}", if ok { "ok" } else { "FAILED" });
        if !ok {
            failures += 1;
        }
    };

    // 1. A calls B, trying to pass itself off as `admin`.
    let answer = call(a_outbound, REVIEWS, Some(&spiffe("admin"))).await;
    check(
        answer.status == StatusCode::OK
            && answer.attempts == "2"
            && b_calls.load(Ordering::SeqCst) == 2
            && answer.body.ends_with(&format!("caller {}", spiffe("web"))),
        format!(
            "A -> B: {}, attempts {}, B answered: {}",
            answer.status.as_u16(),
            answer.attempts,
            answer.body
        ),
    );

    // 2. The intruder calls B.
    let before = b_calls.load(Ordering::SeqCst);
    let answer = call(intruder_outbound, REVIEWS, None).await;
    check(
        answer.status == StatusCode::FORBIDDEN
            && answer.content_type == "application/problem+json"
            && b_calls.load(Ordering::SeqCst) == before,
        format!(
            "intruder -> B: {} {} {}",
            answer.status.as_u16(),
            answer.content_type,
            answer.body
        ),
    );

    // 3. A host that names no service.
    let answer = call(a_outbound, "ratings.default.svc", None).await;
    check(
        answer.status == StatusCode::NOT_FOUND,
        format!("unknown host: {}", answer.status.as_u16()),
    );

    // 4. B's metrics name the caller.
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let scrape = match client
        .get(format!("http://{b_admin}/metrics").parse().expect("a URI"))
        .await
    {
        Ok(response) => match response.into_body().collect().await {
            Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
            Err(_) => String::new(),
        },
        Err(_) => String::new(),
    };
    let line = scrape.lines().find(|l| {
        l.starts_with("meshgate_requests_total")
            && l.contains("direction=\"inbound\"")
            && l.contains(&format!("peer_identity=\"{}\"", spiffe("web")))
            && l.contains("status=\"2xx\"")
    });
    check(
        line.is_some(),
        format!(
            "B's /metrics: {}",
            line.unwrap_or("no inbound counter for web")
        ),
    );

    if failures == 0 {
        println!("all checks passed");
    } else {
        println!("{failures} check(s) failed");
        std::process::exit(1);
    }
}
