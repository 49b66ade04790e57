//! The local backend: a sharded, bounded map of GCRA states.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::clock::{Clock, Epoch};
use super::key::Key;
use super::quota::{Gcra, Verdict, check, check_one};

/// How many entries eviction looks at to pick its victim: an approximate
/// choice in constant time, as Redis does.
const EVICTION_SAMPLE: usize = 16;

/// Shards of a store with at least this many keys; one below. A power of
/// two.
const MAX_SHARDS: usize = 32;

/// A counter: the key and which quota set (policy) it counts against,
/// with its hash computed once (it picks the shard and the map slot).
#[derive(Debug, Clone)]
pub(crate) struct StoreKey {
    hash: u64,
    policy: u32,
    key: Key,
}

impl StoreKey {
    #[inline(always)]
    fn is(&self, other: &Self) -> bool {
        self.hash == other.hash && self.policy == other.policy && self.key == other.key
    }
}

/// A shard's entries, found by the hash their [`StoreKey`] carries: it was
/// computed once with the store's randomly keyed hash, so the table stays
/// resistant to chosen keys without hashing twice. (`hashbrown`'s table
/// with its `inline-more` feature, which std's map is built without: the
/// look-up inlines into the check.)
type Map = hashbrown::HashTable<(StoreKey, Entry)>;

/// Quotas per key whose theoretical arrival times are held in the entry
/// itself; a quota set with more keeps them on the heap.
const INLINE_QUOTAS: usize = 3;

#[derive(Debug)]
struct Entry {
    /// Theoretical arrival time per quota, ns since the store's epoch.
    tats: Tats,
    in_flight: u32,
}

/// The theoretical arrival times of one key: inline for up to
/// [`INLINE_QUOTAS`] quotas (no allocation, and no pointer to follow on a
/// check), on the heap past that. Unused inline slots stay 0.
#[derive(Debug)]
enum Tats {
    Inline([u64; INLINE_QUOTAS]),
    Heap(Box<[u64]>),
}

impl Tats {
    fn new(quotas: usize) -> Self {
        if quotas <= INLINE_QUOTAS {
            Self::Inline([0; INLINE_QUOTAS])
        } else {
            Self::Heap(vec![0; quotas].into_boxed_slice())
        }
    }

    fn all(&self) -> &[u64] {
        match self {
            Self::Inline(tats) => tats,
            Self::Heap(tats) => tats,
        }
    }

    /// The times of `quotas` quotas. A set of another shape (which a key's
    /// policy never changes to) starts afresh.
    #[inline(always)]
    fn for_quotas(&mut self, quotas: usize) -> &mut [u64] {
        let fits = match self {
            Self::Inline(_) => quotas <= INLINE_QUOTAS,
            Self::Heap(tats) => tats.len() == quotas,
        };
        if !fits {
            self.reshape(quotas);
        }
        match self {
            Self::Inline(tats) => &mut tats[..quotas.min(INLINE_QUOTAS)],
            Self::Heap(tats) => tats,
        }
    }

    #[cold]
    fn reshape(&mut self, quotas: usize) {
        *self = Self::new(quotas);
    }
}

impl Entry {
    fn new(quotas: usize) -> Self {
        Self {
            tats: Tats::new(quotas),
            in_flight: 0,
        }
    }

    /// A stale entry holds nothing a new one would not: every quota is
    /// fully replenished and no request is in flight. Dropping it loses
    /// nothing.
    fn is_stale(&self, now: u64) -> bool {
        self.in_flight == 0 && self.tats.all().iter().all(|&tat| tat <= now)
    }

    /// When the entry becomes stale (ignoring requests in flight).
    fn stale_at(&self) -> u64 {
        self.tats.all().iter().copied().max().unwrap_or(0)
    }

    /// Checks a request against `quotas` and, when allowed, charges them
    /// and counts it in flight if `max_in_flight` is set.
    #[inline(always)]
    fn admit(&mut self, quotas: &[Gcra], max_in_flight: Option<u32>, now: u64) -> Admission {
        if let Some(max) = max_in_flight
            && self.in_flight >= max
        {
            return Admission::Overloaded;
        }
        let verdict = match (quotas, &mut self.tats) {
            // One quota in its inline slot, the common case.
            ([quota], Tats::Inline([tat, ..])) => check_one(quota, tat, now),
            _ => check(quotas, self.tats.for_quotas(quotas.len()), now),
        };
        if max_in_flight.is_some() && matches!(verdict, Verdict::Allowed(_)) {
            self.in_flight += 1;
        }
        Admission::Checked(verdict)
    }
}

#[derive(Debug)]
struct Shard {
    map: Map,
    next_sweep: u64,
}

/// The outcome of [`LocalStore::acquire`].
#[derive(Debug)]
pub(crate) enum Admission {
    /// The quotas' verdict (allowed requests are counted in flight).
    Checked(Verdict),
    /// Refused before the quotas: the key has its most requests in flight.
    Overloaded,
}

/// Every key's GCRA state, in shards each behind its own short lock.
#[derive(Debug)]
pub(crate) struct LocalStore {
    epoch: Epoch,
    seed: [u64; 2],
    /// Always [`MAX_SHARDS`], so a masked index needs no bounds check;
    /// the shards past `shard_mask` stay empty.
    shards: Box<[Mutex<Shard>; MAX_SHARDS]>,
    /// The shards in use, less one: 0 or `MAX_SHARDS - 1`.
    shard_mask: usize,
    shard_cap: usize,
    sweep_every: u64,
}

impl LocalStore {
    /// `max_keys` is at least 1 (the builder clamps it); the store never
    /// holds more.
    pub(crate) fn new(max_keys: usize, sweep_every: Duration, clock: Clock) -> Self {
        // A power of two, so the shard is picked with a mask; one shard
        // for small bounds, so every bound under `MAX_SHARDS` is kept
        // exactly.
        let shards = if max_keys < MAX_SHARDS { 1 } else { MAX_SHARDS };
        Self {
            epoch: Epoch::start(clock),
            // Random per store, so keys chosen to collide cannot be
            // computed from outside.
            seed: [
                RandomState::new().hash_one(0x5eed_u64) | 1,
                RandomState::new().hash_one(0xfeed_u64),
            ],
            shards: Box::new(std::array::from_fn(|_| {
                Mutex::new(Shard {
                    map: Map::new(),
                    next_sweep: 0,
                })
            })),
            shard_mask: shards - 1,
            shard_cap: (max_keys / shards).max(1),
            sweep_every: u64::try_from(sweep_every.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// Nanoseconds since the store's epoch, on its [`Clock`]. Read once
    /// per check.
    #[inline(always)]
    pub(crate) fn now(&self) -> u64 {
        self.epoch.now()
    }

    /// The key of `key` counted against quota set `policy`.
    #[inline(always)]
    pub(crate) fn key(&self, policy: u32, key: Key) -> StoreKey {
        StoreKey {
            hash: self.hash(policy, &key),
            policy,
            key,
        }
    }

    /// A keyed folded-multiply hash (as foldhash and aHash use): a few
    /// nanoseconds for an IP, and with a secret random seed, chosen keys
    /// cannot be made to collide.
    #[inline(always)]
    fn hash(&self, policy: u32, key: &Key) -> u64 {
        match key {
            Key::Ip(IpAddr::V4(v4)) => self.hash_v4(policy, *v4),
            _ => self.hash_other(policy, key),
        }
    }

    /// The policy and the address fill one word: one fold fewer for the
    /// most common key; its own multiplier keeps it apart from the other
    /// kinds.
    #[inline(always)]
    fn hash_v4(&self, policy: u32, v4: std::net::Ipv4Addr) -> u64 {
        let [a, b] = self.seed;
        let word = (u64::from(policy) << 32) | u64::from(u32::from(v4));
        fold(fold(word ^ a, b ^ V4_TAG), a)
    }

    /// [`hash`](Self::hash) for keys other than IPv4 addresses.
    #[inline(never)]
    fn hash_other(&self, policy: u32, key: &Key) -> u64 {
        let [a, b] = self.seed;
        let start = || fold(a ^ u64::from(policy), b);
        let h = match key {
            Key::Ip(IpAddr::V4(v4)) => return self.hash_v4(policy, *v4),
            Key::Global => fold(start() ^ 1, a),
            Key::UnknownClient => fold(start() ^ 2, a),
            Key::Ip(IpAddr::V6(v6)) => {
                let bits = u128::from(*v6);
                let h = fold(start() ^ (bits as u64), a);
                fold(h ^ ((bits >> 64) as u64) ^ 4, b)
            }
            Key::Text(text) => {
                let bytes = text.as_bytes();
                let mut h = fold(start() ^ 5 ^ ((bytes.len() as u64) << 8), a);
                for chunk in bytes.chunks(8) {
                    let mut word = [0u8; 8];
                    word[..chunk.len()].copy_from_slice(chunk);
                    h = fold(h ^ u64::from_le_bytes(word), b);
                }
                h
            }
        };
        fold(h, a)
    }

    #[inline(always)]
    fn shard(&self, key: &StoreKey) -> MutexGuard<'_, Shard> {
        // The high bits pick the shard; the map uses the low ones.
        let index = ((key.hash >> 40) as usize) & self.shard_mask & (MAX_SHARDS - 1);
        // A shard stays consistent whatever panicked while it was held.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks a request against `quotas` for `key` and, when allowed,
    /// charges them and counts it in flight if `max_in_flight` is set.
    #[inline(always)]
    pub(crate) fn acquire(
        &self,
        key: &StoreKey,
        quotas: &[Gcra],
        max_in_flight: Option<u32>,
    ) -> Admission {
        let now = self.now();
        let mut shard = self.shard(key);
        // One look-up for a known key, the common case.
        if let Some((_, entry)) = shard.map.find_mut(key.hash, |(k, _)| k.is(key)) {
            return entry.admit(quotas, max_in_flight, now);
        }
        self.make_room(&mut shard, now);
        let entry = (key.clone(), Entry::new(quotas.len()));
        let (_, entry) = shard
            .map
            .insert_unique(key.hash, entry, |(k, _)| k.hash)
            .into_mut();
        entry.admit(quotas, max_in_flight, now)
    }

    /// Ends a request counted in flight.
    pub(crate) fn release(&self, key: &StoreKey) {
        let mut shard = self.shard(key);
        if let Some((_, entry)) = shard.map.find_mut(key.hash, |(k, _)| k.is(key)) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
        }
    }

    /// Before inserting a key: sweeps the shard when due, then, if it is
    /// full, evicts one entry. A full shard is not swept on every insert
    /// (a flood would make each insert walk the shard): the eviction sample
    /// prefers stale entries anyway.
    fn make_room(&self, shard: &mut Shard, now: u64) {
        if now >= shard.next_sweep {
            shard.map.retain(|(_, e)| !e.is_stale(now));
            shard.next_sweep = now.saturating_add(self.sweep_every);
        }
        if shard.map.len() >= self.shard_cap {
            // Forget the sampled entry closest to stale, preferring one with
            // nothing in flight: the key loses the least history.
            let victim = shard
                .map
                .iter()
                .take(EVICTION_SAMPLE)
                .min_by_key(|(_, e)| (e.in_flight > 0, e.stale_at()))
                .map(|(k, _)| k.clone());
            if let Some(victim) = victim
                && let Ok(entry) = shard.map.find_entry(victim.hash, |(k, _)| k.is(&victim))
            {
                entry.remove();
            }
        }
    }

    /// Drops every stale entry now.
    pub(crate) fn sweep(&self) {
        let now = self.now();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.map.retain(|(_, e)| !e.is_stale(now));
            shard.next_sweep = now.saturating_add(self.sweep_every);
        }
    }

    /// How many keys are held.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }

    /// The most keys held.
    pub(crate) fn capacity(&self) -> usize {
        self.shard_cap * (self.shard_mask + 1)
    }
}

/// Mixed into the multiplier of IPv4 keys' hash (an arbitrary odd constant:
/// the digits of pi).
const V4_TAG: u64 = 0x243f_6a88_85a3_08d3;

/// The folded multiply: the high and low halves of the 128-bit product.
#[inline(always)]
fn fold(x: u64, y: u64) -> u64 {
    let product = u128::from(x) * u128::from(y);
    (product as u64) ^ ((product >> 64) as u64)
}

/// A request counted in flight for its key; released when dropped.
#[derive(Debug)]
pub(crate) struct InFlight {
    store: Arc<LocalStore>,
    key: StoreKey,
}

impl InFlight {
    pub(crate) fn new(store: Arc<LocalStore>, key: StoreKey) -> Self {
        Self { store, key }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.store.release(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_key_with_up_to_three_quotas_fits_one_small_bucket() {
        // The bound on memory per key in the docs (about 95 to 185 bytes
        // with hash-table slack) rests on this size, with no allocation.
        assert!(
            std::mem::size_of::<(StoreKey, Entry)>() <= 80,
            "{}",
            std::mem::size_of::<(StoreKey, Entry)>()
        );
        let mut entry = Entry::new(3);
        assert!(matches!(entry.tats, Tats::Inline(_)));
        assert_eq!(entry.tats.for_quotas(3).len(), 3);
        let mut many = Entry::new(5);
        assert_eq!(many.tats.for_quotas(5).len(), 5);
    }

    #[test]
    fn hashes_spread_and_tell_keys_apart() {
        let store = LocalStore::new(1000, Duration::from_secs(10), Clock::Monotonic);
        let mut seen = HashSet::new();
        let mut shards = vec![0usize; store.shard_mask + 1];
        for i in 0..10_000u32 {
            let key = store.key(0, Key::Ip(IpAddr::from(std::net::Ipv4Addr::from(i))));
            seen.insert(key.hash);
            let n = shards.len();
            shards[((key.hash >> 40) as usize) % n] += 1;
        }
        assert_eq!(seen.len(), 10_000, "colliding hashes");
        // Every shard gets a fair share of sequential addresses.
        assert!(shards.iter().all(|&n| n > 200), "{shards:?}");
        let text = |s: &str| store.key(0, Key::Text(Arc::from(s))).hash;
        assert_ne!(text("ab"), text("ab\0"));
        assert_ne!(text("a"), text("b"));
        assert_ne!(
            store.key(0, Key::Global).hash,
            store.key(1, Key::Global).hash
        );
        let other = LocalStore::new(1000, Duration::from_secs(10), Clock::Monotonic);
        assert_ne!(
            other.key(0, Key::Global).hash,
            store.key(0, Key::Global).hash
        );
    }
}
