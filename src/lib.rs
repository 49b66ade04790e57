//! # meshgate
//!
//! Composable [`tower`](https://docs.rs/tower) middleware that gives an
//! axum or hyper service, in-process, what an API gateway or a service-mesh
//! sidecar gives it over an extra network hop.
//!
//! Every capability is a tower `Layer`, usable on its own in any stack.
//! Layers that refuse a request answer with an HTTP response carrying an
//! RFC 9457 problem document and a typed [`Rejection`]
//! extension, never with a service error, so stacks drop into axum unchanged.
//!
//! | module | what it does | feature |
//! | --- | --- | --- |
//! | [`timeout`] | per-request budget, 504 problem, deadline propagation | `timeout` |
//! | [`circuit_breaker`] | closed / open / half-open, per key, 503 with `Retry-After` | `circuit-breaker` |
//! | [`load_balancer`] | endpoints (static, DNS, run-time updates), round robin, smooth WRR, random, P2C least-request and peak-EWMA, consistent hashing; active health checks, outlier ejection | `load-balancer` |
//! | [`retry`] | retries: Istio `retryOn` conditions, jittered backoff, `Retry-After`, retry budget, body replay | `retry` |
//! | [`routing`] | host, path (`matchit`), method, header, query routes; rewrites; weighted, sticky splits; 404/405 problems | `routing` |
//! | [`auth`] | API keys of consumers (SHA-256 digests, constant-time compare), JWT with algorithm-bound keys and JWKS refresh (HTTPS with `tls`), claims to headers, JWT-or-key, Istio-style ALLOW/DENY policies (consumers, groups, subjects, roles, scopes, peers, methods, paths, headers, claims) | `auth` |
//! | [`rate_limit`] | keyed multi-quota GCRA limits (all or none), tiers, route overrides, trusted-proxy client IP, load shedding, 429 with `Retry-After` and IETF `RateLimit` headers, bounded keys | `rate-limit` |
//! | [`observe`] | request id, W3C trace context (and B3) propagation; request metrics (`metrics`), access log | `observe`, `metrics` |
//! | [`proxy`] | streaming reverse proxy on a pooled client: hop-by-hop, `X-Forwarded-*`/`Forwarded`, `Via`, WebSocket tunnels, failures as 502/504 | `proxy` |
//! | [`config`] | the YAML gateway config: typed model, validated at load with field paths | `config` |
//! | [`gateway`] | the gateway assembly: config → per-route stacks, HTTP/1.1 + h2c server with limits and graceful shutdown, admin endpoints | `gateway` |
//! | [`sidecar`] | the sidecar assembly: inbound mTLS (STRICT / PERMISSIVE) with SPIFFE peer identity and authorization by principal, outbound by `Host` with timeout, retry, breaker, balancing and outlier ejection originating mTLS, per-direction metrics, admin endpoints | `sidecar` |
//! | [`cache`] | RFC 9111 shared response cache on moka: freshness, `Vary`, revalidation, coalescing, stale-while-revalidate / stale-if-error, byte ranges from stored responses, `Surrogate-Control`, invalidation and purge | `cache` |
//! | [`tls`] | rustls (aws-lc-rs): `https` upstreams with ALPN h2 for the proxy, TLS listeners with ALPN and mTLS for the server, `PeerCertificate`; rotating `TlsMaterial` (files, reload, watcher), SPIFFE secure naming for the proxy, permissive listeners | `tls` |
//! | [`limit`] | request body limit: 413 problem+json, bodies never buffered | `limit` |
//! | [`fault`] | Istio-style fault injection: delay or abort (problem+json) a seeded share of requests, optionally only with a header | `fault` |
//! | [`ip_restriction`] | client IP allow / deny lists by CIDR (`net::IpNet`), trusted-proxy aware (`net::TrustedProxies`), 403 problem | `ip-restriction` |
//! | [`transform`] | request / response header and request query remove, rename, set, add with templates (`${request_id}`, `${client_ip}`, `${route}`, `${consumer}`, `${claim.*}`, `${header.*}`, `${query.*}`); JSON body fields with a size cap; gzip / brotli compression (tower-http) | `transform` |
//! | [`cors`] | CORS: tower-http's `CorsLayer`, built from the config's `cors` section with checks instead of request-time panics | `cors` |
//! | [`aggregate`] | BFF fan-out: parallel sub-requests with per-call timeout, deadline, required / optional policy, JSON merged under keys, size cap, bounded concurrency | `aggregate` |
//! | [`error`] | `Rejection` extension and problem+json responses | always |
//! | [`classify`] | one outcome classification for retry, breaker, metrics | always |
//! | [`body`] | the boxed `Body` and layers' `ResponseBody` | always |
//! | [`net`] | `IpNet` (CIDR), `TrustedProxies`: the client IP behind trusted proxies (right-most untrusted `X-Forwarded-For` / `Forwarded` entry), `ClientIp` extension | always |
//! | [`identity`] | the `ConsumerIdentity`, `Subject` and `RouteName` extensions auth and routing insert and the rate limiter reads | always |
//! | [`peer`] | the `PeerAddr` and `PeerCertificate` extensions: the connection's remote address and verified client certificate; `SpiffeId` | always |
//!
//! ## A stack
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use meshgate::{observe::{RequestIdLayer, TraceContextLayer}, timeout::TimeoutLayer};
//! use tower::ServiceBuilder;
//!
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(RequestIdLayer::new())
//!             .layer(TraceContextLayer::new())
//!             .layer(TimeoutLayer::new(Duration::from_secs(5))),
//!     );
//! # let _ = app;
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The unit tests run on tokio's paused clock.
#[cfg(all(test, not(feature = "test-util")))]
compile_error!(
    "meshgate's tests need the `test-util` feature (tokio's paused clock): \
     run `./scripts/test`, or `cargo test --all-features`"
);

#[cfg(feature = "aggregate")]
pub mod aggregate;
#[cfg(feature = "auth")]
pub mod auth;
pub mod body;
#[cfg(feature = "cache")]
pub mod cache;
#[cfg(feature = "circuit-breaker")]
pub mod circuit_breaker;
pub mod classify;
#[cfg(feature = "config")]
pub mod config;
#[cfg(feature = "cors")]
pub mod cors;
#[cfg(any(feature = "cache", feature = "rate-limit"))]
mod digits;
pub mod error;
#[cfg(feature = "fault")]
pub mod fault;
#[cfg(any(feature = "auth", feature = "ip-restriction", feature = "limit"))]
mod future;
#[cfg(feature = "gateway")]
pub mod gateway;
pub mod identity;
#[cfg(feature = "ip-restriction")]
pub mod ip_restriction;
#[cfg(feature = "limit")]
pub mod limit;
#[cfg(feature = "load-balancer")]
pub mod load_balancer;
pub mod net;
#[cfg(feature = "observe")]
pub mod observe;
pub mod peer;
#[cfg(any(feature = "auth", feature = "routing"))]
mod percent;
#[cfg(any(feature = "auth", feature = "cache"))]
mod prehashed;
#[cfg(feature = "proxy")]
pub mod proxy;
#[cfg(feature = "rate-limit")]
pub mod rate_limit;
#[cfg(feature = "retry")]
pub mod retry;
#[cfg(feature = "routing")]
pub mod routing;
#[cfg(feature = "sidecar")]
pub mod sidecar;
#[cfg(feature = "timeout")]
pub mod timeout;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "transform")]
pub mod transform;

pub use body::{Body, ResponseBody};
pub use error::{Problem, Rejection, RejectionKind};

/// A boxed error, as tower and hyper use.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
