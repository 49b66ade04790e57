//! The Redis backend: one limit shared by every gateway instance.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use super::headers::HeaderInfo;
use super::key::Key;
use super::layer::{Limiter, RateLimitLayer};
use super::quota::{Gcra, QuotaState, Verdict};
use super::store::{Admission, InFlight};
use crate::body::ResponseBody;
use crate::error::{Rejection, RejectionKind};

/// GCRA over every quota of one key, atomically, on Redis' clock.
///
/// KEYS[1]: the key (a hash, one field per quota: its theoretical arrival
/// time in µs). ARGV: per quota, the emission interval and the capacity in
/// µs. Returns `{allowed, quota index, remaining, reset µs, wait µs}`:
/// when allowed every quota was charged, else none was.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #ARGV / 2
local fields = {}
for i = 1, n do fields[i] = tostring(i) end
local stored = redis.call('HMGET', KEYS[1], unpack(fields))
local tats = {}
local worst, worst_i = 0, 0
for i = 1, n do
  local interval = tonumber(ARGV[2 * i - 1])
  local capacity = tonumber(ARGV[2 * i])
  local tat = tonumber(stored[i]) or now
  if tat < now then tat = now end
  tats[i] = tat
  local ahead = tat + interval - now
  if ahead > capacity and ahead - capacity > worst then
    worst = ahead - capacity
    worst_i = i
  end
end
if worst_i > 0 then
  return {0, worst_i - 1, 0, tats[worst_i] - now, worst}
end
local best_i, best_r, best_t, longest = 0, -1, 0, 0
local update = {}
for i = 1, n do
  local interval = tonumber(ARGV[2 * i - 1])
  local capacity = tonumber(ARGV[2 * i])
  local tat = tats[i] + interval
  local ahead = tat - now
  local remaining = math.floor((capacity - ahead) / interval)
  if best_r < 0 or remaining < best_r or (remaining == best_r and ahead > best_t) then
    best_i, best_r, best_t = i, remaining, ahead
  end
  if ahead > longest then longest = ahead end
  update[2 * i - 1] = fields[i]
  update[2 * i] = string.format('%.0f', tat)
end
redis.call('HSET', KEYS[1], unpack(update))
redis.call('PEXPIRE', KEYS[1], math.ceil(longest / 1000) + 1000)
return {1, best_i - 1, best_r, best_t, 0}
";

/// What a Redis-backed limit does when Redis does not answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnRedisError {
    /// Let the request through, unlimited (counted and logged). The default.
    #[default]
    Allow,
    /// Answer `503` with an [`Overloaded`](RejectionKind::Overloaded) problem.
    Deny,
    /// Check the layer's local limiter instead (same quotas, this instance
    /// only).
    Local,
}

#[cfg(feature = "config")]
impl From<crate::config::OnRedisError> for OnRedisError {
    fn from(value: crate::config::OnRedisError) -> Self {
        match value {
            crate::config::OnRedisError::Allow => Self::Allow,
            crate::config::OnRedisError::Deny => Self::Deny,
            crate::config::OnRedisError::Local => Self::Local,
        }
    }
}

/// A connection to the Redis that holds the shared counters.
///
/// One multiplexed connection, reconnected in the background when lost;
/// clones share it. Each limited request is one `EVALSHA` round trip (the
/// script is loaded on `NOSCRIPT`), bounded by [`timeout`](Self::timeout).
/// Keys are `<prefix>:<quota set>:<key>` hashes expiring once every quota
/// of the key is replenished.
#[derive(Clone)]
pub struct RedisBackend {
    connection: ConnectionManager,
    script: Arc<redis::Script>,
    prefix: Arc<str>,
    timeout: Duration,
    on_error: OnRedisError,
    health: Arc<Health>,
}

#[derive(Debug, Default)]
struct Health {
    errors: AtomicU64,
    down: AtomicBool,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("on_error", &self.on_error)
            .field("errors", &self.errors())
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// A backend for the Redis at `url` (`redis://127.0.0.1:6379/0`). Does
    /// not connect: the first request does, so a gateway starts while
    /// Redis is down (and applies [`on_error`](Self::on_error) meanwhile).
    /// Must be called within a tokio runtime.
    pub fn new(url: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let timeout = Duration::from_millis(100);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        Ok(Self {
            connection: ConnectionManager::new_lazy_with_config(client, config)?,
            script: Arc::new(redis::Script::new(SCRIPT)),
            prefix: Arc::from("meshgate:rl"),
            timeout,
            on_error: OnRedisError::Allow,
            health: Arc::default(),
        })
    }

    /// The prefix of every key, to share one Redis between gateways.
    ///
    /// Default: `meshgate:rl`.
    #[must_use]
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = Arc::from(prefix);
        self
    }

    /// How long one check may take, round trip included.
    ///
    /// Default: 100 ms.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What happens when Redis does not answer.
    ///
    /// Default: [`OnRedisError::Allow`].
    #[must_use]
    pub fn on_error(mut self, on_error: OnRedisError) -> Self {
        self.on_error = on_error;
        self
    }

    /// How many checks Redis failed so far.
    #[must_use]
    pub fn errors(&self) -> u64 {
        self.health.errors.load(Ordering::Relaxed)
    }

    fn redis_key(&self, policy: &str, key: &Key) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + policy.len() + 48);
        out.extend_from_slice(self.prefix.as_bytes());
        out.push(b':');
        out.extend_from_slice(policy.as_bytes());
        out.push(b':');
        match key {
            Key::Global => out.extend_from_slice(b"global"),
            Key::UnknownClient => out.extend_from_slice(b"unknown"),
            Key::Ip(ip) => out.extend_from_slice(format!("ip:{ip}").as_bytes()),
            Key::Text(text) => {
                out.extend_from_slice(b"k:");
                out.extend_from_slice(text.as_bytes());
            }
        }
        out
    }

    async fn check(&self, key: Vec<u8>, quotas: &[Gcra]) -> Result<Verdict, redis::RedisError> {
        let mut invocation = self.script.key(key);
        for quota in quotas {
            let (interval, capacity) = quota.nanos();
            invocation
                .arg((interval / 1000).max(1))
                .arg((capacity / 1000).max(1));
        }
        let mut connection = self.connection.clone();
        let call = invocation.invoke_async::<(u8, usize, u64, u64, u64)>(&mut connection);
        let (allowed, index, remaining, reset_us, wait_us) =
            match tokio::time::timeout(self.timeout, call).await {
                Ok(result) => result?,
                Err(_) => {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "rate-limit check timed out",
                    )));
                }
            };
        let state = QuotaState {
            index,
            remaining,
            reset: reset_us.saturating_mul(1000),
        };
        Ok(if allowed == 1 {
            Verdict::Allowed(Some(state))
        } else {
            Verdict::Refused {
                retry_after: wait_us.saturating_mul(1000),
                state,
            }
        })
    }

    fn failed(&self, error: &redis::RedisError) {
        self.health.errors.fetch_add(1, Ordering::Relaxed);
        if !self.health.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(%error, on_error = ?self.on_error, "rate limit: Redis is unavailable");
        }
    }

    fn succeeded(&self) {
        if self.health.down.load(Ordering::Relaxed)
            && self.health.down.swap(false, Ordering::Relaxed)
        {
            tracing::info!("rate limit: Redis is available again");
        }
    }
}

/// A [`RateLimitLayer`] whose counters live in Redis; made by
/// [`RateLimitLayer::redis`].
///
/// The in-flight bound ([`max_in_flight`](RateLimitLayer::max_in_flight))
/// stays per instance. The services it builds need a `Clone` inner service
/// and answer with a boxed future (the Redis round trip comes before the
/// inner call).
#[derive(Clone, Debug)]
#[must_use]
pub struct RedisRateLimitLayer {
    limiter: Arc<Limiter>,
    backend: RedisBackend,
}

impl RateLimitLayer {
    /// Keeps the counters in Redis, shared by every instance using the
    /// same Redis and prefix, with this layer's keys and quotas.
    pub fn redis(&self, backend: RedisBackend) -> RedisRateLimitLayer {
        RedisRateLimitLayer {
            limiter: self.limiter(),
            backend,
        }
    }
}

impl<S> Layer<S> for RedisRateLimitLayer {
    type Service = RedisRateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RedisRateLimit {
            inner,
            limiter: Arc::clone(&self.limiter),
            backend: self.backend.clone(),
        }
    }
}

/// The service of [`RedisRateLimitLayer`].
#[derive(Clone, Debug)]
pub struct RedisRateLimit<S> {
    inner: S,
    limiter: Arc<Limiter>,
    backend: RedisBackend,
}

/// The response future of [`RedisRateLimit`].
pub type RedisResponseFuture<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

/// In-flight entries use their own quota-set ids, apart from the local
/// fallback's counters.
const IN_FLIGHT_POLICY: u32 = 1 << 31;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RedisRateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = RedisResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let plan = self.limiter.plan(&mut request);
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let limiter = Arc::clone(&self.limiter);
        let backend = self.backend.clone();
        Box::pin(async move {
            let mut inner = inner;
            let Some((policy, key)) = plan else {
                return ResponseFuture::passthrough(inner.call(request)).await;
            };
            let grpc = crate::error::is_grpc(request.headers());
            let quotas = Arc::clone(&limiter.policies[policy as usize]);
            let permit = match limiter.max_in_flight {
                Some(max) => {
                    let local = limiter.store.key(policy | IN_FLIGHT_POLICY, key.clone());
                    match limiter.store.acquire(&local, &[], Some(max)) {
                        Admission::Overloaded => {
                            return ResponseFuture::<S::Future>::overloaded(grpc).await;
                        }
                        _ => Some(InFlight::new(Arc::clone(&limiter.store), local)),
                    }
                }
                None => None,
            };
            if quotas.is_empty() {
                return ResponseFuture::allowed(inner.call(request), None, permit).await;
            }
            let info = |state| HeaderInfo {
                quotas: Arc::clone(&quotas),
                state,
                legacy: limiter.legacy_headers,
            };
            let redis_key = backend.redis_key(&limiter.policy_names[policy as usize], &key);
            let verdict = match backend.check(redis_key, &quotas).await {
                Ok(verdict) => {
                    backend.succeeded();
                    verdict
                }
                Err(error) => {
                    backend.failed(&error);
                    match backend.on_error {
                        OnRedisError::Allow => {
                            return ResponseFuture::allowed(inner.call(request), None, permit)
                                .await;
                        }
                        OnRedisError::Deny => return unavailable(grpc),
                        OnRedisError::Local => {
                            let local = limiter.store.key(policy, key);
                            match limiter.store.acquire(&local, &quotas, None) {
                                Admission::Checked(verdict) => verdict,
                                Admission::Overloaded => return unavailable(grpc),
                            }
                        }
                    }
                }
            };
            match verdict {
                Verdict::Allowed(state) => {
                    ResponseFuture::allowed(inner.call(request), state.map(info), permit).await
                }
                Verdict::Refused { retry_after, state } => {
                    ResponseFuture::<S::Future>::refused(info(state), retry_after, grpc).await
                }
            }
        })
    }
}

fn unavailable<B, E>(grpc: bool) -> Result<Response<ResponseBody<B>>, E> {
    Ok(Rejection::new(RejectionKind::Overloaded)
        .with_detail("the rate limiter is unavailable; retry later")
        .into_layer_response_for(grpc))
}
