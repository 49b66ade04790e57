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
async fn rename_replaces_every_value_of_the_target_with_or_without_repeated_headers() {
    let layer = TransformLayer::new().request(
        HeaderOps::new()
            .rename(name("x-api-key"), name("x-upstream-key"))
            .set(name("x-gateway"), tpl("meshgate")),
    );
    // No header repeated: the value moves with a remove and an insert.
    let request = Request::builder()
        .header("x-api-key", "k1")
        .header("x-upstream-key", "client")
        .header("x-gateway", "spoofed")
        .body(())
        .unwrap();
    let (seen, _) = run(&layer, request).await;
    assert!(seen.get("x-api-key").is_none());
    assert_eq!(values(&seen, "x-upstream-key"), ["k1"]);
    assert_eq!(values(&seen, "x-gateway"), ["meshgate"]);
    assert_eq!(seen.len(), 2);
    // The target repeated: every value it had goes.
    let request = Request::builder()
        .header("x-api-key", "k1")
        .header("x-upstream-key", "a")
        .header("x-upstream-key", "b")
        .header("x-gateway", "spoofed")
        .header("x-gateway", "twice")
        .body(())
        .unwrap();
    let (seen, _) = run(&layer, request).await;
    assert!(seen.get("x-api-key").is_none());
    assert_eq!(values(&seen, "x-upstream-key"), ["k1"]);
    assert_eq!(values(&seen, "x-gateway"), ["meshgate"]);
    assert_eq!(seen.len(), 2);
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
    let layer = TransformLayer::from_config(&config, &[]).unwrap();
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
        serde_saphyr::from_str("request:\n  set: { x-user: \"${claims.sub}\" }\n").unwrap();
    let error = TransformLayer::from_config(&bad, &[]).unwrap_err();
    assert_eq!(error.field(), "request.set.x-user");
    assert!(
        error.message().contains("unknown variable `${claims.sub}`"),
        "{error}"
    );
}

#[tokio::test]
async fn query_parameters_are_rewritten_from_templates() {
    use meshgate::transform::QueryOps;
    let seen = Arc::new(Mutex::new(String::new()));
    let seen2 = seen.clone();
    let service = TransformLayer::new()
        .query(
            QueryOps::new()
                .remove("debug")
                .rename("q", "search")
                .set("tenant", "${header.x-tenant}")
                .unwrap()
                .add("via", "${query.page}-gw")
                .unwrap(),
        )
        .layer(service_fn(move |request: Request<()>| {
            *seen2.lock().unwrap() = request.uri().to_string();
            async { Ok::<_, Infallible>(Response::new(String::new())) }
        }));
    let request = Request::builder()
        .uri("/items?q=red%20shoes&debug=1&page=2&tenant=forged")
        .header("x-tenant", "acme corp")
        .body(())
        .unwrap();
    service.oneshot(request).await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        "/items?search=red%20shoes&page=2&tenant=acme%20corp&via=2-gw"
    );
}

#[tokio::test]
async fn header_and_query_templates_cannot_inject_header_lines() {
    let layer = TransformLayer::new().request(
        HeaderOps::new()
            .set(name("x-user"), tpl("${query.user}"))
            .add(name("x-copy"), tpl("v=${header.x-in}")),
    );
    let request = Request::builder()
        .uri("/?user=ann%0D%0Ax-admin:%20true")
        .header("x-user", "forged")
        .header("x-in", "a")
        .header("x-in", "b")
        .body(())
        .unwrap();
    let (seen, _) = run(&layer, request).await;
    // The decoded value has CR LF: dropped, and `set` removed the forgery.
    assert!(seen.get("x-user").is_none());
    assert!(seen.get("x-admin").is_none());
    assert_eq!(values(&seen, "x-copy"), ["v=a, b"]);
    assert_eq!(layer.stats().invalid_values, 1);
}

#[cfg(feature = "auth")]
#[tokio::test]
async fn claims_and_consumer_fill_templates_and_missing_ones_write_nothing() {
    use meshgate::auth::Consumer;
    use meshgate::auth::jwt::Claims;
    let layer = TransformLayer::new()
        .request(
            HeaderOps::new()
                .set(name("x-user"), tpl("${claim.sub}"))
                .set(name("x-roles"), tpl("${claim.roles}"))
                .set(name("x-level"), tpl("${claim.level}"))
                .set(name("x-consumer"), tpl("${consumer}"))
                .add(name("x-org"), tpl("${claim.org}")),
        )
        .response(HeaderOps::new().set(name("x-served-for"), tpl("${claim.sub}@${consumer}")));
    let claims = Claims::from_json(serde_json::json!({
        "sub": "user-7", "roles": ["admin", "ops"], "level": 3
    }))
    .unwrap();
    let request = Request::builder()
        .header("x-consumer", "forged")
        .extension(claims)
        .extension(Consumer::new("mobile-app"))
        .body(())
        .unwrap();
    let (seen, response) = run(&layer, request).await;
    assert_eq!(seen["x-user"], "user-7");
    assert_eq!(seen["x-roles"], "admin,ops");
    assert_eq!(seen["x-level"], "3");
    assert_eq!(seen["x-consumer"], "mobile-app");
    assert!(seen.get("x-org").is_none());
    assert_eq!(response["x-served-for"], "user-7@mobile-app");

    // Without authentication: nothing is written and forgeries are removed.
    let request = Request::builder()
        .header("x-consumer", "forged")
        .header("x-user", "forged")
        .body(())
        .unwrap();
    let (seen, response) = run(&layer, request).await;
    assert!(seen.get("x-consumer").is_none());
    assert!(seen.get("x-user").is_none());
    assert!(response.get("x-served-for").is_none());
}

mod json_bodies {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http::{Method, Request, Response, StatusCode};
    use http_body::Frame;
    use http_body_util::{BodyExt, Full};
    use meshgate::transform::{JsonBodyLayer, JsonOps, TransformBody};
    use serde_json::{Value, json};
    use tower::{Layer, ServiceExt, service_fn};

    /// A streamed body of several chunks, no announced length.
    struct Chunks(VecDeque<Bytes>);

    impl Chunks {
        fn new(parts: &[&str]) -> Self {
            Self(
                parts
                    .iter()
                    .map(|p| Bytes::copy_from_slice(p.as_bytes()))
                    .collect(),
            )
        }
    }

    impl http_body::Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    struct Seen {
        body: Vec<u8>,
        content_length: Option<String>,
    }

    /// Sends `body` through `layer` to an upstream that records the request
    /// body and answers `reply` with `content_type`.
    async fn exchange(
        layer: &JsonBodyLayer,
        method: Method,
        request_type: &str,
        body: Chunks,
        content_length: Option<usize>,
        content_type: &'static str,
        reply: &'static str,
    ) -> (Seen, Response<TransformBody<Full<Bytes>>>) {
        let seen = Arc::new(Mutex::new(None));
        let seen2 = seen.clone();
        let service = layer.layer(service_fn(
            move |request: Request<TransformBody<Chunks>>| {
                let seen = seen2.clone();
                async move {
                    let content_length = request
                        .headers()
                        .get("content-length")
                        .map(|v| v.to_str().unwrap().to_owned());
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    *seen.lock().unwrap() = Some(Seen {
                        body: body.to_vec(),
                        content_length,
                    });
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", content_type)
                            .header("content-length", reply.len())
                            .body(Full::new(Bytes::from_static(reply.as_bytes())))
                            .unwrap(),
                    )
                }
            },
        ));
        let mut request = Request::builder()
            .method(method)
            .header("content-type", request_type)
            .header("x-tenant", "acme");
        if let Some(n) = content_length {
            request = request.header("content-length", n);
        }
        let response = service.oneshot(request.body(body).unwrap()).await.unwrap();
        let seen = seen.lock().unwrap().take().unwrap();
        (seen, response)
    }

    async fn body_json(response: Response<TransformBody<Full<Bytes>>>) -> Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn layer(max_body: usize) -> JsonBodyLayer {
        JsonBodyLayer::new()
            .request(
                JsonOps::new()
                    .remove("password")
                    .rename("user", "account.name")
                    .add("tenant", json!("${header.x-tenant}"))
                    .unwrap(),
            )
            .response(
                JsonOps::new()
                    .remove("internal.node")
                    .replace("status", json!("ok"))
                    .unwrap(),
            )
            .max_body(max_body)
    }

    #[tokio::test]
    async fn request_and_response_fields_are_rewritten_with_lengths_fixed() {
        let layer = layer(1024);
        let (seen, response) = exchange(
            &layer,
            Method::POST,
            "application/json; charset=utf-8",
            // Streamed in pieces that split the document anywhere.
            Chunks::new(&["{\"user\":\"ann\",\"pass", "word\":\"hunter2\"}"]),
            None,
            "application/json",
            r#"{"status":"up","internal":{"node":"n7","zone":"a"},"items":[1,2]}"#,
        )
        .await;
        let sent: Value = serde_json::from_slice(&seen.body).unwrap();
        assert_eq!(sent, json!({"account": {"name": "ann"}, "tenant": "acme"}));
        assert_eq!(
            seen.content_length.as_deref(),
            Some(seen.body.len().to_string().as_str())
        );
        assert_eq!(response.status(), StatusCode::OK);
        let length: usize = response.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = body_json(response).await;
        assert_eq!(
            body,
            json!({"status": "ok", "internal": {"zone": "a"}, "items": [1, 2]})
        );
        assert_eq!(length, serde_json::to_vec(&body).unwrap().len());
        let stats = layer.stats();
        assert_eq!(stats.bodies_transformed, 2);
        assert_eq!(stats.bodies_too_large, 0);
    }

    #[tokio::test]
    async fn bodies_over_the_cap_pass_untouched_and_are_counted() {
        let layer = layer(16);
        // Announced over the cap: not read at all before the call.
        let big = r#"{"user":"ann","password":"hunter2"}"#;
        let (seen, response) = exchange(
            &layer,
            Method::POST,
            "application/json",
            Chunks::new(&[big]),
            Some(big.len()),
            "application/json",
            r#"{"status":"up","internal":{"node":"n7"}}"#,
        )
        .await;
        assert_eq!(seen.body, big.as_bytes());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"status":"up","internal":{"node":"n7"}}"#);
        // Found over the cap while streaming: what was read comes first.
        let (seen, _) = exchange(
            &layer,
            Method::POST,
            "application/json",
            Chunks::new(&["{\"user\":", "\"ann\",", "\"password\":\"x\"}"]),
            None,
            "text/plain",
            "fine",
        )
        .await;
        assert_eq!(seen.body, br#"{"user":"ann","password":"x"}"#);
        assert_eq!(seen.content_length, None);
        assert_eq!(layer.stats().bodies_too_large, 3);
    }

    #[tokio::test]
    async fn other_bodies_pass_byte_for_byte() {
        let layer = layer(1024);
        // Not JSON by type: not read, not counted.
        let (seen, response) = exchange(
            &layer,
            Method::POST,
            "text/plain",
            Chunks::new(&["{\"password\":1}"]),
            None,
            "text/html",
            r#"{"status":"up"}"#,
        )
        .await;
        assert_eq!(seen.body, br#"{"password":1}"#);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"status":"up"}"#);
        // JSON by type but malformed, or not an object: sent as it came.
        let (seen, response) = exchange(
            &layer,
            Method::POST,
            "application/json",
            Chunks::new(&["{\"password\": "]),
            None,
            "application/problem+json",
            r#"[{"status":"up"}]"#,
        )
        .await;
        assert_eq!(seen.body, br#"{"password": "#);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"[{"status":"up"}]"#);
        assert_eq!(layer.stats().bodies_not_json, 2);
        assert_eq!(layer.stats().bodies_transformed, 0);
        // HEAD responses are never read.
        let (_, response) = exchange(
            &layer,
            Method::HEAD,
            "application/json",
            Chunks::new(&[]),
            None,
            "application/json",
            r#"{"status":"up"}"#,
        )
        .await;
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"status":"up"}"#);
    }
}

#[tokio::test]
async fn empty_bodies_are_not_read_and_a_rewritten_etag_turns_weak() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use meshgate::transform::{JsonBodyLayer, JsonOps, TransformBody};
    let layer = JsonBodyLayer::new()
        .request(JsonOps::new().remove("a"))
        .response(JsonOps::new().remove("internal"));
    let service = layer.layer(service_fn(
        |request: Request<TransformBody<Full<Bytes>>>| async move {
            let etag = request.headers()["x-etag"].clone();
            let body = if request.headers().contains_key("x-empty") {
                ""
            } else {
                r#"{"id":1,"internal":true}"#
            };
            Ok::<_, Infallible>(
                Response::builder()
                    .header("content-type", "application/json")
                    .header("etag", etag)
                    .body(Full::from(body))
                    .unwrap(),
            )
        },
    ));
    let send = |etag: &'static str, empty: bool| {
        let mut request = Request::builder()
            .header("content-type", "application/json")
            .header("x-etag", etag);
        if empty {
            request = request.header("x-empty", "1");
        }
        service
            .clone()
            .oneshot(request.body(Full::default()).unwrap())
    };
    let response = send("\"v1\"", false).await.unwrap();
    assert_eq!(response.headers()["etag"], "W/\"v1\"");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"id":1}"#);
    let response = send("W/\"v2\"", false).await.unwrap();
    assert_eq!(response.headers()["etag"], "W/\"v2\"");
    // An empty request body (and an empty answer) is not read or counted.
    let response = send("\"v3\"", true).await.unwrap();
    assert_eq!(response.headers()["etag"], "\"v3\"");
    let stats = layer.stats();
    assert_eq!(stats.bodies_transformed, 2);
    assert_eq!(stats.bodies_not_json, 0);
}

mod compression {
    use std::convert::Infallible;
    use std::io::Read;

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{BodyExt, Full};
    use meshgate::transform::Compression;
    use tower::{Layer, ServiceExt, service_fn};

    const TEXT: &str = "meshgate compresses what is worth compressing. ";

    async fn fetch(
        compression: Compression,
        accept: Option<&str>,
        reply: Response<Full<Bytes>>,
    ) -> (http::HeaderMap, Bytes) {
        let reply = std::sync::Mutex::new(Some(reply));
        let service = compression
            .layer()
            .layer(service_fn(move |_: Request<Full<Bytes>>| {
                let reply = reply.lock().unwrap().take().unwrap();
                async move { Ok::<_, Infallible>(reply) }
            }));
        let mut request = Request::builder();
        if let Some(accept) = accept {
            request = request.header("accept-encoding", accept);
        }
        let response = service
            .oneshot(request.body(Full::default()).unwrap())
            .await
            .unwrap();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (headers, body)
    }

    fn text(len: usize, extra: &[(&str, &str)]) -> Response<Full<Bytes>> {
        let body = TEXT.repeat(len / TEXT.len() + 1)[..len].to_owned();
        let mut response = Response::builder()
            .header("content-type", "application/json")
            .header("content-length", body.len());
        for (name, value) in extra {
            response = response.header(*name, *value);
        }
        response.body(Full::from(body)).unwrap()
    }

    #[tokio::test]
    async fn gzip_and_brotli_follow_the_q_values() {
        let compression = Compression::new().min_size(256);
        let (headers, body) = fetch(compression, Some("gzip"), text(4096, &[])).await;
        assert_eq!(headers["content-encoding"], "gzip");
        assert_eq!(headers["vary"], "accept-encoding");
        assert!(headers.get("content-length").is_none());
        let mut plain = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut plain)
            .unwrap();
        assert_eq!(plain.len(), 4096);
        assert!(plain.starts_with(TEXT));
        assert!(body.len() < 1024, "compressed to {}", body.len());

        let (headers, _) = fetch(compression, Some("gzip;q=0.5, br"), text(4096, &[])).await;
        assert_eq!(headers["content-encoding"], "br");
        let (headers, _) = fetch(compression, Some("gzip, br;q=0"), text(4096, &[])).await;
        assert_eq!(headers["content-encoding"], "gzip");
        let gzip_only = compression.brotli(false);
        let (headers, _) = fetch(gzip_only, Some("br, gzip;q=0.1"), text(4096, &[])).await;
        assert_eq!(headers["content-encoding"], "gzip");
    }

    #[tokio::test]
    async fn small_encoded_no_transform_and_unasked_responses_pass() {
        let compression = Compression::new().min_size(256);
        let cases = [
            (Some("gzip"), text(100, &[])),
            (
                Some("gzip"),
                text(4096, &[("cache-control", "public, No-Transform")]),
            ),
            (Some("gzip"), text(4096, &[("content-encoding", "br")])),
            (None, text(4096, &[])),
        ];
        for (accept, reply) in cases {
            let expected = reply.headers().get("content-encoding").cloned();
            let length = reply.headers()["content-length"].clone();
            let (headers, body) = fetch(compression, accept, reply).await;
            assert_eq!(headers.get("content-encoding"), expected.as_ref());
            assert_eq!(headers["content-length"], length);
            assert_eq!(body.len().to_string(), length.to_str().unwrap());
        }
    }
}
