//! The balancer in front of a real HTTP client over loopback, as it will sit
//! in front of the proxy: the client sends each request where its absolute
//! URI points, and a refused connection comes back as a 502 carrying the
//! `UpstreamConnect` rejection, which outlier detection counts.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use meshgate::error::{Rejection, RejectionKind};
use meshgate::load_balancer::{Endpoint, LoadBalancerLayer, OutlierDetection, SelectedEndpoint};
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt, service_fn};

/// A server that answers its own name on every path, with the path echoed.
async fn named_server(name: &'static str) -> SocketAddr {
    let app = Router::new().route(
        "/{*path}",
        get(move |uri: http::Uri| async move { format!("{name} {uri}") }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn a_refused_endpoint_is_ejected_and_the_live_ones_answer() {
    let one = named_server("one").await;
    let two = named_server("two").await;
    let refused = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let layer = LoadBalancerLayer::builder()
        .endpoints([one, refused, two].map(Endpoint::from_addr))
        .outlier_detection(
            OutlierDetection::new()
                .consecutive_5xx(0)
                .consecutive_gateway_errors(1)
                .max_ejection_percent(34)
                .base_ejection_time(Duration::from_secs(60)),
        )
        .build()
        .unwrap();
    // A minimal stand-in for the proxy: forward to the URI's authority,
    // answer a transport failure with a 502 problem and its rejection.
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let proxy = service_fn(move |request: Request<()>| {
        let client = client.clone();
        async move {
            let request = request.map(|()| Empty::new());
            let response = match client.request(request).await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    let body = body.collect().await.unwrap().to_bytes();
                    Response::from_parts(parts, String::from_utf8(body.to_vec()).unwrap())
                }
                Err(error) => {
                    let (parts, _) = Rejection::new(RejectionKind::UpstreamConnect)
                        .with_cause(error)
                        .into_response()
                        .into_parts();
                    Response::from_parts(parts, String::new())
                }
            };
            Ok::<_, Infallible>(response)
        }
    });
    let service = layer.layer(proxy);

    let mut bodies = Vec::new();
    for _ in 0..12 {
        let request = Request::get("/items?page=3").body(()).unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        let chosen = response
            .extensions()
            .get::<SelectedEndpoint>()
            .unwrap()
            .authority()
            .to_string();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        bodies.push((chosen, status, String::from_utf8(body.to_vec()).unwrap()));
    }
    // Round robin: the second request meets the refused port, once.
    let refused = refused.to_string();
    let failures: Vec<_> = bodies
        .iter()
        .filter(|(chosen, _, _)| *chosen == refused)
        .collect();
    assert_eq!(failures.len(), 1, "{bodies:?}");
    assert_eq!(failures[0].1, StatusCode::BAD_GATEWAY);
    for (chosen, status, body) in bodies.iter().filter(|(c, _, _)| *c != refused) {
        assert_eq!(*status, StatusCode::OK);
        let name = if *chosen == one.to_string() {
            "one"
        } else {
            "two"
        };
        assert_eq!(body, &format!("{name} /items?page=3"));
    }
    let snapshot = layer.snapshot();
    assert!(
        snapshot[1].ejected && snapshot[1].errors == 1,
        "{snapshot:?}"
    );
}
