//! A JWKS URL: keys fetched over HTTP(S), cached, refreshed in the background.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL};
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::Connect;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use tokio::sync::watch;
use tokio::time::Instant;

use super::key::JwtKey;
use crate::BoxError;
use crate::auth::ConfigError;

/// The most keys kept from one JWKS document; the rest are ignored.
pub const MAX_JWKS_KEYS: usize = 64;
/// The largest JWKS document read, in bytes.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// What a fetch returns: the document and its `Cache-Control: max-age`.
#[derive(Debug, Clone)]
pub struct JwksDocument {
    /// The JWKS JSON.
    pub body: Bytes,
    /// The freshness lifetime the server gave, if any.
    pub max_age: Option<Duration>,
}

type FetchFuture = Pin<Box<dyn Future<Output = Result<JwksDocument, BoxError>> + Send>>;
type Fetcher = Arc<dyn Fn(Uri) -> FetchFuture + Send + Sync>;

#[derive(Debug, Clone, Copy)]
struct Settings {
    refresh_interval: Duration,
    min_refresh_interval: Duration,
    max_refresh_interval: Duration,
    fetch_timeout: Duration,
}

struct State {
    /// When the last fetch started (any cause): unknown-`kid` refreshes wait
    /// `min_refresh_interval` after it.
    last_fetch: Option<Instant>,
    /// The fetch under way; waiters subscribe, and its end drops the sender.
    in_flight: Option<watch::Sender<()>>,
    /// When the background task fetches next, from the last result.
    next_delay: Duration,
}

struct Shared {
    url: Uri,
    fetch: Fetcher,
    settings: Settings,
    keys: RwLock<Arc<[JwtKey]>>,
    state: Mutex<State>,
    fetches: AtomicU64,
    started: AtomicBool,
}

/// The keys of a JWKS URL, fetched over HTTP(S) and kept fresh.
///
/// * [`Jwks::new`] fetches `http://` and, with the `tls` cargo feature,
///   `https://` URLs (rustls with aws-lc-rs, Mozilla's roots);
///   `Jwks::with_roots_pem` (feature `tls`) trusts a private CA instead.
///   Without `tls`, an `https` URL is refused when the `Jwks` is built.
/// * The keys are fetched on first use and then in the background: after
///   the document's `Cache-Control: max-age`, bounded to
///   [`min_refresh_interval`](Self::min_refresh_interval) ..
///   [`max_refresh_interval`](Self::max_refresh_interval), or after
///   [`refresh_interval`](Self::refresh_interval) when it has none.
/// * A token whose `kid` is not in the set triggers a refresh, at most once
///   per `min_refresh_interval`: a flood of random `kid`s costs at most one
///   fetch per interval. Concurrent misses share one fetch.
/// * A failed fetch (error status, timeout, unparsable document, no usable
///   key) keeps the last good set, and is retried after
///   `min_refresh_interval`.
/// * Each JWK is bound to its algorithm ([`JwtKey::from_jwk`]); secret
///   (`oct`) keys in a JWKS are ignored. At most [`MAX_JWKS_KEYS`] keys and
///   [`MAX_JWKS_BYTES`] bytes are read.
///
/// No lock is held across an `.await`: fetches run on their own task and
/// readers clone an `Arc` of the current set. Clones share the cache; the
/// background task stops when the last clone is dropped. It needs a tokio
/// runtime, which it finds on first use.
#[derive(Clone)]
pub struct Jwks {
    shared: Arc<Shared>,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &redacted(&self.shared.url))
            .field("keys", &self.keys().len())
            .field("fetches", &self.fetch_count())
            .finish()
    }
}

/// The URL without its query, which may hold a credential.
fn redacted(url: &Uri) -> String {
    format!(
        "{}://{}{}",
        url.scheme_str().unwrap_or("http"),
        url.authority().map_or("", |a| a.as_str()),
        url.path()
    )
}

impl Jwks {
    /// Keys from `url`, fetched over `http://` or, with the `tls` cargo
    /// feature, `https://` trusting Mozilla's root certificates (the
    /// built-in `webpki-roots` bundle).
    ///
    /// # Errors
    ///
    /// A URL that is not an absolute `http(s)` URL, or an `https` URL in a
    /// build without the `tls` feature (refused here, never at request time).
    pub fn new(url: &str) -> Result<Self, ConfigError> {
        let uri = parse_url(url).map_err(|e| ConfigError::new(format!("JWKS URL: {e}")))?;
        let fetch = default_fetcher(&uri, None).map_err(ConfigError::new)?;
        Ok(Self::from_fetcher(uri, fetch))
    }

    /// Keys from an `https://` (or `http://`) `url`, trusting only the root
    /// certificates of `roots_pem` (a private IdP's CA). Needs the `tls`
    /// cargo feature.
    ///
    /// # Errors
    ///
    /// A URL that is not an absolute `http(s)` URL, or a PEM bundle without
    /// a usable certificate.
    #[cfg(feature = "tls")]
    pub fn with_roots_pem(url: &str, roots_pem: &[u8]) -> Result<Self, ConfigError> {
        let uri = parse_url(url).map_err(|e| ConfigError::new(format!("JWKS URL: {e}")))?;
        let fetch = default_fetcher(&uri, Some(roots_pem)).map_err(ConfigError::new)?;
        Ok(Self::from_fetcher(uri, fetch))
    }

    /// Keys from `url`, fetched with `client` (for instance one with a
    /// connector of your own).
    pub fn with_client<C>(url: Uri, client: Client<C, Empty<Bytes>>) -> Self
    where
        C: Connect + Clone + Send + Sync + 'static,
    {
        Self::from_fetcher(url, client_fetcher(client))
    }

    /// Keys fetched by a function of the URL (tests, or a transport of
    /// your own).
    pub fn with_fetcher<F, Fut>(url: Uri, fetch: F) -> Self
    where
        F: Fn(Uri) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<JwksDocument, BoxError>> + Send + 'static,
    {
        Self::from_fetcher(
            url,
            Arc::new(move |uri| Box::pin(fetch(uri)) as FetchFuture),
        )
    }

    fn from_fetcher(url: Uri, fetch: Fetcher) -> Self {
        let settings = Settings {
            refresh_interval: Duration::from_secs(300),
            min_refresh_interval: Duration::from_secs(30),
            max_refresh_interval: Duration::from_secs(86_400),
            fetch_timeout: Duration::from_secs(5),
        };
        Self::build(url, fetch, settings)
    }

    fn build(url: Uri, fetch: Fetcher, settings: Settings) -> Self {
        Jwks {
            shared: Arc::new(Shared {
                url,
                fetch,
                settings,
                keys: RwLock::new(Arc::from(Vec::new())),
                state: Mutex::new(State {
                    last_fetch: None,
                    in_flight: None,
                    next_delay: settings.refresh_interval,
                }),
                fetches: AtomicU64::new(0),
                started: AtomicBool::new(false),
            }),
        }
    }

    /// A new cache with changed settings (builders run before first use,
    /// so nothing cached is lost).
    fn settings(self, f: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.shared.settings;
        f(&mut settings);
        settings.min_refresh_interval = settings.min_refresh_interval.max(Duration::from_millis(1));
        settings.max_refresh_interval = settings
            .max_refresh_interval
            .max(settings.min_refresh_interval);
        settings.refresh_interval = settings
            .refresh_interval
            .clamp(settings.min_refresh_interval, settings.max_refresh_interval);
        Self::build(
            self.shared.url.clone(),
            Arc::clone(&self.shared.fetch),
            settings,
        )
    }

    /// Background refresh interval when the document has no `max-age`.
    /// Default: 5 min.
    #[must_use]
    pub fn refresh_interval(self, interval: Duration) -> Self {
        self.settings(|s| s.refresh_interval = interval)
    }

    /// Least time between two fetches caused by unknown `kid`s, the lower
    /// bound of a `max-age`, and the retry delay after a failure (at least
    /// 1 ms). Default: 30 s.
    #[must_use]
    pub fn min_refresh_interval(self, interval: Duration) -> Self {
        self.settings(|s| s.min_refresh_interval = interval)
    }

    /// Upper bound of a `max-age`. Default: 24 h.
    #[must_use]
    pub fn max_refresh_interval(self, interval: Duration) -> Self {
        self.settings(|s| s.max_refresh_interval = interval)
    }

    /// How long a fetch may take. Default: 5 s.
    #[must_use]
    pub fn fetch_timeout(self, timeout: Duration) -> Self {
        self.settings(|s| s.fetch_timeout = timeout)
    }

    /// How many fetches were started so far.
    pub fn fetch_count(&self) -> u64 {
        self.shared.fetches.load(Ordering::Relaxed)
    }

    /// The current key set (empty before the first successful fetch).
    pub fn keys(&self) -> Arc<[JwtKey]> {
        self.shared.current()
    }

    /// Fetches now (or joins the fetch under way) and waits for it; starts
    /// the background refresh. Returns how many keys are held after it.
    pub async fn refresh(&self) -> usize {
        self.shared.ensure_started();
        self.shared.refresh(false).await;
        self.keys().len()
    }

    /// The key set for a request, starting the background refresh on first
    /// use.
    pub(crate) fn snapshot(&self) -> Arc<[JwtKey]> {
        self.shared.ensure_started();
        self.shared.current()
    }

    /// A token named a `kid` that is not in the set: refresh, unless a fetch
    /// started less than `min_refresh_interval` ago.
    pub(crate) async fn refresh_on_miss(&self) {
        self.shared.refresh(true).await;
    }
}

#[cfg(feature = "config")]
impl Jwks {
    /// The JWKS cache of a configured issuer (`None` for one with static
    /// keys), with its refresh intervals and, for `jwks_ca`, its roots (a
    /// file is read now).
    ///
    /// # Errors
    ///
    /// The message starts with the issuer's field at fault: `jwks_url: `
    /// (not an `http(s)` URL; `https` without the `tls` feature) or
    /// `jwks_ca: ` (unreadable file, no usable certificate, no `tls`
    /// feature).
    pub fn from_config(issuer: &crate::config::JwtIssuer) -> Result<Option<Self>, ConfigError> {
        let crate::config::JwtKeys::Jwks {
            url,
            refresh_interval,
            min_refresh_interval,
            ca,
        } = &issuer.keys
        else {
            return Ok(None);
        };
        let uri = parse_url(url).map_err(|e| ConfigError::new(format!("jwks_url: {e}")))?;
        let fetch = match ca {
            None => default_fetcher(&uri, None)
                .map_err(|e| ConfigError::new(format!("jwks_url: {e}")))?,
            #[cfg(feature = "tls")]
            Some(ca) => {
                let pem = match ca {
                    crate::config::JwksCa::Pem(pem) => pem.clone().into_bytes(),
                    crate::config::JwksCa::File(path) => std::fs::read(path).map_err(|e| {
                        ConfigError::new(format!("jwks_ca: cannot read {}: {e}", path.display()))
                    })?,
                };
                default_fetcher(&uri, Some(&pem))
                    .map_err(|e| ConfigError::new(format!("jwks_ca: {e}")))?
            }
            #[cfg(not(feature = "tls"))]
            Some(_) => {
                return Err(ConfigError::new(
                    "jwks_ca: private JWKS roots need the `tls` cargo feature",
                ));
            }
        };
        Ok(Some(
            Self::from_fetcher(uri, fetch)
                .refresh_interval(*refresh_interval)
                .min_refresh_interval(*min_refresh_interval),
        ))
    }
}

fn parse_url(url: &str) -> Result<Uri, &'static str> {
    let uri: Uri = url.parse().map_err(|_| "not a valid URL")?;
    if uri.authority().is_none() || !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err("must be an absolute http(s) URL");
    }
    Ok(uri)
}

/// Whether the URL's host is this machine (plain HTTP is then no risk).
fn is_loopback(uri: &Uri) -> bool {
    let host = uri.host().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The fetcher [`Jwks::new`] uses: a pooled hyper client, with rustls for
/// `https` when the `tls` feature is on.
fn default_fetcher(uri: &Uri, roots_pem: Option<&[u8]>) -> Result<Fetcher, String> {
    if uri.scheme_str() == Some("http") && !is_loopback(uri) {
        tracing::warn!(
            url = %redacted(uri),
            "JWKS over plain http: the keys can be replaced in transit; use https"
        );
    }
    #[cfg(feature = "tls")]
    {
        let connector = crate::tls::client::fetch_connector(roots_pem)
            .map_err(|error| format!("JWKS roots: {error}"))?;
        Ok(client_fetcher(
            Client::builder(TokioExecutor::new()).build(connector),
        ))
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = roots_pem;
        if uri.scheme_str() == Some("https") {
            return Err(
                "JWKS URL: https:// needs the `tls` cargo feature (or give Jwks::with_client an HTTPS connector)"
                    .to_owned(),
            );
        }
        Ok(client_fetcher(
            Client::builder(TokioExecutor::new()).build_http(),
        ))
    }
}

/// A fetcher that GETs the URL with `client`: `200` only, `Cache-Control:
/// max-age` kept, the body read up to [`MAX_JWKS_BYTES`].
fn client_fetcher<C>(client: Client<C, Empty<Bytes>>) -> Fetcher
where
    C: Connect + Clone + Send + Sync + 'static,
{
    Arc::new(move |uri: Uri| {
        let client = client.clone();
        Box::pin(async move {
            let request = Request::get(uri)
                .header(ACCEPT, "application/json")
                .body(Empty::new())?;
            let response = client.request(request).await?;
            if response.status() != StatusCode::OK {
                return Err(format!("the JWKS URL answered {}", response.status()).into());
            }
            let max_age = max_age(response.headers());
            let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await?
                .to_bytes();
            Ok(JwksDocument { body, max_age })
        }) as FetchFuture
    })
}

/// The `max-age` of a `Cache-Control` header; `no-cache`/`no-store` count
/// as 0 (then bounded by the minimum interval).
fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut out = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim();
            let (name, arg) = directive.split_once('=').unwrap_or((directive, ""));
            if name.eq_ignore_ascii_case("max-age") {
                if let Ok(secs) = arg.trim_matches('"').parse::<u64>() {
                    out = Some(Duration::from_secs(secs));
                }
            } else if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store")
            {
                return Some(Duration::ZERO);
            }
        }
    }
    out
}

/// The usable keys of a JWKS document.
fn parse_keys(body: &[u8]) -> Result<Vec<JwtKey>, BoxError> {
    let set: JwkSet = serde_json::from_slice(body)?;
    let keys: Vec<JwtKey> = set
        .keys
        .iter()
        .filter(|jwk| {
            !matches!(
                jwk.algorithm,
                jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
            )
        })
        .filter_map(|jwk| match JwtKey::from_jwk(jwk) {
            Ok(key) => Some(key),
            Err(error) => {
                tracing::debug!(kid = ?jwk.common.key_id, %error, "JWKS key ignored");
                None
            }
        })
        .take(MAX_JWKS_KEYS)
        .collect();
    if keys.is_empty() {
        return Err("the JWKS document has no usable signature key".into());
    }
    Ok(keys)
}

impl Shared {
    fn current(&self) -> Arc<[JwtKey]> {
        // The set is replaced whole, so a poisoned lock still holds a good one.
        let guard = self.keys.read().unwrap_or_else(|p| p.into_inner());
        Arc::clone(&guard)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every critical section leaves `State` consistent, so a panic in
        // another holder does not make it wrong.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ensure_started(self: &Arc<Self>) {
        if self.started.load(Ordering::Acquire) || self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.started.store(false, Ordering::Release);
            return;
        };
        handle.spawn(background(Arc::downgrade(self)));
    }

    /// Starts a fetch, or joins the one under way, and waits for its end.
    /// With `on_miss`, does nothing when a fetch started less than
    /// `min_refresh_interval` ago.
    async fn refresh(self: &Arc<Self>, on_miss: bool) {
        let mut done = {
            let mut state = self.state();
            match &state.in_flight {
                Some(sender) => sender.subscribe(),
                None => {
                    let now = Instant::now();
                    if on_miss
                        && state.last_fetch.is_some_and(|at| {
                            now.saturating_duration_since(at) < self.settings.min_refresh_interval
                        })
                    {
                        return;
                    }
                    let Ok(handle) = tokio::runtime::Handle::try_current() else {
                        tracing::warn!("JWKS refresh needs a tokio runtime");
                        return;
                    };
                    let (sender, receiver) = watch::channel(());
                    state.in_flight = Some(sender);
                    state.last_fetch = Some(now);
                    // The fetch runs on its own task, so a cancelled request
                    // never leaves `in_flight` set.
                    handle.spawn(Arc::clone(self).fetch_and_store());
                    receiver
                }
            }
        };
        // Ends when the fetch task drops the sender.
        let _ = done.changed().await;
    }

    async fn fetch_and_store(self: Arc<Self>) {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let settings = self.settings;
        let fetched = tokio::time::timeout(settings.fetch_timeout, (self.fetch)(self.url.clone()))
            .await
            .map_err(|_| BoxError::from("the JWKS fetch timed out"))
            .and_then(|result| result)
            .and_then(|document| Ok((parse_keys(&document.body)?, document.max_age)));
        let next_delay = match fetched {
            Ok((keys, max_age)) => {
                let count = keys.len();
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::from(keys);
                tracing::debug!(url = %redacted(&self.url), keys = count, "JWKS refreshed");
                max_age.map_or(settings.refresh_interval, |age| {
                    age.clamp(settings.min_refresh_interval, settings.max_refresh_interval)
                })
            }
            Err(error) => {
                // The causes too: a client error alone says "Connect", its
                // source says which certificate check failed.
                let error = causes(&*error);
                tracing::warn!(url = %redacted(&self.url), %error, "JWKS refresh failed; keeping the last good keys");
                settings.min_refresh_interval
            }
        };
        let mut state = self.state();
        state.next_delay = next_delay;
        // Dropping the sender wakes every waiter.
        state.in_flight = None;
    }
}

/// An error and its sources, `: `-joined.
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Refreshes at the interval the last fetch set, until the keys are dropped.
async fn background(shared: Weak<Shared>) {
    loop {
        let delay = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            shared.refresh(false).await;
            shared.state().next_delay
        };
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control() {
        let mut headers = HeaderMap::new();
        assert_eq!(max_age(&headers), None);
        headers.insert(CACHE_CONTROL, "public, max-age=600".parse().unwrap());
        assert_eq!(max_age(&headers), Some(Duration::from_secs(600)));
        headers.insert(CACHE_CONTROL, "no-store".parse().unwrap());
        assert_eq!(max_age(&headers), Some(Duration::ZERO));
    }

    #[cfg(feature = "tls")]
    #[test]
    fn private_roots_must_parse() {
        let error = Jwks::with_roots_pem("https://idp/keys", b"not pem").unwrap_err();
        assert!(error.to_string().starts_with("JWKS roots: "), "{error}");
        let ca = rcgen::generate_simple_self_signed(vec!["idp".to_owned()]).unwrap();
        assert!(Jwks::with_roots_pem("https://idp/keys", ca.cert.pem().as_bytes()).is_ok());
    }

    #[test]
    fn causes_are_joined() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let error = Outer(std::io::Error::other(
            "invalid peer certificate: UnknownIssuer",
        ));
        assert_eq!(
            causes(&error),
            "client error (Connect): invalid peer certificate: UnknownIssuer"
        );
    }

    #[test]
    fn urls() {
        assert_eq!(
            Jwks::new("https://idp/keys").is_ok(),
            cfg!(feature = "tls"),
            "https needs the tls feature"
        );
        assert!(Jwks::new("/keys").is_err());
        assert!(Jwks::new("ftp://idp/keys").is_err());
        assert!(is_loopback(&"http://127.0.0.1:8/k".parse().unwrap()));
        assert!(is_loopback(&"http://[::1]:8/k".parse().unwrap()));
        assert!(is_loopback(&"http://LocalHost/k".parse().unwrap()));
        assert!(!is_loopback(&"http://idp.example/k".parse().unwrap()));
        assert!(Jwks::new("http://idp/keys").is_ok());
        assert_eq!(
            redacted(&"http://idp:8080/k?token=secret".parse().unwrap()),
            "http://idp:8080/k"
        );
    }
}
