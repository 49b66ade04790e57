//! Layers built from the YAML config's auth sections.

use std::convert::Infallible;

use http::{Request, Response, StatusCode};
use jsonwebtoken::EncodingKey;
use meshgate::auth::api_key::ApiKeyLayer;
use meshgate::auth::authz::AuthzLayer;
use meshgate::auth::jwt::{Algorithm, JwtLayer};
use meshgate::config::Config;
use serde_json::json;
use tower::{Layer, ServiceExt, service_fn};

use crate::jwt::{now, sign};

const YAML: &str = r#"
upstreams: [{ name: users, endpoints: [127.0.0.1:9001] }]
rate_limit_tiers: { pro: [{ limit: 10, per: second }] }
consumers:
  - name: alice
    tier: pro
    groups: [partners]
    keys: [2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824]
  - { name: guest }
jwt_issuers:
  - name: corp
    issuer: https://idp.corp/
    audiences: [users-api]
    keys: [{ algorithm: HS256, secret: "config-secret-0123456789-abcdefgh" }]
routes:
  - name: users
    upstream: users
    auth:
      api_key: { query: apikey, anonymous: guest }
      jwt: { issuers: [corp], required_roles: [reader] }
      policies:
        - { action: deny, consumers: [guest], methods: [DELETE] }
  - name: partners
    match: { paths: [{ prefix: /partners }] }
    upstream: users
    auth:
      policies:
        - { action: allow, groups: [partners], headers: { x-env: ["prod*"] } }
        - { action: allow, claims: { tenant: [acme, "beta-*"] } }
"#;

async fn ok(_: Request<()>) -> Result<Response<String>, Infallible> {
    Ok(Response::new(String::new()))
}

#[tokio::test]
async fn layers_from_config() {
    let config = Config::from_yaml_str(YAML).unwrap();
    let auth = config.routes[0].auth.as_ref().unwrap();

    let api_key = ApiKeyLayer::from_config(auth.api_key.as_ref().unwrap(), &config.consumers)
        .unwrap()
        .layer(service_fn(|req: Request<()>| async move {
            let c = req.extensions().get::<meshgate::auth::Consumer>().unwrap();
            Ok::<_, Infallible>(Response::new(format!("{}:{:?}", c.name(), c.tier())))
        }));
    // "hello" is the key whose digest the config holds.
    let res = api_key
        .clone()
        .oneshot(Request::get("/u?apikey=hello").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = api_key
        .oneshot(Request::get("/u").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "anonymous guest");

    let jwt = JwtLayer::from_config(auth.jwt.as_ref().unwrap(), &config.jwt_issuers)
        .unwrap()
        .layer(service_fn(ok));
    let key = EncodingKey::from_secret(b"config-secret-0123456789-abcdefgh");
    let claims = |roles: &[&str]| json!({"sub": "u1", "iss": "https://idp.corp/", "aud": "users-api", "exp": now() + 60, "roles": roles});
    let bearer = |t: String| {
        Request::get("/")
            .header("authorization", format!("Bearer {t}"))
            .body(())
            .unwrap()
    };
    let good = sign(Algorithm::HS256, None, &claims(&["reader"]), &key);
    let res = jwt.clone().oneshot(bearer(good)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let no_role = sign(Algorithm::HS256, None, &claims(&["writer"]), &key);
    let res = jwt.oneshot(bearer(no_role)).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let authz = AuthzLayer::from_config(&auth.policies);
    let mut req = Request::delete("/u/1").body(()).unwrap();
    req.extensions_mut()
        .insert(meshgate::auth::Consumer::new("guest"));
    assert!(!authz.permits(&req));
    let mut req = Request::get("/u/1").body(()).unwrap();
    req.extensions_mut()
        .insert(meshgate::auth::Consumer::new("guest"));
    assert!(authz.permits(&req));
}

/// Groups, header and claim conditions of a config policy reach the layer.
#[test]
fn policy_conditions_from_config() {
    let config = Config::from_yaml_str(YAML).unwrap();
    let alice = meshgate::auth::api_key::consumer_from_config(config.consumer("alice").unwrap());
    assert_eq!(alice.groups(), ["partners".to_owned()]);
    let authz = AuthzLayer::from_config(&config.routes[1].auth.as_ref().unwrap().policies);
    let request = |consumer: Option<&meshgate::auth::Consumer>, env: &str, tenant: Option<&str>| {
        let mut req = Request::get("/").header("x-env", env).body(()).unwrap();
        if let Some(consumer) = consumer {
            req.extensions_mut().insert(consumer.clone());
        }
        if let Some(tenant) = tenant {
            req.extensions_mut().insert(
                meshgate::auth::jwt::Claims::from_json(json!({ "tenant": tenant })).unwrap(),
            );
        }
        req
    };
    let guest = meshgate::auth::api_key::consumer_from_config(config.consumer("guest").unwrap());
    assert!(authz.permits(&request(Some(&alice), "prod-eu", None)));
    assert!(
        !authz.permits(&request(Some(&alice), "dev", None)),
        "header"
    );
    assert!(
        !authz.permits(&request(Some(&guest), "prod", None)),
        "group"
    );
    assert!(authz.permits(&request(None, "dev", Some("beta-7"))));
    assert!(
        !authz.permits(&request(None, "dev", Some("other"))),
        "claim"
    );
}
