//! Authentication configured in YAML, end to end: consumer groups in
//! access policies, and (without the `tls` feature) `https` JWKS refused
//! at build. HTTPS JWKS servers are in `auth_https`.

use http::StatusCode;
use meshgate::config::Config;
use tokio::net::TcpListener;

use super::assembly::Running;

pub(crate) const LISTENERS: &str = "listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
access_log: { enabled: false }";

/// `consumers[].groups` feed the policies' `groups`, and go upstream in
/// `X-Consumer-Groups`.
#[tokio::test]
async fn consumer_groups_in_policies() {
    let app = axum::Router::new().fallback(|headers: axum::http::HeaderMap| async move {
        let h = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        format!("{} {}", h("x-consumer-username"), h("x-consumer-groups"))
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let yaml = format!(
        "{LISTENERS}
consumers:
  - {{ name: shop, groups: [partners, eu], keys: [\"${{SHOP_KEY}}\"] }}
  - {{ name: intern, groups: [staff], keys: [\"${{INTERN_KEY}}\"] }}
  - {{ name: stranger, keys: [\"${{STRANGER_KEY}}\"] }}
upstreams: [{{ name: up, endpoints: [\"{upstream}\"] }}]
routes:
  - name: partners
    upstream: up
    auth:
      api_key: {{}}
      policies:
        - {{ action: deny, groups: [staff], methods: [DELETE] }}
        - {{ action: allow, groups: [partners, staff] }}
"
    );
    let env = |name: &str| match name {
        "SHOP_KEY" => Some("k-shop".to_owned()),
        "INTERN_KEY" => Some("k-intern".to_owned()),
        "STRANGER_KEY" => Some("k-stranger".to_owned()),
        _ => None,
    };
    let config = Config::from_yaml_str_with_env(&yaml, env).unwrap_or_else(|e| panic!("{e}"));
    let gateway = Running::start_config(config).await;

    let (status, _, body) = gateway.get("/", &[("x-api-key", "k-shop")]).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "shop partners,eu")
    );
    // A client cannot claim groups: its copy is replaced.
    let (status, _, body) = gateway
        .get(
            "/",
            &[("x-api-key", "k-intern"), ("x-consumer-groups", "admins")],
        )
        .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "intern staff"));
    let (status, headers, _) = gateway.get("/", &[("x-api-key", "k-stranger")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(headers["content-type"], "application/problem+json");
    let (status, _, _) = gateway.delete("/", &[("x-api-key", "k-intern")]).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "deny wins for staff on DELETE"
    );
    let (status, _, _) = gateway.delete("/", &[("x-api-key", "k-shop")]).await;
    assert_eq!(status, StatusCode::OK);
    gateway.stop().await;
}

/// Without the `tls` feature, an `https` JWKS URL or a `jwks_ca` stops the
/// build, naming the field.
#[cfg(not(feature = "tls"))]
#[test]
fn https_jwks_needs_the_tls_feature() {
    let yaml = "jwt_issuers:
  - { name: a, issuer: x, jwks_url: \"https://idp.test/jwks\", jwks_ca: /ca.pem }
upstreams: [{ name: up, endpoints: [\"127.0.0.1:1\"] }]
routes: [{ name: r, upstream: up, auth: { jwt: { issuers: [a] } } }]
";
    let errors =
        meshgate::gateway::Gateway::from_config(Config::from_yaml_str(yaml).unwrap()).unwrap_err();
    assert_eq!(
        errors.problems(),
        [
            "jwt_issuers[0].jwks_url: an https JWKS URL (cargo feature `tls`) is not supported by this build yet",
            "jwt_issuers[0].jwks_ca: private JWKS roots (cargo feature `tls`) is not supported by this build yet",
        ]
    );
}
