//! An aggregate of three immediate in-process services against calling the
//! same three sequentially (each body collected and parsed as JSON, then
//! merged into one object), in the same run.
//!
//! `cargo bench --bench aggregate`

use std::convert::Infallible;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::BodyExt;
use meshgate::Body;
use meshgate::aggregate::{Aggregate, AggregateCall};
use tower::{Service, ServiceExt, service_fn};

async fn backend(request: Request<Body>) -> Result<Response<String>, Infallible> {
    let body = match request.uri().path() {
        "/users/7" => r#"{"id":7,"name":"Ada"}"#,
        "/orders" => r#"[{"id":1},{"id":2}]"#,
        _ => r#"["book","pen"]"#,
    };
    Ok(Response::new(body.to_owned()))
}

const URIS: [(&str, &str); 3] = [
    ("user", "/users/7"),
    ("orders", "/orders?user=7"),
    ("recommendations", "/recommendations"),
];

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    c.bench_function("aggregate/sequential_three", |b| {
        b.to_async(&rt).iter(|| async {
            let mut service = service_fn(backend);
            let mut merged = serde_json::Map::new();
            for (key, uri) in URIS {
                let request = Request::get(uri).body(Body::empty()).unwrap();
                let response = service.ready().await.unwrap().call(request).await.unwrap();
                let bytes = response.into_body().collect().await.unwrap().to_bytes();
                let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                merged.insert(key.to_owned(), value);
            }
            black_box(serde_json::to_vec(&merged).unwrap())
        })
    });
    let aggregate = Aggregate::builder()
        .call(AggregateCall::new("user", "/users/{id}").unwrap())
        .call(AggregateCall::new("orders", "/orders?user={id}").unwrap())
        .call(AggregateCall::new("recommendations", "/recommendations").unwrap())
        .build(service_fn(backend))
        .unwrap();
    c.bench_function("aggregate/parallel_three", |b| {
        b.to_async(&rt).iter(|| {
            let fut = aggregate
                .clone()
                .oneshot(Request::get("/dashboard?id=7").body(()).unwrap());
            async move {
                let response = fut.await.unwrap();
                black_box(response.into_body().collect().await.unwrap().to_bytes())
            }
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
