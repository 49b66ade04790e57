use std::fmt;
use std::time::Duration;

use http::{Extensions, Uri};

/// One sub-request of an [`Aggregate`](super::Aggregate): where its answer
/// goes in the merged object, which URI it calls, its timeout and whether
/// the whole fails with it.
///
/// The URI template may contain `{name}` placeholders, filled from the
/// original request: first a path parameter of the matched route
/// ([`MatchedRoute`](crate::routing::MatchedRoute), feature `routing`), then
/// a query parameter of the original URI. Substituted values are
/// percent-encoded (existing `%XX` escapes are kept), so a value cannot add
/// path segments or query parameters of its own.
#[derive(Debug, Clone)]
pub struct AggregateCall {
    pub(crate) key: String,
    pub(crate) template: Vec<Segment>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Literal(String),
    Param(String),
}

/// An aggregate that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateError(pub(crate) String);

impl fmt::Display for AggregateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AggregateError {}

impl AggregateCall {
    /// A required call whose JSON answer goes under `key`, to `uri` (a path
    /// like `/users/{id}` or an absolute URI, with `{name}` placeholders).
    ///
    /// Errors on an unterminated or empty placeholder.
    pub fn new(key: impl Into<String>, uri: &str) -> Result<Self, AggregateError> {
        let mut template = Vec::new();
        let mut rest = uri;
        while let Some(start) = rest.find('{') {
            if start > 0 {
                template.push(Segment::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 1..];
            let end = after
                .find('}')
                .ok_or_else(|| AggregateError(format!("unterminated `{{` in {uri:?}")))?;
            let name = after[..end].trim();
            if name.is_empty() || name.contains('{') {
                return Err(AggregateError(format!(
                    "empty or nested placeholder in {uri:?}"
                )));
            }
            template.push(Segment::Param(name.to_owned()));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            template.push(Segment::Literal(rest.to_owned()));
        }
        Ok(Self {
            key: key.into(),
            template,
            timeout: None,
            required: true,
        })
    }

    /// The call's own timeout; the aggregate's deadline applies in any case.
    ///
    /// Default: none (only the deadline).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// When this call fails, its key is `null` and `errors.<key>` says why;
    /// the aggregate still answers `200`.
    ///
    /// Default: required — a failure fails the whole aggregate (`504` for a
    /// timeout, else `502`).
    #[must_use]
    pub fn optional(mut self) -> Self {
        self.required = false;
        self
    }

    /// The URI for a request, or the name of a missing parameter.
    pub(crate) fn uri(&self, original: &Uri, extensions: &Extensions) -> Result<Uri, String> {
        let mut out = String::new();
        for segment in &self.template {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Param(name) => {
                    let value = param(name, original, extensions)
                        .ok_or_else(|| format!("missing parameter `{name}`"))?;
                    push_encoded(&mut out, value);
                }
            }
        }
        out.parse()
            .map_err(|_| String::from("the parameters do not make a valid URI"))
    }
}

fn param<'a>(name: &str, original: &'a Uri, extensions: &'a Extensions) -> Option<&'a str> {
    #[cfg(feature = "routing")]
    if let Some(value) = extensions
        .get::<crate::routing::MatchedRoute>()
        .and_then(|route| route.param(name))
    {
        return Some(value);
    }
    #[cfg(not(feature = "routing"))]
    let _ = extensions;
    original.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

/// Percent-encodes all but unreserved characters and existing `%` escapes.
fn push_encoded(out: &mut String, value: &str) {
    use std::fmt::Write as _;
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%') {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_query_parameters_encoded() {
        let call = AggregateCall::new("orders", "/orders?user={id}&n={limit}").unwrap();
        let original: Uri = "/dashboard?id=7&limit=a/b%20c".parse().unwrap();
        assert_eq!(
            call.uri(&original, &Extensions::new()).unwrap(),
            "/orders?user=7&n=a%2Fb%20c"
        );
        let missing: Uri = "/dashboard?limit=1".parse().unwrap();
        assert_eq!(
            call.uri(&missing, &Extensions::new()).unwrap_err(),
            "missing parameter `id`"
        );
        assert!(AggregateCall::new("x", "/a/{id").is_err());
        assert!(AggregateCall::new("x", "/a/{}").is_err());
    }
}
