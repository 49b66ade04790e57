//! What a limit is counted per, and the request extensions it reads.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderName;
use http::request::Request;

use super::client_ip::ClientIpResolver;

/// The authenticated API consumer, as a request extension.
///
/// The authentication layers (API key, JWT) insert it once they have
/// identified the caller; an application can insert it itself from an outer
/// layer. The rate limiter keys on [`name`](Self::name) with
/// [`KeyBy::Consumer`], picks the quota set of [`tier`](Self::tier) when the
/// layer has that tier, and skips consumers on its exempt list.
///
/// ```
/// use meshgate::rate_limit::Consumer;
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(Consumer::new("acme").with_tier("pro"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Consumer {
    /// The consumer's name (unique per gateway).
    pub name: Arc<str>,
    /// Its rate-limit tier (`free`, `pro`, …), if it has one.
    pub tier: Option<Arc<str>>,
}

impl Consumer {
    /// A consumer without a tier.
    #[must_use]
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            tier: None,
        }
    }

    /// Sets the tier.
    #[must_use]
    pub fn with_tier(mut self, tier: impl Into<Arc<str>>) -> Self {
        self.tier = Some(tier.into());
        self
    }
}

/// The subject (`sub`) of the request's validated JWT, as a request
/// extension the JWT layer inserts. Read by [`KeyBy::JwtSubject`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JwtSubject(pub Arc<str>);

/// The name of the route that matched the request, as a request extension
/// the router (or an application layer) inserts. Read by [`KeyBy::Route`]
/// and by per-route overrides ([`RateLimitLayer::route`](super::RateLimitLayer::route)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteName(pub Arc<str>);

/// What a limit is counted per.
///
/// A part the request lacks (no [`Consumer`], no header, no route) is
/// replaced by the client IP, as Kong does, so unauthenticated traffic is
/// still limited; a request that has no client IP either (no
/// [`PeerAddr`](crate::peer::PeerAddr)) shares one "unknown client" counter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeyBy {
    /// The client IP (see [`ClientIpResolver`]). The default.
    #[default]
    ClientIp,
    /// The [`Consumer`]'s name.
    Consumer,
    /// The [`JwtSubject`].
    JwtSubject,
    /// The value of a request header (e.g. `x-tenant`); at most 256 bytes
    /// of it are used.
    Header(HeaderName),
    /// The [`RouteName`].
    Route,
    /// One counter for every request.
    Global,
    /// Several parts together, e.g. consumer and route. Nested composites
    /// are flattened.
    Composite(Vec<KeyBy>),
}

#[cfg(feature = "config")]
impl From<&crate::config::RateLimitKey> for KeyBy {
    fn from(key: &crate::config::RateLimitKey) -> Self {
        use crate::config::RateLimitKey as K;
        match key {
            K::ClientIp => Self::ClientIp,
            K::Consumer => Self::Consumer,
            K::JwtSubject => Self::JwtSubject,
            K::Route => Self::Route,
            K::Global => Self::Global,
            K::Header(name) => Self::Header(name.clone()),
            K::Composite(parts) => Self::Composite(parts.iter().map(Self::from).collect()),
        }
    }
}

/// The longest header value used in a key.
const MAX_HEADER_KEY: usize = 256;

/// A counter's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    Global,
    UnknownClient,
    Ip(IpAddr),
    Text(Arc<str>),
}

impl KeyBy {
    pub(crate) fn key<B>(&self, request: &Request<B>, ip: &IpSource<'_>) -> Key {
        match self {
            Self::Global => Key::Global,
            Self::ClientIp => ip.key(request),
            Self::Consumer => match request.extensions().get::<Consumer>() {
                Some(c) => Key::Text(Arc::clone(&c.name)),
                None => ip.key(request),
            },
            Self::JwtSubject => match request.extensions().get::<JwtSubject>() {
                Some(s) => Key::Text(Arc::clone(&s.0)),
                None => ip.key(request),
            },
            Self::Route => match request.extensions().get::<RouteName>() {
                Some(r) => Key::Text(Arc::clone(&r.0)),
                None => ip.key(request),
            },
            Self::Header(name) => match request.headers().get(name) {
                Some(value) => {
                    let bytes = value.as_bytes();
                    let bytes = &bytes[..bytes.len().min(MAX_HEADER_KEY)];
                    Key::Text(Arc::from(String::from_utf8_lossy(bytes)))
                }
                None => ip.key(request),
            },
            Self::Composite(parts) => {
                let mut text = String::new();
                self.push_composite(parts, request, ip, &mut text);
                Key::Text(Arc::from(text))
            }
        }
    }

    fn push_composite<B>(
        &self,
        parts: &[KeyBy],
        request: &Request<B>,
        ip: &IpSource<'_>,
        out: &mut String,
    ) {
        use std::fmt::Write;
        for part in parts {
            if let Self::Composite(inner) = part {
                part.push_composite(inner, request, ip, out);
                continue;
            }
            // A unit separator between parts, and a tag per kind of part,
            // so `("a", "b|c")` and `("a|b", "c")` never share a counter.
            out.push('\u{1f}');
            let _ = match part.key(request, ip) {
                Key::Global => write!(out, "g"),
                Key::UnknownClient => write!(out, "u"),
                Key::Ip(addr) => write!(out, "i{addr}"),
                Key::Text(text) => write!(out, "t{}:{text}", text.len()),
            };
        }
    }
}

/// Resolves the client IP once per request, however many key parts need it.
pub(crate) struct IpSource<'a> {
    resolver: &'a ClientIpResolver,
    resolved: std::cell::Cell<Option<Option<IpAddr>>>,
    /// Whether the request already carried a [`ClientIp`](super::ClientIp).
    given: std::cell::Cell<bool>,
}

impl<'a> IpSource<'a> {
    pub(crate) fn new(resolver: &'a ClientIpResolver) -> Self {
        Self {
            resolver,
            resolved: std::cell::Cell::new(None),
            given: std::cell::Cell::new(false),
        }
    }

    pub(crate) fn ip<B>(&self, request: &Request<B>) -> Option<IpAddr> {
        if let Some(ip) = self.resolved.get() {
            return ip;
        }
        let ip = match request.extensions().get::<super::ClientIp>() {
            Some(given) => {
                self.given.set(true);
                Some(given.0)
            }
            None => self
                .resolver
                .resolve_from_peer(request.headers(), request.extensions()),
        };
        self.resolved.set(Some(ip));
        ip
    }

    /// The client IP this request resolved that it did not carry yet.
    pub(crate) fn newly_resolved(&self) -> Option<IpAddr> {
        if self.given.get() {
            return None;
        }
        self.resolved.get().flatten()
    }

    fn key<B>(&self, request: &Request<B>) -> Key {
        self.ip(request).map_or(Key::UnknownClient, Key::Ip)
    }
}
