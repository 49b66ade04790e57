//! Behaviour of `meshgate::routing` through its public API.

mod real_http;
mod reference;
mod stacks;

use std::convert::Infallible;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use meshgate::Body;
use meshgate::error::{Rejection, RejectionKind};
use meshgate::identity::RouteName;
use meshgate::routing::{Backend, MatchedRoute, Route, RouteErrorKind, Router, Split};
use tower::util::BoxCloneSyncService;
use tower::{ServiceExt, service_fn};

/// An upstream that answers with what it saw:
/// `who|path?query|host|params|backend`.
pub(crate) fn echo(
    who: &'static str,
) -> impl tower::Service<
    Request<String>,
    Response = Response<String>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<String>, Infallible>> + Send,
> + Clone
+ Send
+ Sync
+ 'static {
    service_fn(move |req: Request<String>| async move {
        let matched = req.extensions().get::<MatchedRoute>().cloned();
        let params = matched
            .as_ref()
            .map(|m| {
                m.params()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let backend = matched
            .as_ref()
            .and_then(|m| m.backend())
            .unwrap_or("")
            .to_owned();
        let mut host = req
            .headers()
            .get("host")
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
            .unwrap_or_default();
        if let Some(prefix) = req.headers().get("x-forwarded-prefix") {
            host.push_str(" prefix=");
            host.push_str(prefix.to_str().unwrap());
        }
        let target = req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str().to_owned())
            .unwrap_or_default();
        Ok(Response::new(format!(
            "{who}|{target}|{host}|{params}|{backend}"
        )))
    })
}

/// Extra request headers of a table row.
type Headers<'a> = &'a [(&'a str, &'a str)];

fn request(method: Method, host: &str, target: &str) -> http::request::Builder {
    let builder = Request::builder().method(method).uri(target);
    if host.is_empty() {
        builder
    } else {
        builder.header("host", host)
    }
}

async fn send(router: &Router<String>, req: Request<String>) -> (StatusCode, String, Response<()>) {
    let response = router.clone().oneshot(req).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        String::from_utf8_lossy(&bytes).into_owned(),
        Response::from_parts(parts, ()),
    )
}

/// Which upstream served the request (the part before the first `|`), or the status.
async fn who(router: &Router<String>, req: Request<String>) -> String {
    let (status, body, _) = send(router, req).await;
    if status == StatusCode::OK {
        body.split('|').next().unwrap_or_default().to_owned()
    } else {
        status.as_str().to_owned()
    }
}

fn table_router() -> Router<String> {
    Router::builder()
        .route(Route::new("health").path("/health").to(echo("health")))
        .route(
            Route::new("user-get")
                .host("api.example.com")
                .path("/users/{id}")
                .method(Method::GET)
                .to(echo("user-get")),
        )
        .route(
            Route::new("user-new")
                .host("api.example.com")
                .path("/users/new")
                .to(echo("user-new")),
        )
        .route(
            Route::new("user-delete")
                .host("api.example.com")
                .path("/users/{user_id}")
                .method(Method::DELETE)
                .header("x-admin", "yes")
                .to(echo("user-delete")),
        )
        .route(
            Route::new("files")
                .host("api.example.com")
                .path("/files/{*path}")
                .to(echo("files")),
        )
        .route(
            Route::new("tenant")
                .host("*.example.com")
                .path_prefix("/api")
                .to(echo("tenant")),
        )
        .route(
            Route::new("tenant-eu")
                .host("*.eu.example.com")
                .path_prefix("/api")
                .to(echo("tenant-eu")),
        )
        .route(
            Route::new("mobile")
                .path_prefix("/api")
                .header_regex("user-agent", "(?i).*(android|iphone).*")
                .to(echo("mobile")),
        )
        .route(
            Route::new("api-v2")
                .path_prefix("/api")
                .query("version", "2")
                .to(echo("api-v2")),
        )
        .route(
            Route::new("api-num")
                .path_prefix("/api")
                .query_regex("v", "[0-9]+")
                .to(echo("api-num")),
        )
        .route(
            Route::new("api-debug")
                .path_prefix("/api")
                .query_present("debug")
                .header_absent("x-no-debug")
                .to(echo("api-debug")),
        )
        .route(Route::new("api").path_prefix("/api").to(echo("api")))
        .route(
            Route::new("api-users")
                .path_prefix("/api/users")
                .to(echo("api-users")),
        )
        .route(
            Route::new("maintenance")
                .path_prefix("/")
                .header_present("x-maintenance")
                .priority(100)
                .to(echo("maintenance")),
        )
        .route(Route::new("catch-all").to(echo("catch-all")))
        .build()
        .unwrap()
}

#[tokio::test]
async fn route_matching_table() {
    let router = table_router();
    let get = Method::GET;
    #[rustfmt::skip]
    let cases: &[(Method, &str, &str, Headers, &str)] = &[
        // Exact path on any host.
        (get.clone(), "", "/health", &[], "health"),
        (get.clone(), "anything.test", "/health", &[], "health"),
        // Path parameters, on an exact host (case-insensitive, port ignored).
        (get.clone(), "api.example.com", "/users/42", &[], "user-get"),
        (get.clone(), "API.Example.COM:8443", "/users/42", &[], "user-get"),
        // Static beats parameter.
        (get.clone(), "api.example.com", "/users/new", &[], "user-new"),
        // Same shape, other name, method and header.
        (Method::DELETE, "api.example.com", "/users/42", &[("x-admin", "yes")], "user-delete"),
        (get.clone(), "api.example.com", "/files/a/b/c.txt", &[], "files"),
        // Wildcard host: any depth, longest suffix first, not the bare domain.
        (get.clone(), "acme.example.com", "/api/x", &[], "tenant"),
        (get.clone(), "a.b.example.com", "/api/x", &[], "tenant"),
        (get.clone(), "acme.eu.example.com", "/api/x", &[], "tenant-eu"),
        (get.clone(), "example.com", "/api/x", &[], "api"),
        // Header regex (whole value, case-insensitive flag in the regex).
        (get.clone(), "", "/api/x", &[("user-agent", "Mozilla (iPhone)")], "mobile"),
        (get.clone(), "", "/api/x", &[("user-agent", "curl/8")], "api"),
        // Query: exact, regex, present; a failing header sends it on.
        (get.clone(), "", "/api/x?version=2", &[], "api-v2"),
        (get.clone(), "", "/api/x?version=3", &[], "api"),
        (get.clone(), "", "/api/x?v=17", &[], "api-num"),
        (get.clone(), "", "/api/x?v=17a", &[], "api"),
        (get.clone(), "", "/api/x?debug", &[], "api-debug"),
        (get.clone(), "", "/api/x?debug", &[("x-no-debug", "1")], "api"),
        // Longer prefix first, on segment boundaries.
        (get.clone(), "", "/api/users/7", &[], "api-users"),
        (get.clone(), "", "/api/usersx", &[], "api"),
        (get.clone(), "", "/apix", &[], "catch-all"),
        (get.clone(), "", "/api", &[], "api"),
        (get.clone(), "", "/api/", &[], "api"),
        // Explicit priority beats every specificity.
        (get.clone(), "api.example.com", "/users/42", &[("x-maintenance", "1")], "maintenance"),
        // Anything else.
        (get.clone(), "", "/", &[], "catch-all"),
        (Method::OPTIONS, "", "*", &[], "catch-all"),
    ];
    for (method, host, target, headers, expected) in cases {
        let mut builder = request(method.clone(), host, target);
        for (name, value) in *headers {
            builder = builder.header(*name, *value);
        }
        let req = builder.body(String::new()).unwrap();
        let found = router.route_for(&req).map(|m| m.name().to_owned());
        assert_eq!(
            who(&router, req).await,
            *expected,
            "{method} {host} {target} {headers:?}"
        );
        assert_eq!(found.as_deref(), Some(*expected), "route_for {target}");
    }
}

#[tokio::test]
async fn a_more_specific_route_that_fails_falls_back_to_less_specific_ones() {
    let router = Router::builder()
        .route(
            Route::new("users-exact")
                .path("/api/users")
                .header("x-tenant", "acme")
                .to(echo("users-exact")),
        )
        .route(
            Route::new("users-param")
                .path("/api/{section}")
                .method(Method::POST)
                .to(echo("users-param")),
        )
        .route(
            Route::new("deep-param")
                .path("/api/{section}/{id}")
                .header("x-deep", "1")
                .to(echo("deep-param")),
        )
        .route(
            Route::new("any-second")
                .path("/{a}/{b}/{c}")
                .query_present("any")
                .to(echo("any-second")),
        )
        .route(
            Route::new("api")
                .path_prefix("/api")
                .method(Method::GET)
                .to(echo("api")),
        )
        .build()
        .unwrap();
    let cases: &[(Method, &str, Headers, &str)] = &[
        (
            Method::GET,
            "/api/users",
            &[("x-tenant", "acme")],
            "users-exact",
        ),
        // Exact fails its header → the pattern fails its method → the prefix.
        (Method::GET, "/api/users", &[], "api"),
        (Method::POST, "/api/users", &[], "users-param"),
        // Pattern fails its header → an overlapping pattern of other shape.
        (Method::GET, "/api/users/7?any", &[], "any-second"),
        (
            Method::GET,
            "/api/users/7",
            &[("x-deep", "1")],
            "deep-param",
        ),
        (Method::GET, "/api/users/7", &[], "api"),
    ];
    for (method, target, headers, expected) in cases {
        let mut builder = request(method.clone(), "", target);
        for (name, value) in *headers {
            builder = builder.header(*name, *value);
        }
        let req = builder.body(String::new()).unwrap();
        assert_eq!(
            who(&router, req).await,
            *expected,
            "{method} {target} {headers:?}"
        );
    }
}

#[tokio::test]
async fn overlapping_patterns_are_all_reachable() {
    let router = Router::builder()
        .route(Route::new("a").path("/a/{x}/c").to(echo("a")))
        .route(Route::new("b").path("/{y}/b/d").to(echo("b")))
        .route(Route::new("c").path("/{y}/{z}/{*rest}").to(echo("c")))
        .route(Route::new("d").path("/a/b").to(echo("d")))
        .build()
        .unwrap();
    for (target, expected) in [
        ("/a/b/c", "a"),
        ("/a/b/d", "b"),
        ("/q/b/d", "b"),
        ("/a/b/e", "c"),
        ("/a/b/c/d", "c"),
        ("/a/b", "d"),
        ("/a/b/", "404"),
        ("/a", "404"),
    ] {
        let req = request(Method::GET, "", target)
            .body(String::new())
            .unwrap();
        assert_eq!(who(&router, req).await, expected, "{target}");
    }
}

#[tokio::test]
async fn strip_prefix_and_rewrites_are_what_the_route_service_sees() {
    let router = Router::builder()
        .route(
            Route::new("strip")
                .path_prefix("/api/")
                .strip_prefix("/api")
                .to(echo("strip")),
        )
        .route(
            Route::new("rewrite")
                .path("/users/{id}/posts/{*rest}")
                .rewrite_path("/v2/u/{id}/p/{rest}")
                .rewrite_host("users.internal")
                .to(echo("rewrite")),
        )
        .route(
            Route::new("host-only")
                .host("old.example.com")
                .rewrite_host("new.example.com")
                .to(echo("host-only")),
        )
        .build()
        .unwrap();
    let body = |req| async { send(&router, req).await.1 };
    let req = request(Method::GET, "gw", "/api/orders/9?sort=asc")
        .body(String::new())
        .unwrap();
    assert_eq!(body(req).await, "strip|/orders/9?sort=asc|gw prefix=/api||");
    // A client's own X-Forwarded-Prefix is replaced.
    let req = request(Method::GET, "gw", "/api")
        .header("x-forwarded-prefix", "/evil")
        .body(String::new())
        .unwrap();
    assert_eq!(body(req).await, "strip|/|gw prefix=/api||");
    let req = request(Method::GET, "gw", "/users/7/posts/2024/05?x=1")
        .body(String::new())
        .unwrap();
    assert_eq!(
        body(req).await,
        "rewrite|/v2/u/7/p/2024/05?x=1|users.internal|id=7,rest=2024/05|"
    );
    let req = request(Method::GET, "OLD.example.com", "/a")
        .body(String::new())
        .unwrap();
    assert_eq!(body(req).await, "host-only|/a|new.example.com||");
    // The service sees the normalised path it was routed on.
    let req = request(Method::GET, "gw", "/x/../api/%6Frders")
        .body(String::new())
        .unwrap();
    assert_eq!(body(req).await, "strip|/orders|gw prefix=/api||");
}

#[tokio::test]
async fn no_route_is_404_and_wrong_method_is_405_with_allow() {
    let router = Router::builder()
        .route(
            Route::new("read")
                .path("/items/{id}")
                .methods([Method::GET, Method::HEAD])
                .to(echo("read")),
        )
        .route(
            Route::new("write")
                .path("/items/{id}")
                .method(Method::PUT)
                .to(echo("write")),
        )
        .route(
            Route::new("admin-delete")
                .path("/items/{id}")
                .method(Method::DELETE)
                .header("x-admin", "yes")
                .to(echo("admin-delete")),
        )
        .build()
        .unwrap();

    let req = request(Method::GET, "", "/nothing")
        .body(String::new())
        .unwrap();
    let (status, body, response) = send(&router, req).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"], 404);
    assert_eq!(
        response.extensions().get::<Rejection>().unwrap().kind(),
        RejectionKind::NoRoute
    );

    let req = request(Method::POST, "", "/items/3")
        .body(String::new())
        .unwrap();
    let (status, body, response) = send(&router, req).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // DELETE needs a header this request lacks, so it is not offered.
    assert_eq!(response.headers()["allow"], "GET, HEAD, PUT");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"],
        405
    );
    assert_eq!(
        response.extensions().get::<Rejection>().unwrap().kind(),
        RejectionKind::MethodNotAllowed
    );
    assert!(
        router
            .route_for(&request(Method::POST, "", "/items/3").body(()).unwrap())
            .is_none()
    );

    let req = request(Method::POST, "", "/items/3")
        .header("x-admin", "yes")
        .body(String::new())
        .unwrap();
    let (_, _, response) = send(&router, req).await;
    assert_eq!(response.headers()["allow"], "GET, HEAD, PUT, DELETE");

    // gRPC callers get a gRPC status instead.
    let req = request(Method::POST, "", "/pkg.Svc/Call")
        .header("content-type", "application/grpc")
        .body(String::new())
        .unwrap();
    let (status, _, response) = send(&router, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "12");
}

fn canary_split(seed: u64) -> Split<String> {
    Split::new()
        .backend(Backend::new("stable", echo("stable")).weight(90))
        .backend(Backend::new("canary", echo("canary")).weight(10))
        .seed(seed)
}

#[tokio::test]
async fn a_90_10_split_is_within_2_percent_over_10_000_requests() {
    for seed in [1, 42, 20_261_123] {
        let router = Router::builder()
            .route(Route::new("orders").split(canary_split(seed)))
            .build()
            .unwrap();
        let mut canary = 0;
        for _ in 0..10_000 {
            let req = request(Method::GET, "", "/orders")
                .body(String::new())
                .unwrap();
            let response = router.clone().oneshot(req).await.unwrap();
            let matched = response.extensions().get::<MatchedRoute>().unwrap();
            assert_eq!(matched.name(), "orders");
            if matched.backend() == Some("canary") {
                canary += 1;
            }
        }
        assert!(
            (800..=1200).contains(&canary),
            "seed {seed}: {canary} of 10000 to the canary"
        );
    }
}

#[tokio::test]
async fn the_same_seed_gives_the_same_sequence() {
    let picks = |seed| async move {
        let router = Router::builder()
            .route(Route::new("r").split(canary_split(seed)))
            .build()
            .unwrap();
        let mut out = Vec::new();
        for _ in 0..200 {
            let req = request(Method::GET, "", "/").body(String::new()).unwrap();
            out.push(who(&router, req).await);
        }
        out
    };
    assert_eq!(picks(7).await, picks(7).await);
    assert_ne!(picks(7).await, picks(8).await);
}

#[tokio::test]
async fn header_override_ab_by_header_and_sticky_cookie() {
    let router = Router::builder()
        .route(
            Route::new("shop").split(
                Split::new()
                    .backend(Backend::new("a", echo("a")).weight(50))
                    .backend(Backend::new("b", echo("b")).weight(50))
                    .backend(Backend::new("canary", echo("canary")).weight(0))
                    .override_header("x-canary", "true", "canary")
                    .override_header_regex("x-group", "(?i)b", "b")
                    .override_cookie("group", "a", "a")
                    .sticky_cookie("session")
                    .seed(3),
            ),
        )
        .build()
        .unwrap();
    let get = |headers: &[(&str, &str)]| {
        let mut builder = request(Method::GET, "", "/cart");
        for (n, v) in headers {
            builder = builder.header(*n, *v);
        }
        builder.body(String::new()).unwrap()
    };
    // A zero-weight canary still takes the override, every time.
    for _ in 0..50 {
        assert_eq!(who(&router, get(&[("x-canary", "true")])).await, "canary");
        assert_eq!(who(&router, get(&[("x-group", "B")])).await, "b");
        assert_eq!(who(&router, get(&[("cookie", "x=1; group=a")])).await, "a");
    }
    // Without an override, the canary gets no weighted traffic.
    for _ in 0..200 {
        assert_ne!(who(&router, get(&[("x-canary", "false")])).await, "canary");
    }
    // Sticky: the same session always lands on the same backend, and
    // sessions spread over both.
    let mut seen = std::collections::HashSet::new();
    for user in 0..64 {
        let cookie = format!("theme=dark; session=user-{user}");
        let first = who(&router, get(&[("cookie", &cookie)])).await;
        for _ in 0..20 {
            assert_eq!(who(&router, get(&[("cookie", &cookie)])).await, first);
        }
        seen.insert(first);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test]
async fn sticky_header_is_stable_across_routers() {
    let build = |seed| {
        Router::builder()
            .route(
                Route::new("r").split(
                    Split::new()
                        .backend(Backend::new("x", echo("x")))
                        .backend(Backend::new("y", echo("y")))
                        .sticky_header("x-user")
                        .seed(seed),
                ),
            )
            .build()
            .unwrap()
    };
    let (one, two) = (build(1), build(2));
    for user in 0..50 {
        let req = || {
            request(Method::GET, "", "/")
                .header("x-user", format!("u{user}"))
                .body(String::new())
                .unwrap()
        };
        assert_eq!(who(&one, req()).await, who(&two, req()).await);
    }
}

#[tokio::test]
async fn a_blue_green_flip_moves_all_traffic() {
    let router = Router::builder()
        .route(
            Route::new("site").split(
                Split::new()
                    .backend(Backend::new("blue", echo("blue")).weight(100))
                    .backend(Backend::new("green", echo("green")).weight(0)),
            ),
        )
        .build()
        .unwrap();
    let clone = router.clone();
    let req = || request(Method::GET, "", "/").body(String::new()).unwrap();
    for _ in 0..500 {
        assert_eq!(who(&router, req()).await, "blue");
    }
    router
        .set_weights("site", &[("blue", 0), ("green", 100)])
        .unwrap();
    // Clones share the weights.
    for _ in 0..500 {
        assert_eq!(who(&clone, req()).await, "green");
    }
    // A flip to all-zero is refused and changes nothing.
    let err = router.set_weights("site", &[("green", 0)]).unwrap_err();
    assert_eq!(err.kind(), &RouteErrorKind::ZeroWeights);
    assert_eq!(who(&router, req()).await, "green");
    assert!(matches!(
        router
            .set_weights("site", &[("purple", 1)])
            .unwrap_err()
            .kind(),
        RouteErrorKind::UnknownBackend { .. }
    ));
    assert_eq!(
        router.set_weights("nope", &[]).unwrap_err().kind(),
        &RouteErrorKind::UnknownRoute
    );
    let plain = Router::builder()
        .route(Route::new("plain").to(echo("plain")))
        .build()
        .unwrap();
    assert_eq!(
        plain.set_weights("plain", &[("a", 1)]).unwrap_err().kind(),
        &RouteErrorKind::NotASplit
    );
}

#[test]
fn config_errors_are_returned_not_panicked() {
    fn build(routes: Vec<Route<String>>) -> RouteErrorKind {
        let err = Router::builder().routes(routes).build().unwrap_err();
        // Every message names the route (but the empty-router one).
        if err.route_name().is_some() {
            assert!(err.to_string().starts_with("route \""), "{err}");
        }
        err.kind().clone()
    }
    let ok = || echo("x");
    assert!(matches!(
        build(vec![Route::new("r").header_regex("x", "(").to(ok())]),
        RouteErrorKind::InvalidRegex { .. }
    ));
    assert!(matches!(
        build(vec![Route::new("r").query_regex("x", "[").to(ok())]),
        RouteErrorKind::InvalidRegex { .. }
    ));
    assert_eq!(
        build(vec![
            Route::new("twice").path("/a").to(ok()),
            Route::new("twice").path("/b").to(ok()),
        ]),
        RouteErrorKind::DuplicateName
    );
    assert_eq!(
        build(vec![
            Route::new("r").split(
                Split::new()
                    .backend(Backend::new("a", ok()).weight(0))
                    .backend(Backend::new("b", ok()).weight(0)),
            )
        ]),
        RouteErrorKind::ZeroWeights
    );
    let conflict = Router::builder()
        .route(Route::new("one").path("/files/{name}").to(ok()))
        .route(Route::new("two").path("/files/{*path}").to(ok()))
        .build()
        .unwrap_err();
    assert_eq!(conflict.route_name(), Some("two"));
    assert!(
        matches!(conflict.kind(), RouteErrorKind::PathConflict { other_route, .. } if other_route == "one"),
        "{conflict}"
    );
    // The same patterns on different hosts do not meet.
    Router::builder()
        .route(
            Route::new("one")
                .host("a.test")
                .path("/files/{name}")
                .to(ok()),
        )
        .route(
            Route::new("two")
                .host("b.test")
                .path("/files/{*path}")
                .to(ok()),
        )
        .build()
        .unwrap();
    // Nor does a host route with a global one; the more specific serves.
    let mixed = Router::builder()
        .route(
            Route::new("one")
                .host("a.test")
                .path("/files/{name}")
                .to(ok()),
        )
        .route(Route::new("two").path("/files/{*path}").to(ok()))
        .build()
        .unwrap();
    let name = |host: &str, path: &str| {
        mixed
            .route_for(&request(Method::GET, host, path).body(()).unwrap())
            .map(|m| m.name().to_owned())
    };
    assert_eq!(name("a.test", "/files/x").as_deref(), Some("one"));
    assert_eq!(name("a.test", "/files/x/y").as_deref(), Some("two"));
    assert_eq!(name("b.test", "/files/x").as_deref(), Some("two"));
    // Host and global routes are ordered as one table.
    let mixed = Router::builder()
        .route(
            Route::new("host-user")
                .host("a.test")
                .path("/u/{id}")
                .to(ok()),
        )
        .route(Route::new("host-all").host("a.test").to(ok()))
        .route(Route::new("host-exact").host("a.test").path("/x").to(ok()))
        .route(Route::new("global-me").path("/u/me").to(ok()))
        .route(Route::new("global-item").path("/items/{id}").to(ok()))
        .route(Route::new("global-x").path("/x").to(ok()))
        .route(
            Route::new("global-urgent")
                .path_prefix("/")
                .header_present("x-urgent")
                .priority(5)
                .to(ok()),
        )
        .build()
        .unwrap();
    let name = |path: &str, urgent: bool| {
        let mut req = request(Method::GET, "a.test", path);
        if urgent {
            req = req.header("x-urgent", "1");
        }
        mixed
            .route_for(&req.body(()).unwrap())
            .map(|m| m.name().to_owned())
    };
    assert_eq!(name("/u/7", false).as_deref(), Some("host-user"));
    assert_eq!(name("/u/me", false).as_deref(), Some("global-me"));
    assert_eq!(name("/items/3", false).as_deref(), Some("global-item"));
    assert_eq!(name("/x", false).as_deref(), Some("host-exact"));
    assert_eq!(name("/other", false).as_deref(), Some("host-all"));
    assert_eq!(name("/x", true).as_deref(), Some("global-urgent"));
    assert_eq!(name("/u/7", true).as_deref(), Some("global-urgent"));
    // Patterns that differ only in parameter names share an entry.
    Router::builder()
        .route(
            Route::new("one")
                .path("/u/{id}")
                .method(Method::GET)
                .to(ok()),
        )
        .route(
            Route::new("two")
                .path("/u/{name}")
                .method(Method::PUT)
                .to(ok()),
        )
        .build()
        .unwrap();
    assert_eq!(build(vec![Route::new("r")]), RouteErrorKind::NoTarget);
    assert_eq!(build(vec![]), RouteErrorKind::NoRoutes);
    assert_eq!(
        build(vec![Route::new("").to(ok())]),
        RouteErrorKind::EmptyName
    );
    assert!(matches!(
        build(vec![Route::new("r").path("/a/{b").to(ok())]),
        RouteErrorKind::InvalidPath { .. }
    ));
    assert!(matches!(
        build(vec![Route::new("r").path("no-slash").to(ok())]),
        RouteErrorKind::InvalidPath { .. }
    ));
    assert!(matches!(
        build(vec![Route::new("r").host("a.*.com").to(ok())]),
        RouteErrorKind::InvalidHost { .. }
    ));
    assert!(matches!(
        build(vec![Route::new("r").header("bad name", "v").to(ok())]),
        RouteErrorKind::InvalidHeader { .. }
    ));
    assert!(matches!(
        build(vec![
            Route::new("r")
                .path("/u/{id}")
                .rewrite_path("/v2/{uid}")
                .to(ok())
        ]),
        RouteErrorKind::InvalidRewrite { .. }
    ));
    assert_eq!(
        build(vec![
            Route::new("r")
                .strip_prefix("/a")
                .rewrite_path("/b")
                .to(ok())
        ]),
        RouteErrorKind::ConflictingRewrites
    );
    assert_eq!(
        build(vec![Route::new("r").split(Split::new())]),
        RouteErrorKind::EmptySplit
    );
    assert!(matches!(
        build(vec![
            Route::new("r").split(
                Split::new()
                    .backend(Backend::new("a", ok()))
                    .override_header("x", "1", "b"),
            )
        ]),
        RouteErrorKind::UnknownBackend { .. }
    ));
    assert!(matches!(
        build(vec![
            Route::new("r").split(
                Split::new()
                    .backend(Backend::new("a", ok()))
                    .backend(Backend::new("a", ok())),
            )
        ]),
        RouteErrorKind::DuplicateBackend { .. }
    ));
}

#[tokio::test]
async fn odd_input_gets_an_answer_not_a_panic() {
    let router = Router::builder()
        .route(Route::new("admin").path_prefix("/admin").to(echo("admin")))
        .route(
            Route::new("host")
                .host("exact.test")
                .path_prefix("/")
                .to(echo("host")),
        )
        .route(
            Route::new("ua")
                .path("/ua")
                .header_regex("user-agent", "bot.*")
                .to(echo("ua")),
        )
        .route(Route::new("params").path("/p/{id}").to(echo("params")))
        .build()
        .unwrap();
    // Percent-encoded unreserved characters and dot segments route as decoded.
    let req = request(Method::GET, "", "/%61dmin/x")
        .body(String::new())
        .unwrap();
    assert_eq!(who(&router, req).await, "admin");
    let req = request(Method::GET, "", "/p/../admin")
        .body(String::new())
        .unwrap();
    assert_eq!(who(&router, req).await, "admin");
    // An encoded slash stays encoded, and is captured as is.
    let req = request(Method::GET, "", "/p/a%2Fb")
        .body(String::new())
        .unwrap();
    let (_, body, _) = send(&router, req).await;
    assert_eq!(body, "params|/p/a%2Fb||id=a%2Fb|");
    // Non-UTF-8 header values are matched as bytes.
    let req = request(Method::GET, "", "/ua")
        .header(
            "user-agent",
            http::HeaderValue::from_bytes(b"bot\xff\xfe").unwrap(),
        )
        .body(String::new())
        .unwrap();
    assert_eq!(who(&router, req).await, "ua");
    // Huge paths, deep paths, long and empty hosts.
    let huge = format!("/{}", "a/".repeat(29_000));
    let req = request(Method::GET, "", &huge).body(String::new()).unwrap();
    assert_eq!(who(&router, req).await, "404");
    let huge_dots = format!("/admin/{}", "../".repeat(19_000));
    let req = request(Method::GET, "", &huge_dots)
        .body(String::new())
        .unwrap();
    assert_eq!(who(&router, req).await, "404");
    let long_host = format!("{}.test", "a".repeat(1000));
    let req = request(Method::GET, &long_host, "/")
        .body(String::new())
        .unwrap();
    assert_eq!(who(&router, req).await, "404");
    let req = Request::get("/")
        .header("host", "")
        .body(String::new())
        .unwrap();
    assert_eq!(who(&router, req).await, "404");
    let req = Request::get("/")
        .header(
            "host",
            http::HeaderValue::from_bytes(b"exact.test\xff").unwrap(),
        )
        .body(String::new())
        .unwrap();
    assert_eq!(who(&router, req).await, "404");
    // HTTP/2: the host is the URI authority; it wins over a `Host` header.
    let req = Request::get("https://EXACT.test:8443/x")
        .header("host", "other.test")
        .body(String::new())
        .unwrap();
    assert_eq!(who(&router, req).await, "host");
    // Query strings with broken escapes.
    let req = request(Method::GET, "", "/admin?%=%zz&&=")
        .body(String::new())
        .unwrap();
    assert_eq!(who(&router, req).await, "admin");
}

#[test]
fn the_router_is_send_sync_and_asterisk_form_routes() {
    fn send_sync<T: Send + Sync + Clone + 'static>(_: &T) {}
    let router: Router<String> = Router::builder()
        .route(Route::new("options").path("*").to(echo("options")))
        .build()
        .unwrap();
    send_sync(&router);
    let req = request(Method::OPTIONS, "", "*").body(()).unwrap();
    assert_eq!(router.route_for(&req).unwrap().name(), "options");
    let req = request(Method::OPTIONS, "", "/").body(()).unwrap();
    assert!(router.route_for(&req).is_none());
}

#[tokio::test]
async fn the_response_carries_the_matched_route_and_params() {
    let router = Router::builder()
        .route(
            Route::new("item")
                .path("/shops/{shop}/items/{item}")
                .to(service_fn(|_: Request<String>| async {
                    Ok::<_, Infallible>(Response::new(Body::from("ok")))
                })),
        )
        .build()
        .unwrap();
    let req = request(Method::GET, "", "/shops/s1/items/i%20x")
        .body(String::new())
        .unwrap();
    let expected = router.route_for(&req).unwrap();
    let response = router.clone().oneshot(req).await.unwrap();
    let matched = response.extensions().get::<MatchedRoute>().unwrap();
    assert_eq!(matched, &expected);
    assert_eq!(matched.name(), "item");
    assert_eq!(matched.param("shop"), Some("s1"));
    assert_eq!(matched.param("item"), Some("i%20x"));
    assert_eq!(matched.backend(), None);
    assert_eq!(
        matched.params().collect::<Vec<_>>(),
        [("shop", "s1"), ("item", "i%20x")]
    );
}

/// A route service that answers with the route tags its request carries:
/// the `RouteName` and the `MatchedRoute`'s `item`, `-` for none.
fn tags_seen() -> BoxCloneSyncService<Request<String>, Response<String>, Infallible> {
    BoxCloneSyncService::new(service_fn(|req: Request<String>| async move {
        let extensions = req.extensions();
        let name = extensions
            .get::<RouteName>()
            .map_or_else(|| "-".to_owned(), |name| name.0.to_string());
        let matched = extensions.get::<MatchedRoute>();
        let item = matched.and_then(|m| m.param("item")).unwrap_or("-");
        Ok::<_, Infallible>(Response::new(format!("{name} {item}")))
    }))
}

#[tokio::test]
async fn requests_and_responses_are_tagged_with_the_route_as_built() {
    for (requests, responses) in [(true, true), (true, false), (false, true), (false, false)] {
        let router = Router::builder()
            .tag_requests(requests)
            .tag_responses(responses)
            .route(Route::new("item").path("/items/{item}").to(tags_seen()))
            .build()
            .unwrap();
        let req = request(Method::GET, "", "/items/7")
            .body(String::new())
            .unwrap();
        let response = router.oneshot(req).await.unwrap();
        let case = format!("tag_requests({requests}), tag_responses({responses})");
        let matched = response.extensions().get::<MatchedRoute>();
        let tagged = matched.map(|m| (m.name(), m.param("item")));
        assert_eq!(tagged, responses.then_some(("item", Some("7"))), "{case}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let expected: &[u8] = if requests { b"item 7" } else { b"- -" };
        assert_eq!(&body[..], expected, "{case}");
    }
}

#[tokio::test]
async fn a_thousand_routes_route_correctly() {
    let mut builder = Router::builder();
    for i in 0..250 {
        builder = builder
            .route(
                Route::new(format!("exact-{i}"))
                    .host(format!("svc{}.example.com", i % 10))
                    .path(format!("/v1/s{i}/status"))
                    .to(echo("exact")),
            )
            .route(
                Route::new(format!("param-{i}"))
                    .host(format!("svc{}.example.com", i % 10))
                    .path(format!("/v1/s{i}/items/{{id}}"))
                    .method(Method::GET)
                    .to(echo("param")),
            )
            .route(
                Route::new(format!("prefix-{i}"))
                    .path_prefix(format!("/s{i}"))
                    .to(echo("prefix")),
            )
            .route(
                Route::new(format!("wild-{i}"))
                    .host(format!("*.t{i}.example.net"))
                    .path_prefix("/")
                    .to(echo("wild")),
            );
    }
    let router = builder.build().unwrap();
    let name = |host: &str, target: &str| {
        router
            .route_for(&request(Method::GET, host, target).body(()).unwrap())
            .map(|m| m.name().to_owned())
    };
    assert_eq!(
        name("svc7.example.com", "/v1/s17/status").as_deref(),
        Some("exact-17")
    );
    assert_eq!(
        name("svc7.example.com", "/v1/s17/items/9").as_deref(),
        Some("param-17")
    );
    assert_eq!(name("svc8.example.com", "/v1/s17/items/9"), None);
    assert_eq!(name("", "/s123/x").as_deref(), Some("prefix-123"));
    assert_eq!(
        name("a.b.t99.example.net", "/s123/x").as_deref(),
        Some("prefix-123")
    );
    assert_eq!(
        name("a.b.t99.example.net", "/zzz").as_deref(),
        Some("wild-99")
    );
}

/// A route service for the router's own tests: ready only while its
/// shared state is open (keeping the wakers of those that found it
/// closed), answering with its name; counts its calls and the clones made
/// of it.
struct Probe {
    name: &'static str,
    state: std::sync::Arc<ProbeState>,
}

#[derive(Default)]
struct ProbeState {
    open: std::sync::atomic::AtomicBool,
    waiting: std::sync::Mutex<Vec<std::task::Waker>>,
    calls: std::sync::atomic::AtomicUsize,
    clones: std::sync::atomic::AtomicUsize,
}

impl ProbeState {
    fn open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
        for waker in self.waiting.lock().unwrap().drain(..) {
            waker.wake();
        }
    }
}

impl Probe {
    fn new(name: &'static str, state: &std::sync::Arc<ProbeState>) -> Self {
        Self {
            name,
            state: std::sync::Arc::clone(state),
        }
    }
}

impl Clone for Probe {
    fn clone(&self) -> Self {
        self.state
            .clones
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self::new(self.name, &self.state)
    }
}

impl tower::Service<Request<String>> for Probe {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        if self.state.open.load(std::sync::atomic::Ordering::SeqCst) {
            std::task::Poll::Ready(Ok(()))
        } else {
            self.state.waiting.lock().unwrap().push(cx.waker().clone());
            std::task::Poll::Pending
        }
    }

    fn call(&mut self, _: Request<String>) -> Self::Future {
        self.state
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::future::ready(Ok(Response::new(Body::from(self.name))))
    }
}

/// Counts its wakes.
#[derive(Default)]
struct Wakes(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Wakes {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_route_that_is_not_ready_is_waited_for_then_called() {
    use std::future::Future;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::task::{Context, Poll, Waker};

    let gate = Arc::new(ProbeState::default());
    let mut router = Router::builder()
        .route(
            Route::new("gated")
                .path("/gated")
                .to(Probe::new("gated", &gate)),
        )
        .build()
        .unwrap();
    let wakes = Arc::new(Wakes::default());
    let waker = Waker::from(Arc::clone(&wakes));
    let mut cx = Context::from_waker(&waker);
    assert!(tower::Service::poll_ready(&mut router, &mut cx).is_ready());
    let mut future = std::pin::pin!(tower::Service::call(
        &mut router,
        request(Method::GET, "", "/gated")
            .body(String::new())
            .unwrap()
    ));
    // Closed: the request waits, and the route's service holds this
    // task's waker (not only a throwaway one), so opening it wakes the task.
    assert!(future.as_mut().poll(&mut cx).is_pending());
    assert_eq!(gate.calls.load(Ordering::SeqCst), 0);
    gate.open();
    assert!(
        wakes.0.load(Ordering::SeqCst) >= 1,
        "the task was not woken"
    );
    let Poll::Ready(Ok(response)) = future.as_mut().poll(&mut cx) else {
        panic!("the route's service was ready and its answer is ready");
    };
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(gate.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        response
            .extensions()
            .get::<MatchedRoute>()
            .map(MatchedRoute::name),
        Some("gated")
    );
    // Open from the start: called at once, in the same poll.
    let mut future = std::pin::pin!(tower::Service::call(
        &mut router,
        request(Method::GET, "", "/gated")
            .body(String::new())
            .unwrap()
    ));
    assert_eq!(gate.calls.load(Ordering::SeqCst), 2);
    assert!(future.as_mut().poll(&mut cx).is_ready());
}

#[tokio::test]
async fn a_router_calls_its_last_routes_service_again_instead_of_cloning_it() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    let state = Arc::new(ProbeState::default());
    state.open();
    let counted = |name| Probe::new(name, &state);
    let clones = &state.clones;
    let built = Router::builder()
        .route(Route::new("a").path("/a").to(counted("a")))
        .route(Route::new("b").path("/b").to(counted("b")))
        .route(
            Route::new("split").path("/split").split(
                Split::new()
                    .backend(Backend::new("blue", counted("blue")).weight(0))
                    .backend(Backend::new("green", counted("green")).weight(100))
                    .override_header("x-env", "blue", "blue"),
            ),
        )
        .build()
        .unwrap();
    let mut router = built.clone();
    let mut go = async |target: &str, env: Option<&str>| -> (String, usize) {
        let before = clones.load(Ordering::SeqCst);
        let mut req = request(Method::GET, "", target);
        if let Some(env) = env {
            req = req.header("x-env", env);
        }
        let req = req.body(String::new()).unwrap();
        std::future::poll_fn(|cx| tower::Service::poll_ready(&mut router, cx))
            .await
            .unwrap();
        let response = tower::Service::call(&mut router, req).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let cloned = clones.load(Ordering::SeqCst) - before;
        (String::from_utf8_lossy(&body).into_owned(), cloned)
    };
    // The first request to a route clones its service; the next ones to the
    // same route on this router reuse it.
    assert_eq!(go("/a", None).await, ("a".to_owned(), 1));
    assert_eq!(go("/a", None).await, ("a".to_owned(), 0));
    assert_eq!(go("/a", None).await, ("a".to_owned(), 0));
    // Another route takes the slot; coming back clones again.
    assert_eq!(go("/b", None).await, ("b".to_owned(), 1));
    assert_eq!(go("/a", None).await, ("a".to_owned(), 1));
    // Each backend of a split is its own service.
    assert_eq!(go("/split", None).await, ("green".to_owned(), 1));
    assert_eq!(go("/split", None).await, ("green".to_owned(), 0));
    assert_eq!(go("/split", Some("blue")).await, ("blue".to_owned(), 1));
    assert_eq!(go("/split", None).await, ("green".to_owned(), 1));
    // A clone of the router starts with nothing of its own.
    let mut other = built.clone();
    let before = clones.load(Ordering::SeqCst);
    let ready = other.ready().await.unwrap();
    let response = tower::Service::call(
        ready,
        request(Method::GET, "", "/split")
            .body(String::new())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(clones.load(Ordering::SeqCst) - before, 1);
}
