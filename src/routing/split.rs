//! Traffic splits: weighted backends, header/cookie overrides, sticky
//! assignment.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use http::HeaderMap;
use http::header::{COOKIE, HeaderName};

use super::RouteService;
use super::error::RouteErrorKind;
use super::matcher::{HeaderMatch, ValueSpec};

/// One backend of a [`Split`]: a name, a weight and its own service stack.
pub struct Backend<B> {
    name: String,
    weight: u32,
    service: RouteService<B>,
}

impl<B> fmt::Debug for Backend<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.name)
            .field("weight", &self.weight)
            .finish_non_exhaustive()
    }
}

impl<B: 'static> Backend<B> {
    /// A backend named `name` served by `service` (see
    /// [`Route::to`](super::Route::to) for what a service may be).
    pub fn new<S, ResBody>(name: impl Into<String>, service: S) -> Self
    where
        S: tower_service::Service<
                http::Request<B>,
                Response = http::Response<ResBody>,
                Error = std::convert::Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        ResBody::Error: Into<crate::BoxError>,
    {
        Self {
            name: name.into(),
            weight: 1,
            service: super::boxed(service),
        }
    }

    /// The share of traffic: this weight over the sum of the split's weights.
    /// Zero takes no weighted traffic (overrides still reach it).
    ///
    /// Default: 1.
    #[must_use]
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
}

#[derive(Debug, Clone)]
enum OverrideSpec {
    Header(String, ValueSpec),
    Cookie(String, String),
}

#[derive(Debug, Clone)]
enum StickySpec {
    Header(String),
    Cookie(String),
}

/// Weighted backends for one route, with overrides and optional sticky
/// assignment.
///
/// A request goes to, in this order:
/// 1. the backend of the first override that matches it (a header value,
///    exact or regex, or a cookie value), whatever the weights;
/// 2. with sticky assignment and the sticky header or cookie present: the
///    backend its value hashes to, in proportion to the weights, so the same
///    value always lands on the same backend while the weights stay the same;
/// 3. else a backend drawn at random in proportion to the weights.
///
/// The random draw is a lock-free SplitMix64 sequence shared by all clones
/// of the router; [`seed`](Self::seed) fixes it for tests. Weights can be
/// changed at run time with [`Router::set_weights`](super::Router::set_weights)
/// (a blue-green flip), without rebuilding the router.
pub struct Split<B> {
    backends: Vec<Backend<B>>,
    overrides: Vec<(OverrideSpec, String)>,
    sticky: Option<StickySpec>,
    seed: Option<u64>,
}

impl<B> fmt::Debug for Split<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Split")
            .field("backends", &self.backends)
            .field("overrides", &self.overrides)
            .field("sticky", &self.sticky)
            .field("seed", &self.seed)
            .finish()
    }
}

impl<B> Default for Split<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> Split<B> {
    /// A split with no backends yet.
    #[must_use]
    pub fn new() -> Self {
        Self {
            backends: Vec::new(),
            overrides: Vec::new(),
            sticky: None,
            seed: None,
        }
    }

    /// Adds a backend.
    #[must_use]
    pub fn backend(mut self, backend: Backend<B>) -> Self {
        self.backends.push(backend);
        self
    }

    /// Sends requests whose header `name` equals `value` to `backend`
    /// (`x-canary: true` → canary).
    #[must_use]
    pub fn override_header(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
        backend: impl Into<String>,
    ) -> Self {
        self.overrides.push((
            OverrideSpec::Header(name.into(), ValueSpec::Exact(value.into())),
            backend.into(),
        ));
        self
    }

    /// Sends requests whose header `name` matches `regex` (the whole value)
    /// to `backend`.
    #[must_use]
    pub fn override_header_regex(
        mut self,
        name: impl Into<String>,
        regex: impl Into<String>,
        backend: impl Into<String>,
    ) -> Self {
        self.overrides.push((
            OverrideSpec::Header(name.into(), ValueSpec::Regex(regex.into())),
            backend.into(),
        ));
        self
    }

    /// Sends requests with cookie `name` equal to `value` to `backend`.
    #[must_use]
    pub fn override_cookie(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
        backend: impl Into<String>,
    ) -> Self {
        self.overrides.push((
            OverrideSpec::Cookie(name.into(), value.into()),
            backend.into(),
        ));
        self
    }

    /// Assigns requests by hashing the value of header `name` (a user or
    /// session id). Requests without it are drawn at random.
    ///
    /// Default: no sticky assignment.
    #[must_use]
    pub fn sticky_header(mut self, name: impl Into<String>) -> Self {
        self.sticky = Some(StickySpec::Header(name.into()));
        self
    }

    /// Assigns requests by hashing the value of cookie `name`. Requests
    /// without it are drawn at random.
    ///
    /// Default: no sticky assignment.
    #[must_use]
    pub fn sticky_cookie(mut self, name: impl Into<String>) -> Self {
        self.sticky = Some(StickySpec::Cookie(name.into()));
        self
    }

    /// Seeds the random draw, so a test sees the same sequence every run.
    ///
    /// Default: a random seed.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    pub(crate) fn compile(self) -> Result<CompiledSplit<B>, RouteErrorKind> {
        if self.backends.is_empty() {
            return Err(RouteErrorKind::EmptySplit);
        }
        let mut names: Vec<Arc<str>> = Vec::with_capacity(self.backends.len());
        for backend in &self.backends {
            if names.iter().any(|n| **n == *backend.name) {
                return Err(RouteErrorKind::DuplicateBackend {
                    backend: backend.name.clone(),
                });
            }
            names.push(backend.name.as_str().into());
        }
        let index_of = |name: &str| {
            names
                .iter()
                .position(|n| **n == *name)
                .ok_or_else(|| RouteErrorKind::UnknownBackend {
                    backend: name.to_owned(),
                })
        };
        let mut overrides = Vec::with_capacity(self.overrides.len());
        for (spec, backend) in &self.overrides {
            let index = index_of(backend)?;
            let matcher = match spec {
                OverrideSpec::Header(name, value) => {
                    Override::Header(HeaderMatch::compile(name, value)?)
                }
                OverrideSpec::Cookie(name, value) => {
                    Override::Cookie(name.as_str().into(), value.as_str().into())
                }
            };
            overrides.push((matcher, index));
        }
        let sticky = match self.sticky {
            None => None,
            Some(StickySpec::Header(name)) => Some(Sticky::Header(
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| RouteErrorKind::InvalidHeader { header: name })?,
            )),
            Some(StickySpec::Cookie(name)) => Some(Sticky::Cookie(name.into())),
        };
        let weights = Weights::new(self.backends.iter().map(|b| b.weight).collect())?;
        Ok(CompiledSplit {
            backends: names
                .into_iter()
                .zip(self.backends.into_iter().map(|b| b.service))
                .collect(),
            weights: ArcSwap::from_pointee(weights),
            overrides: overrides.into(),
            sticky,
            rng: AtomicU64::new(self.seed.unwrap_or_else(|| fastrand::u64(..))),
        })
    }
}

#[derive(Debug)]
enum Override {
    Header(HeaderMatch),
    Cookie(Box<str>, Box<str>),
}

#[derive(Debug)]
enum Sticky {
    Header(HeaderName),
    Cookie(Box<str>),
}

#[derive(Debug)]
struct Weights {
    weights: Box<[u32]>,
    total: u64,
}

impl Weights {
    fn new(weights: Box<[u32]>) -> Result<Self, RouteErrorKind> {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        if total == 0 {
            return Err(RouteErrorKind::ZeroWeights);
        }
        Ok(Self { weights, total })
    }

    /// The backend at `point` in `[0, total)`.
    fn pick(&self, point: u64) -> usize {
        let mut acc = 0u64;
        for (i, &w) in self.weights.iter().enumerate() {
            acc += u64::from(w);
            if point < acc {
                return i;
            }
        }
        // `point < total` keeps us from here; the last backend is a safe answer.
        self.weights.len().saturating_sub(1)
    }

    /// Maps a 64-bit hash onto `[0, total)` without modulo bias worth noting.
    fn point(&self, hash: u64) -> u64 {
        ((u128::from(hash) * u128::from(self.total)) >> 64) as u64
    }
}

/// A split ready to serve: backends, weights that can be swapped, overrides.
pub(crate) struct CompiledSplit<B> {
    backends: Box<[(Arc<str>, RouteService<B>)]>,
    weights: ArcSwap<Weights>,
    overrides: Box<[(Override, usize)]>,
    sticky: Option<Sticky>,
    rng: AtomicU64,
}

impl<B> fmt::Debug for CompiledSplit<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledSplit")
            .field(
                "backends",
                &self.backends.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("weights", &self.weights.load().weights)
            .field("overrides", &self.overrides)
            .field("sticky", &self.sticky)
            .finish_non_exhaustive()
    }
}

impl<B> CompiledSplit<B> {
    /// The backend for a request with these headers.
    pub(crate) fn choose(&self, headers: &HeaderMap) -> (usize, &Arc<str>, &RouteService<B>) {
        // `compile` refuses an empty split and indices come from the weights
        // or overrides of these backends; the clamp is belt and braces.
        let index = self
            .choose_index(headers)
            .min(self.backends.len().saturating_sub(1));
        let (name, service) = &self.backends[index];
        (index, name, service)
    }

    fn choose_index(&self, headers: &HeaderMap) -> usize {
        for (matcher, index) in &*self.overrides {
            let hit = match matcher {
                Override::Header(m) => m.matches(headers),
                Override::Cookie(name, value) => {
                    cookie(headers, name).is_some_and(|v| v == value.as_bytes())
                }
            };
            if hit {
                return *index;
            }
        }
        let weights = self.weights.load();
        let sticky_value = match &self.sticky {
            Some(Sticky::Header(name)) => headers.get(name).map(|v| v.as_bytes()),
            Some(Sticky::Cookie(name)) => cookie(headers, name),
            None => None,
        };
        let hash = match sticky_value {
            Some(value) => stable_hash(value),
            None => splitmix64(self.rng.fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)),
        };
        weights.pick(weights.point(hash))
    }

    /// Sets the weights of the named backends; the others keep theirs.
    pub(crate) fn set_weights(&self, updates: &[(&str, u32)]) -> Result<(), RouteErrorKind> {
        let mut weights: Vec<u32> = self.weights.load().weights.to_vec();
        for (name, weight) in updates {
            let index = self
                .backends
                .iter()
                .position(|(n, _)| **n == **name)
                .ok_or_else(|| RouteErrorKind::UnknownBackend {
                    backend: (*name).to_owned(),
                })?;
            weights[index] = *weight;
        }
        self.weights.store(Arc::new(Weights::new(weights.into())?));
        Ok(())
    }
}

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a then a SplitMix64 finaliser: stable across runs, processes and
/// Rust versions (unlike `DefaultHasher`), so a user keeps their backend
/// across restarts and replicas.
fn stable_hash(value: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in value {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    splitmix64(h)
}

/// The value of cookie `name` in the request's `Cookie` headers (HTTP/2
/// may send several).
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers.get_all(COOKIE).iter().find_map(|value| {
        value.as_bytes().split(|&b| b == b';').find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| {
                let v = pair[eq + 1..].trim_ascii();
                v.strip_prefix(b"\"")
                    .and_then(|v| v.strip_suffix(b"\""))
                    .unwrap_or(v)
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn cookies_are_found_in_any_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; session=\"xyz\""));
        headers.append(COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, "session"), Some(&b"xyz"[..]));
        assert_eq!(cookie(&headers, "b"), Some(&b"2"[..]));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn weights_pick_in_proportion() {
        let w = Weights::new(vec![90, 10, 0].into()).unwrap();
        assert_eq!(w.pick(0), 0);
        assert_eq!(w.pick(89), 0);
        assert_eq!(w.pick(90), 1);
        assert_eq!(w.pick(99), 1);
        assert_eq!(w.point(u64::MAX), 99);
        assert!(Weights::new(vec![0, 0].into()).is_err());
        assert_eq!(stable_hash(b"user-1"), stable_hash(b"user-1"));
    }
}
