//! Routing among 1 000 routes (exact and wildcard hosts, exact paths,
//! patterns, prefixes, methods, header regexes), in the same run as its
//! baselines:
//!
//! * `routing/match/*`: [`Router::route_for`], the match alone, against a
//!   bare `matchit` lookup of the same paths;
//! * `routing/call/*`: the full `Service::call` (match, extensions, the boxed
//!   route service) against calling the same `service_fn` directly.
//!
//! Each iteration takes the next request of a fixed mix (exact, pattern,
//! prefix, wildcard host, header regex, 404), so the figure is the mix's mean.
//!
//! `cargo bench --bench routing -- --warm-up-time 1 --measurement-time 3`

use std::convert::Infallible;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request, Response};
use meshgate::routing::{Route, Router};
use tower::{Service, service_fn};

async fn ok(_: Request<()>) -> Result<Response<String>, Infallible> {
    Ok(Response::new(String::new()))
}

/// 1 000 routes: a quarter on any host, half on 20 exact hosts, a quarter
/// on 5 wildcard hosts; a third each exact, pattern and prefix paths.
fn routes() -> Vec<Route<()>> {
    (0..1000)
        .map(|i| {
            let mut route = Route::new(format!("route-{i}"));
            route = match i % 4 {
                0 => route,
                1 | 2 => route.host(format!("svc{}.example.com", i % 20)),
                _ => route.host(format!("*.t{}.example.io", i % 5)),
            };
            route = match (i / 4) % 3 {
                0 => route.path(format!("/api/v{}/r{i}/status", i % 3)),
                1 => route
                    .path(format!("/api/v{}/r{i}/items/{{id}}", i % 3))
                    .methods([Method::GET, Method::PUT]),
                _ => route.path_prefix(format!("/r{i}/static")),
            };
            if i % 10 == 0 {
                route = route.header_regex("x-tenant", "acme|globex");
            }
            route.to(service_fn(ok))
        })
        .collect()
}

/// Host, path and extra headers of one request of the mix.
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The request mix.
const MIX: &[Case] = &[
    ("svc1.example.com", "/api/v1/r1/status", &[]),
    ("svc5.example.com", "/api/v2/r5/items/42", &[]),
    ("svc6.example.com:443", "/r46/static/app.js", &[]),
    ("a.t3.example.io", "/api/v0/r3/status", &[]),
    ("any.test", "/api/v0/r12/status", &[]),
    ("any.test", "/api/v0/r0/status", &[("x-tenant", "acme")]),
    (
        "any.test",
        "/r20/static/x/y/z.css",
        &[("x-tenant", "globex")],
    ),
    ("svc9.example.com", "/nowhere/at/all", &[]),
];

fn request(i: usize) -> Request<()> {
    let (host, path, headers) = MIX[i % MIX.len()];
    let mut builder = Request::get(path).header("host", host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap()
}

fn bench(c: &mut Criterion) {
    let router = Router::builder().routes(routes()).build().unwrap();
    let requests: Vec<Request<()>> = (0..MIX.len()).map(request).collect();
    // Every request but the last finds a route.
    for (i, req) in requests.iter().enumerate() {
        assert_eq!(router.route_for(req).is_some(), i + 1 < MIX.len(), "{i}");
    }

    let mut bare = matchit::Router::new();
    for i in 0..1000 {
        match (i / 4) % 3 {
            0 => bare.insert(format!("/api/v{}/r{i}/status", i % 3), i),
            1 => bare.insert(format!("/api/v{}/r{i}/items/{{id}}", i % 3), i),
            _ => bare.insert(format!("/r{i}/static/{{*rest}}"), i),
        }
        .unwrap();
    }
    let mut next = 0usize;
    c.bench_function("routing/match/matchit_path_only", |b| {
        b.iter(|| {
            next = next.wrapping_add(1);
            let path = requests[next % requests.len()].uri().path();
            black_box(bare.at(black_box(path)).ok().map(|m| *m.value))
        })
    });
    c.bench_function("routing/match/router_1000_routes", |b| {
        b.iter(|| {
            next = next.wrapping_add(1);
            black_box(router.route_for(black_box(&requests[next % requests.len()])))
        })
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut direct = service_fn(ok);
    c.bench_function("routing/call/service_fn", |b| {
        b.to_async(&rt).iter(|| {
            next = next.wrapping_add(1);
            let fut = direct.call(request(next));
            async move { black_box(fut.await.unwrap()) }
        })
    });
    let mut routed = router.clone();
    c.bench_function("routing/call/router_1000_routes", |b| {
        b.to_async(&rt).iter(|| {
            next = next.wrapping_add(1);
            let fut = routed.call(request(next));
            async move { black_box(fut.await.unwrap()) }
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
