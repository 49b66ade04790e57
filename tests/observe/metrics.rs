//! `MetricsLayer` as a Prometheus scrape shows it.

use std::convert::Infallible;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use meshgate::error::{Rejection, RejectionKind};
use meshgate::observe::MetricsLayer;
use metrics_exporter_prometheus::PrometheusBuilder;
use tower::{Layer, ServiceExt, service_fn};

/// Answers by path: `/slow` after 250 ms, `/open` as an open breaker,
/// `/missing` 404, `/hang` never; anything else 200.
async fn upstream(request: Request<()>) -> Result<Response<String>, Infallible> {
    match request.uri().path() {
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(250)).await;
            Ok(Response::new("slow".to_owned()))
        }
        "/open" => Ok(Rejection::new(RejectionKind::CircuitOpen)
            .into_response()
            .map(|_| String::new())),
        "/missing" => {
            let mut response = Response::new(String::new());
            *response.status_mut() = StatusCode::NOT_FOUND;
            Ok(response)
        }
        "/hang" => std::future::pending().await,
        _ => Ok(Response::new("ok".to_owned())),
    }
}

fn request(method: Method, path: &str) -> Request<()> {
    Request::builder()
        .method(method)
        .uri(path)
        .body(())
        .unwrap()
}

/// The value of the one line of `text` that starts with `series `.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[tokio::test(start_paused = true)]
async fn counts_latency_in_flight_and_refusals_per_route() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let service = MetricsLayer::for_route("users").layer(service_fn(upstream));
    for _ in 0..3 {
        service
            .clone()
            .oneshot(request(Method::GET, "/"))
            .await
            .unwrap();
    }
    service
        .clone()
        .oneshot(request(Method::GET, "/slow"))
        .await
        .unwrap();
    service
        .clone()
        .oneshot(request(Method::POST, "/open"))
        .await
        .unwrap();
    service
        .clone()
        .oneshot(request(Method::from_bytes(b"PURGE").unwrap(), "/missing"))
        .await
        .unwrap();

    // A request dropped before its answer leaves the in-flight gauge.
    let hanging = service.clone().oneshot(request(Method::GET, "/hang"));
    let timed_out = tokio::time::timeout(Duration::from_secs(1), hanging).await;
    assert!(timed_out.is_err());

    let text = handle.render();
    let get_2xx = r#"meshgate_requests_total{route="users",method="GET",status="2xx"}"#;
    let post_5xx = r#"meshgate_requests_total{route="users",method="POST",status="5xx"}"#;
    let other_4xx = r#"meshgate_requests_total{route="users",method="other",status="4xx"}"#;
    let dropped = r#"meshgate_requests_total{route="users",method="GET",status="dropped"}"#;
    let open = r#"meshgate_rejections_total{route="users",kind="circuit_open"}"#;
    let in_flight = r#"meshgate_requests_in_flight{route="users"}"#;
    let get_sum = r#"meshgate_request_duration_seconds_sum{route="users",method="GET"}"#;
    let get_count = r#"meshgate_request_duration_seconds_count{route="users",method="GET"}"#;
    assert_eq!(value(&text, get_2xx), Some(4.0), "{text}");
    assert_eq!(value(&text, post_5xx), Some(1.0), "{text}");
    assert_eq!(value(&text, other_4xx), Some(1.0), "{text}");
    assert_eq!(value(&text, dropped), Some(1.0), "{text}");
    assert_eq!(value(&text, open), Some(1.0), "{text}");
    assert_eq!(value(&text, in_flight), Some(0.0), "{text}");
    // Under paused time only /slow took time: 250 ms, over four GET samples.
    assert_eq!(value(&text, get_count), Some(4.0), "{text}");
    let sum = value(&text, get_sum).unwrap();
    assert!((sum - 0.25).abs() < 1e-6, "{sum}");
}

#[tokio::test(start_paused = true)]
async fn in_flight_counts_requests_being_served() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let service = MetricsLayer::for_route("slow").layer(service_fn(upstream));
    let first = tokio::spawn(service.clone().oneshot(request(Method::GET, "/slow")));
    let second = tokio::spawn(service.clone().oneshot(request(Method::GET, "/slow")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let series = r#"meshgate_requests_in_flight{route="slow"}"#;
    assert_eq!(value(&handle.render(), series), Some(2.0));
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    assert_eq!(value(&handle.render(), series), Some(0.0));
}

/// A route name a router would put in the response extensions.
#[derive(Clone)]
struct RouteName(&'static str);

#[tokio::test(start_paused = true)]
async fn route_label_read_from_the_response() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let routed = service_fn(|request: Request<()>| async move {
        let mut response = Response::new(String::new());
        match request.uri().path() {
            "/users" => {
                response.extensions_mut().insert(RouteName("users"));
            }
            "/orders" => {
                response.extensions_mut().insert(RouteName("orders"));
            }
            _ => *response.status_mut() = StatusCode::NOT_FOUND,
        }
        Ok::<_, Infallible>(response)
    });
    let service = MetricsLayer::new()
        .route_from(|extensions| extensions.get::<RouteName>().map(|r| r.0))
        .layer(routed);
    for path in ["/users", "/users", "/orders", "/nowhere"] {
        service
            .clone()
            .oneshot(request(Method::GET, path))
            .await
            .unwrap();
    }
    let text = handle.render();
    let series = |route: &str, status: &str| {
        format!(r#"meshgate_requests_total{{route="{route}",method="GET",status="{status}"}}"#)
    };
    assert_eq!(value(&text, &series("users", "2xx")), Some(2.0), "{text}");
    assert_eq!(value(&text, &series("orders", "2xx")), Some(1.0), "{text}");
    assert_eq!(value(&text, &series("", "4xx")), Some(1.0), "{text}");
    assert_eq!(
        value(&text, r#"meshgate_requests_in_flight{route=""}"#),
        Some(0.0),
        "{text}"
    );
}
