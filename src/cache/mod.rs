//! Response caching: an RFC 9111 shared cache in front of a service, with
//! request coalescing, revalidation and stale serving (RFC 5861).
//!
//! [`CacheLayer`] stores `GET` responses in a [`moka`](https://docs.rs/moka)
//! future cache bounded by total bytes and by entry count, and answers later
//! `GET` and `HEAD` requests from it. Every other method passes through
//! untouched, except that a successful unsafe request (`POST`, `PUT`,
//! `DELETE`, `PATCH`, …) invalidates its target URI and a same-origin
//! `Location` / `Content-Location` (RFC 9111 §4.4).
//!
//! # What is stored and for how long
//!
//! Storability and the freshness lifetime follow RFC 9111 for a shared
//! cache, computed with [`http-cache-semantics`](https://docs.rs/http-cache-semantics):
//! `no-store` (request or response), `private`, `Authorization` (§3.5: only
//! with `public`, `s-maxage` or `must-revalidate`), `s-maxage` over
//! `max-age` over `Expires` − `Date`, heuristic freshness from
//! `Last-Modified`. Where that crate is wrong or narrower than RFC 9111 the
//! layer wraps it: directive names are matched case-insensitively, an
//! invalid `Age` (not one non-negative integer) makes a response stale, and
//! any final status other than 206/304 is storable with explicit freshness
//! (unless `must-understand`). Responses with `Set-Cookie` are stored only
//! when `public`, as nginx does (stricter than the RFC).
//! `Surrogate-Control` (as Fastly reads it) is this cache's own policy and
//! wins over `Cache-Control`: its `no-store` keeps a response out; its
//! `max-age` (or `max-age=N+M`, M seconds of `stale-if-error`) replaces
//! what `Cache-Control` (`max-age`, `s-maxage`, `no-cache`, `no-store`) and
//! `Expires` say of freshness and storing, so `Cache-Control: no-store`
//! for browsers and `Surrogate-Control: max-age=600` for the gateway work
//! together; its `stale-while-revalidate` / `stale-if-error` replace those
//! of `Cache-Control`. `Cache-Control: private` still keeps a response out.
//! Directives targeted at this cache's
//! [`surrogate_name`](CacheLayer::surrogate_name) (`max-age=600;meshgate`)
//! replace the untargeted ones, those targeted at another surrogate are
//! ignored, and requests sent upstream announce the name with
//! `Surrogate-Capability: meshgate="Surrogate/1.0"`. The header is never
//! sent downstream. [`default_ttl`](CacheLayer::default_ttl) (the route's
//! `cache.ttl`) gives freshness to responses without explicit expiration.
//! Ages follow §4.2.3 (`Age`, `Date`, response delay) and advance with
//! tokio time. Bodies larger than [`max_body`](CacheLayer::max_body) are
//! streamed to the client and not stored; nothing is ever buffered beyond
//! that limit. Responses with `Vary: *` are never stored; other `Vary`
//! names (and [`vary_by`](CacheLayer::vary_by)) select among up to 8
//! variants per URI, on values normalised (field lines joined, list members
//! trimmed, `Accept*` lowercased).
//!
//! # How a request is answered
//!
//! Request directives `max-age`, `min-fresh`, `max-stale`, `no-cache`
//! (and `Pragma: no-cache`) are honoured; `only-if-cached` with nothing
//! usable gets `504` (problem+json). A fresh entry is served with
//! `X-Cache: HIT` and `Age`, or as `304` when the client's own
//! `If-None-Match` / `If-Modified-Since` matches it. A `HEAD` is answered
//! from a stored `GET` (headers only); a `HEAD` that cannot be is sent to
//! the origin as a `HEAD` and its answer is not stored (a background
//! refresh it triggers is a `GET`).
//!
//! A `GET` with `Range: bytes=…` is answered from a stored `200` (RFC 9110
//! §14): one satisfiable range gets `206` with `Content-Range`, none gets
//! `416` with `Content-Range: bytes */length`, several ranges get the whole
//! `200` (no multipart), and an `If-Range` that does not strongly match
//! the stored `ETag` / `Last-Modified` gets the whole `200`. Stored `200`s
//! carry `Accept-Ranges: bytes`. A range that misses is forwarded as is,
//! not coalesced, and its `206` is not stored (a `200` answer to it is).
//! A stale entry with a
//! validator (`ETag`, `Last-Modified`) is revalidated with a conditional
//! request; a `304` merges its headers into the entry (`X-Cache:
//! REVALIDATED`). Within `stale-while-revalidate` (or the configured
//! [`stale_grace`](CacheLayer::stale_grace)) the stale entry is served
//! (`X-Cache: STALE`) and refreshed once in the background; within
//! `stale-if-error` (or the grace) it stands in for a 5xx or a service
//! error. Responses fetched from the origin carry `X-Cache: MISS`, or
//! `X-Cache: BYPASS` when the request kept them out of the cache (a `206`
//! for a `Range`, a request `no-store`).
//!
//! Concurrent misses for one key are **coalesced**: one goes upstream, the
//! others wait (at most [`coalesce_wait`](CacheLayer::coalesce_wait),
//! default 5 s) for it to be stored, then are served from the cache or go
//! upstream themselves.
//!
//! # Sharing, bounds and bodies
//!
//! The store lives in the layer: every service it builds and every clone of
//! those share it. It holds at most [`max_bytes`](CacheLayer::max_bytes)
//! (default 64 MiB) and [`max_entries`](CacheLayer::max_entries) (default
//! 10 000) URIs; the coalescing table at most
//! [`max_in_flight`](CacheLayer::max_in_flight) keys. Lookups do not lock
//! and do not allocate a key (up to 256 bytes; it is assembled on the
//! stack): the store is keyed by a keyed 64-bit hash of it (foldhash,
//! seeded at random per store), and the full key kept in the entry is
//! compared on every hit, so a collision is a miss, never another URI's
//! response. A hit computes no freshness: the instant an entry stops being
//! fresh is worked out when it is stored. Nothing awaits under a lock. Responses use the crate's boxed
//! [`Body`](crate::Body): a stored body is shared (`Bytes`), a missed one is
//! streamed through while a copy is kept. A [`CacheHandle`] purges by key or
//! prefix.
//!
//! # Conformance
//!
//! `scripts/cache-conformance` runs the HTTP caching test suite
//! (cache-tests.fyi, npm `http-cache-tests`) against this layer in front of
//! the proxy (`examples/cache_proxy.rs`) and against nginx's `proxy_cache`
//! in the same run.
//!
//! # Example
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use http::{Request, Response};
//! use meshgate::{Body, cache::CacheLayer};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = CacheLayer::new().default_ttl(Duration::from_secs(60));
//! let service = layer.layer(service_fn(|_: Request<Body>| async {
//!     Ok::<_, Infallible>(Response::new(Body::from("hello")))
//! }));
//!
//! let get = || Request::get("http://example.com/greeting").body(Body::empty()).unwrap();
//! let first = service.clone().oneshot(get()).await.unwrap();
//! assert_eq!(first.headers()["x-cache"], "MISS");
//! // The body is stored once it has been read to the end.
//! http_body_util::BodyExt::collect(first.into_body()).await.unwrap();
//!
//! let second = service.oneshot(get()).await.unwrap();
//! assert_eq!(second.headers()["x-cache"], "HIT");
//! assert_eq!(second.headers()["age"], "0");
//! # }
//! ```

mod body;
mod freshness;
mod layer;
mod range;
mod service;
mod store;

pub use layer::{CacheHandle, CacheLayer};
pub use service::{Cache, ResponseFuture, X_CACHE};
