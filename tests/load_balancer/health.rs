//! Active health checks and DNS discovery over real loopback sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::{Request, StatusCode};
use meshgate::error::{Rejection, RejectionKind};
use meshgate::load_balancer::{DnsDiscovery, Endpoint, HealthCheck, LoadBalancerLayer};
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};

use crate::{Upstream, count, send};

/// Polls `condition` every 10 ms, for at most 10 s.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A server whose `/healthz` answers the status in `status`, and whose
/// `/hang` never answers.
async fn server(status: Arc<AtomicU16>) -> SocketAddr {
    let app = Router::new()
        .route(
            "/healthz",
            get(move || {
                let status = status.load(Ordering::SeqCst);
                async move { StatusCode::from_u16(status).unwrap() }
            }),
        )
        .route(
            "/hang",
            get(|| async {
                std::future::pending::<()>().await;
                ""
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A loopback port with nothing listening.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn healthy(layer: &LoadBalancerLayer) -> Vec<bool> {
    layer.snapshot().iter().map(|s| s.healthy).collect()
}

#[tokio::test]
async fn an_endpoint_failing_checks_gets_no_traffic_until_it_passes_again() {
    let (a_status, b_status) = (Arc::new(AtomicU16::new(200)), Arc::new(AtomicU16::new(200)));
    let a = server(a_status.clone()).await;
    let b = server(b_status.clone()).await;
    let closed = closed_port().await;
    let layer = LoadBalancerLayer::builder()
        .endpoints([a, b, closed].map(Endpoint::from_addr))
        .health_check(
            HealthCheck::new("/healthz")
                .interval(Duration::from_millis(20))
                .timeout(Duration::from_millis(500))
                // One at a time: the closed port's check waits its turn.
                .concurrency(1)
                .healthy_threshold(2)
                .unhealthy_threshold(2),
        )
        .build()
        .unwrap();
    let upstream = Upstream::default();
    let service = layer.layer(upstream.service());
    let (a, b) = (a.to_string(), b.to_string());

    eventually("the closed port to fail its checks", || {
        healthy(&layer) == [true, true, false]
    })
    .await;
    upstream.take_seen();
    send(&service, 10).await;
    let seen = upstream.take_seen();
    assert_eq!((count(&seen, &a), count(&seen, &b)), (5, 5), "{seen:?}");

    b_status.store(503, Ordering::SeqCst);
    eventually("b to fail its checks", || !healthy(&layer)[1]).await;
    send(&service, 10).await;
    assert_eq!(count(&upstream.take_seen(), &a), 10);

    b_status.store(200, Ordering::SeqCst);
    eventually("b to pass its checks", || healthy(&layer)[1]).await;
    send(&service, 10).await;
    let seen = upstream.take_seen();
    assert_eq!((count(&seen, &a), count(&seen, &b)), (5, 5), "{seen:?}");

    // Nobody healthy, no panic threshold: 503 without calling the upstream.
    a_status.store(500, Ordering::SeqCst);
    b_status.store(500, Ordering::SeqCst);
    eventually("all to fail", || healthy(&layer) == [false, false, false]).await;
    let response = service.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.extensions().get::<Rejection>().unwrap().kind(),
        RejectionKind::NoHealthyEndpoint
    );
    assert!(upstream.take_seen().is_empty());
    layer.shutdown();
}

#[tokio::test]
async fn a_check_that_times_out_or_gets_an_unexpected_status_fails_and_headers_are_sent() {
    let status = Arc::new(AtomicU16::new(204));
    let addr = server(status.clone()).await;
    let hanging = LoadBalancerLayer::builder()
        .endpoint(Endpoint::from_addr(addr))
        .health_check(
            HealthCheck::new("/hang")
                .interval(Duration::from_millis(10))
                .timeout(Duration::from_millis(50))
                .unhealthy_threshold(1),
        )
        .build()
        .unwrap();
    let _service = hanging.layer(Upstream::default().service());
    eventually("the hanging check to time out", || !healthy(&hanging)[0]).await;
    hanging.shutdown();

    let strict = LoadBalancerLayer::builder()
        .endpoint(Endpoint::from_addr(addr))
        .health_check(
            HealthCheck::new("/healthz")
                .interval(Duration::from_millis(10))
                .expected_statuses([200..=200])
                .healthy_threshold(1)
                .unhealthy_threshold(1),
        )
        .build()
        .unwrap();
    let _service = strict.layer(Upstream::default().service());
    eventually("204 to fail a 200-only check", || !healthy(&strict)[0]).await;
    status.store(200, Ordering::SeqCst);
    eventually("200 to pass", || healthy(&strict)[0]).await;
    strict.shutdown();

    // The checks carry the configured headers: this server wants its name,
    // and counts the checks that gave it.
    let named_checks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = named_checks.clone();
    let app = Router::new().route(
        "/virtual-host",
        get(move |headers: http::HeaderMap| {
            let named = headers["host"] == "svc.internal";
            if named {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            async move {
                if named {
                    StatusCode::OK
                } else {
                    StatusCode::MISDIRECTED_REQUEST
                }
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let virtual_host = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let named = |host: Option<&'static str>| {
        let mut check = HealthCheck::new("/virtual-host")
            .interval(Duration::from_millis(10))
            .healthy_threshold(1)
            .unhealthy_threshold(1);
        if let Some(host) = host {
            check = check.header(http::header::HOST, http::HeaderValue::from_static(host));
        }
        LoadBalancerLayer::builder()
            .endpoint(Endpoint::from_addr(virtual_host))
            .health_check(check)
            .build()
            .unwrap()
    };
    let anonymous = named(None);
    let _anonymous = anonymous.layer(Upstream::default().service());
    eventually("the check without the Host to fail", || {
        !healthy(&anonymous)[0]
    })
    .await;
    anonymous.shutdown();
    assert_eq!(named_checks.load(Ordering::SeqCst), 0);
    let with_host = named(Some("svc.internal"));
    let _with_host = with_host.layer(Upstream::default().service());
    eventually("three checks with the Host", || {
        named_checks.load(Ordering::SeqCst) >= 3
    })
    .await;
    assert!(healthy(&with_host)[0]);
    with_host.shutdown();
}

#[tokio::test]
async fn the_checker_stops_with_the_last_handle_or_at_shutdown() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let closed = closed_port().await;
    let build = || {
        LoadBalancerLayer::builder()
            .endpoint(Endpoint::from_addr(closed))
            .health_check(
                HealthCheck::new("/healthz")
                    .interval(Duration::from_millis(10))
                    .unhealthy_threshold(1),
            )
            .build()
            .unwrap()
    };
    assert_eq!(metrics.num_alive_tasks(), 0);
    let layer = build();
    let service = layer.layer(Upstream::default().service());
    assert!(metrics.num_alive_tasks() >= 1);
    let handle = layer.handle();
    drop((layer, service));
    // The handle alone keeps the balancer, and so the checker, alive.
    eventually("a check through the handle", || {
        !handle.snapshot()[0].healthy
    })
    .await;
    drop(handle);
    eventually("the checker to stop", || metrics.num_alive_tasks() == 0).await;

    let layer = build();
    let _service = layer.layer(Upstream::default().service());
    assert!(metrics.num_alive_tasks() >= 1);
    layer.shutdown();
    eventually("the checker to stop at shutdown", || {
        metrics.num_alive_tasks() == 0
    })
    .await;
}

#[tokio::test]
async fn endpoints_from_dns() {
    let layer = LoadBalancerLayer::builder()
        .dns(DnsDiscovery::new("localhost", 8080).interval(Duration::from_millis(20)))
        .build()
        .unwrap();
    let upstream = Upstream::default();
    let service = layer.layer(upstream.service());
    eventually("localhost to resolve", || !layer.endpoints().is_empty()).await;
    for endpoint in layer.endpoints() {
        assert!(
            ["127.0.0.1:8080", "[::1]:8080"].contains(&endpoint.authority().as_str()),
            "{endpoint}"
        );
    }
    assert_eq!(send(&service, 2).await, [StatusCode::OK; 2]);
    layer.shutdown();

    // A name that does not resolve (scripted, so that no real lookup can
    // hang the test): no endpoints, 503.
    let unresolvable = LoadBalancerLayer::builder()
        .dns(
            DnsDiscovery::new("no-such-host.invalid", 80)
                .resolver(|_, _| Box::pin(async { Err(std::io::Error::other("NXDOMAIN")) })),
        )
        .build()
        .unwrap();
    let service = unresolvable.layer(upstream.service());
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    unresolvable.shutdown();
    assert!(
        LoadBalancerLayer::builder()
            .dns(DnsDiscovery::new("localhost", 80))
            .endpoint(Endpoint::parse("10.0.0.1:80").unwrap())
            .build()
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn dns_keeps_the_last_good_set_and_the_stats_of_staying_endpoints() {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
    let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
    let c: SocketAddr = "10.0.0.3:80".parse().unwrap();
    let script = Arc::new(Mutex::new(VecDeque::from([
        Ok(vec![a, b, a]),
        Err(std::io::Error::other("SERVFAIL")),
        Ok(vec![]),
        Ok(vec![c, a]),
    ])));
    let (called, mut calls) = tokio::sync::mpsc::unbounded_channel();
    let dns = DnsDiscovery::new("svc.internal", 80)
        .interval(Duration::from_secs(5))
        .resolver(move |host, port| {
            assert_eq!((host, port), ("svc.internal", 80));
            let next = script.lock().unwrap().pop_front();
            let _ = called.send(());
            Box::pin(async move { next.unwrap_or_else(|| Ok(vec![c, a])) })
        });
    let layer = LoadBalancerLayer::builder().dns(dns).build().unwrap();
    let upstream = Upstream::default();
    let service = layer.layer(upstream.service());
    let authorities = |layer: &LoadBalancerLayer| -> Vec<String> {
        layer
            .endpoints()
            .iter()
            .map(|e| e.authority().to_string())
            .collect()
    };

    // The scripted resolutions are ready at once, so each is applied in the
    // same poll of the discovery task that reported the call.
    calls.recv().await.unwrap();
    assert_eq!(
        authorities(&layer),
        ["10.0.0.1:80", "10.0.0.2:80"],
        "deduplicated"
    );
    send(&service, 2).await;
    calls.recv().await.unwrap();
    assert_eq!(
        authorities(&layer),
        ["10.0.0.1:80", "10.0.0.2:80"],
        "kept on error"
    );
    calls.recv().await.unwrap();
    assert_eq!(
        authorities(&layer),
        ["10.0.0.1:80", "10.0.0.2:80"],
        "kept when empty"
    );
    calls.recv().await.unwrap();
    assert_eq!(authorities(&layer), ["10.0.0.3:80", "10.0.0.1:80"]);
    let snapshot = layer.snapshot();
    assert_eq!((snapshot[0].requests, snapshot[1].requests), (0, 1));
    layer.shutdown();
}
