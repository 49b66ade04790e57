//! Behaviour of `meshgate::transform` through its public API: the order of
//! operations, anti-spoofing, templates from the request's extensions.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use meshgate::peer::PeerAddr;
use meshgate::transform::{HeaderOps, HeaderTemplate, TransformLayer};
use tower::{Layer, ServiceExt, service_fn};

fn name(s: &'static str) -> HeaderName {
    HeaderName::from_static(s)
}

fn tpl(s: &str) -> HeaderTemplate {
    s.parse().unwrap()
}

/// Runs one request through `layer`; returns the headers the inner service
/// saw and the response headers the client gets.
async fn run(layer: &TransformLayer, request: Request<()>) -> (HeaderMap, HeaderMap) {
    let seen = Arc::new(Mutex::new(HeaderMap::new()));
    let seen2 = seen.clone();
    let service = layer.layer(service_fn(move |request: Request<()>| {
        *seen2.lock().unwrap() = request.headers().clone();
        async {
            let mut response = Response::new(String::new());
            let headers = response.headers_mut();
            headers.insert("server", HeaderValue::from_static("upstream/1.0"));
            headers.insert("x-internal-node", HeaderValue::from_static("n7"));
            headers.append("x-cache-key", HeaderValue::from_static("a"));
            headers.append("x-cache-key", HeaderValue::from_static("b"));
            Ok::<_, Infallible>(response)
        }
    }));
    let response = service.oneshot(request).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    (seen, response.headers().clone())
}

fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

fn from_peer(peer: &str) -> http::request::Builder {
    Request::builder().extension(PeerAddr(peer.parse().unwrap()))
}

#[tokio::test]
async fn spoofed_internal_headers_are_removed_and_replaced() {
    let layer = TransformLayer::new().request(
        HeaderOps::new()
            .remove(name("x-consumer-id"))
            .remove(name("x-client-ip"))
            .set(name("x-client-ip"), tpl("${client_ip}"))
            // Set with an unavailable value: any client-sent value goes.
            .set(name("x-request-id-copy"), tpl("${request_id}")),
    );
    let request = from_peer("198.51.100.23:4000")
        .header("x-consumer-id", "admin")
        .header("x-consumer-id", "root")
        .header("X-Client-IP", "10.0.0.1")
        .header("x-request-id-copy", "forged")
        .header("accept", "text/plain")
        .body(())
        .unwrap();
    let (seen, _) = run(&layer, request).await;
    assert!(seen.get("x-consumer-id").is_none());
    assert_eq!(values(&seen, "x-client-ip"), ["198.51.100.23"]);
    // `RequestIdLayer` is not in this stack, so there is no request id.
    assert!(seen.get("x-request-id-copy").is_none());
    assert_eq!(values(&seen, "accept"), ["text/plain"]);
}

#[tokio::test]
async fn operations_run_in_order_remove_rename_set_add() {
    let layer = TransformLayer::new().request(
        HeaderOps::new()
            .add(name("x-tag"), tpl("added"))
            .set(name("x-tag"), tpl("set"))
            .rename(name("x-old"), name("x-tag"))
            .remove(name("x-old")),
    );
    // `x-old` is removed before it can be renamed; set replaces the
    // client's value, add appends after it.
    let request = Request::builder()
        .header("x-old", "1")
        .header("x-tag", "client")
        .body(())
        .unwrap();
    let (seen, _) = run(&layer, request).await;
    assert!(seen.get("x-old").is_none());
    assert_eq!(values(&seen, "x-tag"), ["set", "added"]);
}

#[tokio::test]
async fn rename_moves_every_value_and_replaces_the_target() {
    let layer = TransformLayer::new().request(
        HeaderOps::new()
            .rename(name("x-api-key"), name("x-upstream-key"))
            .rename(name("x-absent"), name("x-kept")),
    );
    let request = Request::builder()
        .header("x-api-key", "k1")
        .header("x-api-key", "k2")
        .header("x-upstream-key", "client")
        .header("x-kept", "stays")
        .body(())
        .unwrap();
    let (seen, _) = run(&layer, request).await;
    assert!(seen.get("x-api-key").is_none());
    assert_eq!(values(&seen, "x-upstream-key"), ["k1", "k2"]);
    assert_eq!(values(&seen, "x-kept"), ["stays"]);
}

#[tokio::test]
async fn response_headers_are_transformed_with_the_request_values() {
    let layer = TransformLayer::new().response(
        HeaderOps::new()
            .remove(name("server"))
            .rename(name("x-internal-node"), name("x-served-by"))
            .set(name("x-client"), tpl("ip=${client_ip}"))
            .add(name("x-cache-key"), tpl("c")),
    );
    let request = from_peer("[::ffff:192.0.2.9]:1").body(()).unwrap();
    let (_, response) = run(&layer, request).await;
    assert!(response.get("server").is_none());
    assert!(response.get("x-internal-node").is_none());
    assert_eq!(values(&response, "x-served-by"), ["n7"]);
    // Mapped IPv4 shown as IPv4.
    assert_eq!(values(&response, "x-client"), ["ip=192.0.2.9"]);
    assert_eq!(values(&response, "x-cache-key"), ["a", "b", "c"]);
}

#[cfg(feature = "observe")]
#[tokio::test]
async fn request_id_comes_from_the_request_id_layer() {
    use meshgate::observe::RequestIdLayer;
    let seen = Arc::new(Mutex::new(HeaderMap::new()));
    let seen2 = seen.clone();
    let service = RequestIdLayer::new().layer(
        TransformLayer::new()
            .request(HeaderOps::new().set(name("x-correlation-id"), tpl("gw-${request_id}")))
            .response(HeaderOps::new().set(name("x-echo"), tpl("${request_id}")))
            .layer(service_fn(move |request: Request<()>| {
                *seen2.lock().unwrap() = request.headers().clone();
                async { Ok::<_, Infallible>(Response::new(String::new())) }
            })),
    );
    let request = Request::builder()
        .header("x-request-id", "abc-123")
        .body(())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(seen.lock().unwrap()["x-correlation-id"], "gw-abc-123");
    assert_eq!(response.headers()["x-echo"], "abc-123");
}

#[cfg(feature = "ip-restriction")]
#[tokio::test]
async fn client_ip_honours_trusted_proxies_when_given_a_resolver() {
    use meshgate::net::{IpNet, TrustedProxies};
    let layer = TransformLayer::new()
        .request(HeaderOps::new().set(name("x-real-ip"), tpl("${client_ip}")))
        .client_ip(TrustedProxies::new(["10.0.0.0/8"
            .parse::<IpNet>()
            .unwrap()]));
    let via_proxy = from_peer("10.0.0.5:1")
        .header("x-forwarded-for", "6.6.6.6, 203.0.113.4")
        .body(())
        .unwrap();
    assert_eq!(run(&layer, via_proxy).await.0["x-real-ip"], "203.0.113.4");
    let direct = from_peer("198.51.100.1:1")
        .header("x-forwarded-for", "203.0.113.4")
        .body(())
        .unwrap();
    assert_eq!(run(&layer, direct).await.0["x-real-ip"], "198.51.100.1");
}

#[cfg(feature = "config")]
#[tokio::test]
async fn built_from_the_config_section() {
    let yaml = "request:\n  remove: [x-consumer-id]\n  rename: { x-api-key: x-upstream-key }\n  set: { x-client-ip: \"${client_ip}\" }\nresponse:\n  add: { x-gateway: meshgate }\n";
    let config: meshgate::config::Transform = serde_saphyr::from_str(yaml).unwrap();
    let layer = TransformLayer::from_config(&config).unwrap();
    let request = from_peer("192.0.2.1:1")
        .header("x-consumer-id", "x")
        .header("x-api-key", "k")
        .body(())
        .unwrap();
    let (seen, response) = run(&layer, request).await;
    assert!(seen.get("x-consumer-id").is_none());
    assert_eq!(seen["x-upstream-key"], "k");
    assert_eq!(seen["x-client-ip"], "192.0.2.1");
    assert_eq!(response["x-gateway"], "meshgate");

    let bad: meshgate::config::Transform =
        serde_saphyr::from_str("request:\n  set: { x-user: \"${claim.sub}\" }\n").unwrap();
    let error = TransformLayer::from_config(&bad).unwrap_err().to_string();
    assert!(error.contains("unknown variable `${claim.sub}`"), "{error}");
}
