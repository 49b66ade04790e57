//! Who and what a request is for, as small request extensions: the
//! authenticated [`ConsumerIdentity`] and [`Subject`], and the matched
//! [`RouteName`].
//!
//! The layers that establish them insert them, next to their richer types:
//! API-key authentication inserts the [`ConsumerIdentity`] of its
//! [`auth::Consumer`](crate::auth::Consumer), JWT authentication the
//! [`Subject`] of its [`Claims`](crate::auth::jwt::Claims), the router the
//! [`RouteName`] of its [`MatchedRoute`](crate::routing::MatchedRoute). Layers
//! that only need to tell requests apart read these (the rate limiter keys
//! and picks quotas by them) and so need neither feature, nor a copy step in
//! between. An application can insert them itself from an outer layer of
//! its own; only server-side code can, as a client cannot write extensions.
//!
//! They are always compiled, and cheap to clone (shared strings).
//!
//! ```
//! use meshgate::identity::{ConsumerIdentity, RouteName, Subject};
//!
//! let mut request = http::Request::new(());
//! request.extensions_mut().insert(ConsumerIdentity::new("acme").with_tier("pro"));
//! request.extensions_mut().insert(Subject("user-42".into()));
//! request.extensions_mut().insert(RouteName("orders".into()));
//! let consumer = request.extensions().get::<ConsumerIdentity>().unwrap();
//! assert_eq!(consumer.tier.as_deref(), Some("pro"));
//! ```

use std::sync::Arc;

/// The authenticated API consumer: its name (unique per gateway) and
/// rate-limit tier, as a request extension.
///
/// The rate limiter keys on [`name`](Self::name) with
/// [`KeyBy::Consumer`](crate::rate_limit::KeyBy::Consumer), picks the quota
/// set of [`tier`](Self::tier), and skips consumers on its exempt list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConsumerIdentity {
    /// The consumer's name (unique per gateway).
    pub name: Arc<str>,
    /// Its rate-limit tier (`free`, `pro`, …), if it has one.
    pub tier: Option<Arc<str>>,
}

impl ConsumerIdentity {
    /// A consumer without a tier.
    #[must_use]
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            tier: None,
        }
    }

    /// Sets the tier.
    #[must_use]
    pub fn with_tier(mut self, tier: impl Into<Arc<str>>) -> Self {
        self.tier = Some(tier.into());
        self
    }
}

/// The authenticated subject of the request (the `sub` of its validated
/// JWT), as a request extension. Read by
/// [`KeyBy::JwtSubject`](crate::rate_limit::KeyBy::JwtSubject).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject(pub Arc<str>);

/// The name of the route that matched the request, as a request extension.
/// Read by [`KeyBy::Route`](crate::rate_limit::KeyBy::Route) and by per-route
/// rate limits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteName(pub Arc<str>);
