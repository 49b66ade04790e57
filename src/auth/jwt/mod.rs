//! JWT bearer authentication (Istio `RequestAuthentication`, Kong `jwt`).
//!
//! [`JwtLayer`] reads a token from `Authorization: Bearer` (or a cookie or
//! query parameter, [`TokenSource`]), verifies it with the keys of one or
//! more [`Issuer`]s, and passes the request on with the verified
//! [`Claims`] in its extensions and chosen claims in upstream headers.
//!
//! * **Keys are bound to one algorithm** ([`JwtKey`]): the token's `alg`
//!   must equal the key's, so it never chooses the key type; `alg: none`
//!   has no key; an `HS256` token is never checked against an RSA key.
//!   Keys are static (HMAC secrets, PEM, JWK) or come from a JWKS URL
//!   ([`Jwks`], `https` with the `tls` feature: Mozilla's roots or a
//!   private CA) refreshed in the background and on an unknown `kid`, at
//!   most once per interval.
//! * **Claims**: `exp` is always required, `nbf` checked, `iss` and `aud`
//!   required and checked when the issuer sets them, with a leeway
//!   (default 30 s). Required scopes/roles answer `403` `insufficient_scope`.
//! * **Tokens over 8 KiB** are refused before parsing.
//! * **Headers**: `sub` → `X-User-ID` and `roles` → `X-User-Roles`
//!   (comma-joined) by default; incoming copies are always removed first.
//! * **Refusals**: `401` with `WWW-Authenticate: Bearer realm="meshgate",
//!   error="invalid_token", error_description="..."` (RFC 6750) and a
//!   problem+json body; the description never holds the token. Without a
//!   token, the challenge has no error code.
//!
//! The backend is `jsonwebtoken` with `aws-lc-rs`: it checks the
//! signatures; the header and the claims are each parsed once (where
//! `jsonwebtoken::decode` parses each twice) and checked as its
//! `Validation` would, with two stricter rules: `iss` must be a string, and
//! a header with `crit` is refused.
//!
//! ```
//! use meshgate::auth::jwt::{Algorithm, Claims, Issuer, JwtKey, JwtLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let secret = b"0123456789abcdef0123456789abcdef";
//! let layer = JwtLayer::new(
//!     Issuer::new()
//!         .issuer("https://idp.example.com/")
//!         .key(JwtKey::hmac(Algorithm::HS256, secret).unwrap()),
//! )
//! .require_scopes(["orders:read"]);
//!
//! let svc = ServiceBuilder::new().layer(layer).service(service_fn(|req: http::Request<()>| async move {
//!     let sub = req.extensions().get::<Claims>().and_then(|c| c.subject()).unwrap_or("").to_owned();
//!     assert_eq!(req.headers()["x-user-id"], sub.as_str());
//!     Ok::<_, std::convert::Infallible>(http::Response::new(sub))
//! }));
//!
//! let claims = serde_json::json!({
//!     "sub": "user-7", "iss": "https://idp.example.com/", "scope": "orders:read",
//!     "exp": jsonwebtoken::get_current_timestamp() + 600,
//! });
//! let token = jsonwebtoken::encode(
//!     &jsonwebtoken::Header::new(Algorithm::HS256),
//!     &claims,
//!     &jsonwebtoken::EncodingKey::from_secret(secret),
//! ).unwrap();
//! let req = http::Request::get("/").header("authorization", format!("Bearer {token}")).body(()).unwrap();
//! assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), 200);
//!
//! let req = http::Request::get("/").body(()).unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 401);
//! assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"meshgate\"");
//! # }
//! ```

mod claims;
mod jwks;
mod key;
mod layer;
mod service;
mod verify;

pub use claims::Claims;
pub use jsonwebtoken::Algorithm;
pub use jwks::{Jwks, JwksDocument, MAX_JWKS_BYTES, MAX_JWKS_KEYS};
pub use key::JwtKey;
#[cfg(feature = "config")]
pub use key::from_config_algorithm;
pub use layer::{DEFAULT_MAX_TOKEN_BYTES, Issuer, JwtLayer, TokenSource};
pub use service::{Jwt, ResponseFuture};
