//! Request routing: host, path, method, header and query matchers, rewrites
//! and weighted traffic splits, in one [`Router`] service.
//!
//! A [`Router`] is built once from [`Route`]s and validated as a whole:
//! [`RouterBuilder::build`] returns a [`RouteError`] naming the route and the
//! problem (a bad regex, a duplicate name, all-zero weights, two patterns the
//! path router cannot tell apart), never a panic at request time.
//!
//! # Matching
//!
//! A route matches when all its matchers pass:
//!
//! * **host** — exact (`api.example.com`) or wildcard (`*.example.com`, any
//!   depth of subdomain, not the bare domain); case-insensitive, port and a
//!   trailing dot ignored. The host is the URI authority when the request
//!   has one (HTTP/2 `:authority`, absolute-form targets), else the `Host`
//!   header.
//! * **path** — exact (`/health`), a [`matchit`] pattern (`/users/{id}`,
//!   `/files/{*path}`), or a prefix on segment boundaries (`/api` matches
//!   `/api/users`, not `/apis`). Paths are matched after RFC 3986
//!   normalisation: percent-encoded unreserved characters decoded, dot
//!   segments removed (`/x/../%61dmin` is `/admin`), encoded reserved
//!   characters such as `%2F` kept. The route's service sees the same
//!   normalised path.
//! * **method** — a set; `GET` does not imply `HEAD`.
//! * **headers** — exact value, whole-value regex, present or absent.
//! * **query** — exact value, whole-value regex (after percent-decoding) or present.
//!
//! # Order
//!
//! When several routes match, the first in this order serves the request:
//!
//! 1. higher [`priority`](Route::priority) (default 0);
//! 2. path kind: exact, then pattern, then prefix (no path counts as the
//!    prefix `/`);
//! 3. among patterns, more static characters, then fewer parameters, a
//!    catch-all last; among prefixes, the longer;
//! 4. host: exact, then wildcard (longer suffix first), then no host rule;
//! 5. more matchers (a method set, each header, each query parameter);
//! 6. declaration order.
//!
//! A more specific route whose other matchers fail does not hide the less
//! specific ones: a `GET /api/users` route that needs a header the request
//! lacks falls back to a `/api` prefix route.
//!
//! # Answers without a route
//!
//! No route → `404` with an `application/problem+json` body and a
//! [`Rejection`](crate::error::Rejection) of kind
//! [`NoRoute`](crate::error::RejectionKind::NoRoute). Routes that match
//! everything but the method → `405` with `Allow` listing the methods that
//! would match ([`MethodNotAllowed`](crate::error::RejectionKind::MethodNotAllowed)).
//! gRPC requests get a trailers-only `grpc-status: 12` instead. A route
//! with no matchers at all is a catch-all: it serves whatever no other
//! route does (give it a negative priority to put it below everything).
//!
//! # Per route
//!
//! [`strip_prefix`](Route::strip_prefix), [`rewrite_path`](Route::rewrite_path)
//! (with captured parameters), [`rewrite_host`](Route::rewrite_host), and a
//! service of its own: a [`RouteService`] (a boxed clone-able tower service),
//! so timeout, retry, circuit breaker, load balancer and proxy layers stack
//! per route — or a [`Split`] of weighted [`Backend`]s each with its own
//! stack. The route's service finds a [`MatchedRoute`] (name, parameters,
//! split backend) in the request's extensions; the response carries it too,
//! for metrics and logs (each can be turned off where nothing reads it:
//! [`RouterBuilder::tag_requests`], [`RouterBuilder::tag_responses`]). Stripping a prefix sets `X-Forwarded-Prefix`.
//!
//! # Cost
//!
//! The table is compiled once. Routes without a host rule are kept once,
//! in a global table; each host rule has a table of its routes (an exact
//! host's also holds the wildcard routes covering it). Each table has an
//! exact-path map, a `matchit` router of patterns and a segment trie of
//! prefixes, whose entries list every route that could serve a path,
//! ranked table-wide. A request looks up its host's table (one hash per
//! host label at most), then the global one unless the host's match cannot
//! be beaten; each lookup is one hash (exact path) or one `matchit` lookup
//! and one hash per prefix segment. Matching allocates nothing: only the
//! captured parameters (one allocation), a rewritten path and the boxed
//! route future do. Building 1 000 hosts with 500 global routes takes a
//! few milliseconds.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Method, Request, Response, StatusCode};
//! use meshgate::routing::{Backend, MatchedRoute, Route, Router, Split};
//! use tower::{ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // An upstream that echoes the path it sees and the route that matched.
//! let echo = |who: &'static str| {
//!     service_fn(move |req: Request<String>| async move {
//!         let route = req.extensions().get::<MatchedRoute>().unwrap();
//!         let id = route.param("id").unwrap_or("-");
//!         Ok::<_, Infallible>(Response::new(format!("{who} {} id={id}", req.uri().path())))
//!     })
//! };
//!
//! let router = Router::builder()
//!     .route(
//!         Route::new("user")
//!             .host("api.example.com")
//!             .path("/users/{id}")
//!             .method(Method::GET)
//!             .rewrite_path("/v2/users/{id}")
//!             .to(echo("users")),
//!     )
//!     .route(
//!         Route::new("api")
//!             .host("*.example.com")
//!             .path_prefix("/api")
//!             .strip_prefix("/api")
//!             .split(
//!                 Split::new()
//!                     .backend(Backend::new("stable", echo("stable")).weight(100))
//!                     .backend(Backend::new("canary", echo("canary")).weight(0))
//!                     .override_header("x-canary", "true", "canary"),
//!             ),
//!     )
//!     .build()
//!     .expect("valid routes");
//!
//! let req = Request::get("/users/7").header("host", "API.example.com:443").body(String::new()).unwrap();
//! let body = router.clone().oneshot(req).await.unwrap().into_body();
//! # use http_body_util::BodyExt;
//! assert_eq!(body.collect().await.unwrap().to_bytes(), "users /v2/users/7 id=7");
//!
//! let req = Request::get("/api/orders").header("host", "eu.example.com")
//!     .header("x-canary", "true").body(String::new()).unwrap();
//! let body = router.clone().oneshot(req).await.unwrap().into_body();
//! assert_eq!(body.collect().await.unwrap().to_bytes(), "canary /orders id=-");
//!
//! let req = Request::delete("/users/7").header("host", "api.example.com").body(String::new()).unwrap();
//! let response = router.clone().oneshot(req).await.unwrap();
//! assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
//! assert_eq!(response.headers()["allow"], "GET");
//!
//! let req = Request::get("/nowhere").body(String::new()).unwrap();
//! let response = router.oneshot(req).await.unwrap();
//! assert_eq!(response.status(), StatusCode::NOT_FOUND);
//! assert_eq!(response.headers()["content-type"], "application/problem+json");
//! # }
//! ```

mod error;
mod future;
mod host;
mod matcher;
mod path;
mod route;
mod router;
mod split;
mod table;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

pub use error::{RouteError, RouteErrorKind};
pub use future::RouteFuture;
pub use route::Route;
pub use router::{Router, RouterBuilder};
pub use split::{Backend, Split};

use crate::{Body, BoxError};

/// The type-erased service a route (or a split's backend) sends requests
/// to: clone-able, `Send + Sync`, infallible, answering with the crate's
/// [`Body`].
pub type RouteService<B> = BoxCloneSyncService<Request<B>, Response<Body>, Infallible>;

/// Boxes a service as a [`RouteService`], boxing its response body too
/// (a [`Body`] is not boxed twice, nor a `RouteService`: each box is an
/// allocation more per request, for the clone and for the future).
pub(crate) fn boxed<B, S, ResBody>(service: S) -> RouteService<B>
where
    B: 'static,
    S: tower_service::Service<Request<B>, Response = Response<ResBody>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let mut slot = Some(service);
    if let Some(boxed) = crate::body::take::<RouteService<B>>(&mut slot) {
        return boxed;
    }
    // Only the `take` above empties the slot, and it returned; this runs
    // when routes are built, never per request.
    let service = slot.expect("the service is still in its slot");
    BoxCloneSyncService::new(
        service.map_response(|response: Response<ResBody>| response.map(Body::new)),
    )
}

/// The route that matched a request, in the request's extensions (for the
/// route's service; see [`RouterBuilder::tag_requests`]) and in the
/// response's (for outer layers: metrics, logs; see
/// [`RouterBuilder::tag_responses`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedRoute {
    name: Arc<str>,
    /// The pattern's parameter names, shared with the route.
    names: Option<Arc<[Arc<str>]>>,
    /// The captured values, NUL-separated, in one allocation.
    values: String,
    backend: Option<Arc<str>>,
}

impl MatchedRoute {
    /// The route's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The captured path parameters, in pattern order, as they appear in the
    /// (normalised) path: still percent-encoded.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.names
            .iter()
            .flat_map(|names| names.iter())
            .map(|name| &**name)
            .zip(self.values.split('\0'))
    }

    /// The value of parameter `name`.
    #[must_use]
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// The split backend chosen for the request, when the route has a split.
    #[must_use]
    pub fn backend(&self) -> Option<&str> {
        self.backend.as_deref()
    }

    /// The `i`-th captured value.
    pub(crate) fn value(&self, i: usize) -> Option<&str> {
        self.names.as_ref()?;
        self.values.split('\0').nth(i)
    }
}
