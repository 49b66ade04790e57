//! Host rules and the host of a request.

use http::Request;
use http::header::HOST;

use super::error::RouteErrorKind;

/// The longest host name DNS allows; longer request hosts match no host rule.
const MAX_HOST: usize = 253;

/// A validated host rule, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostRule {
    /// `api.example.com`
    Exact(Box<str>),
    /// `*.example.com`, stored as the suffix `example.com`.
    Wildcard(Box<str>),
}

impl HostRule {
    pub(crate) fn parse(host: &str) -> Result<Self, RouteErrorKind> {
        let invalid = |reason| RouteErrorKind::InvalidHost {
            host: host.to_owned(),
            reason,
        };
        let lower = host.trim_end_matches('.').to_ascii_lowercase();
        let (wildcard, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        if name.is_empty() {
            return Err(invalid("empty host"));
        }
        if name.len() > MAX_HOST {
            return Err(invalid("longer than 253 characters"));
        }
        if name.contains('*') {
            return Err(invalid(
                "a wildcard must be the whole first label: `*.example.com`",
            ));
        }
        if name.contains(':') && !name.starts_with('[') {
            return Err(invalid(
                "a host rule has no port (ports are ignored when matching)",
            ));
        }
        if !name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'[' | b']' | b':')
        }) {
            return Err(invalid("not a host name or IP literal"));
        }
        Ok(if wildcard {
            Self::Wildcard(name.into())
        } else {
            Self::Exact(name.into())
        })
    }

    /// Whether this rule matches the (lower-case, port-less) `host`.
    #[cfg(test)]
    pub(crate) fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(h) => **h == *host,
            Self::Wildcard(suffix) => wildcard_matches(suffix, host),
        }
    }
}

/// `*.suffix` matches `a.suffix` and `a.b.suffix`, never `suffix` itself.
#[cfg(test)]
fn wildcard_matches(suffix: &str, host: &str) -> bool {
    host.len() > suffix.len() + 1
        && host.ends_with(suffix)
        && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
}

/// A request host, lower-cased without its port: borrowed from the request
/// when it already is lower-case (the common case), else copied to a stack
/// buffer.
// It lives on the stack for one lookup; boxing the rare lowered host would
// allocate on the request path.
#[allow(clippy::large_enum_variant)]
pub(crate) enum RequestHost<'a> {
    Borrowed(&'a str),
    Lowered { buf: [u8; MAX_HOST], len: usize },
}

impl<'a> RequestHost<'a> {
    /// The host of `req`: the URI authority when there is one (HTTP/2
    /// `:authority`, or an absolute-form request target, which RFC 9112
    /// §3.2.2 puts before `Host`), else the `Host` header. `None` when the
    /// request has no usable host (missing, not visible ASCII, too long).
    pub(crate) fn of<T>(req: &'a Request<T>) -> Option<Self> {
        let raw: &str = match req.uri().authority() {
            Some(authority) => authority.host(),
            // `to_str` refuses values that are not visible ASCII, which no
            // host rule could match anyway.
            None => req.headers().get(HOST)?.to_str().ok()?,
        };
        Self::parse(raw)
    }

    pub(crate) fn parse(raw: &'a str) -> Option<Self> {
        let bytes = raw.as_bytes();
        // The common case, a lower-case name or IPv4 address with or
        // without a port, borrowed. Folds without early exit vectorise.
        let unusual = bytes.iter().fold(false, |acc, &b| {
            acc | !matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b':')
        });
        if unusual || bytes.len() > MAX_HOST + 6 {
            return Self::lowered(raw);
        }
        let host = match bytes.iter().position(|&b| b == b':') {
            Some(colon) => &raw[..colon],
            None => raw,
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        (!host.is_empty() && host.len() <= MAX_HOST).then_some(Self::Borrowed(host))
    }

    #[cold]
    #[inline(never)]
    fn lowered(raw: &'a str) -> Option<Self> {
        let host = strip_port(raw);
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty() || host.len() > MAX_HOST || !host.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        if !host.bytes().any(|b| b.is_ascii_uppercase()) {
            return Some(Self::Borrowed(host));
        }
        let mut buf = [0u8; MAX_HOST];
        for (slot, b) in buf.iter_mut().zip(host.bytes()) {
            *slot = b.to_ascii_lowercase();
        }
        Some(Self::Lowered {
            buf,
            len: host.len(),
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Borrowed(host) => host,
            // Only visible ASCII is copied in `parse`, so this cannot fail;
            // an empty host (which matches no host rule) is the safe fallback.
            Self::Lowered { buf, len } => std::str::from_utf8(&buf[..*len]).unwrap_or(""),
        }
    }
}

/// `host:port` → `host`; `[v6]:port` → `[v6]`.
fn strip_port(raw: &str) -> &str {
    if raw.starts_with('[') {
        return match raw.find(']') {
            Some(end) => &raw[..=end],
            None => raw,
        };
    }
    match raw.rfind(':') {
        Some(colon) => &raw[..colon],
        None => raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(raw: &str) -> Option<String> {
        RequestHost::parse(raw).map(|h| h.as_str().to_owned())
    }

    #[test]
    fn request_hosts_are_lower_cased_without_port() {
        assert_eq!(
            host("API.Example.com:8443").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(host("example.com.").as_deref(), Some("example.com"));
        assert_eq!(host("[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(host(""), None);
        assert_eq!(host(":80"), None);
        assert_eq!(host(&"a".repeat(300)), None);
        assert_eq!(host("a b"), None);
        assert_eq!(host("a.test:"), Some("a.test".into()));
        assert_eq!(host("A_b.test"), Some("a_b.test".into()));
    }

    #[test]
    fn rules() {
        let wild = HostRule::parse("*.Example.com").unwrap();
        assert!(wild.matches("a.example.com"));
        assert!(wild.matches("a.b.example.com"));
        assert!(!wild.matches("example.com"));
        assert!(!wild.matches("badexample.com"));
        assert!(HostRule::parse("").is_err());
        assert!(HostRule::parse("*.").is_err());
        assert!(HostRule::parse("a.*.com").is_err());
        assert!(HostRule::parse("example.com:80").is_err());
        assert!(HostRule::parse("exa mple.com").is_err());
        assert_eq!(
            HostRule::parse("[::1]").unwrap(),
            HostRule::Exact("[::1]".into())
        );
    }
}
