//! The permessage-deflate receive path (RFC 7692) of `stdws::proto::Connection`, in either
//! role, after a negotiation between stdws's own client and server handshakes with
//! parameters from the input; the peer's stream (compressed messages, fragmented, with or
//! without context takeover, bombs, control frames, arbitrary frames and bytes) is built by
//! a program in the input. Layout and checks: `src/deflate.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stdws_fuzz::proto::Counting;

#[global_allocator]
static ALLOC: Counting = Counting;

fuzz_target!(|bytes: &[u8]| stdws_fuzz::deflate::fuzz(bytes));
