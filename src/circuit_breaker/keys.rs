//! The bounded set of breakers, one per key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Config;
use super::breaker::Breaker;

/// How many entries eviction looks at to pick its victim: an approximate
/// least-recently-used choice in constant time, as Redis does.
const EVICTION_SAMPLE: usize = 16;

/// One breaker for the whole layer, or one per key up to a bound.
#[derive(Debug)]
pub(crate) enum Breakers {
    Single(Arc<Breaker>),
    Keyed(KeyedBreakers),
}

#[derive(Debug)]
pub(crate) struct KeyedBreakers {
    config: Arc<Config>,
    max_keys: usize,
    map: Mutex<HashMap<Arc<str>, Arc<Breaker>>>,
}

impl Breakers {
    /// `max_keys` is at least 1: the layer's builder clamps it.
    pub(crate) fn new(config: Arc<Config>, keyed: bool, max_keys: usize) -> Self {
        if keyed {
            Self::Keyed(KeyedBreakers {
                config,
                max_keys,
                map: Mutex::new(HashMap::new()),
            })
        } else {
            Self::Single(Arc::new(Breaker::new(config, None)))
        }
    }

    pub(crate) fn all(&self) -> Vec<Arc<Breaker>> {
        match self {
            Self::Single(breaker) => vec![Arc::clone(breaker)],
            Self::Keyed(keyed) => keyed.lock().values().cloned().collect(),
        }
    }
}

impl KeyedBreakers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<Breaker>>> {
        // The map stays consistent whatever panicked while it was held.
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The breaker for `key`, created when new. At the bound, a new key
    /// evicts the least recently used of a sample of breakers, preferring
    /// closed ones, so a flood of fresh keys cannot evict a breaker that is
    /// holding a failing upstream open while closed ones remain.
    pub(crate) fn get(&self, key: &str) -> Arc<Breaker> {
        let mut map = self.lock();
        if let Some(breaker) = map.get(key) {
            let breaker = Arc::clone(breaker);
            drop(map);
            breaker.touch();
            return breaker;
        }
        if map.len() >= self.max_keys {
            let victim = map
                .iter()
                .take(EVICTION_SAMPLE)
                .min_by_key(|(_, b)| (b.state() != super::BreakerState::Closed, b.last_used()))
                .map(|(k, _)| Arc::clone(k));
            if let Some(victim) = victim {
                map.remove(&victim);
            }
        }
        let key: Arc<str> = Arc::from(key);
        let breaker = Arc::new(Breaker::new(
            Arc::clone(&self.config),
            Some(Arc::clone(&key)),
        ));
        breaker.touch();
        map.insert(key, Arc::clone(&breaker));
        breaker
    }
}
