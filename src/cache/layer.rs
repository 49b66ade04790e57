use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use tower_layer::Layer;

use super::Cache;
use super::store::{Key, Store};

/// The default name of the cache in `Surrogate-Control` / `Surrogate-Capability`.
const DEFAULT_SURROGATE: &str = "meshgate";

/// The name and `Surrogate-Capability` value of a surrogate called `name`,
/// or `None` when `name` is not a token (RFC 9110 §5.6.2).
fn surrogate(name: &str) -> Option<(Arc<str>, HeaderValue)> {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return None;
    }
    let value = HeaderValue::from_str(&format!("{name}=\"Surrogate/1.0\"")).ok()?;
    Some((Arc::from(name), value))
}

/// The layer's settings; see the builder methods for defaults.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) max_bytes: u64,
    pub(crate) max_entries: u64,
    pub(crate) max_body: usize,
    pub(crate) default_ttl: Option<Duration>,
    pub(crate) vary_by: Vec<HeaderName>,
    pub(crate) stale_grace: Duration,
    pub(crate) coalesce_wait: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) max_variants: usize,
    /// The name `Surrogate-Control` directives may target, and the
    /// `Surrogate-Capability` sent upstream to announce it.
    pub(crate) surrogate: Option<(Arc<str>, HeaderValue)>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_bytes: 64 * 1024 * 1024,
            max_entries: 10_000,
            max_body: 1024 * 1024,
            default_ttl: None,
            vary_by: Vec::new(),
            stale_grace: Duration::ZERO,
            coalesce_wait: Duration::from_secs(5),
            max_in_flight: 4096,
            max_variants: 8,
            surrogate: surrogate(DEFAULT_SURROGATE),
        }
    }
}

/// An RFC 9111 shared response cache in front of a service.
///
/// The store lives in the layer: every service it builds, and every clone of
/// those, shares it (it is created on the first [`layer`](Layer::layer) or
/// [`handle`](CacheLayer::handle) call; a builder method called after that
/// starts a new, empty store). See the [module docs](crate::cache).
#[derive(Clone)]
#[must_use]
pub struct CacheLayer {
    config: Config,
    shared: Arc<OnceLock<Arc<Store>>>,
}

impl std::fmt::Debug for CacheLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheLayer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Default for CacheLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl CacheLayer {
    /// A cache with the defaults.
    pub fn new() -> Self {
        Self {
            config: Config::default(),
            shared: Arc::default(),
        }
    }

    /// The most bytes stored (bodies, headers and keys, weighed
    /// approximately); least recently and least frequently used entries are
    /// evicted past it (moka's TinyLFU). At least 1.
    ///
    /// Default: 64 MiB.
    pub fn max_bytes(self, bytes: u64) -> Self {
        self.configured(|c| c.max_bytes = bytes.max(1))
    }

    /// The most URIs stored (each with up to 8 `Vary` variants). Every
    /// entry weighs at least `max_bytes / max_entries`, which is how the
    /// count is bounded. At least 1.
    ///
    /// Default: 10 000.
    pub fn max_entries(self, entries: u64) -> Self {
        self.configured(|c| c.max_entries = entries.max(1))
    }

    /// The largest body stored. A larger response is streamed to the client
    /// as it arrives and not stored (at most this much is held while it is
    /// not yet known to be larger).
    ///
    /// Default: 1 MiB.
    pub fn max_body(self, bytes: usize) -> Self {
        self.configured(|c| c.max_body = bytes)
    }

    /// Freshness for responses that carry no explicit expiration
    /// (`max-age`, `s-maxage`, `Expires`), with a status cacheable by
    /// default (200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501).
    /// Replaces heuristic freshness. `no-store`, `private`, `no-cache` and
    /// the `Authorization` rules still apply.
    ///
    /// Default: none (RFC 9111 only, with its heuristic freshness from
    /// `Last-Modified`).
    pub fn default_ttl(self, ttl: Duration) -> Self {
        self.configured(|c| c.default_ttl = Some(ttl))
    }

    /// Request headers that make separate entries, on top of the origin's
    /// `Vary`.
    ///
    /// Default: none.
    pub fn vary_by(self, headers: impl IntoIterator<Item = HeaderName>) -> Self {
        let headers: Vec<HeaderName> = headers.into_iter().collect();
        self.configured(|c| c.vary_by = headers)
    }

    /// How long past its freshness a stale entry may still be served while
    /// it is refreshed in the background or when the origin fails, when the
    /// origin's `stale-while-revalidate` / `stale-if-error` give less.
    /// Never for responses with `must-revalidate`, `proxy-revalidate` or
    /// `no-cache`.
    ///
    /// Default: 0 (only what the origin allows).
    pub fn stale_grace(self, grace: Duration) -> Self {
        self.configured(|c| c.stale_grace = grace)
    }

    /// How long a request waits for another request already upstream for
    /// the same key before going upstream itself.
    ///
    /// Default: 5 s.
    pub fn coalesce_wait(self, wait: Duration) -> Self {
        self.configured(|c| c.coalesce_wait = wait)
    }

    /// The most keys with a request in flight tracked for coalescing; past
    /// it, misses go upstream without coalescing. At least 1.
    ///
    /// Default: 4096.
    pub fn max_in_flight(self, n: usize) -> Self {
        self.configured(|c| c.max_in_flight = n.max(1))
    }

    /// This cache's name as a surrogate (Edge Architecture Specification
    /// 1.0): `Surrogate-Control` directives targeted at it
    /// (`max-age=600;name`) replace the untargeted ones, and requests it
    /// sends upstream carry `Surrogate-Capability: name="Surrogate/1.0"`.
    /// `None`, or a name that is not an HTTP token, turns both off
    /// (untargeted `Surrogate-Control` is still read).
    ///
    /// Default: `meshgate`.
    pub fn surrogate_name(self, name: Option<&str>) -> Self {
        let surrogate = name.and_then(surrogate);
        self.configured(|c| c.surrogate = surrogate)
    }

    /// A handle on the shared store, to purge entries or read its size.
    #[must_use]
    pub fn handle(&self) -> CacheHandle {
        CacheHandle {
            store: self.store(),
        }
    }

    fn configured(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config);
        self.shared = Arc::default();
        self
    }

    fn store(&self) -> Arc<Store> {
        Arc::clone(
            self.shared
                .get_or_init(|| Arc::new(Store::new(self.config.clone()))),
        )
    }
}

#[cfg(feature = "config")]
impl From<&crate::config::CachePolicy> for CacheLayer {
    /// A layer with the route's `ttl` (as [`default_ttl`](CacheLayer::default_ttl)),
    /// `vary_by`, `max_body` and `stale_grace`; the store bounds keep their
    /// defaults.
    fn from(policy: &crate::config::CachePolicy) -> Self {
        CacheLayer::new()
            .default_ttl(policy.ttl)
            .vary_by(policy.vary_by.iter().cloned())
            .max_body(policy.max_body.as_usize())
            .stale_grace(policy.stale_grace)
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = Cache<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Cache::new(inner, self.store())
    }
}

/// A handle on a [`CacheLayer`]'s store: purge and size.
#[derive(Clone, Debug)]
pub struct CacheHandle {
    store: Arc<Store>,
}

impl CacheHandle {
    /// The key of a request URI as the cache stores it:
    /// `scheme://authority/path?query` (the authority lowercased; `http`
    /// when the URI has no scheme; the `Host` header when it has no
    /// authority).
    #[must_use]
    pub fn key(uri: &http::Uri, headers: &http::HeaderMap) -> String {
        Key::new(uri, headers).to_key_string()
    }

    /// Removes every variant stored under `key` (see [`key`](Self::key)).
    pub async fn purge(&self, key: &str) {
        self.store.remove(key).await;
    }

    /// Removes every entry whose key starts with `prefix`
    /// (`http://api.example.com/users/`). Done lazily by moka: entries stop
    /// being served at once and are freed on its maintenance.
    pub fn purge_prefix(&self, prefix: &str) {
        let prefix = prefix.to_owned();
        // Fails only when the cache was built without invalidation
        // closures, which `Store::new` always enables.
        let _ = self
            .store
            .entries
            .invalidate_entries_if(move |_, variants| variants.key.starts_with(&prefix));
    }

    /// Removes everything.
    pub fn purge_all(&self) {
        self.store.entries.invalidate_all();
    }

    /// Runs moka's pending maintenance (evictions, invalidations) now, so
    /// the sizes below are exact.
    pub async fn run_pending_tasks(&self) {
        self.store.entries.run_pending_tasks().await;
    }

    /// The number of URIs stored (approximate until
    /// [`run_pending_tasks`](Self::run_pending_tasks)).
    #[must_use]
    pub fn entry_count(&self) -> u64 {
        self.store.entries.entry_count()
    }

    /// The weighed size in bytes (approximate until
    /// [`run_pending_tasks`](Self::run_pending_tasks)).
    #[must_use]
    pub fn weighted_size(&self) -> u64 {
        self.store.entries.weighted_size()
    }
}
