//! Header and query-parameter matchers, compiled once.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use regex::bytes::Regex;

use super::error::RouteErrorKind;
use crate::percent::decode_form;

/// How a header or query value is compared.
#[derive(Debug, Clone)]
pub(crate) enum ValueSpec {
    Exact(String),
    Regex(String),
    Present,
    Absent,
}

/// A compiled value test.
#[derive(Debug)]
enum ValueTest {
    Exact(Box<[u8]>),
    Regex(Regex),
    Present,
    Absent,
}

/// Compiles `pattern` to match the whole value (as Envoy's `safe_regex`).
///
/// Values are bytes (header values may hold obs-text), so classes and `.`
/// match bytes, not Unicode scalars; a non-ASCII literal still matches its
/// UTF-8 encoding. The compiled size is bounded (1 MiB).
pub(crate) fn compile_regex(pattern: &str) -> Result<Regex, RouteErrorKind> {
    regex::bytes::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .unicode(false)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| RouteErrorKind::InvalidRegex {
            regex: pattern.to_owned(),
            reason: e.to_string(),
        })
}

impl ValueTest {
    fn compile(spec: &ValueSpec) -> Result<Self, RouteErrorKind> {
        Ok(match spec {
            ValueSpec::Exact(v) => Self::Exact(v.as_bytes().into()),
            ValueSpec::Regex(r) => Self::Regex(compile_regex(r)?),
            ValueSpec::Present => Self::Present,
            ValueSpec::Absent => Self::Absent,
        })
    }

    /// Whether the values (any of them, for exact and regex) pass.
    fn test<'a>(&self, mut values: impl Iterator<Item = &'a [u8]>) -> bool {
        match self {
            Self::Exact(want) => values.any(|v| v == &**want),
            Self::Regex(re) => values.any(|v| re.is_match(v)),
            Self::Present => values.next().is_some(),
            Self::Absent => values.next().is_none(),
        }
    }
}

/// A header matcher. Names are case-insensitive; exact values are compared
/// byte for byte; a regex must match a whole value; with repeated headers,
/// one matching value is enough.
#[derive(Debug)]
pub(crate) struct HeaderMatch {
    name: HeaderName,
    test: ValueTest,
}

impl HeaderMatch {
    pub(crate) fn compile(name: &str, spec: &ValueSpec) -> Result<Self, RouteErrorKind> {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| RouteErrorKind::InvalidHeader {
                header: name.to_owned(),
            })?;
        if let ValueSpec::Exact(value) = spec
            && HeaderValue::from_str(value).is_err()
        {
            return Err(RouteErrorKind::InvalidHeader {
                header: format!("{name}: {value}"),
            });
        }
        Ok(Self {
            test: ValueTest::compile(spec)?,
            name,
        })
    }

    pub(crate) fn matches(&self, headers: &HeaderMap) -> bool {
        self.test.test(
            headers
                .get_all(&self.name)
                .iter()
                .map(HeaderValue::as_bytes),
        )
    }
}

/// A query-parameter matcher. Keys and values are compared after
/// percent-decoding (`+` is a space); a regex must match a whole value; with
/// repeated keys, one matching value is enough.
#[derive(Debug)]
pub(crate) struct QueryMatch {
    key: Box<[u8]>,
    test: ValueTest,
}

impl QueryMatch {
    pub(crate) fn compile(key: &str, spec: &ValueSpec) -> Result<Self, RouteErrorKind> {
        Ok(Self {
            key: key.as_bytes().into(),
            test: ValueTest::compile(spec)?,
        })
    }

    pub(crate) fn matches(&self, query: Option<&str>) -> bool {
        let query = query.unwrap_or("");
        let pairs = query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (*decode_form(k.as_bytes()) == *self.key).then(|| decode_form(v.as_bytes()))
            });
        match &self.test {
            // Decoded values may be owned, so they are tested one by one.
            ValueTest::Exact(want) => pairs.into_iter().any(|v| *v == **want),
            ValueTest::Regex(re) => pairs.into_iter().any(|v| re.is_match(&v)),
            ValueTest::Present => pairs.into_iter().next().is_some(),
            ValueTest::Absent => pairs.into_iter().next().is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        let mut headers = HeaderMap::new();
        headers.append("x-env", HeaderValue::from_static("dev"));
        headers.append("x-env", HeaderValue::from_static("prod"));
        headers.insert(
            "user-agent",
            HeaderValue::from_bytes(b"curl/8 \xff").unwrap(),
        );
        let exact = HeaderMatch::compile("X-Env", &ValueSpec::Exact("prod".into())).unwrap();
        assert!(exact.matches(&headers));
        let re = HeaderMatch::compile("user-agent", &ValueSpec::Regex("curl/.*".into())).unwrap();
        assert!(re.matches(&headers));
        let anchored = HeaderMatch::compile("x-env", &ValueSpec::Regex("pro".into())).unwrap();
        assert!(!anchored.matches(&headers));
        let absent = HeaderMatch::compile("x-debug", &ValueSpec::Absent).unwrap();
        assert!(absent.matches(&headers));
        assert!(HeaderMatch::compile("bad header", &ValueSpec::Present).is_err());
        assert!(HeaderMatch::compile("x", &ValueSpec::Exact("a\nb".into())).is_err());
        assert!(HeaderMatch::compile("x", &ValueSpec::Regex("(".into())).is_err());
        let accent = HeaderMatch::compile("x-name", &ValueSpec::Regex("caf(é|e)".into())).unwrap();
        headers.insert(
            "x-name",
            HeaderValue::from_bytes("café".as_bytes()).unwrap(),
        );
        assert!(accent.matches(&headers));
    }

    #[test]
    fn query() {
        let q = QueryMatch::compile("v", &ValueSpec::Regex("[0-9]+".into())).unwrap();
        assert!(q.matches(Some("a=1&v=12")));
        assert!(!q.matches(Some("v=x")));
        assert!(!q.matches(None));
        let q = QueryMatch::compile("name", &ValueSpec::Exact("a b".into())).unwrap();
        assert!(q.matches(Some("name=a+b")));
        assert!(q.matches(Some("n%61me=a%20b")));
        let q = QueryMatch::compile("debug", &ValueSpec::Present).unwrap();
        assert!(q.matches(Some("debug")));
        assert!(!q.matches(Some("debugx=1")));
    }
}
