use std::fmt;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::str::FromStr;

use http::{Extensions, HeaderValue};

/// A header value that may reference values of the request:
/// `${request_id}`, `${client_ip}`, `${route}`.
///
/// * `${request_id}`: the [`RequestId`](crate::observe::RequestId) that
///   `observe::RequestIdLayer` put in the request (feature `observe`);
/// * `${client_ip}`: the client address — the socket peer
///   ([`PeerAddr`](crate::peer::PeerAddr)), or the trusted-proxy-aware
///   address when the layer has a resolver (`TransformLayer::client_ip`,
///   feature `ip-restriction`);
/// * `${route}`: the name of the [`MatchedRoute`](crate::routing::MatchedRoute)
///   (feature `routing`).
///
/// `${` always starts a variable; an unknown or unterminated one is an error
/// when the template is parsed, never at request time. A value without
/// variables is stored as a ready header value and costs a clone to apply.
///
/// When a referenced value is not available for a request (the layer that
/// provides it is not in the stack, or its feature is off) or the result is
/// not a valid header value, the header is not written for that request —
/// and a `set` removes the header instead, so a value the client sent never
/// survives: no header is better than a wrong one.
///
/// ```
/// use meshgate::transform::HeaderTemplate;
///
/// assert!("req-${request_id}".parse::<HeaderTemplate>().is_ok());
/// assert!("${consumer}".parse::<HeaderTemplate>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTemplate(Repr);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Repr {
    Static(HeaderValue),
    Parts(Vec<Part>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(Var),
}

/// A value a template can reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Var {
    RequestId,
    ClientIp,
    Route,
}

/// Why a [`HeaderTemplate`] was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TemplateError {}

impl HeaderTemplate {
    /// A fixed value, with no variables.
    #[must_use]
    pub fn literal(value: HeaderValue) -> Self {
        Self(Repr::Static(value))
    }

    /// Parses `text`; see the [type docs](Self).
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| {
                TemplateError(format!("unterminated `${{` in header template {text:?}"))
            })?;
            let var = match after[..end].trim() {
                "request_id" => Var::RequestId,
                "client_ip" => Var::ClientIp,
                "route" => Var::Route,
                other => {
                    return Err(TemplateError(format!(
                        "unknown variable `${{{other}}}` in header template {text:?} \
                         (known: request_id, client_ip, route)"
                    )));
                }
            };
            parts.push(Part::Var(var));
            rest = &after[end + 1..];
        }
        if parts.is_empty() {
            return HeaderValue::from_str(text)
                .map(Self::literal)
                .map_err(|_| TemplateError(format!("{text:?} is not a valid header value")));
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        // Literal parts must be valid in a header on their own.
        for part in &parts {
            if let Part::Literal(literal) = part
                && HeaderValue::from_str(literal).is_err()
            {
                return Err(TemplateError(format!(
                    "{text:?} is not a valid header value"
                )));
            }
        }
        Ok(Self(Repr::Parts(parts)))
    }

    pub(crate) fn uses_vars(&self) -> bool {
        matches!(self.0, Repr::Parts(_))
    }

    pub(crate) fn uses(&self, var: Var) -> bool {
        match &self.0 {
            Repr::Static(_) => false,
            Repr::Parts(parts) => parts.contains(&Part::Var(var)),
        }
    }

    /// The value for a request, `None` when a variable is not available or
    /// the result is not a valid header value.
    pub(crate) fn render(&self, vars: &dyn Lookup) -> Option<HeaderValue> {
        match &self.0 {
            Repr::Static(value) => Some(value.clone()),
            Repr::Parts(parts) => {
                let mut out = String::new();
                for part in parts {
                    match part {
                        Part::Literal(literal) => out.push_str(literal),
                        Part::Var(var) => vars.write(*var, &mut out)?,
                    }
                }
                HeaderValue::from_str(&out).ok()
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
    /// Appends the value of `var`; `None` when it is not available.
    fn write(&self, var: Var, out: &mut String) -> Option<()>;
}

/// The values of a request captured before it is handed on, for the
/// response templates.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    pub(crate) request_id: Option<String>,
    pub(crate) client_ip: Option<IpAddr>,
    pub(crate) route: Option<String>,
}

impl Lookup for Captured {
    fn write(&self, var: Var, out: &mut String) -> Option<()> {
        match var {
            Var::RequestId => out.push_str(self.request_id.as_deref()?),
            Var::ClientIp => write!(out, "{}", self.client_ip?).ok()?,
            Var::Route => out.push_str(self.route.as_deref()?),
        }
        Some(())
    }
}

/// The live request values, for the request templates.
pub(crate) struct FromRequest<'a> {
    pub(crate) extensions: &'a Extensions,
    pub(crate) client_ip: Option<IpAddr>,
}

impl Lookup for FromRequest<'_> {
    fn write(&self, var: Var, out: &mut String) -> Option<()> {
        match var {
            Var::RequestId => out.push_str(request_id(self.extensions)?),
            Var::ClientIp => write!(out, "{}", self.client_ip?).ok()?,
            Var::Route => out.push_str(route(self.extensions)?),
        }
        Some(())
    }
}

#[cfg(feature = "observe")]
pub(crate) fn request_id(extensions: &Extensions) -> Option<&str> {
    extensions
        .get::<crate::observe::RequestId>()
        .map(|id| id.as_str())
}

#[cfg(not(feature = "observe"))]
pub(crate) fn request_id(_: &Extensions) -> Option<&str> {
    None
}

#[cfg(feature = "routing")]
pub(crate) fn route(extensions: &Extensions) -> Option<&str> {
    extensions
        .get::<crate::routing::MatchedRoute>()
        .map(|route| route.name())
}

#[cfg(not(feature = "routing"))]
pub(crate) fn route(_: &Extensions) -> Option<&str> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders() {
        let t: HeaderTemplate = "id=${request_id}; ip=${ client_ip }; r=${route}"
            .parse()
            .unwrap();
        let vars = Captured {
            request_id: Some("abc".into()),
            client_ip: Some("192.0.2.1".parse().unwrap()),
            route: Some("users".into()),
        };
        assert_eq!(t.render(&vars).unwrap(), "id=abc; ip=192.0.2.1; r=users");
        let missing = Captured::default();
        assert_eq!(t.render(&missing), None);
        let plain: HeaderTemplate = "static".parse().unwrap();
        assert!(!plain.uses_vars());
        assert_eq!(plain.render(&missing).unwrap(), "static");
        // A value that would break the header is skipped.
        let route: HeaderTemplate = "${route}".parse().unwrap();
        let bad = Captured {
            route: Some("a\nb".into()),
            ..Captured::default()
        };
        assert_eq!(route.render(&bad), None);
    }

    #[test]
    fn refuses_bad_templates() {
        for bad in [
            "${",
            "x-${request_id",
            "${consumer}",
            "${}",
            "a\nb",
            "${route}\n",
        ] {
            assert!(bad.parse::<HeaderTemplate>().is_err(), "{bad:?}");
        }
    }
}
