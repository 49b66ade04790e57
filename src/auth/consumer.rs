//! API clients and their keys: [`Consumer`] and the [`ConsumerStore`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasherDefault;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use http::HeaderValue;

use crate::identity::ConsumerIdentity;
use crate::prehashed::Prehashed;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The most keys a [`ConsumerStore`] holds; [`ConsumerStore::add_key`]
/// refuses more.
pub const MAX_KEYS: usize = 1_000_000;

/// An authenticated API client, as a request extension.
///
/// [`ApiKeyLayer`](super::api_key::ApiKeyLayer) inserts the consumer a key
/// belongs to (or the anonymous consumer) into the request's extensions, so
/// inner layers read it with `request.extensions().get::<Consumer>()`
/// (access policies match [`name`](Self::name) and [`groups`](Self::groups)),
/// and its [`identity`](Self::identity) next to it, which the rate limiter
/// reads (name and [`tier`](Self::tier)).
///
/// Cloning is cheap (one reference count).
///
/// ```
/// use meshgate::auth::Consumer;
///
/// let consumer = Consumer::new("mobile-app").with_tier("pro").with_group("partners");
/// assert_eq!(consumer.id(), "mobile-app");
/// assert_eq!(consumer.tier(), Some("pro"));
/// assert_eq!(consumer.groups(), ["partners".to_string()]);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Consumer(Arc<ConsumerData>);

#[derive(Clone)]
struct ConsumerData {
    id: String,
    name: String,
    tier: Option<String>,
    groups: Vec<String>,
    metadata: BTreeMap<String, String>,
    anonymous: bool,
    /// `X-Consumer-ID`, `-Username`, `-Groups` values, made on first use.
    headers: OnceLock<ConsumerHeaders>,
    /// The identity extension, made on first use.
    identity: OnceLock<ConsumerIdentity>,
}

impl PartialEq for ConsumerData {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.name == other.name
            && self.tier == other.tier
            && self.groups == other.groups
            && self.metadata == other.metadata
            && self.anonymous == other.anonymous
    }
}

impl Eq for ConsumerData {}

/// The upstream header values of a consumer (`None` where the text cannot
/// be a header value).
#[derive(Clone, Debug)]
pub(crate) struct ConsumerHeaders {
    pub(crate) id: Option<HeaderValue>,
    pub(crate) name: Option<HeaderValue>,
    pub(crate) groups: Option<HeaderValue>,
}

impl Consumer {
    /// A consumer named `name`, whose id is also `name`, with no tier, group
    /// or metadata.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Consumer(Arc::new(ConsumerData {
            id: name.clone(),
            name,
            tier: None,
            groups: Vec::new(),
            metadata: BTreeMap::new(),
            anonymous: false,
            headers: OnceLock::new(),
            identity: OnceLock::new(),
        }))
    }

    fn data_mut(&mut self) -> &mut ConsumerData {
        let data = Arc::make_mut(&mut self.0);
        data.headers = OnceLock::new();
        data.identity = OnceLock::new();
        data
    }

    /// The [`ConsumerIdentity`] extension of this consumer (its name and
    /// tier), made once per consumer: inserted next to it by the API-key
    /// layer for layers that need no `auth` feature, such as the rate
    /// limiter.
    pub fn identity(&self) -> ConsumerIdentity {
        self.0
            .identity
            .get_or_init(|| ConsumerIdentity {
                name: Arc::from(self.0.name.as_str()),
                tier: self.0.tier.as_deref().map(Arc::from),
            })
            .clone()
    }

    /// The upstream header values, made once per consumer.
    pub(crate) fn headers(&self) -> &ConsumerHeaders {
        self.0.headers.get_or_init(|| ConsumerHeaders {
            id: HeaderValue::from_str(&self.0.id).ok(),
            name: HeaderValue::from_str(&self.0.name).ok(),
            groups: (!self.0.groups.is_empty())
                .then(|| HeaderValue::from_str(&self.0.groups.join(",")).ok())
                .flatten(),
        })
    }

    /// Sets the id (sent upstream as `X-Consumer-ID`). Default: the name.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.data_mut().id = id.into();
        self
    }

    /// Sets the rate-limit tier (`free`, `pro`, …). Default: none.
    #[must_use]
    pub fn with_tier(mut self, tier: impl Into<String>) -> Self {
        self.data_mut().tier = Some(tier.into());
        self
    }

    /// Adds a group (sent upstream in `X-Consumer-Groups`, matched by access
    /// policies). Default: none.
    #[must_use]
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.data_mut().groups.push(group.into());
        self
    }

    /// Adds a metadata entry. Default: none.
    #[must_use]
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.data_mut().metadata.insert(key.into(), value.into());
        self
    }

    /// Marks this consumer as the one unauthenticated requests run as
    /// (`X-Anonymous-Consumer: true` upstream).
    #[must_use]
    pub fn anonymous(mut self) -> Self {
        self.data_mut().anonymous = true;
        self
    }

    /// The id, unique among consumers.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// The name (username).
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The rate-limit tier, if any.
    pub fn tier(&self) -> Option<&str> {
        self.0.tier.as_deref()
    }

    /// The groups.
    pub fn groups(&self) -> &[String] {
        &self.0.groups
    }

    /// The metadata.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.0.metadata
    }

    /// Whether this is the anonymous consumer of unauthenticated requests.
    pub fn is_anonymous(&self) -> bool {
        self.0.anonymous
    }
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("id", &self.0.id)
            .field("name", &self.0.name)
            .field("tier", &self.0.tier)
            .field("groups", &self.0.groups)
            .field("anonymous", &self.0.anonymous)
            .finish_non_exhaustive()
    }
}

/// Why a key could not be added.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The store already holds [`MAX_KEYS`] keys.
    Full,
    /// The key already belongs to another consumer (by id).
    Duplicate,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Full => write!(f, "the consumer store holds {MAX_KEYS} keys already"),
            StoreError::Duplicate => f.write_str("the key already belongs to another consumer"),
        }
    }
}

impl std::error::Error for StoreError {}

type Bucket = Vec<([u8; 32], Consumer)>;

/// The index: buckets by the first 8 bytes of each key's SHA-256 digest.
#[derive(Default)]
struct Index {
    /// Keyed by digest bytes, already uniform: they are their own hash
    /// (std's SipHash of them cost more than the rest of a look-up,
    /// measured). Only the store's own keys are inserted, so a client
    /// cannot lengthen a probe sequence.
    buckets: HashMap<u64, Bucket, BuildHasherDefault<Prehashed>>,
    len: usize,
}

/// Consumers and their API keys, stored only as SHA-256 digests.
///
/// A key presented by a client is hashed and its digest compared with the
/// stored ones in constant time (`subtle`). The store is indexed by the
/// first 8 digest bytes: the time of a lookup can tell an attacker whether
/// the first 8 bytes of the SHA-256 of *their own guess* match a stored
/// digest, which does not help find a key (that needs a SHA-256 preimage).
///
/// Keys are added and revoked at run time; a clone shares the same store
/// (it is an `Arc`), so the layer sees changes at once. Reads take a
/// read lock for the time of a hash-map lookup; writes copy the index
/// (keys change rarely, requests read often).
#[derive(Clone, Default)]
pub struct ConsumerStore {
    index: Arc<RwLock<Arc<Index>>>,
    writer: Arc<Mutex<()>>,
}

impl fmt::Debug for ConsumerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerStore")
            .field("keys", &self.len())
            .finish()
    }
}

fn digest_of(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

fn bucket_of(digest: &[u8; 32]) -> u64 {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(prefix)
}

impl ConsumerStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn snapshot(&self) -> Arc<Index> {
        // A poisoned lock only means a writer panicked between two complete
        // states (the index is replaced whole), so the value is still good.
        match self.index.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn update(
        &self,
        change: impl FnOnce(&mut Index) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.snapshot();
        let mut next = Index {
            buckets: current.buckets.clone(),
            len: current.len,
        };
        change(&mut next)?;
        let mut slot = self.index.write().unwrap_or_else(|p| p.into_inner());
        *slot = Arc::new(next);
        Ok(())
    }

    /// Adds a plain key for `consumer`; only its SHA-256 digest is kept.
    pub fn add_key(&self, consumer: Consumer, key: &str) -> Result<(), StoreError> {
        self.add_digest(consumer, digest_of(key.as_bytes()))
    }

    /// Adds a key by its SHA-256 digest (as a config file holds it).
    pub fn add_digest(&self, consumer: Consumer, digest: [u8; 32]) -> Result<(), StoreError> {
        self.update(|index| {
            let bucket = index.buckets.entry(bucket_of(&digest)).or_default();
            if let Some(slot) = bucket
                .iter_mut()
                .find(|(d, _)| bool::from(d.ct_eq(&digest)))
            {
                if slot.1.id() != consumer.id() {
                    return Err(StoreError::Duplicate);
                }
                slot.1 = consumer;
                return Ok(());
            }
            if index.len >= MAX_KEYS {
                return Err(StoreError::Full);
            }
            bucket.push((digest, consumer));
            index.len += 1;
            Ok(())
        })
    }

    /// Revokes a plain key. Returns whether it was present.
    pub fn revoke_key(&self, key: &str) -> bool {
        self.revoke_digest(&digest_of(key.as_bytes()))
    }

    /// Revokes a key by its digest. Returns whether it was present.
    pub fn revoke_digest(&self, digest: &[u8; 32]) -> bool {
        let mut found = false;
        let _ = self.update(|index| {
            let slot = bucket_of(digest);
            if let Some(bucket) = index.buckets.get_mut(&slot) {
                let before = bucket.len();
                bucket.retain(|(d, _)| !bool::from(d.ct_eq(digest)));
                found = bucket.len() != before;
                if bucket.is_empty() {
                    index.buckets.remove(&slot);
                }
            }
            if found {
                index.len -= 1;
            }
            Ok(())
        });
        found
    }

    /// Revokes every key of the consumer with this id. Returns how many.
    pub fn remove_consumer(&self, id: &str) -> usize {
        let mut removed = 0;
        let _ = self.update(|index| {
            index.buckets.retain(|_, bucket| {
                let before = bucket.len();
                bucket.retain(|(_, c)| c.id() != id);
                removed += before - bucket.len();
                !bucket.is_empty()
            });
            index.len -= removed;
            Ok(())
        });
        removed
    }

    /// How many keys the store holds.
    pub fn len(&self) -> usize {
        self.snapshot().len
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The consumer a plain key belongs to.
    pub fn authenticate(&self, key: &[u8]) -> Option<Consumer> {
        let digest = digest_of(key);
        let index = self.snapshot();
        let bucket = index.buckets.get(&bucket_of(&digest))?;
        // Every entry of the bucket is compared, in constant time, so the
        // time does not tell which one matched.
        let mut found = None;
        for (stored, consumer) in bucket {
            if bool::from(stored.ct_eq(&digest)) {
                found = Some(consumer);
            }
        }
        found.cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_authenticate_revoke() {
        let store = ConsumerStore::new();
        let alice = Consumer::new("alice").with_tier("pro");
        store.add_key(alice.clone(), "k-alice-1").unwrap();
        store.add_key(alice.clone(), "k-alice-2").unwrap();
        store.add_key(Consumer::new("bob"), "k-bob").unwrap();
        assert_eq!(store.len(), 3);
        assert_eq!(store.authenticate(b"k-alice-2").unwrap().name(), "alice");
        assert_eq!(store.authenticate(b"k-bob").unwrap().name(), "bob");
        assert!(store.authenticate(b"k-carol").is_none());
        assert_eq!(
            store.add_key(Consumer::new("bob"), "k-alice-1"),
            Err(StoreError::Duplicate)
        );
        assert!(store.revoke_key("k-alice-1"));
        assert!(!store.revoke_key("k-alice-1"));
        assert!(store.authenticate(b"k-alice-1").is_none());
        assert_eq!(store.remove_consumer("alice"), 1);
        assert_eq!(store.len(), 1);
        // A clone is the same store.
        let clone = store.clone();
        clone.revoke_key("k-bob");
        assert!(store.is_empty());
    }

    #[test]
    fn digests_from_config() {
        let store = ConsumerStore::new();
        let digest: [u8; 32] = Sha256::digest(b"abc").into();
        store.add_digest(Consumer::new("c"), digest).unwrap();
        assert!(store.authenticate(b"abc").is_some());
        assert!(format!("{store:?}").contains("keys: 1"));
    }
}
