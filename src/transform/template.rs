use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use http::{Extensions, HeaderMap, HeaderName, HeaderValue};

/// A header value that may reference values of the request.
///
/// | variable | value | comes from |
/// | --- | --- | --- |
/// | `${request_id}` | the request id | [`RequestId`](crate::observe::RequestId), put by `observe::RequestIdLayer` (feature `observe`) |
/// | `${client_ip}` | the client address | the socket peer ([`PeerAddr`](crate::peer::PeerAddr)), or the trusted-proxy-aware address when the layer has a resolver (`TransformLayer::client_ip`) |
/// | `${route}` | the route's name | [`MatchedRoute`](crate::routing::MatchedRoute) (feature `routing`) |
/// | `${consumer}` | the consumer's name | the `auth::Consumer` an API key resolved to (feature `auth`) |
/// | `${claim.<name>}` | a JWT claim | `auth::jwt::Claims` (feature `auth`): strings as they are, numbers and booleans in JSON form, arrays of those joined with `,`; objects and `null` count as missing. A dotted name is a top-level key if there is one, else a path into nested objects (`${claim.org.id}`) |
/// | `${header.<name>}` | a request header | all its values joined with `, ` |
/// | `${query.<name>}` | a query parameter | its first value, percent-decoded (`+` is a space) |
///
/// All of them are read from the request **as the client sent it**, before
/// any operation of the layer ran (as Kong's templates do); response
/// templates see the same request values.
///
/// `${` always starts a variable; an unknown or unterminated one is an error
/// when the template is parsed, never at request time. A value without
/// variables is stored as a ready header value and costs a clone to apply.
///
/// When a referenced value is missing for a request (no such header or
/// claim, the layer that provides it is not in the stack, or its feature is
/// off) or the result is not a valid header value (a CR or LF smuggled in
/// through a query parameter, say), the header is not written for that
/// request — and a `set` removes the header instead, so a value the client
/// sent never survives: no header is better than a wrong one. Invalid
/// results are logged at debug level and counted in
/// [`TransformStats`](super::TransformStats); they never panic.
///
/// ```
/// use meshgate::transform::HeaderTemplate;
///
/// assert!("req-${request_id}".parse::<HeaderTemplate>().is_ok());
/// assert!("${claim.sub}/${header.x-tenant}".parse::<HeaderTemplate>().is_ok());
/// assert!("${user}".parse::<HeaderTemplate>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTemplate(Repr);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Repr {
    Static(HeaderValue),
    Dynamic(Template),
}

/// Text with `${...}` variables, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(Var),
}

/// A value a template can reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Var {
    RequestId,
    ClientIp,
    Route,
    Consumer,
    Claim(Arc<str>),
    Header(HeaderName),
    Query(Arc<str>),
}

/// Why a [`HeaderTemplate`] (or another value of a transform) was refused,
/// with the field it was found at when built from config
/// (`request.set.x-user`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    field: String,
    message: String,
}

impl TemplateError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            field: String::new(),
            message: message.into(),
        }
    }

    /// Prefixes the field path with `parent`.
    #[cfg_attr(not(feature = "config"), allow(dead_code))]
    pub(crate) fn at(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_owned()
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }

    /// The field path of the bad value, relative to the config section
    /// (empty when not built from config).
    #[must_use]
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong, without the field.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for TemplateError {}

const KNOWN: &str =
    "request_id, client_ip, route, consumer, claim.<name>, header.<name>, query.<name>";

impl Template {
    /// Parses `text`; `None` when it has no variable.
    pub(crate) fn parse(text: &str) -> Result<Option<Self>, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| {
                TemplateError::new(format!("unterminated `${{` in template {text:?}"))
            })?;
            let var = parse_var(after[..end].trim()).map_err(|why| {
                TemplateError::new(format!("{why} in template {text:?} (known: {KNOWN})"))
            })?;
            parts.push(Part::Var(var));
            rest = &after[end + 1..];
        }
        if parts.is_empty() {
            return Ok(None);
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Some(Self { parts }))
    }

    pub(crate) fn vars(&self) -> impl Iterator<Item = &Var> {
        self.parts.iter().filter_map(|part| match part {
            Part::Var(var) => Some(var),
            Part::Literal(_) => None,
        })
    }

    /// The text for a request, `None` when a variable is missing.
    pub(crate) fn render(&self, vars: &dyn Lookup) -> Option<String> {
        // The common template is one variable: one lookup, one exact copy.
        if let [Part::Var(var)] = self.parts.as_slice() {
            return vars.get(var).map(str::to_owned);
        }
        // Sized exactly first: no growth, and a header value made from the
        // result takes the buffer as it is.
        let mut len = 0;
        for part in &self.parts {
            len += match part {
                Part::Literal(literal) => literal.len(),
                Part::Var(var) => vars.get(var)?.len(),
            };
        }
        let mut out = String::with_capacity(len);
        for part in &self.parts {
            match part {
                Part::Literal(literal) => out.push_str(literal),
                Part::Var(var) => out.push_str(vars.get(var)?),
            }
        }
        Some(out)
    }
}

fn parse_var(name: &str) -> Result<Var, String> {
    let unknown = || format!("unknown variable `${{{name}}}`");
    let (kind, arg) = match name.split_once('.') {
        Some((kind, arg)) => (kind, Some(arg)),
        None => (name, None),
    };
    let var = match (kind, arg) {
        ("request_id", None) => Var::RequestId,
        ("client_ip", None) => Var::ClientIp,
        ("route", None) => Var::Route,
        ("consumer", None) => Var::Consumer,
        ("claim", Some(claim)) if !claim.is_empty() => Var::Claim(Arc::from(claim)),
        ("header", Some(header)) => Var::Header(
            HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| format!("invalid header name {header:?} in `${{{name}}}`"))?,
        ),
        ("query", Some(param)) if !param.is_empty() => Var::Query(Arc::from(param)),
        _ => return Err(unknown()),
    };
    Ok(var)
}

impl HeaderTemplate {
    /// A fixed value, with no variables.
    #[must_use]
    pub fn literal(value: HeaderValue) -> Self {
        Self(Repr::Static(value))
    }

    /// Parses `text`; see the [type docs](Self).
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let invalid = || TemplateError::new(format!("{text:?} is not a valid header value"));
        match Template::parse(text)? {
            None => HeaderValue::from_str(text)
                .map(Self::literal)
                .map_err(|_| invalid()),
            Some(template) => {
                // Literal parts must be valid in a header on their own.
                for part in &template.parts {
                    if let Part::Literal(literal) = part
                        && HeaderValue::from_str(literal).is_err()
                    {
                        return Err(invalid());
                    }
                }
                Ok(Self(Repr::Dynamic(template)))
            }
        }
    }

    /// The value when it has no variables.
    pub(crate) fn fixed(&self) -> Option<&HeaderValue> {
        match &self.0 {
            Repr::Static(value) => Some(value),
            Repr::Dynamic(_) => None,
        }
    }

    pub(crate) fn vars(&self) -> impl Iterator<Item = &Var> {
        match &self.0 {
            Repr::Static(_) => None,
            Repr::Dynamic(template) => Some(template.vars()),
        }
        .into_iter()
        .flatten()
    }

    /// The value for a request, `None` when a variable is missing or the
    /// result is not a valid header value.
    pub(crate) fn render(&self, vars: &dyn Lookup) -> Option<HeaderValue> {
        match &self.0 {
            Repr::Static(value) => Some(value.clone()),
            Repr::Dynamic(template) => {
                let text = template.render(vars)?;
                match HeaderValue::from_maybe_shared(bytes::Bytes::from(text)) {
                    Ok(value) => Some(value),
                    Err(_) => {
                        vars.invalid();
                        None
                    }
                }
            }
        }
    }
}

impl FromStr for HeaderTemplate {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<HeaderValue> for HeaderTemplate {
    fn from(value: HeaderValue) -> Self {
        Self::literal(value)
    }
}

/// Where template variables come from.
pub(crate) trait Lookup {
    /// The value of `var`; `None` when it is missing.
    fn get(&self, var: &Var) -> Option<&str>;

    /// Records that a rendered value was refused (not a valid header value).
    fn invalid(&self) {}
}

/// The distinct variables a layer's templates use, collected at build, and
/// the layer's counters.
#[derive(Debug, Default)]
pub(crate) struct VarSet {
    vars: Vec<Var>,
    counters: Arc<super::stats::Counters>,
}

impl VarSet {
    pub(crate) fn new(counters: Arc<super::stats::Counters>) -> Self {
        Self {
            vars: Vec::new(),
            counters,
        }
    }

    pub(crate) fn add<'a>(&mut self, vars: impl Iterator<Item = &'a Var>) {
        for var in vars {
            if !self.vars.contains(var) {
                self.vars.push(var.clone());
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    pub(crate) fn uses_client_ip(&self) -> bool {
        self.vars.contains(&Var::ClientIp)
    }

    /// Reads every variable from `request` as it is now, `None` when the
    /// templates use none. The client IP is resolved (through `proxies`
    /// when given, else the socket peer) only when a template uses it.
    pub(crate) fn capture_request<B>(
        &self,
        request: &http::Request<B>,
        proxies: Option<&crate::net::TrustedProxies>,
    ) -> Option<Captured> {
        if self.is_empty() {
            return None;
        }
        let client_ip = if self.uses_client_ip() {
            match proxies {
                Some(proxies) => proxies.client_ip(request.headers(), request.extensions()),
                None => request
                    .extensions()
                    .get::<crate::peer::PeerAddr>()
                    .map(|peer| peer.0.ip().to_canonical()),
            }
        } else {
            None
        };
        Some(self.capture(
            request.extensions(),
            request.headers(),
            request.uri().query(),
            client_ip,
        ))
    }

    /// Reads every variable from the request as it is now.
    pub(crate) fn capture(
        &self,
        extensions: &Extensions,
        headers: &HeaderMap,
        query: Option<&str>,
        client_ip: Option<IpAddr>,
    ) -> Captured {
        let values = self
            .vars
            .iter()
            .map(|var| read(var, extensions, headers, query, client_ip))
            .collect();
        Captured { values }
    }
}

/// The values of a request's variables, read once before the request is
/// changed or handed on: the request templates and the response templates
/// see the same values.
#[derive(Debug)]
pub(crate) struct Captured {
    /// In the order of the [`VarSet`] that captured them.
    values: Vec<Option<String>>,
}

impl Captured {
    /// The values with the set that names them, to look them up. The set
    /// is borrowed from the layer rather than held, so a request clones no
    /// reference count for it.
    pub(crate) fn with<'a>(&'a self, set: &'a VarSet) -> CapturedVars<'a> {
        CapturedVars {
            set,
            captured: self,
        }
    }
}

/// [`Captured`] values, looked up by variable.
pub(crate) struct CapturedVars<'a> {
    set: &'a VarSet,
    captured: &'a Captured,
}

impl Lookup for CapturedVars<'_> {
    fn get(&self, var: &Var) -> Option<&str> {
        let index = self.set.vars.iter().position(|v| v == var)?;
        self.captured.values.get(index)?.as_deref()
    }

    fn invalid(&self) {
        self.set.counters.invalid_value();
        tracing::debug!(
            "transform: a templated header value is not a valid header value; not written"
        );
    }
}

/// No variables at all: for operations with only fixed values.
pub(crate) struct NoVars;

impl Lookup for NoVars {
    fn get(&self, _: &Var) -> Option<&str> {
        None
    }
}

fn read(
    var: &Var,
    extensions: &Extensions,
    headers: &HeaderMap,
    query: Option<&str>,
    client_ip: Option<IpAddr>,
) -> Option<String> {
    match var {
        Var::RequestId => request_id(extensions).map(str::to_owned),
        Var::ClientIp => client_ip.map(crate::net::ip_text),
        Var::Route => route(extensions).map(str::to_owned),
        Var::Consumer => consumer(extensions),
        Var::Claim(name) => claim(extensions, name),
        Var::Header(name) => {
            headers.get(name)?;
            let mut out = String::new();
            for (i, value) in headers.get_all(name).iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                // Header values are visible ASCII or obs-text; obs-text is
                // kept as Latin-1 so nothing is lost silently.
                match value.to_str() {
                    Ok(text) => out.push_str(text),
                    Err(_) => out.extend(value.as_bytes().iter().map(|&b| char::from(b))),
                }
            }
            Some(out)
        }
        Var::Query(name) => super::query::first_value(query?, name),
    }
}

#[cfg(feature = "observe")]
fn request_id(extensions: &Extensions) -> Option<&str> {
    extensions
        .get::<crate::observe::RequestId>()
        .map(|id| id.as_str())
}

#[cfg(not(feature = "observe"))]
fn request_id(_: &Extensions) -> Option<&str> {
    None
}

#[cfg(feature = "routing")]
fn route(extensions: &Extensions) -> Option<&str> {
    extensions
        .get::<crate::routing::MatchedRoute>()
        .map(|route| route.name())
}

#[cfg(not(feature = "routing"))]
fn route(_: &Extensions) -> Option<&str> {
    None
}

#[cfg(feature = "auth")]
fn consumer(extensions: &Extensions) -> Option<String> {
    extensions
        .get::<crate::auth::Consumer>()
        .map(|consumer| consumer.name().to_owned())
}

#[cfg(not(feature = "auth"))]
fn consumer(_: &Extensions) -> Option<String> {
    None
}

#[cfg(feature = "auth")]
fn claim(extensions: &Extensions, name: &str) -> Option<String> {
    use std::fmt::Write as _;

    use serde_json::Value;
    fn scalar(value: &Value, out: &mut String) -> Option<()> {
        match value {
            Value::String(s) => out.push_str(s),
            Value::Number(n) => write!(out, "{n}").ok()?,
            Value::Bool(b) => write!(out, "{b}").ok()?,
            _ => return None,
        }
        Some(())
    }
    let claims = extensions.get::<crate::auth::jwt::Claims>()?;
    // A name with dots is tried as a key of its own first (namespaced
    // claims such as `https://example.com/roles`), then as a path into
    // nested objects (`org.id`).
    let value = claims.get(name).or_else(|| {
        let mut segments = name.split('.');
        let first = claims.get(segments.next()?)?;
        segments.try_fold(first, |value, segment| value.get(segment))
    })?;
    let mut out = String::new();
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                scalar(item, &mut out)?;
            }
        }
        other => scalar(other, &mut out)?,
    }
    Some(out)
}

#[cfg(not(feature = "auth"))]
fn claim(_: &Extensions, _: &str) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured(vars: &[(Var, Option<&str>)]) -> (VarSet, Captured) {
        let mut set = VarSet::default();
        set.add(vars.iter().map(|(v, _)| v));
        let captured = Captured {
            values: vars.iter().map(|(_, v)| v.map(str::to_owned)).collect(),
        };
        (set, captured)
    }

    #[test]
    fn parses_and_renders() {
        let t: HeaderTemplate = "id=${request_id}; ip=${ client_ip }; r=${route}; c=${claim.sub}"
            .parse()
            .unwrap();
        let vars = captured(&[
            (Var::RequestId, Some("abc")),
            (Var::ClientIp, Some("192.0.2.1")),
            (Var::Route, Some("users")),
            (Var::Claim("sub".into()), Some("u7")),
        ]);
        assert_eq!(
            t.render(&vars.1.with(&vars.0)).unwrap(),
            "id=abc; ip=192.0.2.1; r=users; c=u7"
        );
        let missing = captured(&[]);
        let missing = missing.1.with(&missing.0);
        assert_eq!(t.render(&missing), None);
        let plain: HeaderTemplate = "static".parse().unwrap();
        assert_eq!(plain.vars().count(), 0);
        assert_eq!(plain.render(&missing).unwrap(), "static");
        // A value that would break the header is skipped.
        let route: HeaderTemplate = "${route}".parse().unwrap();
        let bad = captured(&[(Var::Route, Some("a\r\nx-admin: 1"))]);
        assert_eq!(route.render(&bad.1.with(&bad.0)), None);
    }

    #[test]
    fn parses_named_variables() {
        let t = Template::parse("${header.X-Tenant}${query.page}${consumer}${claim.org.id}")
            .unwrap()
            .unwrap();
        let vars: Vec<_> = t.vars().cloned().collect();
        assert_eq!(
            vars,
            [
                Var::Header(HeaderName::from_static("x-tenant")),
                Var::Query("page".into()),
                Var::Consumer,
                Var::Claim("org.id".into()),
            ]
        );
        assert_eq!(Template::parse("no vars").unwrap(), None);
    }

    #[test]
    fn refuses_bad_templates() {
        for bad in [
            "${",
            "x-${request_id",
            "${user}",
            "${}",
            "${claim.}",
            "${claim}",
            "${header.bad name}",
            "${query.}",
            "${route.x}",
            "a\nb",
            "${route}\n",
        ] {
            assert!(bad.parse::<HeaderTemplate>().is_err(), "{bad:?}");
        }
    }

    #[cfg(feature = "auth")]
    #[test]
    fn claims_render_as_text() {
        let mut extensions = Extensions::new();
        let claims = crate::auth::jwt::Claims::from_json(serde_json::json!({
            "sub": "u7", "n": 42, "admin": true, "roles": ["a", "b", 3], "obj": {"x": 1},
            "mixed": ["a", {"x": 1}], "nul": null,
            "org": {"id": "o-1", "tags": ["x", "y"]}, "org.id": "flat"
        }))
        .unwrap();
        extensions.insert(claims);
        let get = |name: &str| claim(&extensions, name);
        assert_eq!(get("sub").as_deref(), Some("u7"));
        assert_eq!(get("n").as_deref(), Some("42"));
        assert_eq!(get("admin").as_deref(), Some("true"));
        assert_eq!(get("roles").as_deref(), Some("a,b,3"));
        assert_eq!(get("obj"), None);
        assert_eq!(get("mixed"), None);
        assert_eq!(get("nul"), None);
        assert_eq!(get("absent"), None);
        assert_eq!(get("org.id").as_deref(), Some("flat"));
        assert_eq!(get("org.tags").as_deref(), Some("x,y"));
        assert_eq!(get("org.nope"), None);
    }
}
