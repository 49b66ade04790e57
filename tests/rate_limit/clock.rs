//! The local backend's clocks: the default one runs in real time whatever
//! tokio's clock does; `Clock::Tokio` follows paused time.

use std::time::{Duration, Instant};

use meshgate::rate_limit::{Clock, Decision, Quota, RateLimitLayer};

use super::from;

#[test]
fn the_default_clock_replenishes_in_real_time() {
    let layer = RateLimitLayer::new([Quota::new(1, Duration::from_millis(50))]);
    let started = Instant::now();
    assert!(matches!(
        layer.check(&mut from("192.0.2.1")),
        Decision::Allowed { remaining: 0, .. }
    ));
    let Decision::Refused { retry_after } = layer.check(&mut from("192.0.2.1")) else {
        panic!("a second request within 50 ms was allowed");
    };
    assert!(retry_after <= Duration::from_millis(50), "{retry_after:?}");
    // Polls (refused checks charge nothing) until the quota is back:
    // bounded at 5 s of wall time.
    let allowed_at = loop {
        if let Decision::Allowed { .. } = layer.check(&mut from("192.0.2.1")) {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never replenished"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    // Not before the interval (1 ms of slack for the clocks' calibration).
    assert!(allowed_at >= Duration::from_millis(49), "{allowed_at:?}");
}

#[tokio::test(start_paused = true)]
async fn paused_time_drives_only_the_tokio_clock() {
    let real = RateLimitLayer::new([Quota::per_minute(1)]);
    let paused = RateLimitLayer::new([Quota::per_minute(1)]).clock(Clock::Tokio);
    for layer in [&real, &paused] {
        assert!(matches!(
            layer.check(&mut from("192.0.2.1")),
            Decision::Allowed { .. }
        ));
        assert!(matches!(
            layer.check(&mut from("192.0.2.1")),
            Decision::Refused { .. }
        ));
    }
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(matches!(
        paused.check(&mut from("192.0.2.1")),
        Decision::Allowed { .. }
    ));
    let Decision::Refused { retry_after } = real.check(&mut from("192.0.2.1")) else {
        panic!("paused time replenished the default clock's quota");
    };
    assert!(retry_after > Duration::from_secs(59), "{retry_after:?}");
}
