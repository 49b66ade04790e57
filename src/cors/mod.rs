//! CORS, by reuse of [`tower_http::cors`].
//!
//! tower-http's [`CorsLayer`] already does the job — preflight answers,
//! `Access-Control-*` headers on actual responses, `Vary` — so meshgate does
//! not reimplement it. This module re-exports it and adds what a gateway
//! needs on top:
//!
//! * [`strict`]: a layer for a fixed list of origins with the defaults of
//!   the gateway config's `cors` section (methods `GET, HEAD, POST`, only
//!   CORS-safelisted request headers, no credentials, preflight cached 10
//!   minutes);
//! * [`from_config`] (feature `config`): the layer for a route's `cors`
//!   section, **checked** first. tower-http panics at request time
//!   (in `poll_ready`) on credentials combined with a wildcard; here that
//!   combination, and malformed origins, are errors when the layer is built.
//!
//! Behaviour, from tower-http: every `OPTIONS` request is answered by the
//! layer as a preflight (`200`, empty body) without calling the inner
//! service; an allowed `Origin` is echoed in `Access-Control-Allow-Origin`
//! (or `*` when any origin is allowed), a disallowed one gets no CORS
//! headers, so the browser blocks the response. Other requests go to the
//! inner service and get `Access-Control-Allow-Origin`,
//! `Access-Control-Expose-Headers` and `Vary` added. The response body type
//! must implement `Default` (for the preflight answer).
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{HeaderValue, Method, Request, Response};
//! use meshgate::cors;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = cors::strict([HeaderValue::from_static("https://app.example.com")]);
//! let service = layer.layer(service_fn(|_: Request<()>| async {
//!     Ok::<_, Infallible>(Response::new(String::from("data")))
//! }));
//! let preflight = Request::builder()
//!     .method(Method::OPTIONS)
//!     .header("origin", "https://app.example.com")
//!     .header("access-control-request-method", "POST")
//!     .body(())
//!     .unwrap();
//! let response = service.oneshot(preflight).await.unwrap();
//! assert_eq!(response.headers()["access-control-allow-origin"], "https://app.example.com");
//! # }
//! ```

use std::time::Duration;

use http::{HeaderValue, Method};

pub use tower_http::cors::{AllowOrigin, Any, Cors, CorsLayer};

/// How long browsers may cache a preflight answer by default: 10 minutes.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(600);

/// A CORS layer that allows exactly `origins`
/// (`https://app.example.com`, as the browser sends them), with the
/// defaults of the config's `cors` section: methods `GET, HEAD, POST`, only
/// CORS-safelisted request headers, no exposed headers, no credentials,
/// `max-age` 10 minutes. Adjust it with `CorsLayer`'s own builder methods.
pub fn strict(origins: impl IntoIterator<Item = HeaderValue>) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::HEAD, Method::POST])
        .max_age(DEFAULT_MAX_AGE)
}

/// A CORS policy that cannot be turned into a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfigError(String);

impl std::fmt::Display for CorsConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CorsConfigError {}

/// The layer for a route's `cors` section of the gateway config.
///
/// `allow_origins: ["*"]` allows any origin (`Access-Control-Allow-Origin:
/// *`); otherwise each entry must be `scheme://host[:port]` with scheme
/// `http` or `https`. Errors, instead of tower-http's request-time panic,
/// on `allow_credentials` with `*`, on `*` mixed with other origins, and on
/// malformed origins. An empty list allows no origin.
#[cfg(feature = "config")]
pub fn from_config(policy: &crate::config::CorsPolicy) -> Result<CorsLayer, CorsConfigError> {
    let wildcard = policy.allow_origins.iter().any(|o| o == "*");
    let origin = if wildcard {
        if policy.allow_origins.len() > 1 {
            return Err(CorsConfigError(
                "cors.allow_origins: \"*\" cannot be combined with other origins".into(),
            ));
        }
        if policy.allow_credentials {
            return Err(CorsConfigError(
                "cors.allow_credentials cannot be true with origin \"*\"".into(),
            ));
        }
        AllowOrigin::any()
    } else {
        let mut origins = Vec::with_capacity(policy.allow_origins.len());
        for (i, origin) in policy.allow_origins.iter().enumerate() {
            origins.push(parse_origin(origin).ok_or_else(|| {
                CorsConfigError(format!(
                    "cors.allow_origins[{i}]: invalid origin {origin:?} \
                     (expected \"*\" or scheme://host[:port])"
                ))
            })?);
        }
        AllowOrigin::list(origins)
    };
    // Lists, never wildcards, below: with credentials, tower-http's checks
    // in `poll_ready` are then satisfied by construction.
    Ok(CorsLayer::new()
        .allow_origin(origin)
        .allow_methods(policy.allow_methods.clone())
        .allow_headers(policy.allow_headers.clone())
        .expose_headers(policy.expose_headers.clone())
        .allow_credentials(policy.allow_credentials)
        .max_age(policy.max_age))
}

#[cfg(feature = "config")]
fn parse_origin(origin: &str) -> Option<HeaderValue> {
    let (scheme, rest) = origin.split_once("://")?;
    let valid = matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', ' ', '*']);
    valid.then(|| HeaderValue::from_str(origin).ok()).flatten()
}
