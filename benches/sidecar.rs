//! The latency two sidecars add: a small GET from a client to an
//! application directly over plain HTTP, against the same GET through the
//! client's sidecar (outbound, plain HTTP on loopback) and the
//! application's sidecar (inbound, mTLS with HTTP/2 by ALPN), in the same
//! run, on kept-alive connections.
//!
//! `cargo bench --bench sidecar -- --warm-up-time 1 --measurement-time 3`
//!
//! * `sidecar/direct_plain` and `sidecar/two_sidecars_mtls`: criterion's
//!   mean per request.
//! * Then a fixed-count loop: 200 warm-up requests, then 2 000 sequential
//!   requests on each path, each timed alone; it prints p50, p90 and p99 of
//!   both paths, the difference (the added latency), and how many requests
//!   took over 1 ms.
//!
//! Everything (client, both sidecars with their default layers — request
//! id, trace context, metrics, access log without a subscriber, peer
//! identity, an authorization rule, timeouts, retry — and the application)
//! runs on one current-thread runtime, so the figures are the CPU of the
//! whole path on one core plus loopback, without scheduler hops between
//! threads. On a machine with more runnable threads than cores, that one
//! thread is descheduled for a time slice (about 4 ms) every few ms of CPU
//! it uses: the requests caught by it are the ones over 1 ms, and since the
//! two-sidecar path uses about six times the CPU of the direct one, more of
//! its requests are caught — check the load before reading the p99.

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use meshgate::auth::authz::AuthzRule;
use meshgate::gateway::{Server, ServerConfig};
use meshgate::sidecar::{OutboundService, Sidecar, SidecarConfig};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType,
};

const SERVICE: &str = "b.bench.svc";

fn spiffe(sa: &str) -> String {
    format!("spiffe://bench.test/ns/default/sa/{sa}")
}

/// The CA's PEM and two workload identities (chain, key): `a`, `b`.
fn pki() -> (String, (String, String), (String, String)) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let workload = |sa: &str, dns: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![dns.to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::URI(spiffe(sa).try_into().unwrap()));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    (
        ca.pem(),
        workload("a", "a.bench.svc"),
        workload("b", SERVICE),
    )
}

async fn app() -> SocketAddr {
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::new())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let service = tower::service_fn(|_: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    tokio::spawn(server.serve(service, std::future::pending()));
    addr
}

fn config(ca: &str, identity: &(String, String), app: SocketAddr) -> SidecarConfig {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    SidecarConfig::new()
        .certificate_pem(identity.0.clone(), identity.1.clone())
        .trust_bundle_pem(ca.to_owned())
        .app_addr(app)
        .inbound_addr(any)
        .outbound_addr(any)
        .admin_addr(any)
}

/// Starts the application, B's sidecar in front of it and A's sidecar
/// that calls it; returns the application's and A's outbound addresses.
async fn mesh() -> (SocketAddr, SocketAddr) {
    let (ca, a, b) = pki();
    let app = app().await;
    let b = Sidecar::new(
        config(&ca, &b, app)
            .service_name("b")
            .authorization([AuthzRule::allow().peers([spiffe("a")])]),
    )
    .unwrap()
    .bind()
    .await
    .unwrap();
    let b_inbound = b.inbound_addr();
    tokio::spawn(b.serve(std::future::pending()));
    let a = Sidecar::new(
        config(&ca, &a, app)
            .outbound_service(OutboundService::new(SERVICE).endpoint(b_inbound.to_string())),
    )
    .unwrap()
    .bind()
    .await
    .unwrap();
    let a_outbound = a.outbound_addr();
    tokio::spawn(a.serve(std::future::pending()));
    (app, a_outbound)
}

type Plain = Client<HttpConnector, Empty<Bytes>>;

/// One GET on `addr` with `Host: SERVICE`, body read.
async fn get(client: &Plain, addr: SocketAddr) {
    let request = Request::get(format!("http://{addr}/small"))
        .header("host", SERVICE)
        .body(Empty::new())
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    black_box(response.into_body().collect().await.unwrap().to_bytes());
}

/// Latency figures of one path, in µs.
struct Figures {
    p50: f64,
    p90: f64,
    p99: f64,
    /// Requests that took over 1 ms.
    over_1ms: usize,
}

/// The figures of `n` sequential requests after `warm_up`.
async fn percentiles(client: &Plain, addr: SocketAddr, warm_up: usize, n: usize) -> Figures {
    for _ in 0..warm_up {
        get(client, addr).await;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        get(client, addr).await;
        samples.push(start.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((n as f64 * q) as usize).min(n - 1)];
    Figures {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        over_1ms: samples.iter().filter(|s| **s > 1000.0).count(),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (app, outbound) = rt.block_on(mesh());
    let client: Plain = Client::builder(TokioExecutor::new()).build_http();

    let mut group = c.benchmark_group("sidecar");
    group.bench_function("direct_plain", |b| {
        b.to_async(&rt).iter(|| get(&client, app))
    });
    group.bench_function("two_sidecars_mtls", |b| {
        b.to_async(&rt).iter(|| get(&client, outbound))
    });
    group.finish();

    let (direct, meshed) = rt.block_on(async {
        (
            percentiles(&client, app, 200, 2_000).await,
            percentiles(&client, outbound, 200, 2_000).await,
        )
    });
    println!("sidecar fixed loop, 2 000 sequential requests after 200 warm-up, kept alive:");
    let line = |name: &str, f: &Figures| {
        println!(
            "  {name:<19} p50 {:>7.1} µs   p90 {:>7.1} µs   p99 {:>7.1} µs   over 1 ms: {}",
            f.p50, f.p90, f.p99, f.over_1ms
        );
    };
    line("direct plain", &direct);
    line("two sidecars, mTLS", &meshed);
    println!(
        "  {:<19} p50 {:>7.1} µs   p90 {:>7.1} µs   p99 {:>7.1} µs",
        "added",
        meshed.p50 - direct.p50,
        meshed.p90 - direct.p90,
        meshed.p99 - direct.p99
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
