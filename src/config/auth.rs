//! Identities: consumers with API keys, JWT issuers, and the per-route
//! authentication and authorization policies that use them.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderName, Method};
use serde::Deserialize;

use super::secret::{ApiKeyDigest, Secret};

/// Authentication and authorization on a route.
///
/// With both `jwt` and `api_key` set, a request passes with either (any-of).
/// `policies` then decide over the authenticated principal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RouteAuth {
    /// Accept a JWT from one of the named issuers.
    pub jwt: Option<JwtAuth>,
    /// Accept an API key of a consumer.
    pub api_key: Option<ApiKeyAuth>,
    /// Access policies, Istio `AuthorizationPolicy` style: DENY wins, and
    /// when any ALLOW rule exists a request must match one.
    pub policies: Vec<AuthzRule>,
}

/// JWT authentication on a route.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtAuth {
    /// Names of accepted issuers (from `jwt_issuers`); at least one.
    pub issuers: Vec<String>,
    /// Scopes the token must all carry (`scope`/`scp` claim). Default: none.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Roles the token must all carry (`roles` claim). Default: none.
    #[serde(default)]
    pub required_roles: Vec<String>,
    /// Where the token is read. Default: `Authorization: Bearer`.
    #[serde(default)]
    pub token_from: TokenSource,
}

/// Where a bearer token is found.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// `Authorization: Bearer <token>` (`token_from: authorization`).
    #[default]
    Authorization,
    /// A cookie (`token_from: { cookie: access_token }`).
    Cookie(String),
    /// A query parameter (`token_from: { query: access_token }`).
    Query(String),
}

/// API-key authentication on a route.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeyAuth {
    /// Header carrying the key. Default: `x-api-key`.
    #[serde(deserialize_with = "super::fields::header_name")]
    pub header: HeaderName,
    /// Query parameter also accepted (removed before the request goes
    /// upstream). Default: none.
    pub query: Option<String>,
    /// Only these consumers are accepted. Default: every consumer.
    pub consumers: Vec<String>,
    /// Consumer that unauthenticated requests run as, instead of a `401`.
    /// Default: none.
    pub anonymous: Option<String>,
}

impl Default for ApiKeyAuth {
    fn default() -> Self {
        ApiKeyAuth {
            header: HeaderName::from_static("x-api-key"),
            query: None,
            consumers: Vec::new(),
            anonymous: None,
        }
    }
}

/// One authorization rule. Every condition given must hold; a list holds
/// when any of its entries matches.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzRule {
    /// `allow` or `deny`.
    pub action: AuthzAction,
    /// Consumer names (from `consumers`).
    #[serde(default)]
    pub consumers: Vec<String>,
    /// Consumer groups (from `consumers[].groups`): the consumer is in one
    /// of them.
    #[serde(default)]
    pub groups: Vec<String>,
    /// JWT subjects.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// JWT roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// JWT scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Peer identities (mTLS, e.g. SPIFFE ids).
    #[serde(default)]
    pub peers: Vec<String>,
    /// Request methods.
    #[serde(default, deserialize_with = "super::fields::methods")]
    pub methods: Vec<Method>,
    /// Request paths: exact, `/prefix/*`, or `*` for any.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Request headers, by name: each must be present with a value
    /// matching one of its patterns (exact, `prefix*`, `*suffix`, or `*`
    /// for any value).
    #[serde(default)]
    pub headers: BTreeMap<String, Vec<String>>,
    /// JWT claims, by name: each must be a string (or an array holding a
    /// string) matching one of its patterns, as for `headers`.
    #[serde(default)]
    pub claims: BTreeMap<String, Vec<String>>,
}

/// What an authorization rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthzAction {
    /// Let the request through.
    Allow,
    /// Refuse with `403`.
    Deny,
}

/// An API client.
///
/// ```yaml
/// consumers:
///   - name: mobile-app
///     tier: pro
///     groups: [partners, mobile]
///     keys:
///       - ${MOBILE_APP_KEY}        # plain key from the environment, hashed at load
///       - 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08  # SHA-256 hex
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// Unique name, sent upstream as `X-Consumer-Username`.
    pub name: String,
    /// Id sent upstream as `X-Consumer-ID`. Default: the name.
    pub id: String,
    /// Rate-limit tier (a key of `rate_limit_tiers`). Default: none.
    pub tier: Option<String>,
    /// Groups the consumer is in, matched by access policies' `groups` and
    /// sent upstream as `X-Consumer-Groups` (comma-joined). Default: none.
    pub groups: Vec<String>,
    /// The SHA-256 digests of the consumer's keys.
    pub keys: Vec<ApiKeyDigest>,
    /// Free-form metadata.
    pub metadata: BTreeMap<String, String>,
}

/// A JWT issuer and how its tokens are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtIssuer {
    /// Name routes refer to; unique.
    pub name: String,
    /// Required `iss` claim.
    pub issuer: String,
    /// Accepted `aud` values; when not empty the token must carry one.
    pub audiences: Vec<String>,
    /// Where the keys come from.
    pub keys: JwtKeys,
    /// Clock skew allowed on `exp` and `nbf`. Default: `30s`.
    pub leeway: Duration,
    /// Claims copied to upstream headers (incoming copies are removed
    /// first). Default: `sub` → `x-user-id`, `roles` → `x-user-roles`.
    pub claims_to_headers: Vec<(String, HeaderName)>,
}

/// The keys of a JWT issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKeys {
    /// A JWKS document fetched over HTTP(S) and refreshed.
    Jwks {
        /// The JWKS URL (may contain `${VAR}`).
        url: String,
        /// Background refresh interval (a `Cache-Control: max-age` within
        /// bounds wins). Default: `5m`.
        refresh_interval: Duration,
        /// Least time between refreshes caused by an unknown `kid`.
        /// Default: `30s`.
        min_refresh_interval: Duration,
        /// The roots trusted for an `https` URL (`jwks_ca`). Default:
        /// none, Mozilla's root certificates.
        ca: Option<JwksCa>,
    },
    /// Keys given in the file.
    Static(Vec<JwtKey>),
}

/// The root certificates trusted for an `https` JWKS URL (a private IdP's
/// CA), given as `jwks_ca`: a PEM bundle in the file, or the path of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksCa {
    /// PEM text (`jwks_ca: "-----BEGIN CERTIFICATE-----..."`).
    Pem(String),
    /// A PEM file, read when the gateway is built.
    File(std::path::PathBuf),
}

/// One static JWT verification key, bound to its algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtKey {
    /// Key id matched against the token's `kid`. Default: none (matches
    /// tokens without a `kid`, or any token when it is the only key).
    pub kid: Option<String>,
    /// The only algorithm this key verifies.
    pub algorithm: JwtAlgorithm,
    /// The key material.
    pub material: KeyMaterial,
}

/// Key material of a static JWT key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// An HMAC secret (HS algorithms).
    Secret(Secret),
    /// A PEM public key (RS, PS, ES, EdDSA algorithms).
    Pem(String),
}

/// A JWT signature algorithm; `none` does not exist here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC SHA-256.
    HS256,
    /// HMAC SHA-384.
    HS384,
    /// HMAC SHA-512.
    HS512,
    /// RSA PKCS#1 v1.5 SHA-256.
    RS256,
    /// RSA PKCS#1 v1.5 SHA-384.
    RS384,
    /// RSA PKCS#1 v1.5 SHA-512.
    RS512,
    /// RSA-PSS SHA-256.
    PS256,
    /// RSA-PSS SHA-384.
    PS384,
    /// RSA-PSS SHA-512.
    PS512,
    /// ECDSA P-256 SHA-256.
    ES256,
    /// ECDSA P-384 SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl JwtAlgorithm {
    /// Whether this is an HMAC algorithm (a shared secret, not a public key).
    pub fn is_hmac(self) -> bool {
        matches!(
            self,
            JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512
        )
    }

    /// Shortest HMAC secret accepted, in bytes: the hash size (RFC 7518
    /// §3.2).
    pub fn min_secret_len(self) -> usize {
        match self {
            JwtAlgorithm::HS384 => 48,
            JwtAlgorithm::HS512 => 64,
            _ => 32,
        }
    }
}
