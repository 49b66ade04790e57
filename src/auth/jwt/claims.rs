//! The verified claims of a token, as a request extension.

use std::fmt;
use std::sync::Arc;

use http::HeaderValue;
use serde_json::{Map, Value};

/// The claims of a verified JWT, inserted into the request's extensions by
/// [`JwtLayer`](super::JwtLayer). Cloning is cheap (one reference count).
///
/// ```
/// use meshgate::auth::jwt::Claims;
///
/// let claims = Claims::from_json(serde_json::json!({
///     "sub": "user-7", "scope": "read write", "roles": ["admin", "ops"]
/// })).unwrap();
/// assert_eq!(claims.subject(), Some("user-7"));
/// assert!(claims.has_scope("write"));
/// assert_eq!(claims.roles().collect::<Vec<_>>(), ["admin", "ops"]);
/// ```
#[derive(Clone, PartialEq)]
pub struct Claims(Arc<Map<String, Value>>);

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Claim values can be personal data: only names are printed.
        f.debug_struct("Claims")
            .field("names", &self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The strings of a claim that is a string of space-separated words or an
/// array of strings.
fn words(value: Option<&Value>) -> impl Iterator<Item = &str> {
    let (text, list) = match value {
        Some(Value::String(s)) => (Some(s.as_str()), None),
        Some(Value::Array(items)) => (None, Some(items)),
        _ => (None, None),
    };
    text.into_iter()
        .flat_map(|s| s.split([' ', ',']).filter(|w| !w.is_empty()))
        .chain(
            list.into_iter()
                .flat_map(|items| items.iter().filter_map(Value::as_str)),
        )
}

impl Claims {
    pub(crate) fn new(map: Map<String, Value>) -> Self {
        Claims(Arc::new(map))
    }

    /// Claims from a JSON object (`None` for another JSON value).
    pub fn from_json(value: Value) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Claims::new(map)),
            _ => None,
        }
    }

    /// A claim.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// All claims.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The `sub` claim.
    pub fn subject(&self) -> Option<&str> {
        self.get("sub").and_then(Value::as_str)
    }

    /// The `iss` claim.
    pub fn issuer(&self) -> Option<&str> {
        self.get("iss").and_then(Value::as_str)
    }

    /// The scopes: the space-separated `scope` claim (RFC 8693) and the
    /// `scp` claim (string or array).
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        words(self.get("scope")).chain(words(self.get("scp")))
    }

    /// The roles: the `roles` claim (array, or a space/comma-separated string).
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        words(self.get("roles"))
    }

    /// Whether the token carries this scope.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }

    /// Whether the token carries this role.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles().any(|r| r == role)
    }

    /// A claim as a header value: a string as is, a number or boolean
    /// printed, an array of those comma-joined. `None` for objects, nulls,
    /// empty arrays and values a header cannot carry.
    pub fn header_value(&self, name: &str) -> Option<HeaderValue> {
        fn push(out: &mut Vec<u8>, value: &Value) -> Option<()> {
            use std::io::Write as _;
            match value {
                Value::String(s) => out.extend_from_slice(s.as_bytes()),
                Value::Number(n) => write!(out, "{n}").ok()?,
                Value::Bool(b) => write!(out, "{b}").ok()?,
                _ => return None,
            }
            Some(())
        }
        // The value is checked as `from_bytes` does: control characters are
        // refused, so a claim cannot split or inject headers. A joined value
        // is built once and handed over without a copy.
        match self.get(name)? {
            Value::String(s) => HeaderValue::from_str(s).ok(),
            Value::Array(items) if !items.is_empty() => {
                let mut out = Vec::with_capacity(16 * items.len());
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    push(&mut out, item)?;
                }
                HeaderValue::from_maybe_shared(bytes::Bytes::from(out)).ok()
            }
            other => {
                let mut out = Vec::new();
                push(&mut out, other)?;
                HeaderValue::from_maybe_shared(bytes::Bytes::from(out)).ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values() {
        let claims = Claims::from_json(serde_json::json!({
            "sub": "u1", "n": 5, "ok": true, "roles": ["a", "b"], "obj": {}, "bad": "x\ny",
            "scp": ["s1"], "scope": "s2 s3", "injected": ["a", "b\r\nx-evil: 1"], "mixed": ["a", 1, true],
        }))
        .unwrap();
        assert_eq!(claims.header_value("sub").unwrap(), "u1");
        assert_eq!(claims.header_value("n").unwrap(), "5");
        assert_eq!(claims.header_value("ok").unwrap(), "true");
        assert_eq!(claims.header_value("roles").unwrap(), "a,b");
        assert!(claims.header_value("obj").is_none());
        assert!(claims.header_value("bad").is_none());
        assert!(claims.header_value("injected").is_none());
        assert_eq!(claims.header_value("mixed").unwrap(), "a,1,true");
        assert!(claims.header_value("none").is_none());
        assert_eq!(claims.scopes().collect::<Vec<_>>(), ["s2", "s3", "s1"]);
        assert!(!format!("{claims:?}").contains("u1"));
    }
}
