//! Access policies over the authenticated principal and the request, like
//! Istio's `AuthorizationPolicy`.
//!
//! An [`AuthzRule`] matches a request when every condition it sets holds;
//! a condition with several values holds when any of them matches. The
//! principal comes from the request's extensions, put there by the
//! authentication layers that run before this one: the
//! [`Consumer`] ([`api_key`](super::api_key)), the JWT
//! [`Claims`] ([`jwt`](super::jwt)) and a [`PeerIdentity`] (the sidecar's
//! mTLS). A condition on a principal that is absent does not hold.
//!
//! Decision, as Istio's: a matching **DENY** rule refuses the request;
//! else, when there is any **ALLOW** rule, a request that matches none is
//! refused; else it passes. Refusals are `403` problem+json that do not
//! say which rule matched.
//!
//! ```
//! use http::Method;
//! use meshgate::auth::authz::{AuthzLayer, AuthzRule};
//!
//! let layer = AuthzLayer::new([
//!     // Nobody deletes orders.
//!     AuthzRule::deny().methods([Method::DELETE]).paths(["/orders/*"]),
//!     // Admins may do anything else, the mobile app may read.
//!     AuthzRule::allow().roles(["admin"]),
//!     AuthzRule::allow().consumers(["mobile-app"]).methods([Method::GET]),
//! ]);
//! # let _ = layer;
//! ```

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, Method, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::consumer::Consumer;
use super::jwt::Claims;
use crate::ResponseBody;
use crate::error::{Rejection, RejectionKind};
use crate::future::ResponseFuture;

/// The identity of the peer of a mutually authenticated connection (a
/// SPIFFE id such as `spiffe://cluster.local/ns/shop/sa/checkout`), as a
/// request extension. The sidecar's mTLS inserts it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity(pub String);

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthzAction {
    /// Let the request through.
    Allow,
    /// Refuse with `403`.
    Deny,
}

/// A string pattern: `*` (anything present), `prefix*`, `*suffix`, or exact.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Any,
    Prefix(String),
    Suffix(String),
    Exact(String),
}

impl Pattern {
    fn new(text: &str) -> Self {
        if text == "*" {
            Pattern::Any
        } else if let Some(prefix) = text.strip_suffix('*') {
            Pattern::Prefix(prefix.to_owned())
        } else if let Some(suffix) = text.strip_prefix('*') {
            Pattern::Suffix(suffix.to_owned())
        } else {
            Pattern::Exact(text.to_owned())
        }
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Prefix(p) => value.starts_with(p.as_str()),
            Pattern::Suffix(s) => value.ends_with(s.as_str()),
            Pattern::Exact(e) => value == e,
        }
    }
}

/// One rule: an action and conditions. Every condition set must hold; a
/// condition with several values holds when any matches. A rule with no
/// condition matches every request.
#[derive(Debug, Clone)]
#[must_use]
pub struct AuthzRule {
    action: AuthzAction,
    consumers: Vec<String>,
    groups: Vec<String>,
    subjects: Vec<Pattern>,
    roles: Vec<String>,
    scopes: Vec<String>,
    peers: Vec<Pattern>,
    methods: Vec<Method>,
    paths: Vec<Pattern>,
    headers: Vec<(HeaderName, Vec<Pattern>)>,
    claims: Vec<(String, Vec<Pattern>)>,
}

fn strings<I, S>(values: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    values.into_iter().map(Into::into).collect()
}

fn patterns<I, S>(values: I) -> Vec<Pattern>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    values
        .into_iter()
        .map(|v| Pattern::new(v.as_ref()))
        .collect()
}

impl AuthzRule {
    fn new(action: AuthzAction) -> Self {
        AuthzRule {
            action,
            consumers: Vec::new(),
            groups: Vec::new(),
            subjects: Vec::new(),
            roles: Vec::new(),
            scopes: Vec::new(),
            peers: Vec::new(),
            methods: Vec::new(),
            paths: Vec::new(),
            headers: Vec::new(),
            claims: Vec::new(),
        }
    }

    /// An ALLOW rule.
    pub fn allow() -> Self {
        Self::new(AuthzAction::Allow)
    }

    /// A DENY rule.
    pub fn deny() -> Self {
        Self::new(AuthzAction::Deny)
    }

    /// The [`Consumer`]'s name or id is one of these.
    pub fn consumers<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.consumers.extend(strings(names));
        self
    }

    /// The [`Consumer`] is in one of these groups.
    pub fn groups<I: IntoIterator<Item = S>, S: Into<String>>(mut self, groups: I) -> Self {
        self.groups.extend(strings(groups));
        self
    }

    /// The JWT `sub` matches one of these patterns.
    pub fn subjects<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, subjects: I) -> Self {
        self.subjects.extend(patterns(subjects));
        self
    }

    /// The JWT carries one of these roles.
    pub fn roles<I: IntoIterator<Item = S>, S: Into<String>>(mut self, roles: I) -> Self {
        self.roles.extend(strings(roles));
        self
    }

    /// The JWT carries one of these scopes.
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes.extend(strings(scopes));
        self
    }

    /// The [`PeerIdentity`] matches one of these patterns.
    pub fn peers<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, peers: I) -> Self {
        self.peers.extend(patterns(peers));
        self
    }

    /// The method is one of these.
    pub fn methods<I: IntoIterator<Item = Method>>(mut self, methods: I) -> Self {
        self.methods.extend(methods);
        self
    }

    /// The path matches one of these: exact, `/prefix/*` (any path that
    /// starts with `/prefix/`), `*.json` (suffix), or `*`.
    pub fn paths<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, paths: I) -> Self {
        self.paths.extend(patterns(paths));
        self
    }

    /// The header is present with a value matching one of these patterns
    /// (`*`: any value). Several `header` conditions must all hold.
    pub fn header<I: IntoIterator<Item = S>, S: AsRef<str>>(
        mut self,
        name: HeaderName,
        values: I,
    ) -> Self {
        self.headers.push((name, patterns(values)));
        self
    }

    /// The JWT claim (a string, or an array holding a string) matches one
    /// of these patterns. Several `claim` conditions must all hold.
    pub fn claim<I: IntoIterator<Item = S>, S: AsRef<str>>(
        mut self,
        name: impl Into<String>,
        values: I,
    ) -> Self {
        self.claims.push((name.into(), patterns(values)));
        self
    }

    /// What the rule does when it matches.
    pub fn action(&self) -> AuthzAction {
        self.action
    }

    /// Whether every condition holds for the request.
    fn matches<B>(&self, request: &Request<B>) -> bool {
        let ext = request.extensions();
        let consumer = ext.get::<Consumer>();
        let claims = ext.get::<Claims>();
        let peer = ext.get::<PeerIdentity>();
        (self.consumers.is_empty()
            || consumer
                .is_some_and(|c| self.consumers.iter().any(|n| n == c.name() || n == c.id())))
            && (self.groups.is_empty()
                || consumer.is_some_and(|c| c.groups().iter().any(|g| self.groups.contains(g))))
            && (self.subjects.is_empty()
                || claims
                    .and_then(Claims::subject)
                    .is_some_and(|s| self.subjects.iter().any(|p| p.matches(s))))
            && (self.roles.is_empty()
                || claims.is_some_and(|c| self.roles.iter().any(|r| c.has_role(r))))
            && (self.scopes.is_empty()
                || claims.is_some_and(|c| self.scopes.iter().any(|s| c.has_scope(s))))
            && (self.peers.is_empty()
                || peer.is_some_and(|p| self.peers.iter().any(|pat| pat.matches(&p.0))))
            && (self.methods.is_empty() || self.methods.contains(request.method()))
            && (self.paths.is_empty() || self.paths.iter().any(|p| p.matches(request.uri().path())))
            && self.headers.iter().all(|(name, values)| {
                request.headers().get_all(name).iter().any(|v| {
                    v.to_str()
                        .is_ok_and(|v| values.iter().any(|p| p.matches(v)))
                })
            })
            && self.claims.iter().all(|(name, values)| {
                claims.and_then(|c| c.get(name)).is_some_and(|claim| {
                    let one = |s: &str| values.iter().any(|p| p.matches(s));
                    match claim {
                        serde_json::Value::String(s) => one(s),
                        serde_json::Value::Array(items) => {
                            items.iter().filter_map(|i| i.as_str()).any(one)
                        }
                        _ => false,
                    }
                })
            })
    }
}

#[cfg(feature = "config")]
impl AuthzRule {
    /// The rule of a route's `policies` entry.
    pub fn from_config(rule: &crate::config::AuthzRule) -> Self {
        let mut out = match rule.action {
            crate::config::AuthzAction::Allow => AuthzRule::allow(),
            crate::config::AuthzAction::Deny => AuthzRule::deny(),
        };
        out = out
            .consumers(rule.consumers.iter().cloned())
            .groups(rule.groups.iter().cloned())
            .subjects(&rule.subjects)
            .roles(rule.roles.iter().cloned())
            .scopes(rule.scopes.iter().cloned())
            .peers(&rule.peers)
            .methods(rule.methods.iter().cloned())
            .paths(&rule.paths);
        for (name, values) in &rule.headers {
            // Validation refused names that are not header names.
            if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                out = out.header(name, values);
            }
        }
        for (name, values) in &rule.claims {
            out = out.claim(name.clone(), values);
        }
        out
    }
}

#[derive(Debug)]
struct Policy {
    deny: Vec<AuthzRule>,
    allow: Vec<AuthzRule>,
}

impl Policy {
    fn permits<B>(&self, request: &Request<B>) -> bool {
        if self.deny.iter().any(|r| r.matches(request)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|r| r.matches(request))
    }
}

/// Refuses requests the rules do not permit, with `403`. See the
/// [module docs](self). The rules are behind an `Arc` shared by every
/// service the layer builds.
#[derive(Debug, Clone)]
#[must_use]
pub struct AuthzLayer {
    policy: Arc<Policy>,
}

impl AuthzLayer {
    /// A layer with these rules (order does not matter: DENY wins).
    pub fn new(rules: impl IntoIterator<Item = AuthzRule>) -> Self {
        let (deny, allow) = rules
            .into_iter()
            .partition(|r| r.action == AuthzAction::Deny);
        AuthzLayer {
            policy: Arc::new(Policy { deny, allow }),
        }
    }

    /// The layer of a route's `policies`.
    #[cfg(feature = "config")]
    pub fn from_config(rules: &[crate::config::AuthzRule]) -> Self {
        Self::new(rules.iter().map(AuthzRule::from_config))
    }

    /// Whether the rules permit this request (for tests and admin tools).
    pub fn permits<B>(&self, request: &Request<B>) -> bool {
        self.policy.permits(request)
    }
}

impl<S> Layer<S> for AuthzLayer {
    type Service = Authz<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authz {
            inner,
            policy: Arc::clone(&self.policy),
        }
    }
}

/// The service of [`AuthzLayer`].
#[derive(Clone)]
pub struct Authz<S> {
    inner: S,
    policy: Arc<Policy>,
}

impl<S> fmt::Debug for Authz<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authz")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Authz<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if self.policy.permits(&request) {
            ResponseFuture::inner(self.inner.call(request))
        } else {
            ResponseFuture::refused(
                Rejection::new(RejectionKind::Forbidden)
                    .with_detail("access denied by policy")
                    .into_layer_response(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(Pattern::new("*").matches("anything"));
        assert!(Pattern::new("/orders/*").matches("/orders/7"));
        assert!(!Pattern::new("/orders/*").matches("/orders"));
        assert!(Pattern::new("*.json").matches("/a/b.json"));
        assert!(Pattern::new("/x").matches("/x"));
        assert!(!Pattern::new("/x").matches("/x/"));
    }
}
