//! The shared store: a moka future cache of responses, bounded by bytes and
//! entries, and the table of requests in flight for coalescing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, HeaderName, StatusCode, Uri};
use moka::future::Cache as Moka;
use moka::ops::compute::Op;
use tokio::sync::watch;
use tokio::time::Instant;

use super::freshness::Directives;
use super::layer::Config;

/// One stored response (one variant of a URI).
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// When it was received (tokio time).
    pub(crate) stored_at: Instant,
    pub(crate) lifetime: Duration,
    pub(crate) initial_age: Duration,
    pub(crate) directives: Directives,
    /// The selecting request headers (the origin's `Vary` and the
    /// configured `vary_by`) and their normalised values.
    pub(crate) vary: Vec<(HeaderName, Option<String>)>,
    /// `Vary: *` was never stored; this is kept for clarity of `matches`.
    pub(crate) size: usize,
}

impl Entry {
    /// The entry's current age (RFC 9111 §4.2.3) at `now`.
    pub(crate) fn age(&self, now: Instant) -> Duration {
        self.initial_age
            .saturating_add(now.saturating_duration_since(self.stored_at))
    }

    /// Whether the stored response's selecting headers match `request`.
    pub(crate) fn matches(&self, request: &HeaderMap) -> bool {
        self.vary
            .iter()
            .all(|(name, value)| normalise(name, request).as_deref() == value.as_deref())
    }

    /// Sets `size`, what the entry weighs in the store: body, headers,
    /// selecting values and a fixed overhead.
    pub(crate) fn weigh(&mut self) {
        let vary: usize = self
            .vary
            .iter()
            .map(|(name, value)| name.as_str().len() + value.as_ref().map_or(0, String::len))
            .sum();
        self.size = entry_size(&self.headers, &self.body) + vary;
    }

    /// Whether it carries a validator for conditional requests.
    pub(crate) fn has_validator(&self) -> bool {
        self.headers.contains_key(http::header::ETAG)
            || self.headers.contains_key(http::header::LAST_MODIFIED)
    }
}

/// All stored variants of one URI, most recent first. Replaced as a whole
/// (copy on write) so readers never lock.
#[derive(Debug, Default)]
pub(crate) struct Variants {
    pub(crate) entries: Vec<Arc<Entry>>,
    weight: u32,
}

impl Variants {
    pub(crate) fn select(&self, request: &HeaderMap) -> Option<&Arc<Entry>> {
        self.entries.iter().find(|e| e.matches(request))
    }
}

/// The value of the selecting header `name` in `headers`, normalised
/// (RFC 9111 §4.1): every field line joined, list members trimmed, and the
/// content-negotiation headers lowercased. `None` when absent.
pub(crate) fn normalise(name: &HeaderName, headers: &HeaderMap) -> Option<String> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let lower = matches!(
        name.as_str(),
        "accept" | "accept-encoding" | "accept-language" | "accept-charset"
    );
    let mut out = String::new();
    for value in values {
        for member in String::from_utf8_lossy(value.as_bytes()).split(',') {
            let member = member.trim();
            if member.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push(',');
            }
            if lower {
                out.push_str(&member.to_ascii_lowercase());
            } else {
                out.push_str(member);
            }
        }
    }
    Some(out)
}

/// The primary cache key of a request: `scheme://authority/path?query`, the
/// authority from the URI or else the `Host` header; only the path and
/// query when neither is known. Both GET and HEAD use it.
pub(crate) fn primary_key(uri: &Uri, headers: &HeaderMap) -> String {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(HOST).and_then(|h| h.to_str().ok()));
    match authority {
        Some(authority) => {
            let scheme = uri.scheme_str().unwrap_or("http");
            let mut key = String::with_capacity(scheme.len() + 3 + authority.len() + path.len());
            key.push_str(scheme);
            key.push_str("://");
            key.extend(authority.chars().map(|c| c.to_ascii_lowercase()));
            key.push_str(path);
            key
        }
        None => path.to_owned(),
    }
}

/// What a miss does about others asking for the same key at once.
pub(crate) enum Flight {
    /// This request goes upstream; the others wait for the guard to drop.
    Leader(FlightGuard),
    /// Another request is upstream for the key; wait for it.
    Follower(watch::Receiver<()>),
    /// The in-flight table is full: go upstream alone.
    Alone,
}

/// Held by the request that is upstream for a key; waiters wake when it
/// drops (after the entry was stored, or on failure/cancellation).
pub(crate) struct FlightGuard {
    store: Arc<Store>,
    key: String,
    _tx: watch::Sender<()>,
    rx: watch::Receiver<()>,
}

impl std::fmt::Debug for FlightGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightGuard")
            .field("key", &self.key)
            .finish()
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut flights = self.store.flights.lock().unwrap_or_else(|e| e.into_inner());
        if flights
            .get(&self.key)
            .is_some_and(|rx| rx.same_channel(&self.rx))
        {
            flights.remove(&self.key);
        }
    }
}

/// The shared state of a [`CacheLayer`](super::CacheLayer).
pub(crate) struct Store {
    pub(crate) config: Config,
    pub(crate) entries: Moka<String, Arc<Variants>>,
    flights: Mutex<HashMap<String, watch::Receiver<()>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("entries", &self.entries.entry_count())
            .field("weighted_size", &self.entries.weighted_size())
            .finish()
    }
}

impl Store {
    pub(crate) fn new(config: Config) -> Self {
        // Every entry weighs at least `max_bytes / max_entries`, so the
        // byte bound also bounds the number of entries.
        let floor = u32::try_from((config.max_bytes / config.max_entries.max(1)).max(1))
            .unwrap_or(u32::MAX);
        let entries = Moka::builder()
            .max_capacity(config.max_bytes)
            .weigher(move |key: &String, value: &Arc<Variants>| {
                value
                    .weight
                    .saturating_add(u32::try_from(key.len()).unwrap_or(u32::MAX))
                    .max(floor)
            })
            .support_invalidation_closures()
            .build();
        Store {
            config,
            entries,
            flights: Mutex::new(HashMap::new()),
        }
    }

    /// The variants stored for `key`.
    pub(crate) async fn get(&self, key: &str) -> Option<Arc<Variants>> {
        self.entries.get(key).await
    }

    /// Stores `entry` under `key`, replacing the variant it matches and
    /// keeping at most `max_variants`.
    pub(crate) async fn insert(&self, key: String, entry: Arc<Entry>) {
        let max_variants = self.config.max_variants;
        self.entries
            .entry(key)
            .and_compute_with(|current| {
                let mut entries = Vec::with_capacity(max_variants.min(8));
                entries.push(Arc::clone(&entry));
                if let Some(current) = current {
                    entries.extend(
                        current
                            .value()
                            .entries
                            .iter()
                            .filter(|e| e.vary != entry.vary)
                            .take(max_variants.saturating_sub(1))
                            .cloned(),
                    );
                }
                let weight = entries.iter().map(|e| e.size).sum::<usize>();
                let weight = u32::try_from(weight).unwrap_or(u32::MAX);
                std::future::ready(Op::Put(Arc::new(Variants { entries, weight })))
            })
            .await;
    }

    /// Removes one variant (after the origin said it is gone or changed
    /// without a storable answer).
    pub(crate) async fn remove(&self, key: &str) {
        self.entries.invalidate(key).await;
    }

    /// Joins the flight for `key`.
    pub(crate) fn join(self: &Arc<Self>, key: &str) -> Flight {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = flights.get(key) {
            return Flight::Follower(rx.clone());
        }
        if flights.len() >= self.config.max_in_flight {
            return Flight::Alone;
        }
        let (tx, rx) = watch::channel(());
        flights.insert(key.to_owned(), rx.clone());
        Flight::Leader(FlightGuard {
            store: Arc::clone(self),
            key: key.to_owned(),
            _tx: tx,
            rx,
        })
    }
}

/// The size of a response: body, headers and a fixed overhead.
fn entry_size(headers: &HeaderMap, body: &Bytes) -> usize {
    let headers: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 32)
        .sum();
    body.len() + headers + 256
}

/// `Vary` names of a response, lowercased; `None` for `Vary: *`.
pub(crate) fn vary_names(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    for value in headers.get_all(http::header::VARY) {
        let value = value.to_str().ok()?;
        for name in value.split(',') {
            let name = name.trim();
            if name == "*" {
                return None;
            }
            if name.is_empty() {
                continue;
            }
            // An unparsable name can never be matched: treat as `*`.
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn keys_and_normalisation() {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("Example.COM"));
        assert_eq!(
            primary_key(&Uri::from_static("/a?b=1"), &h),
            "http://example.com/a?b=1"
        );
        assert_eq!(
            primary_key(&Uri::from_static("https://x.test/a"), &h),
            "https://x.test/a"
        );
        h.append("accept-encoding", HeaderValue::from_static("GZIP ,  br"));
        h.append("accept-encoding", HeaderValue::from_static("zstd"));
        assert_eq!(
            normalise(&HeaderName::from_static("accept-encoding"), &h).as_deref(),
            Some("gzip,br,zstd")
        );
        assert_eq!(normalise(&HeaderName::from_static("x-tenant"), &h), None);
        let mut r = HeaderMap::new();
        r.insert("vary", HeaderValue::from_static("Accept-Encoding, x-a"));
        assert_eq!(vary_names(&r).unwrap().len(), 2);
        r.append("vary", HeaderValue::from_static("*"));
        assert!(vary_names(&r).is_none());
    }
}
