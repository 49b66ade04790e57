//! An allowed request through `RateLimitLayer` against a bare `service_fn`,
//! in the same run: one key, and 10 000 keys in turn; `governor`'s raw
//! keyed check as the reference for the check alone (with its default
//! SipHash; with `foldhash`, the hash family of the local backend; and
//! with `foldhash`, keyed by the `ClientIp` of the same requests, the
//! like-for-like reference for `RateLimitLayer::check`). With the `redis`
//! feature and `redis-server` on PATH, also requests through the Redis
//! backend, one at a time and 32 at once (on one multiplexed connection).
//!
//! `cargo bench --bench rate_limit --features redis`
//!
//! `RATE_LIMIT_PROFILE=<variant>:<n>` runs `n` calls of one variant and
//! exits, for instruction counts under callgrind (see [`profile`]).

use std::convert::Infallible;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;

use criterion::{Criterion, criterion_group};
use http::{Request, Response};
use meshgate::net::ClientIp;
use meshgate::peer::PeerAddr;
use meshgate::rate_limit::{Clock, Quota, RateLimitLayer};
use tower::{Layer, Service, service_fn};

async fn ok(_: Request<()>) -> Result<Response<&'static str>, Infallible> {
    Ok(Response::new("ok"))
}

fn request(i: u32) -> Request<()> {
    let mut request = Request::new(());
    let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::new(ip, 40000)));
    request
}

/// A request whose client IP is resolved (as after an outer layer, or a
/// first check).
fn prepared(i: u32) -> Request<()> {
    let mut request = request(i);
    let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
    request.extensions_mut().insert(ClientIp(ip));
    request
}

/// Quotas no benchmark run can exhaust, so every request is allowed.
fn layer() -> RateLimitLayer {
    RateLimitLayer::new([
        Quota::per_second(1_000_000_000).burst(1_000_000_000),
        Quota::per_minute(u64::MAX / 2),
    ])
}

/// Governor's quota, as one meshgate quota: like for like.
fn governor_quota() -> governor::Quota {
    governor::Quota::per_second(NonZeroU32::MAX).allow_burst(NonZeroU32::MAX)
}

/// Governor's keyed limiter with a seeded folded-multiply hasher
/// (`foldhash`, of the family the local backend's key hash belongs to) in
/// place of its default SipHash: like for like on hashing too.
type FoldGovernor = governor::RateLimiter<
    IpAddr,
    governor::state::keyed::DashMapStateStore<IpAddr, foldhash::fast::RandomState>,
    governor::clock::DefaultClock,
>;

fn fold_governor() -> FoldGovernor {
    governor::RateLimiter::dashmap_with_clock_and_hasher(
        governor_quota(),
        governor::clock::DefaultClock::default(),
        foldhash::fast::RandomState::default(),
    )
}

/// The same quota as [`governor_quota`] for meshgate.
fn one_quota_layer() -> RateLimitLayer {
    RateLimitLayer::new([Quota::per_second(u64::from(u32::MAX)).burst(u64::from(u32::MAX))])
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut bare = service_fn(ok);
    c.bench_function("rate_limit/service_fn", |b| {
        b.to_async(&rt).iter(|| {
            let fut = bare.call(request(1));
            async move { black_box(fut.await.unwrap()) }
        })
    });
    let mut one_key = layer().layer(service_fn(ok));
    c.bench_function("rate_limit/allowed_one_key", |b| {
        b.to_async(&rt).iter(|| {
            let fut = one_key.call(request(1));
            async move { black_box(fut.await.unwrap()) }
        })
    });
    let governor = governor::RateLimiter::keyed(governor_quota());
    c.bench_function("rate_limit/governor_check_key_one_key", |b| {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        b.iter(|| black_box(governor.check_key(black_box(&ip)).is_ok()))
    });
    let mut j = 0u32;
    c.bench_function("rate_limit/governor_check_key_10k_keys", |b| {
        b.iter(|| {
            j = (j + 1) % 10_000;
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + j));
            black_box(governor.check_key(&ip).is_ok())
        })
    });
    let fold = fold_governor();
    c.bench_function("rate_limit/governor_foldhash_check_key_one_key", |b| {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        b.iter(|| black_box(fold.check_key(black_box(&ip)).is_ok()))
    });
    c.bench_function("rate_limit/governor_foldhash_check_key_10k_keys", |b| {
        b.iter(|| {
            j = (j + 1) % 10_000;
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + j));
            black_box(fold.check_key(&ip).is_ok())
        })
    });
    // The check alone, as governor's: the layer's `check` on prepared
    // requests (their client IP resolved once, as an outer layer would),
    // with governor's one quota (like for like), then with two quotas.
    let mut requests: Vec<Request<()>> = (0..10_000).map(prepared).collect();
    // Governor keyed by the same requests' client IP: the extension
    // look-up `check` makes too.
    let mut k = 0usize;
    c.bench_function("rate_limit/governor_foldhash_check_request_10k_keys", |b| {
        b.iter(|| {
            k = (k + 1) % requests.len();
            let request = black_box(&requests[k]);
            let ip = request.extensions().get::<ClientIp>();
            black_box(ip.is_some_and(|ip| fold.check_key(&ip.0).is_ok()))
        })
    });
    let checks = one_quota_layer();
    let mut one = prepared(1);
    c.bench_function("rate_limit/check_one_quota_one_key", |b| {
        b.iter(|| black_box(checks.check(&mut one)))
    });
    c.bench_function("rate_limit/check_one_quota_10k_keys", |b| {
        b.iter(|| {
            k = (k + 1) % requests.len();
            black_box(checks.check(&mut requests[k]))
        })
    });
    let checks = layer();
    let mut one = prepared(1);
    c.bench_function("rate_limit/check_one_key", |b| {
        b.iter(|| black_box(checks.check(&mut one)))
    });
    c.bench_function("rate_limit/check_10k_keys", |b| {
        b.iter(|| {
            k = (k + 1) % requests.len();
            black_box(checks.check(&mut requests[k]))
        })
    });
    let mut many_keys = layer().layer(service_fn(ok));
    let mut i = 0u32;
    c.bench_function("rate_limit/allowed_10k_keys", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % 10_000;
            let fut = many_keys.call(request(i));
            async move { black_box(fut.await.unwrap()) }
        })
    });
}

#[cfg(feature = "redis")]
fn bench_redis(c: &mut Criterion) {
    use meshgate::rate_limit::RedisBackend;
    use tower::ServiceExt;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .stdout(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("rate_limit/redis: redis-server is not on PATH; Redis benches not run");
        return;
    };
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let service = rt.block_on(async {
        let backend = RedisBackend::new(&format!("redis://127.0.0.1:{port}/")).unwrap();
        layer().redis(backend).layer(service_fn(ok))
    });
    c.bench_function("rate_limit/redis_allowed", |b| {
        b.to_async(&rt).iter(|| {
            let fut = service.clone().oneshot(request(1));
            async move {
                let response = fut.await.unwrap();
                assert_eq!(response.status(), 200);
                black_box(response)
            }
        })
    });
    c.bench_function("rate_limit/redis_allowed_x32", |b| {
        b.to_async(&rt).iter(|| {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..32 {
                set.spawn(service.clone().oneshot(request(i)));
            }
            async move {
                while let Some(done) = set.join_next().await {
                    assert_eq!(done.unwrap().unwrap().status(), 200);
                }
            }
        })
    });
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(not(feature = "redis"))]
fn bench_redis(_: &mut Criterion) {}

/// `RATE_LIMIT_PROFILE=<variant>:<n>` runs `n` calls of one variant and
/// exits, for instruction counts under callgrind. Count only [`measured`]
/// (`valgrind --tool=callgrind --toggle-collect='*measured*' …`): the
/// setup stays out, which matters for governor, whose default clock
/// calibrates itself for a stretch of wall time when the limiter is built.
/// The difference between a run of `n` and one of `2n`, divided by `n`, is
/// the cost of one call (the first insert of each key cancels out when
/// `n` ≥ 10 000). Variants:
///
/// * `governor_one`, `governor_10k`: governor's `check_key` (one key, or
///   10 000 IP keys in turn);
/// * `fold_governor_one`, `fold_governor_10k`: the same with `foldhash`
///   instead of SipHash;
/// * `fold_governor_request_one`, `fold_governor_request_10k`: the same,
///   keyed by the [`ClientIp`] of the requests `check` gets (the extension
///   look-up `check` makes too);
/// * `check_one`, `check_10k`: the layer's `check` with governor's quota,
///   on requests whose client IP is resolved;
/// * `check_tokio_one`: the same on [`Clock::Tokio`] (with the bench's
///   tokio `test-util` feature, so the paused-clock path);
/// * `check2_one`, `check2_10k`: the same with the bench's two quotas;
/// * `service_fn`, `layer_one`, `layer_10k`: a fresh request through a bare
///   `service_fn`, and through the layer (two quotas);
/// * `clock`, `clock_tokio`: the local backend's clocks read alone (the
///   default, `quanta`'s; and tokio's, on the `test-util` path), and
///   `clock_std`: `std::time::Instant::now` as tokio reads it without
///   `test-util`.
///
/// Each run prints the wall time of its measured part (secondary: noisy on a shared
/// machine). Everything runs inside a current-thread runtime, as in a server.
fn profile(spec: &str) {
    let (variant, n) = spec.split_once(':').expect("variant:n");
    let n: usize = n.parse().expect("n");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let ips: Vec<IpAddr> = (0..10_000)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
        .collect();
    let governor = |keys: usize| {
        let limiter = governor::RateLimiter::keyed(governor_quota());
        measured(|| {
            for i in 0..n {
                black_box(limiter.check_key(black_box(&ips[i % keys])).is_ok());
            }
        });
    };
    let fold_governor_keys = |keys: usize| {
        let limiter = fold_governor();
        measured(|| {
            for i in 0..n {
                black_box(limiter.check_key(black_box(&ips[i % keys])).is_ok());
            }
        });
    };
    let fold_governor_request = |keys: usize| {
        let limiter = fold_governor();
        let prepared: Vec<Request<()>> = (0..keys as u32).map(prepared).collect();
        measured(|| {
            for i in 0..n {
                let request = black_box(&prepared[i % keys]);
                let ip = request.extensions().get::<ClientIp>();
                black_box(ip.is_some_and(|ip| limiter.check_key(&ip.0).is_ok()));
            }
        });
    };
    let check = |layer: RateLimitLayer, keys: usize| {
        // Builds the limiter (and calibrates its clock) before the count.
        black_box(layer.key_capacity());
        let mut prepared: Vec<Request<()>> = (0..keys as u32).map(prepared).collect();
        measured(|| {
            for i in 0..n {
                black_box(layer.check(black_box(&mut prepared[i % keys])));
            }
        });
    };
    match variant {
        "governor_one" => governor(1),
        "governor_10k" => governor(10_000),
        "fold_governor_one" => fold_governor_keys(1),
        "fold_governor_10k" => fold_governor_keys(10_000),
        "fold_governor_request_one" => fold_governor_request(1),
        "fold_governor_request_10k" => fold_governor_request(10_000),
        "check_one" => check(one_quota_layer(), 1),
        "check_tokio_one" => check(one_quota_layer().clock(Clock::Tokio), 1),
        "check_10k" => check(one_quota_layer(), 10_000),
        "check2_one" => check(layer(), 1),
        "check2_10k" => check(layer(), 10_000),
        "service_fn" => {
            let mut s = service_fn(ok);
            measured(|| {
                rt.block_on(async {
                    for _ in 0..n {
                        black_box(s.call(request(1)).await.unwrap());
                    }
                })
            });
        }
        "layer_one" | "layer_10k" => {
            let keys = if variant == "layer_10k" { 10_000 } else { 1 };
            let mut s = layer().layer(service_fn(ok));
            measured(|| {
                rt.block_on(async {
                    for i in 0..n {
                        black_box(s.call(request((i % keys) as u32)).await.unwrap());
                    }
                })
            });
        }
        "clock" => {
            // The default clock as the local backend reads it: the raw
            // counter, scaled to nanoseconds since an epoch.
            let clock = quanta::Clock::new();
            let start = clock.raw();
            measured(|| {
                for _ in 0..n {
                    black_box(clock.delta_as_nanos(start, clock.raw()));
                }
            });
        }
        "clock_tokio" | "clock_std" => {
            // `Clock::Tokio`: tokio's `Instant::now` and the nanoseconds
            // since an epoch; `clock_std` is what tokio's `now` is in a
            // build without `test-util`.
            let epoch = std::time::Instant::now();
            let tokio = variant == "clock_tokio";
            measured(|| {
                for _ in 0..n {
                    let now = if tokio {
                        tokio::time::Instant::now().into_std()
                    } else {
                        std::time::Instant::now()
                    };
                    let elapsed = now.saturating_duration_since(epoch);
                    black_box(
                        elapsed.as_secs() * 1_000_000_000 + u64::from(elapsed.subsec_nanos()),
                    );
                }
            });
        }
        other => panic!("unknown RATE_LIMIT_PROFILE variant {other}"),
    }
}

/// The part of a profile run that is counted.
#[inline(never)]
fn measured<R>(run: impl FnOnce() -> R) -> R {
    let started = std::time::Instant::now();
    let result = black_box(run());
    eprintln!("measured part: {:?}", started.elapsed());
    result
}

criterion_group!(benches, bench, bench_redis);

fn main() {
    if let Ok(spec) = std::env::var("RATE_LIMIT_PROFILE") {
        profile(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
