//! An axum app behind API keys, JWTs and an access policy.
//!
//! `/orders` accepts a bearer JWT (HS256, issuer `https://idp.example/`)
//! **or** an API key (`X-API-Key`); the policy lets only JWT callers with
//! the `admin` role, or the `mobile-app` consumer with GET, in, and
//! nobody DELETE. The handler echoes who the caller is and the identity
//! headers the upstream would see. At start the example prints a demo
//! token (valid one hour) and the demo key.
//!
//! Run it:
//!
//! ```text
//! cargo run --example axum_auth                  # listens on 127.0.0.1:8082
//! cargo run --example axum_auth -- 127.0.0.1:0   # any free port
//! ```
//!
//! Then try (TOKEN is printed at start):
//!
//! ```text
//! curl -i localhost:8082/orders
//! #   401, WWW-Authenticate: Bearer realm="meshgate" and Key realm="meshgate"
//! curl -i -H 'x-api-key: demo-key-123' localhost:8082/orders
//! #   200 "consumer mobile-app (tier pro)" and the x-consumer-username: mobile-app
//! #   header the handler received
//! curl -i -X DELETE -H 'x-api-key: demo-key-123' localhost:8082/orders
//! #   403 problem+json "access denied by policy"
//! curl -i -H 'x-api-key: wrong' localhost:8082/orders
//! #   401 "the API key is not valid" (the key is never echoed)
//! curl -i -H "authorization: Bearer $TOKEN" -H 'x-user-id: spoofed' localhost:8082/orders
//! #   200 "jwt subject alice", x-user-id: alice, x-user-roles: admin (the
//! #   spoofed copy is gone)
//! curl -i -H 'authorization: Bearer abc.def.ghi' localhost:8082/orders
//! #   401, WWW-Authenticate: Bearer realm="meshgate", error="invalid_token",
//! #   error_description="the token is malformed or its algorithm is not supported"
//! ```

use std::net::SocketAddr;

use axum::Router;
use axum::http::{HeaderMap, Method};
use axum::routing::get;
use meshgate::auth::any::JwtOrApiKeyLayer;
use meshgate::auth::api_key::ApiKeyLayer;
use meshgate::auth::authz::{AuthzLayer, AuthzRule};
use meshgate::auth::jwt::{Algorithm, Claims, Issuer, JwtKey, JwtLayer};
use meshgate::auth::{Consumer, ConsumerStore};
use tower::ServiceBuilder;

const SECRET: &[u8] = b"demo-secret-change-me-0123456789ab";

async fn orders(
    consumer: Option<axum::Extension<Consumer>>,
    claims: Option<axum::Extension<Claims>>,
    headers: HeaderMap,
) -> String {
    let who = match (consumer, claims) {
        (Some(c), _) => format!("consumer {} (tier {})", c.name(), c.tier().unwrap_or("-")),
        (_, Some(c)) => format!("jwt subject {}", c.subject().unwrap_or("-")),
        _ => "nobody".into(),
    };
    let seen: Vec<String> = ["x-consumer-username", "x-user-id", "x-user-roles"]
        .iter()
        .filter_map(|h| Some(format!("{h}: {}", headers.get(*h)?.to_str().ok()?)))
        .collect();
    format!("{who}\n{}\n", seen.join("\n"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8082".into())
        .parse()?;

    let store = ConsumerStore::new();
    store.add_key(Consumer::new("mobile-app").with_tier("pro"), "demo-key-123")?;
    let jwt = JwtLayer::new(
        Issuer::new()
            .issuer("https://idp.example/")
            .key(JwtKey::hmac(Algorithm::HS256, SECRET)?),
    );
    let policy = AuthzLayer::new([
        AuthzRule::deny().methods([Method::DELETE]),
        AuthzRule::allow().roles(["admin"]),
        AuthzRule::allow()
            .consumers(["mobile-app"])
            .methods([Method::GET]),
    ]);
    let app = Router::new()
        .route("/orders", get(orders).delete(orders))
        .layer(
            ServiceBuilder::new()
                .layer(JwtOrApiKeyLayer::new(jwt, ApiKeyLayer::new(store)))
                .layer(policy),
        );

    let claims = serde_json::json!({
        "sub": "alice", "iss": "https://idp.example/", "roles": ["admin"],
        "exp": jsonwebtoken::get_current_timestamp() + 3600,
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    println!("TOKEN={token}");
    println!("API key: demo-key-123");
    axum::serve(listener, app).await?;
    Ok(())
}
