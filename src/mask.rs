//! Payload masking (RFC 6455 §5.3): `data[i] ^= key[(offset + i) % 4]`.
//!
//! Safe code only: the key is widened to 8 bytes and applied with `chunks_exact_mut(8)` and
//! `u64` XOR, which LLVM turns into vector instructions. `offset` lets a payload be unmasked
//! in pieces as it arrives.

/// XORs `buf` with the masking `key`, where `buf` starts `offset` bytes into the payload.
/// Applying it twice restores the input.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // The key as seen from byte `offset`: rotate it so its first byte lines up with buf[0].
    let shift = (offset & 3) as u32 * 8;
    let key = u32::from_ne_bytes(key);
    let key = if cfg!(target_endian = "little") {
        key.rotate_right(shift)
    } else {
        key.rotate_left(shift)
    };
    mask_aligned(buf, key);
}

/// Masks `buf` with a key whose first byte applies to `buf[0]`.
fn mask_aligned(buf: &mut [u8], key: u32) {
    let wide = (u64::from(key) << 32) | u64::from(key);
    let wide128 = (u128::from(wide) << 64) | u128::from(wide);
    // 64 bytes a step as four 128-bit lanes: SSE2 loads, XORs and stores on x86_64.
    let mut blocks = buf.chunks_exact_mut(64);
    for block in &mut blocks {
        for lane in block.chunks_exact_mut(16) {
            xor16(lane, wide128);
        }
    }
    let rest = blocks.into_remainder();
    let mut words = rest.chunks_exact_mut(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(w) ^ wide).to_ne_bytes());
    }
    // Every step above covered a multiple of 4 bytes, so the key is still aligned.
    let key = key.to_ne_bytes();
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

#[inline(always)]
fn xor16(lane: &mut [u8], key: u128) {
    let mut w = [0u8; 16];
    w.copy_from_slice(lane);
    lane.copy_from_slice(&(u128::from_ne_bytes(w) ^ key).to_ne_bytes());
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
        let data: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
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
    fn rfc_example() {
        // RFC 6455 §5.7: masked "Hello".
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }
}
