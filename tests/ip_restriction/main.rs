//! Behaviour of `meshgate::ip_restriction` through its public API: allow
//! and deny lists, spoofed `X-Forwarded-For` from untrusted peers, real
//! client addresses through trusted proxies.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use meshgate::error::{Rejection, RejectionKind};
use meshgate::ip_restriction::IpRestrictionLayer;
use meshgate::net::TrustedProxies;
use meshgate::peer::PeerAddr;
use tower::{Layer, Service, ServiceExt, service_fn};

fn request(peer: Option<&str>, xff: &[&str]) -> Request<()> {
    let mut builder = Request::builder();
    for value in xff {
        builder = builder.header("x-forwarded-for", *value);
    }
    let mut request = builder.body(()).unwrap();
    if let Some(peer) = peer {
        request
            .extensions_mut()
            .insert(PeerAddr(peer.parse().unwrap()));
    }
    request
}

struct Harness {
    calls: Arc<AtomicUsize>,
    layer: IpRestrictionLayer,
}

impl Harness {
    fn new(layer: IpRestrictionLayer) -> Self {
        Self {
            calls: Arc::default(),
            layer,
        }
    }

    async fn status(&self, request: Request<()>) -> StatusCode {
        let calls = self.calls.clone();
        let service = self.layer.layer(service_fn(move |_: Request<()>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(String::from("ok"))) }
        }));
        service.oneshot(request).await.unwrap().status()
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn trusted() -> TrustedProxies {
    TrustedProxies::new(["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()])
}

#[tokio::test]
async fn allow_list_admits_only_its_networks() {
    let h = Harness::new(
        IpRestrictionLayer::new()
            .allow("192.0.2.0/24".parse().unwrap())
            .allow("2001:db8::/32".parse().unwrap()),
    );
    assert_eq!(h.status(request(Some("192.0.2.9:1000"), &[])).await, 200);
    assert_eq!(
        h.status(request(Some("[2001:db8::5]:1000"), &[])).await,
        200
    );
    // A dual-stack socket's mapped IPv4 address matches the IPv4 network.
    assert_eq!(
        h.status(request(Some("[::ffff:192.0.2.9]:1000"), &[]))
            .await,
        200
    );
    assert_eq!(h.status(request(Some("198.51.100.1:1000"), &[])).await, 403);
    assert_eq!(
        h.status(request(Some("[2001:db9::5]:1000"), &[])).await,
        403
    );
    assert_eq!(h.calls(), 3);
}

#[tokio::test]
async fn deny_wins_over_allow() {
    let h = Harness::new(
        IpRestrictionLayer::new()
            .allow("192.0.2.0/24".parse().unwrap())
            .deny("192.0.2.128/25".parse().unwrap()),
    );
    assert_eq!(h.status(request(Some("192.0.2.1:1"), &[])).await, 200);
    assert_eq!(h.status(request(Some("192.0.2.200:1"), &[])).await, 403);
    let deny_only = Harness::new(IpRestrictionLayer::new().deny("203.0.113.0/24".parse().unwrap()));
    assert_eq!(
        deny_only.status(request(Some("203.0.113.4:1"), &[])).await,
        403
    );
    assert_eq!(
        deny_only.status(request(Some("198.51.100.4:1"), &[])).await,
        200
    );
}

#[tokio::test]
async fn spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let h = Harness::new(
        IpRestrictionLayer::new()
            .allow("192.0.2.0/24".parse().unwrap())
            .deny("203.0.113.0/24".parse().unwrap())
            .client_ip(trusted()),
    );
    // An outsider claiming an allowed address: refused.
    assert_eq!(
        h.status(request(Some("198.51.100.7:1"), &["192.0.2.1"]))
            .await,
        403
    );
    // An allowed client whose header names a denied address: still allowed,
    // the header is not its to write.
    assert_eq!(
        h.status(request(Some("192.0.2.7:1"), &["203.0.113.1"]))
            .await,
        200
    );
    // Claiming to be a trusted proxy in the header does not help either.
    assert_eq!(
        h.status(request(Some("198.51.100.7:1"), &["192.0.2.1, 10.0.0.1"]))
            .await,
        403
    );
}

#[tokio::test]
async fn real_client_addresses_come_through_trusted_proxies() {
    let h = Harness::new(
        IpRestrictionLayer::new()
            .allow("192.0.2.0/24".parse().unwrap())
            .deny("192.0.2.66".parse().unwrap())
            .client_ip(trusted()),
    );
    // One trusted hop.
    assert_eq!(
        h.status(request(Some("10.0.0.5:1"), &["192.0.2.10"])).await,
        200
    );
    assert_eq!(
        h.status(request(Some("10.0.0.5:1"), &["192.0.2.66"])).await,
        403
    );
    // Two trusted hops, over two header lines, IPv6 proxy.
    assert_eq!(
        h.status(request(Some("[fd00::1]:1"), &["192.0.2.10", "10.1.1.1"]))
            .await,
        200
    );
    // A denied client prepending an allowed address to the header: the
    // right-most untrusted entry is what the proxy saw, the real one.
    assert_eq!(
        h.status(request(Some("10.0.0.5:1"), &["192.0.2.10, 192.0.2.66"]))
            .await,
        403
    );
    // A client outside the allow list behind the proxy.
    assert_eq!(
        h.status(request(Some("10.0.0.5:1"), &["198.51.100.1"]))
            .await,
        403
    );
    // The trusted proxy talking for itself (no header) is outside the allow list.
    assert_eq!(h.status(request(Some("10.0.0.5:1"), &[])).await, 403);
}

#[tokio::test]
async fn unknown_client_addresses_fail_closed_only_when_rules_exist() {
    let h = Harness::new(
        IpRestrictionLayer::new()
            .deny("203.0.113.0/24".parse().unwrap())
            .client_ip(trusted()),
    );
    assert_eq!(h.status(request(None, &[])).await, 403);
    assert_eq!(
        h.status(request(Some("10.0.0.5:1"), &["unknown"])).await,
        403
    );
    assert_eq!(h.calls(), 0);
    let open = Harness::new(IpRestrictionLayer::new());
    assert_eq!(open.status(request(None, &[])).await, 200);
}

#[tokio::test]
async fn refusals_are_problem_json_with_a_forbidden_rejection() {
    let mut service = IpRestrictionLayer::new()
        .allow("192.0.2.0/24".parse().unwrap())
        .layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::from("ok")))
        }));
    let response = service
        .ready()
        .await
        .unwrap()
        .call(request(Some("198.51.100.1:1"), &[]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(
        response.extensions().get::<Rejection>().unwrap().kind(),
        RejectionKind::Forbidden
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["status"], 403);
    assert!(!json.to_string().contains("198.51.100.1"));

    let mut grpc = request(Some("198.51.100.1:1"), &[]);
    grpc.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    let response = service.ready().await.unwrap().call(grpc).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "7");
}

#[cfg(feature = "config")]
#[tokio::test]
async fn built_from_the_config_section() {
    let config: meshgate::config::IpRestriction =
        serde_saphyr::from_str("allow: [192.0.2.0/24]\ndeny: [192.0.2.66]\n").unwrap();
    let trusted: Vec<meshgate::config::Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
    let h = Harness::new(IpRestrictionLayer::from_config(&config, &trusted));
    assert_eq!(
        h.status(request(Some("10.0.0.5:1"), &["192.0.2.10"])).await,
        200
    );
    assert_eq!(
        h.status(request(Some("10.0.0.5:1"), &["192.0.2.66"])).await,
        403
    );
    assert_eq!(
        h.status(request(Some("198.51.100.1:1"), &["192.0.2.10"]))
            .await,
        403
    );
}
