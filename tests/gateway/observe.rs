//! The `request_id` and `trace_context` sections through the gateway over
//! real HTTP: on by default, renamed, and off.

use std::net::SocketAddr;

use axum::Router;
use axum::http::HeaderMap as AxumHeaders;
use meshgate::config::Config;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::assembly::Running;
use crate::captured_log::Captured;

/// An upstream that answers with the observability headers it received.
async fn echo_upstream() -> SocketAddr {
    let app = Router::new().fallback(|headers: AxumHeaders| async move {
        let header = |name: &str| {
            headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        json!({
            "x-request-id": header("x-request-id"),
            "x-correlation-id": header("x-correlation-id"),
            "traceparent": header("traceparent"),
        })
        .to_string()
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn config(upstream: SocketAddr, sections: &str) -> String {
    format!(
        r#"
listeners:
  - address: 127.0.0.1:0
admin:
  address: 127.0.0.1:0
access_log:
  enabled: false
{sections}
upstreams:
  - name: echo
    endpoints: ["{upstream}"]
routes:
  - name: all
    match: {{ paths: [{{ prefix: / }}] }}
    upstream: echo
"#
    )
}

const CALLER_TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn request_id_and_trace_context_are_on_by_default() {
    let gateway = Running::start(&config(echo_upstream().await, "")).await;
    let (status, headers, body) = gateway.get("/", &[("traceparent", CALLER_TRACE)]).await;
    assert_eq!(status, 200, "{body}");
    let seen: Value = serde_json::from_str(&body).unwrap();
    let id = headers["x-request-id"].to_str().unwrap();
    assert_eq!(seen["x-request-id"], json!([id]));
    // This hop's span: the caller's trace, a new parent-id.
    let traceparent = seen["traceparent"][0].as_str().unwrap();
    assert_eq!(traceparent[..36], CALLER_TRACE[..36]);
    assert_ne!(traceparent, CALLER_TRACE);
    gateway.stop().await;
}

#[tokio::test]
async fn request_id_header_can_be_renamed() {
    let sections = "request_id: { header: x-correlation-id }";
    let gateway = Running::start(&config(echo_upstream().await, sections)).await;
    let (status, headers, body) = gateway.get("/", &[("x-correlation-id", "caller-7")]).await;
    assert_eq!(status, 200, "{body}");
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(headers["x-correlation-id"], "caller-7");
    assert!(!headers.contains_key("x-request-id"));
    assert_eq!(seen["x-correlation-id"], json!(["caller-7"]));
    assert_eq!(seen["x-request-id"], json!([]));
    gateway.stop().await;
}

#[tokio::test]
async fn both_can_be_turned_off() {
    let sections = "request_id: { enabled: false }\ntrace_context: { enabled: false }";
    let gateway = Running::start(&config(echo_upstream().await, sections)).await;
    // Nothing added...
    let (status, headers, body) = gateway.get("/", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(!headers.contains_key("x-request-id"));
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["x-request-id"], json!([]));
    assert_eq!(seen["traceparent"], json!([]));
    // ... and what the caller sent goes upstream as it came.
    let (_, headers, body) = gateway
        .get(
            "/",
            &[("x-request-id", "caller-7"), ("traceparent", CALLER_TRACE)],
        )
        .await;
    assert!(!headers.contains_key("x-request-id"));
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["x-request-id"], json!(["caller-7"]));
    assert_eq!(seen["traceparent"], json!([CALLER_TRACE]));
    gateway.stop().await;
}

/// The access log reads the request id from the request's extensions: with
/// the log on, the gateway puts it there, and the event carries the id the
/// client was answered with.
#[tokio::test]
async fn the_access_log_carries_the_request_id() {
    let captured = Captured::default();
    // The test's runtime has one thread, which serves the gateway too.
    let _guard = captured.set_default();
    let yaml = config(echo_upstream().await, "").replace(
        "access_log:\n  enabled: false",
        "access_log:\n  enabled: true",
    );
    let gateway = Running::start(&yaml).await;
    let (status, headers, body) = gateway.get("/logged", &[]).await;
    assert_eq!(status, 200, "{body}");
    let id = headers["x-request-id"].to_str().unwrap().to_owned();
    gateway.stop().await;
    let events: Vec<Value> = captured
        .events()
        .into_iter()
        .filter(|event| event["target"] == "meshgate::access")
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["path"], "/logged");
    assert_eq!(events[0]["request_id"], id.as_str());
}

#[test]
fn templates_cannot_read_a_request_id_that_is_off() {
    let yaml = r#"
request_id: { enabled: false, header: x-rid }
upstreams:
  - name: echo
    endpoints: ["127.0.0.1:9"]
routes:
  - name: all
    match: { paths: [{ prefix: / }] }
    upstream: echo
    transform:
      request:
        set: { x-trace: "req-${request_id}", x-client: "${client_ip}" }
        query: { add: { rid: "${request_id}" } }
      response:
        body: { add: { meta: { ids: ["${request_id}"] } } }
"#;
    let errors = Config::from_yaml_str(yaml).unwrap_err().to_string();
    for field in [
        "routes[0].transform.request.set.x-trace: reads ${request_id}",
        "routes[0].transform.request.query.add.rid: reads ${request_id}",
        "routes[0].transform.response.body.add.meta: reads ${request_id}",
    ] {
        assert!(errors.contains(field), "{field:?} not in:\n{errors}");
    }
    assert!(!errors.contains("x-client"), "{errors}");
    // On, the same templates load.
    assert!(Config::from_yaml_str(&yaml.replace("enabled: false, ", "")).is_ok());
}

#[test]
fn unknown_and_invalid_fields_are_refused() {
    for (yaml, expected) in [
        ("request_id: { enable: false }", "request_id"),
        (
            "request_id: { header: \"bad header\" }",
            "request_id.header",
        ),
        ("trace_context: { enabled: maybe }", "trace_context.enabled"),
        (
            "request_id: { header: Content-Length }",
            "request_id.header: content-length has a meaning of its own",
        ),
        (
            "request_id: { header: traceparent }",
            "request_id.header: traceparent has a meaning of its own",
        ),
    ] {
        let errors = Config::from_yaml_str(yaml).unwrap_err().to_string();
        assert!(errors.contains(expected), "{yaml}: {errors}");
    }
}
