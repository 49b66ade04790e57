//! Header work on the way through: hop-by-hop removal, `X-Forwarded-*`,
//! RFC 7239 `Forwarded`, `Via` and `Host`.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, Scheme};

use super::builder::BuildError;
use crate::net::TrustedProxies;

/// `Keep-Alive` (RFC 9112 appendix C.2.2): hop-by-hop, not in `http::header`.
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
/// `Proxy-Connection`: a non-standard `Connection` some clients still send.
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// `X-Forwarded-For`: the chain of client addresses.
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`: the scheme the client used.
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`: the `Host` the client asked for.
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The hop-by-hop headers of RFC 9110 §7.6.1 and the legacy ones, apart
/// from `Upgrade` and `TE`, which have their own rules.
/// A `static`: a `const` array of `HeaderName`s would be built and dropped
/// at every use.
static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// Whether a comma-separated list header holds `token` (case-insensitive).
pub(crate) fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// What [`strip_hop_by_hop`] keeps.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Keep {
    /// Keep `Upgrade` (the message opens or accepts a tunnel).
    pub(crate) upgrade: bool,
    /// Keep `TE: trailers` (HTTP/2 and gRPC need it end to end).
    pub(crate) te_trailers: bool,
}

/// Removes the hop-by-hop headers of RFC 9110 §7.6.1: `Connection` and every
/// header it names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`,
/// `Transfer-Encoding`, `Upgrade` and `Proxy-Authenticate` /
/// `Proxy-Authorization`, except what `keep` says.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, keep: Keep) {
    strip_found(headers, keep, Present::scan(headers));
}

/// What one pass over a message's header names found: which hop-by-hop
/// headers it carries (cheap comparisons of mostly standard names), and
/// whether it has a `Host` and a `Content-Type`. The lookups of headers a
/// message does not carry are then skipped: most carry none of the
/// hop-by-hop ones, and each lookup hashes its name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Present {
    /// The [`hop_by_hop_bit`]s of the names.
    hop: u16,
    pub(crate) host: bool,
    pub(crate) content_type: bool,
}

impl Present {
    pub(crate) fn scan(headers: &HeaderMap) -> Self {
        let mut present = Self {
            hop: 0,
            host: false,
            content_type: false,
        };
        for name in headers.keys() {
            if *name == header::HOST {
                present.host = true;
            } else if *name == header::CONTENT_TYPE {
                present.content_type = true;
            } else {
                present.hop |= hop_by_hop_bit(name);
            }
        }
        present
    }

    /// Whether an `Upgrade` header is there.
    pub(crate) fn upgrade(&self) -> bool {
        self.hop & UPGRADE_BIT != 0
    }
}

/// [`strip_hop_by_hop`] for a message whose names a [`Present::scan`]
/// went over. Whether it removed headers that `Connection` named (then any
/// header may be gone, `Host` too).
pub(crate) fn strip_found(headers: &mut HeaderMap, keep: Keep, found: Present) -> bool {
    let present = found.hop;
    if present == 0 {
        return false;
    }
    let mut removed_named = false;
    // Headers named in `Connection` go first, while it is still there. The
    // names are collected because removal needs `&mut` while `get_all` borrows.
    if present & 1 != 0 {
        // Options that name headers this function handles anyway (the
        // usual `keep-alive`, `upgrade`, `te`) need no parsing, and
        // `close` names a header only if one is there; the rest are
        // collected (no allocation when there is none).
        let mut named: Vec<HeaderName> = Vec::new();
        for value in headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
        {
            // The common single option, without splitting.
            if option_bit(value) & HANDLED_BITS != 0 {
                continue;
            }
            for item in value.split(',') {
                let item = item.trim();
                if item.is_empty() {
                    continue;
                }
                match option_bit(item) {
                    CLOSE_BIT if present & CLOSE_BIT != 0 => named.push(CLOSE),
                    0 => {
                        if let Ok(name) = HeaderName::from_bytes(item.as_bytes()) {
                            named.push(name);
                        }
                    }
                    // Removed by the bit pass below, or (`close`) no such
                    // header.
                    _ => {}
                }
            }
        }
        removed_named = !named.is_empty();
        for name in named {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if present & UPGRADE_BIT != 0 && !keep.upgrade {
        headers.remove(header::UPGRADE);
    }
    if present & TE_BIT != 0 {
        let trailers = keep.te_trailers && has_token(headers, &header::TE, "trailers");
        headers.remove(header::TE);
        if trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    }
    removed_named
}

/// `Upgrade`'s and `TE`'s bits in [`hop_by_hop_bit`], after the seven of
/// [`HOP_BY_HOP`] (bit `i` for entry `i`, `Connection` first).
const UPGRADE_BIT: u16 = 1 << 7;
const TE_BIT: u16 = 1 << 8;
/// A header named `close`: removed only when `Connection: close` names
/// it, which is the usual option and rarely a header.
const CLOSE_BIT: u16 = 1 << 9;
/// The header the `close` option names (RFC 9110 §7.6.1 removes every
/// header a `Connection` option names).
const CLOSE: HeaderName = HeaderName::from_static("close");

/// The bits the pass over the names handles by itself: all but
/// [`CLOSE_BIT`].
const HANDLED_BITS: u16 = !CLOSE_BIT;

/// The bit of a `Connection` option (any case) that names one of these
/// headers, as [`hop_by_hop_bit`] gives for the header itself; 0 for any
/// other.
fn option_bit(option: &str) -> u16 {
    name_bit(option, str::eq_ignore_ascii_case)
}

/// The bit of a hop-by-hop header this proxy removes or rewrites; 0 for
/// any other (those a `Connection` header names are found through it).
fn hop_by_hop_bit(name: &HeaderName) -> u16 {
    let name = name.as_str();
    // Header names are lower case.
    let bit = name_bit(name, |a, b| a == b);
    debug_assert!(
        bit == 0
            || bit >= UPGRADE_BIT
            || HOP_BY_HOP[bit.trailing_zeros() as usize].as_str() == name
    );
    bit
}

/// The bit of `name`, compared with `same`: bit `i` for entry `i` of
/// [`HOP_BY_HOP`], then [`UPGRADE_BIT`], [`TE_BIT`] and [`CLOSE_BIT`].
///
/// By the name's length first: most names have a length no hop-by-hop
/// header has, and the rest need one or two comparisons.
#[inline(always)]
fn name_bit(name: &str, same: impl Fn(&str, &str) -> bool) -> u16 {
    let is = |known: &str| same(name, known);
    match name.len() {
        2 if is("te") => TE_BIT,
        5 if is("close") => CLOSE_BIT,
        7 if is("upgrade") => UPGRADE_BIT,
        7 if is("trailer") => 1 << 3,
        10 if is("connection") => 1,
        10 if is("keep-alive") => 1 << 1,
        16 if is("proxy-connection") => 1 << 2,
        17 if is("transfer-encoding") => 1 << 4,
        18 if is("proxy-authenticate") => 1 << 5,
        19 if is("proxy-authorization") => 1 << 6,
        _ => 0,
    }
}

/// What to do with `X-Forwarded-*` and `Forwarded` values a request arrives with.
///
/// Default: [`Replace`](Self::Replace). A client can write anything in these
/// headers, so edge proxies that do not know their peer drop them: Traefik
/// and Caddy (since 2.5) replace them unless the peer is a trusted proxy,
/// and Kong takes `X-Forwarded-Proto`/`-Host` only from trusted peers.
/// nginx's `$proxy_add_x_forwarded_for` and Envoy append instead, which is
/// right behind a load balancer you run: choose [`Append`](Self::Append)
/// there, or [`AppendFrom`](Self::AppendFrom) to trust only some peers.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum IncomingForwarded {
    /// Drop the incoming values; the upstream sees only this hop's.
    #[default]
    Replace,
    /// Keep the incoming chain and append this hop: the client address is
    /// appended to `X-Forwarded-For` and an element to `Forwarded`;
    /// incoming `X-Forwarded-Proto` / `-Host` are kept as they are.
    Append,
    /// [`Append`](Self::Append) when the peer's address is in the list,
    /// [`Replace`](Self::Replace) otherwise (or without a
    /// [`PeerAddr`](crate::peer::PeerAddr)).
    AppendFrom(TrustedProxies),
}

impl IncomingForwarded {
    fn appends(&self, peer: Option<IpAddr>) -> bool {
        match self {
            Self::Replace => false,
            Self::Append => true,
            Self::AppendFrom(trusted) => peer.is_some_and(|ip| trusted.contains(ip)),
        }
    }
}

/// Which forwarding headers the proxy writes, and how.
#[derive(Debug, Clone)]
pub(crate) struct ForwardedConfig {
    pub(crate) x_forwarded: bool,
    pub(crate) forwarded: bool,
    pub(crate) incoming: IncomingForwarded,
    pub(crate) proto: Scheme,
}

/// What the forwarding headers say about one request.
pub(crate) struct Hop<'a> {
    /// The client's address, from [`PeerAddr`](crate::peer::PeerAddr).
    pub(crate) peer: Option<IpAddr>,
    /// The host the client asked for, if known.
    pub(crate) host: Option<&'a HeaderValue>,
    /// Whether the request came over TLS this process terminated
    /// ([`TlsConnection`](crate::peer::TlsConnection)): then the scheme is
    /// `https` whatever the configured one.
    pub(crate) tls: bool,
}

impl ForwardedConfig {
    /// The scheme the client used for this hop.
    fn proto<'s>(&'s self, hop: &Hop<'_>) -> &'s Scheme {
        if hop.tls { &Scheme::HTTPS } else { &self.proto }
    }

    /// Writes `X-Forwarded-For/-Proto/-Host` and/or `Forwarded` for this hop.
    pub(crate) fn apply(&self, headers: &mut HeaderMap, hop: &Hop<'_>) {
        let append = self.incoming.appends(hop.peer);
        if self.x_forwarded {
            self.apply_x_forwarded(headers, hop, append);
        }
        if self.forwarded {
            self.apply_forwarded(headers, hop, append);
        }
    }

    fn apply_x_forwarded(&self, headers: &mut HeaderMap, hop: &Hop<'_>, append: bool) {
        let incoming = if append {
            joined(headers, &X_FORWARDED_FOR)
        } else {
            None
        };
        let value = match (incoming, hop.peer) {
            (Some(mut chain), Some(peer)) => {
                let _ = write!(chain, ", {peer}");
                HeaderValue::try_from(chain).ok()
            }
            (Some(chain), None) => HeaderValue::try_from(chain).ok(),
            (None, Some(peer)) => Some(ip_value(peer)),
            (None, None) => None,
        };
        // `insert` replaces every incoming value.
        match value {
            Some(value) => headers.insert(X_FORWARDED_FOR, value),
            None => headers.remove(&X_FORWARDED_FOR),
        };

        if !(append && headers.contains_key(&X_FORWARDED_PROTO)) {
            headers.insert(X_FORWARDED_PROTO, scheme_value(self.proto(hop)));
        }
        if !(append && headers.contains_key(&X_FORWARDED_HOST)) {
            match hop.host {
                Some(host) => headers.insert(X_FORWARDED_HOST, host.clone()),
                None => headers.remove(&X_FORWARDED_HOST),
            };
        }
    }

    fn apply_forwarded(&self, headers: &mut HeaderMap, hop: &Hop<'_>, append: bool) {
        let mut value = if append {
            joined(headers, &header::FORWARDED).unwrap_or_default()
        } else {
            String::new()
        };
        if !value.is_empty() {
            value.push_str(", ");
        }
        value.push_str("for=");
        match hop.peer {
            Some(IpAddr::V4(ip)) => crate::net::push_ipv4(&mut value, ip),
            // RFC 7239 §6: an IPv6 address is bracketed, and then quoted as
            // `[` and `:` are not token characters.
            Some(IpAddr::V6(ip)) => {
                let _ = write!(value, "\"[{ip}]\"");
            }
            None => value.push_str("unknown"),
        }
        if let Some(host) = hop.host.and_then(|host| host.to_str().ok()) {
            value.push_str(";host=");
            push_token_or_quoted(&mut value, host);
        }
        value.push_str(";proto=");
        value.push_str(self.proto(hop).as_str());
        // `insert` replaces every incoming value.
        match HeaderValue::try_from(value) {
            Ok(value) => headers.insert(header::FORWARDED, value),
            Err(_) => headers.remove(header::FORWARDED),
        };
    }
}

/// All values of a list header joined with `", "`, `None` if absent or not
/// visible ASCII.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut out = String::new();
    for value in headers.get_all(name) {
        let value = value.to_str().ok()?.trim();
        if value.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(value);
    }
    (!out.is_empty()).then_some(out)
}

thread_local! {
    /// The last address [`ip_value`] wrote on this thread, and its value.
    static LAST_IP: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
}

/// An address as a header value (once per proxied request).
///
/// A keep-alive connection's requests, usually handled one after another
/// on one thread, share the client's address: the value of the last one is
/// kept per thread and cloned (a reference count) instead of formatting,
/// allocating and validating the text again.
fn ip_value(ip: IpAddr) -> HeaderValue {
    LAST_IP.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((cached, value)) = last.as_ref()
            && *cached == ip
        {
            return value.clone();
        }
        // Digits, dots and colons are always a valid header value.
        let value = HeaderValue::from_maybe_shared(bytes::Bytes::from(crate::net::ip_text(ip)))
            .unwrap_or(HeaderValue::from_static("unknown"));
        *last = Some((ip, value.clone()));
        value
    })
}

fn scheme_value(scheme: &Scheme) -> HeaderValue {
    if *scheme == Scheme::HTTPS {
        HeaderValue::from_static("https")
    } else if *scheme == Scheme::HTTP {
        HeaderValue::from_static("http")
    } else {
        // A `Scheme` is always a valid header value; fall back to http.
        HeaderValue::from_str(scheme.as_str()).unwrap_or(HeaderValue::from_static("http"))
    }
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Appends `s` as a token when it is one, else as a quoted-string (RFC 7239 §4).
fn push_token_or_quoted(out: &mut String, s: &str) {
    if !s.is_empty() && s.bytes().all(is_tchar) {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// The `Host` value for an upstream authority: the port only when it is not
/// the scheme's default.
pub(crate) fn host_value(scheme: &Scheme, authority: &Authority) -> Option<HeaderValue> {
    let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
    let host = authority.host();
    let value = match authority.port_u16() {
        Some(port) if port != default_port => format!("{host}:{port}"),
        _ => host.to_owned(),
    };
    HeaderValue::try_from(value).ok()
}

/// The `Via` values for each protocol version a message can arrive with.
#[derive(Debug, Clone)]
pub(crate) struct Via {
    http10: HeaderValue,
    http11: HeaderValue,
    http2: HeaderValue,
}

impl Via {
    /// `Via: 1.1 meshgate`, the default.
    pub(crate) fn meshgate() -> Self {
        Self {
            http10: HeaderValue::from_static("1.0 meshgate"),
            http11: HeaderValue::from_static("1.1 meshgate"),
            http2: HeaderValue::from_static("2 meshgate"),
        }
    }

    /// `Via` values naming this hop `pseudonym` (a token, RFC 9110 §7.6.3).
    pub(crate) fn new(pseudonym: &str) -> Result<Self, BuildError> {
        if pseudonym.is_empty() || !pseudonym.bytes().all(is_tchar) {
            return Err(BuildError::new(format!(
                "via pseudonym {pseudonym:?} is not an HTTP token"
            )));
        }
        let value = |version: &str| {
            HeaderValue::try_from(format!("{version} {pseudonym}"))
                .map_err(|_| BuildError::new("via pseudonym is not a header value"))
        };
        Ok(Self {
            http10: value("1.0")?,
            http11: value("1.1")?,
            http2: value("2")?,
        })
    }

    /// The value for a message received as `version`.
    pub(crate) fn value(&self, version: http::Version) -> HeaderValue {
        match version {
            http::Version::HTTP_10 | http::Version::HTTP_09 => self.http10.clone(),
            http::Version::HTTP_2 | http::Version::HTTP_3 => self.http2.clone(),
            _ => self.http11.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn every_hop_by_hop_name_has_its_bit_and_look_alikes_have_none() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_bit(name), 1 << i, "{name}");
        }
        assert_eq!(hop_by_hop_bit(&header::UPGRADE), UPGRADE_BIT);
        assert_eq!(hop_by_hop_bit(&header::TE), TE_BIT);
        assert_eq!(hop_by_hop_bit(&CLOSE), CLOSE_BIT);
        // An option names the same header in any case.
        for name in HOP_BY_HOP
            .iter()
            .chain([&header::UPGRADE, &header::TE, &CLOSE])
        {
            let option = name.as_str().to_ascii_uppercase();
            assert_eq!(option_bit(&option), hop_by_hop_bit(name), "{option}");
        }
        // Same lengths, other names.
        for other in [
            "tk",
            "trailers",
            "user-agent",
            "keep-alive2",
            "x-forwarded-host",
        ] {
            let name = HeaderName::from_bytes(other.as_bytes()).unwrap();
            assert_eq!(hop_by_hop_bit(&name), 0, "{other}");
        }
        assert_eq!(hop_by_hop_bit(&header::ACCEPT), 0);
    }

    #[test]
    fn ipv4_addresses_format_as_display_does() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "9.10.99.100",
            "192.168.255.7",
            "255.255.255.255",
        ] {
            let ip: std::net::Ipv4Addr = ip.parse().unwrap();
            assert_eq!(ip_value(IpAddr::V4(ip)), ip.to_string().as_str());
        }
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(ip_value(v6), "2001:db8::1");
        // The thread's last address is reused only for that address.
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        for ip in [v4, v4, v6, v6, v4] {
            assert_eq!(ip_value(ip), ip.to_string().as_str());
        }
    }

    #[test]
    fn hop_by_hop_headers_and_connection_listed_ones_go() {
        let mut map = headers(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", "upgrade"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers, deflate"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic abc"),
            ("proxy-authenticate", "Basic"),
            ("x-secret", "1"),
            ("x-request-id", "abc"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ]);
        strip_hop_by_hop(&mut map, Keep::default());
        let names: Vec<_> = map.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-request-id", "traceparent"]);
    }

    #[test]
    fn connection_options_name_headers_in_any_case_and_others_stay() {
        let untouched = headers(&[("x-a", "1"), ("accept", "*/*")]);
        let mut map = untouched.clone();
        strip_hop_by_hop(&mut map, Keep::default());
        assert_eq!(map, untouched);

        let mut map = headers(&[
            ("connection", "close, X-A ,KEEP-ALIVE"),
            ("x-a", "1"),
            ("Keep-Alive", "timeout=5"),
            ("close", "odd but named"),
            ("x-b", "2"),
        ]);
        strip_hop_by_hop(&mut map, Keep::default());
        let names: Vec<_> = map.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-b"]);

        // A lone option, in any case, without a list around it; a header
        // named `close` stays unless `close` is an option (`Keep-Alive`
        // always goes).
        for (option, left) in [
            ("Close", &["x-a"][..]),
            ("KEEP-ALIVE", &["close", "x-a"][..]),
            ("x-a", &["close"][..]),
        ] {
            let mut map = headers(&[
                ("connection", option),
                ("x-a", "1"),
                ("close", "a header"),
                ("keep-alive", "timeout=5"),
            ]);
            strip_hop_by_hop(&mut map, Keep::default());
            let mut names: Vec<_> = map.keys().map(HeaderName::as_str).collect();
            names.sort_unstable();
            assert_eq!(names, left, "Connection: {option}");
        }
    }

    #[test]
    fn upgrade_and_te_trailers_are_kept_when_asked() {
        let mut map = headers(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("te", "gzip, trailers"),
        ]);
        strip_hop_by_hop(
            &mut map,
            Keep {
                upgrade: true,
                te_trailers: true,
            },
        );
        assert_eq!(map["upgrade"], "websocket");
        assert_eq!(map["te"], "trailers");
        assert!(!map.contains_key("connection"));

        let mut map = headers(&[("te", "gzip")]);
        strip_hop_by_hop(
            &mut map,
            Keep {
                upgrade: false,
                te_trailers: true,
            },
        );
        assert!(map.is_empty());
    }

    fn config(incoming: IncomingForwarded) -> ForwardedConfig {
        ForwardedConfig {
            x_forwarded: true,
            forwarded: true,
            incoming,
            proto: Scheme::HTTP,
        }
    }

    #[test]
    fn replace_drops_the_incoming_chain() {
        let mut map = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil"),
            ("forwarded", "for=6.6.6.6"),
        ]);
        let host = HeaderValue::from_static("api.example.com");
        let hop = Hop {
            peer: Some("192.0.2.7".parse().unwrap()),
            host: Some(&host),
            tls: false,
        };
        config(IncomingForwarded::Replace).apply(&mut map, &hop);
        assert_eq!(map["x-forwarded-for"], "192.0.2.7");
        assert_eq!(map["x-forwarded-proto"], "http");
        assert_eq!(map["x-forwarded-host"], "api.example.com");
        assert_eq!(
            map["forwarded"],
            "for=192.0.2.7;host=api.example.com;proto=http"
        );
    }

    #[test]
    fn append_keeps_the_chain_and_quotes_ipv6() {
        let mut map = headers(&[
            ("x-forwarded-for", "203.0.113.1"),
            ("x-forwarded-for", "198.51.100.2"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=203.0.113.1;proto=https"),
        ]);
        let host = HeaderValue::from_static("example.com:8443");
        let hop = Hop {
            peer: Some("2001:db8::1".parse().unwrap()),
            host: Some(&host),
            tls: false,
        };
        config(IncomingForwarded::Append).apply(&mut map, &hop);
        assert_eq!(
            map["x-forwarded-for"],
            "203.0.113.1, 198.51.100.2, 2001:db8::1"
        );
        assert_eq!(map["x-forwarded-proto"], "https");
        assert_eq!(map["x-forwarded-host"], "example.com:8443");
        assert_eq!(
            map["forwarded"],
            "for=203.0.113.1;proto=https, for=\"[2001:db8::1]\";host=\"example.com:8443\";proto=http"
        );
    }

    #[test]
    fn no_peer_means_unknown_in_forwarded_and_nothing_appended() {
        let mut map = headers(&[("x-forwarded-for", "6.6.6.6")]);
        let hop = Hop {
            peer: None,
            host: None,
            tls: false,
        };
        config(IncomingForwarded::Replace).apply(&mut map, &hop);
        assert!(!map.contains_key("x-forwarded-for"));
        assert!(!map.contains_key("x-forwarded-host"));
        assert_eq!(map["forwarded"], "for=unknown;proto=http");
    }

    #[test]
    fn a_request_over_tls_reports_https_whatever_the_configured_scheme() {
        let mut map = headers(&[]);
        let hop = Hop {
            peer: Some("192.0.2.7".parse().unwrap()),
            host: None,
            tls: true,
        };
        config(IncomingForwarded::Replace).apply(&mut map, &hop);
        assert_eq!(map["x-forwarded-proto"], "https");
        assert_eq!(map["forwarded"], "for=192.0.2.7;proto=https");
    }

    #[test]
    fn append_from_appends_only_for_trusted_peers() {
        let trusted = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        let append_from = IncomingForwarded::AppendFrom(trusted);
        assert!(append_from.appends(Some("10.1.1.1".parse().unwrap())));
        assert!(append_from.appends(Some("::ffff:10.1.1.1".parse().unwrap())));
        assert!(!append_from.appends(Some("8.8.8.8".parse().unwrap())));
        assert!(!append_from.appends(None));
    }

    #[test]
    fn via_names_the_received_protocol() {
        let via = Via::new("edge-1").unwrap();
        assert_eq!(via.value(http::Version::HTTP_11), "1.1 edge-1");
        assert_eq!(via.value(http::Version::HTTP_2), "2 edge-1");
        assert_eq!(via.value(http::Version::HTTP_10), "1.0 edge-1");
        assert!(Via::new("two words").is_err());
        assert!(Via::new("").is_err());
    }

    #[test]
    fn host_values_omit_default_ports() {
        let authority: Authority = "10.0.0.7:80".parse().unwrap();
        assert_eq!(host_value(&Scheme::HTTP, &authority).unwrap(), "10.0.0.7");
        let authority: Authority = "10.0.0.7:8080".parse().unwrap();
        assert_eq!(
            host_value(&Scheme::HTTP, &authority).unwrap(),
            "10.0.0.7:8080"
        );
    }
}
