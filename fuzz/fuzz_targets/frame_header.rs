//! `FrameHeader::parse` on arbitrary bytes, and `encode` -> `parse` round trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stdws::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let parsed = FrameHeader::parse(data);
    match parsed {
        Ok(Some((h, n))) => {
            assert!(
                n <= data.len() && (2..=MAX_HEADER_LEN).contains(&n),
                "header length {n}"
            );
            assert!(h.rsv <= 7);
            assert!(h.payload_len >> 63 == 0);
            if h.opcode.is_control() {
                assert!(h.fin && h.payload_len <= 125);
            }
            // The header does not depend on what follows it.
            let mut longer = data[..n].to_vec();
            longer.extend_from_slice(&[0xFF; 16]);
            assert_eq!(FrameHeader::parse(&longer), Ok(Some((h, n))));
            // Every strict prefix needs more bytes (never an error, never a different header).
            for cut in 0..n {
                assert_eq!(
                    FrameHeader::parse(&data[..cut]),
                    Ok(None),
                    "prefix {cut} of {n}"
                );
            }
            // Re-encoding gives the minimal form, which parses to the same header; when the
            // input was minimal too, the bytes are identical.
            let mut out = [0u8; MAX_HEADER_LEN];
            let m = h.encode(&mut out);
            assert!(m <= n);
            assert_eq!(FrameHeader::parse(&out[..m]), Ok(Some((h, m))));
            if m == n {
                assert_eq!(
                    &out[..m],
                    &data[..n],
                    "minimal input re-encoded differently"
                );
            }
        }
        Ok(None) => {
            assert!(
                data.len() < MAX_HEADER_LEN,
                "need more with {} bytes",
                data.len()
            );
        }
        Err(e) => {
            // An error is final: more bytes do not change it.
            let mut longer = data.to_vec();
            longer.extend_from_slice(&[0; 16]);
            assert_eq!(FrameHeader::parse(&longer), Err(e));
        }
    }

    // encode -> parse for a header built from the input.
    if data.len() >= 13 {
        let opcode = match data[0] % 6 {
            0 => OpCode::Continuation,
            1 => OpCode::Text,
            2 => OpCode::Binary,
            3 => OpCode::Close,
            4 => OpCode::Ping,
            _ => OpCode::Pong,
        };
        let mut len = [0u8; 8];
        len.copy_from_slice(&data[1..9]);
        let mut payload_len = u64::from_be_bytes(len) >> (data[0] >> 2 & 63);
        payload_len &= u64::MAX >> 1;
        let h = FrameHeader {
            fin: data[9] & 1 != 0 || opcode.is_control(),
            rsv: data[9] >> 1 & 7,
            opcode,
            mask: (data[9] & 0x10 != 0).then(|| [data[10], data[11], data[12], data[9]]),
            payload_len: if opcode.is_control() {
                payload_len % 126
            } else {
                payload_len
            },
        };
        let mut out = [0u8; MAX_HEADER_LEN];
        let m = h.encode(&mut out);
        let expected =
            2 + match h.payload_len {
                0..=125 => 0,
                126..=0xFFFF => 2,
                _ => 8,
            } + if h.mask.is_some() { 4 } else { 0 };
        assert_eq!(m, expected, "not the minimal encoding");
        assert_eq!(FrameHeader::parse(&out[..m]), Ok(Some((h, m))));
    }
});
