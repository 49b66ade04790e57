//! Request metrics and the access log against a bare `service_fn`, in the
//! same run: metrics recorded into a Prometheus recorder, and the access log
//! with no subscriber listening (its cost when filtered out) and with a JSON
//! subscriber writing to a sink.
//!
//! `cargo bench --bench observe`

use std::convert::Infallible;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use meshgate::observe::{AccessLogLayer, MetricsLayer};
use metrics_exporter_prometheus::PrometheusBuilder;
use tower::{Layer, Service, service_fn};

async fn ok(_: Request<()>) -> Result<Response<&'static str>, Infallible> {
    Ok(Response::new("ok"))
}

fn request() -> Request<()> {
    Request::builder()
        .uri("/users/7")
        .header("user-agent", "bench")
        .body(())
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut bare = service_fn(ok);
    c.bench_function("observe/service_fn", |b| {
        b.to_async(&rt).iter(|| {
            let fut = bare.call(request());
            async move { black_box(fut.await.unwrap()) }
        })
    });

    let recorder = PrometheusBuilder::new().build_recorder();
    {
        let _guard = metrics::set_default_local_recorder(&recorder);
        let mut metered = MetricsLayer::for_route("users").layer(service_fn(ok));
        c.bench_function("observe/metrics", |b| {
            b.to_async(&rt).iter(|| {
                let fut = metered.call(request());
                async move { black_box(fut.await.unwrap()) }
            })
        });
    }

    let mut quiet = AccessLogLayer::new().layer(service_fn(ok));
    c.bench_function("observe/access_log_filtered_out", |b| {
        b.to_async(&rt).iter(|| {
            let fut = quiet.call(request());
            async move { black_box(fut.await.unwrap()) }
        })
    });

    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::sink)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut logged = AccessLogLayer::new().layer(service_fn(ok));
    c.bench_function("observe/access_log_json", |b| {
        b.to_async(&rt).iter(|| {
            let fut = logged.call(request());
            async move { black_box(fut.await.unwrap()) }
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
