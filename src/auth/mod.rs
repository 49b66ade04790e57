//! Authentication and authorization: API keys of consumers ([`api_key`]),
//! JWTs ([`jwt`]) and access policies ([`authz`]).
//!
//! Each scheme is a tower layer that refuses a request it cannot
//! authenticate with `401` (`WWW-Authenticate` and a problem+json body that
//! never echoes the credential) or `403`, and otherwise puts who the caller
//! is into the request's extensions for inner layers (rate limiter, access
//! policies, handlers):
//!
//! * [`api_key::ApiKeyLayer`] inserts a [`Consumer`] (id, name, tier,
//!   groups, metadata), looked up in a [`ConsumerStore`] that keeps only
//!   SHA-256 digests of the keys and compares them in constant time.
//! * [`jwt::JwtLayer`] inserts the token's [`jwt::Claims`], verified with
//!   keys bound to their algorithm (static secrets, PEM, JWK, or a JWKS URL
//!   refreshed in the background).
//!
//! * [`any::JwtOrApiKeyLayer`] accepts either on one route.
//! * [`peer_identity::PeerIdentityLayer`] inserts the [`authz::PeerIdentity`]
//!   of an mTLS peer (the SPIFFE ID of its certificate) and passes it to the
//!   application in a header it strips from incoming requests first.
//! * [`authz::AuthzLayer`] then decides over that principal and the
//!   request with Istio-style ALLOW/DENY rules (`403`).
//!
//! Both authentication layers remove incoming copies of the identity headers they set upstream
//! (`X-Consumer-*`, `X-User-ID`, …) so a client cannot spoof them.
//!
//! ```
//! use meshgate::auth::{Consumer, ConsumerStore, api_key::ApiKeyLayer};
//!
//! let store = ConsumerStore::new();
//! store.add_key(Consumer::new("billing").with_tier("enterprise"), "k-123").unwrap();
//! let layer = ApiKeyLayer::new(store).header(http::HeaderName::from_static("x-api-key"));
//! # let _ = layer;
//! ```

use std::fmt;

pub mod any;
pub mod api_key;
pub mod authz;
mod consumer;
pub mod jwt;
pub mod peer_identity;
mod query;

pub use crate::future::ResponseFuture;
pub use consumer::{Consumer, ConsumerStore, MAX_KEYS, StoreError};

/// A configuration the auth layers cannot be built from (an unknown
/// consumer, a key that does not fit its algorithm, …). The message names
/// what is wrong and never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ConfigError(message.into())
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}
