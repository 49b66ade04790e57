//! Client IP resolution: the socket peer unless it is a trusted proxy.

use meshgate::rate_limit::{ClientIpResolver, ForwardedHeader, IpNetwork, Quota, RateLimitLayer};
use tower::Layer;

use super::{Upstream, from, send};

fn resolver(trusted: &[&str], header: ForwardedHeader) -> ClientIpResolver {
    ClientIpResolver::new()
        .trust_all(trusted.iter().map(|n| n.parse::<IpNetwork>().unwrap()))
        .header(header)
}

fn with(peer: &str, name: &str, value: &str) -> http::Request<()> {
    let mut request = from(peer);
    request.headers_mut().append(
        http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
        value.parse().unwrap(),
    );
    request
}

fn resolve(resolver: &ClientIpResolver, request: &http::Request<()>) -> Option<String> {
    resolver
        .resolve(request.headers(), request.extensions())
        .map(|ip| ip.to_string())
}

#[test]
fn untrusted_peers_cannot_spoof() {
    let none = ClientIpResolver::new();
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

#[test]
fn trusted_proxies_give_the_right_most_untrusted_address() {
    let xff = resolver(
        &["10.0.0.0/8", "2001:db8::/32"],
        ForwardedHeader::XForwardedFor,
    );
    // The client put 6.6.6.6 there itself; the edge proxy appended the
    // real client, the inner proxy the edge proxy.
    let r = with(
        "10.0.0.2",
        "x-forwarded-for",
        "6.6.6.6, 198.51.100.7, 10.0.0.1",
    );
    assert_eq!(resolve(&xff, &r).as_deref(), Some("198.51.100.7"));
    // Several header lines are one list, in order.
    let mut r = with("10.0.0.2", "x-forwarded-for", "6.6.6.6, 198.51.100.7");
    r.headers_mut()
        .append("x-forwarded-for", "10.0.0.1:3456".parse().unwrap());
    assert_eq!(resolve(&xff, &r).as_deref(), Some("198.51.100.7"));
    // Every hop trusted: the left-most.
    let r = with("10.0.0.2", "x-forwarded-for", "10.9.9.9, 10.0.0.1");
    assert_eq!(resolve(&xff, &r).as_deref(), Some("10.9.9.9"));
    // Garbage stops the walk at the trusted hop to its right.
    let r = with("10.0.0.2", "x-forwarded-for", "1.2.3.4, garbage, 10.0.0.1");
    assert_eq!(resolve(&xff, &r).as_deref(), Some("10.0.0.1"));
    // No header from a trusted peer: the peer.
    assert_eq!(
        resolve(&xff, &from("10.0.0.2")).as_deref(),
        Some("10.0.0.2")
    );
    // IPv6 and IPv4-mapped peers.
    let r = with(
        "::ffff:10.0.0.2",
        "x-forwarded-for",
        "[2001:db9::1]:80, 2001:db8::9",
    );
    assert_eq!(resolve(&xff, &r).as_deref(), Some("2001:db9::1"));

    // `Forwarded` is read only when configured, and then only it.
    let fwd = resolver(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
    let mut r = with(
        "10.0.0.2",
        "forwarded",
        "for=6.6.6.6, for=\"198.51.100.7:1234\";proto=https, for=10.0.0.1",
    );
    r.headers_mut()
        .insert("x-forwarded-for", "5.5.5.5".parse().unwrap());
    assert_eq!(resolve(&fwd, &r).as_deref(), Some("198.51.100.7"));
    assert_eq!(resolve(&xff, &r).as_deref(), Some("5.5.5.5"));
    let r = with("10.0.0.2", "forwarded", "for=unknown");
    assert_eq!(resolve(&fwd, &r).as_deref(), Some("10.0.0.2"));
}

#[tokio::test(start_paused = true)]
async fn spoofed_headers_share_the_peer_counter() {
    let upstream = Upstream::default();
    let service = RateLimitLayer::new([Quota::per_minute(1)])
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
