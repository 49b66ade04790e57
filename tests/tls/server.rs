//! The gateway server as a TLS listener: ALPN, the handshake deadline,
//! and client certificates.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use meshgate::gateway::ServerConfig;
use meshgate::tls::{ClientAuth, ServerTls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Identity, Pki, client_config, start};

type TlsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A client trusting the PKI's CA, offering `h2` when `http2`, presenting
/// `identity` when given.
fn client(pki: &Pki, identity: Option<&Identity>, http2: bool) -> TlsClient {
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(&pki.ca_pem, identity))
        .https_only();
    let connector = if http2 {
        builder.enable_all_versions().build()
    } else {
        builder.enable_http1().build()
    };
    Client::builder(TokioExecutor::new()).build(connector)
}

fn get(addr: std::net::SocketAddr) -> Request<Empty<Bytes>> {
    Request::get(format!("https://localhost:{}/", addr.port()))
        .body(Empty::new())
        .unwrap()
}

fn tls(pki: &Pki) -> ServerTls {
    ServerTls::from_pem(
        pki.server.chain_pem.as_bytes(),
        pki.server.key_pem.as_bytes(),
    )
    .unwrap()
}

fn mutual(pki: &Pki, auth: ClientAuth) -> ServerTls {
    ServerTls::mutual_from_pem(
        pki.server.chain_pem.as_bytes(),
        pki.server.key_pem.as_bytes(),
        pki.ca_pem.as_bytes(),
        auth,
    )
    .unwrap()
}

#[tokio::test]
async fn serves_http1_and_h2_by_alpn() {
    let pki = Pki::new("alpn");
    let mut server = start(ServerConfig::new().tls(tls(&pki))).await;

    let response = client(&pki, None, false)
        .request(get(server.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), Version::HTTP_11);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "hello over HTTP/1.1");
    let seen = server.seen.recv().await.unwrap();
    assert_eq!(seen.version, Version::HTTP_11);
    assert_eq!(seen.peer.map(|peer| peer.0.ip()), Some(server.addr.ip()));
    assert!(seen.certificate.is_none());

    let response = client(&pki, None, true)
        .request(get(server.addr))
        .await
        .unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "hello over HTTP/2.0");
    assert_eq!(server.seen.recv().await.unwrap().version, Version::HTTP_2);
    server.stop().await;

    // With HTTP/2 off, only http/1.1 is offered: a client offering both
    // gets HTTP/1.1.
    let mut server = start(ServerConfig::new().http2(false).tls(tls(&pki))).await;
    let response = client(&pki, None, true)
        .request(get(server.addr))
        .await
        .unwrap();
    assert_eq!(response.version(), Version::HTTP_11);
    assert_eq!(server.seen.recv().await.unwrap().version, Version::HTTP_11);
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_finishes_the_handshake_is_cut_off() {
    let pki = Pki::new("slow");
    let timeout = Duration::from_secs(10);
    let server = start(
        ServerConfig::new()
            .header_read_timeout(timeout)
            .tls(tls(&pki)),
    )
    .await;

    // Nothing at all, then the first bytes of a ClientHello record.
    for partial in [&b""[..], &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..]] {
        let started = tokio::time::Instant::now();
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(partial).await.unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut buf))
            .await
            .expect("the server closes the connection before 60 s");
        assert!(read.is_err() || buf.is_empty(), "{buf:?}");
        assert!(
            started.elapsed() >= timeout,
            "closed after {:?} for {partial:?}",
            started.elapsed()
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn plain_http_to_a_tls_listener_is_closed() {
    let pki = Pki::new("plain");
    let mut server = start(ServerConfig::new().tls(tls(&pki))).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("closed at once");
    assert!(!buf.starts_with(b"HTTP/"), "{buf:?}");
    assert!(server.seen.try_recv().is_err());
    server.stop().await;
}

#[tokio::test]
async fn mtls_refuses_clients_without_a_certificate_and_exposes_the_one_presented() {
    let pki = Pki::new("mtls");
    let mut server = start(ServerConfig::new().tls(mutual(&pki, ClientAuth::Required))).await;

    // No certificate: the handshake fails (the error may surface on the
    // request under TLS 1.3), and no request reaches the service.
    let refused = client(&pki, None, true).request(get(server.addr)).await;
    assert!(refused.is_err(), "{refused:?}");

    // A certificate of another CA: refused too.
    let other = Pki::new("other");
    let refused = client(&pki, Some(&other.client), true)
        .request(get(server.addr))
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(server.seen.try_recv().is_err(), "no request got through");

    for http2 in [false, true] {
        let response = client(&pki, Some(&pki.client), http2)
            .request(get(server.addr))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let seen = server.seen.recv().await.unwrap();
        let certificate = seen.certificate.expect("a PeerCertificate extension");
        assert_eq!(certificate.end_entity(), pki.client.der.as_slice());
        // The chain as presented: the leaf, then the CA.
        assert_eq!(certificate.chain().len(), 2);
        assert_eq!(certificate.dns_names(), ["client.test"]);
        assert_eq!(
            certificate.uri_names(),
            ["spiffe://mtls.test/ns/default/sa/client"]
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn optional_client_auth_serves_both_and_tells_them_apart() {
    let pki = Pki::new("optional");
    let mut server = start(ServerConfig::new().tls(mutual(&pki, ClientAuth::Optional))).await;

    let response = client(&pki, None, true)
        .request(get(server.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(server.seen.recv().await.unwrap().certificate.is_none());

    let response = client(&pki, Some(&pki.client), true)
        .request(get(server.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let certificate = server.seen.recv().await.unwrap().certificate;
    assert_eq!(
        certificate.as_ref().map(|c| c.end_entity()),
        Some(pki.client.der.as_slice())
    );
    server.stop().await;
}

#[test]
fn bad_listener_settings_are_errors() {
    let pki = Pki::new("bad");
    let other = Pki::new("other");
    let error = ServerTls::from_pem(b"", pki.server.key_pem.as_bytes()).unwrap_err();
    assert!(error.to_string().contains("certificate PEM"), "{error}");
    let error = ServerTls::from_pem(pki.server.chain_pem.as_bytes(), b"").unwrap_err();
    assert!(error.to_string().contains("private key"), "{error}");
    // A key that does not belong to the certificate.
    let error = ServerTls::from_pem(
        pki.server.chain_pem.as_bytes(),
        other.server.key_pem.as_bytes(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("listener TLS"), "{error}");
    let error = ServerTls::mutual_from_pem(
        pki.server.chain_pem.as_bytes(),
        pki.server.key_pem.as_bytes(),
        b"no CA here",
        ClientAuth::Required,
    )
    .unwrap_err();
    assert!(error.to_string().contains("certificate PEM"), "{error}");
    // The rustls configuration of a caller.
    let config = Arc::new(
        meshgate::tls::rustls::ServerConfig::builder_with_provider(Arc::new(
            meshgate::tls::rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            meshgate::tls::certificates_from_pem(pki.server.chain_pem.as_bytes()).unwrap(),
            meshgate::tls::private_key_from_pem(pki.server.key_pem.as_bytes()).unwrap(),
        )
        .unwrap(),
    );
    let _ = ServerConfig::new().tls(ServerTls::from_config(config));
}
