//! Calls from one application to another through both sidecars: mTLS,
//! identity, authorization, retries, the breaker, unknown hosts, admin.

use http::StatusCode;
use meshgate::auth::authz::AuthzRule;
use meshgate::circuit_breaker::CircuitBreakerLayer;
use meshgate::load_balancer::{OutlierDetection, Strategy};
use meshgate::retry::RetryLayer;
use meshgate::sidecar::OutboundService;

use crate::{App, Ca, RunningSidecar, call, sidecar_config, spiffe};

const B: &str = "b.svc";

/// B's application behind B's sidecar (which allows only `sa/a`), and a
/// client sidecar with identity `sa/<caller>` whose outbound service
/// `b.svc` is built by `service`.
struct Mesh {
    b_app: App,
    b: RunningSidecar,
    caller: RunningSidecar,
}

impl Mesh {
    async fn new(
        caller: &str,
        fail_first: usize,
        service: impl FnOnce(OutboundService) -> OutboundService,
    ) -> Self {
        let ca = Ca::new("mesh");
        let b_app = App::start("b", fail_first).await;
        let b = RunningSidecar::start(
            sidecar_config(&ca, &ca.workload("b", B), b_app.addr)
                .service_name("b")
                .authorization([AuthzRule::allow().peers([spiffe("a")])]),
        )
        .await;
        // The caller's own application is the test; its address is not used.
        let caller = RunningSidecar::start(
            sidecar_config(&ca, &ca.workload(caller, "caller.svc"), b_app.addr).outbound_service(
                service(OutboundService::new(B).endpoint(b.inbound.to_string())),
            ),
        )
        .await;
        Self { b_app, b, caller }
    }
}

#[tokio::test]
async fn an_allowed_principal_gets_through_and_the_application_sees_its_verified_identity() {
    let mesh = Mesh::new("a", 0, |s| s).await;
    let (status, headers, body) = call(
        mesh.caller.outbound,
        B,
        "/hello",
        &[
            // Spoofed by the caller: replaced on B's inbound.
            ("x-meshgate-peer-identity", &spiffe("admin")),
            (
                "x-forwarded-client-cert",
                "By=spiffe://evil;URI=spiffe://evil",
            ),
            ("x-request-id", "call-42"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, format!("b saw {} xfcc=false", spiffe("a")));
    assert_eq!(headers["x-request-id"], "call-42");
    assert_eq!(mesh.b_app.calls(), 1);
    mesh.caller.stop().await;
    mesh.b.stop().await;
}

#[tokio::test]
async fn another_principal_is_refused_with_403_before_the_application() {
    let mesh = Mesh::new("c", 0, |s| s).await;
    let (status, headers, body) = call(mesh.caller.outbound, B, "/hello", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(
        !body.contains("spiffe"),
        "the refusal names no rule: {body}"
    );
    assert_eq!(mesh.b_app.calls(), 0);
}

#[tokio::test]
async fn the_outbound_retries_an_injected_failure() {
    let mesh = Mesh::new("a", 1, |s| s.retry(RetryLayer::new().attempts_header(true))).await;
    let (status, headers, body) = call(mesh.caller.outbound, B, "/flaky", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["x-meshgate-attempts"], "2");
    assert_eq!(mesh.b_app.calls(), 2, "the failure, then the retry");
}

#[tokio::test]
async fn the_breaker_opens_after_consecutive_failures_across_real_sockets() {
    let mesh = Mesh::new("a", usize::MAX, |s| {
        s.retry(None)
            .circuit_breaker(CircuitBreakerLayer::new().consecutive_failures(3))
    })
    .await;
    for _ in 0..3 {
        let (status, _, body) = call(mesh.caller.outbound, B, "/down", &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "injected failure", "the application's own 503");
    }
    let (status, headers, body) = call(mesh.caller.outbound, B, "/down", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        headers["content-type"], "application/problem+json",
        "{body}"
    );
    assert!(headers.contains_key("retry-after"));
    assert_eq!(mesh.b_app.calls(), 3, "the open breaker did not call B");

    // The admin endpoints show it.
    let (status, _, metrics) = call(mesh.caller.admin, "admin", "/metrics", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics.contains(&format!(
            "meshgate_circuit_breaker_state{{route=\"{B}\",backend=\"{B}\",key=\"\"}} 1"
        )),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_unknown_host_is_404_naming_nothing_internal() {
    let mesh = Mesh::new("a", 0, |s| s).await;
    let (status, headers, body) = call(mesh.caller.outbound, "nowhere.svc:8080", "/", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(!body.contains(B) && !body.contains("127.0.0.1"), "{body}");
    // The port is ignored when the host names a service.
    let (status, _, _) = call(mesh.caller.outbound, "B.svc:9999", "/", &[]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_carry_the_direction_service_and_peer_identity() {
    let mesh = Mesh::new("a", 0, |s| s).await;
    let (status, _, _) = call(mesh.caller.outbound, B, "/m", &[]).await;
    assert_eq!(status, StatusCode::OK);
    for path in ["/healthz", "/readyz"] {
        let (status, _, _) = call(mesh.b.admin, "admin", path, &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let (status, _, document) = call(mesh.caller.admin, "admin", "/admin/status", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let document: serde_json::Value = serde_json::from_str(&document).unwrap();
    assert_eq!(document["routes"][0]["name"], B);
    assert_eq!(document["routes"][0]["direction"], "outbound");
    assert_eq!(document["upstreams"][0]["name"], B);
    let (_, _, caller) = call(mesh.caller.admin, "admin", "/metrics", &[]).await;
    let outbound = caller
        .lines()
        .find(|l| {
            l.starts_with("meshgate_requests_total")
                && l.contains(&format!("service=\"{B}\""))
                && l.contains("direction=\"outbound\"")
                && l.contains("status=\"2xx\"")
        })
        .unwrap_or_else(|| panic!("no outbound request counter: {caller}"));
    assert!(!outbound.ends_with(" 0"), "{outbound}");
    let (_, _, b) = call(mesh.b.admin, "admin", "/metrics", &[]).await;
    assert!(
        b.lines().any(|l| l.starts_with("meshgate_requests_total")
            && l.contains("service=\"b\"")
            && l.contains("direction=\"inbound\"")
            && l.contains(&format!("peer_identity=\"{}\"", spiffe("a")))),
        "{b}"
    );
}

#[tokio::test]
async fn a_dead_endpoint_is_retried_around_and_ejected() {
    // A port nobody listens on: connections are refused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mesh = Mesh::new("a", 0, |s| {
        s.endpoint(dead.to_string())
            .balancing(Strategy::RoundRobin)
            .retry(RetryLayer::new().attempts_header(true))
            .outlier_detection(OutlierDetection::new().consecutive_gateway_errors(1))
    })
    .await;
    let mut retried = 0;
    for _ in 0..10 {
        let (status, headers, body) = call(mesh.caller.outbound, B, "/", &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if headers.get("x-meshgate-attempts").is_some_and(|v| v == "2") {
            retried += 1;
        }
    }
    // Round robin reaches the dead endpoint within the first two calls; that
    // call is retried on B, and the dead endpoint is ejected at once.
    assert_eq!(retried, 1);
    assert_eq!(mesh.b_app.calls(), 10);
    let (_, _, metrics) = call(mesh.caller.admin, "admin", "/metrics", &[]).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("meshgate_upstream_ejected")
                && l.contains(&dead.to_string())
                && l.ends_with(" 1")),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_peer_whose_certificate_does_not_name_the_service_is_not_called() {
    let ca = Ca::new("naming");
    let app = App::start("impostor", 0).await;
    // A valid workload of the mesh, but serving as `other.svc`.
    let impostor = RunningSidecar::start(sidecar_config(
        &ca,
        &ca.workload("other", "other.svc"),
        app.addr,
    ))
    .await;
    let caller = RunningSidecar::start(
        sidecar_config(&ca, &ca.workload("a", "a.svc"), app.addr)
            .outbound_service(OutboundService::new(B).endpoint(impostor.inbound.to_string())),
    )
    .await;
    let (status, headers, body) = call(caller.outbound, B, "/", &[]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(
        app.calls(),
        0,
        "the request never left the caller's sidecar"
    );
}

#[tokio::test]
async fn expected_identities_accept_the_peer_by_its_spiffe_id_only() {
    // By exact ID and by prefix: called.
    for expected in [spiffe("b"), "spiffe://mesh.test/ns/default/*".to_owned()] {
        let mesh = Mesh::new("a", 0, |service| {
            service.expected_identities([expected.clone()])
        })
        .await;
        let (status, _, body) = call(mesh.caller.outbound, B, "/", &[]).await;
        assert_eq!(status, StatusCode::OK, "{expected}: {body}");
        assert_eq!(mesh.b_app.calls(), 1);
    }
    // B's certificate names the service, but not the expected identity:
    // not called.
    let mesh = Mesh::new("a", 0, |service| {
        service.expected_identities([spiffe("payments")])
    })
    .await;
    let (status, headers, _) = call(mesh.caller.outbound, B, "/", &[]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(mesh.b_app.calls(), 0);
    drop(mesh.b);
}
