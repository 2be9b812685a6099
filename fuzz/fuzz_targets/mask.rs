//! `apply_mask` against a byte-by-byte XOR, whole and in two pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let [k0, k1, k2, k3, offset, split, data @ ..] = input else {
        return;
    };
    let key = [*k0, *k1, *k2, *k3];
    let offset = usize::from(*offset);
    let naive: Vec<u8> = data
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ key[(offset + i) % 4])
        .collect();
    let mut whole = data.to_vec();
    stdws::apply_mask(&mut whole, key, offset);
    assert_eq!(whole, naive, "whole");
    let cut = usize::from(*split).min(data.len());
    let mut pieces = data.to_vec();
    let (a, b) = pieces.split_at_mut(cut);
    stdws::apply_mask(a, key, offset);
    stdws::apply_mask(b, key, offset + cut);
    assert_eq!(pieces, naive, "in two pieces at {cut}");
    stdws::apply_mask(&mut whole, key, offset);
    assert_eq!(whole, data, "twice is identity");
});
