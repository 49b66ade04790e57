//! A small GET over loopback: straight to the upstream, through the `Proxy`
//! service, and end to end through a proxy server, in the same run and with
//! the same pooled client.
//!
//! `cargo bench --bench proxy`
//!
//! * `proxy/direct`: the client calls the upstream.
//! * `proxy/service`: the `Proxy` service calls the upstream (its own
//!   pooled client, plus header work) — the proxy's cost without a hop.
//! * `proxy/end_to_end`: the client calls a hyper server running the
//!   `Proxy`, which calls the upstream — one more loopback hop.

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshgate::Body;
use meshgate::peer::PeerAddr;
use meshgate::proxy::Proxy;
use tokio::net::TcpListener;
use tower::{Service, ServiceExt};

async fn serve<S>(make: impl Fn(SocketAddr) -> S + Send + 'static) -> SocketAddr
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            stream.set_nodelay(true).unwrap();
            let service = make(peer);
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (upstream, front, proxy) = rt.block_on(async {
        let upstream = serve(|_| {
            hyper::service::service_fn(|_: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Body::new(Full::new(Bytes::from_static(
                    b"ok",
                )))))
            })
        })
        .await;
        let proxy = Proxy::to(format!("http://{upstream}")).unwrap();
        let front_proxy = proxy.clone();
        let front = serve(move |peer| {
            let proxy = front_proxy.clone();
            hyper::service::service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(PeerAddr(peer));
                proxy.clone().oneshot(request)
            })
        })
        .await;
        (upstream, front, proxy)
    });

    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let get = |client: Client<_, Empty<Bytes>>, uri: String| async move {
        let response = client.get(uri.parse().unwrap()).await.unwrap();
        assert_eq!(response.status(), 200);
        black_box(response.into_body().collect().await.unwrap().to_bytes())
    };

    let direct = format!("http://{upstream}/small");
    c.bench_function("proxy/direct", |b| {
        b.to_async(&rt).iter(|| get(client.clone(), direct.clone()))
    });

    let mut service = proxy;
    c.bench_function("proxy/service", |b| {
        b.to_async(&rt).iter(|| {
            let request = Request::get("/small")
                .header("host", "bench.example.com")
                .body(Empty::<Bytes>::new())
                .unwrap();
            let response = service.call(request);
            async move {
                let response = response.await.unwrap();
                assert_eq!(response.status(), 200);
                black_box(response.into_body().collect().await.unwrap().to_bytes())
            }
        })
    });

    let through = format!("http://{front}/small");
    c.bench_function("proxy/end_to_end", |b| {
        b.to_async(&rt)
            .iter(|| get(client.clone(), through.clone()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
