//! Client IP resolution through the limiter: the socket peer unless it is
//! a trusted proxy. The resolution rule itself is tested in `meshgate::net`.

use meshgate::net::{ForwardedHeader, IpNet, TrustedProxies};
use meshgate::rate_limit::{Clock, Quota, RateLimitLayer};
use tower::Layer;

use super::{Upstream, from, send};

fn resolver(trusted: &[&str], header: ForwardedHeader) -> TrustedProxies {
    TrustedProxies::new(trusted.iter().map(|n| n.parse::<IpNet>().unwrap())).header(header)
}

fn with(peer: &str, name: &str, value: &str) -> http::Request<()> {
    let mut request = from(peer);
    request.headers_mut().append(
        http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
        value.parse().unwrap(),
    );
    request
}

fn resolve(resolver: &TrustedProxies, request: &http::Request<()>) -> Option<String> {
    resolver
        .client_ip(request.headers(), request.extensions())
        .map(|ip| ip.to_string())
}

#[test]
fn untrusted_peers_cannot_spoof() {
    let none = TrustedProxies::default();
    let r = with("203.0.113.5", "x-forwarded-for", "1.2.3.4");
    assert_eq!(resolve(&none, &r).as_deref(), Some("203.0.113.5"));
    // A peer outside the trusted networks is believed for nothing.
    let trusting = resolver(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
    assert_eq!(resolve(&trusting, &r).as_deref(), Some("203.0.113.5"));
    let r = with("203.0.113.5", "forwarded", "for=1.2.3.4");
    let trusting = resolver(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
    assert_eq!(resolve(&trusting, &r).as_deref(), Some("203.0.113.5"));
    // No peer, no client IP.
    assert_eq!(resolve(&trusting, &http::Request::new(())), None);
}

#[tokio::test(start_paused = true)]
async fn spoofed_headers_share_the_peer_counter() {
    let upstream = Upstream::default();
    let service = RateLimitLayer::new([Quota::per_minute(1)])
        .clock(Clock::Tokio)
        .client_ip(resolver(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor))
        .layer(upstream.clone().service());
    // An untrusted client rotating X-Forwarded-For is one client.
    let r = send(&service, with("203.0.113.5", "x-forwarded-for", "1.1.1.1")).await;
    assert_eq!(r.status(), 200);
    let r = send(&service, with("203.0.113.5", "x-forwarded-for", "2.2.2.2")).await;
    assert_eq!(r.status(), 429);
    // Behind the trusted proxy, clients are told apart, and a client
    // prepending fake entries is still itself.
    let r = send(
        &service,
        with("10.0.0.1", "x-forwarded-for", "198.51.100.1"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body = http_body_util::BodyExt::collect(r.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(
        body, "198.51.100.1",
        "the resolved ClientIp reaches the inner service"
    );
    let r = send(
        &service,
        with("10.0.0.1", "x-forwarded-for", "198.51.100.2"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = send(
        &service,
        with("10.0.0.1", "x-forwarded-for", "9.9.9.9, 198.51.100.1"),
    )
    .await;
    assert_eq!(r.status(), 429);
    assert_eq!(upstream.calls(), 3);
}
