//! Behaviour of `meshgate::load_balancer` through its public API: the
//! strategies' distributions, set updates, refusals; outlier detection under
//! paused time (`outlier.rs`); health checks and DNS over real loopback
//! sockets (`health.rs`); in front of a real HTTP client
//! (`real_upstreams.rs`).

mod health;
mod outlier;
mod real_upstreams;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use meshgate::error::{Rejection, RejectionKind};
use meshgate::load_balancer::{
    ConsistentHash, Endpoint, HashKey, LoadBalancerError, LoadBalancerLayer, SelectedEndpoint,
    Strategy,
};
use meshgate::peer::PeerAddr;
use tokio::sync::{Notify, oneshot};
use tower::{Layer, Service, ServiceExt, service_fn};

/// The inner service: records the authority of every request and answers
/// as scripted per authority (status, delay, or holding the request until
/// released).
#[derive(Clone, Default)]
pub(crate) struct Upstream {
    seen: Arc<Mutex<Vec<String>>>,
    status: Arc<Mutex<HashMap<String, u16>>>,
    delay: Arc<Mutex<HashMap<String, Duration>>>,
    hold_next: Arc<Mutex<Option<oneshot::Sender<String>>>>,
    release: Arc<Notify>,
}

impl Upstream {
    pub(crate) fn set_status(&self, authority: &str, status: u16) {
        self.status
            .lock()
            .unwrap()
            .insert(authority.to_owned(), status);
    }

    pub(crate) fn set_delay(&self, authority: &str, delay: Duration) {
        self.delay
            .lock()
            .unwrap()
            .insert(authority.to_owned(), delay);
    }

    /// Holds the next request until [`release`](Self::release); the
    /// receiver gets its authority once it is held.
    pub(crate) fn hold_next(&self) -> oneshot::Receiver<String> {
        let (tx, rx) = oneshot::channel();
        *self.hold_next.lock().unwrap() = Some(tx);
        rx
    }

    pub(crate) fn release(&self) {
        self.release.notify_one();
    }

    /// The authorities requests were sent to, in order, and forgets them.
    pub(crate) fn take_seen(&self) -> Vec<String> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    pub(crate) fn service(
        &self,
    ) -> impl Service<
        Request<()>,
        Response = Response<String>,
        Error = Infallible,
        Future = impl Future<Output = Result<Response<String>, Infallible>> + Send,
    > + Clone
    + Send
    + 'static {
        let this = self.clone();
        service_fn(move |request: Request<()>| {
            let authority = request
                .uri()
                .authority()
                .map(|a| a.to_string())
                .unwrap_or_default();
            this.seen.lock().unwrap().push(authority.clone());
            let status = this
                .status
                .lock()
                .unwrap()
                .get(&authority)
                .copied()
                .unwrap_or(200);
            let delay = this.delay.lock().unwrap().get(&authority).copied();
            let hold = this.hold_next.lock().unwrap().take();
            let release = this.release.clone();
            async move {
                if let Some(held) = hold {
                    let _ = held.send(authority.clone());
                    release.notified().await;
                }
                if let Some(delay) = delay {
                    tokio::time::sleep(delay).await;
                }
                let mut response = Response::new(authority);
                *response.status_mut() = StatusCode::from_u16(status).unwrap();
                if status == 502 {
                    // What the proxy answers when it cannot connect.
                    response
                        .extensions_mut()
                        .insert(Rejection::new(RejectionKind::UpstreamConnect));
                }
                Ok::<_, Infallible>(response)
            }
        })
    }
}

/// `10.0.0.1:80` … `10.0.0.n:80`.
pub(crate) fn authorities(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("10.0.0.{i}:80")).collect()
}

pub(crate) fn endpoints(n: usize) -> Vec<Endpoint> {
    authorities(n)
        .iter()
        .map(|a| Endpoint::parse(a).unwrap())
        .collect()
}

/// Sends `n` requests one after the other and returns their statuses.
pub(crate) async fn send<S, B>(service: &S, n: usize) -> Vec<StatusCode>
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible> + Clone,
{
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        let response = service.clone().oneshot(Request::new(())).await.unwrap();
        statuses.push(response.status());
    }
    statuses
}

pub(crate) fn count(seen: &[String], authority: &str) -> usize {
    seen.iter().filter(|s| *s == authority).count()
}

#[tokio::test]
async fn the_uri_is_rewritten_and_the_endpoint_recorded_both_ways() {
    let upstream = Upstream::default();
    let layer = LoadBalancerLayer::new([Endpoint::parse("http://10.0.0.7:8080").unwrap()]).unwrap();
    let seen = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let service = layer.layer(service_fn(move |request: Request<()>| {
        let selected = request.extensions().get::<SelectedEndpoint>().cloned();
        *record.lock().unwrap() = Some((
            request.uri().to_string(),
            request.headers()["host"].clone(),
            selected.map(|s| s.authority().to_string()),
        ));
        async { Ok::<_, Infallible>(Response::new(String::new())) }
    }));
    let request = Request::get("/orders/7?page=2&x=%20")
        .header("host", "shop.example")
        .body(())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let (uri, host, selected) = seen.lock().unwrap().take().unwrap();
    assert_eq!(uri, "http://10.0.0.7:8080/orders/7?page=2&x=%20");
    assert_eq!(host, "shop.example", "the Host header is left alone");
    assert_eq!(selected.as_deref(), Some("10.0.0.7:8080"));
    let chosen = response.extensions().get::<SelectedEndpoint>().unwrap();
    assert_eq!(chosen.endpoint().to_string(), "http://10.0.0.7:8080");
    drop(upstream);
}

#[tokio::test]
async fn requests_and_responses_are_tagged_with_the_endpoint_as_built() {
    for (requests, responses) in [(true, true), (true, false), (false, true), (false, false)] {
        let layer = LoadBalancerLayer::builder()
            .endpoint(Endpoint::parse("http://10.0.0.7:8080").unwrap())
            .tag_requests(requests)
            .tag_responses(responses)
            .build()
            .unwrap();
        let service = layer.layer(service_fn(|request: Request<()>| async move {
            let selected = request.extensions().get::<SelectedEndpoint>();
            let tag = selected.map_or_else(|| "-".to_owned(), |s| s.authority().to_string());
            // The URI names the endpoint either way.
            Ok::<_, Infallible>(Response::new(format!("{tag} {}", request.uri())))
        }));
        let response = service.oneshot(Request::new(())).await.unwrap();
        let case = format!("tag_requests({requests}), tag_responses({responses})");
        let chosen = response.extensions().get::<SelectedEndpoint>();
        let tagged = chosen.map(|s| s.authority().to_string());
        assert_eq!(tagged.is_some(), responses, "{case}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let expected = if requests { "10.0.0.7:8080" } else { "-" };
        assert_eq!(body, format!("{expected} http://10.0.0.7:8080/"), "{case}");
        // Outcomes are recorded either way.
        assert_eq!(layer.snapshot()[0].requests, 1, "{case}");
    }
}

#[tokio::test]
async fn round_robin_is_exact() {
    let upstream = Upstream::default();
    let layer = LoadBalancerLayer::new(endpoints(3)).unwrap();
    let service = layer.layer(upstream.service());
    send(&service, 9).await;
    let a = authorities(3);
    let expected: Vec<String> = (0..9).map(|i| a[i % 3].clone()).collect();
    assert_eq!(upstream.take_seen(), expected);
}

#[tokio::test]
async fn smooth_weighted_round_robin_follows_nginx() {
    let upstream = Upstream::default();
    let weights = [5, 1, 1];
    let layer = LoadBalancerLayer::builder()
        .endpoints(
            endpoints(3)
                .into_iter()
                .zip(weights)
                .map(|(e, w)| e.with_weight(w)),
        )
        .strategy(Strategy::WeightedRoundRobin)
        .build()
        .unwrap();
    let service = layer.layer(upstream.service());
    send(&service, 14).await;
    let names: String = upstream
        .take_seen()
        .iter()
        .map(|s| match s.as_str() {
            "10.0.0.1:80" => 'a',
            "10.0.0.2:80" => 'b',
            _ => 'c',
        })
        .collect();
    assert_eq!(names, "aabacaaaabacaa");
}

/// Each endpoint's share of `n` requests is within `tolerance` of `expected`.
fn assert_shares(seen: &[String], expected: &[(&str, f64)], tolerance: f64) {
    let n = seen.len() as f64;
    for (authority, share) in expected {
        let got = count(seen, authority) as f64 / n;
        assert!(
            (got - share).abs() <= tolerance,
            "{authority}: {got:.4} vs {share} ± {tolerance}"
        );
    }
}

#[tokio::test]
async fn weighted_random_is_within_bounds() {
    let upstream = Upstream::default();
    let weights = [1, 1, 2];
    let layer = LoadBalancerLayer::builder()
        .endpoints(
            endpoints(3)
                .into_iter()
                .zip(weights)
                .map(|(e, w)| e.with_weight(w)),
        )
        .strategy(Strategy::Random)
        .seed(7)
        .build()
        .unwrap();
    let service = layer.layer(upstream.service());
    send(&service, 20_000).await;
    let seen = upstream.take_seen();
    assert_shares(
        &seen,
        &[
            ("10.0.0.1:80", 0.25),
            ("10.0.0.2:80", 0.25),
            ("10.0.0.3:80", 0.5),
        ],
        0.015,
    );
}

#[tokio::test]
async fn least_request_spreads_evenly_and_avoids_a_busy_endpoint() {
    let upstream = Upstream::default();
    let layer = LoadBalancerLayer::builder()
        .endpoints(endpoints(3))
        .strategy(Strategy::LeastRequest)
        .seed(11)
        .build()
        .unwrap();
    let service = layer.layer(upstream.service());
    send(&service, 12_000).await;
    let third = 1.0 / 3.0;
    let a = authorities(3);
    assert_shares(
        &upstream.take_seen(),
        &[(&a[0], third), (&a[1], third), (&a[2], third)],
        0.02,
    );

    // Hold one request busy: its endpoint has one in flight, the others
    // none, so power of two choices never picks it.
    let held = upstream.hold_next();
    let busy = tokio::spawn(service.clone().oneshot(Request::new(())));
    let busy_authority = held.await.unwrap();
    upstream.take_seen();
    send(&service, 300).await;
    let seen = upstream.take_seen();
    assert_eq!(count(&seen, &busy_authority), 0, "{seen:?}");
    for other in a.iter().filter(|a| **a != busy_authority) {
        assert!(count(&seen, other) > 100, "{other}: {seen:?}");
    }
    upstream.release();
    assert_eq!(busy.await.unwrap().unwrap().status(), 200);
    send(&service, 300).await;
    assert!(count(&upstream.take_seen(), &busy_authority) > 50);
}

#[tokio::test]
async fn least_request_draws_by_weight() {
    let upstream = Upstream::default();
    let layer = LoadBalancerLayer::builder()
        .endpoints([
            Endpoint::parse("10.0.0.1:80").unwrap(),
            Endpoint::parse("10.0.0.2:80").unwrap().with_weight(3),
            Endpoint::parse("10.0.0.3:80").unwrap().with_weight(4),
        ])
        .strategy(Strategy::LeastRequest)
        .seed(5)
        .build()
        .unwrap();
    let service = layer.layer(upstream.service());
    // One request at a time: every endpoint is idle, the first drawn wins.
    send(&service, 16_000).await;
    let a = authorities(3);
    assert_shares(
        &upstream.take_seen(),
        &[(&a[0], 0.125), (&a[1], 0.375), (&a[2], 0.5)],
        0.02,
    );
}

#[tokio::test(start_paused = true)]
async fn peak_ewma_prefers_the_fast_endpoint() {
    let upstream = Upstream::default();
    let a = authorities(3);
    upstream.set_delay(&a[0], Duration::from_millis(5));
    upstream.set_delay(&a[1], Duration::from_millis(80));
    upstream.set_delay(&a[2], Duration::from_millis(80));
    let layer = LoadBalancerLayer::builder()
        .endpoints(endpoints(3))
        .strategy(Strategy::peak_ewma())
        .seed(3)
        .build()
        .unwrap();
    let service = layer.layer(upstream.service());
    send(&service, 600).await;
    let seen = upstream.take_seen();
    let fast = count(&seen, &a[0]);
    // The fast endpoint wins every comparison it is in (2 of 3 pairs), and
    // the slow ones only meet each other.
    assert!(fast > 380, "fast endpoint got {fast} of 600");
    let snapshot = layer.snapshot();
    assert_eq!(snapshot[0].latency_ewma, Some(Duration::from_millis(5)));
    assert!(snapshot[1].latency_ewma.unwrap() >= Duration::from_millis(70));
}

#[tokio::test(start_paused = true)]
async fn peak_ewma_learns_from_requests_an_outer_timeout_cancels() {
    let upstream = Upstream::default();
    let a = authorities(2);
    upstream.set_delay(&a[0], Duration::from_millis(5));
    // Never answers within anyone's patience.
    upstream.set_delay(&a[1], Duration::from_secs(3600));
    let layer = LoadBalancerLayer::builder()
        .endpoints(endpoints(2))
        .strategy(Strategy::peak_ewma())
        .seed(9)
        .build()
        .unwrap();
    let service = layer.layer(upstream.service());
    let mut timed_out = 0;
    for _ in 0..200 {
        let call = service.clone().oneshot(Request::new(()));
        if tokio::time::timeout(Duration::from_millis(100), call)
            .await
            .is_err()
        {
            timed_out += 1;
        }
    }
    // The hanging endpoint is tried at first, then its 100 ms samples keep
    // it behind the 5 ms one until they decay (10 s) — far beyond this run.
    assert!(timed_out <= 3, "{timed_out} of 200 timed out");
    let snapshot = layer.snapshot();
    assert!(snapshot[1].latency_ewma.unwrap() >= Duration::from_millis(90));
    assert_eq!(snapshot[1].errors, 0, "a cancelled request is no outcome");
    assert_eq!(snapshot[1].in_flight, 0);
}

#[tokio::test]
async fn consistent_hash_moves_only_the_keys_of_an_endpoint_that_leaves() {
    let n = 10;
    let layer = LoadBalancerLayer::builder()
        .endpoints(endpoints(n))
        .strategy(Strategy::consistent_hash(HashKey::Header(
            http::HeaderName::from_static("x-user"),
        )))
        .build()
        .unwrap();
    let keys = 10_000;
    let map = |layer: &LoadBalancerLayer| -> Vec<String> {
        (0..keys)
            .map(|k| {
                let request = Request::builder()
                    .header("x-user", format!("user-{k}"))
                    .body(())
                    .unwrap();
                layer.pick(&request).unwrap().authority().to_string()
            })
            .collect()
    };
    let before = map(&layer);
    let a = authorities(n);
    for authority in &a {
        let share = count(&before, authority);
        assert!((600..=1400).contains(&share), "{authority}: {share}");
    }
    // The same set again (a no-op update): every key stays.
    layer.handle().update(endpoints(n)).unwrap();
    assert_eq!(map(&layer), before);

    let leaving = &a[3];
    let remaining: Vec<Endpoint> = endpoints(n)
        .into_iter()
        .filter(|e| e.authority().as_str() != leaving)
        .collect();
    layer.handle().update(remaining).unwrap();
    let after = map(&layer);
    let mut moved = 0;
    for (old, new) in before.iter().zip(&after) {
        if old == leaving {
            assert_ne!(new, leaving);
            moved += 1;
        } else {
            assert_eq!(old, new, "a key on a staying endpoint moved");
        }
    }
    let fraction = moved as f64 / keys as f64;
    assert!(
        (0.06..=0.14).contains(&fraction),
        "moved {fraction} (expected about 1/{n})"
    );
    // And they spread over the others rather than piling onto one.
    let mut targets: HashMap<&str, usize> = HashMap::new();
    for (old, new) in before.iter().zip(&after) {
        if old == leaving {
            *targets.entry(new.as_str()).or_default() += 1;
        }
    }
    assert!(targets.len() >= 5, "{targets:?}");
}

#[tokio::test]
async fn consistent_hash_honours_weights_cookies_client_ips_and_falls_back() {
    let weighted = LoadBalancerLayer::builder()
        .endpoints([
            Endpoint::parse("10.0.0.1:80").unwrap(),
            Endpoint::parse("10.0.0.2:80").unwrap().with_weight(3),
        ])
        .strategy(Strategy::ConsistentHash(
            ConsistentHash::new(HashKey::Cookie("session".into())).fallback(Strategy::RoundRobin),
        ))
        .build()
        .unwrap();
    let mut heavy = 0;
    for k in 0..4000 {
        let request = Request::builder()
            .header("cookie", format!("theme=dark; session=s{k}"))
            .body(())
            .unwrap();
        let first = weighted.pick(&request).unwrap();
        let again = weighted.pick(&request).unwrap();
        assert_eq!(first.authority(), again.authority(), "sticky");
        heavy += usize::from(first.authority().as_str() == "10.0.0.2:80");
    }
    assert!((2700..=3300).contains(&heavy), "weight 3 of 4 got {heavy}");

    // No cookie: round robin.
    let no_key: Vec<String> = (0..4)
        .map(|_| {
            weighted
                .pick(&Request::new(()))
                .unwrap()
                .authority()
                .to_string()
        })
        .collect();
    assert_eq!(
        no_key,
        ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.1:80", "10.0.0.2:80"]
    );

    let by_ip = LoadBalancerLayer::builder()
        .endpoints(endpoints(5))
        .strategy(Strategy::consistent_hash(HashKey::ClientIp))
        .build()
        .unwrap();
    let from = |ip: &str, port: u16| {
        let mut request = Request::new(());
        let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        request.extensions_mut().insert(PeerAddr(addr));
        by_ip.pick(&request).unwrap().authority().to_string()
    };
    // The port does not matter, only the address.
    assert_eq!(from("192.0.2.1", 1000), from("192.0.2.1", 2000));
    let spread: std::collections::HashSet<String> = (0..200)
        .map(|i| from(&format!("198.51.100.{i}"), 1))
        .collect();
    assert_eq!(spread.len(), 5);
}

#[tokio::test]
async fn an_empty_set_is_a_503_problem_without_calling_the_upstream() {
    let upstream = Upstream::default();
    let layer = LoadBalancerLayer::new([]).unwrap();
    let service = layer.layer(upstream.service());
    let response = service.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(
        response.extensions().get::<Rejection>().unwrap().kind(),
        RejectionKind::NoHealthyEndpoint
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["status"], 503);
    assert_eq!(problem["detail"], "the upstream has no endpoints");
    assert!(upstream.take_seen().is_empty());

    let grpc = Request::builder()
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let response = service.oneshot(grpc).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["grpc-status"], "14");
}

#[tokio::test]
async fn an_update_during_a_request_lets_it_finish_and_keeps_staying_stats() {
    let upstream = Upstream::default();
    let layer = LoadBalancerLayer::new(endpoints(2)).unwrap();
    let service = layer.layer(upstream.service());
    let a = authorities(2);

    let held = upstream.hold_next();
    let in_flight = tokio::spawn(service.clone().oneshot(Request::new(())));
    assert_eq!(held.await.unwrap(), a[0]);
    send(&service, 3).await;
    upstream.take_seen();

    // 10.0.0.1 leaves while its request is in flight; 10.0.0.3 joins.
    let third = Endpoint::parse("10.0.0.3:80").unwrap();
    layer
        .handle()
        .update([Endpoint::parse(&a[1]).unwrap(), third.clone()])
        .unwrap();
    let snapshot = layer.snapshot();
    assert_eq!(snapshot.len(), 2);
    assert_eq!(snapshot[0].endpoint.authority().as_str(), a[1]);
    assert_eq!(snapshot[0].requests, 2, "10.0.0.2 keeps its statistics");
    assert_eq!(snapshot[1].requests, 0);

    send(&service, 4).await;
    let seen = upstream.take_seen();
    assert_eq!(count(&seen, &a[0]), 0, "{seen:?}");
    assert_eq!(count(&seen, "10.0.0.3:80"), 2, "{seen:?}");

    upstream.release();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let chosen = response.extensions().get::<SelectedEndpoint>().unwrap();
    assert_eq!(chosen.authority().as_str(), a[0]);
    assert_eq!(layer.endpoints(), [Endpoint::parse(&a[1]).unwrap(), third]);
}

#[tokio::test]
async fn endpoints_are_added_reweighted_and_removed_one_at_a_time() {
    let upstream = Upstream::default();
    let layer = LoadBalancerLayer::builder()
        .endpoints(endpoints(2))
        .max_endpoints(3)
        .build()
        .unwrap();
    let service = layer.layer(upstream.service());
    send(&service, 2).await;
    let handle = layer.handle();
    let third = Endpoint::parse("10.0.0.3:80").unwrap();
    handle.add(third.clone()).unwrap();
    handle.add(third.clone().with_weight(7)).unwrap();
    assert_eq!(layer.endpoints().len(), 3);
    assert_eq!(layer.endpoints()[2].weight(), 7, "added again: reweighted");
    assert_eq!(
        handle.add(Endpoint::parse("10.0.0.4:80").unwrap()),
        Err(LoadBalancerError::TooManyEndpoints { max: 3, got: 4 })
    );
    assert!(
        handle.remove(
            &Endpoint::parse("http://10.0.0.1:80")
                .unwrap()
                .with_weight(9)
        )
    );
    assert!(!handle.remove(&Endpoint::parse("10.0.0.9:80").unwrap()));
    let snapshot = layer.snapshot();
    let names: Vec<_> = snapshot
        .iter()
        .map(|s| s.endpoint.authority().to_string())
        .collect();
    assert_eq!(names, ["10.0.0.2:80", "10.0.0.3:80"]);
    assert_eq!(snapshot[0].requests, 1, "10.0.0.2 keeps its statistics");
}

#[test]
fn bad_sets_are_refused_and_leave_the_set_alone() {
    let layer = LoadBalancerLayer::builder()
        .endpoints(endpoints(2))
        .max_endpoints(3)
        .build()
        .unwrap();
    assert_eq!(
        layer.handle().update(endpoints(4)),
        Err(LoadBalancerError::TooManyEndpoints { max: 3, got: 4 })
    );
    let twice = [
        Endpoint::parse("10.0.0.1:80").unwrap(),
        Endpoint::parse("http://10.0.0.1:80")
            .unwrap()
            .with_weight(2),
    ];
    assert!(matches!(
        layer.handle().update(twice),
        Err(LoadBalancerError::DuplicateEndpoint(_))
    ));
    assert_eq!(layer.endpoints(), endpoints(2));
    assert!(
        LoadBalancerLayer::builder()
            .endpoints(endpoints(4))
            .max_endpoints(3)
            .build()
            .is_err()
    );
    let bad_path = LoadBalancerLayer::builder()
        .health_check(meshgate::load_balancer::HealthCheck::new("healthz"))
        .build();
    assert!(matches!(
        bad_path,
        Err(LoadBalancerError::InvalidHealthCheck(_))
    ));
}

#[tokio::test]
async fn in_flight_and_error_counts_are_in_the_snapshot() {
    let upstream = Upstream::default();
    let a = authorities(2);
    upstream.set_status(&a[1], 500);
    let layer = LoadBalancerLayer::new(endpoints(2)).unwrap();
    let service = layer.layer(upstream.service());
    send(&service, 4).await;
    let held = upstream.hold_next();
    let in_flight = tokio::spawn(service.clone().oneshot(Request::new(())));
    held.await.unwrap();
    let snapshot = layer.snapshot();
    assert_eq!(
        (
            snapshot[0].requests,
            snapshot[0].errors,
            snapshot[0].in_flight
        ),
        (3, 0, 1)
    );
    assert_eq!(
        (
            snapshot[1].requests,
            snapshot[1].errors,
            snapshot[1].in_flight
        ),
        (2, 2, 0)
    );
    assert!(snapshot.iter().all(|s| s.healthy && !s.ejected));
    upstream.release();
    in_flight.await.unwrap().unwrap();
    assert_eq!(layer.snapshot()[0].in_flight, 0);

    // A cancelled request leaves the in-flight count too.
    let held = upstream.hold_next();
    let cancelled = tokio::spawn(service.clone().oneshot(Request::new(())));
    held.await.unwrap();
    cancelled.abort();
    let _ = cancelled.await;
    assert!(layer.snapshot().iter().all(|s| s.in_flight == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_updates_and_ejections_stay_consistent() {
    let upstream = Upstream::default();
    let a = authorities(4);
    upstream.set_status(&a[3], 500);
    let layer = LoadBalancerLayer::builder()
        .endpoints(endpoints(4))
        .strategy(Strategy::LeastRequest)
        .outlier_detection(
            meshgate::load_balancer::OutlierDetection::new()
                .consecutive_5xx(2)
                .max_ejection_percent(100),
        )
        .build()
        .unwrap();
    let service = layer.layer(upstream.service());
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let service = service.clone();
        tasks.push(tokio::spawn(async move { send(&service, 500).await }));
    }
    let handle = layer.handle();
    let updates = tokio::spawn(async move {
        for round in 0..50 {
            let set = if round % 2 == 0 {
                endpoints(4)
            } else {
                endpoints(3)
            };
            handle.update(set).unwrap();
            tokio::task::yield_now().await;
        }
        handle.update(endpoints(4)).unwrap();
    });
    for task in tasks {
        for status in task.await.unwrap() {
            assert!(matches!(status.as_u16(), 200 | 500), "{status}");
        }
    }
    updates.await.unwrap();
    assert_eq!(upstream.take_seen().len(), 2000);
    let snapshot = layer.snapshot();
    assert!(snapshot.iter().all(|s| s.in_flight == 0), "{snapshot:?}");
    assert!(snapshot[0].requests > 0 && snapshot[0].errors == 0);
}

#[tokio::test]
async fn endpoints_follow_a_channel() {
    let (updates, receiver) = tokio::sync::watch::channel(endpoints(2));
    let layer = LoadBalancerLayer::builder()
        .follow(receiver)
        .build()
        .unwrap();
    assert_eq!(layer.endpoints(), endpoints(2));
    let upstream = Upstream::default();
    let service = layer.layer(upstream.service());
    send(&service, 2).await;

    updates.send(endpoints(3)).unwrap();
    let mut applied = false;
    for _ in 0..100 {
        if layer.endpoints().len() == 3 {
            applied = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(applied, "the update was not applied");
    assert_eq!(layer.snapshot()[0].requests, 1, "stats kept");

    // A set that cannot be used is skipped; the next good one applies.
    let twice = [endpoints(1), endpoints(1)].concat();
    updates.send(twice).unwrap();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(layer.endpoints(), endpoints(3), "a bad set is skipped");
    updates.send(endpoints(1)).unwrap();
    for _ in 0..100 {
        if layer.endpoints().len() == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(layer.endpoints(), endpoints(1));

    let metrics = tokio::runtime::Handle::current().metrics();
    assert_eq!(metrics.num_alive_tasks(), 1);
    drop(updates);
    for _ in 0..100 {
        if metrics.num_alive_tasks() == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        metrics.num_alive_tasks(),
        0,
        "the follower stops with the sender"
    );
}
