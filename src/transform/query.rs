use std::borrow::Cow;

use http::Uri;
use http::uri::PathAndQuery;

use super::template::{Lookup, Template, TemplateError, Var};

/// Query parameter operations on the request, applied in the order remove,
/// rename, set, add (as [`HeaderOps`](super::HeaderOps)).
///
/// * **remove**: every occurrence of the parameter goes;
/// * **rename** `from → to`: every `from` becomes `to`, and any `to` the
///   client sent goes; nothing happens when `from` is absent;
/// * **set**: the parameter gets exactly this value, replacing any (added at
///   the end when absent);
/// * **add**: the value is appended, keeping existing ones.
///
/// Names are compared after percent-decoding; parameters the operations do
/// not touch keep their original encoding and order. New values are
/// percent-encoded (everything but `A-Z a-z 0-9 - . _ ~`). Values may be
/// templates, as for [`HeaderTemplate`](super::HeaderTemplate); when a
/// variable is missing, `set` removes the parameter and `add` adds nothing.
///
/// The path is not changed here: path rewrites belong to the route
/// (`routing`'s `rewrite` / `strip_prefix`).
///
/// ```
/// use meshgate::transform::QueryOps;
///
/// let ops = QueryOps::new()
///     .remove("debug")
///     .rename("q", "query")
///     .set("api-version", "2")
///     .unwrap()
///     .add("tenant", "${header.x-tenant}")
///     .unwrap();
/// assert!(!ops.is_empty());
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct QueryOps {
    remove: Vec<String>,
    rename: Vec<(String, String)>,
    set: Vec<(String, Value)>,
    add: Vec<(String, Value)>,
}

#[derive(Debug, Clone)]
enum Value {
    /// Already percent-encoded.
    Static(String),
    Dynamic(Template),
}

impl Value {
    fn parse(text: &str) -> Result<Self, TemplateError> {
        Ok(match Template::parse(text)? {
            None => Value::Static(encode(text)),
            Some(template) => Value::Dynamic(template),
        })
    }

    fn render(&self, vars: &dyn Lookup) -> Option<Cow<'_, str>> {
        match self {
            Value::Static(encoded) => Some(Cow::Borrowed(encoded)),
            Value::Dynamic(template) => Some(Cow::Owned(encode(&template.render(vars)?))),
        }
    }
}

impl QueryOps {
    /// No operations.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes every occurrence of `name`.
    pub fn remove(mut self, name: impl Into<String>) -> Self {
        self.remove.push(name.into());
        self
    }

    /// Renames `from` to `to`, replacing `to`'s values.
    pub fn rename(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.rename.push((from.into(), to.into()));
        self
    }

    /// Sets `name` to `value` (a template), replacing any values.
    pub fn set(mut self, name: impl Into<String>, value: &str) -> Result<Self, TemplateError> {
        self.set.push((name.into(), Value::parse(value)?));
        Ok(self)
    }

    /// Appends `name=value` (a template).
    pub fn add(mut self, name: impl Into<String>, value: &str) -> Result<Self, TemplateError> {
        self.add.push((name.into(), Value::parse(value)?));
        Ok(self)
    }

    /// Whether there is nothing to do.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.set.is_empty()
            && self.add.is_empty()
    }

    /// The operations of a config `QueryTransform`.
    #[cfg(feature = "config")]
    pub fn from_config(config: &crate::config::QueryTransform) -> Result<Self, TemplateError> {
        let mut ops = Self::new();
        for name in &config.remove {
            ops = ops.remove(name.as_str());
        }
        for (from, to) in &config.rename {
            ops = ops.rename(from.as_str(), to.as_str());
        }
        for (name, value) in &config.set {
            ops = ops
                .set(name.as_str(), value)
                .map_err(|e| e.at(name).at("set"))?;
        }
        for (name, value) in &config.add {
            ops = ops
                .add(name.as_str(), value)
                .map_err(|e| e.at(name).at("add"))?;
        }
        Ok(ops)
    }

    pub(crate) fn vars(&self) -> impl Iterator<Item = &Var> {
        self.set
            .iter()
            .chain(&self.add)
            .filter_map(|(_, value)| match value {
                Value::Static(_) => None,
                Value::Dynamic(template) => Some(template.vars()),
            })
            .flatten()
    }

    /// Applies the operations to `uri`'s query. A result that is not a
    /// valid URI (it cannot be: values are encoded) leaves `uri` as it was.
    pub(crate) fn apply(&self, uri: &mut Uri, vars: &dyn Lookup) {
        let query = uri.query().unwrap_or("");
        // (name decoded, the raw pair)
        let mut pairs: Vec<(String, Cow<'_, str>)> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let name = pair.split_once('=').map_or(pair, |(name, _)| name);
                (decode(name), Cow::Borrowed(pair))
            })
            .collect();
        let before = pairs.len();
        for name in &self.remove {
            pairs.retain(|(n, _)| n != name);
        }
        // Set and add always write; without them an untouched query keeps
        // the URI as it is (no rebuild, no allocation beyond the scan).
        let mut changed = pairs.len() != before || !self.set.is_empty() || !self.add.is_empty();
        for (from, to) in &self.rename {
            if !pairs.iter().any(|(n, _)| n == from) {
                continue;
            }
            changed = true;
            pairs.retain(|(n, _)| n != to);
            for (name, raw) in &mut pairs {
                if name == from {
                    let value = raw.split_once('=').map(|(_, value)| value.to_owned());
                    let mut pair = encode(to);
                    if let Some(value) = value {
                        pair.push('=');
                        pair.push_str(&value);
                    }
                    *name = to.clone();
                    *raw = Cow::Owned(pair);
                }
            }
        }
        for (name, value) in &self.set {
            let rendered = value.render(vars);
            let at = pairs.iter().position(|(n, _)| n == name);
            pairs.retain(|(n, _)| n != name);
            if let Some(value) = rendered {
                let pair = Cow::Owned(format!("{}={value}", encode(name)));
                let at = at.unwrap_or(pairs.len()).min(pairs.len());
                pairs.insert(at, (name.clone(), pair));
            }
        }
        for (name, value) in &self.add {
            if let Some(value) = value.render(vars) {
                pairs.push((
                    name.clone(),
                    Cow::Owned(format!("{}={value}", encode(name))),
                ));
            }
        }
        if !changed {
            return;
        }
        let mut out = String::with_capacity(uri.path().len() + query.len() + 16);
        out.push_str(uri.path());
        for (i, (_, raw)) in pairs.iter().enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            out.push_str(raw);
        }
        let Ok(path_and_query) = PathAndQuery::try_from(out) else {
            tracing::debug!("transform: the rewritten query is not valid; left unchanged");
            return;
        };
        let mut parts = std::mem::take(uri).into_parts();
        parts.path_and_query = Some(path_and_query);
        match Uri::from_parts(parts) {
            Ok(rewritten) => *uri = rewritten,
            // `take` left a default `/`; the parts came from a valid URI, so
            // this does not happen, but a bad request is better than a panic.
            Err(_) => tracing::debug!("transform: the rewritten URI is not valid"),
        }
    }
}

/// The first value of `name` in a raw query, percent-decoded.
pub(crate) fn first_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (n, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(n) == name).then(|| decode(value))
    })
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a
/// byte; a `%` not followed by two hex digits is kept; bytes that are not
/// UTF-8 become U+FFFD.
pub(crate) fn decode(text: &str) -> String {
    if !text.contains(['%', '+']) {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// Percent-encodes everything but the unreserved characters (RFC 3986).
pub(crate) fn encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::template::NoVars;

    fn run(ops: &QueryOps, uri: &str) -> String {
        let mut uri: Uri = uri.parse().unwrap();
        ops.apply(&mut uri, &NoVars);
        uri.to_string()
    }

    #[test]
    fn decodes_and_encodes() {
        assert_eq!(decode("a+b%20c%2"), "a b c%2");
        assert_eq!(decode("%e2%82%AC%"), "€%");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(encode("a b&c=€~"), "a%20b%26c%3D%E2%82%AC~");
        assert_eq!(first_value("a=1&b=x%0Ay&b=2", "b").as_deref(), Some("x\ny"));
        assert_eq!(first_value("flag&b=2", "flag").as_deref(), Some(""));
        assert_eq!(first_value("a=1", "b"), None);
    }

    #[test]
    fn operations_in_order() {
        let ops = QueryOps::new()
            .remove("debug")
            .rename("q", "query")
            .set("v", "2")
            .unwrap()
            .add("tag", "a b")
            .unwrap();
        assert_eq!(
            run(
                &ops,
                "http://h/p?q=x%20y&debug=1&v=1&query=old&keep=%41&v=3"
            ),
            "http://h/p?query=x%20y&v=2&keep=%41&tag=a%20b"
        );
        assert_eq!(run(&ops, "/p"), "/p?v=2&tag=a%20b");
        let none = QueryOps::new().remove("a");
        assert_eq!(run(&none, "/p?a=1"), "/p");
        // Nothing matched: the URI is kept as it was, odd encoding and all.
        assert_eq!(run(&none, "/p?b=%7e&&c"), "/p?b=%7e&&c");
    }

    #[test]
    fn missing_template_values() {
        let ops = QueryOps::new()
            .set("user", "${claim.sub}")
            .unwrap()
            .add("t", "${header.x-t}")
            .unwrap();
        assert_eq!(run(&ops, "/p?user=forged&x=1"), "/p?x=1");
    }
}
