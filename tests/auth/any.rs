use std::convert::Infallible;

use http::{Request, Response, StatusCode};
use jsonwebtoken::EncodingKey;
use meshgate::auth::any::JwtOrApiKeyLayer;
use meshgate::auth::api_key::ApiKeyLayer;
use meshgate::auth::jwt::{Algorithm, Claims, Issuer, JwtKey, JwtLayer};
use meshgate::auth::{Consumer, ConsumerStore};
use serde_json::json;
use tower::{Layer, ServiceExt, service_fn};

use crate::jwt::{SECRET, now, sign};

async fn who(req: Request<()>) -> Result<Response<String>, Infallible> {
    assert!(
        req.headers().get("x-consumer-username").is_none()
            || req.extensions().get::<Consumer>().is_some()
    );
    assert!(req.headers().get("x-user-id").is_none() || req.extensions().get::<Claims>().is_some());
    let ext = req.extensions();
    let who = match (ext.get::<Claims>(), ext.get::<Consumer>()) {
        (Some(c), _) => format!("jwt:{}", c.subject().unwrap_or("")),
        (_, Some(c)) => format!("key:{}", c.name()),
        _ => "nobody".into(),
    };
    Ok(Response::new(who))
}

fn layer(anonymous: bool) -> JwtOrApiKeyLayer {
    let store = ConsumerStore::new();
    store.add_key(Consumer::new("app"), "key-1").unwrap();
    let mut api_key = ApiKeyLayer::new(store);
    if anonymous {
        api_key = api_key.anonymous(Consumer::new("guest"));
    }
    let jwt = JwtLayer::new(Issuer::new().key(JwtKey::hmac(Algorithm::HS256, SECRET).unwrap()));
    JwtOrApiKeyLayer::new(jwt, api_key)
}

async fn call(layer: &JwtOrApiKeyLayer, req: Request<()>) -> (StatusCode, Vec<String>, String) {
    let res = layer.layer(service_fn(who)).oneshot(req).await.unwrap();
    let challenges = res
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let status = res.status();
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        challenges,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn either_credential_passes_and_none_gets_both_challenges() {
    let layer = layer(false);
    let token = sign(
        Algorithm::HS256,
        None,
        &json!({"sub": "u9", "exp": now() + 60}),
        &EncodingKey::from_secret(SECRET),
    );
    let req = Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    assert_eq!(call(&layer, req).await.2, "jwt:u9");
    let req = Request::get("/")
        .header("x-api-key", "key-1")
        .body(())
        .unwrap();
    assert_eq!(call(&layer, req).await.2, "key:app");

    let (status, challenges, _) = call(&layer, Request::get("/").body(()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges,
        ["Bearer realm=\"meshgate\"", "Key realm=\"meshgate\""]
    );

    // A bad token is refused even with a good key: no fall-through.
    let req = Request::get("/")
        .header("authorization", "Bearer a.b.c")
        .header("x-api-key", "key-1")
        .body(())
        .unwrap();
    let (status, challenges, _) = call(&layer, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenges[0].contains("invalid_token"));
    // A wrong key is refused by the key check.
    let req = Request::get("/")
        .header("x-api-key", "nope")
        .body(())
        .unwrap();
    let (status, challenges, _) = call(&layer, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenges, ["Key realm=\"meshgate\""]);
}

#[tokio::test]
async fn no_credential_runs_as_the_anonymous_consumer() {
    let (status, _, body) = call(&layer(true), Request::get("/").body(()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "key:guest");
}
