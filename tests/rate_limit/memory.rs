//! Bounded memory: a flood of distinct keys never grows the key map past
//! its bound, and stale keys are swept.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use http::{Request, Response};
use meshgate::peer::PeerAddr;
use meshgate::rate_limit::{Clock, Quota, RateLimitLayer};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt, service_fn};

#[tokio::test(start_paused = true)]
async fn a_million_distinct_keys_stay_under_the_bound() {
    const KEYS: u32 = 1_000_000;
    const MAX_KEYS: usize = 10_000;
    let layer = RateLimitLayer::new([Quota::per_second(10), Quota::per_minute(100)])
        .clock(Clock::Tokio)
        .max_keys(MAX_KEYS);
    let mut service = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(()))
    }));
    let bound = layer.key_capacity();
    assert!(bound <= MAX_KEYS);
    let rss_before = resident_bytes();
    let started = std::time::Instant::now();
    let mut peak = 0;
    for i in 0..KEYS {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        let mut request = Request::new(());
        request
            .extensions_mut()
            .insert(PeerAddr(SocketAddr::new(ip, 1234)));
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(response.status(), 200, "key {i}");
        if i % 50_000 == 0 {
            peak = peak.max(layer.key_count());
            // Time passes during the flood, so sweeps happen too.
            advance(Duration::from_secs(1)).await;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the flood is too slow: {i} keys in 120 s"
        );
    }
    peak = peak.max(layer.key_count());
    assert!(peak <= bound, "{peak} keys held, bound {bound}");
    assert!(peak > bound / 2, "the map never filled: {peak} of {bound}");
    // Resident memory: one million unbounded keys would take ~150 MB; the
    // bounded map ~2 MB. (Linux only; other tests in the same process can
    // add a little, hence the margin.)
    let grown = resident_bytes().saturating_sub(rss_before);
    eprintln!(
        "{KEYS} keys in {:?}: peak {peak} keys (bound {bound}), resident memory grew {} KiB",
        started.elapsed(),
        grown / 1024
    );
    if cfg!(target_os = "linux") {
        assert!(grown < 32 << 20, "resident memory grew {grown} bytes");
    }

    // Once every quota is replenished, a sweep empties the map.
    advance(Duration::from_secs(61)).await;
    layer.sweep();
    assert_eq!(layer.key_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_bound_holds_at_one_key() {
    // With a bound of one key, a new key replaces the old one: the bound
    // holds even at its smallest.
    let layer = RateLimitLayer::new([Quota::per_minute(1)])
        .clock(Clock::Tokio)
        .max_keys(1);
    let service = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(()))
    }));
    for i in 0..100u32 {
        let mut request = Request::new(());
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        request
            .extensions_mut()
            .insert(PeerAddr(SocketAddr::new(ip, 1)));
        service.clone().oneshot(request).await.unwrap();
        assert_eq!(layer.key_count(), 1);
    }
}

/// Resident set size from `/proc/self/statm` (0 where there is none).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}
