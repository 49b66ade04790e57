//! The compiled route table: a global bucket for routes without a host
//! rule and one bucket per host rule, each with an exact path map, a
//! `matchit` router of patterns and a prefix trie, whose entries hold every
//! route that could serve a path, ranked table-wide.
//!
//! A request finds its host's bucket with at most one hash lookup per host
//! label, looks up its candidates there and (unless the host's match cannot
//! be beaten) in the global bucket, and takes the first candidate, in rank
//! order, whose other matchers pass. Nothing is allocated.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use http::{HeaderMap, Method};

use super::error::{RouteError, RouteErrorKind};
use super::host::HostRule;
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

/// A candidate route for a path, with its table-wide rank (lower first).
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
    /// The highest priority of the bucket's routes.
    max_priority: i32,
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
///
/// Bucket 0 holds the routes without a host rule, once; every host rule has
/// a bucket with the routes that name it (and, for an exact host, the
/// wildcard routes that cover it). A request looks up its host's bucket and
/// bucket 0 and merges their candidates by rank, which is table-wide.
#[derive(Debug)]
pub(crate) struct Table {
    rules: Box<[RouteRule]>,
    exact_hosts: FastMap<u32>,
    wildcard_hosts: FastMap<u32>,
    buckets: Box<[Bucket]>,
}

/// The candidate that won a walk.
#[derive(Debug, Clone, Copy)]
struct Hit {
    rank: u32,
    route: usize,
    /// Which of the `Lists` it came from.
    list: usize,
    verify: bool,
}

/// Up to four candidate lists: the host bucket's exact-or-pattern and
/// prefix lists, then the global bucket's.
type Lists<'t> = [&'t [Candidate]; 4];

/// The parameters captured by the host and the global bucket's pattern
/// lists (`Lists` 0 and 2).
type Captures<'t, 'p> = [Option<matchit::Params<'t, 'p>>; 2];

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
        let mut members: Vec<Vec<(usize, HostRank)>> = Vec::with_capacity(keys.len() + 1);
        members.push(
            (0..rules.len())
                .filter(|&i| rules[i].hosts.is_empty())
                .map(|i| (i, (0, 0)))
                .collect(),
        );
        // Routes by the host rules they name, to find each bucket's members
        // in time linear in the host rules and labels.
        let mut by_exact: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut by_wildcard: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            for host in &rule.hosts {
                match host {
                    HostRule::Exact(h) => by_exact.entry(h).or_default().push(i),
                    HostRule::Wildcard(w) => by_wildcard.entry(w).or_default().push(i),
                }
            }
        }
        for key in &keys {
            let mut found: HashMap<usize, HostRank> = HashMap::new();
            let mut add = |i: usize, rank: HostRank| {
                let best = found.entry(i).or_insert(rank);
                *best = (*best).max(rank);
            };
            // The wildcards covering this key: its own (for a wildcard key)
            // and those of every shorter suffix.
            let (name, own_wildcard) = match key {
                HostRule::Exact(h) => {
                    for &i in by_exact.get(&**h).into_iter().flatten() {
                        add(i, (2, h.len()));
                    }
                    (&**h, None)
                }
                HostRule::Wildcard(w) => (&**w, Some(&**w)),
            };
            if let Some(w) = own_wildcard {
                for &i in by_wildcard.get(w).into_iter().flatten() {
                    add(i, (1, w.len()));
                }
            }
            let mut rest = name;
            while let Some(dot) = rest.find('.') {
                rest = &rest[dot + 1..];
                for &i in by_wildcard.get(rest).into_iter().flatten() {
                    add(i, (1, rest.len()));
                }
            }
            members.push(found.into_iter().collect());
        }
        // One order for the whole table, so candidates of two buckets merge.
        let mut keyed: Vec<(OrderKey, usize, HostRank)> = members
            .iter()
            .flatten()
            .map(|&(i, host)| (order_key(i, &rules[i], host), i, host))
            .collect();
        keyed.sort_unstable();
        keyed.dedup_by(|a, b| a.1 == b.1 && a.2 == b.2);
        let ranks: HashMap<(usize, HostRank), u32> = keyed
            .iter()
            .enumerate()
            .map(|(rank, &(_, i, host))| ((i, host), u32::try_from(rank).unwrap_or(u32::MAX)))
            .collect();
        let buckets = members
            .into_iter()
            .map(|members| {
                let mut ranked: Vec<(u32, usize)> = members
                    .into_iter()
                    .map(|(i, host)| (ranks.get(&(i, host)).copied().unwrap_or(u32::MAX), i))
                    .collect();
                ranked.sort_unstable();
                Bucket::build(&rules, &ranked)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            rules: rules.into(),
            exact_hosts,
            wildcard_hosts,
            buckets: buckets.into(),
        })
    }

    /// Whether some route has a host rule: otherwise the request's host
    /// plays no part in the look-up, and need not be read.
    pub(crate) fn routes_by_host(&self) -> bool {
        !self.exact_hosts.is_empty() || !self.wildcard_hosts.is_empty()
    }

    /// The bucket of the request's host, when a host rule names it.
    fn host_bucket(&self, host: Option<&str>) -> Option<&Bucket> {
        let host = host?;
        let index = self.exact_hosts.get(host).copied().or_else(|| {
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
        })?;
        self.buckets.get(index as usize)
    }

    /// The best route for the request.
    pub(crate) fn find<'t, 'p>(&'t self, req: &RequestView<'p>) -> Lookup<'t, 'p> {
        let mut lists: Lists<'t> = [&[]; 4];
        let mut captures: Captures<'t, 'p> = [None, None];
        let mut host_found = None;
        if let Some(bucket) = self.host_bucket(req.host) {
            (lists[0], lists[1], captures[0]) = bucket.candidates(req.path, true);
            host_found = self.select(&lists, req, true, u32::MAX, &mut |_| {});
        }
        if let Some(global) = self.buckets.first().filter(|b| !b.is_empty()) {
            // Only global routes ranked above the host route found can
            // serve instead of it. A host route above the global routes'
            // highest priority, or at it with an exact path, cannot be
            // beaten; one at it with a pattern only by global exact paths
            // and patterns, never by their prefixes.
            let (limit, need_prefixes) = match &host_found {
                Some(hit) => {
                    let rule = self.rules.get(hit.route);
                    let priority = rule.map_or(i32::MIN, |r| r.priority);
                    match rule.map(|r| &r.path) {
                        _ if priority < global.max_priority => (hit.rank, true),
                        _ if priority > global.max_priority => (0, false),
                        Some(PathRule::Exact(_)) => (0, false),
                        Some(PathRule::Pattern(_)) => (hit.rank, false),
                        _ => (hit.rank, true),
                    }
                }
                None => (u32::MAX, true),
            };
            if limit > 0 {
                (lists[2], lists[3], captures[1]) = global.candidates(req.path, need_prefixes);
                let global_only = [&[][..], &[][..], lists[2], lists[3]];
                if let Some(hit) = self.select(&global_only, req, true, limit, &mut |_| {}) {
                    return self.found(hit, &captures, req.path);
                }
            }
        }
        if let Some(hit) = host_found {
            return self.found(hit, &captures, req.path);
        }
        let mut allow: Vec<Method> = Vec::new();
        self.select(&lists, req, false, u32::MAX, &mut |rule| {
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

    /// The winner with its parameters: from its own pattern when it was
    /// listed to be checked, else from its list's `matchit` lookup.
    fn found<'t, 'p>(
        &'t self,
        hit: Hit,
        captures: &Captures<'t, 'p>,
        path: &'p str,
    ) -> Lookup<'t, 'p> {
        let params = match self.rules.get(hit.route).map(|r| &r.path) {
            Some(PathRule::Pattern(p)) if hit.verify => p.own.at(path).ok().map(|m| m.params),
            Some(PathRule::Pattern(_)) => captures.get(hit.list / 2).cloned().flatten(),
            _ => None,
        };
        Lookup::Found {
            route: hit.route,
            params,
        }
    }

    /// Walks the rank-sorted lists in rank order, up to rank `limit`
    /// (excluded). With `check_method`, returns the first candidate that
    /// passes every matcher, with its rank; without, reports every
    /// candidate that passes all but the method to `seen`.
    fn select<'t, 'p>(
        &'t self,
        lists: &Lists<'t>,
        req: &RequestView<'p>,
        check_method: bool,
        limit: u32,
        seen: &mut dyn FnMut(&RouteRule),
    ) -> Option<Hit> {
        let mut cursors = [0usize; 4];
        loop {
            let mut best: Option<(usize, &Candidate)> = None;
            for (k, list) in lists.iter().enumerate() {
                if let Some(c) = list.get(cursors[k])
                    && best.is_none_or(|(_, b)| c.rank < b.rank)
                {
                    best = Some((k, c));
                }
            }
            let (k, candidate) = best?;
            if candidate.rank >= limit {
                return None;
            }
            cursors[k] += 1;
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
            if candidate.verify
                && !matches!(&rule.path, PathRule::Pattern(p) if p.own.at(req.path).is_ok())
            {
                continue;
            }
            if check_method {
                return Some(Hit {
                    rank: candidate.rank,
                    route,
                    list: k,
                    verify: candidate.verify,
                });
            }
            seen(rule);
        }
    }
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
    /// Builds a bucket from its members: `(table-wide rank, route)`, best
    /// first. Below, `rank` is a member's position in that list.
    fn build(rules: &[RouteRule], members: &[(u32, usize)]) -> Result<Self, RouteError> {
        let candidate = |position: usize, route: usize, verify: bool| Candidate {
            // An out-of-range route is skipped at lookup, never indexed.
            route: u32::try_from(route).unwrap_or(u32::MAX),
            rank: members.get(position).map_or(u32::MAX, |m| m.0),
            verify,
        };
        let ranked: Vec<(usize, &RouteRule)> =
            members.iter().map(|&(_, i)| (i, &rules[i])).collect();

        let mut bucket = Self {
            max_priority: ranked
                .iter()
                .map(|(_, r)| r.priority)
                .max()
                .unwrap_or(i32::MIN),
            ..Self::default()
        };

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

    fn is_empty(&self) -> bool {
        self.exact.is_empty()
            && self.patterns.is_none()
            && self.prefixes.is_empty()
            && self.root.is_empty()
    }

    /// The candidate lists for `path`: the complete exact list, or the
    /// pattern list (with its parameters) and the longest prefix's list.
    fn candidates<'t, 'p>(
        &'t self,
        path: &'p str,
        prefixes: bool,
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
        let prefixes = if prefixes {
            self.longest_prefix(path)
        } else {
            &[]
        };
        (patterns, prefixes, params)
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
            let end = path.as_bytes()[from..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(path.len(), |i| from + i);
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
