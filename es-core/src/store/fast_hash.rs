//! A fast, non-cryptographic hasher for the in-memory store's own maps.
//!
//! std's default SipHash resists hash flooding by untrusted keys, which costs 20-40 ns per
//! lookup. The in-memory store's keys (stream names, event ids) come from the program that
//! embeds it, for tests and prototypes, and a command does three or four lookups: this
//! multiply-rotate hasher (the FxHash scheme used inside rustc) is several times cheaper.

use std::hash::{BuildHasherDefault, Hasher};

/// `HashMap`/`HashSet` state using [`FastHasher`].
pub(super) type FastState = BuildHasherDefault<FastHasher>;

/// The FxHash scheme: for each word, rotate, xor, multiply by an odd constant.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct FastHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
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

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The multiply only carries entropy upwards, and the table picks buckets with the
        // low bits: finish with murmur3's avalanche so every input bit reaches them (event
        // ids differ only in their last bytes, which land in the high bits of a word).
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    #[test]
    fn similar_keys_spread_over_buckets() {
        let state = FastState::default();
        let hashes: HashSet<u64> = (0..10_000)
            .map(|i| state.hash_one(format!("acc-{i}")))
            .collect();
        assert_eq!(hashes.len(), 10_000);
        // The low bits pick the bucket: they must differ too.
        let low: HashSet<u64> = hashes.iter().map(|h| h & 0xffff).collect();
        assert!(low.len() > 8_000, "{}", low.len());
    }

    #[test]
    fn event_ids_of_one_thread_spread_over_buckets() {
        let state = FastState::default();
        let low: HashSet<u64> = (0..10_000)
            .map(|_| state.hash_one(crate::new_event_id()) & 0xffff)
            .collect();
        assert!(low.len() > 8_000, "{}", low.len());
    }
}
