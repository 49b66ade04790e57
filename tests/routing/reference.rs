//! The router against a naive reference: random route sets and requests,
//! every match checked against "filter all routes, take the first in the
//! documented order".

use std::cmp::Reverse;

use http::{Method, Request};
use meshgate::routing::{Route, RouteErrorKind, Router};

use crate::echo;

#[derive(Debug, Clone)]
enum Path {
    Exact(&'static str),
    Pattern(&'static str),
    Prefix(&'static str),
}

#[derive(Debug, Clone)]
struct Spec {
    name: String,
    host: Option<&'static str>,
    path: Path,
    methods: Vec<Method>,
    header: bool,
    priority: i32,
}

const HOSTS: &[Option<&str>] = &[
    None,
    None,
    Some("a.test"),
    Some("b.test"),
    Some("*.w.test"),
    Some("*.x.w.test"),
];
const EXACT: &[&str] = &["/", "/a", "/a/b", "/a/b/c", "/b/c"];
const PATTERNS: &[&str] = &[
    "/{p}", "/a/{p}", "/{p}/b", "/a/{p}/c", "/{p}/{q}", "/b/{*r}",
];
const PREFIXES: &[&str] = &["/", "/a", "/a/b", "/b"];
const REQ_HOSTS: &[&str] = &[
    "",
    "a.test",
    "b.test",
    "q.w.test",
    "q.x.w.test",
    "w.test",
    "other.test",
];
const REQ_PATHS: &[&str] = &[
    "/", "/a", "/a/b", "/a/b/c", "/b/c", "/a/z", "/z/b", "/b/x/y", "/a/b/c/d", "/z", "/a/", "/b",
];

fn host_rank(rule: Option<&str>, host: &str) -> Option<(u8, usize)> {
    match rule {
        None => Some((0, 0)),
        Some(rule) => match rule.strip_prefix("*.") {
            Some(suffix) => (host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.')
                .then_some((1, suffix.len())),
            None => (rule == host).then_some((2, rule.len())),
        },
    }
}

fn segments_match(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern[1..].split('/').collect();
    let path: Vec<&str> = path[1..].split('/').collect();
    for (i, seg) in pattern.iter().enumerate() {
        if seg.starts_with("{*") {
            let rest = path[i.min(path.len())..].join("/");
            return i < path.len() && !rest.is_empty();
        }
        let Some(actual) = path.get(i) else {
            return false;
        };
        if seg.starts_with('{') {
            if actual.is_empty() {
                return false;
            }
        } else if seg != actual {
            return false;
        }
    }
    pattern.len() == path.len()
}

fn path_matches(path: &Path, actual: &str) -> bool {
    match path {
        Path::Exact(p) => *p == actual,
        Path::Pattern(p) => segments_match(p, actual),
        Path::Prefix(p) => {
            *p == "/"
                || (actual.starts_with(p)
                    && matches!(actual.as_bytes().get(p.len()), None | Some(b'/')))
        }
    }
}

/// The documented order: priority, path kind, specificity, host, matchers, declaration.
fn order(spec: &Spec, index: usize, host: (u8, usize)) -> impl Ord {
    let (class, specificity, params) = match spec.path {
        Path::Exact(_) => (2, 0, 0),
        Path::Pattern(p) => {
            let statics: usize = p[1..]
                .split('/')
                .filter(|s| !s.starts_with('{'))
                .map(str::len)
                .sum();
            let params = p.matches('{').count() + if p.contains("{*") { 1 << 16 } else { 0 };
            (1, statics, params)
        }
        Path::Prefix(p) => (0, p.len(), 0),
    };
    let matchers = usize::from(!spec.methods.is_empty()) + usize::from(spec.header);
    (
        Reverse(spec.priority),
        Reverse(class),
        Reverse(specificity),
        params,
        Reverse(host),
        Reverse(matchers),
        index,
    )
}

fn reference(
    specs: &[Spec],
    host: &str,
    path: &str,
    method: &Method,
    header: bool,
) -> Option<String> {
    specs
        .iter()
        .enumerate()
        .filter_map(|(i, spec)| {
            let host = host_rank(spec.host, host)?;
            (path_matches(&spec.path, path)
                && (spec.methods.is_empty() || spec.methods.contains(method))
                && (!spec.header || header))
                .then(|| (order(spec, i, host), spec.name.clone()))
        })
        .min_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, name)| name)
}

/// What the router answers without a match: the methods of the routes that
/// match everything but the method (405), or none (404).
fn reference_allow(specs: &[Spec], host: &str, path: &str, header: bool) -> Vec<Method> {
    let mut allow: Vec<Method> = Vec::new();
    for spec in specs {
        if host_rank(spec.host, host).is_some()
            && path_matches(&spec.path, path)
            && (!spec.header || header)
        {
            for m in &spec.methods {
                if !allow.contains(m) {
                    allow.push(m.clone());
                }
            }
        }
    }
    // The router lists them in RFC 9110 order: GET before POST.
    allow.sort_by_key(|m| if *m == Method::GET { 0 } else { 1 });
    allow
}

fn random_spec(rng: &mut fastrand::Rng, i: usize) -> Spec {
    let path = match rng.usize(0..3) {
        0 => Path::Exact(EXACT[rng.usize(0..EXACT.len())]),
        1 => Path::Pattern(PATTERNS[rng.usize(0..PATTERNS.len())]),
        _ => Path::Prefix(PREFIXES[rng.usize(0..PREFIXES.len())]),
    };
    let methods = match rng.usize(0..4) {
        0 => vec![Method::GET],
        1 => vec![Method::POST],
        2 => vec![Method::GET, Method::POST],
        _ => vec![],
    };
    Spec {
        name: format!("r{i}"),
        host: HOSTS[rng.usize(0..HOSTS.len())],
        path,
        methods,
        header: rng.usize(0..4) == 0,
        priority: if rng.usize(0..8) == 0 { 1 } else { 0 },
    }
}

fn build(specs: &[Spec]) -> Result<Router<String>, RouteErrorKind> {
    let mut builder = Router::builder();
    for spec in specs {
        let mut route = Route::new(spec.name.clone())
            .priority(spec.priority)
            .methods(spec.methods.clone());
        if let Some(host) = spec.host {
            route = route.host(host);
        }
        route = match spec.path {
            Path::Exact(p) | Path::Pattern(p) => route.path(p),
            Path::Prefix(p) => route.path_prefix(p),
        };
        if spec.header {
            route = route.header("x-h", "1");
        }
        builder = builder.route(route.to(echo("x")));
    }
    builder.build().map_err(|e| e.kind().clone())
}

#[test]
fn random_route_sets_match_the_reference() {
    use tower::ServiceExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut refused = 0;
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut checked = 0;
    for round in 0..300 {
        let count = rng.usize(1..24);
        let specs: Vec<Spec> = (0..count).map(|i| random_spec(&mut rng, i)).collect();
        let router = match build(&specs) {
            Ok(router) => router,
            Err(RouteErrorKind::PathConflict { .. }) => continue,
            Err(other) => panic!("round {round}: {other:?}"),
        };
        for host in REQ_HOSTS {
            for path in REQ_PATHS {
                for method in [Method::GET, Method::POST] {
                    for header in [false, true] {
                        let mut req = Request::builder().method(method.clone()).uri(*path);
                        if !host.is_empty() {
                            req = req.header("host", *host);
                        }
                        if header {
                            req = req.header("x-h", "1");
                        }
                        let req = req.body(String::new()).unwrap();
                        let got = router.route_for(&req).map(|m| m.name().to_owned());
                        let want = reference(&specs, host, path, &method, header);
                        assert_eq!(
                            got, want,
                            "round {round}: {method} {host}{path} header={header}\n{specs:#?}"
                        );
                        checked += 1;
                        if want.is_none() {
                            let response = rt.block_on(router.clone().oneshot(req)).unwrap();
                            let allow = reference_allow(&specs, host, path, header);
                            let listed = response
                                .headers()
                                .get("allow")
                                .map(|v| v.to_str().unwrap().to_owned());
                            if allow.is_empty() {
                                assert_eq!(
                                    response.status(),
                                    404,
                                    "round {round}: {method} {host}{path}"
                                );
                                assert_eq!(listed, None);
                            } else {
                                assert_eq!(
                                    response.status(),
                                    405,
                                    "round {round}: {method} {host}{path}"
                                );
                                let want: Vec<&str> = allow.iter().map(Method::as_str).collect();
                                assert_eq!(listed.as_deref(), Some(want.join(", ").as_str()));
                            }
                            refused += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 50_000, "{checked}");
    assert!(refused > 5_000, "{refused}");
}
