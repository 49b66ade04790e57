//! One route definition: matchers, rewrites and where it sends requests.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Method, Request, Response};

use super::error::{RouteError, RouteErrorKind};
use super::host::HostRule;
use super::matcher::{HeaderMatch, QueryMatch, ValueSpec};
use super::path::{PathRule, Template};
use super::split::{CompiledSplit, Split};
use super::table::RouteRule;
use super::{RouteService, boxed};
use crate::BoxError;

#[derive(Debug, Clone)]
enum PathSpec {
    Pattern(String),
    Prefix(String),
}

enum Target<B> {
    Service(RouteService<B>),
    Split(Split<B>),
}

/// A route: what requests it matches, how it rewrites them, and the service
/// (or [`Split`]) that serves them.
///
/// Every matcher set on a route must pass. A route with no path matcher
/// matches every path (as the prefix `/`); with no host, every host; with
/// no method, every method. Setting the path twice keeps the last.
/// Nothing is checked until [`RouterBuilder::build`](super::RouterBuilder::build),
/// which reports the first problem with the route's name.
#[must_use]
pub struct Route<B> {
    name: String,
    priority: i32,
    hosts: Vec<String>,
    path: Option<PathSpec>,
    methods: Vec<Method>,
    headers: Vec<(String, ValueSpec)>,
    query: Vec<(String, ValueSpec)>,
    strip_prefix: Option<String>,
    rewrite_path: Option<String>,
    rewrite_host: Option<String>,
    target: Option<Target<B>>,
    reported_as: Option<String>,
}

impl<B> fmt::Debug for Route<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("name", &self.name)
            .field("priority", &self.priority)
            .field("hosts", &self.hosts)
            .field("path", &self.path)
            .field("methods", &self.methods)
            .field("headers", &self.headers)
            .field("query", &self.query)
            .field("strip_prefix", &self.strip_prefix)
            .field("rewrite_path", &self.rewrite_path)
            .field("rewrite_host", &self.rewrite_host)
            .field("reported_as", &self.reported_as)
            .finish_non_exhaustive()
    }
}

impl<B: 'static> Route<B> {
    /// A route named `name`: the name is unique in a router and shows in
    /// [`MatchedRoute`](super::MatchedRoute) and in errors.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            priority: 0,
            hosts: Vec::new(),
            path: None,
            methods: Vec::new(),
            headers: Vec::new(),
            query: Vec::new(),
            strip_prefix: None,
            rewrite_path: None,
            rewrite_host: None,
            target: None,
            reported_as: None,
        }
    }

    /// Matches this host (`api.example.com`) or any subdomain of a wildcard
    /// (`*.example.com` matches `a.example.com` and `a.b.example.com`, not
    /// `example.com`). Case-insensitive; the request's port is ignored.
    /// Call again to add hosts: any of them matches.
    ///
    /// Default: every host.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.hosts.push(host.into());
        self
    }

    /// Matches the path exactly, or a [`matchit`] pattern with parameters:
    /// `/users/{id}` (one segment), `/files/{*path}` (the rest, at least one
    /// character). `{{` and `}}` are literal braces. Parameters are captured
    /// as they appear in the path (still percent-encoded).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(PathSpec::Pattern(path.into()));
        self
    }

    /// Matches paths under `prefix` on segment boundaries: `/api` matches
    /// `/api`, `/api/` and `/api/users`, not `/apis`. A trailing `/` is
    /// ignored; `/` matches every path.
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.path = Some(PathSpec::Prefix(prefix.into()));
        self
    }

    /// Matches this method; call again (or use [`methods`](Self::methods)) to
    /// allow more. `GET` does not imply `HEAD`.
    ///
    /// Default: every method.
    pub fn method(mut self, method: Method) -> Self {
        if !self.methods.contains(&method) {
            self.methods.push(method);
        }
        self
    }

    /// Matches any of these methods.
    pub fn methods(self, methods: impl IntoIterator<Item = Method>) -> Self {
        methods.into_iter().fold(self, Self::method)
    }

    /// Requires header `name` to have exactly `value` (one of its values, if repeated).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers
            .push((name.into(), ValueSpec::Exact(value.into())));
        self
    }

    /// Requires a value of header `name` to match `regex` as a whole
    /// (`^(?:regex)$`), on the raw bytes.
    pub fn header_regex(mut self, name: impl Into<String>, regex: impl Into<String>) -> Self {
        self.headers
            .push((name.into(), ValueSpec::Regex(regex.into())));
        self
    }

    /// Requires header `name` to be present.
    pub fn header_present(mut self, name: impl Into<String>) -> Self {
        self.headers.push((name.into(), ValueSpec::Present));
        self
    }

    /// Requires header `name` to be absent.
    pub fn header_absent(mut self, name: impl Into<String>) -> Self {
        self.headers.push((name.into(), ValueSpec::Absent));
        self
    }

    /// Requires query parameter `key` to have exactly `value`, after
    /// percent-decoding.
    pub fn query(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.query
            .push((key.into(), ValueSpec::Exact(value.into())));
        self
    }

    /// Requires a value of query parameter `key` to match `regex` as a whole,
    /// after percent-decoding.
    pub fn query_regex(mut self, key: impl Into<String>, regex: impl Into<String>) -> Self {
        self.query
            .push((key.into(), ValueSpec::Regex(regex.into())));
        self
    }

    /// Requires query parameter `key` to be present (with or without a value).
    pub fn query_present(mut self, key: impl Into<String>) -> Self {
        self.query.push((key.into(), ValueSpec::Present));
        self
    }

    /// Orders this route before every route of lower priority, whatever
    /// their specificity (see the [module docs](super#order)).
    ///
    /// Default: 0.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Removes `prefix` (on a segment boundary) from the path the route's
    /// service sees: with `/api`, `/api/users?x=1` becomes `/users?x=1` and
    /// `/api` becomes `/`. Paths that do not start with it are left alone.
    /// When it strips, it sets `X-Forwarded-Prefix: /api` (replacing any the
    /// client sent), as Kong and Traefik do, so the upstream can build links.
    ///
    /// Default: the path is passed unchanged.
    pub fn strip_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.strip_prefix = Some(prefix.into());
        self
    }

    /// Replaces the path the route's service sees, filling in the captured
    /// parameters: `/v2/users/{id}` for a route on `/users/{id}`. The query
    /// is kept.
    ///
    /// Default: the path is passed unchanged.
    pub fn rewrite_path(mut self, template: impl Into<String>) -> Self {
        self.rewrite_path = Some(template.into());
        self
    }

    /// Sets the `Host` header the route's service sees (the request URI is
    /// left alone: the load balancer and proxy use it for the upstream).
    ///
    /// Default: the `Host` header is passed unchanged.
    pub fn rewrite_host(mut self, host: impl Into<String>) -> Self {
        self.rewrite_host = Some(host.into());
        self
    }

    /// Sends matched requests to `service`: any `tower` service of
    /// `Request<B>` with `Error = Infallible` and a `Bytes` response body,
    /// typically a stack of per-route layers (timeout, retry, breaker) over
    /// a load balancer and proxy. It is boxed once here, into a
    /// [`BoxCloneSyncService`](tower::util::BoxCloneSyncService).
    pub fn to<S, ResBody>(mut self, service: S) -> Self
    where
        S: tower_service::Service<Request<B>, Response = Response<ResBody>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        ResBody: http_body::Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        self.target = Some(Target::Service(boxed(service)));
        self
    }

    /// Sends matched requests to one of the split's weighted backends.
    pub fn split(mut self, split: Split<B>) -> Self {
        self.target = Some(Target::Split(split));
        self
    }

    /// The [`RouteName`](crate::identity::RouteName) the router inserts into
    /// the requests of this route, which per-route rate limits read. Routes
    /// that are alternatives of one logical route (the gateway's `orders`,
    /// `orders#2`) report the same name, so they are counted together.
    ///
    /// Default: the route's name.
    pub fn reported_as(mut self, name: impl Into<String>) -> Self {
        self.reported_as = Some(name.into());
        self
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Validates and compiles the route.
    pub(crate) fn compile(self) -> Result<(RouteRule, RouteAction<B>), RouteError> {
        let name: Arc<str> = self.name.as_str().into();
        let err = |kind| RouteError::route(&self.name, kind);
        if self.name.is_empty() {
            return Err(RouteError::new(None, RouteErrorKind::EmptyName));
        }
        let hosts = self
            .hosts
            .iter()
            .map(|h| HostRule::parse(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        let path = match &self.path {
            None => PathRule::prefix("/"),
            Some(PathSpec::Pattern(p)) => PathRule::pattern(p),
            Some(PathSpec::Prefix(p)) => PathRule::prefix(p),
        }
        .map_err(err)?;
        let headers = self
            .headers
            .iter()
            .map(|(n, v)| HeaderMatch::compile(n, v))
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        let query = self
            .query
            .iter()
            .map(|(k, v)| QueryMatch::compile(k, v))
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        if self.strip_prefix.is_some() && self.rewrite_path.is_some() {
            return Err(err(RouteErrorKind::ConflictingRewrites));
        }
        let strip_prefix = match &self.strip_prefix {
            None => None,
            Some(prefix) => match PathRule::prefix(prefix).map_err(err)? {
                PathRule::Prefix(p) => {
                    let header = HeaderValue::from_str(&p).map_err(|_| {
                        err(RouteErrorKind::InvalidPath {
                            path: prefix.clone(),
                            reason: "not visible ASCII".into(),
                        })
                    })?;
                    Some((p, header))
                }
                _ => None,
            },
        };
        let names: &[Arc<str>] = match &path {
            PathRule::Pattern(p) => &p.names,
            _ => &[],
        };
        let rewrite = self
            .rewrite_path
            .as_deref()
            .map(|t| Template::parse(t, names))
            .transpose()
            .map_err(err)?;
        let host = self
            .rewrite_host
            .as_deref()
            .map(|h| {
                HeaderValue::from_str(h)
                    .ok()
                    .filter(|_| !h.is_empty())
                    .ok_or_else(|| RouteErrorKind::InvalidHost {
                        host: h.to_owned(),
                        reason: "not a valid Host header value",
                    })
            })
            .transpose()
            .map_err(err)?;
        let target = match self.target {
            None => return Err(err(RouteErrorKind::NoTarget)),
            Some(Target::Service(service)) => RouteTarget::Service(service),
            Some(Target::Split(split)) => RouteTarget::Split(split.compile().map_err(err)?),
        };
        let methods = (!self.methods.is_empty()).then(|| self.methods.into_boxed_slice());
        let route_name =
            crate::identity::RouteName(self.reported_as.map_or_else(|| name.clone(), Arc::from));
        Ok((
            RouteRule {
                name,
                priority: self.priority,
                hosts,
                path,
                methods,
                headers: headers.into(),
                query: query.into(),
            },
            RouteAction {
                strip_prefix,
                rewrite,
                host,
                target,
                route_name,
            },
        ))
    }
}

/// What a matched route does with the request.
#[derive(Debug)]
pub(crate) struct RouteAction<B> {
    /// The prefix, and the same as an `X-Forwarded-Prefix` value.
    pub(crate) strip_prefix: Option<(Box<str>, HeaderValue)>,
    pub(crate) rewrite: Option<Template>,
    pub(crate) host: Option<HeaderValue>,
    pub(crate) target: RouteTarget<B>,
    /// The identity extension inserted into the route's requests.
    pub(crate) route_name: crate::identity::RouteName,
}

pub(crate) enum RouteTarget<B> {
    Service(RouteService<B>),
    Split(CompiledSplit<B>),
}

impl<B> fmt::Debug for RouteTarget<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Service(_) => f.write_str("Service"),
            Self::Split(split) => split.fmt(f),
        }
    }
}
