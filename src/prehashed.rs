//! A hasher for keys that are already uniform hashes.

use std::hash::Hasher;

/// A hasher for `u64` keys that are already hashes (a keyed hash, digest
/// bytes): the value itself is the hash, so maps skip hashing it again.
/// Only for maps whose keys an attacker cannot choose, or that are keyed
/// by a hash with a secret seed.
#[derive(Debug, Default)]
pub(crate) struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed with it; fold anything else in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, BuildHasherDefault};

    #[test]
    fn a_u64_is_its_own_hash() {
        let build = BuildHasherDefault::<Prehashed>::default();
        assert_eq!(build.hash_one(0xdead_beef_u64), 0xdead_beef);
        assert_ne!(build.hash_one("ab"), build.hash_one("ba"));
    }
}
