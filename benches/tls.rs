//! What TLS costs the proxy: a small GET to an upstream over plain HTTP and
//! over TLS (HTTP/1.1 and h2 by ALPN), on pooled connections and on a new
//! connection per request (a full handshake each time), in the same run.
//!
//! `cargo bench --bench tls -- --warm-up-time 1 --measurement-time 3`
//!
//! * `tls/pooled/http`, `tls/pooled/https_h1`, `tls/pooled/https_h2`: the
//!   `Proxy` service to an upstream (the gateway `Server`) on a reused
//!   connection — the cost of encrypting a request and its response.
//! * `tls/new_connection/http`, `tls/new_connection/https`: the same with
//!   pooling off — TCP connect, and for `https` a TLS 1.3 handshake with an
//!   ECDSA P-256 certificate. Both ends run in this process, so the
//!   handshake figure is the client's and the server's CPU together.

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use meshgate::gateway::{Server, ServerConfig};
use meshgate::proxy::Proxy;
use meshgate::tls::ServerTls;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tower::Service;

/// A CA's PEM, and a `localhost` server chain and key it issued.
fn pki() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

async fn upstream(config: ServerConfig) -> SocketAddr {
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let service = tower::service_fn(|_: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    tokio::spawn(server.serve(service, std::future::pending()));
    addr
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (ca, chain, key) = pki();
    let tls = ServerTls::from_pem(chain.as_bytes(), key.as_bytes()).unwrap();
    let (plain, h1, h2) = rt.block_on(async {
        (
            upstream(ServerConfig::new()).await,
            upstream(ServerConfig::new().http2(false).tls(tls.clone())).await,
            upstream(ServerConfig::new().tls(tls)).await,
        )
    });
    let proxy = |target: String, pooled: bool| {
        Proxy::builder()
            .upstream(target.parse().unwrap())
            .tls_roots_pem(ca.as_bytes())
            .pool_max_idle_per_host(if pooled { 32 } else { 0 })
            .build()
            .unwrap()
    };
    let cases = [
        ("tls/pooled/http", proxy(format!("http://{plain}"), true)),
        (
            "tls/pooled/https_h1",
            proxy(format!("https://localhost:{}", h1.port()), true),
        ),
        (
            "tls/pooled/https_h2",
            proxy(format!("https://localhost:{}", h2.port()), true),
        ),
        (
            "tls/new_connection/http",
            proxy(format!("http://{plain}"), false),
        ),
        (
            "tls/new_connection/https",
            proxy(format!("https://localhost:{}", h1.port()), false),
        ),
    ];
    for (name, mut service) in cases {
        c.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let request = Request::get("/small").body(Empty::<Bytes>::new()).unwrap();
                let response = service.call(request);
                async move {
                    let response = response.await.unwrap();
                    assert_eq!(response.status(), 200);
                    black_box(response.into_body().collect().await.unwrap().to_bytes())
                }
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
