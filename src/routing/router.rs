//! The `Router` service and its builder.

use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{ALLOW, HOST, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri};
use tower_service::Service;

use super::error::{RouteError, RouteErrorKind};
use super::future::RouteFuture;
use super::host::RequestHost;
use super::path::{normalize, prefix_matches};
use super::route::{Route, RouteAction, RouteTarget};
use super::table::{Lookup, RequestView, Table};
use super::{MatchedRoute, RouteService};
use crate::Body;
use crate::error::{Rejection, RejectionKind, is_grpc};

/// Collects routes; [`build`](Self::build) validates them all at once.
#[must_use]
pub struct RouterBuilder<B> {
    routes: Vec<Route<B>>,
    tag_requests: bool,
    tag_responses: bool,
}

impl<B> fmt::Debug for RouterBuilder<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterBuilder")
            .field("routes", &self.routes)
            .field("tag_requests", &self.tag_requests)
            .field("tag_responses", &self.tag_responses)
            .finish()
    }
}

impl<B: 'static> RouterBuilder<B> {
    /// Adds a route.
    pub fn route(mut self, route: Route<B>) -> Self {
        self.routes.push(route);
        self
    }

    /// Adds routes.
    pub fn routes(mut self, routes: impl IntoIterator<Item = Route<B>>) -> Self {
        self.routes.extend(routes);
        self
    }

    /// Whether each request handed to a route's service carries the
    /// [`RouteName`](crate::identity::RouteName) and the [`MatchedRoute`]
    /// in its extensions, for the layers of the route's stack that read
    /// them (a rate limit keyed or overridden by route, a transform
    /// template's `${route}` or path parameters, an aggregate's
    /// parameters). Off, a stack where nothing reads them saves the two
    /// inserts (and dropping them); [`tag_responses`](Self::tag_responses)
    /// is separate.
    ///
    /// Default: on.
    pub fn tag_requests(mut self, on: bool) -> Self {
        self.tag_requests = on;
        self
    }

    /// Whether each response of a route's service carries the
    /// [`MatchedRoute`] in its extensions, for layers outside the router
    /// (metrics labelled by route, logs). Off, a stack where nothing reads
    /// it saves the insert (and the response's extension map, often its
    /// only entry); the request still carries it unless
    /// [`tag_requests`](Self::tag_requests) is off.
    ///
    /// Default: on.
    pub fn tag_responses(mut self, on: bool) -> Self {
        self.tag_responses = on;
        self
    }

    /// Validates every route and compiles the table.
    ///
    /// # Errors
    ///
    /// The first problem found, with the route's name: no routes, empty or
    /// duplicate names, invalid host, path, pattern, header, regex or
    /// rewrite, conflicting patterns on one host, a route without a service,
    /// a split without backends, with all-zero weights or an unknown
    /// override backend.
    pub fn build(self) -> Result<Router<B>, RouteError> {
        if self.routes.is_empty() {
            return Err(RouteError::new(None, RouteErrorKind::NoRoutes));
        }
        let mut by_name = HashMap::with_capacity(self.routes.len());
        let mut rules = Vec::with_capacity(self.routes.len());
        let mut actions = Vec::with_capacity(self.routes.len());
        for (index, route) in self.routes.into_iter().enumerate() {
            let name: Arc<str> = route.name().into();
            if by_name.insert(name.clone(), index).is_some() {
                return Err(RouteError::route(&name, RouteErrorKind::DuplicateName));
            }
            let (rule, action) = route.compile()?;
            rules.push(rule);
            actions.push(action);
        }
        Ok(Router {
            inner: Arc::new(Inner {
                table: Table::build(rules)?,
                actions: actions.into(),
                by_name,
                tag_requests: self.tag_requests,
                tag_responses: self.tag_responses,
            }),
            last: None,
        })
    }
}

/// Routes each request to the service of the best matching route.
///
/// Built once by [`Router::builder`]; cloning is cheap and every clone
/// shares the table, the route services and the split weights and random
/// state (one `Arc`). `poll_ready` is always ready: each request drives its
/// route's service to readiness, so backpressure is per route. Each clone
/// keeps the service of the last route (and split backend) it called, and
/// calls it again in place for the next request to the same one when it is
/// ready at once; other requests get a clone of their route's service (as
/// axum does), driven to readiness before it is called. See the
/// [module docs](super) for the matching order and the answers to unrouted
/// requests.
pub struct Router<B> {
    inner: Arc<Inner<B>>,
    /// The service this clone called last, by route and backend (0 for a
    /// route without a split, else 1 + the split's index): a router kept
    /// per connection calls a ready service again instead of cloning it
    /// (a box and a reference count per layer) for every request.
    last: Option<Last<B>>,
}

struct Last<B> {
    route: usize,
    backend: usize,
    service: RouteService<B>,
}

struct Inner<B> {
    table: Table,
    actions: Box<[RouteAction<B>]>,
    by_name: HashMap<Arc<str>, usize>,
    tag_requests: bool,
    tag_responses: bool,
}

impl<B> Clone for Router<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            last: None,
        }
    }
}

impl<B> fmt::Debug for Router<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field(
                "routes",
                &self
                    .inner
                    .table
                    .rules()
                    .iter()
                    .map(|r| &r.name)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<B: 'static> Router<B> {
    /// A builder with no routes.
    pub fn builder() -> RouterBuilder<B> {
        RouterBuilder {
            routes: Vec::new(),
            tag_requests: true,
            tag_responses: true,
        }
    }
}

impl<B> Router<B> {
    /// The request's host when some route has a host rule; none otherwise,
    /// which saves the header's look-up and parse.
    fn host_of<'r, T>(&self, req: &'r Request<T>) -> Option<RequestHost<'r>> {
        if self.inner.table.routes_by_host() {
            RequestHost::of(req)
        } else {
            None
        }
    }

    /// The route that would serve `req`, without calling it (`None` when
    /// the answer would be 404 or 405). The backend of a split is chosen
    /// per call, so it is not set here.
    #[must_use]
    pub fn route_for<T>(&self, req: &Request<T>) -> Option<MatchedRoute> {
        let host = self.host_of(req);
        let path = normalize(req.uri().path());
        let view = RequestView {
            host: host.as_ref().map(RequestHost::as_str),
            path: &path,
            method: req.method(),
            headers: req.headers(),
            query: req.uri().query(),
        };
        match self.inner.table.find(&view) {
            Lookup::Found { route, params } => {
                Some(self.matched(route, params.as_ref(), path.len()))
            }
            Lookup::MethodNotAllowed(_) | Lookup::NotFound => None,
        }
    }

    /// Changes the weights of a route's split at run time (a canary step, a
    /// blue-green flip); backends not named keep their weight. Every clone
    /// of the router sees the change at once; requests in flight keep the
    /// backend they were given.
    ///
    /// # Errors
    ///
    /// An unknown route, a route without a split, an unknown backend, or
    /// weights that would all be zero (the old weights then stay).
    pub fn set_weights(&self, route: &str, weights: &[(&str, u32)]) -> Result<(), RouteError> {
        let action = self
            .inner
            .by_name
            .get(route)
            .and_then(|&i| self.inner.actions.get(i))
            .ok_or_else(|| RouteError::route(route, RouteErrorKind::UnknownRoute))?;
        match &action.target {
            RouteTarget::Split(split) => split
                .set_weights(weights)
                .map_err(|kind| RouteError::route(route, kind)),
            RouteTarget::Service(_) => Err(RouteError::route(route, RouteErrorKind::NotASplit)),
        }
    }

    fn matched(
        &self,
        route: usize,
        params: Option<&matchit::Params<'_, '_>>,
        path_len: usize,
    ) -> MatchedRoute {
        // `route` comes from the table's lookup, an index into its rules.
        let rule = &self.inner.table.rules()[route];
        let (names, values) = match (rule.param_names(), params) {
            (Some(names), Some(params)) => {
                // One allocation for all values, NUL-separated (a URI path
                // never holds a NUL). They are disjoint parts of the path, so
                // its length is enough room, up to a cap for huge paths.
                let mut values = String::with_capacity(path_len.min(256));
                for (i, (_, value)) in params.iter().enumerate() {
                    if i > 0 {
                        values.push('\0');
                    }
                    values.push_str(value);
                }
                (Some(names.clone()), values)
            }
            _ => (None, String::new()),
        };
        MatchedRoute {
            name: rule.name.clone(),
            names,
            values,
            backend: None,
        }
    }
}

impl<B: Send + 'static> Service<Request<B>> for Router<B> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = RouteFuture<B>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // Whether the caller is gRPC matters only to the router's own
        // answers, so the content type is read only for them.
        let (route, mut matched, new_path) = {
            let host = self.host_of(&req);
            let path = normalize(req.uri().path());
            let view = RequestView {
                host: host.as_ref().map(RequestHost::as_str),
                path: &path,
                method: req.method(),
                headers: req.headers(),
                query: req.uri().query(),
            };
            match self.inner.table.find(&view) {
                Lookup::Found { route, params } => {
                    let matched = self.matched(route, params.as_ref(), path.len());
                    // Rules and actions are built together, one per route.
                    let action = &self.inner.actions[route];
                    let new_path =
                        upstream_path(action, &path, matches!(path, Cow::Owned(_)), &matched);
                    (route, matched, new_path)
                }
                Lookup::MethodNotAllowed(allow) => {
                    let grpc = is_grpc(req.headers());
                    return RouteFuture::ready(method_not_allowed(allow, grpc));
                }
                Lookup::NotFound => {
                    let rejection = Rejection::new(RejectionKind::NoRoute)
                        .with_detail("no route matches the request");
                    return RouteFuture::ready(reject(rejection, is_grpc(req.headers())));
                }
            }
        };
        let action = &self.inner.actions[route];
        if let Some((path, stripped)) = new_path {
            if let Err(rejection) = set_path(req.uri_mut(), &path) {
                return RouteFuture::ready(reject(rejection, is_grpc(req.headers())));
            }
            if stripped && let Some((_, prefix)) = &action.strip_prefix {
                req.headers_mut().insert(X_FORWARDED_PREFIX, prefix.clone());
            }
        }
        if let Some(host) = &action.host {
            req.headers_mut().insert(HOST, host.clone());
        }
        let (backend, shared) = match &action.target {
            RouteTarget::Service(service) => (0, service),
            RouteTarget::Split(split) => {
                let (index, name, service) = split.choose(req.headers());
                matched.backend = Some(name.clone());
                (index + 1, service)
            }
        };
        let tag = if self.inner.tag_requests {
            req.extensions_mut().insert(action.route_name.clone());
            let tag = self.inner.tag_responses.then(|| matched.clone());
            req.extensions_mut().insert(matched);
            tag
        } else {
            self.inner.tag_responses.then_some(matched)
        };
        let service = match self.last.take() {
            Some(last) if last.route == route && last.backend == backend => last.service,
            _ => shared.clone(),
        };
        let (future, service) = RouteFuture::call(service, req, tag);
        self.last = service.map(|service| Last {
            route,
            backend,
            service,
        });
        future
    }
}

const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// The path the route's service sees, when it differs from the request's:
/// rewritten, stripped (then `true`), or normalised (the router matched on
/// the normalised path, and the service sees the same one, so they cannot
/// disagree).
fn upstream_path<B>(
    action: &RouteAction<B>,
    path: &str,
    normalized: bool,
    matched: &MatchedRoute,
) -> Option<(String, bool)> {
    if let Some(template) = &action.rewrite {
        let mut out = String::with_capacity(path.len() + 16);
        template.render(|i| matched.value(i), &mut out);
        return Some((out, false));
    }
    if let Some((prefix, _)) = &action.strip_prefix
        && **prefix != *"/"
        && prefix_matches(prefix, path)
    {
        let rest = &path[prefix.len()..];
        return Some((if rest.is_empty() { "/" } else { rest }.to_owned(), true));
    }
    normalized.then(|| (path.to_owned(), false))
}

fn set_path(uri: &mut Uri, path: &str) -> Result<(), Rejection> {
    let bad = || {
        Rejection::new(RejectionKind::BadRequest)
            .with_detail("the request path cannot be rewritten into a valid URI")
    };
    let mut parts = std::mem::take(uri).into_parts();
    let path_and_query = match parts.path_and_query.as_ref().and_then(PathAndQuery::query) {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).map_err(|_| bad())?);
    *uri = Uri::from_parts(parts).map_err(|_| bad())?;
    Ok(())
}

fn reject(rejection: Rejection, grpc: bool) -> Response<Body> {
    if grpc {
        rejection.into_grpc_response().map(Body::new)
    } else {
        rejection.into_response().map(Body::new)
    }
}

/// RFC 9110 §9.1 order, then PATCH, then other methods by name.
fn method_order(method: &Method) -> (usize, &str) {
    (crate::classify::method_rank(method), method.as_str())
}

fn method_not_allowed(mut allow: Vec<Method>, grpc: bool) -> Response<Body> {
    allow.sort_by(|a, b| method_order(a).cmp(&method_order(b)));
    let list = allow
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let rejection = Rejection::new(RejectionKind::MethodNotAllowed)
        .with_detail("the route does not accept this method");
    let mut response = reject(rejection, grpc);
    // Method names are tokens, so the list is a valid header value.
    if let Ok(value) = HeaderValue::from_str(&list) {
        response.headers_mut().insert(ALLOW, value);
    }
    response
}
