//! The inbound listener's mTLS modes, straight over TLS.

use std::time::Duration;

use http::StatusCode;
use meshgate::auth::authz::AuthzRule;
use meshgate::sidecar::MtlsMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{App, Ca, RunningSidecar, sidecar_config, spiffe, tls_get};

#[tokio::test]
async fn strict_refuses_plain_text_no_certificate_another_ca_and_expired() {
    let ca = Ca::new("strict");
    let app = App::start("b", 0).await;
    let b = RunningSidecar::start(sidecar_config(&ca, &ca.workload("b", "b.svc"), app.addr)).await;

    // Plain text: the listener speaks TLS only; no HTTP answer.
    let mut stream = TcpStream::connect(b.inbound).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: b.svc\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("closed at once");
    assert!(!buf.starts_with(b"HTTP/"), "{buf:?}");

    // TLS without a client certificate.
    let refused = tls_get(b.inbound, &ca.pem, None, &[]).await;
    assert!(refused.is_err(), "{refused:?}");
    // A certificate from another CA.
    let other = Ca::new("other");
    let refused = tls_get(b.inbound, &ca.pem, Some(&other.workload("a", "a.svc")), &[]).await;
    assert!(refused.is_err(), "{refused:?}");
    // An expired certificate from the right CA.
    let expired = ca.workload_with("a", "a.svc", |params| {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let refused = tls_get(b.inbound, &ca.pem, Some(&expired), &[]).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(app.calls(), 0, "nothing reached the application");

    // The right CA, valid: served, identity passed on.
    let (status, body) = tls_get(b.inbound, &ca.pem, Some(&ca.workload("a", "a.svc")), &[])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, format!("b saw {} xfcc=false", spiffe("a")));

    // A sidecar without outbound services answers every outbound call 404.
    let (status, headers, _) = crate::call(b.outbound, "a.svc", "/", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["content-type"], "application/problem+json");
    b.stop().await;
}

#[tokio::test]
async fn the_peer_identity_label_is_bounded() {
    let ca = Ca::new("labels");
    let app = App::start("b", 0).await;
    let b = RunningSidecar::start(
        sidecar_config(&ca, &ca.workload("b", "b.svc"), app.addr)
            .service_name("b")
            .max_peer_labels(1),
    )
    .await;
    for sa in ["a", "c", "d"] {
        let (status, _) = tls_get(b.inbound, &ca.pem, Some(&ca.workload(sa, "x.svc")), &[])
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
    }
    let (_, _, metrics) = crate::call(b.admin, "admin", "/metrics", &[]).await;
    let counters: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("meshgate_requests_total") && l.contains("direction=\"inbound\""))
        .collect();
    let has = |label: &str, count: &str| {
        counters
            .iter()
            .any(|l| l.contains(&format!("peer_identity=\"{label}\"")) && l.ends_with(count))
    };
    assert!(has(&spiffe("a"), " 1"), "{counters:#?}");
    assert!(has("other", " 2"), "{counters:#?}");
    assert!(!metrics.contains(&spiffe("c")), "{metrics}");
}

#[tokio::test]
async fn permissive_accepts_tls_clients_without_a_certificate_without_identity() {
    let ca = Ca::new("permissive");
    let app = App::start("b", 0).await;
    let b = RunningSidecar::start(
        sidecar_config(&ca, &ca.workload("b", "b.svc"), app.addr).mode(MtlsMode::Permissive),
    )
    .await;
    // No certificate: accepted, and a spoofed identity header is removed.
    let (status, body) = tls_get(
        b.inbound,
        &ca.pem,
        None,
        &[("x-meshgate-peer-identity", &spiffe("admin"))],
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "b saw - xfcc=false");
    // A certificate: verified, identity passed on.
    let (status, body) = tls_get(b.inbound, &ca.pem, Some(&ca.workload("a", "a.svc")), &[])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, format!("b saw {} xfcc=false", spiffe("a")));
    // Another CA's certificate is still refused.
    let other = Ca::new("other");
    let refused = tls_get(b.inbound, &ca.pem, Some(&other.workload("a", "a.svc")), &[]).await;
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test]
async fn permissive_with_a_policy_on_peers_refuses_callers_without_identity() {
    let ca = Ca::new("permissive-policy");
    let app = App::start("b", 0).await;
    let b = RunningSidecar::start(
        sidecar_config(&ca, &ca.workload("b", "b.svc"), app.addr)
            .mode(MtlsMode::Permissive)
            .authorization([AuthzRule::allow().peers([spiffe("a")])]),
    )
    .await;
    let (status, _) = tls_get(b.inbound, &ca.pem, None, &[]).await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = tls_get(b.inbound, &ca.pem, Some(&ca.workload("a", "a.svc")), &[])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.calls(), 1);
}

#[tokio::test]
async fn permissive_serves_plain_text_on_the_same_port_without_identity() {
    let ca = Ca::new("permissive-plain");
    let app = App::start("b", 0).await;
    let b = RunningSidecar::start(
        sidecar_config(&ca, &ca.workload("b", "b.svc"), app.addr).mode(MtlsMode::Permissive),
    )
    .await;
    // Plain text, with a spoofed identity: served, the header removed.
    let (status, _, body) = crate::call(
        b.inbound,
        "b.svc",
        "/",
        &[("x-meshgate-peer-identity", &spiffe("admin"))],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "b saw - xfcc=false");
    // mTLS on the same port still carries the identity.
    let (status, body) = tls_get(b.inbound, &ca.pem, Some(&ca.workload("a", "a.svc")), &[])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, format!("b saw {} xfcc=false", spiffe("a")));
    assert_eq!(app.calls(), 2);
}
