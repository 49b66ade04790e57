//! The proxy to `https` upstreams: HTTP/1.1 and HTTP/2 by ALPN, roots,
//! client certificates, and handshake failures as 502 problems.

use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use meshgate::Body;
use meshgate::error::{Rejection, RejectionKind};
use meshgate::gateway::ServerConfig;
use meshgate::proxy::Proxy;
use meshgate::tls::{ClientAuth, ServerTls};
use tower::ServiceExt;

use crate::{Pki, Running, start};

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

async fn text(response: Response<Body>) -> String {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

fn rejection(response: &Response<Body>) -> &Rejection {
    response
        .extensions()
        .get::<Rejection>()
        .expect("a Rejection extension")
}

/// An HTTPS upstream with the PKI's server identity; `http2` says whether it
/// offers `h2` in ALPN.
async fn https_upstream(pki: &Pki, http2: bool) -> Running {
    let tls = ServerTls::from_pem(
        pki.server.chain_pem.as_bytes(),
        pki.server.key_pem.as_bytes(),
    )
    .unwrap();
    start(ServerConfig::new().http2(http2).tls(tls)).await
}

#[tokio::test]
async fn an_https_upstream_is_reached_over_http1() {
    let pki = Pki::new("h1");
    let mut upstream = https_upstream(&pki, false).await;
    let proxy = Proxy::builder()
        .upstream(
            format!("https://localhost:{}", upstream.addr.port())
                .parse()
                .unwrap(),
        )
        .tls_roots_pem(pki.ca_pem.as_bytes())
        .build()
        .unwrap();

    let response = proxy.clone().oneshot(get("/hello")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, "hello over HTTP/1.1");
    let seen = upstream.seen.recv().await.unwrap();
    assert_eq!(seen.version, Version::HTTP_11);
    // The proxy presented no client certificate.
    assert!(seen.certificate.is_none());
    upstream.stop().await;
}

#[tokio::test]
async fn an_upstream_offering_h2_gets_http2_by_alpn() {
    let pki = Pki::new("h2");
    let mut upstream = https_upstream(&pki, true).await;
    // From the request URI too, as a load balancer in front sets it.
    let proxy = Proxy::builder()
        .tls_roots_pem(pki.ca_pem.as_bytes())
        .build()
        .unwrap();
    let uri = format!("https://localhost:{}/x", upstream.addr.port());

    for _ in 0..3 {
        let response = proxy.clone().oneshot(get(&uri)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        // The client's answer is HTTP/1.1 whatever the upstream spoke.
        assert_eq!(response.version(), Version::HTTP_11);
        assert_eq!(text(response).await, "hello over HTTP/2.0");
        assert_eq!(upstream.seen.recv().await.unwrap().version, Version::HTTP_2);
    }

    // With h2 not offered, the same upstream answers over HTTP/1.1.
    let proxy = Proxy::builder()
        .tls_roots_pem(pki.ca_pem.as_bytes())
        .tls_http2(false)
        .build()
        .unwrap();
    let response = proxy.oneshot(get(&uri)).await.unwrap();
    assert_eq!(text(response).await, "hello over HTTP/1.1");
    upstream.stop().await;
}

#[tokio::test]
async fn http2_prior_knowledge_offers_only_h2() {
    let pki = Pki::new("h2-only");
    let upstream = https_upstream(&pki, true).await;
    let proxy = Proxy::builder()
        .upstream(
            format!("https://localhost:{}", upstream.addr.port())
                .parse()
                .unwrap(),
        )
        .tls_roots_pem(pki.ca_pem.as_bytes())
        .http2_prior_knowledge(true)
        .build()
        .unwrap();
    let response = proxy.oneshot(get("/")).await.unwrap();
    assert_eq!(text(response).await, "hello over HTTP/2.0");
    upstream.stop().await;

    // An upstream that only speaks HTTP/1.1 refuses the handshake: 502.
    let upstream = https_upstream(&pki, false).await;
    let proxy = Proxy::builder()
        .upstream(
            format!("https://localhost:{}", upstream.addr.port())
                .parse()
                .unwrap(),
        )
        .tls_roots_pem(pki.ca_pem.as_bytes())
        .http2_prior_knowledge(true)
        .build()
        .unwrap();
    let response = proxy.oneshot(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(rejection(&response).kind(), RejectionKind::UpstreamConnect);
    upstream.stop().await;
}

#[tokio::test]
async fn an_upstream_of_another_ca_is_a_502_connect_failure() {
    let pki = Pki::new("trusted");
    let other = Pki::new("other");
    let upstream = https_upstream(&other, true).await;
    let target = format!("https://localhost:{}", upstream.addr.port());

    // Roots given, but of another CA; then the built-in Mozilla roots.
    let with_roots = Proxy::builder()
        .upstream(target.parse().unwrap())
        .tls_roots_pem(pki.ca_pem.as_bytes())
        .build()
        .unwrap();
    let with_defaults = Proxy::to(target.as_str()).unwrap();
    for proxy in [with_roots, with_defaults] {
        let response = proxy.oneshot(get("/")).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let rejection = rejection(&response);
        assert_eq!(rejection.kind(), RejectionKind::UpstreamConnect);
        assert_eq!(
            rejection.detail(),
            "the TLS handshake with the upstream failed"
        );
        assert!(rejection.cause().is_some());
    }
    upstream.stop().await;
}

#[tokio::test]
async fn a_name_the_certificate_does_not_cover_is_a_502() {
    let pki = Pki::new("names");
    let upstream = https_upstream(&pki, true).await;
    // The certificate names localhost and 127.0.0.1, not 127.0.0.2 (which
    // is loopback too).
    let proxy = Proxy::builder()
        .tls_roots_pem(pki.ca_pem.as_bytes())
        .build()
        .unwrap();
    let ok = proxy
        .clone()
        .oneshot(get(&format!("https://127.0.0.1:{}/", upstream.addr.port())))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    upstream.stop().await;

    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await;
    let Ok(listener) = listener else {
        // Some sandboxes only route 127.0.0.1.
        return;
    };
    let tls = ServerTls::from_pem(
        pki.server.chain_pem.as_bytes(),
        pki.server.key_pem.as_bytes(),
    )
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = meshgate::gateway::Server::from_listener(listener, ServerConfig::new().tls(tls));
    let task = tokio::spawn(server.serve(
        tower::service_fn(|_: Request<hyper::body::Incoming>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
        }),
        std::future::pending(),
    ));
    let response = proxy
        .oneshot(get(&format!("https://{addr}/")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        rejection(&response).detail(),
        "the TLS handshake with the upstream failed"
    );
    task.abort();
}

#[tokio::test]
async fn a_client_certificate_is_presented_to_an_mtls_upstream() {
    let pki = Pki::new("mtls");
    let tls = ServerTls::mutual_from_pem(
        pki.server.chain_pem.as_bytes(),
        pki.server.key_pem.as_bytes(),
        pki.ca_pem.as_bytes(),
        ClientAuth::Required,
    )
    .unwrap();
    let mut upstream = start(ServerConfig::new().tls(tls)).await;
    let target = format!("https://localhost:{}", upstream.addr.port());

    let proxy = Proxy::builder()
        .upstream(target.parse().unwrap())
        .tls_roots_pem(pki.ca_pem.as_bytes())
        .tls_client_identity(
            pki.client.chain_pem.as_bytes(),
            pki.client.key_pem.as_bytes(),
        )
        .build()
        .unwrap();
    let response = proxy.oneshot(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = upstream.seen.recv().await.unwrap();
    let certificate = seen
        .certificate
        .expect("the upstream saw a client certificate");
    assert_eq!(certificate.end_entity(), pki.client.der.as_slice());

    // Without a client certificate the upstream refuses the connection
    // (under TLS 1.3 after the client's side of the handshake, when the
    // request is already written): a 502.
    let proxy = Proxy::builder()
        .upstream(target.parse().unwrap())
        .tls_roots_pem(pki.ca_pem.as_bytes())
        .build()
        .unwrap();
    let response = proxy.oneshot(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    // Never read by the upstream, so safe to retry: a connect failure.
    assert_eq!(rejection(&response).kind(), RejectionKind::UpstreamConnect);
    assert_eq!(
        rejection(&response).detail(),
        "the upstream refused the TLS handshake (client certificate)"
    );
    assert!(upstream.seen.try_recv().is_err(), "no request got through");
    upstream.stop().await;
}

#[test]
fn bad_tls_settings_fail_the_build() {
    let pki = Pki::new("bad");
    let error = Proxy::builder()
        .tls_roots_pem("not pem")
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("certificate PEM"), "{error}");

    let other = Pki::new("other");
    let error = Proxy::builder()
        .tls_client_identity(
            pki.client.chain_pem.as_bytes(),
            other.client.key_pem.as_bytes(),
        )
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("client certificate"), "{error}");

    let error = Proxy::builder()
        .tls_roots(meshgate::tls::rustls::RootCertStore::empty())
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("empty"), "{error}");

    // https upstreams are accepted at build time.
    assert!(Proxy::to("https://localhost:8443").is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_stalled_handshake_is_a_502_at_the_connect_timeout() {
    // Accepts TCP connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let proxy = Proxy::builder()
        .upstream(
            format!("https://localhost:{}", addr.port())
                .parse()
                .unwrap(),
        )
        .connect_timeout(std::time::Duration::from_secs(2))
        .response_timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let response = proxy.oneshot(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let rejection = rejection(&response);
    assert_eq!(rejection.kind(), RejectionKind::UpstreamConnect);
    assert_eq!(rejection.detail(), "connecting to the upstream timed out");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_secs(2)
            && elapsed < std::time::Duration::from_secs(60),
        "{elapsed:?}"
    );
    holder.abort();
}

#[tokio::test]
async fn the_server_name_can_differ_from_the_uri_host() {
    let pki = Pki::new("sni");
    let mut upstream = https_upstream(&pki, true).await;
    // As a load balancer sends it: to the endpoint's address.
    let uri = format!("https://127.0.0.1:{}/", upstream.addr.port());

    let named = |name: &str| {
        Proxy::builder()
            .tls_roots_pem(pki.ca_pem.as_bytes())
            .tls_server_name(name)
            .build()
            .unwrap()
    };
    let response = named("localhost").oneshot(get(&uri)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(upstream.seen.recv().await.is_some());

    // The certificate does not cover this name, whatever the URI says.
    let response = named("payments.internal").oneshot(get(&uri)).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        rejection(&response).detail(),
        "the TLS handshake with the upstream failed"
    );

    let error = Proxy::builder()
        .tls_server_name("not a name!")
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("server name"), "{error}");
    upstream.stop().await;
}
