//! What a limit is counted per, and the request extensions it reads.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderName;
use http::request::Request;

use crate::identity::{ConsumerIdentity, RouteName, Subject};
use crate::net::{ClientIp, TrustedProxies};
use crate::peer::PeerAddr;

/// What a limit is counted per.
///
/// The parts are the request extensions of [`crate::identity`] and the
/// [`ClientIp`]. A part the request lacks (no [`ConsumerIdentity`], no
/// header, no route) is replaced by the client IP, as Kong does, so
/// unauthenticated traffic is still limited; a request whose client IP is
/// unknown too (no [`PeerAddr`], or an `unknown` forwarding entry, see
/// [`crate::net`]) shares one "unknown client" counter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeyBy {
    /// The client IP (see [`TrustedProxies`]). The default.
    #[default]
    ClientIp,
    /// The [`ConsumerIdentity`]'s name.
    Consumer,
    /// The authenticated [`Subject`] (the JWT's `sub`).
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
#[derive(Debug, Clone, Eq)]
pub(crate) enum Key {
    Global,
    UnknownClient,
    Ip(IpAddr),
    Text(Arc<str>),
}

impl PartialEq for Key {
    /// As derived, with the text comparison out of line: comparing
    /// addresses, the common case, stays a few instructions wherever it is
    /// inlined (the store's map look-up).
    #[inline(always)]
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Ip(a), Self::Ip(b)) => a == b,
            (Self::Text(a), Self::Text(b)) => same_text(a, b),
            (Self::Global, Self::Global) | (Self::UnknownClient, Self::UnknownClient) => true,
            _ => false,
        }
    }
}

#[inline(never)]
fn same_text(a: &str, b: &str) -> bool {
    a == b
}

impl KeyBy {
    pub(crate) fn key<B>(&self, request: &Request<B>, ip: &IpSource<'_>) -> Key {
        match self {
            Self::Global => Key::Global,
            Self::ClientIp => ip.key(request),
            Self::Consumer => match request.extensions().get::<ConsumerIdentity>() {
                Some(c) => Key::Text(Arc::clone(&c.name)),
                None => ip.key(request),
            },
            Self::JwtSubject => match request.extensions().get::<Subject>() {
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
    trusted: &'a TrustedProxies,
    resolved: std::cell::Cell<Option<Option<IpAddr>>>,
    /// Whether the request already carried a [`ClientIp`].
    given: std::cell::Cell<bool>,
}

impl<'a> IpSource<'a> {
    pub(crate) fn new(trusted: &'a TrustedProxies) -> Self {
        Self {
            trusted,
            resolved: std::cell::Cell::new(None),
            given: std::cell::Cell::new(false),
        }
    }

    pub(crate) fn ip<B>(&self, request: &Request<B>) -> Option<IpAddr> {
        if let Some(ip) = self.resolved.get() {
            return ip;
        }
        let extensions = request.extensions();
        let ip = match extensions.get::<ClientIp>() {
            Some(given) => {
                self.given.set(true);
                Some(given.0)
            }
            None => extensions
                .get::<PeerAddr>()
                .and_then(|peer| self.trusted.resolve(peer.0.ip(), request.headers())),
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
