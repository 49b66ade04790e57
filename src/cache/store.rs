//! The shared store: a moka future cache of responses, bounded by bytes and
//! entries, and the table of requests in flight for coalescing.
//!
//! Entries are keyed by a 64-bit keyed hash (foldhash with a random seed
//! per store) of the primary key, assembled from the request's URI parts
//! on the stack; each [`Variants`] keeps the full key, and a lookup
//! confirms it, so a collision is a miss, never a wrong answer.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use moka::future::Cache as Moka;
use moka::ops::compute::Op;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::freshness::Directives;
use super::layer::Config;
use super::service::X_CACHE;
use crate::prehashed::Prehashed;

/// One stored response (one variant of a URI).
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) status: StatusCode,
    /// The headers served, with slots for `Age` and `X-Cache` (so that
    /// setting them on a clone replaces in place instead of growing it).
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// When it was received (tokio time).
    pub(crate) stored_at: Instant,
    pub(crate) lifetime: Duration,
    pub(crate) initial_age: Duration,
    /// Until when the entry is fresh (`stored_at + lifetime - initial_age`),
    /// so a hit compares instants instead of computing an age; `None` when
    /// it never is (or that instant is not representable).
    pub(crate) fresh_until: Option<Instant>,
    pub(crate) directives: Directives,
    /// Whether the stored headers carry `ETag` or `Last-Modified`.
    pub(crate) validator: bool,
    /// The origin's `Surrogate-Control` lines: never served, kept so that a
    /// `304` without one is judged as the stored response was.
    pub(crate) surrogate_control: Vec<HeaderValue>,
    /// The selecting request headers (the origin's `Vary` and the
    /// configured `vary_by`) and their normalised values.
    pub(crate) vary: Vec<(HeaderName, Option<Box<[u8]>>)>,
    /// What the entry weighs in the store (see [`weigh`](Self::weigh)).
    pub(crate) size: usize,
}

impl Entry {
    /// The entry's current age (RFC 9111 §4.2.3) at `now`.
    pub(crate) fn age(&self, now: Instant) -> Duration {
        self.initial_age
            .saturating_add(now.saturating_duration_since(self.stored_at))
    }

    /// Whether the stored response's selecting headers match `request`.
    #[inline]
    pub(crate) fn matches(&self, request: &HeaderMap) -> bool {
        self.vary
            .iter()
            .all(|(name, value)| normalised_eq(name, request, value.as_deref()))
    }

    /// Whether the entry is fresh at `now` (its age is below its lifetime).
    #[inline]
    pub(crate) fn is_fresh(&self, now: Instant) -> bool {
        self.fresh_until.is_some_and(|until| now < until)
    }

    /// Completes an entry once its body is known: `Content-Length`, the
    /// served headers laid out for cheap copies (see
    /// [`served_headers`](Self::served_headers)) and the weight.
    pub(crate) fn seal(&mut self, body: Bytes) {
        self.headers
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        self.body = body;
        // Room for `Age`, `X-Cache` and a range answer's `Content-Range`:
        // a copy set up for a range hit does not grow (rehash) the map.
        let mut headers = HeaderMap::with_capacity(self.headers.keys_len() + 3);
        headers.insert(http::header::AGE, HeaderValue::from_static("0"));
        headers.insert(X_CACHE, HeaderValue::from_static("HIT"));
        for (name, value) in &self.headers {
            if name != http::header::AGE && name != X_CACHE {
                headers.append(name, value.clone());
            }
        }
        self.headers = headers;
        self.weigh();
    }

    /// A copy of the stored headers with `age` and `status` (`X-Cache`)
    /// set. The copy is a clone (no hashing, exactly sized), and the two
    /// values are set in place: [`seal`](Self::seal) put their slots first.
    pub(crate) fn served_headers(&self, age: HeaderValue, status: HeaderValue) -> HeaderMap {
        let mut headers = self.headers.clone();
        let mut slots = headers.iter_mut();
        match (slots.next(), slots.next()) {
            (Some((first, age_slot)), Some((second, status_slot)))
                if *first == http::header::AGE && *second == X_CACHE =>
            {
                *age_slot = age;
                *status_slot = status;
            }
            // Only an unsealed entry lacks them; it is still served right.
            _ => {
                headers.insert(http::header::AGE, age);
                headers.insert(X_CACHE, status);
            }
        }
        headers
    }

    /// Sets `size`, what the entry weighs in the store: body, headers,
    /// selecting values and a fixed overhead.
    pub(crate) fn weigh(&mut self) {
        let vary: usize = self
            .vary
            .iter()
            .map(|(name, value)| name.as_str().len() + value.as_ref().map_or(0, |v| v.len()))
            .sum();
        let surrogate: usize = self.surrogate_control.iter().map(HeaderValue::len).sum();
        self.size = entry_size(&self.headers, &self.body) + vary + surrogate;
    }

    /// Whether it carries a validator for conditional requests.
    #[inline]
    pub(crate) fn has_validator(&self) -> bool {
        self.validator
    }
}

/// All stored variants of one URI, most recent first. Replaced as a whole
/// (copy on write) so readers never lock.
#[derive(Debug)]
pub(crate) struct Variants {
    /// The primary key (see [`Key`]), to confirm a lookup by hash.
    pub(crate) key: Box<str>,
    pub(crate) entries: Vec<Arc<Entry>>,
    weight: u32,
}

impl Variants {
    #[inline]
    pub(crate) fn select(&self, request: &HeaderMap) -> Option<&Arc<Entry>> {
        self.entries.iter().find(|e| e.matches(request))
    }
}

/// Whether the header is one whose members are compared lowercased.
fn lowercased(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "accept" | "accept-encoding" | "accept-language" | "accept-charset"
    )
}

/// The list members of every `name` field line, trimmed, empty ones left
/// out (RFC 9110 §5.6.1).
fn members<'a>(name: &HeaderName, headers: &'a HeaderMap) -> impl Iterator<Item = &'a [u8]> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|member| !member.is_empty())
}

/// The value of the selecting header `name` in `headers`, normalised
/// (RFC 9111 §4.1): every field line joined, list members trimmed, and the
/// content-negotiation headers lowercased. `None` when absent.
pub(crate) fn normalise(name: &HeaderName, headers: &HeaderMap) -> Option<Box<[u8]>> {
    if !headers.contains_key(name) {
        return None;
    }
    let lower = lowercased(name);
    let mut out = Vec::new();
    for member in members(name, headers) {
        if !out.is_empty() {
            out.push(b',');
        }
        let start = out.len();
        out.extend_from_slice(member);
        if lower {
            out[start..].make_ascii_lowercase();
        }
    }
    Some(out.into_boxed_slice())
}

/// Whether `normalise(name, headers)` equals `stored`, without building it
/// (the lookup path does not allocate).
pub(crate) fn normalised_eq(name: &HeaderName, headers: &HeaderMap, stored: Option<&[u8]>) -> bool {
    let Some(stored) = stored else {
        return !headers.contains_key(name);
    };
    if !headers.contains_key(name) {
        return false;
    }
    let mut request = members(name, headers);
    if stored.is_empty() {
        return request.next().is_none();
    }
    let lower = lowercased(name);
    // Members never contain a comma, so the stored value splits exactly.
    let mut stored = stored.split(|&b| b == b',');
    loop {
        match (stored.next(), request.next()) {
            (None, None) => return true,
            (Some(s), Some(r)) if lower && s.eq_ignore_ascii_case(r) => {}
            (Some(s), Some(r)) if !lower && s == r => {}
            _ => return false,
        }
    }
}

/// The primary cache key of a request, borrowed from its URI and headers:
/// `scheme://authority/path?query`, the authority from the URI or else the
/// `Host` header (lowercased), `http` without a scheme; only the path and
/// query when no authority is known. Both GET and HEAD use it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key<'a> {
    scheme: &'a str,
    authority: Option<&'a str>,
    path: &'a str,
}

impl<'a> Key<'a> {
    #[inline]
    pub(crate) fn new(uri: &'a Uri, headers: &'a HeaderMap) -> Self {
        Key {
            scheme: uri.scheme_str().unwrap_or("http"),
            authority: uri
                .authority()
                .map(|a| a.as_str())
                .or_else(|| headers.get(HOST).and_then(|h| h.to_str().ok())),
            path: uri.path_and_query().map_or("/", |p| p.as_str()),
        }
    }

    /// The key as a string, as [`CacheHandle::key`](super::CacheHandle::key)
    /// and the purge calls see it.
    pub(crate) fn to_key_string(self) -> String {
        match self.authority {
            Some(authority) => {
                let mut key = String::with_capacity(
                    self.scheme.len() + 3 + authority.len() + self.path.len(),
                );
                key.push_str(self.scheme);
                key.push_str("://");
                let host_at = key.len();
                key.push_str(authority);
                key[host_at..].make_ascii_lowercase();
                key.push_str(self.path);
                key
            }
            None => self.path.to_owned(),
        }
    }

    /// Writes the bytes of [`to_key_string`](Self::to_key_string) into
    /// `buf` and returns their length, or `None` when they do not fit.
    fn write_into(self, buf: &mut [u8]) -> Option<usize> {
        let path = self.path.as_bytes();
        let Some(authority) = self.authority else {
            buf.get_mut(..path.len())?.copy_from_slice(path);
            return Some(path.len());
        };
        let (scheme, authority) = (self.scheme.as_bytes(), authority.as_bytes());
        let host_at = scheme.len() + 3;
        let path_at = host_at + authority.len();
        let len = path_at + path.len();
        let buf = buf.get_mut(..len)?;
        buf[..scheme.len()].copy_from_slice(scheme);
        buf[scheme.len()..host_at].copy_from_slice(b"://");
        buf[host_at..path_at].copy_from_slice(authority);
        buf[host_at..path_at].make_ascii_lowercase();
        buf[path_at..].copy_from_slice(path);
        Some(len)
    }
}

/// Keys up to this long are assembled on the stack; longer ones (rare) are
/// built on the heap.
pub(crate) const INLINE_KEY: usize = 256;

/// A request's primary key as looked up in a [`Store`]: its bytes (as
/// [`Key::to_key_string`] writes them) and their hash.
#[derive(Debug)]
pub(crate) struct Probe<'a> {
    /// The hash the key is stored under.
    pub(crate) hash: u64,
    bytes: Cow<'a, [u8]>,
}

impl Probe<'_> {
    /// Whether `stored` (a key string) is the probed key.
    #[inline]
    fn is(&self, stored: &str) -> bool {
        stored.as_bytes() == &*self.bytes
    }
}

/// What a miss does about others asking for the same key at once.
pub(crate) enum Flight {
    /// This request goes upstream; the others wait for the guard to drop.
    Leader(FlightGuard),
    /// Another request is upstream for the key; wait for it.
    Follower(Arc<Landing>),
    /// The in-flight table is full: go upstream alone.
    Alone,
}

/// Held by the request that is upstream for a key; waiters wake when it
/// drops (after the entry was stored, or on failure/cancellation).
pub(crate) struct FlightGuard {
    store: Arc<Store>,
    key: u64,
    landing: Arc<Landing>,
}

/// How the followers of a flight learn that it is over: one flag and one
/// `Notify` (a `watch` channel would do, but costs eight `Notify`s to
/// create and to wake on every miss).
#[derive(Debug, Default)]
pub(crate) struct Landing {
    done: AtomicBool,
    notify: Notify,
}

impl Landing {
    /// Returns once the flight is over (at once if it already is).
    pub(crate) async fn wait(&self) {
        let mut notified = std::pin::pin!(self.notify.notified());
        // Registered before the flag is read, so a landing in between
        // still wakes it.
        notified.as_mut().enable();
        if self.done.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }

    fn land(&self) {
        self.done.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
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
            .is_some_and(|landing| Arc::ptr_eq(landing, &self.landing))
        {
            flights.remove(&self.key);
        }
        drop(flights);
        self.landing.land();
    }
}

/// The shared state of a [`CacheLayer`](super::CacheLayer).
pub(crate) struct Store {
    pub(crate) config: Config,
    /// Keyed (a random seed per store), so that colliding URIs, which
    /// would evict each other, cannot be chosen from outside.
    hasher: foldhash::quality::RandomState,
    pub(crate) entries: Moka<u64, Arc<Variants>, BuildHasherDefault<Prehashed>>,
    /// Coalescing: keyed by [`flight_key`](Store::flight_key); a collision
    /// only makes a request wait for another key's fetch, then look again.
    flights: Mutex<HashMap<u64, Arc<Landing>, BuildHasherDefault<Prehashed>>>,
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
            .weigher(move |_: &u64, value: &Arc<Variants>| {
                value
                    .weight
                    .saturating_add(u32::try_from(value.key.len()).unwrap_or(u32::MAX))
                    .max(floor)
            })
            .support_invalidation_closures()
            .build_with_hasher(BuildHasherDefault::default());
        Store {
            config,
            hasher: foldhash::quality::RandomState::default(),
            entries,
            flights: Mutex::new(HashMap::default()),
        }
    }

    /// The key, hashed, for [`get`](Self::get); its bytes are assembled
    /// in `buf` when they fit.
    pub(crate) fn probe<'b>(&self, key: Key<'_>, buf: &'b mut [u8; INLINE_KEY]) -> Probe<'b> {
        let bytes = match key.write_into(buf) {
            Some(len) => Cow::Borrowed(&buf[..len]),
            None => Cow::Owned(key.to_key_string().into_bytes()),
        };
        Probe {
            hash: self.hash_bytes(&bytes),
            bytes,
        }
    }

    /// The hash of a key string (as [`Key::to_key_string`] writes it).
    pub(crate) fn hash_str(&self, key: &str) -> u64 {
        self.hash_bytes(key.as_bytes())
    }

    /// The hash of a key's bytes, always written whole: the hasher is not
    /// streaming (other chunks of the same bytes hash differently).
    fn hash_bytes(&self, key: &[u8]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(key);
        hasher.finish()
    }

    /// The coalescing key of a request: its primary key and the configured
    /// `vary_by` values.
    pub(crate) fn flight_key(&self, hash: u64, headers: &HeaderMap) -> u64 {
        if self.config.vary_by.is_empty() {
            return hash;
        }
        let mut hasher = self.hasher.build_hasher();
        hasher.write_u64(hash);
        for name in &self.config.vary_by {
            match normalise(name, headers) {
                Some(value) => {
                    hasher.write_u8(1);
                    hasher.write_usize(value.len());
                    hasher.write(&value);
                }
                None => hasher.write_u8(0),
            }
        }
        hasher.finish()
    }

    /// The variants stored for the probed key.
    pub(crate) async fn get(&self, probe: &Probe<'_>) -> Option<Arc<Variants>> {
        self.entries
            .get(&probe.hash)
            .await
            .filter(|v| probe.is(&v.key))
    }

    /// [`get`](Self::get) when the store answers without waiting (moka's
    /// reads do not block, so it nearly always does); `None` when it would
    /// wait.
    pub(crate) fn get_now(&self, probe: &Probe<'_>) -> Option<Option<Arc<Variants>>> {
        let lookup = std::pin::pin!(self.entries.get(&probe.hash));
        match lookup.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(variants) => Some(variants.filter(|v| probe.is(&v.key))),
            Poll::Pending => None,
        }
    }

    /// Stores `entry` under `key`, replacing the variant it matches and
    /// keeping at most `max_variants`. A different key that shares the
    /// hash is replaced.
    pub(crate) async fn insert(&self, key: &str, entry: Arc<Entry>) {
        let max_variants = self.config.max_variants;
        let hash = self.hash_str(key);
        self.entries
            .entry(hash)
            .and_compute_with(|current| {
                let mut entries = Vec::with_capacity(max_variants.min(8));
                entries.push(Arc::clone(&entry));
                if let Some(current) = current.filter(|c| &*c.value().key == key) {
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
                std::future::ready(Op::Put(Arc::new(Variants {
                    key: Box::from(key),
                    entries,
                    weight,
                })))
            })
            .await;
    }

    /// Removes every variant of `key` (a key string).
    pub(crate) async fn remove(&self, key: &str) {
        self.entries.invalidate(&self.hash_str(key)).await;
    }

    /// Joins the flight for `key` (a [`flight_key`](Self::flight_key)).
    pub(crate) fn join(self: &Arc<Self>, key: u64) -> Flight {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(landing) = flights.get(&key) {
            return Flight::Follower(Arc::clone(landing));
        }
        if flights.len() >= self.config.max_in_flight {
            return Flight::Alone;
        }
        let landing = Arc::new(Landing::default());
        flights.insert(key, Arc::clone(&landing));
        Flight::Leader(FlightGuard {
            store: Arc::clone(self),
            key,
            landing,
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

    fn key_string(uri: &Uri, headers: &HeaderMap) -> String {
        Key::new(uri, headers).to_key_string()
    }

    #[test]
    fn keys_and_normalisation() {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("Example.COM"));
        assert_eq!(
            key_string(&Uri::from_static("/a?b=1"), &h),
            "http://example.com/a?b=1"
        );
        assert_eq!(
            key_string(&Uri::from_static("https://x.test/a"), &h),
            "https://x.test/a"
        );
        let name = HeaderName::from_static("accept-encoding");
        h.append(&name, HeaderValue::from_static("GZIP ,  br"));
        h.append(&name, HeaderValue::from_static("zstd"));
        assert_eq!(normalise(&name, &h).as_deref(), Some(&b"gzip,br,zstd"[..]));
        assert_eq!(normalise(&HeaderName::from_static("x-tenant"), &h), None);
        let mut r = HeaderMap::new();
        r.insert("vary", HeaderValue::from_static("Accept-Encoding, x-a"));
        assert_eq!(vary_names(&r).unwrap().len(), 2);
        r.append("vary", HeaderValue::from_static("*"));
        assert!(vary_names(&r).is_none());
    }

    #[test]
    fn normalised_comparison_agrees_with_normalise() {
        let names = [
            HeaderName::from_static("accept-encoding"),
            HeaderName::from_static("x-tenant"),
        ];
        let values: &[&[&'static str]] = &[
            &[],
            &[""],
            &[" , "],
            &["a"],
            &["A"],
            &["a,b"],
            &["a", "b"],
            &["a, b ,"],
            &["a,,b"],
            &["ab"],
            &["a b"],
        ];
        for name in &names {
            for x in values {
                for y in values {
                    let mut hx = HeaderMap::new();
                    for v in *x {
                        hx.append(name, HeaderValue::from_static(v));
                    }
                    let mut hy = HeaderMap::new();
                    for v in *y {
                        hy.append(name, HeaderValue::from_static(v));
                    }
                    let stored = normalise(name, &hx);
                    assert_eq!(
                        normalised_eq(name, &hy, stored.as_deref()),
                        stored == normalise(name, &hy),
                        "{name} {x:?} {y:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_probe_hashes_and_confirms_the_key_string() {
        let store = Store::new(Config::default());
        // Keys that fit the inline buffer and keys that do not.
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("Example.COM"));
        let mut long = HeaderMap::new();
        let long_host = format!("{}.Example.COM", "A".repeat(INLINE_KEY));
        long.insert(HOST, HeaderValue::from_str(&long_host).unwrap());
        let long_path = Uri::try_from(format!("/{}", "p".repeat(INLINE_KEY))).unwrap();
        for uri in [
            Uri::from_static("/a?b=1"),
            Uri::from_static("https://X.test:8443/a/b?c"),
            Uri::from_static("*"),
            long_path,
        ] {
            for headers in [&h, &long, &HeaderMap::new()] {
                let key = Key::new(&uri, headers);
                let string = key.to_key_string();
                let mut buf = [0; INLINE_KEY];
                let probe = store.probe(key, &mut buf);
                assert_eq!(probe.hash, store.hash_str(&string), "{string}");
                assert!(probe.is(&string), "{string}");
                assert!(!probe.is(&format!("{string}x")));
                assert!(!probe.is(&string[..string.len() - 1]));
                assert!(!probe.is(&string.replace('a', "b")) || !string.contains('a'));
            }
        }
        let uri = Uri::from_static("http://A.test/x");
        let mut buf = [0; INLINE_KEY];
        let probe = store.probe(Key::new(&uri, &h), &mut buf);
        assert!(probe.is("http://a.test/x") && !probe.is("https://a.test/x"));
        assert!(!probe.is("http://b.test/x"));
        assert_ne!(probe.hash, store.hash_str("http://b.test/x"));
    }
}
