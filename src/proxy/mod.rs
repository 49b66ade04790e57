//! A streaming reverse proxy to HTTP upstreams, on pooled hyper connections.
//!
//! [`Proxy`] is a tower service, `Service<Request<B>>` for any body `B`
//! with `Bytes` data, that answers `Response<`[`Body`](crate::Body)`>` and
//! never fails (`Error = Infallible`).
//!
//! # Sharing and bounds
//!
//! [`ProxyBuilder::build`] creates one connection pool and the validated
//! configuration behind an `Arc`: every clone of the proxy (hyper makes one
//! per connection) shares them, and a proxy built separately has its own
//! pool. The pool speaks HTTP/1.1 by default, h2c with
//! [`http2_prior_knowledge`](ProxyBuilder::http2_prior_knowledge), sets
//! `TCP_NODELAY`, keeps at most
//! [`pool_max_idle_per_host`](ProxyBuilder::pool_max_idle_per_host) idle
//! connections per upstream and drops them after
//! [`pool_idle_timeout`](ProxyBuilder::pool_idle_timeout). Nothing is
//! locked on the request path beyond the pool's own short lock.
//!
//! Cleartext HTTP/1.1 upstreams use the proxy's own pool of
//! `hyper::client::conn::http1` connections, built for a proxy's hot path:
//! a connection goes back to the pool when its response body ends (never
//! mid-message: a body dropped early closes its connection), an idle
//! connection still busy with an exchange is never waited for, a request a
//! reused connection refused before writing it is sent once more on a new
//! connection, and idle connections are closed between 1× and 1.5× the idle
//! timeout. h2c and `https` upstreams use hyper-util's pooled client, which
//! also multiplexes HTTP/2.
//!
//! Request and response bodies stream both ways, frame by frame: nothing
//! is buffered beyond what hyper and the sockets hold, so memory stays
//! bounded for bodies of any size (the tests move 100 MiB each way with
//! 1 to 6 MiB in flight, most of it in kernel socket buffers).
//!
//! # Where requests go
//!
//! * [`Proxy::to`] (or [`ProxyBuilder::upstream`]): every request goes to
//!   that upstream, keeping its path and query. Use this directly behind a
//!   server: clients cannot choose the upstream.
//! * [`Proxy::new`]: the scheme and authority of the absolute request URI
//!   (`http://10.0.0.7:8080/path`), which a load balancer in front sets; a
//!   request whose URI is not absolute is answered 502.
//! * [`ProxyBuilder::fallback_upstream`]: the absolute request URI when
//!   there is one, else the fallback.
//!
//! # TLS to upstreams
//!
//! With the `tls` feature, `https` upstreams are reached over rustls
//! (aws-lc-rs): the server name (SNI) is the URI's host (or
//! [`tls_server_name`](ProxyBuilder::tls_server_name), for endpoints
//! addressed by IP), ALPN offers `h2`
//! and `http/1.1` so an upstream that picks `h2` is spoken to over HTTP/2
//! (one multiplexed connection per upstream) and the others over HTTP/1.1
//! ([`tls_http2`](ProxyBuilder::tls_http2) turns `h2` off, as WebSocket
//! tunnels need). The upstream's certificate is verified against Mozilla's
//! roots, built in, or the roots given to
//! [`tls_roots_pem`](ProxyBuilder::tls_roots_pem) /
//! [`tls_roots`](ProxyBuilder::tls_roots); a client certificate for
//! upstreams that ask for one (mTLS) is set with
//! [`tls_client_identity`](ProxyBuilder::tls_client_identity). The
//! [connect timeout](ProxyBuilder::connect_timeout) covers the TCP connect
//! and the handshake. A failed handshake is answered 502
//! `UpstreamConnect` with the rustls error as the cause.
//!
//! Without the feature only `http` upstreams are supported: an `https`
//! upstream is refused at build time, or answered 502 when it comes from
//! the request.
//!
//! # Headers
//!
//! On the way up and on the way down the proxy removes the hop-by-hop
//! headers of RFC 9110 §7.6.1: `Connection` and every header it names,
//! `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding`,
//! `Upgrade` and `Proxy-Authenticate` / `Proxy-Authorization`. `TE:
//! trailers` is kept for h2c upstreams and gRPC requests, `Upgrade` for the
//! tunnels below. Then, on the request:
//!
//! * `X-Forwarded-For` (the client address, from the
//!   [`PeerAddr`](crate::peer::PeerAddr) the server put in the request
//!   extensions), `X-Forwarded-Proto` ([`client_scheme`](ProxyBuilder::client_scheme))
//!   and `X-Forwarded-Host` (the client's `Host`); on by default.
//! * RFC 7239 `Forwarded: for=192.0.2.7;host=example.com;proto=http`
//!   (`for="[2001:db8::1]"` for IPv6); off by default.
//! * Incoming values of these are replaced by default, or appended to (see
//!   [`IncomingForwarded`] for why and when).
//! * `Via: 1.1 meshgate` is appended, on the response too (the version is
//!   the one the message arrived with; the pseudonym is configurable).
//! * `Host` is the client's by default, or the upstream's authority with
//!   [`HostHeader::Rewrite`]. Over h2c the upstream's authority is sent as
//!   `:authority` and the client's `Host` as a header; an upstream that
//!   insists that they match needs `HostHeader::Rewrite`.
//!
//! All other headers pass untouched: the request id and the trace context
//! (`x-request-id`, `traceparent`, B3) reach the upstream as they came.
//!
//! # Upgrades and WebSocket
//!
//! An HTTP/1.1 request with `Connection: upgrade` and an `Upgrade` header
//! is forwarded with both. When the upstream answers `101 Switching
//! Protocols`, the 101 goes back to the client and a task copies bytes both
//! ways between the two upgraded connections until either side closes.
//! This needs the server's half of the upgrade, which hyper only provides
//! when the connection is served with `.with_upgrades()`
//! (`hyper::server::conn::http1::Builder::serve_connection(..).with_upgrades()`,
//! or hyper-util's `auto::Builder::serve_connection_with_upgrades`; axum's
//! `serve` does it). Without it hyper still hands out the request's
//! `OnUpgrade`, the proxy cannot tell, and the client gets the 101 followed
//! by a closed connection (the upstream's is closed too). A request that
//! carries no `OnUpgrade` at all (called outside a hyper server) is sent
//! on without its `Upgrade` header. Upgrades are not tunnelled to h2c
//! upstreams, nor from HTTP/2 clients (extended CONNECT is refused).
//!
//! # Failures are responses
//!
//! The proxy answers failures with a problem+json response (or a gRPC
//! status for gRPC requests) carrying a [`Rejection`](crate::Rejection)
//! with the cause, which [`classify`](crate::classify) reads:
//!
//! | what happened | status | kind | `Outcome` |
//! | --- | --- | --- | --- |
//! | connect refused, DNS failure, connect timeout | 502 | `UpstreamConnect` | `Failure::Connect` |
//! | TLS handshake failed (unknown issuer, wrong name, no common ALPN protocol), or the upstream refused the client certificate (under TLS 1.3 that alert arrives after the request was written, but the upstream never read it) | 502 | `UpstreamConnect` | `Failure::Connect` |
//! | no response headers within [`response_timeout`](ProxyBuilder::response_timeout) | 504 | `UpstreamTimeout` | `Failure::Timeout` |
//! | connection closed or reset before the response headers | 502 | `UpstreamReset` | `Failure::Reset` |
//! | no upstream for the request, or an `https` one without `tls` | 502 | `UpstreamConnect` | `Failure::Connect` |
//! | the client's request body failed mid-upload | 400 | `BadRequest` | `Refused` |
//! | the request body passed a [`limit`](crate::limit) mid-upload | 413 | `PayloadTooLarge` | `Refused` |
//! | a `CONNECT` request (tunnels are not proxied) | 400 | `BadRequest` | `Refused` |
//!
//! A connection reset after the response headers surfaces as an error of
//! the response body, so the server closes the client's connection instead
//! of ending a truncated response as if it were complete.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use http::Request;
//! use http_body_util::BodyExt;
//! use meshgate::{Body, peer::PeerAddr, proxy::Proxy};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // An upstream that echoes the X-Forwarded-For it receives.
//! let upstream = Router::new().route(
//!     "/hello",
//!     get(|headers: http::HeaderMap| async move {
//!         format!("hello {}", headers["x-forwarded-for"].to_str().unwrap())
//!     }),
//! );
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let addr = listener.local_addr().unwrap();
//! tokio::spawn(async move { axum::serve(listener, upstream).await });
//!
//! let proxy = Proxy::to(format!("http://{addr}")).unwrap();
//! let mut request = Request::get("/hello").header("host", "api.example.com").body(Body::empty()).unwrap();
//! // The server puts the client's address here.
//! request.extensions_mut().insert(PeerAddr("192.0.2.7:51000".parse().unwrap()));
//!
//! let response = proxy.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.headers()["via"], "1.1 meshgate");
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(body, "hello 192.0.2.7");
//! # }
//! ```
//!
//! Behind a server, the proxy needs the client's address and, for
//! WebSocket, the upgrades:
//!
//! ```no_run
//! use hyper::server::conn::http1;
//! use hyper_util::rt::TokioIo;
//! use meshgate::{peer::PeerAddr, proxy::Proxy};
//! use tower::ServiceExt;
//!
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! let proxy = Proxy::to("http://127.0.0.1:8080")?;
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
//! loop {
//!     let (stream, peer) = listener.accept().await?;
//!     let proxy = proxy.clone();
//!     let service = hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
//!         request.extensions_mut().insert(PeerAddr(peer));
//!         proxy.clone().oneshot(request)
//!     });
//!     tokio::spawn(async move {
//!         let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
//!         // Without `with_upgrades`, WebSocket requests are not tunnelled.
//!         let _ = connection.with_upgrades().await;
//!     });
//! }
//! # }
//! ```

mod builder;
mod client;
mod future;
mod headers;
mod pool;
mod service;
mod upgrade;

pub use builder::{BuildError, HostHeader, ProxyBuilder};
pub use future::ResponseFuture;
pub use headers::IncomingForwarded;
pub use service::Proxy;
