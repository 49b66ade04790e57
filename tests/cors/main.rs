//! Behaviour of `meshgate::cors` (tower-http's `CorsLayer`) through its
//! public API: preflight answers, actual responses, config checks.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{HeaderValue, Method, Request, Response, StatusCode};
use meshgate::cors::{self, CorsLayer};
use tower::{Layer, ServiceExt, service_fn};

async fn call(
    layer: &CorsLayer,
    request: Request<()>,
    calls: &Arc<AtomicUsize>,
) -> Response<String> {
    let calls = calls.clone();
    let service = layer.layer(service_fn(move |_: Request<()>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(String::from("data"))) }
    }));
    service.oneshot(request).await.unwrap()
}

fn preflight(origin: &str, method: &str, headers: Option<&str>) -> Request<()> {
    let mut builder = Request::builder()
        .method(Method::OPTIONS)
        .uri("/orders")
        .header("origin", origin)
        .header("access-control-request-method", method);
    if let Some(headers) = headers {
        builder = builder.header("access-control-request-headers", headers);
    }
    builder.body(()).unwrap()
}

#[tokio::test]
async fn preflight_from_an_allowed_origin_is_answered_by_the_layer() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = cors::strict([HeaderValue::from_static("https://app.example.com")]);
    let response = call(
        &layer,
        preflight("https://app.example.com", "POST", None),
        &calls,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let h = response.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-methods"], "GET,HEAD,POST");
    assert_eq!(h["access-control-max-age"], "600");
    assert!(h.get("access-control-allow-credentials").is_none());
    assert!(h["vary"].to_str().unwrap().contains("origin"));
    assert!(response.body().is_empty());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "preflight reached the service"
    );
}

#[tokio::test]
async fn preflight_from_another_origin_gets_no_cors_headers() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = cors::strict([HeaderValue::from_static("https://app.example.com")]);
    let response = call(
        &layer,
        preflight("https://evil.example", "POST", None),
        &calls,
    )
    .await;
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn actual_requests_reach_the_service_and_get_the_headers() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = cors::strict([HeaderValue::from_static("https://app.example.com")])
        .expose_headers([http::HeaderName::from_static("x-request-id")]);
    let request = Request::builder()
        .uri("/orders")
        .header("origin", "https://app.example.com")
        .body(())
        .unwrap();
    let response = call(&layer, request, &calls).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(response.body(), "data");
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(
        response.headers()["access-control-expose-headers"],
        "x-request-id"
    );
}

#[cfg(feature = "config")]
#[tokio::test]
async fn built_from_the_config_section() {
    use meshgate::config::CorsPolicy;
    let yaml = "allow_origins: [\"https://app.example.com\", \"http://localhost:3000\"]\nallow_methods: [GET, PUT]\nallow_headers: [authorization, content-type]\nexpose_headers: [x-request-id]\nallow_credentials: true\nmax_age: 1h\n";
    let policy: CorsPolicy = serde_saphyr::from_str(yaml).unwrap();
    let layer = cors::from_config(&policy).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let response = call(
        &layer,
        preflight("http://localhost:3000", "PUT", Some("authorization")),
        &calls,
    )
    .await;
    let h = response.headers();
    assert_eq!(h["access-control-allow-origin"], "http://localhost:3000");
    assert_eq!(h["access-control-allow-methods"], "GET,PUT");
    assert_eq!(
        h["access-control-allow-headers"],
        "authorization,content-type"
    );
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-max-age"], "3600");

    let any: CorsPolicy = serde_saphyr::from_str("allow_origins: [\"*\"]\n").unwrap();
    let response = call(
        &cors::from_config(&any).unwrap(),
        preflight("https://x.example", "GET", None),
        &calls,
    )
    .await;
    assert_eq!(response.headers()["access-control-allow-origin"], "*");

    // What tower-http would panic on at request time is an error here.
    let mut bad = any.clone();
    bad.allow_credentials = true;
    assert!(
        cors::from_config(&bad)
            .unwrap_err()
            .to_string()
            .contains("allow_credentials")
    );
    let mut bad = policy.clone();
    bad.allow_origins.push("*".into());
    assert!(cors::from_config(&bad).is_err());
    let mut bad = policy;
    bad.allow_origins = vec!["app.example.com/".into()];
    assert_eq!(
        cors::from_config(&bad).unwrap_err().to_string(),
        "cors.allow_origins[0]: invalid origin \"app.example.com/\" (expected \"*\" or scheme://host[:port])"
    );
}
