use std::fmt;

/// A route definition that cannot be built: which route, and what is wrong.
///
/// Returned by [`RouterBuilder::build`](super::RouterBuilder::build) and
/// [`Router::set_weights`](super::Router::set_weights); the router never
/// fails at request time because of its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    route: Option<String>,
    kind: RouteErrorKind,
}

/// What is wrong with a route definition.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteErrorKind {
    /// The router has no routes.
    NoRoutes,
    /// A route has an empty name.
    EmptyName,
    /// Two routes have the same name.
    DuplicateName,
    /// A route has neither [`to`](super::Route::to) nor
    /// [`split`](super::Route::split).
    NoTarget,
    /// A host is empty, has a port, or a wildcard not of the form `*.example.com`.
    InvalidHost {
        /// The host as given.
        host: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A path, prefix or pattern is not valid.
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// Two path patterns that the path router cannot tell apart on the same
    /// host, such as `/files/{name}` and `/files/{*path}`.
    PathConflict {
        /// This route's pattern.
        pattern: String,
        /// The route it conflicts with.
        other_route: String,
        /// The other route's pattern.
        other_pattern: String,
    },
    /// A header name or value is not valid HTTP.
    InvalidHeader {
        /// The header as given.
        header: String,
    },
    /// A regular expression does not compile.
    InvalidRegex {
        /// The expression as given.
        regex: String,
        /// The compiler's message.
        reason: String,
    },
    /// A rewrite template is not valid or names a parameter the path does not capture.
    InvalidRewrite {
        /// The template as given.
        template: String,
        /// Why it is refused.
        reason: String,
    },
    /// `strip_prefix` and `rewrite_path` are both set; only one may rewrite the path.
    ConflictingRewrites,
    /// A split has no backends.
    EmptySplit,
    /// The weights of a split add up to zero, so no backend could be chosen.
    ZeroWeights,
    /// Two backends of a split have the same name.
    DuplicateBackend {
        /// The backend name.
        backend: String,
    },
    /// An override or a weight names a backend the split does not have.
    UnknownBackend {
        /// The backend name.
        backend: String,
    },
    /// No route has this name.
    UnknownRoute,
    /// Weights were given for a route that has no split.
    NotASplit,
}

impl RouteError {
    pub(crate) fn new(route: Option<&str>, kind: RouteErrorKind) -> Self {
        Self {
            route: route.map(str::to_owned),
            kind,
        }
    }

    pub(crate) fn route(route: &str, kind: RouteErrorKind) -> Self {
        Self::new(Some(route), kind)
    }

    /// The name of the route at fault, when the error is about one route.
    #[must_use]
    pub fn route_name(&self) -> Option<&str> {
        self.route.as_deref()
    }

    /// What is wrong.
    #[must_use]
    pub fn kind(&self) -> &RouteErrorKind {
        &self.kind
    }
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(route) = &self.route {
            write!(f, "route {route:?}: ")?;
        }
        match &self.kind {
            RouteErrorKind::NoRoutes => f.write_str("the router has no routes"),
            RouteErrorKind::EmptyName => f.write_str("a route needs a non-empty name"),
            RouteErrorKind::DuplicateName => f.write_str("another route has the same name"),
            RouteErrorKind::NoTarget => f.write_str("no service: call `to` or `split`"),
            RouteErrorKind::InvalidHost { host, reason } => {
                write!(f, "invalid host {host:?}: {reason}")
            }
            RouteErrorKind::InvalidPath { path, reason } => {
                write!(f, "invalid path {path:?}: {reason}")
            }
            RouteErrorKind::PathConflict {
                pattern,
                other_route,
                other_pattern,
            } => write!(
                f,
                "path pattern {pattern:?} conflicts with {other_pattern:?} of route {other_route:?} on the same host"
            ),
            RouteErrorKind::InvalidHeader { header } => {
                write!(f, "invalid header name or value {header:?}")
            }
            RouteErrorKind::InvalidRegex { regex, reason } => {
                write!(f, "invalid regex {regex:?}: {reason}")
            }
            RouteErrorKind::InvalidRewrite { template, reason } => {
                write!(f, "invalid rewrite {template:?}: {reason}")
            }
            RouteErrorKind::ConflictingRewrites => {
                f.write_str("strip_prefix and rewrite_path cannot both be set")
            }
            RouteErrorKind::EmptySplit => f.write_str("the split has no backends"),
            RouteErrorKind::ZeroWeights => f.write_str("the split's weights add up to zero"),
            RouteErrorKind::DuplicateBackend { backend } => {
                write!(f, "two backends are named {backend:?}")
            }
            RouteErrorKind::UnknownBackend { backend } => {
                write!(f, "no backend named {backend:?} in the split")
            }
            RouteErrorKind::UnknownRoute => f.write_str("no route has this name"),
            RouteErrorKind::NotASplit => f.write_str("the route has no split to weigh"),
        }
    }
}

impl std::error::Error for RouteError {}
