use std::convert::Infallible;
use std::time::Duration;

use base64::Engine as _;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
use meshgate::auth::jwt::{Algorithm, Claims, Issuer, JwtKey, JwtLayer, TokenSource};
use meshgate::error::{Rejection, RejectionKind};
use serde_json::{Value, json};
use tower::{Layer, ServiceExt, service_fn};

pub(crate) const SECRET: &[u8] = b"test-secret-0123456789-abcdefghij";
pub(crate) const RSA_PRIVATE: &[u8] = include_bytes!("fixtures/rsa_private.pem");
pub(crate) const RSA_PUBLIC: &[u8] = include_bytes!("fixtures/rsa_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("fixtures/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("fixtures/ec_public.pem");
const EC384_PRIVATE: &[u8] = include_bytes!("fixtures/ec384_private.pem");
const EC384_PUBLIC: &[u8] = include_bytes!("fixtures/ec384_public.pem");
const ED_PRIVATE: &[u8] = include_bytes!("fixtures/ed_private.pem");
const ED_PUBLIC: &[u8] = include_bytes!("fixtures/ed_public.pem");
const ISS: &str = "https://idp.test/";

pub(crate) fn now() -> u64 {
    get_current_timestamp()
}

pub(crate) fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).unwrap()
}

fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        claims,
        &EncodingKey::from_secret(SECRET),
    )
}

fn good_claims() -> Value {
    json!({
        "sub": "user-7", "iss": ISS, "aud": "orders", "exp": now() + 600,
        "roles": ["admin", "ops"], "scope": "orders:read orders:write",
    })
}

fn issuer() -> Issuer {
    Issuer::new()
        .issuer(ISS)
        .audience("orders")
        .key(JwtKey::hmac(Algorithm::HS256, SECRET).unwrap())
}

/// Echoes the identity headers and the claims extension's subject.
async fn echo(req: Request<()>) -> Result<Response<String>, Infallible> {
    let h = |name: &str| {
        req.headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join("|")
    };
    let sub = req
        .extensions()
        .get::<Claims>()
        .and_then(|c| c.subject().map(str::to_owned))
        .unwrap_or_default();
    Ok(Response::new(format!(
        "claims.sub={sub} x-user-id={} x-user-roles={} uri={}",
        h("x-user-id"),
        h("x-user-roles"),
        req.uri()
    )))
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) challenge: String,
    pub(crate) body: String,
}

pub(crate) async fn call(layer: &JwtLayer, req: Request<()>) -> Answer {
    let res = layer.layer(service_fn(echo)).oneshot(req).await.unwrap();
    let status = res.status();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    if status != StatusCode::OK {
        let kind = res.extensions().get::<Rejection>().unwrap().kind();
        assert!(matches!(
            kind,
            RejectionKind::Unauthenticated | RejectionKind::Forbidden
        ));
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        challenge,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

pub(crate) fn bearer(token: &str) -> Request<()> {
    Request::get("/orders")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
}

/// A refusal with `invalid_token` and this description, that does not echo the token.
pub(crate) async fn assert_invalid(layer: &JwtLayer, token: &str, description: &str) {
    let answer = call(layer, bearer(token)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    assert_eq!(
        answer.challenge,
        format!(
            "Bearer realm=\"meshgate\", error=\"invalid_token\", error_description=\"{description}\""
        )
    );
    assert!(answer.body.contains(description), "{}", answer.body);
    if token.len() > 8 {
        assert!(!answer.body.contains(token) && !answer.challenge.contains(token));
    }
}

#[tokio::test]
async fn valid_token_passes_with_claims_and_headers_and_spoofs_removed() {
    let layer = JwtLayer::new(issuer());
    let mut req = bearer(&hs256(&good_claims()));
    req.headers_mut()
        .insert("x-user-id", "admin-spoofed".parse().unwrap());
    req.headers_mut()
        .append("x-user-roles", "superuser".parse().unwrap());
    let answer = call(&layer, req).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        answer.body,
        "claims.sub=user-7 x-user-id=user-7 x-user-roles=admin,ops uri=/orders"
    );

    // A token without `sub`/`roles` still removes the spoofed copies.
    let mut claims = good_claims();
    claims.as_object_mut().unwrap().remove("sub");
    claims.as_object_mut().unwrap().remove("roles");
    let mut req = bearer(&hs256(&claims));
    req.headers_mut()
        .insert("x-user-id", "admin-spoofed".parse().unwrap());
    let answer = call(&layer, req).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.body,
        "claims.sub= x-user-id= x-user-roles= uri=/orders"
    );
}

#[tokio::test]
async fn time_claims_are_enforced_with_leeway() {
    let layer = JwtLayer::new(issuer());
    let mut claims = good_claims();
    claims["exp"] = json!(now() - 120);
    assert_invalid(&layer, &hs256(&claims), "the token has expired").await;
    // Within the default 30 s leeway.
    claims["exp"] = json!(now() - 10);
    assert_eq!(
        call(&layer, bearer(&hs256(&claims))).await.status,
        StatusCode::OK
    );
    // Leeway 0 refuses it.
    let strict = JwtLayer::new(issuer().leeway(Duration::ZERO));
    assert_invalid(&strict, &hs256(&claims), "the token has expired").await;

    let mut claims = good_claims();
    claims["nbf"] = json!(now() + 300);
    assert_invalid(&layer, &hs256(&claims), "the token is not valid yet").await;

    let mut claims = good_claims();
    claims.as_object_mut().unwrap().remove("exp");
    assert_invalid(&layer, &hs256(&claims), "the token has no exp claim").await;
}

#[tokio::test]
async fn issuer_and_audience_are_required_when_configured() {
    let layer = JwtLayer::new(issuer());
    let mut claims = good_claims();
    claims["iss"] = json!("https://evil.test/");
    assert_invalid(
        &layer,
        &hs256(&claims),
        "the token's issuer is not accepted",
    )
    .await;
    let mut claims = good_claims();
    claims["aud"] = json!(["billing"]);
    assert_invalid(
        &layer,
        &hs256(&claims),
        "the token's audience is not accepted",
    )
    .await;
    let mut claims = good_claims();
    claims.as_object_mut().unwrap().remove("aud");
    assert_invalid(&layer, &hs256(&claims), "the token has no aud claim").await;
    let mut claims = good_claims();
    claims.as_object_mut().unwrap().remove("iss");
    assert_invalid(&layer, &hs256(&claims), "the token has no iss claim").await;

    // Without iss/aud configured, neither is required.
    let open = JwtLayer::new(Issuer::new().key(JwtKey::hmac(Algorithm::HS256, SECRET).unwrap()));
    let claims = json!({"sub": "x", "exp": now() + 60});
    assert_eq!(
        call(&open, bearer(&hs256(&claims))).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn wrong_signature_malformed_none_and_oversized_tokens_are_refused() {
    let layer = JwtLayer::new(issuer());
    let forged = sign(
        Algorithm::HS256,
        None,
        &good_claims(),
        &EncodingKey::from_secret(b"another-secret-0123456789-abcdefg"),
    );
    assert_invalid(&layer, &forged, "the token's signature is not valid").await;
    assert_invalid(
        &layer,
        "not.a.jwt",
        "the token is malformed or its algorithm is not supported",
    )
    .await;

    // `alg: none` with an empty signature.
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(good_claims().to_string())
    );
    assert_invalid(
        &layer,
        &none,
        "the token is malformed or its algorithm is not supported",
    )
    .await;

    // Over 8 KiB: refused before parsing.
    let mut claims = good_claims();
    claims["pad"] = json!("x".repeat(9000));
    assert_invalid(&layer, &hs256(&claims), "the token is too large").await;
    let small = JwtLayer::new(issuer()).max_token_size(64);
    assert_invalid(&small, &hs256(&good_claims()), "the token is too large").await;
}

#[tokio::test]
async fn missing_token_gets_a_bare_challenge() {
    let layer = JwtLayer::new(issuer());
    let answer = call(&layer, Request::get("/").body(()).unwrap()).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.challenge, "Bearer realm=\"meshgate\"");
    // Another scheme is not a bearer token.
    let req = Request::get("/")
        .header("authorization", "Basic dXNlcjpwYXNz")
        .body(())
        .unwrap();
    assert_eq!(
        call(&layer, req).await.challenge,
        "Bearer realm=\"meshgate\""
    );
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // The RSA public key is known to everyone: an HS256 token "signed" with
    // its PEM bytes must never verify against it.
    let layer = JwtLayer::new(
        Issuer::new()
            .issuer(ISS)
            .audience("orders")
            .key(JwtKey::from_pem(Algorithm::RS256, RSA_PUBLIC).unwrap()),
    );
    let rs = sign(
        Algorithm::RS256,
        None,
        &good_claims(),
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    );
    assert_eq!(call(&layer, bearer(&rs)).await.status, StatusCode::OK);
    let confused = sign(
        Algorithm::HS256,
        None,
        &good_claims(),
        &EncodingKey::from_secret(RSA_PUBLIC),
    );
    assert_invalid(
        &layer,
        &confused,
        "the token's algorithm is not accepted for its key",
    )
    .await;
    // An RSA key cannot even be configured for HS256.
    assert!(JwtKey::hmac(Algorithm::RS256, SECRET).is_err());
    assert!(JwtKey::from_pem(Algorithm::HS256, RSA_PUBLIC).is_err());
}

#[tokio::test]
async fn every_algorithm_family_verifies_with_its_key_only() {
    let cases: Vec<(Algorithm, EncodingKey, JwtKey)> = vec![
        (
            Algorithm::HS384,
            EncodingKey::from_secret(&[9u8; 48]),
            JwtKey::hmac(Algorithm::HS384, &[9u8; 48]).unwrap(),
        ),
        (
            Algorithm::HS512,
            EncodingKey::from_secret(&[9u8; 64]),
            JwtKey::hmac(Algorithm::HS512, &[9u8; 64]).unwrap(),
        ),
        (
            Algorithm::RS512,
            EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
            JwtKey::from_pem(Algorithm::RS512, RSA_PUBLIC).unwrap(),
        ),
        (
            Algorithm::PS256,
            EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
            JwtKey::from_pem(Algorithm::PS256, RSA_PUBLIC).unwrap(),
        ),
        (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
            JwtKey::from_pem(Algorithm::ES256, EC_PUBLIC).unwrap(),
        ),
        (
            Algorithm::ES384,
            EncodingKey::from_ec_pem(EC384_PRIVATE).unwrap(),
            JwtKey::from_pem(Algorithm::ES384, EC384_PUBLIC).unwrap(),
        ),
        (
            Algorithm::RS384,
            EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
            JwtKey::from_pem(Algorithm::RS384, RSA_PUBLIC).unwrap(),
        ),
        (
            Algorithm::PS512,
            EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
            JwtKey::from_pem(Algorithm::PS512, RSA_PUBLIC).unwrap(),
        ),
        (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(ED_PRIVATE).unwrap(),
            JwtKey::from_pem(Algorithm::EdDSA, ED_PUBLIC).unwrap(),
        ),
    ];
    // A P-256 signature claiming ES384 does not verify with the P-384 key.
    let layer = JwtLayer::new(
        Issuer::new()
            .issuer(ISS)
            .audience("orders")
            .key(JwtKey::from_pem(Algorithm::ES384, EC384_PUBLIC).unwrap()),
    );
    let p256 = sign(
        Algorithm::ES256,
        None,
        &good_claims(),
        &EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
    );
    assert_invalid(
        &layer,
        &p256,
        "the token's algorithm is not accepted for its key",
    )
    .await;
    for (alg, signing, verifying) in cases {
        let layer = JwtLayer::new(Issuer::new().issuer(ISS).audience("orders").key(verifying));
        let token = sign(alg, None, &good_claims(), &signing);
        let answer = call(&layer, bearer(&token)).await;
        assert_eq!(answer.status, StatusCode::OK, "{alg:?}: {}", answer.body);
        // The same claims signed with the HS256 secret: wrong algorithm for the key.
        assert_invalid(
            &layer,
            &hs256(&good_claims()),
            "the token's algorithm is not accepted for its key",
        )
        .await;
    }
}

#[tokio::test]
async fn kids_select_keys() {
    let layer = JwtLayer::new(
        Issuer::new()
            .key(
                JwtKey::hmac(Algorithm::HS256, SECRET)
                    .unwrap()
                    .with_kid("a"),
            )
            .key(
                JwtKey::from_pem(Algorithm::RS256, RSA_PUBLIC)
                    .unwrap()
                    .with_kid("b"),
            ),
    );
    let claims = json!({"sub": "x", "exp": now() + 60});
    let a = sign(
        Algorithm::HS256,
        Some("a"),
        &claims,
        &EncodingKey::from_secret(SECRET),
    );
    assert_eq!(call(&layer, bearer(&a)).await.status, StatusCode::OK);
    let b = sign(
        Algorithm::RS256,
        Some("b"),
        &claims,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    );
    assert_eq!(call(&layer, bearer(&b)).await.status, StatusCode::OK);
    // A large header (an x5c chain) is read too.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("a".into());
    header.x5c = Some(vec!["MIIB".repeat(300)]);
    let big = encode(&header, &claims, &EncodingKey::from_secret(SECRET)).unwrap();
    assert_eq!(call(&layer, bearer(&big)).await.status, StatusCode::OK);
    let unknown = sign(
        Algorithm::HS256,
        Some("zz"),
        &claims,
        &EncodingKey::from_secret(SECRET),
    );
    assert_invalid(&layer, &unknown, "no key is known for the token's kid").await;
    // kid "b" names the RSA key: an HS256 token claiming it is refused.
    let confused = sign(
        Algorithm::HS256,
        Some("b"),
        &claims,
        &EncodingKey::from_secret(RSA_PUBLIC),
    );
    assert_invalid(
        &layer,
        &confused,
        "the token's algorithm is not accepted for its key",
    )
    .await;
}

#[tokio::test]
async fn required_scopes_and_roles_answer_403_insufficient_scope() {
    let layer = JwtLayer::new(issuer())
        .require_scopes(["orders:read"])
        .require_roles(["admin"]);
    assert_eq!(
        call(&layer, bearer(&hs256(&good_claims()))).await.status,
        StatusCode::OK
    );

    let layer = JwtLayer::new(issuer()).require_scopes(["orders:delete"]);
    let answer = call(&layer, bearer(&hs256(&good_claims()))).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer.challenge,
        "Bearer realm=\"meshgate\", error=\"insufficient_scope\", error_description=\"the token lacks a required scope\", scope=\"orders:delete\""
    );
    let layer = JwtLayer::new(issuer()).require_roles(["root"]);
    let answer = call(&layer, bearer(&hs256(&good_claims()))).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(answer.challenge.contains("error=\"insufficient_scope\""));
}

#[tokio::test]
async fn cookie_and_query_sources() {
    let token = hs256(&good_claims());
    let layer = JwtLayer::new(issuer()).token_from(TokenSource::Cookie("session".into()));
    let req = Request::get("/")
        .header("cookie", format!("theme=dark; session={token}; x=1"))
        .body(())
        .unwrap();
    assert_eq!(call(&layer, req).await.status, StatusCode::OK);
    // The Authorization header is not read then.
    assert_eq!(
        call(&layer, bearer(&token)).await.status,
        StatusCode::UNAUTHORIZED
    );

    let layer = JwtLayer::new(issuer())
        .token_from(TokenSource::Query("access_token".into()))
        .strip_token(true);
    let req = Request::get(format!("/orders?access_token={token}&page=2"))
        .body(())
        .unwrap();
    let answer = call(&layer, req).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.body.ends_with("uri=/orders?page=2"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn custom_claim_headers() {
    let layer = JwtLayer::new(issuer())
        .no_claim_headers()
        .claim_header("sub", http::HeaderName::from_static("x-user-roles"));
    let answer = call(&layer, bearer(&hs256(&good_claims()))).await;
    assert_eq!(
        answer.body,
        "claims.sub=user-7 x-user-id= x-user-roles=user-7 uri=/orders"
    );
}
