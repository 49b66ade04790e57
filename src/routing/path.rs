//! Path rules: exact paths, segment-boundary prefixes, `matchit` patterns;
//! request path normalisation; rewrite templates.

use std::borrow::Cow;
use std::sync::Arc;

use super::error::RouteErrorKind;
use crate::percent::hex_value;

/// Prefixes deeper than this are refused, so a lookup walks a bounded number
/// of segments whatever the request path.
pub(crate) const MAX_PREFIX_SEGMENTS: usize = 32;

/// A validated path rule.
#[derive(Debug)]
pub(crate) enum PathRule {
    /// The whole path, as given (escapes `{{`/`}}` resolved).
    Exact(Box<str>),
    /// A prefix on segment boundaries, without trailing slash (`/` for all).
    Prefix(Box<str>),
    /// A `matchit` pattern with at least one parameter.
    Pattern(Box<Pattern>),
}

/// A parameterised pattern: its own one-route `matchit` router (to check a
/// path against it alone), its shape, and its parameter names in order.
#[derive(Debug)]
pub(crate) struct Pattern {
    pub(crate) source: Box<str>,
    pub(crate) own: matchit::Router<()>,
    pub(crate) shape: Vec<Seg>,
    /// The pattern with positional parameter names, so that patterns that
    /// differ only in names share one entry of a host's path router.
    pub(crate) normalized: String,
    pub(crate) names: Arc<[Arc<str>]>,
    pub(crate) static_len: u32,
    pub(crate) catch_all: bool,
}

/// One `/`-separated segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Static(String),
    /// Static text then a parameter (`user_{name}`).
    Param(String),
    /// Static text then a catch-all (`{*rest}`), which may span segments.
    CatchAll(String),
}

impl PathRule {
    /// `path` as a `matchit` pattern: an exact path when it has no parameter.
    pub(crate) fn pattern(path: &str) -> Result<Self, RouteErrorKind> {
        let invalid = |reason: &str| RouteErrorKind::InvalidPath {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        if !path.starts_with('/') && path != "*" {
            return Err(invalid("must start with `/`"));
        }
        let mut own = matchit::Router::new();
        own.insert(path, ()).map_err(|e| invalid(&e.to_string()))?;
        let (shape, names) = parse_shape(path).map_err(invalid)?;
        if names.is_empty() {
            return Ok(Self::Exact(unescape(path).into()));
        }
        let mut normalized = String::with_capacity(path.len());
        let mut static_len = 0u32;
        let mut index = 0usize;
        let mut catch_all = false;
        for (i, seg) in shape.iter().enumerate() {
            if i > 0 || path.starts_with('/') {
                normalized.push('/');
            }
            let (text, kind) = match seg {
                Seg::Static(s) => (s, None),
                Seg::Param(s) => (s, Some("")),
                Seg::CatchAll(s) => (s, Some("*")),
            };
            static_len = static_len.saturating_add(u32::try_from(text.len()).unwrap_or(u32::MAX));
            for c in text.chars() {
                match c {
                    '{' => normalized.push_str("{{"),
                    '}' => normalized.push_str("}}"),
                    c => normalized.push(c),
                }
            }
            if let Some(star) = kind {
                catch_all |= star == "*";
                normalized.push('{');
                normalized.push_str(star);
                normalized.push('p');
                normalized.push_str(&index.to_string());
                normalized.push('}');
                index += 1;
            }
        }
        Ok(Self::Pattern(Box::new(Pattern {
            source: path.into(),
            own,
            shape,
            normalized,
            names: names.into_iter().map(Arc::from).collect(),
            static_len,
            catch_all,
        })))
    }

    /// A segment-boundary prefix; a trailing `/` is dropped (`/api/` is `/api`).
    pub(crate) fn prefix(prefix: &str) -> Result<Self, RouteErrorKind> {
        let invalid = |reason: &str| RouteErrorKind::InvalidPath {
            path: prefix.to_owned(),
            reason: reason.to_owned(),
        };
        if !prefix.starts_with('/') {
            return Err(invalid("must start with `/`"));
        }
        if prefix.contains(['?', '#']) {
            return Err(invalid("a path has no `?` or `#`"));
        }
        let trimmed = prefix.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        if segments(trimmed) > MAX_PREFIX_SEGMENTS {
            return Err(invalid("more than 32 segments"));
        }
        Ok(Self::Prefix(trimmed.into()))
    }

    pub(crate) fn source(&self) -> &str {
        match self {
            Self::Exact(p) | Self::Prefix(p) => p,
            Self::Pattern(p) => &p.source,
        }
    }
}

fn segments(prefix: &str) -> usize {
    prefix.bytes().filter(|&b| b == b'/').count()
}

/// Whether the segment-boundary `prefix` (no trailing slash) covers `path`.
/// The root prefix `/` covers every request target, `*` included.
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || (path.starts_with(prefix)
            && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/')))
}

/// `{{` → `{`, `}}` → `}`.
fn unescape(path: &str) -> String {
    path.replace("{{", "{").replace("}}", "}")
}

type Shape = (Vec<Seg>, Vec<String>);

/// Splits a pattern (already accepted by `matchit`) into segments.
fn parse_shape(path: &str) -> Result<Shape, &'static str> {
    let body = path.strip_prefix('/').unwrap_or(path);
    let mut shape = Vec::new();
    let mut names = Vec::new();
    let mut text = String::new();
    let mut chars = body.chars().peekable();
    let mut param: Option<(bool, String)> = None;
    // Whether a segment has started and is not yet in `shape`.
    let mut open = true;
    while let Some(c) = chars.next() {
        if let Some((star, name)) = param.as_mut() {
            if c == '}' {
                let seg = if *star {
                    Seg::CatchAll(std::mem::take(&mut text))
                } else {
                    Seg::Param(std::mem::take(&mut text))
                };
                names.push(std::mem::take(name));
                param = None;
                shape.push(seg);
                open = false;
                // `matchit` accepted the pattern: a parameter ends its
                // segment, so the next char is `/` or the end.
                if chars.peek() == Some(&'/') {
                    chars.next();
                    open = true;
                }
            } else if c == '*' && name.is_empty() && !*star {
                *star = true;
            } else {
                name.push(c);
            }
            continue;
        }
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => param = Some((false, String::new())),
            '/' => shape.push(Seg::Static(std::mem::take(&mut text))),
            c => text.push(c),
        }
    }
    if param.is_some() {
        return Err("unclosed parameter");
    }
    if open {
        shape.push(Seg::Static(text));
    }
    Ok((shape, names))
}

/// Whether some path could match both patterns (conservative: `true` when
/// unsure, since a candidate found this way is checked against its own
/// pattern before it is used).
pub(crate) fn may_overlap(a: &[Seg], b: &[Seg]) -> bool {
    let mut i = 0;
    loop {
        match (a.get(i), b.get(i)) {
            (None, None) => return true,
            (Some(Seg::CatchAll(_)), Some(_)) | (Some(_), Some(Seg::CatchAll(_))) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            (Some(x), Some(y)) => {
                if !segment_overlaps(x, y) {
                    return false;
                }
            }
        }
        i += 1;
    }
}

fn segment_overlaps(x: &Seg, y: &Seg) -> bool {
    match (x, y) {
        (Seg::Static(s), Seg::Static(t)) => s == t,
        (Seg::Static(s), Seg::Param(p)) | (Seg::Param(p), Seg::Static(s)) => {
            s.len() > p.len() && s.starts_with(p.as_str())
        }
        (Seg::Param(p), Seg::Param(q)) => p.starts_with(q.as_str()) || q.starts_with(p.as_str()),
        _ => true,
    }
}

/// The path the router matches on: percent-encoded unreserved characters
/// decoded and dot segments removed (RFC 3986 §6.2.2), so `/%61dmin` and
/// `/x/../admin` route as `/admin`. Encoded reserved characters (`%2F`)
/// stay encoded. Borrowed, without allocation, when already normal.
pub(crate) fn normalize(path: &str) -> Cow<'_, str> {
    let bytes = path.as_bytes();
    // The common case, no `%` and no `.`, in one tight pass (paths are
    // short, so a plain loop beats `memchr`'s set-up).
    if !bytes.iter().any(|&b| b == b'%' || b == b'.') {
        return Cow::Borrowed(path);
    }
    let has_escape = bytes.contains(&b'%');
    if !has_escape && !has_dot_segment_start(bytes) {
        return Cow::Borrowed(path);
    }
    let decoded: Cow<'_, str> = if has_escape {
        Cow::Owned(decode_unreserved(path))
    } else {
        Cow::Borrowed(path)
    };
    let normal = if decoded.starts_with('/') && has_dot_segment_start(decoded.as_bytes()) {
        remove_dot_segments(&decoded)
    } else {
        decoded.into_owned()
    };
    if normal == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(normal)
    }
}

/// Whether `/.` occurs: a possible dot segment (or a dot file, checked later).
fn has_dot_segment_start(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .zip(bytes.iter().skip(1))
        .any(|(&a, &b)| a == b'/' && b == b'.')
}

fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2]))
            && is_unreserved(h * 16 + l)
        {
            out.push(char::from(h * 16 + l));
            i += 3;
            continue;
        }
        // Copy one UTF-8 char (the path is a `&str`, so boundaries are valid).
        let len = utf8_len(bytes[i]);
        let end = (i + len).min(bytes.len());
        out.push_str(path.get(i..end).unwrap_or(""));
        i = end;
    }
    out
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// RFC 3986 §5.2.4 for an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut trailing = false;
    for seg in path[1..].split('/') {
        trailing = false;
        match seg {
            "." => trailing = true,
            ".." => {
                out.pop();
                trailing = true;
            }
            seg => out.push(seg),
        }
    }
    let mut result = String::with_capacity(path.len());
    for seg in &out {
        result.push('/');
        result.push_str(seg);
    }
    if trailing || result.is_empty() {
        result.push('/');
    }
    result
}

/// A path rewrite: literal text and captured parameters.
#[derive(Debug)]
pub(crate) struct Template {
    parts: Box<[Part]>,
}

#[derive(Debug)]
enum Part {
    Literal(Box<str>),
    Param(usize),
}

impl Template {
    /// Parses `/v2/users/{id}`; every `{name}` (or `{*name}`) must be one of
    /// `names`. `{{` and `}}` are literal braces.
    pub(crate) fn parse(template: &str, names: &[Arc<str>]) -> Result<Self, RouteErrorKind> {
        let invalid = |reason: String| RouteErrorKind::InvalidRewrite {
            template: template.to_owned(),
            reason,
        };
        if !template.starts_with('/') {
            return Err(invalid("must start with `/`".into()));
        }
        if template.contains(['?', '#', ' ']) {
            return Err(invalid("a path has no `?`, `#` or space".into()));
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(invalid("unclosed parameter".into())),
                        }
                    }
                    let name = name.strip_prefix('*').unwrap_or(&name);
                    let Some(index) = names.iter().position(|n| **n == *name) else {
                        return Err(invalid(format!("the path captures no parameter {name:?}")));
                    };
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal).into()));
                    }
                    parts.push(Part::Param(index));
                }
                '}' => return Err(invalid("unmatched `}`".into())),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal.into()));
        }
        if http::uri::PathAndQuery::try_from(template.replace(['{', '}'], "")).is_err() {
            return Err(invalid("not a valid URI path".into()));
        }
        Ok(Self {
            parts: parts.into(),
        })
    }

    /// The rewritten path; `value(i)` is the `i`-th captured value.
    pub(crate) fn render<'v>(&self, value: impl Fn(usize) -> Option<&'v str>, out: &mut String) {
        for part in &*self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Param(i) => out.push_str(value(*i).unwrap_or("")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(p: &str) -> Vec<Seg> {
        match PathRule::pattern(p).unwrap() {
            PathRule::Pattern(p) => p.shape,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn patterns_and_exact_paths() {
        assert!(matches!(PathRule::pattern("/a/b").unwrap(), PathRule::Exact(p) if &*p == "/a/b"));
        assert!(
            matches!(PathRule::pattern("/a/{{b}}").unwrap(), PathRule::Exact(p) if &*p == "/a/{b}")
        );
        assert!(PathRule::pattern("/a/{b").is_err());
        assert!(PathRule::pattern("a/b").is_err());
        assert!(PathRule::pattern("/{*r}/x").is_err());
        let PathRule::Pattern(p) = PathRule::pattern("/users/{id}/posts/{*rest}").unwrap() else {
            panic!()
        };
        assert_eq!(p.normalized, "/users/{p0}/posts/{*p1}");
        assert_eq!(&*p.names[0], "id");
        assert_eq!(&*p.names[1], "rest");
        assert_eq!(p.static_len, 10);
        let PathRule::Pattern(p) = PathRule::pattern("/u/{id}/").unwrap() else {
            panic!()
        };
        assert_eq!(p.normalized, "/u/{p0}/");
    }

    #[test]
    fn overlap() {
        assert!(may_overlap(&shape("/users/{id}"), &shape("/{x}/new")));
        assert!(!may_overlap(&shape("/users/{id}"), &shape("/{x}/new/x")));
        assert!(may_overlap(&shape("/users/{id}"), &shape("/{x}/{y}")));
        assert!(may_overlap(&shape("/a/{x}/c"), &shape("/{y}/b/c")));
        assert!(!may_overlap(&shape("/a/{x}/c"), &shape("/{y}/b/d")));
        assert!(may_overlap(&shape("/a/{x}"), &shape("/{*rest}")));
        assert!(!may_overlap(&shape("/a/{x}"), &shape("/b/{*rest}")));
        assert!(may_overlap(&shape("/u/user_{x}"), &shape("/u/{y}")));
        assert!(!may_overlap(&shape("/u/{x}"), &shape("/u/{y}/z")));
    }

    #[test]
    fn prefixes() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/"));
        assert!(prefix_matches("/api", "/api/x"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(prefix_matches("/", "*"));
        assert!(matches!(PathRule::prefix("/api/").unwrap(), PathRule::Prefix(p) if &*p == "/api"));
        assert!(matches!(PathRule::prefix("/").unwrap(), PathRule::Prefix(p) if &*p == "/"));
        assert!(PathRule::prefix("api").is_err());
        assert!(PathRule::prefix(&"/a".repeat(33)).is_err());
    }

    #[test]
    fn normalization() {
        assert!(matches!(normalize("/a/b"), Cow::Borrowed("/a/b")));
        assert_eq!(normalize("/%61dmin"), "/admin");
        assert!(matches!(normalize("/a%2Fb"), Cow::Borrowed("/a%2Fb")));
        assert_eq!(normalize("/a/./b/../c"), "/a/c");
        assert_eq!(normalize("/a/.."), "/");
        assert_eq!(normalize("/../../x"), "/x");
        assert_eq!(normalize("/a/%2e%2e/b"), "/b");
        assert_eq!(normalize("/x/%"), "/x/%");
        assert_eq!(normalize("/x/%4"), "/x/%4");
        assert_eq!(normalize("/é/%7e"), "/é/~");
        assert_eq!(normalize("/.well-known/x"), "/.well-known/x");
    }

    #[test]
    fn templates() {
        let names: Vec<Arc<str>> = vec!["id".into(), "rest".into()];
        let t = Template::parse("/v2/users/{id}/{*rest}", &names).unwrap();
        let mut out = String::new();
        t.render(|i| ["7", "a/b"].get(i).copied(), &mut out);
        assert_eq!(out, "/v2/users/7/a/b");
        assert!(Template::parse("/v2/{nope}", &names).is_err());
        assert!(Template::parse("v2", &names).is_err());
        assert!(Template::parse("/v2/{id", &names).is_err());
    }
}
