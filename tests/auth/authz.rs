use std::convert::Infallible;

use http::{Method, Request, Response, StatusCode};
use meshgate::auth::Consumer;
use meshgate::auth::authz::{AuthzLayer, AuthzRule, PeerIdentity};
use meshgate::auth::jwt::Claims;
use meshgate::error::{Rejection, RejectionKind};
use serde_json::json;
use tower::{Layer, ServiceExt, service_fn};

#[derive(Clone, Copy, Debug)]
enum Who {
    Nobody,
    MobileApp,
    Partner,
    Admin,
    Reader,
    Mesh,
}

fn request(who: Who, method: Method, path: &str) -> Request<()> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .body(())
        .unwrap();
    let ext = req.extensions_mut();
    match who {
        Who::Nobody => {}
        Who::MobileApp => {
            ext.insert(Consumer::new("mobile-app").with_tier("pro"));
        }
        Who::Partner => {
            ext.insert(Consumer::new("acme").with_group("partners"));
        }
        Who::Admin => {
            ext.insert(Claims::from_json(json!({"sub": "alice", "roles": ["admin"]})).unwrap());
        }
        Who::Reader => {
            ext.insert(
                Claims::from_json(json!({"sub": "bob", "scope": "orders:read", "tenant": "t1"}))
                    .unwrap(),
            );
        }
        Who::Mesh => {
            ext.insert(PeerIdentity(
                "spiffe://cluster.local/ns/shop/sa/checkout".into(),
            ));
        }
    }
    req
}

async fn status(layer: &AuthzLayer, req: Request<()>) -> StatusCode {
    let svc = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let res = svc.oneshot(req).await.unwrap();
    if res.status() == StatusCode::FORBIDDEN {
        assert_eq!(
            res.extensions().get::<Rejection>().unwrap().kind(),
            RejectionKind::Forbidden
        );
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    res.status()
}

#[tokio::test]
async fn allow_deny_matrix() {
    let layer = AuthzLayer::new([
        AuthzRule::deny()
            .methods([Method::DELETE])
            .paths(["/orders/*"]),
        AuthzRule::deny().paths(["/admin/*"]).subjects(["mallory"]),
        AuthzRule::allow().roles(["admin"]),
        AuthzRule::allow()
            .consumers(["mobile-app"])
            .methods([Method::GET, Method::POST])
            .paths(["/orders", "/orders/*"]),
        AuthzRule::allow().groups(["partners"]).paths(["*.json"]),
        AuthzRule::allow()
            .scopes(["orders:read"])
            .claim("tenant", ["t1"])
            .methods([Method::GET]),
        AuthzRule::allow().peers(["spiffe://cluster.local/ns/shop/*"]),
    ]);
    use Who::*;
    let cases = [
        (Nobody, Method::GET, "/orders", 403),
        (Admin, Method::GET, "/admin/users", 200),
        (Admin, Method::DELETE, "/orders/7", 403), // DENY wins over ALLOW
        (Admin, Method::DELETE, "/users/7", 200),
        (MobileApp, Method::GET, "/orders/7", 200),
        (MobileApp, Method::POST, "/orders", 200),
        (MobileApp, Method::PUT, "/orders/7", 403),
        (MobileApp, Method::GET, "/users", 403),
        (Partner, Method::GET, "/catalog/items.json", 200),
        (Partner, Method::GET, "/catalog/items.xml", 403),
        (Reader, Method::GET, "/anything", 200),
        (Reader, Method::POST, "/anything", 403),
        (Mesh, Method::POST, "/internal", 200),
        (Mesh, Method::DELETE, "/orders/1", 403),
    ];
    for (who, method, path, expected) in cases {
        let got = status(&layer, request(who, method.clone(), path)).await;
        assert_eq!(got.as_u16(), expected, "{who:?} {method} {path}");
    }
}

#[tokio::test]
async fn deny_only_policies_allow_the_rest_and_headers_match() {
    let layer =
        AuthzLayer::new(
            [AuthzRule::deny().header(http::HeaderName::from_static("x-debug"), ["*"])],
        );
    assert_eq!(
        status(&layer, request(Who::Nobody, Method::GET, "/")).await,
        200
    );
    let mut req = request(Who::Nobody, Method::GET, "/");
    req.headers_mut().insert("x-debug", "1".parse().unwrap());
    assert_eq!(status(&layer, req).await, 403);
    // No rule at all: everything passes.
    let open = AuthzLayer::new([]);
    assert!(open.permits(&request(Who::Nobody, Method::DELETE, "/x")));
}
