//! A route's `transform` section through the gateway over real HTTP:
//! headers, query, JSON bodies and compression, from one YAML config.

use std::io::Read;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes as AxumBytes;
use axum::http::{HeaderMap as AxumHeaders, Uri};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use meshgate::config::Config;
use meshgate::gateway::Gateway;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// An upstream that answers with what it received, as JSON, padded so the
/// answer is worth compressing, plus fields the gateway must strip.
async fn echo_upstream() -> SocketAddr {
    let app = Router::new().fallback(
        |uri: Uri, headers: AxumHeaders, body: AxumBytes| async move {
            let header = |name: &str| {
                headers
                    .get_all(name)
                    .iter()
                    .map(|v| v.to_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            };
            let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let answer = json!({
                "uri": uri.to_string(),
                "x-consumer-id": header("x-consumer-id"),
                "x-client": header("x-client"),
                "x-tenant-copy": header("x-tenant-copy"),
                "content-length": header("content-length"),
                "body": sent,
                "internal": {"node": "n7", "zone": "a"},
                "padding": "meshgate ".repeat(200),
            });
            (
                [
                    ("content-type", "application/json"),
                    ("server", "upstream/1.0"),
                ],
                answer.to_string(),
            )
        },
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn config(upstream: SocketAddr) -> String {
    format!(
        r#"
listeners:
  - address: 127.0.0.1:0
admin:
  address: 127.0.0.1:0
access_log:
  enabled: false
upstreams:
  - name: echo
    endpoints: ["{upstream}"]
routes:
  - name: api
    match: {{ paths: [{{ prefix: /api }}] }}
    upstream: echo
    transform:
      max_body: 64KiB
      request:
        remove: [x-consumer-id]
        set:
          x-client: "${{client_ip}}"
          x-tenant-copy: "${{header.x-tenant}}"
        query:
          remove: [debug]
          set: {{ tenant: "${{header.x-tenant}}" }}
        body:
          remove: [password]
          add: {{ source: gateway, route: "${{route}}" }}
      response:
        remove: [server]
        set: {{ x-route: "${{route}}" }}
        body:
          remove: [internal.node]
      compression:
        min_size: 1KiB
"#
    )
}

#[tokio::test]
async fn transform_section_rewrites_headers_query_bodies_and_compresses() {
    let upstream = echo_upstream().await;
    let config = Config::from_yaml_str(&config(upstream)).unwrap_or_else(|e| panic!("{e}"));
    let gateway = Gateway::from_config(config).unwrap_or_else(|e| panic!("{e}"));
    let bound = gateway.bind().await.unwrap();
    let addr = bound.listener_addrs()[0].1;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(bound.serve(async move {
        let _ = stopped.await;
    }));
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();

    let send = |accept: Option<&'static str>| {
        let mut request = Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/api/users?debug=1&page=2"))
            .header("content-type", "application/json")
            .header("x-consumer-id", "admin")
            .header("x-tenant", "acme");
        if let Some(accept) = accept {
            request = request.header("accept-encoding", accept);
        }
        client.request(
            request
                .body(Full::new(Bytes::from_static(
                    br#"{"name":"ann","password":"hunter2"}"#,
                )))
                .unwrap(),
        )
    };

    let response = send(None).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert!(headers.get("server").is_none());
    assert_eq!(headers["x-route"], "api");
    assert!(headers.get("content-encoding").is_none());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        headers["content-length"].to_str().unwrap(),
        body.len().to_string()
    );
    let seen: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen["uri"], "/api/users?page=2&tenant=acme");
    assert_eq!(seen["x-consumer-id"], json!([]));
    assert_eq!(seen["x-client"], json!(["127.0.0.1"]));
    assert_eq!(seen["x-tenant-copy"], json!(["acme"]));
    assert_eq!(
        seen["body"],
        json!({"name": "ann", "source": "gateway", "route": "api"})
    );
    let sent_length = serde_json::to_vec(&seen["body"]).unwrap().len().to_string();
    assert_eq!(seen["content-length"], json!([sent_length]));
    assert_eq!(seen["internal"], json!({"zone": "a"}));

    // The same, compressed for a client that asks.
    let response = send(Some("gzip")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert_eq!(response.headers()["vary"], "accept-encoding");
    let compressed = response.into_body().collect().await.unwrap().to_bytes();
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert!(compressed.len() < plain.len() / 2);
    let again: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(again, seen);

    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[test]
fn bad_transform_values_are_refused_at_load_with_the_field() {
    let yaml = |transform: &str| {
        format!(
            "upstreams: [{{ name: u, endpoints: [\"127.0.0.1:1\"] }}]\nroutes:\n  - name: r\n    upstream: u\n    transform: {transform}\n"
        )
    };
    let cases = [
        (
            r#"{ request: { set: { x-user: "${claims.sub}" } } }"#,
            "routes[0].transform.request.set.x-user: unknown variable `${claims.sub}`",
        ),
        (
            r#"{ request: { body: { add: { owner: "${claim.sub" } } } }"#,
            "routes[0].transform.request.body.add.owner: unterminated",
        ),
        (
            r#"{ request: { query: { add: { t: "${header.bad name}" } } } }"#,
            "routes[0].transform.request.query.add.t: invalid header name",
        ),
        (
            "{ response: { query: { remove: [a] } } }",
            "routes[0].transform.response.query: query parameters exist only on requests",
        ),
        (
            "{ compression: { gzip: false, brotli: false } }",
            "routes[0].transform.compression: turn on gzip, brotli or both",
        ),
        (
            "{ max_body: 0B }",
            "routes[0].transform.max_body: must be more than 0B",
        ),
    ];
    for (transform, expected) in cases {
        let error = Config::from_yaml_str(&yaml(transform))
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{transform}: {error}");
    }
}
