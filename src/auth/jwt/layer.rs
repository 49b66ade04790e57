use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, COOKIE, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use http::{Request, Response};
use tower_layer::Layer;

use super::claims::Claims;
use super::jwks::Jwks;
use super::key::{self, JwtKey};
use super::service::Jwt;
use super::verify::{self, ClaimRules};
use crate::ResponseBody;
#[cfg(feature = "config")]
use crate::auth::ConfigError;
use crate::auth::query;
use crate::error::{Rejection, RejectionKind};

/// The default largest token accepted: 8 KiB.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Where the token is read from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>`.
    #[default]
    Authorization,
    /// The cookie of this name.
    Cookie(String),
    /// The query parameter of this name (removed before the request goes
    /// on when [`JwtLayer::strip_token`] is set).
    Query(String),
}

/// Who issues tokens and how they are checked: the required `iss`, the
/// accepted audiences, the clock leeway, and the keys.
///
/// ```
/// use std::time::Duration;
/// use meshgate::auth::jwt::{Algorithm, Issuer, JwtKey};
///
/// let issuer = Issuer::new()
///     .issuer("https://idp.example.com/")
///     .audience("orders-api")
///     .leeway(Duration::from_secs(10))
///     .key(JwtKey::hmac(Algorithm::HS256, b"0123456789abcdef0123456789abcdef").unwrap());
/// # let _ = issuer;
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct Issuer {
    issuer: Option<String>,
    audiences: Vec<String>,
    leeway: Option<Duration>,
    keys: Vec<JwtKey>,
    jwks: Option<Jwks>,
}

impl Issuer {
    /// An issuer with no key yet, no `iss`/`aud` requirement and a 30 s
    /// leeway.
    pub fn new() -> Self {
        Issuer::default()
    }

    /// Requires `iss` to equal this. Default: `iss` is not checked.
    pub fn issuer(mut self, iss: impl Into<String>) -> Self {
        self.issuer = Some(iss.into());
        self
    }

    /// Accepts this audience; with one or more, `aud` is required and must
    /// hold one of them. Default: `aud` is not checked.
    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        self.audiences.push(aud.into());
        self
    }

    /// Clock skew allowed on `exp` and `nbf` (whole seconds). Default: 30 s.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = Some(leeway);
        self
    }

    /// Adds a static key.
    pub fn key(mut self, key: JwtKey) -> Self {
        self.keys.push(key);
        self
    }

    /// Takes keys from a JWKS URL too.
    pub fn jwks(mut self, jwks: Jwks) -> Self {
        self.jwks = Some(jwks);
        self
    }

    fn rules(&self) -> ClaimRules {
        ClaimRules {
            issuer: self.issuer.clone(),
            audiences: self.audiences.clone(),
            leeway: self.leeway.unwrap_or(Duration::from_secs(30)).as_secs(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Verifier {
    issuer: Issuer,
    rules: ClaimRules,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    verifiers: Arc<[Verifier]>,
    required_scopes: Vec<String>,
    required_roles: Vec<String>,
    source: TokenSource,
    max_token_bytes: usize,
    claim_headers: Vec<(String, HeaderName)>,
    strip_token: bool,
    realm: String,
}

/// Authenticates requests by JWT. See the [module docs](super).
///
/// The configuration (and the JWKS caches) are behind an `Arc`: every
/// service the layer builds, and their clones, share them.
#[derive(Debug, Clone)]
#[must_use]
pub struct JwtLayer {
    config: Arc<Config>,
}

/// What verifying a token gave.
pub(crate) enum Verdict {
    Valid(Claims),
    Refused(Refusal),
    /// A JWKS may hold the token's key after a refresh.
    KeyMissing,
}

/// Why a request is refused (a static description: never the token).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refusal {
    Missing,
    Invalid(&'static str),
    InsufficientScope(&'static str),
}

impl JwtLayer {
    /// Accepts tokens of `issuer`.
    pub fn new(issuer: Issuer) -> Self {
        JwtLayer {
            config: Arc::new(Config {
                verifiers: Arc::from(vec![Verifier {
                    rules: issuer.rules(),
                    issuer,
                }]),
                required_scopes: Vec::new(),
                required_roles: Vec::new(),
                source: TokenSource::Authorization,
                max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
                claim_headers: vec![
                    ("sub".into(), HeaderName::from_static("x-user-id")),
                    ("roles".into(), HeaderName::from_static("x-user-roles")),
                ],
                strip_token: false,
                realm: "meshgate".into(),
            }),
        }
    }

    fn configured(mut self, f: impl FnOnce(&mut Config)) -> Self {
        let mut config = (*self.config).clone();
        f(&mut config);
        self.config = Arc::new(config);
        self
    }

    /// Also accepts tokens of another issuer (tried in order).
    pub fn issuer(self, issuer: Issuer) -> Self {
        self.configured(|c| {
            let mut verifiers: Vec<Verifier> = c.verifiers.to_vec();
            verifiers.push(Verifier {
                rules: issuer.rules(),
                issuer,
            });
            c.verifiers = Arc::from(verifiers);
        })
    }

    /// Scopes (`scope`/`scp` claims) the token must all carry, else `403`
    /// `insufficient_scope`. Default: none.
    pub fn require_scopes<I, S>(self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
        self.configured(|c| c.required_scopes = scopes)
    }

    /// Roles (`roles` claim) the token must all carry, else `403`
    /// `insufficient_scope`. Default: none.
    pub fn require_roles<I, S>(self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let roles: Vec<String> = roles.into_iter().map(Into::into).collect();
        self.configured(|c| c.required_roles = roles)
    }

    /// Where the token is read. Default: `Authorization: Bearer`.
    pub fn token_from(self, source: TokenSource) -> Self {
        self.configured(|c| c.source = source)
    }

    /// Tokens longer than this are refused before parsing. Default: 8 KiB.
    pub fn max_token_size(self, bytes: usize) -> Self {
        self.configured(|c| c.max_token_bytes = bytes)
    }

    /// Copies a claim to an upstream header (strings as is, arrays
    /// comma-joined). Incoming copies of every mapped header are removed
    /// first. Default: `sub` → `X-User-ID`, `roles` → `X-User-Roles`.
    pub fn claim_header(self, claim: impl Into<String>, header: HeaderName) -> Self {
        let claim = claim.into();
        self.configured(|c| c.claim_headers.push((claim, header)))
    }

    /// Removes every claim-to-header mapping (the defaults too).
    pub fn no_claim_headers(self) -> Self {
        self.configured(|c| c.claim_headers.clear())
    }

    /// Whether the token is removed before the request goes on (the
    /// `Authorization` header or the query parameter; a cookie is left).
    /// Default: `false`, the upstream sees the token.
    pub fn strip_token(self, strip: bool) -> Self {
        self.configured(|c| c.strip_token = strip)
    }

    /// The realm in `WWW-Authenticate`. Characters other than visible ASCII
    /// and spaces, `"` and `\` are dropped. Default: `meshgate`.
    pub fn realm(self, realm: &str) -> Self {
        let realm: String = realm
            .chars()
            .filter(|c| (c.is_ascii_graphic() || *c == ' ') && *c != '"' && *c != '\\')
            .collect();
        self.configured(|c| c.realm = realm)
    }
}

#[cfg(feature = "config")]
impl JwtLayer {
    /// The layer for a route's `jwt` section, with the config's issuers.
    ///
    /// Each JWKS issuer gets its own cache ([`Jwks::from_config`]); to share
    /// one cache per issuer between routes, build them once and use
    /// [`from_config_with_jwks`](Self::from_config_with_jwks). Fails for an
    /// unknown issuer name, a bad JWKS URL or `jwks_ca`, or a bad static
    /// key. Claim headers are the union of the issuers' mappings.
    pub fn from_config(
        auth: &crate::config::JwtAuth,
        issuers: &[crate::config::JwtIssuer],
    ) -> Result<Self, ConfigError> {
        Self::from_config_with_jwks(auth, issuers, &std::collections::HashMap::new())
    }

    /// As [`from_config`](Self::from_config), taking the JWKS cache of an
    /// issuer from `jwks` (by issuer name) when it is there, so that every
    /// route naming the issuer shares one cache and one background refresh.
    pub fn from_config_with_jwks(
        auth: &crate::config::JwtAuth,
        issuers: &[crate::config::JwtIssuer],
        jwks: &std::collections::HashMap<String, Jwks>,
    ) -> Result<Self, ConfigError> {
        let mut layer: Option<JwtLayer> = None;
        let mut headers: Vec<(String, HeaderName)> = Vec::new();
        for name in &auth.issuers {
            let config = issuers
                .iter()
                .find(|i| &i.name == name)
                .ok_or_else(|| ConfigError::new(format!("jwt issuer {name:?} is not defined")))?;
            let in_issuer = |e: ConfigError| ConfigError::new(format!("jwt issuer {name:?}: {e}"));
            let mut issuer = Issuer::new()
                .issuer(config.issuer.clone())
                .leeway(config.leeway);
            for aud in &config.audiences {
                issuer = issuer.audience(aud.clone());
            }
            if let crate::config::JwtKeys::Static(keys) = &config.keys {
                for key in keys {
                    issuer = issuer.key(JwtKey::from_config(key).map_err(in_issuer)?);
                }
            } else if let Some(shared) = jwks.get(name) {
                issuer = issuer.jwks(shared.clone());
            } else if let Some(own) = Jwks::from_config(config).map_err(in_issuer)? {
                issuer = issuer.jwks(own);
            }
            for mapping in &config.claims_to_headers {
                if !headers.contains(mapping) {
                    headers.push(mapping.clone());
                }
            }
            layer = Some(match layer {
                None => JwtLayer::new(issuer),
                Some(layer) => layer.issuer(issuer),
            });
        }
        let layer = layer.ok_or_else(|| ConfigError::new("jwt: at least one issuer is needed"))?;
        let source = match &auth.token_from {
            crate::config::TokenSource::Authorization => TokenSource::Authorization,
            crate::config::TokenSource::Cookie(name) => TokenSource::Cookie(name.clone()),
            crate::config::TokenSource::Query(name) => TokenSource::Query(name.clone()),
        };
        Ok(layer
            .require_scopes(auth.required_scopes.iter().cloned())
            .require_roles(auth.required_roles.iter().cloned())
            .token_from(source)
            .configured(|c| c.claim_headers = headers))
    }
}

impl JwtLayer {
    /// Whether the request carries a token where this layer looks (an
    /// oversized one counts).
    pub(crate) fn presents_token<B>(&self, request: &Request<B>) -> bool {
        !matches!(self.config.token(request), Ok(None))
    }

    /// Removes the identity headers this layer sets upstream.
    pub(crate) fn strip_identity_headers(&self, headers: &mut http::HeaderMap) {
        for (_, name) in &self.config.claim_headers {
            headers.remove(name);
        }
    }

    /// The bare `WWW-Authenticate` challenge of this scheme.
    pub(crate) fn challenge(&self) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer realm=\"{}\"", self.config.realm))
            // The realm is filtered to visible ASCII and spaces.
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }
}

impl<S> Layer<S> for JwtLayer {
    type Service = Jwt<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Jwt::new(inner, Arc::clone(&self.config))
    }
}

impl Config {
    /// The token of a request: `Ok(None)` when there is none.
    pub(crate) fn token<'r, B>(
        &self,
        request: &'r Request<B>,
    ) -> Result<Option<Cow<'r, str>>, Refusal> {
        let token: Option<Cow<'r, [u8]>> = match &self.source {
            TokenSource::Authorization => request.headers().get(AUTHORIZATION).and_then(|value| {
                let value = value.as_bytes();
                (value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer "))
                    .then(|| Cow::Borrowed(value[7..].trim_ascii()))
            }),
            TokenSource::Cookie(name) => request
                .headers()
                .get_all(COOKIE)
                .iter()
                .flat_map(|value| value.as_bytes().split(|b| *b == b';'))
                .find_map(|pair| {
                    let pair = pair.trim_ascii();
                    let at = pair.iter().position(|b| *b == b'=')?;
                    (&pair[..at] == name.as_bytes()).then(|| Cow::Borrowed(&pair[at + 1..]))
                }),
            TokenSource::Query(name) => request.uri().query().and_then(|q| query::find(q, name)),
        };
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        if token.len() > self.max_token_bytes {
            return Err(Refusal::Invalid("the token is too large"));
        }
        match token {
            Cow::Borrowed(bytes) => std::str::from_utf8(bytes).map(|s| Some(Cow::Borrowed(s))),
            Cow::Owned(bytes) => String::from_utf8(bytes)
                .map(|s| Some(Cow::Owned(s)))
                .map_err(|e| e.utf8_error()),
        }
        .map_err(|_| Refusal::Invalid("the token is malformed"))
    }

    /// Verifies a token against the issuers' keys; with `may_wait`, reports
    /// a missing key of a JWKS issuer instead of refusing.
    pub(crate) fn verify(&self, token: &str, may_wait: bool) -> Verdict {
        let Some(parts) = verify::Parts::split(token) else {
            return Verdict::Refused(Refusal::Invalid(verify::MALFORMED));
        };
        let header = match verify::header(&parts) {
            Ok(header) => header,
            Err(description) => return Verdict::Refused(Refusal::Invalid(description)),
        };
        let (alg, kid) = (header.alg, header.kid.as_deref());
        let now = jsonwebtoken::get_current_timestamp();
        let mut first_error: Option<&'static str> = None;
        let mut jwks_miss = false;
        for verifier in self.verifiers.iter() {
            let mut candidate = key::select(&verifier.issuer.keys, kid, alg);
            let snapshot;
            if candidate.is_err()
                && let Some(jwks) = &verifier.issuer.jwks
            {
                snapshot = jwks.snapshot();
                match key::select(&snapshot, kid, alg) {
                    // A static key already named this kid for another alg:
                    // keep that answer, and do not fetch for it.
                    Err(false) if matches!(candidate, Err(true)) => {}
                    Err(false) => {
                        jwks_miss = true;
                        candidate = Err(false);
                    }
                    found => candidate = found,
                }
            }
            match candidate {
                Ok(key) => match verify::verify(&parts, alg, key, &verifier.rules, now) {
                    Ok(claims) => return self.authorize(Claims::new(claims)),
                    Err(description) => {
                        first_error.get_or_insert(description);
                    }
                },
                Err(true) => {
                    first_error.get_or_insert(verify::WRONG_ALGORITHM);
                }
                Err(false) => {}
            }
        }
        if let Some(description) = first_error {
            return Verdict::Refused(Refusal::Invalid(description));
        }
        if jwks_miss && may_wait {
            return Verdict::KeyMissing;
        }
        Verdict::Refused(Refusal::Invalid("no key is known for the token's kid"))
    }

    fn authorize(&self, claims: Claims) -> Verdict {
        if !self.required_scopes.iter().all(|s| claims.has_scope(s)) {
            return Verdict::Refused(Refusal::InsufficientScope(
                "the token lacks a required scope",
            ));
        }
        if !self.required_roles.iter().all(|r| claims.has_role(r)) {
            return Verdict::Refused(Refusal::InsufficientScope(
                "the token lacks a required role",
            ));
        }
        Verdict::Valid(claims)
    }

    /// Refreshes the JWKS of every issuer that has one (each at most once
    /// per its minimum interval).
    pub(crate) async fn refresh_jwks(&self) {
        for verifier in self.verifiers.iter() {
            if let Some(jwks) = &verifier.issuer.jwks {
                jwks.refresh_on_miss().await;
            }
        }
    }

    /// Sets the request up for the inner service.
    pub(crate) fn forward<B>(&self, request: &mut Request<B>, claims: Claims) {
        let headers = request.headers_mut();
        for (_, name) in &self.claim_headers {
            headers.remove(name);
        }
        for (claim, name) in &self.claim_headers {
            if let Some(value) = claims.header_value(claim) {
                headers.append(name.clone(), value);
            }
        }
        if self.strip_token {
            match &self.source {
                TokenSource::Authorization => {
                    headers.remove(AUTHORIZATION);
                }
                TokenSource::Query(name) => {
                    if let Some(uri) = query::without(request.uri(), name) {
                        *request.uri_mut() = uri;
                    }
                }
                TokenSource::Cookie(_) => {}
            }
        }
        if let Some(subject) = claims.subject() {
            let subject = crate::identity::Subject(std::sync::Arc::from(subject));
            request.extensions_mut().insert(subject);
        }
        request.extensions_mut().insert(claims);
    }

    /// The refusal response: 401 or 403 with RFC 6750 `WWW-Authenticate`.
    pub(crate) fn refuse<B>(&self, refusal: Refusal) -> Response<ResponseBody<B>> {
        let (kind, challenge, detail) = match refusal {
            Refusal::Missing => (
                RejectionKind::Unauthenticated,
                format!("Bearer realm=\"{}\"", self.realm),
                "a bearer token is required",
            ),
            Refusal::Invalid(description) => (
                RejectionKind::Unauthenticated,
                format!(
                    "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{description}\"",
                    self.realm
                ),
                description,
            ),
            Refusal::InsufficientScope(description) => {
                let needed: Vec<&str> = self
                    .required_scopes
                    .iter()
                    .chain(&self.required_roles)
                    .map(String::as_str)
                    .filter(|s| {
                        s.bytes()
                            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
                    })
                    .collect();
                (
                    RejectionKind::Forbidden,
                    format!(
                        "Bearer realm=\"{}\", error=\"insufficient_scope\", error_description=\"{description}\", scope=\"{}\"",
                        self.realm,
                        needed.join(" ")
                    ),
                    description,
                )
            }
        };
        let mut response = Rejection::new(kind)
            .with_detail(detail)
            .into_layer_response();
        // The realm and scopes were filtered to visible ASCII and the
        // descriptions are constants, so the value is always valid.
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(WWW_AUTHENTICATE, value);
        }
        response
    }
}
