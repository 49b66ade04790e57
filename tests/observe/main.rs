//! Behaviour of `meshgate::observe` through its public API.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderValue, Request, Response};
use meshgate::observe::{RequestId, RequestIdLayer, TraceContext, TraceContextLayer};
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};

type Seen = Arc<Mutex<Vec<(HeaderMap, Option<RequestId>, Option<TraceContext>)>>>;

/// A stack of request id and trace context over a service that records what
/// it saw and answers with `x-request-id: from-upstream`.
fn stack(
    seen: Seen,
) -> impl tower::Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone {
    ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(TraceContextLayer::new())
        .service(service_fn(move |request: Request<()>| {
            seen.lock().unwrap().push((
                request.headers().clone(),
                request.extensions().get::<RequestId>().cloned(),
                request.extensions().get::<TraceContext>().copied(),
            ));
            async {
                let mut response = Response::new(());
                response
                    .headers_mut()
                    .insert("x-request-id", HeaderValue::from_static("from-upstream"));
                Ok::<_, Infallible>(response)
            }
        }))
}

async fn send(headers: &[(&str, &[u8])]) -> (Response<()>, HeaderMap, RequestId, TraceContext) {
    let seen = Seen::default();
    let mut request = Request::new(());
    for (name, value) in headers {
        request.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
    }
    let response = stack(seen.clone()).oneshot(request).await.unwrap();
    let (headers, id, trace) = seen.lock().unwrap().pop().unwrap();
    (response, headers, id.unwrap(), trace.unwrap())
}

fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && b[14] == b'4'
        && b.iter()
            .enumerate()
            .all(|(i, c)| [8, 13, 18, 23].contains(&i) || c.is_ascii_hexdigit())
}

fn assert_traceparent_shape(value: &str) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1].len(), 32);
    assert_eq!(parts[2].len(), 16);
    assert_eq!(parts[3].len(), 2);
    assert!(
        value
            .bytes()
            .all(|c| c == b'-' || matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    );
    assert_ne!(parts[1], "0".repeat(32));
    assert_ne!(parts[2], "0".repeat(16));
}

#[tokio::test]
async fn a_valid_request_id_is_kept_forwarded_and_echoed() {
    let (response, upstream, id, _) = send(&[("x-request-id", b"order-7781_a.b~c")]).await;
    assert_eq!(id.as_str(), "order-7781_a.b~c");
    assert_eq!(upstream["x-request-id"], "order-7781_a.b~c");
    // The echo is the id the upstream saw, even when the upstream sends its own.
    assert_eq!(response.headers()["x-request-id"], "order-7781_a.b~c");
    assert_eq!(response.headers().get_all("x-request-id").iter().count(), 1);
}

#[tokio::test]
async fn a_missing_request_id_is_generated() {
    let (response, upstream, id, _) = send(&[]).await;
    assert!(is_uuid_v4(id.as_str()), "{}", id.as_str());
    assert_eq!(upstream["x-request-id"], id.as_str());
    assert_eq!(response.headers()["x-request-id"], id.as_str());
    let (_, _, other, _) = send(&[]).await;
    assert_ne!(id, other);
}

#[tokio::test]
async fn bad_request_ids_are_replaced_not_passed_on() {
    let too_long = vec![b'a'; 129];
    let cases: [&[(&str, &[u8])]; 6] = [
        &[("x-request-id", &too_long)],
        &[("x-request-id", b"has space")],
        &[("x-request-id", b"tab\there")],
        &[("x-request-id", b"caf\xc3\xa9")],
        &[("x-request-id", b"")],
        &[("x-request-id", b"one"), ("x-request-id", b"two")],
    ];
    for headers in cases {
        let (response, upstream, id, _) = send(headers).await;
        assert!(is_uuid_v4(id.as_str()), "{headers:?} -> {}", id.as_str());
        assert_eq!(upstream.get_all("x-request-id").iter().count(), 1);
        assert_eq!(upstream["x-request-id"], id.as_str());
        assert_eq!(response.headers()["x-request-id"], id.as_str());
    }
    // Exactly at the limit is kept.
    let at_limit = vec![b'a'; 128];
    let (_, _, id, _) = send(&[("x-request-id", &at_limit)]).await;
    assert_eq!(id.as_str().len(), 128);
}

#[tokio::test]
async fn request_id_header_and_length_are_configurable() {
    let service = RequestIdLayer::new()
        .header(http::HeaderName::from_static("x-correlation-id"))
        .max_len(8)
        .layer(service_fn(|request: Request<()>| async move {
            Ok::<_, Infallible>(Response::new(request.headers()["x-correlation-id"].clone()))
        }));
    let kept = Request::builder()
        .header("x-correlation-id", "abcdefgh")
        .body(())
        .unwrap();
    let response = service.clone().oneshot(kept).await.unwrap();
    assert_eq!(response.headers()["x-correlation-id"], "abcdefgh");
    assert_eq!(response.body(), "abcdefgh");
    let replaced = Request::builder()
        .header("x-correlation-id", "abcdefghi")
        .body(())
        .unwrap();
    let response = service.oneshot(replaced).await.unwrap();
    assert!(is_uuid_v4(response.body().to_str().unwrap()));
}

#[tokio::test]
async fn untagged_requests_carry_the_id_in_the_header_only() {
    let service = RequestIdLayer::new().tag_requests(false).layer(service_fn(
        |request: Request<()>| async move {
            let tagged = request.extensions().get::<RequestId>().is_some();
            let header = request.headers()["x-request-id"].clone();
            Ok::<_, Infallible>(Response::new((tagged, header)))
        },
    ));
    let response = service.clone().oneshot(Request::new(())).await.unwrap();
    let (tagged, forwarded) = response.body().clone();
    assert!(!tagged);
    assert!(is_uuid_v4(forwarded.to_str().unwrap()));
    assert_eq!(response.headers()["x-request-id"], forwarded, "echoed");
    let kept = Request::builder()
        .header("x-request-id", "abc-123")
        .body(())
        .unwrap();
    let response = service.oneshot(kept).await.unwrap();
    assert_eq!(response.body().1, "abc-123");
    assert_eq!(response.headers()["x-request-id"], "abc-123");
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn a_valid_traceparent_keeps_its_trace_id_with_a_new_span_id() {
    let incoming = format!("00-{TRACE_ID}-{PARENT}-01");
    let (_, upstream, _, trace) = send(&[
        ("traceparent", incoming.as_bytes()),
        ("tracestate", b"congo=t61rcWkgMzE"),
    ])
    .await;
    let forwarded = upstream["traceparent"].to_str().unwrap();
    assert_traceparent_shape(forwarded);
    assert!(forwarded.starts_with(&format!("00-{TRACE_ID}-")));
    assert!(forwarded.ends_with("-01"));
    assert_ne!(&forwarded[36..52], PARENT, "span-id must change per hop");
    assert_eq!(upstream["tracestate"], "congo=t61rcWkgMzE");
    assert_eq!(trace.trace_id_hex(), TRACE_ID);
    assert!(trace.is_sampled());
    assert_eq!(
        trace.parent_id().unwrap(),
        [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
    );
    assert_eq!(trace.traceparent(), forwarded);
}

#[tokio::test]
async fn the_span_id_changes_at_every_hop() {
    let seen = Seen::default();
    // Two hops in a row, each with its own trace-context layer.
    let hop2 = stack(seen.clone());
    let hop1 = TraceContextLayer::new().layer(service_fn(move |request: Request<()>| {
        let hop2 = hop2.clone();
        let forwarded = request.headers()["traceparent"].clone();
        async move {
            let mut next = Request::new(());
            next.headers_mut().insert("traceparent", forwarded);
            hop2.oneshot(next).await
        }
    }));
    let incoming = format!("00-{TRACE_ID}-{PARENT}-00");
    let request = Request::builder()
        .header("traceparent", incoming)
        .body(())
        .unwrap();
    hop1.oneshot(request).await.unwrap();
    let (headers, _, trace) = seen.lock().unwrap().pop().unwrap();
    let trace = trace.unwrap();
    let at_hop2 = headers["traceparent"].to_str().unwrap().to_owned();
    assert_eq!(trace.trace_id_hex(), TRACE_ID);
    let hop1_span = trace.parent_id().unwrap();
    assert_ne!(hop1_span, trace.span_id());
    assert_ne!(hex(&hop1_span), PARENT);
    assert_eq!(&at_hop2[36..52], hex(&trace.span_id()));
    assert!(at_hop2.ends_with("-00"));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn malformed_traceparents_are_replaced_and_tracestate_dropped() {
    for bad in [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "garbage",
    ] {
        let (_, upstream, _, trace) = send(&[
            ("traceparent", bad.as_bytes()),
            ("tracestate", b"congo=t61rcWkgMzE"),
        ])
        .await;
        let forwarded = upstream["traceparent"].to_str().unwrap();
        assert_traceparent_shape(forwarded);
        assert_ne!(forwarded, bad);
        assert_ne!(trace.trace_id_hex(), TRACE_ID, "{bad}");
        assert!(trace.parent_id().is_none());
        assert!(upstream.get("tracestate").is_none(), "{bad}");
        assert_eq!(upstream.get_all("traceparent").iter().count(), 1);
    }
}

#[tokio::test]
async fn a_missing_traceparent_starts_a_trace() {
    let (_, upstream, _, trace) = send(&[]).await;
    let forwarded = upstream["traceparent"].to_str().unwrap();
    assert_traceparent_shape(forwarded);
    assert!(forwarded.ends_with("-00"));
    assert!(!trace.is_sampled());
}

#[tokio::test]
async fn b3_headers_are_mapped_when_there_is_no_traceparent() {
    let (_, upstream, _, trace) = send(&[
        ("x-b3-traceid", TRACE_ID.as_bytes()),
        ("x-b3-spanid", PARENT.as_bytes()),
        ("x-b3-sampled", b"1"),
    ])
    .await;
    let forwarded = upstream["traceparent"].to_str().unwrap();
    assert!(forwarded.starts_with(&format!("00-{TRACE_ID}-")));
    assert!(forwarded.ends_with("-01"));
    assert_eq!(trace.trace_id_hex(), TRACE_ID);
    assert_eq!(hex(&trace.parent_id().unwrap()), PARENT);
    // B3 stays consistent: this hop's span, the caller's as parent.
    assert_eq!(upstream["x-b3-traceid"], TRACE_ID);
    assert_eq!(upstream["x-b3-spanid"], hex(&trace.span_id()).as_str());
    assert_eq!(upstream["x-b3-parentspanid"], PARENT);

    let (_, upstream, _, trace) = send(&[("x-b3-traceid", b"a3ce929d0e0e4736")]).await;
    assert_eq!(trace.trace_id_hex(), "0000000000000000a3ce929d0e0e4736");
    assert!(upstream["traceparent"].to_str().unwrap().ends_with("-00"));
    assert!(upstream.get("x-b3-parentspanid").is_none());
}

#[tokio::test]
async fn malformed_b3_headers_are_dropped() {
    let (_, upstream, _, trace) = send(&[
        ("x-b3-traceid", b"not-hex-at-all!!"),
        ("x-b3-spanid", PARENT.as_bytes()),
        ("x-b3-sampled", b"1"),
    ])
    .await;
    assert_traceparent_shape(upstream["traceparent"].to_str().unwrap());
    assert!(trace.parent_id().is_none());
    for name in ["x-b3-traceid", "x-b3-spanid", "x-b3-sampled"] {
        assert!(upstream.get(name).is_none(), "{name}");
    }
}

mod access_log;
#[path = "../common/captured_log.rs"]
mod captured_log;
#[cfg(feature = "metrics")]
mod metrics;
