//! Passive outlier detection under paused time.

use std::time::Duration;

use http::{Request, StatusCode};
use meshgate::error::{Rejection, RejectionKind};
use meshgate::load_balancer::{Endpoint, LoadBalancerLayer, OutlierDetection};
use tower::{Layer, ServiceExt};

use crate::{Upstream, authorities, count, endpoints, send};

fn ejected(layer: &LoadBalancerLayer) -> Vec<bool> {
    layer.snapshot().iter().map(|s| s.ejected).collect()
}

#[tokio::test(start_paused = true)]
async fn ejected_after_consecutive_5xx_back_after_base_time_and_longer_the_second_time() {
    let upstream = Upstream::default();
    let a = authorities(3);
    upstream.set_status(&a[0], 500);
    let layer = LoadBalancerLayer::builder()
        .endpoints(endpoints(3))
        .outlier_detection(
            OutlierDetection::new()
                .consecutive_5xx(3)
                .base_ejection_time(Duration::from_secs(30))
                .max_ejection_percent(50),
        )
        .build()
        .unwrap();
    let service = layer.layer(upstream.service());

    // Round robin: the third 500 from 10.0.0.1 comes with request 7.
    send(&service, 7).await;
    assert_eq!(ejected(&layer), [true, false, false]);
    let snapshot = &layer.snapshot()[0];
    assert_eq!(snapshot.ejected_for, Some(Duration::from_secs(30)));
    assert_eq!((snapshot.times_ejected, snapshot.errors), (1, 3));
    upstream.take_seen();
    send(&service, 20).await;
    assert_eq!(count(&upstream.take_seen(), &a[0]), 0);

    tokio::time::advance(Duration::from_secs(29)).await;
    send(&service, 4).await;
    assert_eq!(
        count(&upstream.take_seen(), &a[0]),
        0,
        "still ejected at 29 s"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    send(&service, 9).await;
    assert_eq!(count(&upstream.take_seen(), &a[0]), 3, "back after 30 s");

    // Still failing: ejected again, for twice as long.
    let snapshot = &layer.snapshot()[0];
    assert!(snapshot.ejected);
    assert_eq!(snapshot.times_ejected, 2);
    assert_eq!(snapshot.ejected_for, Some(Duration::from_secs(60)));
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(ejected(&layer), [true, false, false]);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(ejected(&layer), [false, false, false]);
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_count_and_4xx_is_not_a_failure() {
    let upstream = Upstream::default();
    let a = authorities(1);
    let layer = LoadBalancerLayer::builder()
        .endpoints(endpoints(1))
        .outlier_detection(OutlierDetection::new().consecutive_5xx(3))
        .build()
        .unwrap();
    let service = layer.layer(upstream.service());
    for status in [500, 500, 200, 500, 500, 404, 500, 500] {
        upstream.set_status(&a[0], status);
        send(&service, 1).await;
    }
    assert_eq!(ejected(&layer), [false]);
    upstream.set_status(&a[0], 503);
    send(&service, 1).await;
    assert_eq!(ejected(&layer), [true]);
}

#[tokio::test(start_paused = true)]
async fn consecutive_gateway_errors_count_proxy_connect_failures() {
    let upstream = Upstream::default();
    let a = authorities(2);
    let layer = LoadBalancerLayer::builder()
        .endpoints(endpoints(2))
        .outlier_detection(
            OutlierDetection::new()
                .consecutive_5xx(0)
                .consecutive_gateway_errors(2)
                .max_ejection_percent(50),
        )
        .build()
        .unwrap();
    let service = layer.layer(upstream.service());
    // 500 is a 5xx but not a gateway error.
    upstream.set_status(&a[0], 500);
    send(&service, 10).await;
    assert_eq!(ejected(&layer), [false, false]);
    // 502 with the proxy's UpstreamConnect rejection.
    upstream.set_status(&a[0], 502);
    send(&service, 4).await;
    assert_eq!(ejected(&layer), [true, false]);
}

#[tokio::test(start_paused = true)]
async fn never_more_than_max_ejection_percent() {
    let upstream = Upstream::default();
    for authority in &authorities(4) {
        upstream.set_status(authority, 500);
    }
    let layer = LoadBalancerLayer::builder()
        .endpoints(endpoints(4))
        .outlier_detection(
            OutlierDetection::new()
                .consecutive_5xx(1)
                .max_ejection_percent(50),
        )
        .build()
        .unwrap();
    let service = layer.layer(upstream.service());
    send(&service, 40).await;
    let snapshot = layer.snapshot();
    let (out, kept): (Vec<_>, Vec<_>) = snapshot.iter().partition(|s| s.ejected);
    assert_eq!((out.len(), kept.len()), (2, 2), "{snapshot:?}");
    // Each ejected endpoint failed once; the two kept took the rest.
    assert!(out.iter().all(|s| s.requests == 1));
    assert_eq!(kept.iter().map(|s| s.requests).sum::<u64>(), 38);
    assert_eq!(upstream.take_seen().len(), 40);
}

#[tokio::test(start_paused = true)]
async fn below_the_panic_threshold_traffic_goes_to_all() {
    let upstream = Upstream::default();
    let a = authorities(4);
    for authority in &a[..3] {
        upstream.set_status(authority, 500);
    }
    let build = |panic| {
        LoadBalancerLayer::builder()
            .endpoints(endpoints(4))
            .outlier_detection(
                OutlierDetection::new()
                    .consecutive_5xx(1)
                    .max_ejection_percent(100),
            )
            .panic_threshold(panic)
            .build()
            .unwrap()
    };
    let layer = build(0);
    let service = layer.layer(upstream.service());
    send(&service, 4).await;
    assert_eq!(ejected(&layer), [true, true, true, false]);
    upstream.take_seen();
    send(&service, 8).await;
    assert_eq!(count(&upstream.take_seen(), &a[3]), 8, "no panic threshold");

    // 1 of 4 left (25 %) is below a 50 % threshold: all four get traffic.
    let layer = build(50);
    let service = layer.layer(upstream.service());
    send(&service, 4).await;
    assert_eq!(ejected(&layer), [true, true, true, false]);
    upstream.take_seen();
    send(&service, 8).await;
    let seen = upstream.take_seen();
    for authority in &a {
        assert_eq!(count(&seen, authority), 2, "{seen:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_lone_ejected_endpoint_means_503_until_it_returns() {
    let upstream = Upstream::default();
    let a = authorities(1);
    upstream.set_status(&a[0], 503);
    let layer = LoadBalancerLayer::builder()
        .endpoint(Endpoint::parse(&a[0]).unwrap())
        .outlier_detection(
            OutlierDetection::new()
                .consecutive_5xx(2)
                .base_ejection_time(Duration::from_secs(10)),
        )
        .build()
        .unwrap();
    let service = layer.layer(upstream.service());
    send(&service, 2).await;
    upstream.take_seen();
    let response = service.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.extensions().get::<Rejection>().unwrap().kind(),
        RejectionKind::NoHealthyEndpoint
    );
    assert!(
        upstream.take_seen().is_empty(),
        "the upstream was not called"
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    upstream.set_status(&a[0], 200);
    assert_eq!(send(&service, 3).await, [StatusCode::OK; 3]);
}

#[tokio::test(start_paused = true)]
async fn the_multiplier_goes_down_after_quiet_intervals() {
    let upstream = Upstream::default();
    let a = authorities(1);
    let layer = LoadBalancerLayer::builder()
        .endpoints(endpoints(1))
        .outlier_detection(
            OutlierDetection::new()
                .consecutive_5xx(1)
                .interval(Duration::from_secs(10))
                .base_ejection_time(Duration::from_secs(5)),
        )
        .build()
        .unwrap();
    let service = layer.layer(upstream.service());
    upstream.set_status(&a[0], 500);
    send(&service, 1).await;
    tokio::time::advance(Duration::from_secs(5)).await;
    send(&service, 1).await;
    assert_eq!(layer.snapshot()[0].times_ejected, 2);
    tokio::time::advance(Duration::from_secs(10)).await;
    // Back at 10 s, then 20 s quiet: two intervals take the multiplier
    // from 2 to 0, so the next ejection is the first again.
    upstream.set_status(&a[0], 200);
    send(&service, 1).await;
    tokio::time::advance(Duration::from_secs(20)).await;
    upstream.set_status(&a[0], 500);
    send(&service, 1).await;
    let snapshot = &layer.snapshot()[0];
    assert_eq!(snapshot.times_ejected, 1);
    assert_eq!(snapshot.ejected_for, Some(Duration::from_secs(5)));
}

#[tokio::test(start_paused = true)]
async fn consistent_hash_keys_step_aside_while_their_endpoint_is_ejected() {
    let upstream = Upstream::default();
    let a = authorities(5);
    upstream.set_status(&a[2], 500);
    let layer = LoadBalancerLayer::builder()
        .endpoints(endpoints(5))
        .strategy(meshgate::load_balancer::Strategy::consistent_hash(
            meshgate::load_balancer::HashKey::Header(http::HeaderName::from_static("x-user")),
        ))
        .outlier_detection(OutlierDetection::new().consecutive_5xx(1))
        .build()
        .unwrap();
    let request = |k: usize| {
        Request::builder()
            .header("x-user", format!("user-{k}"))
            .body(())
            .unwrap()
    };
    let map = |layer: &LoadBalancerLayer| -> Vec<String> {
        (0..1000)
            .map(|k| layer.pick(&request(k)).unwrap().authority().to_string())
            .collect()
    };
    let before = map(&layer);
    let victim = before.iter().position(|a2| *a2 == a[2]).unwrap();
    let service = layer.layer(upstream.service());
    let response = service.oneshot(request(victim)).await.unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(ejected(&layer), [false, false, true, false, false]);

    let during = map(&layer);
    for (old, new) in before.iter().zip(&during) {
        if *old == a[2] {
            assert_ne!(*new, a[2]);
        } else {
            assert_eq!(old, new, "a key of a healthy endpoint moved");
        }
    }
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(map(&layer), before, "the keys come back with the endpoint");
}
