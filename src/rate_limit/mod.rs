//! Rate limiting: keyed, multi-quota GCRA limits with tiers, trusted
//! client IPs, load shedding and the IETF `RateLimit` headers.
//!
//! [`RateLimitLayer`] counts requests per key — the client IP (default),
//! the authenticated consumer, the JWT subject, a header, the route (the
//! request extensions of [`crate::identity`]), one global key, or a composite ([`KeyBy`]) — against a
//! set of [`Quota`]s, for example 10/s with a burst of 20, 1 000/min and
//! 100 000/day. Every quota is checked and a request is charged to all of
//! them or to none: a refused request costs nothing.
//!
//! * **Allowed** requests reach the inner service; the response gets
//!   `RateLimit-Policy: "minute";q=1000;w=60` and
//!   `RateLimit: "minute";r=998;t=37` (draft-ietf-httpapi-ratelimit-headers,
//!   structured-field syntax) describing the quota with the fewest requests
//!   left: `q` is the quota's limit, `w` its period in seconds, `r` the
//!   requests left now and `t` the seconds until the whole burst is
//!   available again. With a burst above the limit, `r` can exceed `q`.
//!   [`legacy_headers`](RateLimitLayer::legacy_headers) adds
//!   `X-RateLimit-Limit/Remaining/Reset`.
//! * **Refused** requests get `429 Too Many Requests`, a problem+json body,
//!   a [`Rejection`](crate::error::Rejection) of kind
//!   [`RateLimited`](crate::error::RejectionKind::RateLimited), the headers
//!   of the quota that needs the longest wait (`r=0`) and `Retry-After`:
//!   the seconds until every quota allows the request again, rounded up
//!   (gRPC requests get `grpc-status: 8` instead).
//! * **Tiers**: a consumer's
//!   [`tier`](crate::identity::ConsumerIdentity::tier) selects the quota set
//!   given with [`tier`](RateLimitLayer::tier); [`route`](RateLimitLayer::route)
//!   overrides quotas for one route (route beats tier beats default). Exempt
//!   consumers and networks are never limited.
//! * **Load shedding**: with [`max_in_flight`](RateLimitLayer::max_in_flight),
//!   a key with that many requests in flight (until their response head) gets
//!   `503` and an [`Overloaded`](crate::error::RejectionKind::Overloaded)
//!   problem at once, without waiting.
//! * **Without a service**: [`RateLimitLayer::check`] checks and charges one
//!   request against the same counters and returns a [`Decision`], e.g. to
//!   limit messages on a WebSocket.
//!
//! # Client IP
//!
//! [`TrustedProxies`](crate::net::TrustedProxies) finds the client IP (the
//! crate's one [rule](crate::net)): the socket peer
//! ([`PeerAddr`](crate::peer::PeerAddr)) unless the peer is a trusted proxy,
//! then the right-most untrusted `X-Forwarded-For` (or `Forwarded`) entry.
//! Headers from untrusted peers are ignored. The layer inserts the
//! [`ClientIp`](crate::net::ClientIp) it resolved into the request, for
//! inner layers to reuse.
//!
//! # Why not `governor`
//!
//! The local backend is its own GCRA in a sharded map: `governor`'s keyed
//! limiter checks one quota per limiter and has no way to give a cell back,
//! so "all quotas or none" would need check-then-refund across several
//! limiters, with a race between them; its keyed store has no hard bound
//! on keys either. One short shard lock covers the check of every quota of
//! a key.
//!
//! # Clock
//!
//! The local backend reads the time once per check from its [`Clock`]: by
//! default the CPU's time-stamp counter through `quanta` (the clock
//! `governor` uses; a few nanoseconds), which does not see tokio's paused
//! time. Tests that pause and advance tokio's clock select
//! [`Clock::Tokio`] with [`RateLimitLayer::clock`]; the limiter is the
//! same code on either clock. The Redis backend uses Redis' clock.
//!
//! # Sharing and bounds
//!
//! The counters live in the layer: every service it builds and every clone
//! shares them. At most [`max_keys`](RateLimitLayer::max_keys) keys
//! (default 100 000, about 95 to 185 bytes each with up to three quotas) are held, in 32
//! shards (one below 32 keys) each behind its own lock, held for a map
//! look-up and never across an await. Stale keys (fully replenished, nothing in flight; forgetting
//! them loses nothing) are swept every
//! [`sweep_interval`](RateLimitLayer::sweep_interval); a new key in a full
//! shard forgets the key nearest to replenished among a sample of 16
//! (stale ones first), so a flood of new keys never grows memory and can
//! cost a limited key at most one early burst.
//!
//! # Redis backend
//!
//! With the `redis` feature, [`RateLimitLayer::redis`] keeps the counters
//! in Redis, so several gateway instances enforce one combined limit:
//! each limited request is one `EVALSHA` of a Lua GCRA script (loaded on
//! `NOSCRIPT`) that checks and charges every quota of the key atomically,
//! on Redis' clock, and returns what the headers need. Keys are namespaced
//! (`meshgate:rl:<quota set>:<key>`) and expire once replenished. The
//! connection is one multiplexed connection, reconnected in the background,
//! with a 100 ms timeout per check. When Redis does not answer,
//! [`OnRedisError`] says what happens: let requests through (the default;
//! counted in [`RedisBackend::errors`] and logged once per outage), answer
//! `503`, or use the local limiter. The in-flight bound stays per instance.
//!
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use meshgate::rate_limit::{OnRedisError, Quota, RateLimitLayer, RedisBackend};
//!
//! let backend = RedisBackend::new("redis://127.0.0.1:6379/")?.on_error(OnRedisError::Local);
//! let layer = RateLimitLayer::new([Quota::per_minute(1_000)]).redis(backend);
//! # let _ = layer;
//! # Ok(())
//! # }
//! ```
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use meshgate::peer::PeerAddr;
//! use meshgate::rate_limit::{Quota, RateLimitLayer};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = RateLimitLayer::new([Quota::per_second(10).burst(2), Quota::per_minute(100)]);
//! let service = layer.layer(service_fn(|_: Request<()>| async {
//!     Ok::<_, Infallible>(Response::new("hello"))
//! }));
//! let request = || {
//!     let mut request = Request::new(());
//!     request.extensions_mut().insert(PeerAddr("192.0.2.7:50000".parse().unwrap()));
//!     request
//! };
//!
//! let response = service.clone().oneshot(request()).await.unwrap();
//! assert_eq!(response.headers()["ratelimit-policy"], "\"second\";q=10;w=1");
//! assert_eq!(response.headers()["ratelimit"], "\"second\";r=1;t=1");
//! service.clone().oneshot(request()).await.unwrap();
//! let refused = service.oneshot(request()).await.unwrap();
//! assert_eq!(refused.status(), 429);
//! assert_eq!(refused.headers()["retry-after"], "1");
//! # }
//! ```

mod clock;
mod future;
mod headers;
mod key;
mod layer;
mod quota;
mod service;
mod store;

pub use clock::Clock;
pub use future::ResponseFuture;
pub use headers::{RATELIMIT, RATELIMIT_POLICY};
pub use key::KeyBy;
pub use layer::{DEFAULT_MAX_KEYS, DEFAULT_SWEEP_INTERVAL, Decision, RateLimitLayer};
pub use quota::Quota;
pub use service::RateLimit;

#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub use redis::{
    OnRedisError, RedisBackend, RedisRateLimit, RedisRateLimitLayer, RedisResponseFuture,
};

#[cfg(feature = "config")]
mod from_config;
#[cfg(feature = "config")]
pub use from_config::UnsupportedBackend;
