//! The auth sections: consumer groups, policies naming them, and the
//! roots of an `https` JWKS URL (`jwks_ca`).

use meshgate::config::{Config, JwksCa, JwtKeys};

fn load(yaml: &str) -> Config {
    Config::from_yaml_str(yaml).unwrap_or_else(|e| panic!("config refused:\n{e}"))
}

fn errors(yaml: &str) -> Vec<String> {
    match Config::from_yaml_str(yaml) {
        Ok(_) => panic!("config accepted:\n{yaml}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

const BASE: &str = "upstreams: [{ name: up, endpoints: [127.0.0.1:9001] }]\n";

const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBdDCCARqgAwIBAgIUZmFrZSBjZXJ0aWZpY2F0ZSBmb3IgdGVzdHMwCgYIKoZI
-----END CERTIFICATE-----";

#[test]
fn consumer_groups_and_policies_naming_them() {
    let config = load(&format!(
        "{BASE}consumers:
  - {{ name: shop, groups: [partners, eu] }}
  - {{ name: bob }}
routes:
  - name: r
    upstream: up
    auth:
      api_key: {{}}
      policies: [{{ action: allow, groups: [partners] }}]
"
    ));
    assert_eq!(config.consumer("shop").unwrap().groups, ["partners", "eu"]);
    assert!(config.consumer("bob").unwrap().groups.is_empty(), "default");
    let policies = &config.routes[0].auth.as_ref().unwrap().policies;
    assert_eq!(policies[0].groups, ["partners"]);
}

#[test]
fn bad_groups_name_the_field() {
    let problems = errors(&format!(
        "{BASE}consumers:
  - {{ name: shop, groups: [partners, partners, \"a,b\"] }}
routes:
  - name: r
    upstream: up
    auth:
      api_key: {{}}
      policies: [{{ action: deny, groups: [partners, admins] }}]
"
    ));
    let expected = [
        r#"consumers[0].groups[1]: duplicate group "partners""#,
        r#"consumers[0].groups[2]: invalid name "a,b""#,
        r#"routes[0].auth.policies[0].groups[1]: unknown group "admins" (no consumer is in it)"#,
    ];
    for needle in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(needle)),
            "{needle} missing from {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    // Every problem carries its location in the file.
    assert!(
        problems.iter().all(|p| p.contains("(line ")),
        "{problems:#?}"
    );
}

#[test]
fn jwks_ca_is_pem_text_or_a_path() {
    let config = load(&format!(
        "{BASE}jwt_issuers:
  - name: pem
    issuer: x
    jwks_url: https://idp.test/jwks
    jwks_ca: |
      {}
  - {{ name: file, issuer: x, jwks_url: \"https://idp.test/jwks\", jwks_ca: /etc/idp/ca.pem }}
  - {{ name: public, issuer: x, jwks_url: \"https://idp.test/jwks\" }}
",
        CA.replace('\n', "\n      ")
    ));
    let ca = |i: usize| match &config.jwt_issuers[i].keys {
        JwtKeys::Jwks { ca, .. } => ca.clone(),
        JwtKeys::Static(_) => panic!("jwks expected"),
    };
    assert_eq!(ca(0), Some(JwksCa::Pem(CA.to_owned())));
    assert_eq!(ca(1), Some(JwksCa::File("/etc/idp/ca.pem".into())));
    assert_eq!(ca(2), None, "default: Mozilla's roots");
}

#[test]
fn bad_jwks_ca_names_the_field() {
    let problems = errors(&format!(
        "{BASE}jwt_issuers:
  - {{ name: a, issuer: x, jwks_url: \"http://idp.test/jwks\", jwks_ca: /ca.pem }}
  - {{ name: b, issuer: x, keys: [{{ algorithm: HS256, secret: 0123456789abcdef0123456789abcdef }}], jwks_ca: /ca.pem }}
  - {{ name: c, issuer: x, jwks_url: \"https://idp.test/jwks\", jwks_ca: \"  \" }}
  - {{ name: d, issuer: x, jwks_url: \"https://idp.test/jwks\", jwks_ca: \"-----BEGIN PUBLIC KEY-----\" }}
"
    ));
    let expected = [
        "jwt_issuers[0].jwks_ca: only used with an https:// jwks_url",
        "jwt_issuers[1].jwks_ca: only used with jwks_url",
        "jwt_issuers[2].jwks_ca: must not be empty",
        "jwt_issuers[3].jwks_ca: the PEM holds no certificate",
    ];
    for needle in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(needle)),
            "{needle} missing from {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
}

#[test]
fn policy_headers_and_claims() {
    let config = load(&format!(
        "{BASE}routes:
  - name: r
    upstream: up
    auth:
      policies:
        - action: allow
          headers: {{ X-Env: [prod, \"stag*\"] }}
          claims: {{ tenant: [acme] }}
"
    ));
    let rule = &config.routes[0].auth.as_ref().unwrap().policies[0];
    assert_eq!(rule.headers["X-Env"], ["prod", "stag*"]);
    assert_eq!(rule.claims["tenant"], ["acme"]);

    let problems = errors(&format!(
        "{BASE}routes:
  - name: r
    upstream: up
    auth:
      policies:
        - {{ action: deny, headers: {{ \"bad name\": [x], x-ok: [] }}, claims: {{ tenant: [] }} }}
"
    ));
    let expected = [
        r#"routes[0].auth.policies[0].headers.bad name: invalid header name "bad name""#,
        r#"routes[0].auth.policies[0].headers.x-ok: at least one value is needed ("*" for any)"#,
        r#"routes[0].auth.policies[0].claims.tenant: at least one value is needed ("*" for any)"#,
    ];
    for needle in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(needle)),
            "{needle} missing from {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
}
