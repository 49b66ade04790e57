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
//! * `tls/mtls_handshake/static`, `tls/mtls_handshake/material`: a full
//!   mutual-TLS handshake (TLS 1.3, session resumption off, both sides
//!   presenting an ECDSA P-256 certificate with a SPIFFE ID) and one
//!   HTTP/1.1 request on a new connection, to a `Server` configured with a
//!   static `ServerTls::mutual_from_pem` and with a rotating
//!   `TlsMaterial::server_tls`: the difference is what reading the current
//!   material at each handshake costs.

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use meshgate::gateway::{Server, ServerConfig};
use meshgate::proxy::Proxy;
use meshgate::tls::{ClientAuth, ServerTls, TlsMaterial, rustls};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use tokio::net::TcpStream;
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

/// A mesh PKI: the CA's PEM, and a server and a client workload (chain,
/// key) with SPIFFE IDs, both for `localhost`.
fn mesh_pki() -> (String, (String, String), (String, String)) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let workload = |id: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::URI(id.try_into().unwrap()));
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    (
        ca.pem(),
        workload("spiffe://bench.test/ns/default/sa/server"),
        workload("spiffe://bench.test/ns/default/sa/client"),
    )
}

/// A new TCP connection, a full TLS handshake and one request.
async fn handshake_and_get(addr: SocketAddr, client: Arc<rustls::ClientConfig>) -> Bytes {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(client)
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let request = Request::get("/small")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    drop(sender);
    let _ = connection.await;
    body
}

fn bench_mtls_handshake(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (ca, (server_chain, server_key), (client_chain, client_key)) = mesh_pki();
    let fixed = ServerTls::mutual_from_pem(
        server_chain.as_bytes(),
        server_key.as_bytes(),
        ca.as_bytes(),
        ClientAuth::Required,
    )
    .unwrap();
    let material = TlsMaterial::from_pem(
        server_chain.as_bytes(),
        server_key.as_bytes(),
        ca.as_bytes(),
    )
    .unwrap();
    let (fixed, rotating) = rt.block_on(async {
        (
            upstream(ServerConfig::new().http2(false).tls(fixed)).await,
            upstream(
                ServerConfig::new()
                    .http2(false)
                    .tls(material.server_tls(ClientAuth::Required)),
            )
            .await,
        )
    });
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(meshgate::tls::roots_from_pem(ca.as_bytes()).unwrap())
    .with_client_auth_cert(
        meshgate::tls::certificates_from_pem(client_chain.as_bytes()).unwrap(),
        meshgate::tls::private_key_from_pem(client_key.as_bytes()).unwrap(),
    )
    .unwrap();
    // Every iteration a full handshake, as a first contact between peers.
    client.resumption = rustls::client::Resumption::disabled();
    let client = Arc::new(client);
    for (name, addr) in [
        ("tls/mtls_handshake/static", fixed),
        ("tls/mtls_handshake/material", rotating),
    ] {
        c.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(handshake_and_get(addr, Arc::clone(&client)).await) });
        });
    }
}

criterion_group!(benches, bench, bench_mtls_handshake);
criterion_main!(benches);
