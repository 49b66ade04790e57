use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{
    ACCEPT_RANGES, AGE, AUTHORIZATION, CONTENT_LENGTH, CONTENT_LOCATION, CONTENT_RANGE, DATE, ETAG,
    IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED,
    LOCATION, RANGE, SET_COOKIE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use tokio::time::Instant;
use tower_service::Service;

use super::body::{CaptureBody, Pending};
use super::freshness::{
    Directives, Freshness, SURROGATE_CAPABILITY, SURROGATE_CONTROL, age_value, storable_by,
    strip_for_storage,
};
use super::range::{RangeAnswer, byte_range, if_range_holds};
use super::store::{
    Entry, Flight, FlightGuard, INLINE_KEY, Key, Store, Variants, normalise, vary_names,
};
use crate::error::Problem;
use crate::{Body, BoxError};

/// The `X-Cache` response header.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// `X-Cache` values of responses served from the store.
const HIT: HeaderValue = HeaderValue::from_static("HIT");
const STALE: HeaderValue = HeaderValue::from_static("STALE");
const REVALIDATED: HeaderValue = HeaderValue::from_static("REVALIDATED");

/// The service built by [`CacheLayer`](super::CacheLayer).
#[derive(Clone, Debug)]
pub struct Cache<S> {
    inner: S,
    store: Arc<Store>,
}

impl<S> Cache<S> {
    pub(crate) fn new(inner: S, store: Arc<Store>) -> Self {
        Self { inner, store }
    }
}

type Boxed<E> = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

/// The future of [`Cache`]: ready at once for a hit, else boxed (the cache
/// awaits its store and may wait for a coalesced request).
pub struct ResponseFuture<E> {
    kind: Kind<E>,
}

enum Kind<E> {
    Ready(Option<Response<Body>>),
    Boxed(Boxed<E>),
}

impl<E> std::fmt::Debug for ResponseFuture<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Ready(_) => "ready",
            Kind::Boxed(_) => "boxed",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<E> Future for ResponseFuture<E> {
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().kind {
            Kind::Ready(response) => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polling a finished future is a caller bug, as for any future.
                None => panic!("`ResponseFuture` polled after completion"),
            },
            Kind::Boxed(future) => future.as_mut().poll(cx),
        }
    }
}

impl<S, B, ResB> Service<Request<B>> for Cache<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let method = req.method();
        let kind = if method == Method::GET || method == Method::HEAD {
            let req_cc = Directives::parse(req.headers());
            let mut buf = [0; INLINE_KEY];
            let probe = self
                .store
                .probe(Key::new(req.uri(), req.headers()), &mut buf);
            // The store nearly always answers without waiting (moka's reads
            // do not block); `None` when it would wait.
            let found = self.store.get_now(&probe);
            // A hit is answered without touching (or cloning) the inner
            // service, which stays ready for the next call.
            if let Some(Some(variants)) = &found
                && let Some(response) = serve_now(&self.store, variants, &req, &req_cc)
            {
                return ResponseFuture {
                    kind: Kind::Ready(Some(response)),
                };
            }
            let hash = probe.hash;
            let store = Arc::clone(&self.store);
            Kind::Boxed(Box::pin(handle(
                store,
                self.take_ready(),
                req,
                hash,
                req_cc,
                found,
            )))
        } else {
            let store = Arc::clone(&self.store);
            let inner = self.take_ready();
            Kind::Boxed(Box::pin(
                async move { pass_through(&store, inner, req).await },
            ))
        };
        ResponseFuture { kind }
    }
}

impl<S: Clone> Cache<S> {
    /// The ready service, for this request; a clone waits for the next.
    fn take_ready(&mut self) -> S {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }
}

/// Answers from the stored variants when one is usable as it is.
fn serve_now<B>(
    store: &Store,
    variants: &Variants,
    req: &Request<B>,
    req_cc: &Directives,
) -> Option<Response<Body>> {
    let entry = variants.select(req.headers())?;
    if !serves_authorized(entry) && req.headers().contains_key(AUTHORIZATION) {
        return None;
    }
    let now = Instant::now();
    // The common case (what `judge` checks first) without a call.
    let usable = if req_cc.takes_any_fresh() && entry.is_fresh(now) {
        Use::Fresh
    } else {
        judge(entry, req_cc, store.config.stale_grace, now)
    };
    match usable {
        Use::Fresh => Some(serve(entry, req, now, HIT)),
        Use::Stale => Some(serve(entry, req, now, STALE)),
        Use::StaleRefresh | Use::Validate => None,
    }
}

/// How a stored entry may be used for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Fresh,
    Stale,
    StaleRefresh,
    Validate,
}

fn judge(entry: &Entry, req: &Directives, grace: Duration, now: Instant) -> Use {
    // The common case: a fresh entry for a request that does not limit age.
    if req.takes_any_fresh() && entry.is_fresh(now) {
        return Use::Fresh;
    }
    let age = entry.age(now);
    let lifetime = entry.lifetime;
    if req.no_cache
        || req.max_age.is_some_and(|max| age.as_secs() > max)
        || req
            .min_fresh
            .is_some_and(|min| lifetime.saturating_sub(age).as_secs() < min)
    {
        return Use::Validate;
    }
    if age < lifetime {
        return Use::Fresh;
    }
    if entry.directives.forbids_stale() {
        return Use::Validate;
    }
    let stale_by = (age - lifetime).as_secs();
    if req.max_stale.is_some_and(|max| stale_by <= max) {
        return Use::Stale;
    }
    let swr = entry
        .directives
        .stale_while_revalidate
        .unwrap_or(0)
        .max(grace.as_secs());
    if stale_by < swr {
        return Use::StaleRefresh;
    }
    Use::Validate
}

/// Whether `entry` may stand in for an origin failure (`stale-if-error`,
/// RFC 5861, or the configured grace).
fn serves_on_error(entry: &Entry, grace: Duration, now: Instant) -> bool {
    if entry.directives.forbids_stale() {
        return false;
    }
    let window = entry
        .directives
        .stale_if_error
        .unwrap_or(0)
        .max(grace.as_secs());
    let stale_by = entry.age(now).saturating_sub(entry.lifetime);
    stale_by.as_secs() < window || stale_by.is_zero()
}

/// Whether a request with `Authorization` may be answered from `entry`
/// (RFC 9111 §3.5).
fn serves_authorized(entry: &Entry) -> bool {
    let d = &entry.directives;
    d.public || d.s_maxage.is_some() || d.must_revalidate
}

async fn handle<S, B, ResB>(
    store: Arc<Store>,
    inner: S,
    req: Request<B>,
    hash: u64,
    req_cc: Directives,
    found: Option<Option<Arc<Variants>>>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    let mut inner = inner;
    let head = req.method() == Method::HEAD;
    // A range of a stored response is served from it, but a range fetched
    // from the origin is neither stored nor shared with other requests.
    let ranged = !head && req.headers().contains_key(RANGE);
    let authorized = req.headers().contains_key(AUTHORIZATION);
    let grace = store.config.stale_grace;
    let mut followed = false;
    // What `call` found in the store, when it did not have to wait: the
    // first round uses it instead of looking again.
    let mut found = found;
    loop {
        let now = Instant::now();
        let variants = match found.take() {
            Some(variants) => variants,
            None => {
                let mut buf = [0; INLINE_KEY];
                store
                    .get(&store.probe(Key::new(req.uri(), req.headers()), &mut buf))
                    .await
            }
        };
        let entry = variants
            .and_then(|v| v.select(req.headers()).cloned())
            .filter(|e| !authorized || serves_authorized(e));
        let verdict = entry.as_ref().map(|e| (judge(e, &req_cc, grace, now), e));
        match verdict {
            Some((Use::Fresh, e)) => return Ok(serve(e, &req, now, HIT)),
            Some((Use::Stale, e)) => return Ok(serve(e, &req, now, STALE)),
            Some((Use::StaleRefresh, e)) => {
                let response = serve(e, &req, now, STALE);
                if !req_cc.only_if_cached
                    && let Flight::Leader(guard) = store.join(store.flight_key(hash, req.headers()))
                {
                    let entry = Arc::clone(e);
                    let key = Key::new(req.uri(), req.headers()).to_key_string();
                    tokio::spawn(refresh(store, inner, req, key, entry, guard));
                }
                return Ok(response);
            }
            Some((Use::Validate, _)) | None => {}
        }
        if req_cc.only_if_cached {
            return Ok(mark(
                Problem::new(StatusCode::GATEWAY_TIMEOUT)
                    .with_detail("the response is not in the cache (only-if-cached)")
                    .into_response()
                    .map(Body::new),
                "MISS",
            ));
        }
        if head {
            // A HEAD miss is answered by the origin and not stored: its
            // answer has no body a later GET could be served.
            let mut req = req;
            announce(&store, req.headers_mut());
            let response = inner.call(req).await?;
            return Ok(mark(downstream(response.map(Body::new)), "MISS"));
        }
        let guard = if followed || ranged {
            None
        } else {
            match store.join(store.flight_key(hash, req.headers())) {
                Flight::Leader(guard) => Some(guard),
                Flight::Alone => None,
                Flight::Follower(landing) => {
                    followed = true;
                    // Woken when the leader stored its answer or gave up.
                    let _ = tokio::time::timeout(store.config.coalesce_wait, landing.wait()).await;
                    continue;
                }
            }
        };
        let key = Key::new(req.uri(), req.headers()).to_key_string();
        return fetch(store, inner, req, key, entry, guard).await;
    }
}

/// Sends a request for a missing or stale entry upstream and stores what
/// may be stored.
async fn fetch<S, B, ResB>(
    store: Arc<Store>,
    mut inner: S,
    mut req: Request<B>,
    key: String,
    stale: Option<Arc<Entry>>,
    guard: Option<FlightGuard>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    let grace = store.config.stale_grace;
    let client_conditional = is_conditional(req.headers());
    // The client's own headers: what the stored response is judged with
    // and what its conditional answer is decided on.
    let req_headers = req.headers().clone();
    let validating = match &stale {
        Some(entry) if !client_conditional && entry.has_validator() => {
            add_validators(entry, req.headers_mut());
            true
        }
        _ => false,
    };
    announce(&store, req.headers_mut());
    let uri = req.uri().clone();
    let sent_at = Instant::now();
    let result = inner.call(req).await;
    let now = Instant::now();
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            if let Some(entry) = stale.filter(|e| serves_on_error(e, grace, now)) {
                return Ok(serve_headers(&entry, &req_headers, now, STALE, false));
            }
            return Err(error);
        }
    };
    let status = response.status();
    if let Some(entry) = &stale {
        if status.is_server_error() && serves_on_error(entry, grace, now) {
            return Ok(serve_headers(entry, &req_headers, now, STALE, false));
        }
        if status == StatusCode::NOT_MODIFIED
            && (validating || same_etag(entry.headers.get(ETAG), response.headers().get(ETAG)))
        {
            let (parts, _) = response.into_parts();
            if let Some(updated) = merge(
                &store,
                entry,
                &uri,
                &req_headers,
                &parts.headers,
                now - sent_at,
                now,
            ) {
                let updated = Arc::new(updated);
                // Boxed, as the `remove` below: moka's write futures are
                // large, and inline they would double the size of (and the
                // bytes copied for) every miss's future.
                Box::pin(store.insert(&key, Arc::clone(&updated))).await;
                drop(guard);
                return Ok(serve_headers(
                    &updated,
                    &req_headers,
                    now,
                    REVALIDATED,
                    false,
                ));
            }
            // The merged response may no longer be stored: forget it and
            // answer from what was stored, once.
            Box::pin(store.remove(&key)).await;
            return Ok(serve_headers(entry, &req_headers, now, REVALIDATED, false));
        }
    }
    let req_cc = Directives::parse(&req_headers);
    let (mut parts, body) = response.into_parts();
    // A part of the representation is never stored in place of the whole.
    let partial = status == StatusCode::PARTIAL_CONTENT;
    let too_large = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|len| len > store.config.max_body as u64);
    let stored = if req_cc.no_store || too_large || partial {
        None
    } else {
        prepare(
            &store,
            &uri,
            &req_headers,
            status,
            &parts.headers,
            now - sent_at,
            now,
        )
    };
    parts.headers.remove(SURROGATE_CONTROL);
    // What the request keeps out of the cache is a bypass, not a miss.
    let verdict = if partial || req_cc.no_store {
        "BYPASS"
    } else {
        "MISS"
    };
    parts
        .headers
        .insert(X_CACHE, HeaderValue::from_static(verdict));
    let body = match stored {
        Some(entry) => Body::new(CaptureBody::new(
            body,
            Pending {
                buf: BytesMut::with_capacity(
                    parts
                        .headers
                        .get(CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0)
                        .min(store.config.max_body),
                ),
                limit: store.config.max_body,
                store,
                key,
                entry,
                guard,
            },
        )),
        None => Body::new(body),
    };
    Ok(Response::from_parts(parts, body))
}

/// A storable response's entry (without its body), or `None`.
fn prepare(
    store: &Store,
    uri: &Uri,
    req_headers: &HeaderMap,
    status: StatusCode,
    headers: &HeaderMap,
    delay: Duration,
    now: Instant,
) -> Option<Entry> {
    if status == StatusCode::PARTIAL_CONTENT {
        return None;
    }
    let mut names = vary_names(headers)?;
    // A cookie is one client's state: never handed to another client unless
    // the origin marks the response `public` (what nginx does by default,
    // stricter than RFC 9111, which allows it).
    if headers.contains_key(SET_COOKIE) && !Directives::parse(headers).public {
        return None;
    }
    let Freshness {
        lifetime,
        initial_age,
        directives,
    } = storable_by(
        &Method::GET,
        uri,
        status,
        req_headers,
        headers,
        delay,
        store.config.default_ttl,
        store.config.surrogate.as_ref().map(|(name, _)| &**name),
    )?;
    let mut stored = headers.clone();
    strip_for_storage(&mut stored);
    // `Surrogate-Control` is for this cache only: kept aside, never served.
    let surrogate_control = stored.get_all(SURROGATE_CONTROL).iter().cloned().collect();
    stored.remove(SURROGATE_CONTROL);
    // RFC 9110 §6.6.1: a cache records when a response without `Date` was
    // received (it also makes `Last-Modified` usable as a strong validator).
    if !stored.contains_key(DATE)
        && let Ok(date) =
            HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now()))
    {
        stored.insert(DATE, date);
    }
    // Ranges of a stored 200 are served from it (RFC 9110 §14.3).
    if status == StatusCode::OK && !stored.contains_key(ACCEPT_RANGES) {
        stored.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    let validator = stored.contains_key(ETAG) || stored.contains_key(LAST_MODIFIED);
    if lifetime.is_zero() && !validator {
        return None;
    }
    for name in &store.config.vary_by {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let vary = names
        .into_iter()
        .map(|name| {
            let value = normalise(&name, req_headers);
            (name, value)
        })
        .collect();
    Some(Entry {
        status,
        headers: stored,
        body: Bytes::new(),
        stored_at: now,
        lifetime,
        initial_age,
        fresh_until: lifetime
            .checked_sub(initial_age)
            .filter(|left| !left.is_zero())
            .and_then(|left| now.checked_add(left)),
        directives,
        validator,
        surrogate_control,
        vary,
        size: 0,
    })
}

/// The stored entry updated by a `304` (RFC 9111 §4.3.4).
fn merge(
    store: &Store,
    entry: &Entry,
    uri: &Uri,
    req_headers: &HeaderMap,
    update: &HeaderMap,
    delay: Duration,
    now: Instant,
) -> Option<Entry> {
    let mut headers = entry.headers.clone();
    headers.remove(AGE);
    headers.remove(X_CACHE);
    for value in &entry.surrogate_control {
        headers.append(SURROGATE_CONTROL, value.clone());
    }
    let mut update = update.clone();
    strip_for_storage(&mut update);
    let update_has_date = update.contains_key(DATE);
    let mut last: Option<HeaderName> = None;
    for (name, value) in update {
        // `HeaderMap::into_iter` yields a name only for the first value.
        let name = match name {
            Some(name) => {
                if matches!(
                    name.as_str(),
                    // What describes the stored body stays as stored.
                    "content-length"
                        | "content-encoding"
                        | "content-range"
                        | "content-md5"
                        | "etag"
                        | "x-cache"
                ) {
                    last = None;
                    continue;
                }
                headers.remove(&name);
                last = Some(name.clone());
                name
            }
            None => match &last {
                Some(name) => name.clone(),
                None => continue,
            },
        };
        headers.append(name, value);
    }
    if !update_has_date {
        // The old `Date` would make the refreshed entry look old.
        headers.insert(
            DATE,
            HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now())).ok()?,
        );
    }
    let mut updated = prepare(store, uri, req_headers, entry.status, &headers, delay, now)?;
    updated.seal(entry.body.clone());
    Some(updated)
}

/// Refreshes a stale entry in the background (`stale-while-revalidate`).
async fn refresh<S, B, ResB>(
    store: Arc<Store>,
    inner: S,
    req: Request<B>,
    key: String,
    entry: Arc<Entry>,
    guard: FlightGuard,
) where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    // The refresh is the cache's own request for the whole response: a
    // GET (also for a HEAD that found the entry stale) with the cache's
    // validators, not the client's range or conditions.
    let mut req = req;
    if req.method() == Method::HEAD {
        *req.method_mut() = Method::GET;
    }
    for name in [
        RANGE,
        IF_RANGE,
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_MATCH,
        IF_UNMODIFIED_SINCE,
    ] {
        req.headers_mut().remove(name);
    }
    // `fetch` stores a 304 merge itself and a new response once its body is
    // read to the end, which this does.
    if let Ok(response) = fetch(store, inner, req, key, Some(entry), Some(guard)).await {
        let _ = response.into_body().collect().await;
    }
}

/// Non-GET/HEAD requests pass through; a successful unsafe one invalidates
/// its target URI and same-origin `Location` / `Content-Location`
/// (RFC 9111 §4.4).
async fn pass_through<S, B, ResB>(
    store: &Store,
    mut inner: S,
    req: Request<B>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    let safe = matches!(*req.method(), Method::OPTIONS | Method::TRACE);
    if safe {
        return Ok(inner.call(req).await?.map(Body::new));
    }
    let target = req.uri().clone();
    let key = Key::new(&target, req.headers()).to_key_string();
    let response = inner.call(req).await?;
    if response.status().is_success() || response.status().is_redirection() {
        store.remove(&key).await;
        // `scheme://authority` of the target, when known.
        let origin = key.find("://").map(|s| {
            key[s + 3..]
                .find('/')
                .map_or(key.as_str(), |p| &key[..s + 3 + p])
        });
        for name in [LOCATION, CONTENT_LOCATION] {
            let Some(location) = response.headers().get(name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            let Ok(uri) = location.parse::<Uri>() else {
                continue;
            };
            let other = match (uri.authority(), origin) {
                // A relative reference (absolute path) resolves against the target.
                (None, Some(origin)) if location.starts_with('/') => format!("{origin}{location}"),
                (None, None) if location.starts_with('/') => location.to_owned(),
                (Some(_), Some(origin)) => {
                    let other = Key::new(&uri, &HeaderMap::new()).to_key_string();
                    // Only the same origin may be invalidated (§4.4).
                    if !other.starts_with(origin)
                        || other
                            .as_bytes()
                            .get(origin.len())
                            .is_some_and(|&b| b != b'/' && b != b'?')
                    {
                        continue;
                    }
                    other
                }
                _ => continue,
            };
            store.remove(&other).await;
        }
    }
    Ok(response.map(Body::new))
}

/// Adds this cache's `Surrogate-Capability` to a request it sends upstream.
fn announce(store: &Store, headers: &mut HeaderMap) {
    if let Some((_, capability)) = &store.config.surrogate {
        headers.append(SURROGATE_CAPABILITY, capability.clone());
    }
}

/// A response from the origin on its way to the client: without the
/// `Surrogate-Control` meant for this cache.
fn downstream(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().remove(SURROGATE_CONTROL);
    response
}

fn mark(mut response: Response<Body>, status: &'static str) -> Response<Body> {
    response
        .headers_mut()
        .insert(X_CACHE, HeaderValue::from_static(status));
    response
}

fn serve<B>(entry: &Entry, req: &Request<B>, now: Instant, status: HeaderValue) -> Response<Body> {
    serve_headers(
        entry,
        req.headers(),
        now,
        status,
        req.method() == Method::HEAD,
    )
}

/// The stored response with `Age` and `X-Cache`: as stored, or `304` when
/// the client's own conditional request matches it, or the requested range
/// of a stored `200` (RFC 9110 §14: `206` for one satisfiable range, `416`
/// when none is; several ranges get the whole `200`).
fn serve_headers(
    entry: &Entry,
    req: &HeaderMap,
    now: Instant,
    status: HeaderValue,
    head: bool,
) -> Response<Body> {
    let age = age_value(entry.age(now));
    // Without a validator no condition can match: the request's
    // `If-None-Match` / `If-Modified-Since` need not be looked up.
    if entry.status == StatusCode::OK && entry.has_validator() && not_modified(entry, req) {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        let headers = response.headers_mut();
        for name in [
            http::header::CACHE_CONTROL,
            CONTENT_LOCATION,
            http::header::DATE,
            ETAG,
            http::header::EXPIRES,
            http::header::VARY,
            LAST_MODIFIED,
        ] {
            for value in entry.headers.get_all(&name) {
                headers.append(name.clone(), value.clone());
            }
        }
        headers.insert(AGE, age);
        headers.insert(X_CACHE, status);
        return response;
    }
    let len = entry.body.len();
    let range = match req.get(RANGE) {
        Some(range)
            if !head && entry.status == StatusCode::OK && if_range_holds(req, &entry.headers) =>
        {
            byte_range(range, len as u64)
        }
        _ => RangeAnswer::Whole,
    };
    if range == RangeAnswer::Unsatisfiable {
        let mut refused = Problem::new(StatusCode::RANGE_NOT_SATISFIABLE)
            .with_detail(format!(
                "no requested range is within the {len} bytes of the representation"
            ))
            .into_response()
            .map(Body::new);
        let headers = refused.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
            headers.insert(CONTENT_RANGE, value);
        }
        headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        for name in [http::header::DATE, ETAG, LAST_MODIFIED] {
            if let Some(value) = entry.headers.get(&name) {
                headers.insert(name, value.clone());
            }
        }
        headers.insert(AGE, age);
        headers.insert(X_CACHE, status);
        return refused;
    }
    // `byte_range` keeps `first <= last < len`, so these fit.
    let part = match range {
        RangeAnswer::Part { first, last } if !head => Some((
            usize::try_from(first).unwrap_or(0),
            usize::try_from(last).unwrap_or(0),
        )),
        _ => None,
    };
    let body = match part {
        _ if head => Body::empty(),
        Some((first, last)) => Body::from(entry.body.slice(first..=last)),
        None => Body::from(entry.body.clone()),
    };
    let mut response = Response::new(body);
    *response.status_mut() = entry.status;
    // The map `Response::new` made is empty and holds no allocation
    // (`HeaderMap::new` does not allocate): forgetting it instead of
    // dropping it spares every hit an out-of-line drop.
    std::mem::forget(std::mem::replace(
        response.headers_mut(),
        entry.served_headers(age, status),
    ));
    let headers = response.headers_mut();
    if let Some((first, last)) = part {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(last - first + 1));
        if let Some(value) = content_range(first, last, len) {
            headers.insert(CONTENT_RANGE, value);
        }
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    response
}

/// `Content-Range: bytes {first}-{last}/{len}`, written without `fmt`
/// (a range hit formats it every time).
fn content_range(first: usize, last: usize, len: usize) -> Option<HeaderValue> {
    let mut buf = [0; 8 + 3 * 20];
    let mut at = 0;
    for (prefix, n) in [(&b"bytes "[..], first), (b"-", last), (b"/", len)] {
        buf.get_mut(at..at + prefix.len())?.copy_from_slice(prefix);
        at += prefix.len();
        at += write_decimal(buf.get_mut(at..)?, n)?;
    }
    HeaderValue::from_bytes(buf.get(..at)?).ok()
}

/// Writes `n` in decimal at the start of `out`; its length, or `None` when
/// it does not fit.
fn write_decimal(out: &mut [u8], n: usize) -> Option<usize> {
    let mut buf = [0; 20];
    let digits = crate::digits::decimal(u64::try_from(n).ok()?, &mut buf);
    out.get_mut(..digits.len())?.copy_from_slice(digits);
    Some(digits.len())
}

fn is_conditional(headers: &HeaderMap) -> bool {
    [
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_MATCH,
        IF_UNMODIFIED_SINCE,
        IF_RANGE,
    ]
    .iter()
    .any(|h| headers.contains_key(h))
}

fn add_validators(entry: &Entry, headers: &mut HeaderMap) {
    if let Some(etag) = entry.headers.get(ETAG) {
        headers.insert(IF_NONE_MATCH, etag.clone());
    }
    if let Some(modified) = entry.headers.get(LAST_MODIFIED) {
        headers.insert(IF_MODIFIED_SINCE, modified.clone());
    }
}

/// Weak comparison of two entity tags (RFC 9110 §8.8.3.2).
fn same_etag(a: Option<&HeaderValue>, b: Option<&HeaderValue>) -> bool {
    let strip = |v: &HeaderValue| {
        let v = v.as_bytes();
        v.strip_prefix(b"W/").unwrap_or(v).to_vec()
    };
    matches!((a, b), (Some(a), Some(b)) if strip(a) == strip(b))
}

/// Whether the client's `If-None-Match` / `If-Modified-Since` is satisfied
/// by the stored response (RFC 9110 §13.1.2, §13.1.3).
fn not_modified(entry: &Entry, req: &HeaderMap) -> bool {
    if let Some(inm) = req.get(IF_NONE_MATCH) {
        let Some(etag) = entry.headers.get(ETAG) else {
            return false;
        };
        let Ok(list) = inm.to_str() else { return false };
        return list.split(',').any(|tag| {
            let tag = tag.trim();
            tag == "*"
                || HeaderValue::from_str(tag).is_ok_and(|tag| same_etag(Some(&tag), Some(etag)))
        });
    }
    let Some(since) = req
        .get(IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    else {
        return false;
    };
    entry
        .headers
        .get(LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .is_some_and(|modified| modified <= since)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_is_written_in_decimal() {
        assert_eq!(content_range(0, 99, 1024).unwrap(), "bytes 0-99/1024");
        assert_eq!(content_range(7, 7, 8).unwrap(), "bytes 7-7/8");
        let max = usize::MAX;
        assert_eq!(
            content_range(max - 1, max, max).unwrap(),
            format!("bytes {}-{max}/{max}", max - 1).as_str()
        );
    }
}
