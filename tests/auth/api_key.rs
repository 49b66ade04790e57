use std::convert::Infallible;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use meshgate::auth::api_key::ApiKeyLayer;
use meshgate::auth::{Consumer, ConsumerStore};
use meshgate::error::{Rejection, RejectionKind};
use tower::{Layer, ServiceExt, service_fn};

/// The inner service echoes what it saw: the consumer extension, the
/// identity headers and the URI, one per line.
async fn echo(req: Request<()>) -> Result<Response<String>, Infallible> {
    let consumer = req.extensions().get::<Consumer>();
    let h = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_else(|| "-".into())
    };
    Ok(Response::new(format!(
        "consumer={}\ntier={}\nid={}\nuser={}\ngroups={}\nanon={}\nkey={}\nuri={}",
        consumer.map_or("-", |c| c.name()),
        consumer.and_then(|c| c.tier()).unwrap_or("-"),
        h("x-consumer-id"),
        h("x-consumer-username"),
        h("x-consumer-groups"),
        h("x-anonymous-consumer"),
        h("x-api-key"),
        req.uri(),
    )))
}

fn store() -> ConsumerStore {
    let store = ConsumerStore::new();
    let app = Consumer::new("mobile-app")
        .with_id("c-42")
        .with_tier("pro")
        .with_group("partners")
        .with_group("beta");
    store.add_key(app.clone(), "key-one").unwrap();
    store.add_key(app, "key-two").unwrap();
    store
        .add_key(Consumer::new("batch").with_tier("free"), "key-batch")
        .unwrap();
    store
}

async fn call(layer: &ApiKeyLayer, req: Request<()>) -> (StatusCode, http::HeaderMap, String) {
    let res = layer.layer(service_fn(echo)).oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    if status != StatusCode::OK {
        let rejection = res.extensions().get::<Rejection>().unwrap();
        assert!(matches!(
            rejection.kind(),
            RejectionKind::Unauthenticated | RejectionKind::Forbidden
        ));
    }
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn valid_key_sets_consumer_and_headers_and_strips_spoofed_copies() {
    let layer = ApiKeyLayer::new(store());
    let req = Request::get("/orders")
        .header("x-api-key", "key-two")
        .header("x-consumer-username", "admin")
        .header("x-consumer-id", "root")
        .header("x-anonymous-consumer", "false")
        .body(())
        .unwrap();
    let (status, _, body) = call(&layer, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        "consumer=mobile-app\ntier=pro\nid=c-42\nuser=mobile-app\ngroups=partners,beta\nanon=-\nkey=-\nuri=/orders"
    );
}

#[tokio::test]
async fn missing_and_wrong_keys_get_401_without_echo() {
    let layer = ApiKeyLayer::new(store());
    let (status, headers, body) = call(&layer, Request::get("/").body(()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Key realm=\"meshgate\"");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(body.contains("an API key is required"), "{body}");

    let req = Request::get("/")
        .header("x-api-key", "guess-123-secret")
        .body(())
        .unwrap();
    let (status, headers, body) = call(&layer, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Key realm=\"meshgate\"");
    assert!(body.contains("not valid"), "{body}");
    assert!(!body.contains("guess-123-secret"));

    // Oversized keys are refused without hashing, the same way.
    let long = "k".repeat(5000);
    let req = Request::get("/")
        .header("x-api-key", long)
        .body(())
        .unwrap();
    assert_eq!(call(&layer, req).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn query_parameter_is_read_and_removed() {
    let layer = ApiKeyLayer::new(store()).query_param("apikey");
    let req = Request::get("/items?page=2&apikey=key-batch&sort=asc")
        .body(())
        .unwrap();
    let (status, _, body) = call(&layer, req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("consumer=batch"), "{body}");
    assert!(body.ends_with("uri=/items?page=2&sort=asc"), "{body}");

    // Without the query option the parameter is not a credential.
    let layer = ApiKeyLayer::new(store());
    let req = Request::get("/items?apikey=key-batch").body(()).unwrap();
    assert_eq!(call(&layer, req).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn revoked_keys_stop_working_at_once() {
    let store = store();
    let layer = ApiKeyLayer::new(store.clone());
    let req = || {
        Request::get("/")
            .header("x-api-key", "key-one")
            .body(())
            .unwrap()
    };
    assert_eq!(call(&layer, req()).await.0, StatusCode::OK);
    assert!(store.revoke_key("key-one"));
    assert_eq!(call(&layer, req()).await.0, StatusCode::UNAUTHORIZED);
    // The consumer's other key still works, and a key added at run time too.
    let req2 = Request::get("/")
        .header("x-api-key", "key-two")
        .body(())
        .unwrap();
    assert_eq!(call(&layer, req2).await.0, StatusCode::OK);
    store.add_key(Consumer::new("new"), "key-new").unwrap();
    let req3 = Request::get("/")
        .header("x-api-key", "key-new")
        .body(())
        .unwrap();
    assert_eq!(call(&layer, req3).await.0, StatusCode::OK);
}

#[tokio::test]
async fn custom_header_keep_key_anonymous_and_allow_list() {
    let layer = ApiKeyLayer::new(store())
        .header(http::HeaderName::from_static("apikey"))
        .strip_credentials(false)
        .anonymous(Consumer::new("guest").with_tier("free"));
    // No key: runs as the anonymous consumer.
    let (status, _, body) = call(&layer, Request::get("/").body(()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("consumer=guest\ntier=free"), "{body}");
    assert!(body.contains("anon=true"), "{body}");
    // A wrong key is still refused.
    let req = Request::get("/").header("apikey", "nope").body(()).unwrap();
    assert_eq!(call(&layer, req).await.0, StatusCode::UNAUTHORIZED);
    // The key header is kept when asked (this layer reads `apikey`, so
    // `x-api-key` is not a credential at all here).
    let req = Request::get("/")
        .header("apikey", "key-one")
        .body(())
        .unwrap();
    let res = layer.layer(service_fn(|req: Request<()>| async move {
        Ok::<_, Infallible>(Response::new(
            req.headers()["apikey"].to_str().unwrap().to_owned(),
        ))
    }));
    let res = res.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let layer = ApiKeyLayer::new(store()).allow_consumers(["batch"]);
    let req = Request::get("/")
        .header("x-api-key", "key-one")
        .body(())
        .unwrap();
    assert_eq!(call(&layer, req).await.0, StatusCode::FORBIDDEN);
    let req = Request::get("/")
        .header("x-api-key", "key-batch")
        .body(())
        .unwrap();
    assert_eq!(call(&layer, req).await.0, StatusCode::OK);
}
