//! Unpredictable bytes for `Sec-WebSocket-Key` and frame masking keys (RFC 6455 §4.1, §5.3,
//! §10.3), without a dependency.
//!
//! std has no public CSPRNG, but `RandomState::new()` holds a 128-bit SipHash key that std
//! reads from the operating system's entropy source (getrandom(2) on Linux). We keep one such
//! state per process and use SipHash as a keyed pseudo-random function in counter mode:
//! output = SipHash_k(connection nonce, counter). Predicting a mask requires recovering the
//! 128-bit key from outputs, which SipHash as a PRF is designed to prevent; masks of one
//! connection say nothing useful about the next one. This meets §10.3 ("the masking key MUST
//! be derived from a strong source of entropy ... MUST NOT make it simple for a server/proxy to
//! predict the masking key for a subsequent frame"), costs one hash per two masks, and needs
//! neither `unsafe` nor reading `/dev/urandom` per connection.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static KEY: OnceLock<RandomState> = OnceLock::new();
static NONCE: AtomicU64 = AtomicU64::new(0);

/// A per-connection stream of unpredictable 64-bit words.
#[derive(Debug)]
pub struct Rng {
    nonce: u64,
    counter: u64,
    /// The unused half of the last word, for the next mask, if `has_spare`.
    spare: [u8; 4],
    has_spare: bool,
}

impl Rng {
    /// A generator with a fresh nonce.
    pub fn new() -> Rng {
        Rng {
            nonce: NONCE.fetch_add(1, Ordering::Relaxed),
            counter: 0,
            spare: [0; 4],
            has_spare: false,
        }
    }

    /// The next 64 unpredictable bits.
    pub fn next_u64(&mut self) -> u64 {
        self.counter += 1;
        KEY.get_or_init(RandomState::new)
            .hash_one((self.nonce, self.counter))
    }

    /// A fresh 4-byte masking key.
    pub fn mask(&mut self) -> [u8; 4] {
        if self.has_spare {
            self.has_spare = false;
            return self.spare;
        }
        let w = self.next_u64().to_ne_bytes();
        self.spare = [w[4], w[5], w[6], w[7]];
        self.has_spare = true;
        [w[0], w[1], w[2], w[3]]
    }

    /// 16 fresh bytes (a `Sec-WebSocket-Key` nonce).
    pub fn bytes16(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next_u64().to_ne_bytes());
        out[8..].copy_from_slice(&self.next_u64().to_ne_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn masks_do_not_repeat_within_or_across_connections() {
        let mut seen = HashSet::new();
        for _ in 0..4 {
            let mut rng = Rng::new();
            for _ in 0..1000 {
                seen.insert(rng.mask());
            }
        }
        // 4000 random 32-bit values: a collision is possible but very unlikely (p < 0.2 %).
        assert!(seen.len() >= 3998, "{} distinct", seen.len());
        let a = Rng::new().bytes16();
        let b = Rng::new().bytes16();
        assert_ne!(a, b);
    }
}
