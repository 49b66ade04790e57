//! The compiled route table: one bucket per host rule, each with an exact
//! path map, a `matchit` router of patterns and a prefix map, whose entries
//! hold every route that could serve a path, best first.
//!
//! A request finds its bucket with at most one hash lookup per host label,
//! then its candidates with one hash lookup (exact path) or one `matchit`
//! lookup and one hash lookup per path segment that some prefix continues
//! with (prefixes), and takes
//! the first candidate whose other matchers pass. Nothing is allocated.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use http::{HeaderMap, Method};

use super::error::{RouteError, RouteErrorKind};
use super::host::{HostRule, wildcard_matches};
use super::matcher::{HeaderMatch, QueryMatch};
use super::path::{PathRule, may_overlap, prefix_matches};

/// A fast, non-keyed hash for maps whose keys come from the configuration
/// only (hosts, paths): requests look keys up but never insert, so there is
/// no hash-flooding to defend against.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        // murmur3's fmix64, so the top bits hashbrown uses are well mixed.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

type FastMap<V> = HashMap<Box<str>, V, BuildHasherDefault<FastHasher>>;

/// One route's matching rules, validated.
#[derive(Debug)]
pub(crate) struct RouteRule {
    pub(crate) name: Arc<str>,
    pub(crate) priority: i32,
    pub(crate) hosts: Vec<HostRule>,
    pub(crate) path: PathRule,
    pub(crate) methods: Option<Box<[Method]>>,
    pub(crate) headers: Box<[HeaderMatch]>,
    pub(crate) query: Box<[QueryMatch]>,
}

impl RouteRule {
    fn matcher_count(&self) -> usize {
        usize::from(self.methods.is_some()) + self.headers.len() + self.query.len()
    }

    fn others_match(&self, req: &RequestView<'_>) -> bool {
        self.headers.iter().all(|h| h.matches(req.headers))
            && self.query.iter().all(|q| q.matches(req.query))
    }

    fn method_matches(&self, method: &Method) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|methods| methods.contains(method))
    }

    pub(crate) fn param_names(&self) -> Option<&Arc<[Arc<str>]>> {
        match &self.path {
            PathRule::Pattern(p) => Some(&p.names),
            _ => None,
        }
    }
}

/// What the table reads from a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestView<'a> {
    pub(crate) host: Option<&'a str>,
    pub(crate) path: &'a str,
    pub(crate) method: &'a Method,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) query: Option<&'a str>,
}

/// A candidate route for a path, ranked within its bucket.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    route: u32,
    rank: u32,
    /// The route's own pattern must be checked against the path (and gives
    /// the parameters): it was listed because it may overlap another.
    verify: bool,
}

/// The routes one host can reach.
#[derive(Debug, Default)]
struct Bucket {
    exact: FastMap<Box<[Candidate]>>,
    patterns: Option<matchit::Router<u32>>,
    pattern_lists: Vec<Box<[Candidate]>>,
    /// Every configured prefix and every ancestor of one, so a walk down
    /// the path stops at the first segment no prefix continues with.
    prefixes: FastMap<PrefixEntry>,
    /// The list of the root prefix `/`, which covers every path.
    root: Box<[Candidate]>,
}

/// A node of the prefix walk.
#[derive(Debug, Default)]
struct PrefixEntry {
    /// The candidates when this is a configured prefix (its own routes and
    /// those of every shorter prefix covering it).
    list: Option<Box<[Candidate]>>,
    /// Whether a longer prefix continues from here.
    continues: bool,
}

/// The outcome of a lookup.
#[derive(Debug)]
pub(crate) enum Lookup<'t, 'p> {
    /// This route serves the request; `params` are the captured values in
    /// pattern order.
    Found {
        route: usize,
        params: Option<matchit::Params<'t, 'p>>,
    },
    /// Routes match the path but not the method; these methods would.
    MethodNotAllowed(Vec<Method>),
    /// No route.
    NotFound,
}

/// The compiled table.
#[derive(Debug)]
pub(crate) struct Table {
    rules: Box<[RouteRule]>,
    exact_hosts: FastMap<u32>,
    wildcard_hosts: FastMap<u32>,
    any_host: u32,
    buckets: Box<[Bucket]>,
}

/// Host specificity of a route within a bucket: exact, wildcard by suffix
/// length, any.
type HostRank = (u8, usize);

impl Table {
    pub(crate) fn rules(&self) -> &[RouteRule] {
        &self.rules
    }

    pub(crate) fn build(rules: Vec<RouteRule>) -> Result<Self, RouteError> {
        let mut exact_hosts = FastMap::default();
        let mut wildcard_hosts = FastMap::default();
        let mut keys: Vec<HostRule> = Vec::new();
        for rule in &rules {
            for host in &rule.hosts {
                let (map, key) = match host {
                    HostRule::Exact(h) => (&mut exact_hosts, h),
                    HostRule::Wildcard(s) => (&mut wildcard_hosts, s),
                };
                if !map.contains_key(key) {
                    let index = u32::try_from(keys.len() + 1).unwrap_or(u32::MAX);
                    map.insert(key.clone(), index);
                    keys.push(host.clone());
                }
            }
        }
        let mut buckets = Vec::with_capacity(keys.len() + 1);
        // Bucket 0 is for hosts no host rule names.
        buckets.push(Bucket::build(&rules, |rule| {
            rule.hosts.is_empty().then_some((0, 0))
        })?);
        for key in &keys {
            buckets.push(Bucket::build(&rules, |rule| member_of(rule, key))?);
        }
        Ok(Self {
            rules: rules.into(),
            exact_hosts,
            wildcard_hosts,
            any_host: 0,
            buckets: buckets.into(),
        })
    }

    fn bucket(&self, host: Option<&str>) -> &Bucket {
        let index = host
            .and_then(|host| {
                self.exact_hosts.get(host).copied().or_else(|| {
                    if self.wildcard_hosts.is_empty() {
                        return None;
                    }
                    // Longest suffix first: `a.b.example.com` tries
                    // `b.example.com`, then `example.com`, then `com`.
                    let mut rest = host;
                    while let Some(dot) = rest.find('.') {
                        rest = &rest[dot + 1..];
                        if let Some(&index) = self.wildcard_hosts.get(rest) {
                            return Some(index);
                        }
                    }
                    None
                })
            })
            .unwrap_or(self.any_host);
        // Indices come from `build`, which made every bucket they name.
        &self.buckets[index as usize]
    }

    /// The best route for the request.
    pub(crate) fn find<'t, 'p>(&'t self, req: &RequestView<'p>) -> Lookup<'t, 'p> {
        let bucket = self.bucket(req.host);
        let (first, second, params) = bucket.candidates(req.path);
        if let Some(found) = self.select(first, second, params.as_ref(), req, true, &mut |_| {}) {
            return found;
        }
        let mut allow: Vec<Method> = Vec::new();
        self.select(first, second, params.as_ref(), req, false, &mut |rule| {
            if let Some(methods) = &rule.methods {
                for m in methods.iter() {
                    if !allow.contains(m) {
                        allow.push(m.clone());
                    }
                }
            }
        });
        if allow.is_empty() {
            Lookup::NotFound
        } else {
            Lookup::MethodNotAllowed(allow)
        }
    }

    /// Walks the two rank-sorted lists in rank order. With `check_method`,
    /// returns the first candidate that passes every matcher; without,
    /// reports every candidate that passes all but the method to `seen`.
    fn select<'t, 'p>(
        &'t self,
        first: &[Candidate],
        second: &[Candidate],
        shared: Option<&matchit::Params<'t, 'p>>,
        req: &RequestView<'p>,
        check_method: bool,
        seen: &mut dyn FnMut(&RouteRule),
    ) -> Option<Lookup<'t, 'p>> {
        let (mut i, mut j) = (0, 0);
        loop {
            let candidate = match (first.get(i), second.get(j)) {
                (Some(a), Some(b)) if a.rank <= b.rank => {
                    i += 1;
                    a
                }
                (_, Some(b)) => {
                    j += 1;
                    b
                }
                (Some(a), None) => {
                    i += 1;
                    a
                }
                (None, None) => return None,
            };
            let route = candidate.route as usize;
            let Some(rule) = self.rules.get(route) else {
                continue;
            };
            if check_method && !rule.method_matches(req.method) {
                continue;
            }
            if !rule.others_match(req) {
                continue;
            }
            let params = if candidate.verify {
                let PathRule::Pattern(pattern) = &rule.path else {
                    continue;
                };
                match pattern.own.at(req.path) {
                    Ok(m) => Some(m.params),
                    Err(_) => continue,
                }
            } else if matches!(rule.path, PathRule::Pattern(_)) {
                shared.cloned()
            } else {
                None
            };
            if check_method {
                return Some(Lookup::Found { route, params });
            }
            seen(rule);
        }
    }
}

/// Whether `rule` belongs to the bucket of host rule `key`, and how specifically.
fn member_of(rule: &RouteRule, key: &HostRule) -> Option<HostRank> {
    if rule.hosts.is_empty() {
        return Some((0, 0));
    }
    let mut best: Option<HostRank> = None;
    for host in &rule.hosts {
        let rank = match (host, key) {
            (HostRule::Exact(h), HostRule::Exact(k)) if h == k => (2, h.len()),
            (HostRule::Wildcard(s), HostRule::Exact(k)) if wildcard_matches(s, k) => (1, s.len()),
            (HostRule::Wildcard(s), HostRule::Wildcard(k)) if s == k || wildcard_matches(s, k) => {
                (1, s.len())
            }
            _ => continue,
        };
        best = best.max(Some(rank));
    }
    best
}

/// The order of candidates, best first: explicit priority, then path class
/// (exact, pattern, prefix), then path specificity, then host specificity,
/// then the number of other matchers, then declaration order.
type OrderKey = (
    Reverse<i32>,
    Reverse<u8>,
    Reverse<u32>,
    u32,
    Reverse<HostRank>,
    Reverse<usize>,
    usize,
);

fn order_key(index: usize, rule: &RouteRule, host: HostRank) -> OrderKey {
    let (class, specificity, params) = match &rule.path {
        PathRule::Exact(_) => (2, 0, 0),
        PathRule::Pattern(p) => (
            1,
            p.static_len,
            u32::try_from(p.names.len()).unwrap_or(u32::MAX)
                + if p.catch_all { 1 << 16 } else { 0 },
        ),
        PathRule::Prefix(p) => (0, u32::try_from(p.len()).unwrap_or(u32::MAX), 0),
    };
    (
        Reverse(rule.priority),
        Reverse(class),
        Reverse(specificity),
        params,
        Reverse(host),
        Reverse(rule.matcher_count()),
        index,
    )
}

impl Bucket {
    fn build(
        rules: &[RouteRule],
        member: impl Fn(&RouteRule) -> Option<HostRank>,
    ) -> Result<Self, RouteError> {
        let mut members: Vec<(OrderKey, usize)> = rules
            .iter()
            .enumerate()
            .filter_map(|(i, rule)| member(rule).map(|host| (order_key(i, rule, host), i)))
            .collect();
        members.sort_unstable();
        let candidate = |rank: usize, route: usize, verify: bool| Candidate {
            // Both fit: the builder refuses more than `u32::MAX` routes.
            route: u32::try_from(route).unwrap_or(u32::MAX),
            rank: u32::try_from(rank).unwrap_or(u32::MAX),
            verify,
        };
        let ranked: Vec<(usize, &RouteRule)> =
            members.iter().map(|&(_, i)| (i, &rules[i])).collect();

        let mut bucket = Self::default();

        // Patterns: one `matchit` entry per shape; its list holds the routes
        // of that shape and, to be checked, those of overlapping shapes.
        let mut shapes: Vec<(&str, Vec<usize>)> = Vec::new();
        let mut shape_index: HashMap<&str, usize> = HashMap::new();
        for (rank, &(route, rule)) in ranked.iter().enumerate() {
            if let PathRule::Pattern(p) = &rule.path {
                let index = *shape_index.entry(&p.normalized).or_insert_with(|| {
                    shapes.push((&p.normalized, Vec::new()));
                    shapes.len() - 1
                });
                shapes[index].1.push(rank);
                let _ = route;
            }
        }
        if !shapes.is_empty() {
            let mut router = matchit::Router::new();
            for (index, (normalized, ranks)) in shapes.iter().enumerate() {
                if let Err(err) = router.insert(*normalized, u32::try_from(index).unwrap_or(0)) {
                    let (route, rule) = ranked[ranks[0]];
                    let _ = route;
                    let with = match &err {
                        matchit::InsertError::Conflict { with } => with.clone(),
                        other => other.to_string(),
                    };
                    let other = shapes
                        .iter()
                        .find(|(n, _)| *n == with)
                        .map(|(_, r)| ranked[r[0]].1);
                    return Err(RouteError::route(
                        &rule.name,
                        RouteErrorKind::PathConflict {
                            pattern: rule.path.source().to_owned(),
                            other_route: other.map_or_else(String::new, |o| o.name.to_string()),
                            other_pattern: other.map_or(with, |o| o.path.source().to_owned()),
                        },
                    ));
                }
            }
            for (index, (_, own)) in shapes.iter().enumerate() {
                let PathRule::Pattern(this) = &ranked[own[0]].1.path else {
                    continue;
                };
                let mut list: Vec<Candidate> = own
                    .iter()
                    .map(|&rank| candidate(rank, ranked[rank].0, false))
                    .collect();
                for (other_index, (_, others)) in shapes.iter().enumerate() {
                    if other_index == index {
                        continue;
                    }
                    let PathRule::Pattern(that) = &ranked[others[0]].1.path else {
                        continue;
                    };
                    if may_overlap(&this.shape, &that.shape) {
                        list.extend(
                            others
                                .iter()
                                .map(|&rank| candidate(rank, ranked[rank].0, true)),
                        );
                    }
                }
                list.sort_unstable_by_key(|c| c.rank);
                bucket.pattern_lists.push(list.into());
            }
            bucket.patterns = Some(router);
        }

        // Prefixes: each entry lists the routes of its own and of every
        // shorter prefix that covers it, so the longest hit is complete.
        let prefixes: Vec<(usize, &str)> = ranked
            .iter()
            .enumerate()
            .filter_map(|(rank, (_, rule))| match &rule.path {
                PathRule::Prefix(p) => Some((rank, &**p)),
                _ => None,
            })
            .collect();
        for &(_, prefix) in &prefixes {
            if bucket
                .prefixes
                .get(prefix)
                .is_some_and(|entry| entry.list.is_some())
            {
                continue;
            }
            let list: Box<[Candidate]> = prefixes
                .iter()
                .filter(|(_, covering)| prefix_matches(covering, prefix))
                .map(|&(rank, _)| candidate(rank, ranked[rank].0, false))
                .collect();
            if prefix == "/" {
                bucket.root = list;
                continue;
            }
            let mut ancestor = prefix;
            while let Some(slash) = ancestor.rfind('/').filter(|&i| i > 0) {
                ancestor = &ancestor[..slash];
                bucket
                    .prefixes
                    .entry(ancestor.into())
                    .or_default()
                    .continues = true;
            }
            bucket.prefixes.entry(prefix.into()).or_default().list = Some(list);
        }

        // Exact paths: the list is complete, with the patterns and prefixes
        // that also match the path, so an exact hit needs no other lookup.
        for (_, rule) in &ranked {
            let PathRule::Exact(path) = &rule.path else {
                continue;
            };
            if bucket.exact.contains_key(&**path) {
                continue;
            }
            let mut list = Vec::new();
            for (rank, &(route, other)) in ranked.iter().enumerate() {
                match &other.path {
                    PathRule::Exact(p) if p == path => list.push(candidate(rank, route, false)),
                    PathRule::Pattern(p) if p.own.at(path).is_ok() => {
                        list.push(candidate(rank, route, true));
                    }
                    PathRule::Prefix(p) if prefix_matches(p, path) => {
                        list.push(candidate(rank, route, false));
                    }
                    _ => {}
                }
            }
            bucket.exact.insert(path.clone(), list.into());
        }
        Ok(bucket)
    }

    /// The candidate lists for `path`: the complete exact list, or the
    /// pattern list (with its parameters) and the longest prefix's list.
    fn candidates<'t, 'p>(
        &'t self,
        path: &'p str,
    ) -> (
        &'t [Candidate],
        &'t [Candidate],
        Option<matchit::Params<'t, 'p>>,
    ) {
        if !self.exact.is_empty()
            && let Some(list) = self.exact.get(path)
        {
            return (list, &[], None);
        }
        let (patterns, params) = match self.patterns.as_ref().map(|router| router.at(path)) {
            Some(Ok(m)) => (
                self.pattern_lists
                    .get(*m.value as usize)
                    .map_or(&[][..], |list| &**list),
                Some(m.params),
            ),
            _ => (&[][..], None),
        };
        (patterns, self.longest_prefix(path), params)
    }

    fn longest_prefix(&self, path: &str) -> &[Candidate] {
        let mut best: &[Candidate] = &self.root;
        if self.prefixes.is_empty() || !path.starts_with('/') {
            return best;
        }
        // Walk down segment by segment: `/a`, `/a/b`, … while some prefix
        // continues, keeping the longest configured one. The depth is
        // bounded by the deepest prefix (`MAX_PREFIX_SEGMENTS`).
        let mut from = 1;
        loop {
            let end = path[from..].find('/').map_or(path.len(), |i| from + i);
            if end == from {
                // An empty segment (`//` or a trailing `/`) ends the walk.
                return best;
            }
            let Some(entry) = self.prefixes.get(&path[..end]) else {
                return best;
            };
            if let Some(list) = &entry.list {
                best = list;
            }
            if !entry.continues || end == path.len() {
                return best;
            }
            from = end + 1;
        }
    }
}
