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
pub(crate) fn wildcard_matches(suffix: &str, host: &str) -> bool {
    host.len() > suffix.len() + 1
        && host.ends_with(suffix)
        && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
}

/// A request host, lower-cased without its port, in a stack buffer.
pub(crate) struct RequestHost {
    buf: [u8; MAX_HOST],
    len: usize,
}

impl RequestHost {
    /// The host of `req`: the URI authority when there is one (HTTP/2
    /// `:authority`, or an absolute-form request target, which RFC 9112
    /// §3.2.2 puts before `Host`), else the `Host` header. `None` when the
    /// request has no usable host (missing, not visible ASCII, too long).
    pub(crate) fn of<T>(req: &Request<T>) -> Option<Self> {
        let raw: &[u8] = match req.uri().authority() {
            Some(authority) => authority.host().as_bytes(),
            None => req.headers().get(HOST)?.as_bytes(),
        };
        Self::parse(raw)
    }

    pub(crate) fn parse(raw: &[u8]) -> Option<Self> {
        let host = strip_port(raw);
        let host = host.strip_suffix(b".").unwrap_or(host);
        if host.is_empty() || host.len() > MAX_HOST {
            return None;
        }
        let mut buf = [0u8; MAX_HOST];
        for (slot, &b) in buf.iter_mut().zip(host) {
            if !b.is_ascii_graphic() {
                return None;
            }
            *slot = b.to_ascii_lowercase();
        }
        Some(Self {
            buf,
            len: host.len(),
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII bytes are copied in `parse`, so this cannot fail; an
        // empty host (which matches no host rule) is the safe fallback.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

/// `host:port` → `host`; `[v6]:port` → `[v6]`.
fn strip_port(raw: &[u8]) -> &[u8] {
    if raw.first() == Some(&b'[') {
        return match raw.iter().position(|&b| b == b']') {
            Some(end) => &raw[..=end],
            None => raw,
        };
    }
    match raw.iter().rposition(|&b| b == b':') {
        Some(colon) => &raw[..colon],
        None => raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(raw: &str) -> Option<String> {
        RequestHost::parse(raw.as_bytes()).map(|h| h.as_str().to_owned())
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
