//! API-key authentication against a [`ConsumerStore`] (Kong's `key-auth`).
//!
//! The key is read from a header (default `X-API-Key`) and, when configured,
//! from a query parameter. Its SHA-256 digest is looked up in the store and
//! compared in constant time. On success the [`Consumer`] goes into the
//! request extensions and, by default, to upstream headers
//! (`X-Consumer-ID`, `X-Consumer-Username`, `X-Consumer-Groups`,
//! `X-Anonymous-Consumer`); incoming copies of those headers are always
//! removed first, so a client cannot spoof them. The key header and query
//! parameter are removed before the request goes on (configurable).
//!
//! A missing or unknown key gets `401` with `WWW-Authenticate: Key
//! realm="meshgate"` and a problem+json body that never echoes the key.
//! With an anonymous consumer configured, a request *without* a key runs
//! as that consumer instead; a wrong key is still refused.
//!
//! ```
//! use meshgate::auth::{Consumer, ConsumerStore, api_key::ApiKeyLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = ConsumerStore::new();
//! store.add_key(Consumer::new("mobile-app").with_tier("pro"), "s3cr3t-key").unwrap();
//!
//! let svc = ServiceBuilder::new()
//!     .layer(ApiKeyLayer::new(store.clone()).query_param("apikey"))
//!     .service(service_fn(|req: http::Request<()>| async move {
//!         let consumer = req.extensions().get::<Consumer>().unwrap();
//!         assert_eq!(req.headers()["x-consumer-username"], "mobile-app");
//!         assert!(req.headers().get("x-api-key").is_none());
//!         Ok::<_, std::convert::Infallible>(http::Response::new(consumer.name().to_owned()))
//!     }));
//!
//! let req = http::Request::get("/orders").header("x-api-key", "s3cr3t-key").body(()).unwrap();
//! let res = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//!
//! let req = http::Request::get("/orders").header("x-api-key", "wrong").body(()).unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 401);
//! assert_eq!(res.headers()["www-authenticate"], "Key realm=\"meshgate\"");
//! # }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{HeaderName, HeaderValue, WWW_AUTHENTICATE};
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::consumer::{Consumer, ConsumerStore};
use super::query;
use crate::error::{Rejection, RejectionKind};
use crate::future::ResponseFuture;

/// `X-Consumer-ID`.
pub const X_CONSUMER_ID: HeaderName = HeaderName::from_static("x-consumer-id");
/// `X-Consumer-Username`.
pub const X_CONSUMER_USERNAME: HeaderName = HeaderName::from_static("x-consumer-username");
/// `X-Consumer-Groups` (comma-joined).
pub const X_CONSUMER_GROUPS: HeaderName = HeaderName::from_static("x-consumer-groups");
/// `X-Anonymous-Consumer: true` when the request runs as the anonymous consumer.
pub const X_ANONYMOUS_CONSUMER: HeaderName = HeaderName::from_static("x-anonymous-consumer");

/// A `static`: a `const` array of `HeaderName`s is built and dropped at
/// every use.
static CONSUMER_HEADERS: [HeaderName; 4] = [
    X_CONSUMER_ID,
    X_CONSUMER_USERNAME,
    X_CONSUMER_GROUPS,
    X_ANONYMOUS_CONSUMER,
];

/// Removes the consumer headers a client may have sent to pass for one.
/// One pass over the names first: requests seldom carry any, and each
/// removal hashes its name.
fn strip_consumer_headers(headers: &mut http::HeaderMap) {
    let present = headers.keys().any(|name| {
        let name = name.as_str();
        name.starts_with("x-consumer-") || name == "x-anonymous-consumer"
    });
    if present {
        for name in &CONSUMER_HEADERS {
            headers.remove(name);
        }
    }
}

/// Longest key accepted, in bytes; longer ones are refused unhashed.
const MAX_KEY_LEN: usize = 1024;

#[derive(Debug, Clone)]
struct Config {
    store: ConsumerStore,
    header: Option<HeaderName>,
    query: Option<String>,
    strip_credentials: bool,
    consumer_headers: bool,
    allowed: Option<Vec<String>>,
    anonymous: Option<Consumer>,
    challenge: HeaderValue,
}

/// Authenticates requests by API key. See the [module docs](self).
///
/// The configuration is behind an `Arc`; the [`ConsumerStore`] is shared
/// with every clone of the store handle given, so keys added or revoked
/// there take effect at once for every service this layer built.
#[derive(Clone, Debug)]
#[must_use]
pub struct ApiKeyLayer {
    config: Arc<Config>,
}

impl ApiKeyLayer {
    /// Checks keys against `store`, from the `X-API-Key` header.
    pub fn new(store: ConsumerStore) -> Self {
        ApiKeyLayer {
            config: Arc::new(Config {
                store,
                header: Some(HeaderName::from_static("x-api-key")),
                query: None,
                strip_credentials: true,
                consumer_headers: true,
                allowed: None,
                anonymous: None,
                challenge: HeaderValue::from_static("Key realm=\"meshgate\""),
            }),
        }
    }

    fn configured(mut self, f: impl FnOnce(&mut Config)) -> Self {
        let mut config = (*self.config).clone();
        f(&mut config);
        self.config = Arc::new(config);
        self
    }

    /// Reads the key from this header. Default: `X-API-Key`.
    pub fn header(self, name: HeaderName) -> Self {
        self.configured(|c| c.header = Some(name))
    }

    /// Does not read a key from any header (with
    /// [`query_param`](Self::query_param) only). Default: `X-API-Key` is read.
    pub fn no_header(self) -> Self {
        self.configured(|c| c.header = None)
    }

    /// Also reads the key from this query parameter (the header wins when
    /// both are present). Default: none.
    pub fn query_param(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.configured(|c| c.query = Some(name))
    }

    /// Whether the key header and query parameter are removed before the
    /// request goes on. Default: `true`.
    pub fn strip_credentials(self, strip: bool) -> Self {
        self.configured(|c| c.strip_credentials = strip)
    }

    /// Whether `X-Consumer-ID`, `X-Consumer-Username`, `X-Consumer-Groups`
    /// and `X-Anonymous-Consumer` are set for the upstream. Incoming copies
    /// are removed either way. Default: `true`.
    pub fn consumer_headers(self, send: bool) -> Self {
        self.configured(|c| c.consumer_headers = send)
    }

    /// Accepts only the consumers with these names; others get `403`.
    /// Default: every consumer of the store.
    pub fn allow_consumers<I, N>(self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        let names = names.into_iter().map(Into::into).collect();
        self.configured(|c| c.allowed = Some(names))
    }

    /// Requests without a key run as this consumer instead of getting `401`
    /// (a wrong key is still refused). Default: none.
    pub fn anonymous(self, consumer: Consumer) -> Self {
        let consumer = consumer.anonymous();
        self.configured(|c| c.anonymous = Some(consumer))
    }

    /// The realm in `WWW-Authenticate: Key realm="..."`. Characters other
    /// than visible ASCII, `"` and `\` are dropped. Default: `meshgate`.
    pub fn realm(self, realm: &str) -> Self {
        let clean: String = realm
            .chars()
            .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\' || *c == ' ')
            .collect();
        let value = HeaderValue::from_str(&format!("Key realm=\"{clean}\""))
            // Only visible ASCII and spaces are left, always a valid value.
            .unwrap_or_else(|_| HeaderValue::from_static("Key realm=\"meshgate\""));
        self.configured(|c| c.challenge = value)
    }
}

#[cfg(feature = "config")]
impl ApiKeyLayer {
    /// The layer for a route's `api_key` section, with the config's
    /// consumers loaded into a new store ([`consumer_store_from_config`]).
    ///
    /// Fails when the route's `anonymous` consumer is not among `consumers`
    /// or a key belongs to two consumers.
    pub fn from_config(
        auth: &crate::config::ApiKeyAuth,
        consumers: &[crate::config::Consumer],
    ) -> Result<Self, super::ConfigError> {
        let store = consumer_store_from_config(consumers)?;
        Self::from_config_with_store(auth, consumers, store)
    }

    /// As [`from_config`](Self::from_config) with a store the caller fills
    /// (and can change at run time).
    pub fn from_config_with_store(
        auth: &crate::config::ApiKeyAuth,
        consumers: &[crate::config::Consumer],
        store: ConsumerStore,
    ) -> Result<Self, super::ConfigError> {
        let mut layer = ApiKeyLayer::new(store).header(auth.header.clone());
        if let Some(query) = &auth.query {
            layer = layer.query_param(query.clone());
        }
        if !auth.consumers.is_empty() {
            layer = layer.allow_consumers(auth.consumers.iter().cloned());
        }
        if let Some(name) = &auth.anonymous {
            let consumer = consumers.iter().find(|c| &c.name == name).ok_or_else(|| {
                super::ConfigError::new(format!("anonymous consumer {name:?} is not defined"))
            })?;
            layer = layer.anonymous(consumer_from_config(consumer));
        }
        Ok(layer)
    }
}

/// A store holding every configured consumer's key digests, to be shared
/// by the routes that accept API keys (each route still filters by its
/// `consumers` list).
///
/// Fails when a key belongs to two consumers, or there are more keys than
/// the store holds ([`MAX_KEYS`](super::MAX_KEYS)).
#[cfg(feature = "config")]
pub fn consumer_store_from_config(
    consumers: &[crate::config::Consumer],
) -> Result<ConsumerStore, super::ConfigError> {
    let store = ConsumerStore::new();
    for consumer in consumers {
        let value = consumer_from_config(consumer);
        for key in &consumer.keys {
            store
                .add_digest(value.clone(), *key.as_bytes())
                .map_err(|e| {
                    super::ConfigError::new(format!("consumer {:?}: {e}", consumer.name))
                })?;
        }
    }
    Ok(store)
}

/// The request-extension value of a configured consumer.
#[cfg(feature = "config")]
pub fn consumer_from_config(consumer: &crate::config::Consumer) -> Consumer {
    let mut value = Consumer::new(consumer.name.clone()).with_id(consumer.id.clone());
    if let Some(tier) = &consumer.tier {
        value = value.with_tier(tier.clone());
    }
    for group in &consumer.groups {
        value = value.with_group(group.clone());
    }
    for (k, v) in &consumer.metadata {
        value = value.with_metadata(k.clone(), v.clone());
    }
    value
}

impl ApiKeyLayer {
    /// Whether the request carries a key where this layer looks.
    pub(crate) fn presents_key<B>(&self, request: &Request<B>) -> bool {
        !matches!(self.config.authenticate_presence(request), Found::Missing)
    }

    /// Whether requests without a key run as an anonymous consumer.
    pub(crate) fn has_anonymous(&self) -> bool {
        self.config.anonymous.is_some()
    }

    /// The `WWW-Authenticate` challenge of this scheme.
    pub(crate) fn challenge(&self) -> HeaderValue {
        self.config.challenge.clone()
    }

    /// Removes the identity headers this layer sets upstream.
    pub(crate) fn strip_identity_headers(&self, headers: &mut http::HeaderMap) {
        strip_consumer_headers(headers);
    }
}

impl<S> Layer<S> for ApiKeyLayer {
    type Service = ApiKey<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiKey {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service of [`ApiKeyLayer`].
#[derive(Clone)]
pub struct ApiKey<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> fmt::Debug for ApiKey<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S> ApiKey<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

enum Found {
    Missing,
    Consumer(Consumer),
    Unknown,
}

impl Config {
    /// `Missing` or `Unknown` (present), without hashing.
    fn authenticate_presence<B>(&self, request: &Request<B>) -> Found {
        let in_header = self
            .header
            .as_ref()
            .and_then(|name| request.headers().get(name))
            .is_some_and(|v| !v.is_empty());
        let in_query = self
            .query
            .as_deref()
            .and_then(|name| query::find(request.uri().query()?, name))
            .is_some_and(|v| !v.is_empty());
        if in_header || in_query {
            Found::Unknown
        } else {
            Found::Missing
        }
    }

    fn authenticate<B>(&self, request: &Request<B>) -> Found {
        let from_header = self
            .header
            .as_ref()
            .and_then(|name| request.headers().get(name))
            .map(|value| Cow::Borrowed(value.as_bytes()));
        let key = from_header.or_else(|| {
            let name = self.query.as_deref()?;
            query::find(request.uri().query()?, name)
        });
        match key {
            None => Found::Missing,
            Some(key) if key.is_empty() => Found::Missing,
            Some(key) if key.len() > MAX_KEY_LEN => Found::Unknown,
            Some(key) => match self.store.authenticate(&key) {
                Some(consumer) => Found::Consumer(consumer),
                None => Found::Unknown,
            },
        }
    }

    fn refuse<B>(
        &self,
        kind: RejectionKind,
        detail: &'static str,
    ) -> Response<crate::ResponseBody<B>> {
        let mut response = Rejection::new(kind)
            .with_detail(detail)
            .into_layer_response();
        if kind == RejectionKind::Unauthenticated {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, self.challenge.clone());
        }
        response
    }

    fn forward<B>(&self, request: &mut Request<B>, consumer: Consumer) {
        let headers = request.headers_mut();
        strip_consumer_headers(headers);
        if self.strip_credentials
            && let Some(name) = &self.header
        {
            headers.remove(name);
        }
        if self.consumer_headers {
            let values = consumer.headers();
            if let Some(value) = &values.id {
                headers.insert(X_CONSUMER_ID, value.clone());
            }
            if let Some(value) = &values.name {
                headers.insert(X_CONSUMER_USERNAME, value.clone());
            }
            if let Some(value) = &values.groups {
                headers.insert(X_CONSUMER_GROUPS, value.clone());
            }
            if consumer.is_anonymous() {
                headers.insert(X_ANONYMOUS_CONSUMER, HeaderValue::from_static("true"));
            }
        }
        if self.strip_credentials
            && let Some(name) = &self.query
            && let Some(uri) = query::without(request.uri(), name)
        {
            *request.uri_mut() = uri;
        }
        request.extensions_mut().insert(consumer.identity());
        request.extensions_mut().insert(consumer);
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ApiKey<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<crate::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        let consumer = match config.authenticate(&request) {
            Found::Consumer(consumer) => consumer,
            Found::Missing => match &config.anonymous {
                Some(anonymous) => anonymous.clone(),
                None => {
                    return ResponseFuture::refused(
                        config.refuse(RejectionKind::Unauthenticated, "an API key is required"),
                    );
                }
            },
            Found::Unknown => {
                return ResponseFuture::refused(
                    config.refuse(RejectionKind::Unauthenticated, "the API key is not valid"),
                );
            }
        };
        if let Some(allowed) = &config.allowed
            && !consumer.is_anonymous()
            && !allowed.iter().any(|n| n == consumer.name())
        {
            return ResponseFuture::refused(config.refuse(
                RejectionKind::Forbidden,
                "this consumer may not use this route",
            ));
        }
        config.forward(&mut request, consumer);
        ResponseFuture::inner(self.inner.call(request))
    }
}
