//! What the upstream and the client see of the headers.

use http::header::HeaderValue;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use meshgate::Body;
use meshgate::net::TrustedProxies;
use meshgate::peer::PeerAddr;
use meshgate::proxy::{HostHeader, IncomingForwarded, Proxy};
use tower::ServiceExt;

use crate::support::{exchange, head, recording_upstream, serve_proxy, upstream};

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let upstream = upstream(move |request: Request<Incoming>| {
        let seen_tx = seen_tx.clone();
        async move {
            let _ = seen_tx.send(request.headers().clone());
            Response::builder()
                .header("connection", "x-up-secret")
                .header("x-up-secret", "leak")
                .header("keep-alive", "timeout=5")
                .header("proxy-connection", "keep-alive")
                .header("proxy-authenticate", "Basic realm=\"up\"")
                .header("trailer", "x-checksum")
                .header("upgrade", "h2c")
                .header("x-end-to-end", "kept")
                .body(Body::from("ok"))
                .unwrap()
        }
    });
    let proxy = serve_proxy(Proxy::to(format!("http://{upstream}")).unwrap());

    let response = exchange(
        proxy,
        "GET /hop HTTP/1.1\r\n\
         host: api.example.com\r\n\
         connection: close, X-Custom-Hop\r\n\
         x-custom-hop: must-go\r\n\
         keep-alive: timeout=5\r\n\
         proxy-connection: keep-alive\r\n\
         te: trailers, deflate\r\n\
         trailer: x-checksum\r\n\
         upgrade: websocket\r\n\
         proxy-authorization: Basic cHJveHk6c2VjcmV0\r\n\
         x-request-id: 7f0c1d2e\r\n\
         traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\
         \r\n",
    )
    .await;

    let upstream_saw = seen.recv().await.unwrap();
    for hop in [
        "x-custom-hop",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
    ] {
        assert!(
            !upstream_saw.contains_key(hop),
            "{hop} reached the upstream: {upstream_saw:?}"
        );
    }
    assert!(!upstream_saw.contains_key("connection"), "{upstream_saw:?}");
    assert_eq!(upstream_saw["x-request-id"], "7f0c1d2e");
    assert_eq!(
        upstream_saw["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );

    let (status, headers) = head(&response);
    assert_eq!(status, "HTTP/1.1 200 OK", "{response}");
    let names: Vec<&str> = headers.iter().map(|(name, _)| name.as_str()).collect();
    for hop in [
        "x-up-secret",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "trailer",
        "upgrade",
    ] {
        assert!(
            !names.contains(&hop),
            "{hop} reached the client: {response}"
        );
    }
    // The only `connection` is the front server's own, for this connection.
    let connection: Vec<&str> = headers
        .iter()
        .filter(|(name, _)| name == "connection")
        .map(|(_, value)| value.as_str())
        .collect();
    assert_eq!(connection, ["close"], "{response}");
    assert!(headers.contains(&("x-end-to-end".into(), "kept".into())));
    assert!(response.ends_with("\r\n\r\nok"), "{response}");
}

#[tokio::test]
async fn x_forwarded_headers_and_via_without_an_incoming_chain() {
    let (upstream, mut seen) = recording_upstream();
    let proxy = serve_proxy(Proxy::to(format!("http://{upstream}")).unwrap());

    let response = exchange(
        proxy,
        "GET / HTTP/1.1\r\nhost: api.example.com\r\nconnection: close\r\n\r\n",
    )
    .await;
    let upstream_saw = seen.recv().await.unwrap();
    // The PeerAddr the front server inserted: the test client's address.
    assert_eq!(upstream_saw["x-forwarded-for"], "127.0.0.1");
    assert_eq!(upstream_saw["x-forwarded-proto"], "http");
    assert_eq!(upstream_saw["x-forwarded-host"], "api.example.com");
    assert!(!upstream_saw.contains_key("forwarded"), "off by default");
    assert_eq!(upstream_saw["via"], "1.1 meshgate");
    // Host preserved by default.
    assert_eq!(upstream_saw["host"], "api.example.com");

    let (status, headers) = head(&response);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains(&("via".into(), "1.1 meshgate".into())),
        "{response}"
    );
}

#[tokio::test]
async fn an_incoming_chain_is_replaced_by_default_and_appended_when_asked() {
    let request = "GET / HTTP/1.1\r\n\
                   host: api.example.com\r\n\
                   x-forwarded-for: 203.0.113.9, 198.51.100.1\r\n\
                   x-forwarded-proto: https\r\n\
                   x-forwarded-host: spoofed.example\r\n\
                   forwarded: for=203.0.113.9;proto=https\r\n\
                   via: 1.1 edge-lb\r\n\
                   connection: close\r\n\r\n";

    // Default: replace, X-Forwarded-* only.
    let (upstream_addr, mut seen) = recording_upstream();
    let proxy = serve_proxy(Proxy::to(format!("http://{upstream_addr}")).unwrap());
    exchange(proxy, request).await;
    let replaced = seen.recv().await.unwrap();
    assert_eq!(replaced["x-forwarded-for"], "127.0.0.1");
    assert_eq!(replaced["x-forwarded-proto"], "http");
    assert_eq!(replaced["x-forwarded-host"], "api.example.com");
    // `Forwarded` is not written by default, so it is left as it came.
    assert_eq!(replaced["forwarded"], "for=203.0.113.9;proto=https");
    // Via is appended to, never replaced.
    let via: Vec<_> = replaced.get_all("via").iter().collect();
    assert_eq!(via, ["1.1 edge-lb", "1.1 meshgate"]);

    // Append, with RFC 7239 too, and an https listener in front.
    let (upstream_addr, mut seen) = recording_upstream();
    let proxy = Proxy::builder()
        .upstream(format!("http://{upstream_addr}").parse().unwrap())
        .incoming_forwarded(IncomingForwarded::Append)
        .forwarded(true)
        .client_scheme(http::uri::Scheme::HTTPS)
        .via(Some("gw-1"))
        .build()
        .unwrap();
    exchange(serve_proxy(proxy), request).await;
    let appended = seen.recv().await.unwrap();
    assert_eq!(
        appended["x-forwarded-for"],
        "203.0.113.9, 198.51.100.1, 127.0.0.1"
    );
    assert_eq!(appended["x-forwarded-proto"], "https");
    assert_eq!(appended["x-forwarded-host"], "spoofed.example");
    assert_eq!(
        appended["forwarded"],
        "for=203.0.113.9;proto=https, for=127.0.0.1;host=api.example.com;proto=https"
    );
    let via: Vec<_> = appended.get_all("via").iter().collect();
    assert_eq!(via, ["1.1 edge-lb", "1.1 gw-1"]);

    // Append only from trusted peers: 127.0.0.1 is not in 10/8.
    let (upstream_addr, mut seen) = recording_upstream();
    let proxy = Proxy::builder()
        .upstream(format!("http://{upstream_addr}").parse().unwrap())
        .incoming_forwarded(IncomingForwarded::AppendFrom(
            TrustedProxies::parse(["10.0.0.0/8"]).unwrap(),
        ))
        .build()
        .unwrap();
    exchange(serve_proxy(proxy), request).await;
    assert_eq!(seen.recv().await.unwrap()["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test]
async fn forwarded_quotes_an_ipv6_client() {
    let (upstream_addr, mut seen) = recording_upstream();
    let proxy = Proxy::builder()
        .upstream(format!("http://{upstream_addr}").parse().unwrap())
        .forwarded(true)
        .build()
        .unwrap();
    let mut request = Request::get("/")
        .header("host", "[2001:db8::10]:8443")
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(PeerAddr("[2001:db8::1]:51000".parse().unwrap()));
    let response = proxy.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let upstream_saw = seen.recv().await.unwrap();
    assert_eq!(
        upstream_saw["forwarded"],
        "for=\"[2001:db8::1]\";host=\"[2001:db8::10]:8443\";proto=http"
    );
    assert_eq!(upstream_saw["x-forwarded-for"], "2001:db8::1");
}

#[tokio::test]
async fn host_is_preserved_or_rewritten() {
    let (upstream_addr, mut seen) = recording_upstream();
    let preserve = Proxy::to(format!("http://{upstream_addr}")).unwrap();
    let rewrite = Proxy::builder()
        .upstream(format!("http://{upstream_addr}").parse().unwrap())
        .host_header(HostHeader::Rewrite)
        .build()
        .unwrap();

    let request = || {
        Request::get("/")
            .header("host", "api.example.com")
            .body(Body::empty())
            .unwrap()
    };
    preserve.clone().oneshot(request()).await.unwrap();
    assert_eq!(seen.recv().await.unwrap()["host"], "api.example.com");
    rewrite.oneshot(request()).await.unwrap();
    let rewritten = seen.recv().await.unwrap();
    assert_eq!(rewritten["host"], upstream_addr.to_string().as_str());
    // The client's host still reaches the upstream, as X-Forwarded-Host.
    assert_eq!(rewritten["x-forwarded-host"], "api.example.com");

    // A `Connection` that names `Host` does not lose the client's host.
    let named = Request::get("/")
        .header("host", "api.example.com")
        .header("connection", "host, x-gone")
        .header("x-gone", "1")
        .body(Body::empty())
        .unwrap();
    preserve.clone().oneshot(named).await.unwrap();
    let saw = seen.recv().await.unwrap();
    assert_eq!(saw["host"], "api.example.com");
    assert!(!saw.contains_key("x-gone") && !saw.contains_key("connection"));
    // Without a `Host`: the URI's authority (as an HTTP/2 client sends
    // it), or with neither, the upstream's.
    let authority = Request::get("http://shop.example:8080/")
        .body(Body::empty())
        .unwrap();
    preserve.clone().oneshot(authority).await.unwrap();
    assert_eq!(seen.recv().await.unwrap()["host"], "shop.example:8080");
    let bare = Request::get("/").body(Body::empty()).unwrap();
    preserve.oneshot(bare).await.unwrap();
    assert_eq!(
        seen.recv().await.unwrap()["host"],
        upstream_addr.to_string().as_str()
    );
}

#[tokio::test]
async fn the_upstream_comes_from_the_absolute_uri_or_the_fixed_upstream() {
    let (chosen, mut chosen_seen) = recording_upstream();
    let (fixed, mut fixed_seen) = recording_upstream();

    // As a load balancer in front sets it: the absolute URI is the target,
    // and the Host header is left as the client sent it.
    let request = Request::get(format!("http://{chosen}/orders?id=7"))
        .header("host", "shop.example.com")
        .body(Body::empty())
        .unwrap();
    let response = Proxy::new().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        chosen_seen.recv().await.unwrap()["host"],
        "shop.example.com"
    );

    // A fixed upstream ignores a client's absolute-form target: no open proxy.
    let proxy = serve_proxy(Proxy::to(format!("http://{fixed}")).unwrap());
    let response = exchange(
        proxy,
        &format!(
            "GET http://{chosen}/steal HTTP/1.1\r\nhost: {chosen}\r\nconnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(fixed_seen.recv().await.is_some());
    assert!(
        chosen_seen.try_recv().is_err(),
        "the client chose the upstream"
    );
}

#[tokio::test]
async fn h2c_upstreams_get_http2_and_te_trailers() {
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let listener = crate::support::listener();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let _ = tx.send((request.version(), request.headers().clone()));
                    async move {
                        let body = request.into_body().collect().await?.to_bytes();
                        Ok::<_, hyper::Error>(Response::new(Body::from(body)))
                    }
                });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
            });
        }
    });
    let proxy = Proxy::builder()
        .upstream(format!("http://{addr}").parse().unwrap())
        .http2_prior_knowledge(true)
        .build()
        .unwrap();
    let request = Request::post("/grpc.Echo/Say")
        .header("host", "api.example.com")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Body::from("ping"))
        .unwrap();
    let response = proxy.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["via"], "2 meshgate");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "ping");
    let (version, headers) = seen.recv().await.unwrap();
    assert_eq!(version, http::Version::HTTP_2);
    assert_eq!(headers["te"], HeaderValue::from_static("trailers"));
    assert_eq!(headers["via"], "1.1 meshgate");
}

#[tokio::test]
async fn an_upgrade_that_cannot_be_tunnelled_loses_its_upgrade_header() {
    // Called directly, not from a hyper server: no `OnUpgrade` to join.
    let (upstream_addr, mut seen) = recording_upstream();
    let request = Request::get("/chat")
        .header("host", "x")
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .body(Body::empty())
        .unwrap();
    let response = Proxy::to(format!("http://{upstream_addr}"))
        .unwrap()
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let upstream_saw = seen.recv().await.unwrap();
    assert!(!upstream_saw.contains_key("upgrade"), "{upstream_saw:?}");
    assert!(!upstream_saw.contains_key("connection"), "{upstream_saw:?}");
}

#[tokio::test]
async fn empty_and_non_empty_bodies_are_framed_as_they_came() {
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let upstream = upstream(move |request: Request<Incoming>| {
        let tx = tx.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let _ = tx.send((parts.method, parts.headers, body));
            Response::new(Body::from("ok"))
        }
    });
    let proxy = serve_proxy(Proxy::to(format!("http://{upstream}")).unwrap());
    for (request, method, length, body) in [
        (
            "GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
            "GET",
            None,
            "",
        ),
        (
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            "POST",
            Some("0"),
            "",
        ),
        (
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
            "POST",
            Some("5"),
            "hello",
        ),
    ] {
        let response = exchange(proxy, request).await;
        assert!(response.ends_with("\r\n\r\nok"), "{response}");
        let (seen_method, headers, seen_body) = seen.recv().await.unwrap();
        assert_eq!(seen_method, method);
        assert_eq!(
            headers.get("content-length").map(|v| v.to_str().unwrap()),
            length,
            "{request:?}"
        );
        assert!(!headers.contains_key("transfer-encoding"), "{request:?}");
        assert_eq!(seen_body, body);
    }
}
